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

A defence is scored against the undefended model by :func:`defence_effect`: the drops in ASR
and clean accuracy (Newcombe intervals) and the defence effectiveness rating
``DER = [max(0, dASR) - max(0, dACC) + 1] / 2`` (Zhu et al. 2023, FT-SAM, eq. 7; 1 is a defence
that removes the whole ASR at no accuracy cost, 0.5 one that changes neither, 0 one that
costs all accuracy and removes nothing), by :func:`der`.
"""
from __future__ import annotations

import torch

from ..metrics import binomial_interval, difference_interval, label_pair
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


def der(asr_before: float, asr_after: float, acc_before: float, acc_after: float) -> float:
    """The defence effectiveness rating ``[max(0, dASR) - max(0, dACC) + 1] / 2`` with
    ``dASR = asr_before - asr_after`` and ``dACC = acc_before - acc_after`` (FT-SAM, eq. 7;
    BackdoorBench 2.0 reports it as ``DER``): in [0, 1], a gain in accuracy or in ASR counts 0."""
    return _der(asr_before - asr_after, acc_before - acc_after)


def _der(d_asr: float, d_acc: float) -> float:
    return (max(0.0, d_asr) - max(0.0, d_acc) + 1) / 2


def defence_effect(before: dict, after: dict, asr: str = "asr_bb", acc: str = "clean_acc") -> dict:
    """How a defence moved a model: flat rows of :func:`backdoor_metrics` (or :func:`flat`) of
    the undefended model (``before``) and the defended one (``after``), on the same test images.

    Returns ``d_asr`` and ``d_acc`` (drops: before minus after) each with ``_low``/``_high``, their
    95% Newcombe intervals (:func:`lib.metrics.difference_interval`: conservative, as the two
    rates are measured on the same images), and ``der`` (:func:`der`) with ``der_low``/``der_high``
    from the ends of those intervals (DER rises with ``d_asr`` and falls with ``d_acc``, so the
    box of the two 95% intervals bounds it with at least 90% confidence)."""
    d_asr = difference_interval(before[asr], before[f"{asr}_n"], after[asr], after[f"{asr}_n"])
    d_acc = difference_interval(before[acc], before[f"{acc}_n"], after[acc], after[f"{acc}_n"])
    out = {"d_asr": d_asr[0], "d_asr_low": d_asr[1], "d_asr_high": d_asr[2],
           "d_acc": d_acc[0], "d_acc_low": d_acc[1], "d_acc_high": d_acc[2]}
    out.update(der=_der(d_asr[0], d_acc[0]), der_low=_der(d_asr[1], d_acc[2]), der_high=_der(d_asr[2], d_acc[1]))
    return out
