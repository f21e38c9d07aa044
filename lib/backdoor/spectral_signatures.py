"""Spectral signatures (Tran, Li & Madry, "Spectral signatures in backdoor attacks", NeurIPS
2018): a training-data detector.

Per class (training label), with ``R`` the class's penultimate representations: centre them,
take the top right singular vector ``v`` of the centred matrix, and score each image by
``tau_i = ((R_i - mean R) . v)^2`` (Algorithm 1); remove the ``1.5 * eps * n`` highest scores of
each class of size ``n``, with ``eps`` an upper bound on the poison fraction of a class. The
paper's multiplier 1.5 is the default; ``eps`` has no paper default (ART's
``SpectralSignatureDefense`` uses ``expected_pp_poison=0.33``, kept here).

Differences from ART 1.20: ART projects the *uncentred* representations on ``v`` (``|v . R_i|``)
and removes the scores at or above the ``1 - 1.5 eps`` quantile; here the paper's centred score
and an exact count ``floor(1.5 eps n)`` (ties by position). Why torch rather than numpy/sklearn:
one ``torch.linalg.svd``; scikit-learn is test-only in this project.

Note: by construction the method removes ``floor(1.5 eps n)`` images from *every* class,
poisoned or not; whether a class carries a backdoor shows in how concentrated its spectrum is
(``per_class[c]["top_share"]``, the top singular value's share of the squared spectrum).
"""
from __future__ import annotations

import math

import torch

from .detection import representations

EPS = 0.33          # ART's expected_pp_poison (the paper sets eps per experiment)
MULTIPLIER = 1.5    # Tran et al. Algorithm 1


def scores(feats: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Outlier scores ``(n,)`` of one class's representations (Algorithm 1: squared projection
    of the centred rows on the top right singular vector) and ``top_share``
    ``= s_1^2 / sum s_i^2`` of the centred matrix (``nan`` for fewer than 2 rows)."""
    if len(feats) < 2:
        return torch.zeros(len(feats), dtype=torch.float64), float("nan")
    m = feats.double() - feats.double().mean(0)
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    total = float((s ** 2).sum())
    return (m @ vh[0]) ** 2, float(s[0] ** 2 / total) if total > 0 else float("nan")


def removed(score: torch.Tensor, eps: float = EPS, multiplier: float = MULTIPLIER) -> torch.Tensor:
    """Bool mask of the ``floor(multiplier * eps * n)`` highest scores (stable: ties by position)."""
    k = min(len(score), math.floor(multiplier * eps * len(score) + 1e-9))
    out = torch.zeros(len(score), dtype=torch.bool)
    out[torch.sort(-score, stable=True).indices[:k]] = True
    return out


def detect(model, images, labels, *, eps: float = EPS, multiplier: float = MULTIPLIER,
           batch_size: int = 256, layer: str | None = None,
           feats: torch.Tensor | None = None) -> dict:
    """Spectral signatures over a training set.

    ``images`` ``(N, C, H, W)`` (float in [0, 1] or uint8), ``labels`` ``(N,)`` the training
    labels; ``layer`` which representation (:func:`lib.backdoor.detection.representations`:
    None = penultimate vector, or a block name); ``feats`` (optional) precomputed representations.
    Returns ``flags`` (bool
    ``(N,)``: removed), ``score`` (float ``(N,)``: ``tau_i``, comparable within a class only)
    and ``per_class`` ``{class: dict(n, removed, top_share)}``.
    """
    if not 0 <= eps <= 1 or multiplier < 0:
        raise ValueError(f"need 0 <= eps <= 1 and multiplier >= 0, got {eps}, {multiplier}")
    labels = torch.as_tensor(labels).long().cpu()
    if feats is None:
        feats = representations(model, images, labels, layer=layer, batch_size=batch_size)
    n = len(labels)
    flags, score = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.float64)
    per_class = {}
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        s, share = scores(feats[idx])
        score[idx], flags[idx] = s, removed(s, eps, multiplier)
        per_class[c] = dict(n=len(idx), removed=int(flags[idx].sum()), top_share=share)
    return dict(flags=flags, score=score, per_class=per_class)
