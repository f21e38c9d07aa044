"""Study of notebook 05: does a backdoor planted in a public model survive transfer learning, and
which way of transferring or which defence removes it? (The Renofeation authors' backdoor
pipeline, ``../shared/PROTOCOLS.md`` section 2.6, with BackdoorBench's BadNets anchor.)

Smoke profile (embedded ``synsigns``, 32 px). The public pretrained model is **base A** of
notebook 01 (synsigns half A). The attacker's teacher set and both victim sets come from the
*other* half (B), which base A never saw, as GTSRB is new to an ImageNet model:

- teacher set: the first ``teacher_classes`` classes of half B, drawn with ``data_seed``;
- student task ``"same"``: the same classes, the victim's own images (``student_seed``; the
  authors' final scripts reuse the teacher's dataset), and the teacher's test set;
- student task ``"new"``: the next ``new_classes`` classes of half B (disjoint from the teacher's:
  the authors' earlier GTSRB -> MIT-67 / CUB plan).

Full profile: ImageNet ResNet-18 (``bases.imagenet_base``) planted on GTSRB at 224 px, students
on GTSRB (same) and a new task (``full_new``: MIT-67 or CUB-200), file-backed with the trigger
pasted after the 224-px crop (:class:`PoisonedImages`).

Every model is cached in the store under a key of its recipe entries, the pretrained weights'
fingerprint and :data:`CODE`, so notebook 06 loads what notebook 05 trained by calling the same
functions with the same recipe.
"""
from __future__ import annotations

import sys
from functools import lru_cache

from .. import backdoor as B
from .. import data as D
from ..backdoor import Trigger
from ..data import ImageSet
from ..models import fresh_like, model_fingerprint
from ..store import Store, code_version
from ..transfer import renofeation, retrain
from ..transfer import finetune as _finetune
from . import bases
from . import recipe as _recipe
from .backdoor_data import real_sets, shared_weights

METHODS = ["fine_tune", "mag", "divmag", "retrain", "renofeation", "fine_pruning"]
TEACHERS = ("backdoor", "clean", "flip")
_COMMON = {
    # data (smoke): synsigns half B of the bases' split; the public base: base A of notebook 01
    "dataset": "synsigns", "new_dataset": "synsigns", "base": "A", "base_epochs": None, "size": 32,
    "new_per_class_train": None, "split_seed": 0, "teacher_classes": 10, "new_classes": 10, "per_class_train": 60,
    "per_class_test": 30,
    "data_seed": 0, "student_seed": 1,
    # the attack (the authors' defaults: 0.2 all-to-one to class 0, logo at the bottom-right corner)
    "trigger": "emblem", "trigger_size": 40 / 224, "where": "bottom_right", "target": 0, "rate": 0.2,
    "rates": [0.01, 0.05, 0.1, 0.2], "update_ratios": [0.0, 0.5, 0.7, 0.9], "flip_rate": 0.2,
    # transfer
    "methods": METHODS, "ratio_methods": ["fine_tune", "mag", "divmag"],  # run at every update ratio
    "mag_ratio": 0.5, "mag_ratios": [0.05, 0.5, 0.8], "divmag_fraction": 0.05, "prune_ratio": 0.5,
    "flip_methods": ["fine_tune", "divmag", "fine_pruning"],
    "seed": 0,
    # the headline: planted teacher ASR >= min_asr at clean accuracy within clean_margin of the
    # unpoisoned teacher; survival and defence findings need asr_margin between the rates compared
    "min_asr": 0.9, "clean_margin": 0.05, "asr_margin": 0.2,
}
RECIPE = {
    "smoke": {**_COMMON,
              # the attacker plants in ~110 iterations (the authors: 10,000), so at a larger lr
              # with momentum (fit's one-cycle defaults) than the authors' 5e-3
              "teacher_epochs": 12, "teacher_kw": {"lr": 0.05, "head_lr_mult": 10.0, "batch_size": 64},
              # the victim: the authors' optimiser (lr 5e-3 cosine, momentum 0, weight decay 1e-4,
              # head at 10x, batch 64) for 5 epochs (45 iterations; the authors: 10,000)
              "student_epochs": 5, "fit_kw": {"lr": 0.005, "momentum": 0.0, "weight_decay": 1e-4,
                                              "schedule": "cosine", "head_lr_mult": 10.0, "batch_size": 64},
              # divmag's trial: the authors' 3,000 of 10,000 iterations, lr 5e-3, momentum 0.9, no decay
              "trial_epochs": 2, "trial_kw": {"lr": 0.005, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 64},
              # re-training and Renofeation at notebook 02's smoke settings (Renofeation shortened)
              "retrain_epochs": 12, "retrain_kw": {"lr": 0.1, "batch_size": 64},
              "distill_epochs": 8, "swa_epochs": 2,
              "renofeation_kw": {"lr": 0.2, "swa_lr": 0.1, "feat_weight": 5.0, "dropout": 0.1, "beta": 0.01,
                                 "batch_size": 64},
              "asserted": ["survives_targeted", "survives_new_task", "retrain_removes", "renofeation_removes"]},
}
# the check on real photographs (CPU-sized): the shared GTSRB subset planted on the team's real
# CIFAR-10 ResNet-20, victims on the other half of GTSRB and on the shared CIFAR-10 subset
RECIPE["real"] = {**RECIPE["smoke"], "dataset": "gtsrb_shared", "new_dataset": "cifar10_folder",
                  "base": "resnet20_shared", "per_class_train": 30, "new_per_class_train": 100}
# the authors' setting (GPU-sized): ImageNet ResNet-18 planted on GTSRB at 224 px; their 10,000
# iterations at batch 64 over GTSRB's 39,209 training images are 16 epochs (the new task gets as
# many epochs, not iterations); divmag's 3,000-iteration trial 5; re-training (retrain.sh) 30,000
# iterations at lr 1e-2, weight decay 5e-3, momentum 0.9; Renofeation 90,000 iterations, feature
# weight 5, dropout 0.1 (their backdoor script has no SWA stage: one SWA epoch here)
_AUTHORS = {"lr": 0.005, "momentum": 0.0, "weight_decay": 1e-4, "schedule": "cosine", "head_lr_mult": 10.0,
            "batch_size": 64}
RECIPE["full"] = {**_COMMON, "dataset": "gtsrb", "new_dataset": "mit67", "base": "imagenet_resnet18", "size": 224,
                  "teacher_epochs": 16, "teacher_kw": _AUTHORS, "student_epochs": 16, "fit_kw": _AUTHORS,
                  "trial_epochs": 5, "trial_kw": {**_AUTHORS, "momentum": 0.9, "weight_decay": 0.0},
                  "retrain_epochs": 49, "retrain_kw": {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-3,
                                                       "schedule": "cosine", "batch_size": 64},
                  "distill_epochs": 147, "swa_epochs": 1,
                  "renofeation_kw": {"lr": 0.01, "swa_lr": 0.005, "feat_weight": 5.0, "dropout": 0.1, "beta": 0.01,
                                     "momentum": 0.9, "weight_decay": 5e-3, "schedule": "cosine", "batch_size": 64},
                  "asserted": ["survives_targeted", "retrain_removes"]}


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 05's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


# notebook parameter -> recipe key (every parameter prefixed bd_; see the notebook's parameters cell)
PARAMS: dict[str, str] = {f"bd_{k}": k for k in (
    "teacher_classes", "new_classes", "per_class_train", "per_class_test", "trigger", "trigger_size", "where",
    "target", "rate", "rates", "update_ratios", "flip_rate", "methods", "ratio_methods", "mag_ratio", "mag_ratios",
    "divmag_fraction", "prune_ratio", "flip_methods", "teacher_epochs", "student_epochs", "trial_epochs",
    "retrain_epochs", "distill_epochs", "swa_epochs", "base_epochs", "seed")}


# ----------------------------------------------------------------------------- data
def _classes(cfg: dict, task: str) -> list[int]:
    half_b = bases.halves(bases.recipe(split_seed=cfg["split_seed"]))["B"]
    k, m = cfg["teacher_classes"], cfg["new_classes"]
    if k + m > len(half_b):
        raise ValueError(f"teacher_classes + new_classes = {k + m} exceeds the {len(half_b)} classes of half B")
    return half_b[:k] if task in ("teacher", "same") else half_b[k:k + m]


@lru_cache(maxsize=32)
def _drawn(classes: tuple, split: str, per_class: int, seed: int, tag: str) -> ImageSet:
    ds = D.load_synsigns(split, n=len(classes) * per_class, seed=seed, classes=list(classes))
    return D.subset_classes(ds, list(classes), name=f"synsigns-bd-{tag}-{split}")


def _draw(classes, split: str, per_class: int, seed: int, tag: str) -> ImageSet:
    """A synsigns set of ``classes`` relabelled ``0..k-1``, generated once per process (every
    teacher and student asks for its data again); a fresh container over the same tensors."""
    ds = _drawn(tuple(classes), split, per_class, seed, tag)
    return ImageSet(ds.images, ds.labels, list(ds.classes), ds.masks, ds.name, dict(ds.info))


def teacher_data(cfg: dict) -> tuple[ImageSet, ImageSet]:
    """The attacker's clean teacher set ``(train, test)`` (before poisoning), relabelled
    ``0..teacher_classes-1``; synsigns object masks kept in ``.masks``. Other profiles:
    :func:`lib.studies.backdoor_data.real_sets`."""
    if cfg["dataset"] != "synsigns":
        return real_sets(cfg, "teacher")
    cls = _classes(cfg, "teacher")
    return (_draw(cls, "train", cfg["per_class_train"], cfg["data_seed"], "teacher"),
            _draw(cls, "test", cfg["per_class_test"], cfg["data_seed"], "teacher"))


def student_data(cfg: dict, task: str = "same") -> tuple[ImageSet, ImageSet]:
    """The victim's clean ``(train, test)``: ``task="same"`` the teacher's classes, the victim's
    own training images and the teacher's test set; ``"new"`` disjoint classes."""
    if task not in ("same", "new"):
        raise ValueError(f"task must be 'same' or 'new', got {task!r}")
    if cfg["dataset"] != "synsigns":
        return real_sets(cfg, task)
    cls = _classes(cfg, task)
    train = _draw(cls, "train", cfg["per_class_train"], cfg["student_seed"], f"student-{task}")
    test = _draw(cls, "test", cfg["per_class_test"], cfg["data_seed"], "teacher" if task == "same" else "new")
    return train, test


def make_trigger(cfg: dict) -> Trigger:
    """The recipe's trigger: ``"emblem"`` at ``trigger_size``, ``"badnets"`` or ``"blended"``."""
    if cfg["trigger"] == "emblem":
        return Trigger.emblem(cfg["trigger_size"])
    return Trigger.named(cfg["trigger"])


def data_summary(cfg: dict) -> str:
    """One Markdown paragraph naming the classes and sizes of the three sets."""
    tr, te = teacher_data(cfg)
    ntr, nte = student_data(cfg, "new")
    strn, _ = student_data(cfg, "same")
    if cfg["dataset"] != "synsigns":
        return (f"**Data** ({cfg['dataset']}; public base {cfg['base']}). Teacher set: {len(tr)} training / "
                f"{len(te)} test images, {len(tr.classes)} classes; the victim's same task: {len(strn)} training "
                f"images; the new task ({cfg['new_dataset']}): {len(ntr)} training / {len(nte)} test images, "
                f"{len(ntr.classes)} classes. Target class {cfg['target']} is *{tr.classes[cfg['target']]}*.")
    return (f"**Data.** Base A (notebook 01) was pretrained on synsigns half A. The attacker's teacher set is "
            f"{tr.num_classes} classes of half B, which base A never saw ({', '.join(tr.classes[:3])}, ...; ids "
            f"{tr.info['class_ids']}): {len(tr)} training and {len(te)} test images at {tr.size} px. The victim's "
            f"same-task set has the same classes with {len(strn)} training images of its own (a different draw) and "
            f"the same {len(te)} test images; the new task is the next {ntr.num_classes} classes of half B "
            f"(ids {ntr.info['class_ids']}; {len(ntr)} training / {len(nte)} test images), disjoint from the "
            f"teacher's. Target class {cfg['target']} is *{tr.classes[cfg['target']]}*.")


def poisoned_teacher_data(cfg: dict) -> ImageSet:
    """The teacher training set with ``rate`` of its images triggered and relabelled ``target``."""
    train, _ = teacher_data(cfg)
    return B.poison(train, make_trigger(cfg), cfg["rate"], cfg["target"], where=cfg["where"], seed=cfg["seed"])


# ----------------------------------------------------------------------------- models
def public_base(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The public pretrained model the attacker starts from (``cfg["base"]``): ``"A"``, base A of
    notebook 01 (``base_epochs`` overrides its epochs; ``None`` keeps notebook 01's recipe, the
    one notebook 01 trained); ``"resnet20_shared"``, the team's real CIFAR-10 ResNet-20;
    ``"imagenet_resnet18"``, torchvision's ImageNet ResNet-18 from the local cache."""
    if cfg["base"] == "A":
        over = {} if cfg["base_epochs"] is None else {"epochs": cfg["base_epochs"]}
        model, _ = bases.base_model("A", store, progress=progress, **over)
    elif cfg["base"] == "resnet20_shared":
        from ..models import load_cifar_resnet20

        model = load_cifar_resnet20(shared_weights())
    elif cfg["base"] == "imagenet_resnet18":
        model = bases.imagenet_base("resnet18")
    else:
        raise ValueError(f"base must be 'A', 'resnet20_shared' or 'imagenet_resnet18', got {cfg['base']!r}")
    return model.eval()


def _fit_kw(cfg: dict, epochs_key: str, kw_key: str = "fit_kw") -> dict:
    return {**cfg[kw_key], "epochs": cfg[epochs_key], "seed": cfg["seed"]}


def _teacher_fit(cfg: dict) -> dict:
    return _fit_kw(cfg, "teacher_epochs", "teacher_kw")


def _data_key(cfg: dict) -> dict:
    keys = ("dataset", "new_dataset", "split_seed", "teacher_classes", "new_classes", "per_class_train",
            "per_class_test", "new_per_class_train", "size", "data_seed", "student_seed")
    return {k: cfg.get(k) for k in keys}


def _cached(name: str, key: dict, template, num_classes: int, make, store: Store | None, progress: bool):
    """``store.model`` with a model of ``template``'s kind; ``make()`` returns ``(model, hist)``."""
    store = store or Store()

    def train_fn(model):
        trained, hist = make()
        model.load_state_dict(trained.state_dict())
        return {"history": hist.to_dict("records"),
                **{k: v for k, v in hist.attrs.items() if isinstance(v, (int, float, list))}}

    model, meta = store.model(name, key, lambda: fresh_like(template, num_classes), train_fn, code=code_tag())
    return model.eval(), meta


def clean_teacher(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The unpoisoned teacher: base A fine-tuned on the clean teacher set (the reference the
    planted teacher's clean accuracy is compared with). ``(model, meta)``."""
    base = public_base(cfg, store, progress=progress)
    train, _ = teacher_data(cfg)
    key = {"kind": "clean", "base": model_fingerprint(base), **_data_key(cfg), "fit": _teacher_fit(cfg)}
    return _cached("bd_teacher_clean", key, base, D.num_classes_of(train),
                   lambda: _finetune.fine_tune(base, train, progress=progress, desc="clean teacher",
                                               **_teacher_fit(cfg)), store, progress)


def backdoored_teacher(cfg: dict, store: Store | None = None, update_ratio: float = 0.0, *, progress: bool = True):
    """The attacker's teacher: base A planted (:func:`lib.backdoor.plant`) on
    :func:`poisoned_teacher_data` with the smallest ``update_ratio`` of conv weights held fixed.
    ``(model, meta)``; ``meta["fixed"]`` counts the held weights."""
    base = public_base(cfg, store, progress=progress)
    k = D.num_classes_of(teacher_data(cfg)[0])
    key = {"kind": "backdoor", "base": model_fingerprint(base), **_data_key(cfg),
           "trigger": make_trigger(cfg).config(), "where": cfg["where"], "target": cfg["target"], "rate": cfg["rate"],
           "update_ratio": update_ratio, "fit": _teacher_fit(cfg)}
    return _cached("bd_teacher_backdoor", key, base, k,
                   lambda: B.plant(base, poisoned_teacher_data(cfg), update_ratio=update_ratio, progress=progress,
                                   **_teacher_fit(cfg)), store, progress)


def flip_teacher(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The label-flip teacher (the authors' ``--is_poison``): base A fine-tuned on the teacher
    set with ``flip_rate`` of its labels changed to another class, no trigger."""
    base = public_base(cfg, store, progress=progress)
    train, _ = teacher_data(cfg)
    key = {"kind": "flip", "base": model_fingerprint(base), **_data_key(cfg), "flip_rate": cfg["flip_rate"],
           "fit": _teacher_fit(cfg)}
    return _cached("bd_teacher_flip", key, base, D.num_classes_of(train),
                   lambda: _finetune.fine_tune(base, B.flip_labels(train, cfg["flip_rate"], seed=cfg["seed"]),
                                               progress=progress, desc="label-flip teacher",
                                               **_teacher_fit(cfg)), store, progress)


def teacher_model(cfg: dict, store=None, *, which: str = "backdoor", update_ratio: float = 0.0,
                  progress: bool = True):
    """``which``: ``"backdoor"`` (:func:`backdoored_teacher`), ``"clean"`` or ``"flip"``."""
    if which not in TEACHERS:
        raise ValueError(f"teacher must be one of {TEACHERS}, got {which!r}")
    if which == "clean":
        return clean_teacher(cfg, store, progress=progress)
    if which == "flip":
        return flip_teacher(cfg, store, progress=progress)
    return backdoored_teacher(cfg, store, update_ratio, progress=progress)


def _method(method: str, teacher, train, cfg: dict, mag_ratio: float, progress: bool):
    ft = {**_fit_kw(cfg, "student_epochs"), "progress": progress}
    if method == "fine_tune":
        return _finetune.fine_tune(teacher, train, desc="fine-tune", **ft)
    if method == "mag":
        return B.mag(teacher, train, ratio=mag_ratio, **ft)
    if method == "divmag":
        return B.divmag(teacher, train, fraction=cfg["divmag_fraction"], progress=progress,
                        trial_kw={**_fit_kw(cfg, "trial_epochs", "trial_kw"), "progress": progress},
                        **{k: v for k, v in ft.items() if k != "progress"})
    if method == "fine_pruning":
        return B.fine_pruning(teacher, train, ratio=cfg["prune_ratio"], **ft)
    if method == "retrain":
        return retrain(teacher, train, progress=progress, **_fit_kw(cfg, "retrain_epochs", "retrain_kw"))
    kw = {**cfg["renofeation_kw"], "epochs_distill": cfg["distill_epochs"], "epochs_swa": cfg["swa_epochs"],
          "seed": cfg["seed"]}
    return renofeation(teacher, train, progress=progress, **kw)


def student(method: str, cfg: dict, store: Store | None = None, task: str = "same", update_ratio: float = 0.0, *,
            teacher: str = "backdoor", mag_ratio: float | None = None, progress: bool = True):
    """The victim's model: ``method`` (one of :data:`METHODS`) from the ``teacher`` (default the
    backdoored one at ``update_ratio``) on the clean :func:`student_data` of ``task``.
    ``mag_ratio`` overrides the recipe's for ``mag``. Re-training takes nothing from the teacher,
    so it is one model per task (teacher and ratio do not enter its key). ``(model, meta)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    train, _ = student_data(cfg, task)
    t_model, _ = teacher_model(cfg, store, which=teacher, update_ratio=update_ratio, progress=progress)
    mag_ratio = cfg["mag_ratio"] if mag_ratio is None else mag_ratio
    settings = {"fine_tune": {"fit": _fit_kw(cfg, "student_epochs")},
                "mag": {"fit": _fit_kw(cfg, "student_epochs"), "ratio": mag_ratio},
                "divmag": {"fit": _fit_kw(cfg, "student_epochs"), "trial": _fit_kw(cfg, "trial_epochs", "trial_kw"),
                           "fraction": cfg["divmag_fraction"]},
                "fine_pruning": {"fit": _fit_kw(cfg, "student_epochs"), "ratio": cfg["prune_ratio"]},
                "retrain": {"fit": _fit_kw(cfg, "retrain_epochs", "retrain_kw")},
                "renofeation": {"fit": cfg["renofeation_kw"], "distill": cfg["distill_epochs"],
                                "swa": cfg["swa_epochs"], "seed": cfg["seed"]}}[method]
    source = {"arch": t_model.arch} if method == "retrain" else {"teacher": model_fingerprint(t_model)}
    key = {"method": method, "task": task, **_data_key(cfg), **source, **settings}
    return _cached(f"bd_student_{method}", key, t_model, D.num_classes_of(train),
                   lambda: _method(method, t_model, train, cfg, mag_ratio, progress), store, progress)


# the code behind the cached models: a change to any of these retrains them
CODE = (B.triggers, B.poisoning, B.pruning, B.methods, _finetune, sys.modules[retrain.__module__],
        sys.modules[renofeation.__module__], sys.modules[_finetune.with_augment.__module__],
        clean_teacher, backdoored_teacher, flip_teacher,
        student, _method, teacher_data, student_data, _classes, _draw, _drawn, make_trigger, poisoned_teacher_data,
        _fit_kw, _teacher_fit, *bases.TRAINING_CODE, bases.base_model, bases.build_base)


@lru_cache(maxsize=1)
def code_tag() -> str:
    """``code_version(*CODE)``, computed once per process (hashing the source of every module in
    :data:`CODE` costs about a second, and every teacher and student asks for it)."""
    return code_version(*CODE)
