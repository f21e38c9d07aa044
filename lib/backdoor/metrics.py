"""Backdoor metrics, from a model's predictions on a clean test set and on the same images with
the trigger.

=====================  ==================================================================  ==================
metric                 share of ...                                                        among
=====================  ==================================================================  ==================
``clean_acc``          clean images classified correctly                                   all test images
``asr``                triggered images predicted as the target (the Renofeation authors'   clean-correct images
                       ``target_test``; images of the target class are not excluded)
``asr_bb``             triggered images predicted as the target (BackdoorBench's ASR)       true class != target
``ra``                 triggered images still classified as their true class                true class != target
                       (BackdoorBench's robust accuracy)
``untargeted_asr``     triggered images predicted as anything but the true class            clean-correct images
                       (the authors' ``untarget_test``; the measure when the target label
                       means nothing, e.g. a new student task)
=====================  ==================================================================  ==================

Each comes with its count ``k``, its denominator ``n`` and a 95% Wilson interval
(:func:`lib.metrics.binomial_interval`). With ``target=None`` the targeted rates are left out
and ``ra`` is over every image.
"""
from __future__ import annotations

import torch

from ..metrics import binomial_interval, label_pair
from .poisoning import triggered
from .triggers import Trigger

METRICS = ("clean_acc", "asr", "asr_bb", "ra", "untargeted_asr")


def _rate(hit: torch.Tensor, among: torch.Tensor) -> dict:
    k, n = int((hit & among).sum()), int(among.sum())
    low, high = binomial_interval(k, n)
    return {"value": k / n if n else float("nan"), "k": k, "n": n, "low": low, "high": high}


def backdoor_rates(clean_pred, trig_pred, y, target: int | None) -> dict[str, dict]:
    """The metrics of the table above from labels or logits: ``{name: {"value", "k", "n",
    "low", "high"}}``."""
    clean, y = label_pair(clean_pred, y)
    trig, _ = label_pair(trig_pred, y)
    every = torch.ones_like(y, dtype=torch.bool)
    right = clean == y
    out = {"clean_acc": _rate(right, every)}
    if target is not None:
        other = y != target
        out["asr"] = _rate(trig == target, right)
        out["asr_bb"] = _rate(trig == target, other)
        out["ra"] = _rate(trig == y, other)
    else:
        out["ra"] = _rate(trig == y, every)
    out["untargeted_asr"] = _rate(trig != y, right)
    return out


def flat(rates: dict[str, dict]) -> dict:
    """One row: ``name``, ``name_n``, ``name_low``, ``name_high`` per metric."""
    row = {}
    for name, r in rates.items():
        row.update({name: r["value"], f"{name}_n": r["n"], f"{name}_low": r["low"], f"{name}_high": r["high"]})
    return row


def backdoor_metrics(model, test, trigger: Trigger, target: int | None = 0, *, where: str = "bottom_right",
                     seed: int = 0, batch_size: int = 256) -> dict:
    """:func:`backdoor_rates` of ``model`` on the whole ``test`` set (an ImageSet or a
    file-backed dataset) and its
    triggered copy (:func:`lib.backdoor.triggered`), as one flat row (:func:`flat`)."""
    from ..data import num_classes_of
    from ..train import predict

    k = num_classes_of(test)
    if target is not None and not 0 <= target < k:
        raise ValueError(f"target class {target} is not a class of the test set (labels 0..{k - 1})")
    clean, y = predict(model, test, batch_size=batch_size)
    trig, _ = predict(model, triggered(test, trigger, where, seed=seed), batch_size=batch_size)
    return flat(backdoor_rates(clean, trig, y, target))
