"""Study of notebook 03: how fragile is a standard model, and what do PGD-AT, FGSM-RS and TRADES buy back?

The task is the first ``n_classes`` classes of the synsigns source half A at 32 px; each method
trains a small CNN through :func:`lib.adversarial_training.adversarial_train` (cached in the
store), and :func:`lib.robustness.robustness_report` evaluates it. The recipe's full profile only
raises the evaluation budget (APGD steps, images attacked).
"""
from __future__ import annotations

import sys

from .. import adversarial_training
from .. import train as _train
from ..adversarial_training import adversarial_train
from ..data import ImageSet, train_val_split
from ..models import archs, build, classifier
from ..store import Store
from ..train import random_translate
from . import bases
from . import recipe as _recipe

TRAIN_KEYS = ("n_classes", "per_class_train", "per_class_test", "width", "epochs", "eps", "lr", "batch_size", "seed",
              "split_seed", "data_seed")
_SMOKE = {"n_classes": 10, "per_class_train": 100, "per_class_test": 40, "width": 16, "epochs": 10,
          "eps": 8 / 255, "lr": 0.1, "batch_size": 128, "seed": 0, "split_seed": 0, "data_seed": 0,
          # evaluation: the same n_eval test images for every attack and model
          "eps_list": [2 / 255, 8 / 255], "pgd_steps": [7, 10, 20, 40], "apgd_steps": 25, "n_eval": 200,
          "methods": ["standard", "pgd_at", "fgsm_rs", "trades"],
          "min_pgd_at_gain": 0.2}  # headline: PGD-AT gains at least this much PGD accuracy over standard
RECIPE = {"smoke": _SMOKE, "full": {**_SMOKE, "apgd_steps": 100, "n_eval": 1000}}  # the paper's 100 APGD steps


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 03's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


def robust_study_data(cfg: dict) -> tuple[ImageSet, ImageSet]:
    """Train/test sets of notebook 03's task: the first ``n_classes`` classes of the synsigns
    source half A (the half base A is trained on), relabelled ``0..n_classes-1``."""
    cfg = {**RECIPE["smoke"], **cfg}
    classes = bases.halves(bases.recipe(split_seed=cfg["split_seed"]))["A"][:cfg["n_classes"]]
    return bases.class_data(classes, cfg["per_class_train"], cfg["per_class_test"], seed=cfg["data_seed"],
                            tag=f"A{len(classes)}")


def robust_study_model(method: str, cfg: dict, store=None, *, progress: bool = True):
    """A small CNN trained on :func:`robust_study_data` with ``method`` (see :data:`lib.adversarial_training.METHODS`)
    through :func:`adversarial_train`, cached in the store under the method and the recipe.
    Validation (checkpoint selection) uses a held-out 10% of the training set, never the test set;
    adversarially trained models keep their best-robust epoch (Rice et al.), the standard model its
    last epoch (selecting a standard model on robust accuracy would pick a weak early epoch and
    flatter the baseline's robustness).
    Returns ``(model, meta)`` with the history (incl. ``val_robust_acc`` and ``selected``)."""
    cfg = {k: v for k, v in {**RECIPE["smoke"], **cfg}.items() if k in TRAIN_KEYS}
    train, _ = robust_study_data(cfg)
    fit_set, val = train_val_split(train, 0.1, seed=cfg["seed"])
    select = "last" if method == "standard" else "best_robust"

    def train_fn(model):
        hist = adversarial_train(model, fit_set, val, method, eps=cfg["eps"], epochs=cfg["epochs"], lr=cfg["lr"],
                                 batch_size=cfg["batch_size"], seed=cfg["seed"], augment=random_translate(2),
                                 select=select, progress=progress)
        return {"method": method, "recipe": cfg, "history": hist.to_dict("records"),
                "selected_epoch": hist.attrs.get("selected_epoch"), "stopped_epoch": hist.attrs.get("stopped_epoch")}

    # initial weights from the recipe's seed ("init" in the key: unseeded models are not reused)
    return (store or Store()).model(f"robust_{method}", {"method": method, "select": select, **cfg, "init": "seeded"},
                                    lambda: build("small_cnn", train.num_classes, width=cfg["width"], seed=cfg["seed"]),
                                    train_fn, code=CODE)


# the code behind the cached robust models: a change to any of these retrains them
CODE = (sys.modules[__name__], adversarial_training, _train, classifier, archs)
