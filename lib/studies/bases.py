"""Study of notebook 01: the pretrained bases, asked for by every later notebook through the store.

Smoke profile: the embedded ``synsigns`` classes are split into two disjoint random halves
(Yosinski et al. 2014): **A** (the source task) and **B** (the target task). Base A is trained
on A, base B on B, each with the shared ``fit`` loop; both are cached in the store under a key
that hashes the whole recipe, so a later notebook gets the same weights without retraining.

Full profile: the bases are torchvision's ImageNet-pretrained models (``imagenet_base``), read
from the local torch cache.
"""
from __future__ import annotations

from .. import data as D
from .. import train as _train
from ..metrics import accuracy
from .. import models
from ..data import splits, synsigns
from ..models import archs, build, classifier, copies
from ..store import Store
from ..train import evaluate, fit, random_translate
from . import recipe as _recipe

IMAGENET_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "densenet121")
RECIPE = {
    # synsigns halves, small CNN: a 2-core CPU trains one base in about a minute
    "smoke": {"dataset": "synsigns", "arch": "small_cnn", "width": 32, "size": 32,
              "per_class_train": 50, "per_class_test": 20, "split_seed": 0, "data_seed": 0,
              "epochs": 12, "lr": 0.1, "batch_size": 128, "weight_decay": 5e-4, "translate": 3, "seed": 0,
              "min_over_chance": 10},
    # torchvision's ImageNet models from the local torch cache
    "full": {"archs": list(IMAGENET_ARCHS), "min_over_chance": 10},
}
_UNKEYED = ("min_over_chance",)  # recipe entries that do not change a base's weights
# notebook parameter -> recipe key (names unique in the workbook; see lib.studies.check_params)
PARAMS = {"base_epochs": "epochs", "base_per_class_train": "per_class_train", "base_per_class_test": "per_class_test",
          "base_width": "width", "base_lr": "lr", "base_seed": "seed", "base_min_over_chance": "min_over_chance",
          "base_imagenet_archs": "archs"}


def recipe(**overrides) -> dict:
    """The smoke recipe of the bases with ``overrides`` applied (unknown keys are an error)."""
    return _recipe(RECIPE, "smoke", **overrides)


def halves(cfg: dict) -> dict[str, list[int]]:
    """The synsigns class ids of the source half ``A`` and the target half ``B``."""
    a, b = D.source_target_split(len(D.SYNSIGNS_CLASSES), seed=cfg["split_seed"])
    return {"A": a, "B": b}


def class_data(classes, per_class_train: int, per_class_test: int, *, size: int = 32, seed: int = 0,
               tag: str = "") -> tuple[D.ImageSet, D.ImageSet]:
    """synsigns train and test sets of ``classes``, relabelled to ``0..len(classes)-1``."""
    sets = []
    for split, per in (("train", per_class_train), ("test", per_class_test)):
        ds = D.load_synsigns(split, n=len(classes) * per, size=size, seed=seed, classes=classes)
        sets.append(D.subset_classes(ds, classes, name=f"synsigns-{tag}-{split}"))
    return sets[0], sets[1]


def half_data(half: str, cfg: dict) -> tuple[D.ImageSet, D.ImageSet]:
    """Train and test sets of one half, relabelled to ``0..len(half)-1``."""
    return class_data(halves(cfg)[half], cfg["per_class_train"], cfg["per_class_test"], size=cfg["size"],
                      seed=cfg["data_seed"], tag=half)


def build_base(cfg: dict, num_classes: int):
    kw = {"width": cfg["width"]} if cfg["arch"] == "small_cnn" else {}
    return build(cfg["arch"], num_classes, seed=cfg["seed"], **kw)  # initial weights from the recipe's seed


def base_model(half: str = "A", store: Store | None = None, *, progress: bool = True, retrain: bool = False,
               **overrides):
    """Base ``half`` (``"A"`` or ``"B"``) trained with the smoke recipe (plus ``overrides``).

    Returns ``(model, meta)``; ``meta`` holds the recipe, the class ids, the per-epoch history
    and the test accuracy. Trained once, then loaded from the store.
    """
    if half not in ("A", "B"):
        raise ValueError(f"half must be 'A' or 'B', got {half!r}")
    cfg = recipe(**overrides)
    store = store or Store()
    train, test = half_data(half, cfg)

    def train_fn(model):
        hist = fit(model, train, val=test, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                   weight_decay=cfg["weight_decay"],
                   augment=random_translate(cfg["translate"]) if cfg["translate"] else None,
                   seed=cfg["seed"], progress=progress, desc=f"base {half}")
        return {"recipe": cfg, "half": half, "classes": halves(cfg)[half],
                "history": hist.to_dict("records"), "test_acc": evaluate(model, test)["acc"]}

    # "init": the initial weights are seeded (before, they came from the caller's RNG state, so
    # base A differed between runs); the key changes so that no unseeded base is reused
    key = {"half": half, **{k: v for k, v in cfg.items() if k not in _UNKEYED}, "init": "seeded"}
    return store.model(f"base_{half}", key, lambda: build_base(cfg, train.num_classes), train_fn,
                       retrain=retrain, code=CODE)


def imagenet_base(arch: str, num_classes: int = 1000):
    """torchvision ``arch`` with ImageNet weights from the local torch cache (full profile).

    Raises :class:`lib.models.PretrainedWeightsMissing` naming the file to place when absent.
    """
    return build(arch, num_classes, pretrained=True)


def imagenet_r_accuracy(model, root=None, batch_size: int = 128, progress: bool = True) -> float:
    """Top-1 accuracy of a 1000-class ImageNet model on ImageNet-R's test split, with the logits
    restricted to the 200 ImageNet-R classes (Hendrycks et al. 2021)."""
    import torch

    from ..data.real import IMAGENET_R_TO_IMAGENET1K, load_real
    from ..train import predict

    ds = load_real("imagenet_r", "test", root=root, size=224, label_space="imagenet_r")
    logits, y = predict(model, ds, batch_size=batch_size, progress=progress)
    pred = logits[:, torch.as_tensor(IMAGENET_R_TO_IMAGENET1K)].argmax(1)
    return accuracy(pred, y)


def shared_resnet20_check() -> dict | None:
    """The team's real CIFAR-10 ResNet-20 (``../shared/weights``) through our ``resnet20`` builder,
    evaluated on the real CIFAR-10 JPEG subset; ``None`` when ``../shared`` is absent."""
    from ..data import to_imageset
    from ..data.real import load_real
    from ..models import load_cifar_resnet20
    from ..paths import shared_dir

    shared = shared_dir()
    weights = shared / "weights/resnet20-cifar10/resnet20-12fca82f.th" if shared else None
    images = shared / "data/cifar10-jpg-subset" if shared else None
    if not (weights and weights.is_file() and images.is_dir()):
        return None
    model = load_cifar_resnet20(weights)
    test = to_imageset(load_real("cifar10_folder", "test", root=images), name="cifar10-jpg-test", progress=False)
    return {"base": "shared resnet20 (CIFAR-10)", "arch": "resnet20", "classes": 10,
            "params": sum(p.numel() for p in model.parameters()), "test_acc": evaluate(model, test)["acc"],
            "chance": 0.1, "data": "real CIFAR-10 JPEG subset (1,000 test images)"}


# the code behind the cached bases (the training functions, not the whole study module, so that
# editing a check or a figure helper retrains nothing): a change to any of these retrains them
TRAINING_CODE = (_train, models, classifier, archs, copies, synsigns, splits)  # loop, models, data
CODE = (base_model, build_base, half_data, class_data, halves, *TRAINING_CODE)
