"""Fine-tuning a pretrained model on a target task: ``fine_tune`` (every layer), ``linear_probe``
(frozen body, new head) and ``l2_sp`` (Li, Grandvalet & Davoine 2018: pulled toward the
pretrained weights). Each takes the pretrained :class:`~lib.models.Classifier` (never modified)
and the target training data and returns ``(model, history)`` from :func:`lib.train.fit`."""
from __future__ import annotations

import math
from typing import Mapping

import pandas as pd
import torch
import torch.nn.functional as F

from ..data import num_classes_of
from ..models import Classifier, copy_for_target, freeze
from ..train import fit, pick_device
from .common import body_named_params, head_params, sq, with_augment


def fine_tune(pretrained: Classifier, train, *, epochs: int, lr: float = 0.01, seed: int = 0, translate="auto",
              head_lr_mult: float = 1.0, **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Standard fine-tuning: a copy of ``pretrained`` with a new head, every layer trained.

    Default ``lr=0.01``: Renofeation's training script from a pretrained start (as run for its
    DELTA baseline, scripts/DELTA.sh; the repository has no separate fine-tuning script): 30,000
    iterations at batch 64, SGD lr 5e-3..1e-2 with cosine decay, weight decay 0..1e-4, plus a
    ``beta/2 ||w||^2`` (beta=0.01) penalty on the last layer (not added here). Other ``fit_kw``
    (``batch_size``, ``schedule``, ``weight_decay``, ...) go to :func:`lib.train.fit`; the
    default augmentation is 3-px shifts for in-memory data. ``head_lr_mult``: the new head's
    learning rate as a multiple of ``lr`` (the Renofeation authors' backdoor scripts: 10).
    """
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", "fine-tune")
    if head_lr_mult != 1.0:
        head = {id(p) for p in head_params(model)}
        body = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
        kw["params"] = [{"params": body, "lr": lr},
                        {"params": [p for p in head_params(model) if p.requires_grad], "lr": lr * head_lr_mult}]
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)


def linear_probe(pretrained: Classifier, train, *, epochs: int, lr: float = 0.01, seed: int = 0, translate="auto",
                 **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Linear probe: the body of ``pretrained`` frozen (:func:`lib.train.freeze`: no gradients,
    eval-mode BatchNorm, bit-identical afterwards), only a new head trained.

    The seed's repository has no linear-probe script; fine-tuning's settings (lr 0.01, 30,000
    iterations at batch 64, cosine decay) are the default. The returned model keeps its body
    frozen (``freeze(model, False)`` to undo).
    """
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    freeze(model.blocks)
    freeze(model.normalize)
    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", "linear probe")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)


def l2_sp_penalty(model: Classifier, reference: Mapping[str, torch.Tensor], alpha: float,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The L2-SP penalty (Li, Grandvalet, Davoine 2018):
    ``alpha/2 * sum_body ||w - w0||^2 + beta/2 * sum_head ||w||^2``.

    ``reference``: parameter name -> pretrained value for the body (every parameter outside
    ``head``, BatchNorm scales and shifts included); the head (new, no pretrained value) gets
    plain L2. Returns ``(penalty, body_sq, head_sq)`` with the two unscaled squared norms.
    """
    body_sq = sum((p.float() - reference[k].float()).pow(2).sum()
                  for k, p in body_named_params(model).items() if k in reference)
    head_sq = sq(head_params(model))
    body_sq = body_sq if isinstance(body_sq, torch.Tensor) else torch.zeros((), device=head_sq.device)
    return 0.5 * alpha * body_sq + 0.5 * beta * head_sq, body_sq, head_sq


def l2_sp(pretrained: Classifier, train, *, alpha: float = 0.01,
          beta: float = 0.01, epochs: int, lr: float = 0.01, seed: int = 0, translate="auto",
          **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """L2-SP fine-tuning (Li, Grandvalet, Davoine 2018, "Explicit inductive bias for transfer
    learning with convolutional networks", ICML): cross-entropy plus
    ``alpha/2 ||w_body - w0_body||^2 + beta/2 ||w_head||^2`` (:func:`l2_sp_penalty`), the
    penalty replacing weight decay (SGD ``weight_decay=0`` for every parameter; passing a
    non-zero ``weight_decay`` is an error).

    Defaults ``alpha = beta = 0.01`` (as in the DELTA authors' code, which runs L2-SP with SGD lr
    0.01, batch 64, 9,000 iterations, lr x0.1 after two thirds; the L2-SP paper cross-validates
    both). The history gains ``l2sp_body`` (epoch
    mean of ``||w_body - w0||^2``), ``head_sq`` and ``dist_to_pretrained`` (``||w_body - w0||`` at
    the end of each epoch).
    """
    if fit_kw.get("weight_decay", 0.0):
        raise ValueError("l2_sp replaces weight decay by its own penalty; leave weight_decay at 0")
    fit_kw["weight_decay"] = 0.0
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    device = pick_device(fit_kw.get("device"))
    model.to(device)
    reference = {k: p.detach().clone() for k, p in body_named_params(model).items()}

    def loss(m, x, y):
        logits = m(x)
        ce = F.cross_entropy(logits, y)
        reg, body_sq, head_sq = l2_sp_penalty(m, reference, alpha, beta)
        return ce + reg, logits, {"l2sp_body": body_sq, "head_sq": head_sq}

    kw = with_augment(train, translate, fit_kw)
    user_cb = kw.pop("on_epoch_end", None)

    def on_epoch_end(epoch, row, m):
        row["dist_to_pretrained"] = math.sqrt(sum(float((p.detach().float() - reference[k].float()).pow(2).sum())
                                                  for k, p in body_named_params(m).items()))
        return user_cb(epoch, row, m) if user_cb is not None else None

    kw.setdefault("desc", "L2-SP")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, loss=loss, on_epoch_end=on_epoch_end, **kw)
