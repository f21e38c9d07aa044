"""Notebook 02's models: the pretrained teacher, the target task and each method's student.

Smoke profile: the teacher is base A of notebook 01 (:mod:`lib.artifacts.bases`, asked for with
the run's notebook-01 recipe, ``recipe["needs"]["01"]``); the target task is synsigns half B
(disjoint classes, as in Yosinski et al. and as ImageNet -> CUB-200 in the Renofeation study),
which also serves the AnB sweep, with base B as its reference. Real profile: the shared CIFAR-10
ResNet-20 transferred to the shared GTSRB subset at 32 px, which also serves the AnB sweep with the
re-trained ResNet-20 as base B. Full profile: torchvision's ImageNet ``arch`` transferred to a real
``dataset`` at 224 px at the seed's budgets.

A student is :func:`lib.transfer.transfer_model` (keyed by the method, the teacher's weights, the
training data, every setting and the method's computed code version) with the recipe's settings for
that method (:func:`method_kw`); notebook 06 asks for notebook 02's students through :func:`student`
with the run's notebook-02 recipe, so it gets exactly the models notebook 02 trained.
"""
from __future__ import annotations

from ..data import ImageSet
from ..data.real import load_real
from ..evaluate.own_teacher import load_teacher
from ..store import Store
from ..train import evaluate
from ..transfer import transfer_model
from .bases import base_model, half_data, imagenet_base

FULL_TARGETS = ("cub200", "flowers102", "stanford_dogs", "stanford40", "mit67", "gtsrb")
FULL_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2")
METHODS = ["fine_tune", "linear_probe", "l2_sp", "delta", "retrain", "renofeation"]


def full_kw(method: str, settings: dict, n_train: int) -> dict:
    """``settings`` (the full recipe's ``method_kw[method]``: the seed's iteration budgets) with
    every iteration budget turned into epochs over ``n_train`` images at its batch size."""
    p = dict(settings)
    bs = p["batch_size"]

    def epochs(it):
        return max(1, round(it * bs / n_train))

    for key, out in (("iterations", "epochs"), ("distill_iterations", "epochs_distill"),
                     ("swa_iterations", "epochs_swa"), ("swa_freq_iterations", "swa_every")):
        if key in p:
            p[out] = epochs(p.pop(key))
    return p


def method_kw(method: str, recipe: dict, n_train: int) -> dict:
    """The keyword arguments of ``method`` under notebook 02's ``recipe`` (full: :func:`full_kw`)."""
    if "arch" in recipe:
        return full_kw(method, recipe["method_kw"][method], n_train)
    return dict(recipe["method_kw"][method])


def setup(recipe: dict, store: Store | None = None, *, progress: bool = True, anb_dataset: str | None = None,
          root=None, anb_root=None, base_b_kw: dict | None = None) -> dict:
    """Teacher, base B and target data of notebook 02 under its ``recipe`` (see the module docstring).

    Full profile (``"arch"`` in the recipe): the teacher is torchvision's ImageNet ``arch`` (local
    weights, or :class:`lib.models.PretrainedWeightsMissing`); the fine-tuning target is the real
    ``dataset`` (one of :data:`FULL_TARGETS`, its shipped layout under ``data/`` or ``root``) at
    the recipe's ``size`` (224) px with training augmentation; the AnB target is ``anb_dataset``
    (default ImageNet-R, 200 classes, its seeded 80/20 split) whose base B is ``arch`` re-trained from scratch on it
    (cached; ``base_b_kw`` its options, default the seed's re-training budget).

    ``recipe["yours"]`` (your own pretrained network, :func:`lib.evaluate.own_teacher.load_teacher`)
    replaces the teacher of the six methods; the AnB sweep keeps base A (or the ImageNet ``arch``), since
    it compares block transfer between two networks of one architecture (``"anb_teacher"``).

    Returns ``{"teacher", "anb_teacher", "train", "test", "base_b", "base_b_acc", "anb_train", "anb_test",
    "target", "yours"}`` (``target``: one sentence naming the target task; ``yours``: the info of your
    teacher, else None).
    """
    out = _setup(recipe, store or Store(), progress, anb_dataset, root, anb_root, base_b_kw)
    out["anb_teacher"], out["yours"] = out["teacher"], None
    if recipe.get("yours"):
        size = getattr(out["train"], "size", None) or recipe["size"]
        out["teacher"], out["yours"] = load_teacher(recipe["yours"], size, key="transfer_yours")
        out["target"] += f"; the teacher of the six methods is yours: {out['yours']['name']}"
    return out


def shared_gtsrb() -> tuple[ImageSet, ImageSet]:
    """The team's GTSRB subset (``../shared/data/gtsrb-32-subset``: 43 classes, 2,580 training and
    1,290 test images at 32 px) as in-memory sets; a FileNotFoundError that says where it belongs."""
    from ..data import to_imageset
    from ..paths import shared_dir

    root = shared_dir() / "data/gtsrb-32-subset" if shared_dir() else None
    if root is None or not root.is_dir():
        raise FileNotFoundError("notebook 02's real recipe reads ../shared/data/gtsrb-32-subset: put the team's shared "
                                "folder beside the project (or set WORKBOOK_SHARED)")
    return tuple(to_imageset(load_real("gtsrb", split, root=root, size=32), name=f"gtsrb32-{split}", progress=False)
                 for split in ("train", "test"))


def _setup(recipe: dict, store: Store, progress: bool, anb_dataset, root, anb_root, base_b_kw) -> dict:
    if recipe.get("base") == "resnet20_shared":  # real: the shared ResNet-20 to the shared GTSRB subset
        from .backdoor_data import shared_weights
        from ..models import load_cifar_resnet20
        teacher = load_cifar_resnet20(shared_weights()).eval()
        train, test = shared_gtsrb()
        base_b, _ = student("retrain", recipe, teacher, train, store=store, progress=progress)  # the same model
        return {"teacher": teacher, "train": train, "test": test, "base_b": base_b.eval(),
                "base_b_acc": evaluate(base_b, test)["acc"], "anb_train": train, "anb_test": test,
                "target": f"the shared GTSRB subset: {train.num_classes} classes, {len(train)} train / {len(test)} "
                          f"test images at 32 px, from the shared CIFAR-10 ResNet-20; AnB on the same task"}
    if "arch" not in recipe:
        bases = recipe["needs"]["01"]
        teacher, _ = base_model("A", bases, store, progress=progress)
        base_b, meta_b = base_model("B", bases, store, progress=progress)
        train, test = half_data("B", bases)
        return {"teacher": teacher.eval(), "train": train, "test": test, "base_b": base_b.eval(),
                "base_b_acc": meta_b["test_acc"], "anb_train": train, "anb_test": test,
                "target": f"synsigns half B: {train.num_classes} classes disjoint from base A's "
                          f"{teacher.num_classes}, {len(train)} train / {len(test)} test images at {train.size} px"}
    arch, dataset = recipe["arch"], recipe["dataset"]
    if dataset not in FULL_TARGETS:
        raise ValueError(f"dataset must be one of {FULL_TARGETS}, got {dataset!r}")
    teacher = imagenet_base(arch).eval()
    size = recipe["size"]
    train = load_real(dataset, "train", root=root, size=size, train_augment=True)
    test = load_real(dataset, "test", root=root, size=size)
    anb_dataset = anb_dataset or "imagenet_r"
    space = {"label_space": "imagenet_r"} if anb_dataset == "imagenet_r" else {}
    anb_train = load_real(anb_dataset, "train", root=anb_root, size=size, train_augment=True, **space)
    anb_test = load_real(anb_dataset, "test", root=anb_root, size=size, **space)
    kw = full_kw("retrain", recipe["method_kw"]["retrain"], len(anb_train)) if base_b_kw is None else base_b_kw
    base_b, _ = transfer_model("retrain", teacher, anb_train, store=store, progress=progress, **kw)
    return {"teacher": teacher, "train": train, "test": test, "base_b": base_b,
            "base_b_acc": evaluate(base_b, anb_test)["acc"], "anb_train": anb_train, "anb_test": anb_test,
            "target": f"{dataset} ({len(train.classes)} classes, {len(train)} train / {len(test)} test "
                      f"images at {size} px) from ImageNet {arch}; AnB on {anb_dataset}"}


def student(method: str, recipe: dict, teacher, train: ImageSet, *, seed: int | None = None,
            store: Store | None = None, progress: bool = True, **override):
    """``method``'s student of ``teacher`` on ``train`` with notebook 02's settings for it
    (:func:`method_kw`; ``override`` replaces some of them: tests use short budgets) at ``seed``
    (default the recipe's). ``(model, meta)``, trained once and then loaded from the store. With your
    own teacher (``recipe["yours"]``) Renofeation distils its stages but the last, as the recipe's
    ``stages`` do for base A's."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    kw = {**method_kw(method, recipe, len(train)), **override}
    if recipe.get("yours") and "stages" in kw and "stages" not in override:
        # the recipe's stages name base A's blocks: for your teacher, the same rule (every stage but the last)
        kw["stages"] = teacher.stages[:-1] or teacher.stages
    return transfer_model(method, teacher, train, seed=recipe["seed"] if seed is None else seed, store=store,
                          progress=progress, **kw)
