"""Renofeation (Chin, Zhang & Marculescu 2021, "Renofeation: A simple transfer learning method
for improved adversarial robustness", CVPR Workshops; official code
github.com/enyac-group/Renofeation): a randomly initialised student trained with noisy feature
distillation from the pretrained model (``NoisyStudent``: 1x1 adapters, spatial dropout after
each stage), then stochastic weight averaging with BatchNorm recomputed. ``renofeation`` is the
method."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from ..data import ImageSet, num_classes_of
from ..models import Classifier, fresh_like, frozen_copy, seeded
from ..train import Batches, fit, pick_device
from .common import head_params, sq, with_augment


class NoisyStudent(nn.Module):
    """A :class:`Classifier` with spatial dropout (``nn.Dropout2d(p)``) after each of ``stages`` and
    a trainable 1x1 conv adapter (no bias, student -> teacher channels) per stage, as in
    Renofeation's official code (``record_act_with_1x1`` / ``dim_matching``).

    ``forward(x)`` gives logits (dropout active in train mode only); :meth:`forward_features`
    also returns the stage outputs *before* dropout, passed through the adapters (what is
    matched to the teacher). Only ``model`` is kept after training.
    """

    def __init__(self, model: Classifier, stages: Sequence[str], p: float = 0.1,
                 teacher_channels: Mapping[str, int] | None = None,
                 student_channels: Mapping[str, int] | None = None):
        super().__init__()
        self.model = model
        self.stages = list(stages)
        self.dropout = nn.ModuleDict({s: nn.Dropout2d(p) for s in self.stages})
        self.adapters = nn.ModuleDict()
        if teacher_channels is not None:
            dev = next(model.parameters()).device
            for s in self.stages:
                self.adapters[s] = nn.Conv2d(student_channels[s], teacher_channels[s], 1, bias=False,
                                             device=dev)

    def forward_features(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        feats = {}

        def noisy(name, h):
            if name in self.dropout:
                feats[name] = self.adapters[name](h) if name in self.adapters else h
                return self.dropout[name](h)

        return feats, self.model.head(self.model.walk(x, each=noisy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def _stage_channels(model: Classifier, x: torch.Tensor, stages) -> dict[str, int]:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model.features(x, stages, logits=False)
    model.train(was)
    return {s: out[s].shape[1] for s in stages}


def _probe_input(train, device) -> torch.Tensor:
    if isinstance(train, ImageSet):
        return train.float_images(slice(0, 2)).to(device)
    if isinstance(train, (tuple, list)):
        x = train[0][:2]
        return (x.float() / 255 if x.dtype == torch.uint8 else x.float()).to(device)
    return train[0][0][None].float().to(device)


def recalibrate_bn(model: nn.Module, train, batch_size: int = 128, device=None) -> nn.Module:
    """Recompute every BatchNorm's running statistics of ``model`` in place (cumulative average,
    ``torch.optim.swa_utils.update_bn``) with one pass over ``train`` (un-augmented) in train mode
    and *no* dropout: the statistics of the activations the model sees at test time.

    Why: the official code recalibrates through the dropout wrapper, so each BatchNorm after a
    dropped stage learns the variance of dropped-out inputs (Li et al. 2019, "Understanding the
    disharmony between dropout and batch normalization by variance shift") and sees another one
    at test time. Returns ``model`` (in eval mode)."""
    device = pick_device(device) if device is not None else next(model.parameters()).device
    update_bn(Batches(train, batch_size, device), model.to(device))
    return model.eval()


def renofeation(pretrained: Classifier, train, *,
                epochs_distill: int, epochs_swa: int, lr: float = 0.01, feat_weight: float = 5.0,
                dropout: float = 0.1, swa_lr: float = 0.005, beta: float = 0.01, swa_every: int = 1,
                stages: Sequence[str] | None = None, seed: int = 0, translate="auto", bn_dropout: bool = True,
                on_swa_update: Callable[[int, Classifier], None] | None = None,
                **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Renofeation (Chin, Zhang, Marculescu 2021): re-training with noisy feature distillation.

    Stage 1 (``epochs_distill`` at ``lr``): a randomly initialised student of the pretrained
    architecture (:func:`fresh_like`) wrapped as a :class:`NoisyStudent` - ``Dropout2d(dropout)``
    after every stage, a trainable 1x1 conv adapter per stage - minimises
    ``CE + feat_weight * sum_stages MSE(adapter(F_s), F0_s) + beta/2 ||w_head||^2`` where ``F0``
    are the frozen pretrained teacher's (eval mode, no grads) stage outputs and ``F_s`` the
    student's before dropout (MSE: mean over all elements, summed over stages, as in the code).

    Stage 2 (``epochs_swa`` at the constant ``swa_lr``): the same objective, continued from stage
    1 (adapters included, new optimiser), with stochastic weight averaging
    (``torch.optim.swa_utils.AveragedModel``): after every ``swa_every``-th epoch the student's
    parameters join the running average (``on_swa_update(k, student)`` is called right after the
    k-th). Finally ``update_bn`` recomputes every BatchNorm's statistics of the averaged model
    with one pass over the (un-augmented) training data in train mode, spatial dropout active as
    in the official code (``bn_dropout=True``), or inactive (``False``: :func:`recalibrate_bn`, the
    statistics the model sees at test time, where dropout is off). The returned model is that
    average (a plain :class:`Classifier`, dropout and adapters dropped).

    Official settings (scripts/Renofeation.sh, ResNet-18): stage 1 90,000 iterations at batch 64,
    lr 0.01 cosine, weight decay 5e-3, momentum 0.9, feat_weight 5 (1 on CUB-200), dropout 0.1,
    beta 0.01, all four stages; stage 2 30,000 iterations at constant lr 5e-3, averaging every
    500 iterations from the start; these are the defaults (``swa_every`` counts epochs; pass
    ``weight_decay=5e-3`` and ``schedule="cosine"`` through ``fit_kw`` for the rest). Other ``fit_kw``
    apply to both stages, except ``schedule`` (stage 2 is always at a constant lr); a user
    ``on_epoch_end`` receives the :class:`NoisyStudent` wrapper as its model.

    The history has one row per epoch of both stages (``stage``: ``"distill"``/``"swa"``,
    ``stage_epoch``, and ``epoch`` counting on), with ``feat_loss`` (epoch mean of the
    unweighted distillation sum), ``ce`` and ``head_sq``; ``attrs["swa_updates"]`` counts the
    averaged snapshots.
    """
    stages = list(pretrained.stages if stages is None else stages)
    device = pick_device(fit_kw.get("device"))
    k = num_classes_of(train)
    teacher = frozen_copy(pretrained, device)
    student_model = fresh_like(pretrained, k, seed=seed).to(device)
    x0 = _probe_input(train, device)
    student = NoisyStudent(student_model, stages, dropout,
                           teacher_channels=_stage_channels(teacher, x0, stages),
                           student_channels=_stage_channels(student_model, x0, stages))
    with seeded(seed, "adapters"):
        for a in student.adapters.values():
            a.reset_parameters()

    def loss(s, x, y):
        feats, logits = s.forward_features(x)
        with torch.no_grad():
            t = teacher.features(x, stages, logits=False)
        feat = sum(F.mse_loss(feats[n].float(), t[n].float()) for n in stages)
        ce = F.cross_entropy(logits, y)
        head_sq = sq(head_params(s.model))
        return ce + feat_weight * feat + 0.5 * beta * head_sq, logits, {"feat_loss": feat, "ce": ce, "head_sq": head_sq}

    user_cb = fit_kw.pop("on_epoch_end", None)
    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", "Renofeation distill")
    kw["on_epoch_end"] = user_cb
    h1 = fit(student, train, epochs=epochs_distill, lr=lr, seed=seed, loss=loss, **kw).assign(stage="distill")

    # stage 2: SWA at a constant learning rate
    swa = AveragedModel(student.model)
    updates = {"n": 0}

    def swa_epoch_end(epoch, row, s):
        if epoch % swa_every == 0:
            swa.update_parameters(s.model)
            updates["n"] += 1
            if on_swa_update is not None:
                on_swa_update(updates["n"], s.model)
        return user_cb(epoch, row, s) if user_cb is not None else None

    kw2 = dict(kw, on_epoch_end=swa_epoch_end, schedule=None, desc="Renofeation SWA")  # constant lr
    h2 = fit(student, train, epochs=epochs_swa, lr=swa_lr, seed=seed + 1, loss=loss, **kw2).assign(stage="swa")
    if updates["n"] == 0:  # fewer epochs than swa_every: average the final weights
        swa.update_parameters(student.model)
        updates["n"] = 1
        if on_swa_update is not None:
            on_swa_update(1, student.model)

    model = swa.module
    if bn_dropout:
        update_bn(Batches(train, kw.get("batch_size", 128), device), NoisyStudent(model, stages, dropout))
    else:
        recalibrate_bn(model, train, kw.get("batch_size", 128), device)
    model.eval()
    hist = pd.concat([h1, h2], ignore_index=True)
    hist.insert(0, "stage_epoch", hist["epoch"])
    hist["epoch"] = np.arange(1, len(hist) + 1)
    hist.attrs["swa_updates"] = updates["n"]
    return model, hist
