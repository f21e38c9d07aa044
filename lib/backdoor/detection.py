"""Shared pieces of the training-data backdoor detectors (issue 31): the representations they
read (:func:`representations`, the model's penultimate vector) and how a detector is scored
against the known poisoned indices (:func:`detection_scores`).

The detectors themselves are one per file: :mod:`lib.backdoor.activation_clustering` (Chen et al.
2018) and :mod:`lib.backdoor.spectral_signatures` (Tran, Li & Madry 2018).
"""
from __future__ import annotations

import torch
from torch import nn

from ..metrics import binomial_interval


@torch.no_grad()
def representations(model: nn.Module, images, labels=None, *, layer: str | None = None,
                    batch_size: int = 256) -> torch.Tensor:
    """Penultimate-layer vectors ``(N, d)`` (float32, CPU) of ``images`` in eval mode, or with
    ``layer`` (a block name, e.g. ``model.stages[-1]``) that block's output map flattened.

    For a :class:`lib.models.Classifier` this is ``model.penultimate``: the last stage globally
    average-pooled, the vector the final ``fc`` reads -- the "last hidden layer" both papers use
    (Chen et al. 2018, section 3; Tran et al. 2018, section 4: the input of the last linear
    layer). Why ``layer``: global pooling averages a small corner trigger away (on the tests'
    planted small_cnn the pooled vector hardly separates poison; the unpooled last stage,
    128 x 4 x 4, separates it cleanly), and Tran et al. themselves read a residual unit's output.
    ``images``: ``(N, C, H, W)`` float in [0, 1] or uint8 (as :class:`lib.train.Batches`
    reads them); the model's train/eval mode is restored afterwards.
    """
    from ..train import Batches, model_device

    if labels is None:
        labels = torch.zeros(len(images), dtype=torch.long)
    was = model.training
    model.eval()
    try:
        out = [(model.penultimate(x) if layer is None
                else model.features(x, [layer], logits=False)[layer].flatten(1)).float().cpu()
               for x, _ in Batches((images, labels), batch_size, model_device(model))]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, 0)


def as_mask(flags, n: int) -> torch.Tensor:
    """A bool mask of length ``n`` from a bool mask or a list/tensor of indices."""
    t = torch.as_tensor(flags)
    if t.dtype == torch.bool:
        if t.numel() != n:
            raise ValueError(f"bool flags have {t.numel()} entries, expected {n}")
        return t.flatten().cpu()
    mask = torch.zeros(n, dtype=torch.bool)
    mask[t.long().flatten().cpu()] = True
    return mask


def detection_scores(flags, poisoned_idx, n: int, level: float = 0.95) -> dict[str, float]:
    """Precision and recall of flagged images against the truly poisoned ones, each with its
    Wilson interval (:func:`lib.metrics.binomial_interval`).

    ``flags``: bool mask of length ``n`` or flagged indices; ``poisoned_idx``: indices (or mask)
    of the poisoned images among the ``n``. Returns ``precision`` (= tp / flagged, over
    ``flagged`` trials; nan when nothing is flagged), ``recall`` (= tp / poisoned, over
    ``poisoned`` trials), their ``_low``/``_high`` bounds, and the counts ``tp``, ``flagged``,
    ``poisoned``, ``n``.
    """
    f, p = as_mask(flags, n), as_mask(poisoned_idx, n)
    tp, nf, npz = int((f & p).sum()), int(f.sum()), int(p.sum())
    out: dict[str, float] = dict(tp=tp, flagged=nf, poisoned=npz, n=n)
    for name, k, m in (("precision", tp, nf), ("recall", tp, npz)):
        out[name] = k / m if m else float("nan")
        out[f"{name}_low"], out[f"{name}_high"] = binomial_interval(k, m, level)
    return out
