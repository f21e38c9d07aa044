"""STRIP: input-level backdoor detection by the entropy of superimposed inputs (Gao, Xu, Wang,
Chen, Ranasinghe, Nepal, "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks",
ACSAC 2019).

The idea: superimpose an input ``x`` on ``N`` clean images of the defender's own and classify
each blend. A clean input's class is washed out by the overlay, so the ``N`` predictions scatter
(high entropy); a triggered input keeps its trigger through every blend and keeps predicting the
target (low entropy). The paper's score is the normalised entropy (its eqs. 1-3)

    H = -(1/N) sum_{n=1..N} sum_{c=1..C} p_{n,c} log2 p_{n,c},

and an input is rejected as triggered when ``H`` falls below a threshold set on the defender's
clean inputs at a chosen false-rejection rate (FRR; the paper uses 1%, from a normal fit of the
clean entropies).

=======================  ==================================================================
:func:`prediction_entropy`  entropy in bits of each row of logits (``-sum p log2 p``)
:func:`superimpose`        the blend ``clip(x + x_clean, 0, 1)``
:func:`strip_entropy`      the per-image normalised entropy ``H`` above
:func:`strip_threshold`    the threshold at an FRR: the empirical FRR-quantile of clean
                           entropies (default) or the paper's normal fit
:func:`strip_rates`        FRR on clean and FAR on triggered inputs at a threshold, with
                           Wilson intervals (:func:`lib.metrics.binomial_interval`)
:func:`roc` / :func:`auc`  the ROC of a score (points at every distinct value) and its AUC by
                           the Mann-Whitney U statistic, with a Hanley-McNeil interval
:func:`strip_roc`          ``(fpr, tpr, auc)`` of STRIP, triggered inputs the positives
=======================  ==================================================================

Defaults and how they are scaled
--------------------------------
* Blend: the authors' code superimposes with equal unit weights,
  ``cv2.addWeighted(background, 1, overlay, 1, 0)``; we take that (``x + x_clean``) and clip the
  sum to [0, 1], the models' input range (what ``cv2.addWeighted`` does when the images are
  8-bit; ``clip=False`` keeps the raw sum, as it is on float images). Other toolboxes
  (TrojanZoo, backdoor-toolbox, IBM ART) blend ``alpha x + (1 - alpha) x_clean`` with ``alpha =
  0.5``: pass ``weights=(0.5, 0.5)``.
* ``N``: the paper uses 100 blends per input; ``n_blend=20`` here, scaled to the smoke budget
  and to the 60 images of the planted fixture's clean set (each input draws ``N`` distinct pool
  images, so ``N`` cannot exceed the pool).
* Threshold: the paper fits a normal to the clean entropies and takes its FRR-quantile; the
  default here is the empirical FRR-quantile (no shape assumed; the normal fit is
  ``method="normal"``). With few clean inputs (60 at smoke) the 1% empirical quantile sits near
  the smallest clean entropy: say so beside any FRR reported.

Why the ROC and AUC are written by hand: scikit-learn is a test-only dependency of the workbook
(``requirements-test.txt``), and the Mann-Whitney AUC is a few lines over
:func:`scipy.stats.rankdata`; ``tests/test_strip.py`` cross-checks both against scikit-learn.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import torch
from torch import Tensor

from ..metrics import binomial_interval
from ..train import as_channels_last, channels_last_while

LN2 = math.log(2.0)


def _images(x) -> Tensor:
    """Float images ``(N, C, H, W)`` in [0, 1] from an ImageSet (``.images``, uint8) or a tensor
    (uint8 in [0, 255] or float in [0, 1])."""
    x = torch.as_tensor(x.images if hasattr(x, "images") else x)
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def _numpy(x) -> np.ndarray:
    return np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x, dtype=float).ravel()


def prediction_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy in bits of ``softmax(logits)`` per row: ``-sum_c p_c log2 p_c`` (0 for a
    one-hot prediction, ``log2 C`` for a uniform one). ``xlogy`` makes ``0 log 0 = 0``, so logits
    of ``-inf`` (exact zeros) are fine."""
    p = torch.softmax(logits.float(), dim=-1)
    return -torch.special.xlogy(p, p).sum(-1) / LN2


def superimpose(x: Tensor, overlay: Tensor, weights: tuple[float, float] = (1.0, 1.0),
                clip: bool = True) -> Tensor:
    """The STRIP blend ``w_x x + w_o overlay`` (authors' code: unit weights, ``cv2.addWeighted(
    x, 1, overlay, 1, 0)``), clipped to [0, 1] unless ``clip=False``; broadcasts."""
    out = weights[0] * x + weights[1] * overlay
    return out.clamp(0.0, 1.0) if clip else out


def _draws(n_images: int, n_pool: int, n_blend: int, seed: int) -> Tensor:
    """``(n_images, n_blend)`` pool indices: for each input, ``n_blend`` distinct pool images
    drawn at random (the paper draws the ``N`` overlays afresh for every input)."""
    if not 1 <= n_blend <= n_pool:
        raise ValueError(f"need 1 <= n_blend <= pool size, got n_blend={n_blend}, pool={n_pool}")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n_images, n_pool, generator=g).argsort(dim=1)[:, :n_blend]


@torch.no_grad()
def strip_entropy(model: torch.nn.Module, images, clean_pool, n_blend: int = 20, seed: int = 0,
                  batch_size: int = 512, weights: tuple[float, float] = (1.0, 1.0),
                  clip: bool = True) -> Tensor:
    """STRIP's normalised entropy ``H`` (bits) of each input: the mean over ``n_blend`` blends of
    the input with distinct images of ``clean_pool`` of the entropy of the model's prediction
    (Gao et al. 2019, eqs. 1-3). ``images`` and ``clean_pool`` are tensors ``(N, C, H, W)`` (uint8,
    or float in [0, 1]) or ImageSets. Low ``H`` means the prediction survives the blends: a trigger.

    ``n_blend=20`` is the smoke scaling of the paper's 100. The model is run in eval mode (its
    mode is restored afterwards) on its own device; returns a CPU float tensor ``(N,)``."""
    x, pool = _images(images), _images(clean_pool)
    idx = _draws(len(x), len(pool), n_blend, seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    per_input = max(1, batch_size // n_blend)
    out = []
    try:
        with channels_last_while(model) as layout:  # 1.35x on the CPU, same arithmetic
            for start in range(0, len(x), per_input):
                xb, ib = x[start:start + per_input], idx[start:start + per_input]
                blends = superimpose(xb[:, None], pool[ib], weights, clip).flatten(0, 1)
                h = prediction_entropy(model(as_channels_last(blends.to(device), layout))).cpu()
                out.append(h.view(len(xb), n_blend).mean(1))
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def strip_threshold(clean_entropy, frr: float = 0.01, method: str = "quantile") -> float:
    """The entropy below which an input is rejected as triggered, set so that a share ``frr`` of
    the defender's clean inputs is rejected: ``method="quantile"`` (default) takes the empirical
    ``frr``-quantile of ``clean_entropy`` (linear interpolation, :func:`numpy.quantile`);
    ``method="normal"`` fits a normal to them and takes its ``frr``-quantile, ``mu + sigma
    Phi^-1(frr)`` (the paper's choice, FRR 1%)."""
    h = _numpy(clean_entropy)
    if not 0 < frr < 1 or h.size == 0:
        raise ValueError(f"need 0 < frr < 1 and clean entropies, got frr={frr}, n={h.size}")
    if method == "quantile":
        return float(np.quantile(h, frr))
    if method == "normal":
        sigma = float(h.std(ddof=1)) if h.size > 1 else 0.0
        return float(h.mean()) + sigma * NormalDist().inv_cdf(frr)
    raise ValueError(f"method must be 'quantile' or 'normal', got {method!r}")


def _share(hit: np.ndarray) -> dict:
    k, n = int(hit.sum()), int(hit.size)
    low, high = binomial_interval(k, n)
    return {"value": k / n if n else float("nan"), "k": k, "n": n, "low": low, "high": high}


def strip_rates(clean_entropy, triggered_entropy, threshold: float) -> dict[str, dict]:
    """STRIP's two error rates at ``threshold`` (an input is rejected when ``H < threshold``):
    ``frr``, the share of clean inputs rejected, and ``far``, the share of triggered inputs
    accepted (the paper's false rejection and false acceptance rates), each ``{"value", "k",
    "n", "low", "high"}`` with a 95% Wilson interval."""
    return {"frr": _share(_numpy(clean_entropy) < threshold),
            "far": _share(_numpy(triggered_entropy) >= threshold)}


def strip_stats(h: dict, *, threshold: float | None = None, frr_target: float | None = None) -> dict:
    """STRIP's numbers on one model's entropies ``h`` (``{"defender", "clean", "triggered"}``, the
    return of :func:`lib.studies.defences_report.strip_result`) at a threshold: ``threshold`` as
    given, else the one that rejects ``frr_target`` (default 0.01, the paper's) of the defender's
    own clean images (:func:`strip_threshold`). The row of notebook 08's STRIP table
    (:func:`lib.studies.defences_report.strip_table`, at the recipe's ``strip_frr``) and the numbers
    its explorer shows as the threshold moves."""
    if threshold is None:
        frr_target = 0.01 if frr_target is None else frr_target
        threshold = strip_threshold(h["defender"], frr_target)
    else:
        frr_target = None  # the threshold was set directly, not from a target FRR
    _, _, area = strip_roc(h["clean"], h["triggered"])
    stats = {"threshold": float(threshold), "frr_target": frr_target, "n_defender": len(h["defender"]),
             "auc": area["auc"], "auc_low": area["low"], "auc_high": area["high"],
             "n_clean": area["n_neg"], "n_triggered": area["n_pos"]}
    for m, r in strip_rates(h["clean"], h["triggered"], threshold).items():
        stats.update({m: r["value"], f"{m}_low": r["low"], f"{m}_high": r["high"], f"{m}_n": r["n"], f"{m}_k": r["k"]})
    return stats


def auc(negative_scores, positive_scores, level: float = 0.95) -> dict:
    """Area under the ROC of a score that should be higher for positives: the Mann-Whitney
    probability ``P(s_pos > s_neg) + P(s_pos = s_neg) / 2``, from mid-ranks
    (:func:`scipy.stats.rankdata`): ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``.

    Returns ``{"auc", "low", "high", "se", "n_pos", "n_neg"}``: the interval is ``AUC +- z SE``
    clipped to [0, 1], with the Hanley-McNeil (Radiology 143, 1982, eq. 2) standard error
    ``SE^2 = [A(1-A) + (n_pos-1)(Q1-A^2) + (n_neg-1)(Q2-A^2)] / (n_pos n_neg)``,
    ``Q1 = A/(2-A)``, ``Q2 = 2A^2/(1+A)``. (Not :func:`lib.metrics.bootstrap_interval`: that
    resamples a mean of independent values, and the AUC's pairs are not independent.)"""
    from scipy.stats import rankdata

    neg, pos = _numpy(negative_scores), _numpy(positive_scores)
    n_neg, n_pos = neg.size, pos.size
    if n_neg == 0 or n_pos == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([pos, neg]))
    a = float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    se = math.sqrt(max(var, 0.0))
    z = NormalDist().inv_cdf((1 + level) / 2)
    return {"auc": a, "low": max(0.0, a - z * se), "high": min(1.0, a + z * se), "se": se,
            "n_pos": n_pos, "n_neg": n_neg}


def roc(negative_scores, positive_scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` of the rule "positive when score >= t" at every distinct score
    ``t`` (descending), starting from ``(0, 0)`` at ``t = +inf``: the same points as
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``."""
    neg, pos = _numpy(negative_scores), _numpy(positive_scores)
    t = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = (neg[None, :] >= t[:, None]).mean(1)
    tpr = (pos[None, :] >= t[:, None]).mean(1)
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, t]


def strip_roc(clean_entropy, triggered_entropy) -> tuple[np.ndarray, np.ndarray, dict]:
    """STRIP's ROC with triggered inputs as the positives and ``-H`` as the score (low entropy
    means triggered): ``(fpr, tpr, auc)``. Over the thresholds, ``fpr`` is the FRR on clean
    inputs and ``tpr`` is ``1 - FAR`` on triggered ones; ``auc`` is :func:`auc`'s dict (AUC =
    ``P(H_triggered < H_clean)``, ties half, with its Hanley-McNeil interval)."""
    neg, pos = -_numpy(clean_entropy), -_numpy(triggered_entropy)
    fpr, tpr, _ = roc(neg, pos)
    return fpr, tpr, auc(neg, pos)
