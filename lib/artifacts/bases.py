"""Notebook 01's models: base A and base B, asked for by every later notebook through the store.

Smoke profile: the embedded ``synsigns`` classes are split into two disjoint random halves
(Yosinski et al. 2014): **A** (the source task) and **B** (the target task). Base A is trained
on A, base B on B, each with the shared ``fit`` loop; both are cached in the store under a key
that holds the recipe's training entries and the computed code version, so a later notebook
asking with the same recipe gets the same weights without retraining.

Full profile: the bases are torchvision's ImageNet-pretrained models (:func:`imagenet_base`),
read from the local torch cache.
"""
from __future__ import annotations

from .. import data
from ..models import build
from ..store import Store
from ..store.versions import module_version
from ..train import evaluate, fit, random_translate

# entries of notebook 01's recipe that no training reads (its headline floor, the full profile's
# list of ImageNet models, the recipes of other notebooks): left out of the key and of what
# training sees, so a training setting cannot be dropped without a KeyError
NOT_TRAINING = ("min_over_chance", "imagenet_archs", "needs")


def training_recipe(recipe: dict) -> dict:
    """``recipe`` without :data:`NOT_TRAINING`: what a base's training reads and its key holds."""
    return {k: v for k, v in recipe.items() if k not in NOT_TRAINING}


def halves(split_seed: int = 0) -> dict[str, list[int]]:
    """The synsigns class ids of the source half ``A`` and the target half ``B``."""
    a, b = data.source_target_split(len(data.SYNSIGNS_CLASSES), seed=split_seed)
    return {"A": a, "B": b}


def class_data(classes, per_class_train: int, per_class_test: int, *, size: int = 32, seed: int = 0,
               tag: str = "") -> tuple[data.ImageSet, data.ImageSet]:
    """synsigns train and test sets of ``classes``, relabelled to ``0..len(classes)-1``."""
    sets = []
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        ds = data.load_synsigns(split, n=len(classes) * per, size=size, seed=seed, classes=classes)
        sets.append(data.subset_classes(ds, classes, name=f"synsigns-{tag}-{split}"))
    return sets[0], sets[1]


def half_data(half: str, recipe: dict) -> tuple[data.ImageSet, data.ImageSet]:
    """Train and test sets of one half under notebook 01's ``recipe``, relabelled to ``0..len(half)-1``."""
    return class_data(halves(recipe["split_seed"])[half], recipe["per_class_train"], recipe["per_class_test"],
                      size=recipe["size"], seed=recipe["data_seed"], tag=half)


def build_base(recipe: dict, num_classes: int):
    """The untrained base network (initial weights from the recipe's seed)."""
    kw = {"width": recipe["width"]} if recipe["arch"] == "small_cnn" else {}
    return build(recipe["arch"], num_classes, seed=recipe["seed"], **kw)


def base_model(half: str, recipe: dict, store: Store | None = None, *, progress: bool = True,
               retrain: bool = False):
    """Base ``half`` (``"A"`` or ``"B"``) trained with notebook 01's ``recipe`` (smoke profile).

    Returns ``(model, meta)``; ``meta`` holds the recipe, the class ids, the per-epoch history
    and the test accuracy. Trained once, then loaded from the store.
    """
    if half not in ("A", "B"):
        raise ValueError(f"half must be 'A' or 'B', got {half!r}")
    cfg = training_recipe(recipe)
    store = store or Store()
    train, test = half_data(half, cfg)

    def train_fn(model):
        hist = fit(model, train, val=test, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                   weight_decay=cfg["weight_decay"],
                   augment=random_translate(cfg["translate"]) if cfg["translate"] else None,
                   seed=cfg["seed"], progress=progress, desc=f"base {half}")
        return {"recipe": cfg, "half": half, "classes": halves(cfg["split_seed"])[half],
                "history": hist.to_dict("records"), "test_acc": evaluate(model, test)["acc"]}

    key = {"half": half, **cfg, "init": "seeded", "code": module_version(__name__)}
    return store.model(f"base_{half}", key, lambda: build_base(cfg, train.num_classes), train_fn, retrain=retrain)


def imagenet_base(arch: str, num_classes: int = 1000):
    """torchvision ``arch`` with ImageNet weights from the local torch cache (full profile).

    Raises :class:`lib.models.PretrainedWeightsMissing` naming the file to place when absent.
    """
    return build(arch, num_classes, pretrained=True)
