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
    "full": {"imagenet_archs": list(IMAGENET_ARCHS), "size": 224, "min_over_chance": 10},
}
# real: the profile's pretrained base is the shared CIFAR-10 ResNet-20 (its real notebooks start from it or
# train from scratch), which must then be present: scored per class on CIFAR-10's official test split
RECIPE["real"] = {"shared": True}
PREFIX, NEEDS = "base", ()  # notebook parameters base_<key>
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 01's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


def imagenet_r_accuracy(model, root=None, batch_size: int = 128, progress: bool = True, size: int = 224) -> float:
    """Top-1 accuracy of a 1000-class ImageNet model on ImageNet-R's test split, with the logits
    restricted to the 200 ImageNet-R classes (Hendrycks et al. 2021)."""
    import torch

    from ..data.real import IMAGENET_R_TO_IMAGENET1K, load_real
    from ..train import predict

    ds = load_real("imagenet_r", "test", root=root, size=size, label_space="imagenet_r")
    logits, y = predict(model, ds, batch_size=batch_size, progress=progress)
    pred = logits[:, torch.as_tensor(IMAGENET_R_TO_IMAGENET1K)].argmax(1)
    return accuracy(pred, y)


def shared_resnet20(required: bool = False):
    """The team's real CIFAR-10 ResNet-20 (``../shared/weights``) through our ``resnet20`` builder,
    and the 5,000 JPEG images of CIFAR-10's official test split it is scored on (it was trained on
    the training split, which every image of ``cifar10-jpg-subset`` comes from), as ``(model,
    test)``; ``None`` when ``../shared`` lacks either, unless ``required`` (the real profile): then
    a FileNotFoundError that says where to put them."""
    from ..data import to_imageset
    from ..data.real import load_real
    from ..models import load_cifar_resnet20
    from ..paths import shared_dir

    shared = shared_dir()
    weights = shared / "weights/resnet20-cifar10/resnet20-12fca82f.th" if shared else None
    images = shared / "data/cifar10-jpg-official-test" if shared else None
    if not (weights and weights.is_file() and images.is_dir()):
        if required:
            raise FileNotFoundError("the real profile needs ../shared/weights/resnet20-cifar10 and "
                                    "../shared/data/cifar10-jpg-official-test: put the team's shared folder beside "
                                    "the project (or set WORKBOOK_SHARED), or run the smoke profile")
        return None
    test = to_imageset(load_real("cifar10_folder", "test", root=images), name="cifar10-official-test", progress=False)
    return load_cifar_resnet20(weights), test


def shared_resnet20_check(loaded=None) -> dict | None:
    """The row of the shared ResNet-20 (``loaded``: :func:`shared_resnet20`'s pair, read here when
    not given) for the bases table: its accuracy over the official test images; ``None`` without it."""
    loaded = loaded or shared_resnet20()
    if loaded is None:
        return None
    model, test = loaded
    return {"base": "shared resnet20 (CIFAR-10)", "arch": "resnet20", "classes": 10,
            "params": sum(p.numel() for p in model.parameters()), "test_acc": evaluate(model, test)["acc"],
            "test_n": len(test), "chance": 0.1,
            "data": f"CIFAR-10's official test split ({len(test):,} JPEG images the network never saw)"}


def class_accuracy(model, test):
    """Per class of ``test``: its images, the accuracy of ``model`` on them and the 95% Wilson
    interval (the real profile's table of the shared ResNet-20: where a teacher is weak, so is
    every student distilled from it)."""
    import pandas as pd

    from ..metrics import rate_interval
    from ..train import predict

    logits, labels = predict(model, test)
    pred = logits.argmax(1)
    rows = []
    for c, name in enumerate(test.classes):
        mine = labels == c
        n, right = int(mine.sum()), int((pred[mine] == c).sum())
        low, high = rate_interval(right / n, n)
        rows.append({"class": name, "n": n, "acc": right / n, "acc_low": low, "acc_high": high})
    return pd.DataFrame(rows)


def with_intervals(results):
    """``results`` (one row per base, ``test_acc`` over ``test_n`` images) with the 95% Wilson
    interval of each accuracy as ``test_low`` and ``test_high`` (NaN on a row without its n; a table
    with no accuracies at all, as the full profile's ImageNet rows alone, is returned as it is)."""
    from ..metrics import rate_interval

    out = results.copy()
    if len(out) and {"test_acc", "test_n"} <= set(out.columns):
        bounds = [rate_interval(a, n) for a, n in zip(out["test_acc"], out["test_n"])]
        out["test_low"], out["test_high"] = zip(*bounds)
    return out


def accuracy_figure(results):
    """Test accuracy of each base (bars) with its 95% Wilson interval over its ``test_n`` test
    images, beside chance (dashed): the base is usable only if its interval sits far above it."""
    import matplotlib.pyplot as plt

    r = with_intervals(results)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    x = range(len(r))
    ax.bar(x, r["test_acc"], color=[f"C{i}" for i in x], tick_label=[f"base {b}" for b in r["base"]])
    ax.errorbar(x, r["test_acc"], yerr=[r["test_acc"] - r["test_low"], r["test_high"] - r["test_acc"]],
                fmt="none", color="k", capsize=4, lw=1.2, label="95% Wilson interval")
    ax.axhline(r["chance"].max(), ls="--", c="grey", label=f"chance ({r['chance'].max():.0%})")
    ax.set(ylim=(0, 1), ylabel="test accuracy",
           title=f"pretrained bases (synsigns halves)\nn={_n_text(r)} test images per base, 95% Wilson")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def curves_figure(histories: dict, results):
    """Training accuracy (solid) and test accuracy (dashed, with a 95% Wilson band over the base's
    ``test_n`` test images) per epoch for each base of ``results``; ``histories`` maps
    ``"base <half>"`` to ``fit``'s history (its ``val_acc`` is the whole test set)."""
    import matplotlib.pyplot as plt

    from ..metrics import rate_interval

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, r in enumerate(results.itertuples()):
        h = histories[f"base {r.base}"]
        band = [rate_interval(a, r.test_n) for a in h["val_acc"]]
        ax.plot(h["epoch"], h["train_acc"], "-o", ms=4, c=f"C{i}", label=f"base {r.base}: train")
        ax.plot(h["epoch"], h["val_acc"], "--o", ms=4, c=f"C{i}", mfc="white", label=f"base {r.base}: test")
        ax.fill_between(h["epoch"], [b[0] for b in band], [b[1] for b in band], color=f"C{i}", alpha=0.2, lw=0)
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1),
           title=f"bases A and B on synsigns halves\n(test band: 95% Wilson, n={_n_text(results)} test images "
                 "per base)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def _n_text(results) -> str:
    return ", ".join(f"{int(n):,}" for n in dict.fromkeys(results["test_n"]))
