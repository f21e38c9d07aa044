"""Study of notebook 01: the pretrained bases, asked for by every later notebook through the store.

The models themselves are :mod:`lib.artifacts.bases` (base A and base B on the synsigns halves,
torchvision's ImageNet models in the full profile); this module holds their recipe, the ImageNet-R
accuracy of the full profile's bases and the check of the team's real CIFAR-10 ResNet-20.
"""
from __future__ import annotations

from ..metrics import accuracy
from ..train import evaluate
from . import notebook_params
from . import recipe as _recipe

IMAGENET_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "densenet121")
RECIPE = {
    # synsigns halves, small CNN: a 2-core CPU trains one base in about a minute
    "smoke": {"dataset": "synsigns", "arch": "small_cnn", "width": 32, "size": 32,
              "per_class_train": 50, "per_class_test": 20, "split_seed": 0, "data_seed": 0,
              "epochs": 12, "lr": 0.1, "batch_size": 128, "weight_decay": 5e-4, "translate": 3, "seed": 0,
              "min_over_chance": 10},
    # torchvision's ImageNet models from the local torch cache
    "full": {"imagenet_archs": list(IMAGENET_ARCHS), "min_over_chance": 10},
}
PREFIX, NEEDS = "base", ()  # notebook parameters base_<key>
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 01's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


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
