"""Study of notebook 03: how fragile is a standard model, and what do PGD-AT, FGSM-RS and TRADES buy back?

The task is the first ``n_classes`` classes of the synsigns source half A at 32 px; each method
trains a small CNN through :func:`lib.adversarial_training.adversarial_train` (cached in the
store), and :func:`lib.robustness.robustness_report` evaluates it. The recipe's full profile only
raises the evaluation budget (APGD steps, images attacked).
"""
from __future__ import annotations

import pandas as pd

from .. import adversarial_training, attacks
from .. import data as D
from ..adversarial_training import adversarial_train
from ..data import ImageSet
from ..models import build
from ..store import Store, code_version
from ..train import random_translate
from . import bases
from . import recipe as _recipe

TRAIN_KEYS = ("n_classes", "per_class_train", "per_class_val", "per_class_test", "width", "epochs", "eps", "lr",
              "batch_size", "seed", "split_seed", "data_seed")
_SMOKE = {"n_classes": 10, "per_class_train": 100, "per_class_test": 40, "width": 16, "epochs": 10,
          "per_class_val": 30,  # checkpoint selection: 300 images, about +-5 points (95%) at 30% accuracy
          "eps": 8 / 255, "lr": 0.1, "batch_size": 128, "seed": 0, "split_seed": 0, "data_seed": 0,
          # evaluation: the same n_eval test images for every attack and model
          "eps_list": [2 / 255, 8 / 255], "pgd_steps": [7, 10, 20, 40], "apgd_steps": 25, "n_eval": 200,
          "methods": ["standard", "pgd_at", "fgsm_rs", "trades"],
          "min_pgd_at_gain": 0.2,  # headline: PGD-AT gains at least this much PGD accuracy over standard
          "seeds": 1}  # training seeds per method (seed, seed + 1, ...): intervals over seeds when > 1
RECIPE = {"smoke": _SMOKE, "full": {**_SMOKE, "apgd_steps": 100, "n_eval": 1000, "seeds": 3}}  # paper: 100 APGD steps
# notebook parameter -> recipe key (names unique in the workbook; see lib.studies.check_params)
PARAMS = {f"adv_{k}": k for k in (
    "n_classes", "per_class_train", "per_class_test", "width", "epochs", "eps", "eps_list", "pgd_steps",
    "apgd_steps", "n_eval", "methods", "seed", "min_pgd_at_gain")}


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 03's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


def _classes(cfg: dict) -> list[int]:
    return bases.halves(bases.recipe(split_seed=cfg["split_seed"]))["A"][:cfg["n_classes"]]


def robust_study_data(cfg: dict) -> tuple[ImageSet, ImageSet]:
    """Train/test sets of notebook 03's task: the first ``n_classes`` classes of the synsigns
    source half A (the half base A is trained on), relabelled ``0..n_classes-1``."""
    cfg = {**RECIPE["smoke"], **cfg}
    classes = _classes(cfg)
    return bases.class_data(classes, cfg["per_class_train"], cfg["per_class_test"], seed=cfg["data_seed"],
                            tag=f"A{len(classes)}")


def robust_val_data(cfg: dict) -> ImageSet:
    """The validation set that selects checkpoints: ``per_class_val`` images per class from
    synsigns' own validation draw (independent of the training and test images), all of them
    used every epoch."""
    cfg = {**RECIPE["smoke"], **cfg}
    classes = _classes(cfg)
    ds = D.load_synsigns("val", n=len(classes) * cfg["per_class_val"], seed=cfg["data_seed"], classes=classes)
    return D.subset_classes(ds, classes, name=f"synsigns-A{len(classes)}-val")


def robust_study_model(method: str, cfg: dict, store=None, *, progress: bool = True, which: str = "selected"):
    """A small CNN trained on :func:`robust_study_data` with ``method`` (see
    :data:`lib.adversarial_training.METHODS`) through :func:`adversarial_train`, cached in the store
    under the method and the recipe.

    Checkpoints are selected on :func:`robust_val_data` (never the test set; PGD-10 on all its
    images each epoch): adversarially trained models keep their best-robust epoch (Rice et al.
    2020), the standard model its last epoch (selecting a standard model on robust accuracy would
    pick a weak early epoch and flatter the baseline's robustness; it is not attacked during
    training). ``which="last"`` returns the last epoch's weights instead (stored beside the
    selected ones by the same training run; for the standard model the two are the same).
    Returns ``(model, meta)`` with the history (incl. ``val_robust_acc`` and ``selected``)."""
    if which not in ("selected", "last"):
        raise ValueError(f"which must be 'selected' or 'last', got {which!r}")
    store = store or Store()
    cfg = {k: v for k, v in {**RECIPE["smoke"], **cfg}.items() if k in TRAIN_KEYS}
    train, _ = robust_study_data(cfg)
    val = robust_val_data(cfg)
    select = "last" if method == "standard" else "best_robust"
    key = {"method": method, "select": select, **cfg, "init": "seeded"}
    last_key = {**key, "code": code_version(*CODE)}

    def build_fn():  # initial weights from the recipe's seed
        return build("small_cnn", train.num_classes, width=cfg["width"], seed=cfg["seed"])

    def train_fn(model):
        last = {}
        hist = adversarial_train(model, train, val, method, eps=cfg["eps"], epochs=cfg["epochs"], lr=cfg["lr"],
                                 batch_size=cfg["batch_size"], seed=cfg["seed"], augment=random_translate(2),
                                 select=select, val_n=None, keep_last=last, progress=progress)
        meta = {"method": method, "recipe": cfg, "history": hist.to_dict("records"),
                "selected_epoch": hist.attrs.get("selected_epoch"), "stopped_epoch": hist.attrs.get("stopped_epoch"),
                "last_epoch": last["epoch"], "val_n": hist.attrs.get("val_n")}
        last_model = build_fn()
        last_model.load_state_dict(last["state"])
        store.save_model(f"robust_{method}_last", last_key, last_model, meta)
        return meta

    if which == "last":
        cached = store.has_model(f"robust_{method}_last", last_key)
        if not cached:
            store.model(f"robust_{method}", key, build_fn, train_fn, retrain=True, code=CODE)
        model = build_fn()
        return model.eval(), {**store.load_model(f"robust_{method}_last", last_key, model), "cached": cached}
    return store.model(f"robust_{method}", key, build_fn, train_fn, code=CODE)


# the code behind the cached robust models (the training functions, not the whole study module,
# so that an evaluation setting or helper retrains nothing): a change to any of these retrains them
CODE = (robust_study_model, robust_study_data, robust_val_data, _classes, bases.class_data, bases.halves,
        *bases.TRAINING_CODE, adversarial_training, attacks.core, attacks.projected, attacks.gradient_sign)


def best_and_last(models: dict, cfg: dict, test, *, store=None, progress: bool = False):
    """Rice et al.'s two numbers per robust method: the selected (best robust validation) epoch
    and the last epoch, their robust validation accuracy (with the Wilson interval of the
    selected value on the ``val_n`` validation images) and their clean and PGD-20 test accuracy
    at the training eps on the recipe's ``n_eval`` test images. ``models``: method -> the
    selected model (the last one is loaded from the store). One row per method except
    ``standard`` (selected on its last epoch)."""
    import pandas as pd

    from ..metrics import binomial_interval
    from ..robustness import eps_sweep

    rows = []
    for method, model in models.items():
        if method == "standard":
            continue
        last, meta = robust_study_model(method, cfg, store, progress=progress, which="last")
        hist = pd.DataFrame(meta["history"])
        val_n = int(meta["val_n"])
        sel = hist[hist["epoch"] == meta["selected_epoch"]].iloc[0]
        low, high = binomial_interval(round(sel["val_robust_acc"] * val_n), val_n)
        row = {"method": method, "selected_epoch": int(meta["selected_epoch"]), "last_epoch": int(meta["last_epoch"]),
               "val_robust_selected": sel["val_robust_acc"], "val_low": low, "val_high": high,
               "val_robust_last": hist["val_robust_acc"].iloc[-1], "val_n": val_n}
        for name, m in (("selected", model), ("last", last)):
            r = eps_sweep(m, test, [0.0, cfg["eps"]], attack="pgd", steps=20, n=cfg["n_eval"], seed=cfg["seed"])
            row[f"test_clean_{name}"], row[f"test_pgd20_{name}"] = r["acc"].tolist()
        row["n_eval"] = int(r["n"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def compact_table(report: pd.DataFrame, eps_list, pgd_steps: int, level: float = 0.95) -> pd.DataFrame:
    """Method x (clean, FGSM, PGD-``pgd_steps``, APGD-CE, APGD-T, worst case) x eps from a
    :func:`lib.robustness.robustness_report` table with a ``seed`` column (one report per trained
    seed): the mean accuracy with its ``level`` interval and n. One seed: Wilson interval over the
    ``n`` test images (what a new draw of the test set would give this model); several seeds:
    Student-t interval over the seeds (what retraining gives), ``n`` images each. Eps in /255."""
    from ..metrics import binomial_interval, seed_interval

    keep = report["attack"].isin(["clean", "fgsm", "pgd", "apgd", "apgd_t", "worst"])
    keep &= (report["attack"] != "pgd") | (report["steps"] == pgd_steps)
    keep &= report["eps"].isin([0.0, *eps_list])
    keep &= (report["attack"] == "clean") | (report["eps"] > 0)
    rows = []
    for (method, label, eps255), g in report[keep].groupby(["method", "label", "eps_255"], sort=False):
        seeds = g["seed"].nunique()
        if seeds == 1:
            low, high = binomial_interval(int(g["correct"].iloc[0]), int(g["n"].iloc[0]), level)
            interval = "Wilson, test images"
        else:
            r = seed_interval(g.groupby("seed")["acc"].mean().to_numpy(), level)
            low, high, interval = max(0.0, r["low"]), min(1.0, r["high"]), f"t, {seeds} seeds"  # clipped to [0, 1]
        rows.append({"method": method, "attack": label, "eps_255": eps255, "acc": g["acc"].mean(), "low": low,
                     "high": high, "n": int(g["n"].iloc[0]), "seeds": seeds, "interval": interval})
    return pd.DataFrame(rows)
