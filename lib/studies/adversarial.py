"""Study of notebook 03: how fragile is a standard model, and what do PGD-AT, FGSM-RS and TRADES buy back?

Profiles:

- ``smoke``: the first ``n_classes`` classes of the synsigns source half A at 32 px; a small
  CNN per method, trained through :func:`lib.adversarial_training.adversarial_train` (cached in
  the store) with one-cycle schedules long enough that the validation curves flatten.
- ``real``: the smoke recipe on the team's CIFAR-10 subset (``../shared/data``, ImageFolder
  layout), to check that the smoke findings hold on real photographs.
- ``full``: a real dataset (``cifar10`` in its own pickled release, ``cifar100``, ``gtsrb`` at
  native 32 px) and PreActResNet-18 (or ``wrn34_10``) with the papers' schedules, per method in
  ``method_kw``: Madry et al. / Rice et al. PGD-AT (200 epochs, lr 0.1 x 0.1 at epochs 100 and
  150, PGD-10 of 2/255), Wong et al.'s 15-epoch cyclic FGSM-RS (lr 0 -> 0.2 at half-way -> 0, alpha 10/255) and
  TRADES (beta 6, 10 steps of 2/255, the TRADES script's 76 epochs with lr x 0.1 for the last two);
  the standard model on PGD-AT's schedule. Validation: ``n_val`` training images held out
  (Rice et al. hold out 1,000).

The models themselves (their data, network and training) are :mod:`lib.artifacts.robust`; this
module holds the recipe, its cross-key rules (:func:`check`) and the evaluation. Every model is
evaluated by :func:`lib.robustness.robustness_report` (its headline is the AutoAttack-style
per-image worst case) on the same ``n_eval`` test images.
"""
from __future__ import annotations

import pandas as pd

from ..adversarial_training import METHODS
from ..artifacts.robust import robust_model
from . import notebook_params
from . import recipe as _recipe
from .adversarial_report import compact_table, headline, read_results  # noqa: F401  (the notebook's tables and text)
from .adversarial_figures import (class_labels, curves_flat_text, eps_sweep_figure, examples_figure,  # noqa: F401
                                  pgd_steps_figure, tradeoff_figure, tradeoff_table, training_curves_figure)

_SMOKE = {"dataset": "synsigns", "data_root": None, "arch": "small_cnn",
          "n_classes": 10, "per_class_train": 100, "per_class_test": 40, "width": 16,
          "epochs": 20,  # one-cycle: the validation curves have flattened by then (10 epochs left them rising)
          "per_class_val": 30,  # checkpoint selection: 300 images, about +-5 points (95%) at 30% accuracy
          "n_val": None,  # real data: training images held out for selection (None: per_class_val per class)
          "eps": 8 / 255, "lr": 0.1, "batch_size": 128, "schedule": "onecycle", "method_kw": {},
          "seed": 0, "split_seed": 0, "data_seed": 0,
          # evaluation: the same n_eval test images for every attack and model
          "eps_list": [2 / 255, 8 / 255], "pgd_steps": [7, 10, 20, 40], "apgd_steps": 25, "n_eval": 200,
          "square_queries": 1000,  # the paper's 5,000 in the full profile; 1,000 keeps smoke in minutes
          # fixed attack budgets of the checks and the sweep, recipe entries so a dry run shrinks them too:
          # PGD steps of the report's large-eps check, of the transfer check's surrogate attack, and at each
          # eps of the eps sweep
          "large_eps_steps": 20, "transfer_steps": 20, "sweep_steps": 10,
          "methods": ["standard", "pgd_at", "fgsm_rs", "trades"],
          # headline floor: PGD-AT's worst-case gain over standard (to half an image). Measured 20.0% (CI) and
          # 20.5% (dev machine) at smoke; the Wilson half-width at n=200 is ~5.6 points, so a floor at the
          # measured value fails on every other machine. 0.15 still catches a 5-point regression; the
          # statistical claim is the notebook's second assert (the two intervals do not overlap).
          "min_pgd_at_gain": 0.15,
          "weights": None, "weights_arch": None,  # bring your own model: a checkpoint evaluated beside the study's
          "seeds": 1}  # training seeds per method (seed, seed + 1, ...): intervals over seeds when > 1
# the papers' schedules (method -> adversarial_train keywords overriding the recipe's)
_PAPERS = {"standard": {"epochs": 200, "lr": 0.1, "schedule": "piecewise", "weight_decay": 5e-4},
           "pgd_at": {"epochs": 200, "lr": 0.1, "schedule": "piecewise", "weight_decay": 5e-4, "steps": 10,
                      "alpha": 2 / 255},
           "fgsm_rs": {"epochs": 15, "lr": 0.2, "schedule": "cyclic", "weight_decay": 5e-4, "alpha": 10 / 255},
           "trades": {"epochs": 76, "lr": 0.1, "schedule": "piecewise:0.97368", "weight_decay": 2e-4, "steps": 10,
                      "alpha": 2 / 255, "beta": 6.0}}
RECIPE = {
    "smoke": _SMOKE,
    # real: 300 training images a class (3,000), 300 held out for checkpoint selection and 300 evaluated by
    # every attack: the longest notebook of the real profile, sized with the others to its 90-minute goal
    # (docs/performance.md); at 300 images a 95% Wilson interval near the robust models' worst case is
    # about +-5 points, still far from the standard model's. Square gets 500 queries here, not 1,000:
    # at 1,000 it broke no image every gradient attack had missed in any of the 16 rows of real-s49 and
    # real-s50 (square_extra 0), and at 1,000 it took 403 s of real-s50's report (the full profile: 5,000)
    "real": {**_SMOKE, "dataset": "cifar10_folder", "shared_data": "cifar10-jpg-subset", "n_classes": 10,
             "per_class_train": 300, "per_class_test": 100, "n_val": 300, "width": 32, "n_eval": 300,
             "square_queries": 500},
    "full": {**_SMOKE, "dataset": "cifar10", "arch": "preact_resnet18", "n_classes": None, "per_class_train": None,
             "per_class_test": None, "n_val": 1000, "width": None, "batch_size": 128, "method_kw": _PAPERS,
             "apgd_steps": 100, "square_queries": 5000, "n_eval": 1000, "seeds": 3},  # paper: 100 APGD steps
}
PREFIX, NEEDS = "adv", ()  # notebook parameters adv_<key>
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 03's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


def check(cfg: dict) -> str | None:
    """The recipe's cross-key rules, checked before any notebook runs (:func:`lib.studies.resolve_recipes`
    turns the line into a ConfigError); ``None`` when they hold.

    - ``eps`` (the training budget) is one of the positive entries of ``eps_list``: the transfer
      check, the best/last table and the headline read each model's ``worst`` row at the training
      eps, and :func:`lib.robustness.robustness_report` makes that row only for the positive
      entries of ``eps_list``, compared with ``==``;
    - every entry of ``methods`` is one of :data:`lib.adversarial_training.METHODS`;
    - ``n_eval`` (when given) is at least 1."""
    eps, eps_list = cfg["eps"], cfg["eps_list"]
    if not any(e > 0 and e == eps for e in eps_list):
        shown = ", ".join(f"{e * 255:g}/255" for e in eps_list)
        return (f"{PREFIX}_eps {eps * 255:g}/255 ({eps!r}) is not one of {PREFIX}_eps_list [{shown}] (positive "
                f"entries): the transfer check and the headline read the worst case at the training eps; add it "
                f"to {PREFIX}_eps_list or pick one of those")
    unknown = [m for m in cfg["methods"] if m not in METHODS]
    if unknown:
        return f"{PREFIX}_methods has unknown methods {unknown}; valid: {', '.join(METHODS)}"
    if cfg["n_eval"] is not None and cfg["n_eval"] < 1:
        return f"{PREFIX}_n_eval must be at least 1 (or None: every test image), got {cfg['n_eval']!r}"
    return None


def compact_cells(compact: pd.DataFrame) -> pd.DataFrame:
    """The compact table (:func:`compact_table`) for reading: one row per method, one column per
    attack and eps, each cell ``acc [low, high]``."""
    cells = compact.assign(cell=[f"{r.acc:.3f} [{r.low:.2f}, {r.high:.2f}]" for r in compact.itertuples()])
    return cells.pivot_table(index="method", columns=["attack", "eps_255"], values="cell", aggfunc="first",
                             sort=False)


def checkpoint_eval(model, x, y, eps: float, apgd_steps: int, square_queries: int, seed: int = 0) -> pd.DataFrame:
    """Clean, PGD-20 and AutoAttack-style (APGD-CE, APGD-T, Square;
    :func:`lib.robustness.autoattack_eval`) accuracy of one checkpoint on ``(x, y)`` at ``eps``:
    the three numbers :func:`best_and_last` reports per checkpoint (one row)."""
    from ..robustness import autoattack_eval, eps_sweep

    r = eps_sweep(model, (x, y), [0.0, eps], attack="pgd", steps=20, seed=seed)
    aa = autoattack_eval(model, x, y, eps, steps=apgd_steps, square_queries=square_queries, seed=seed)
    return pd.DataFrame([{"clean": r["acc"].iloc[0], "pgd20": r["acc"].iloc[1], "worst": aa["robust_acc"],
                          "n": len(y)}])


def best_and_last(models: dict, cfg: dict, test, *, report: pd.DataFrame | None = None, store=None,
                  progress: bool = False):
    """Rice et al.'s two numbers per robust method: the selected (best robust validation) epoch
    and the last epoch, their robust validation accuracy (with the Wilson interval of the
    selected value on the ``val_n`` validation images), and for both checkpoints the clean,
    PGD-20 and AutoAttack-style test accuracy at the training eps on the recipe's ``n_eval`` test
    images (:func:`checkpoint_eval`, cached). ``models``: method -> the selected model (the last
    one is loaded from the store). ``report``: the selected models' robustness reports (a
    ``method`` column; the same images), whose clean, PGD-20 and ``autoattack`` rows then stand in
    for the selected checkpoints' evaluation. One row per method except ``standard`` (selected on
    its last epoch)."""
    from ..cache import cached
    from ..evaluate.crafted import eval_images
    from ..metrics import rate_interval

    x, y = eval_images(test, cfg["n_eval"], seed=cfg["seed"])
    eps = cfg["eps"]

    def from_report(method):
        """The selected model's three numbers from ``report``; None where it lacks one (a
        ladder without PGD-20 at the training eps)."""
        if report is None:
            return None
        r = report[report["method"] == method]
        at = lambda attack, e: (r["attack"] == attack) & ((r["eps"] - e).abs() < 1e-12)
        rows = {"clean": r[at("clean", 0.0)], "pgd20": r[at("pgd", eps) & (r["steps"] == 20)],
                "worst": r[at("autoattack", eps)]}
        if any(part.empty for part in rows.values()):
            return None
        return {k: float(part["acc"].iloc[0]) for k, part in rows.items()}

    rows = []
    for method, model in models.items():
        if method == "standard":
            continue
        last, meta = robust_model(method, cfg, store, progress=progress, which="last")
        hist = pd.DataFrame(meta["history"])
        val_n = int(meta["val_n"])
        sel = hist[hist["epoch"] == meta["selected_epoch"]].iloc[0]
        low, high = rate_interval(sel["val_robust_acc"], val_n)
        row = {"method": method, "selected_epoch": int(meta["selected_epoch"]), "last_epoch": int(meta["last_epoch"]),
               "val_robust_selected": sel["val_robust_acc"], "val_low": low, "val_high": high,
               "val_robust_last": hist["val_robust_acc"].iloc[-1], "val_n": val_n}
        for name, m in (("selected", model), ("last", last)):
            got = from_report(method) if name == "selected" else None
            if got is None:
                got = cached("03_checkpoint_eval", checkpoint_eval, m, x, y, eps, cfg["apgd_steps"],
                             cfg["square_queries"], cfg["seed"]).iloc[0].to_dict()
            row.update({f"test_{k}_{name}": got[k] for k in ("clean", "pgd20", "worst")})
        row["n_eval"] = len(y)
        rows.append(row)
    return pd.DataFrame(rows)
