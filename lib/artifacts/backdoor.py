"""Notebook 05's models: the clean, planted and label-flip teachers and each method's student.

Smoke profile (embedded ``synsigns``, 32 px). The public pretrained model is **base A** of
notebook 01 (asked for with the run's notebook-01 recipe, ``recipe["needs"]["01"]``, with
``base_epochs`` on top when set). The attacker's teacher set and both victim sets come from the
*other* half (B), which base A never saw, as GTSRB is new to an ImageNet model:

- teacher set: the first ``teacher_classes`` classes of half B, drawn with ``data_seed``;
- student task ``"same"``: the same classes, the victim's own images (``student_seed``; the
  authors' final scripts reuse the teacher's dataset), and the teacher's test set;
- student task ``"new"``: the next ``new_classes`` classes of half B (disjoint from the teacher's:
  the authors' earlier GTSRB -> MIT-67 / CUB plan).

Full profile: ImageNet ResNet-18 planted on GTSRB at 224 px, students on GTSRB (same) and a new
task (MIT-67 or CUB-200), the recipe's classes and per-class counts read into memory; the real
and full profiles' sets are :mod:`lib.artifacts.backdoor_data`.

Every model is cached in the store under a key of the recipe entries its training reads, the
pretrained weights' fingerprint and the computed code version of this module, so notebook 06
loads what notebook 05 trained by calling the same functions with the run's notebook-05 recipe.
Each transfer method is one entry of :data:`METHOD_TABLE`.
"""
from __future__ import annotations

from functools import lru_cache

from .. import backdoor, data
from ..backdoor import Trigger
from ..data import ImageSet
from ..evaluate.own_teacher import load_teacher
from ..models import fresh_like, model_fingerprint
from ..store import Store
from ..store.versions import module_version
from ..transfer import finetune, renofeation, retrain
from .backdoor_data import real_sets, shared_weights
from .bases import base_model, halves, imagenet_base

TEACHERS = ("backdoor", "clean", "flip")


def _classes(cfg: dict, task: str) -> list[int]:
    half_b = halves(cfg["split_seed"])["B"]
    k, m = cfg["teacher_classes"], cfg["new_classes"]
    if k + m > len(half_b):
        raise ValueError(f"teacher_classes + new_classes = {k + m} exceeds the {len(half_b)} classes of half B")
    return half_b[:k] if task in ("teacher", "same") else half_b[k:k + m]


@lru_cache(maxsize=32)
def _drawn(classes: tuple, split: str, per_class: int, seed: int, tag: str) -> ImageSet:
    ds = data.load_synsigns(split, n=len(classes) * per_class, seed=seed, classes=list(classes))
    return data.subset_classes(ds, list(classes), name=f"synsigns-bd-{tag}-{split}")


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


def poisoned_teacher_data(cfg: dict) -> ImageSet:
    """The teacher training set with ``rate`` of its images triggered and relabelled ``target``."""
    train, _ = teacher_data(cfg)
    return backdoor.poison(train, make_trigger(cfg), cfg["rate"], cfg["target"], where=cfg["where"], seed=cfg["seed"])


# ----------------------------------------------------------------------------- models
def public_base(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The public pretrained model the attacker starts from (``cfg["base"]``): ``"A"``, base A of
    notebook 01 under ``cfg["needs"]["01"]`` (``base_epochs`` overrides its epochs; ``None`` keeps
    notebook 01's recipe, the one notebook 01 trained); ``"resnet20_shared"``, the team's real CIFAR-10 ResNet-20;
    ``"imagenet_resnet18"``, torchvision's ImageNet ResNet-18 from the local cache. ``cfg["yours"]``, when
    set, is your own pretrained network instead (:func:`lib.evaluate.own_teacher.load_teacher`)."""
    if cfg.get("yours"):  # your own pretrained network (lib.evaluate.own_teacher), in place of cfg["base"]
        model, _ = load_teacher(cfg["yours"], cfg["size"], key="bd_yours")
    elif cfg["base"] == "A":
        over = {} if cfg["base_epochs"] is None else {"epochs": cfg["base_epochs"]}
        model, _ = base_model("A", {**cfg["needs"]["01"], **over}, store, progress=progress)
    elif cfg["base"] == "resnet20_shared":
        from ..models import load_cifar_resnet20

        model = load_cifar_resnet20(shared_weights())
    elif cfg["base"] == "imagenet_resnet18":
        model = imagenet_base("resnet18")
    else:
        raise ValueError(f"base must be 'A', 'resnet20_shared' or 'imagenet_resnet18', got {cfg['base']!r}")
    return model.eval()


def _fit_kw(cfg: dict, epochs_key: str, kw_key: str = "fit_kw") -> dict:
    return {**cfg[kw_key], "epochs": cfg[epochs_key], "seed": cfg["seed"], "batch_size": cfg["batch_size"]}


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

    key = {**key, "code": module_version(__name__)}
    model, meta = store.model(name, key, lambda: fresh_like(template, num_classes), train_fn)
    return model.eval(), meta


def clean_teacher(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The unpoisoned teacher: base A fine-tuned on the clean teacher set (the reference the
    planted teacher's clean accuracy is compared with). ``(model, meta)``."""
    base = public_base(cfg, store, progress=progress)
    train, _ = teacher_data(cfg)
    key = {"kind": "clean", "base": model_fingerprint(base), **_data_key(cfg), "fit": _teacher_fit(cfg)}
    return _cached("bd_teacher_clean", key, base, data.num_classes_of(train),
                   lambda: finetune.fine_tune(base, train, progress=progress, desc="clean teacher",
                                               **_teacher_fit(cfg)), store, progress)


def backdoored_teacher(cfg: dict, store: Store | None = None, update_ratio: float = 0.0, *, keep=None,
                       progress: bool = True):
    """The attacker's teacher: base A planted (:func:`lib.backdoor.plant`) on
    :func:`poisoned_teacher_data` with the smallest ``update_ratio`` of conv weights held fixed.
    ``keep`` (indices into the poisoned set; ``None``: all): train on those images only, the set
    a data curator left after removing what a detector flagged (notebook 08).
    ``(model, meta)``; ``meta["fixed"]`` counts the held weights."""
    base = public_base(cfg, store, progress=progress)
    k = data.num_classes_of(teacher_data(cfg)[0])
    key = {"kind": "backdoor", "base": model_fingerprint(base), **_data_key(cfg),
           "trigger": make_trigger(cfg).config(), "where": cfg["where"], "target": cfg["target"], "rate": cfg["rate"],
           "update_ratio": update_ratio, "fit": _teacher_fit(cfg)}
    if keep is not None:
        keep = sorted(int(i) for i in keep)
        key["keep"] = keep

    def make():
        poisoned = poisoned_teacher_data(cfg)
        train = poisoned if keep is None else poisoned.subset(keep, name=f"{poisoned.name}-cleaned")
        return backdoor.plant(base, train, update_ratio=update_ratio, progress=progress, **_teacher_fit(cfg))

    return _cached("bd_teacher_backdoor", key, base, k, make, store, progress)


def flip_teacher(cfg: dict, store: Store | None = None, *, progress: bool = True):
    """The label-flip teacher (the authors' ``--is_poison``): base A fine-tuned on the teacher
    set with ``flip_rate`` of its labels changed to another class, no trigger."""
    base = public_base(cfg, store, progress=progress)
    train, _ = teacher_data(cfg)
    key = {"kind": "flip", "base": model_fingerprint(base), **_data_key(cfg), "flip_rate": cfg["flip_rate"],
           "fit": _teacher_fit(cfg)}
    return _cached("bd_teacher_flip", key, base, data.num_classes_of(train),
                   lambda: finetune.fine_tune(base, backdoor.flip_labels(train, cfg["flip_rate"], seed=cfg["seed"]),
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


def _renofeation_kw(cfg: dict) -> dict:
    return {**cfg["renofeation_kw"], "epochs_distill": cfg["distill_epochs"], "epochs_swa": cfg["swa_epochs"],
            "seed": cfg["seed"], "batch_size": cfg["batch_size"]}


# method -> (its training function, its keyword arguments under a recipe and the mag ratio); the
# arguments are the student's key too, so adding a method is adding its row here
METHOD_TABLE = {
    "fine_tune": (finetune.fine_tune, lambda cfg, ratio: _fit_kw(cfg, "student_epochs")),
    "mag": (backdoor.mag, lambda cfg, ratio: {**_fit_kw(cfg, "student_epochs"), "ratio": ratio}),
    "divmag": (backdoor.divmag, lambda cfg, ratio: {**_fit_kw(cfg, "student_epochs"),
                                                    "fraction": cfg["divmag_fraction"],
                                                    "trial_kw": _fit_kw(cfg, "trial_epochs", "trial_kw")}),
    "retrain": (retrain, lambda cfg, ratio: _fit_kw(cfg, "retrain_epochs", "retrain_kw")),
    "renofeation": (renofeation, lambda cfg, ratio: _renofeation_kw(cfg)),
    "fine_pruning": (backdoor.fine_pruning, lambda cfg, ratio: {**_fit_kw(cfg, "student_epochs"),
                                                                "ratio": cfg["prune_ratio"]}),
}
METHODS = list(METHOD_TABLE)


def student(method: str, cfg: dict, store: Store | None = None, task: str = "same", update_ratio: float = 0.0, *,
            teacher: str = "backdoor", mag_ratio: float | None = None, progress: bool = True):
    """The victim's model: ``method`` (one of :data:`METHODS`) from the ``teacher`` (default the
    backdoored one at ``update_ratio``) on the clean :func:`student_data` of ``task``.
    ``mag_ratio`` overrides the recipe's for ``mag``. Re-training takes nothing from the teacher,
    so it is one model per task (teacher and ratio do not enter its key). ``(model, meta)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    t_model, _ = teacher_model(cfg, store, which=teacher, update_ratio=update_ratio, progress=progress)
    return student_from(t_model, method, cfg, store, task, mag_ratio=mag_ratio, progress=progress)


def student_from(t_model, method: str, cfg: dict, store: Store | None = None, task: str = "same", *,
                 mag_ratio: float | None = None, progress: bool = True):
    """:func:`student` from a given teacher model ``t_model`` (notebook 08: a teacher purified
    before transfer); stored under the same key rule, by the teacher's weights. ``(model, meta)``."""
    train, _ = student_data(cfg, task)
    mag_ratio = cfg["mag_ratio"] if mag_ratio is None else mag_ratio
    fn, settings = METHOD_TABLE[method]
    kw = settings(cfg, mag_ratio)
    source = {"arch": t_model.arch} if method == "retrain" else {"teacher": model_fingerprint(t_model)}
    key = {"method": method, "task": task, **_data_key(cfg), **source, "settings": kw}
    return _cached(f"bd_student_{method}", key, t_model, data.num_classes_of(train),
                   lambda: fn(t_model, train, progress=progress, **kw), store, progress)


