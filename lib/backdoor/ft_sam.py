"""FT-SAM (Zhu, Wei, Shen, Fan & Wu 2023, "Enhancing Fine-Tuning Based Backdoor Defense with
Sharpness-Aware Minimization", ICCV; arXiv 2304.11823): a purification that fine-tunes the
backdoored model on the defender's small clean set with (adaptive) sharpness-aware minimisation
at a large radius ``rho``. The paper's argument: backdoor neurons have large weight norms, and
ASAM's perturbation ``T_w^2 g`` with ``T_w = |w|`` moves exactly those weights most, so the
flat-minimum search on clean data shrinks them and the trigger's shortcut breaks, where plain
fine-tuning stays near the backdoored minimum.

The update (one SAM step per batch, Foret et al. 2021 eq. 2; ASAM, Kwon et al. 2021 eq. 9):

1. ascent: ``g = grad L(w)`` on the batch; ``e_w = rho * T_w^2 g / ||T_w g||_2`` with
   ``T_w = |w|`` elementwise when ``adaptive`` (else ``T_w = 1``, plain SAM), the norm taken
   over every trained parameter together;
2. descent: ``g' = grad L(w + e_w)`` on the same batch; the weights go back to ``w`` and the base
   optimiser (SGD, momentum, weight decay at ``w``) steps with ``g'``.

Reference code: BackdoorBench (SCLBD/BackdoorBench ``defense/ft-sam.py`` with
``utils/defense_utils/sam/sam.py``, a GSAM-style class after davda54/sam whose ``alpha`` is 0 in
every ft-sam config, i.e. plain (A)SAM). It takes ``T_w = |w|`` on every parameter with no offset
(SamsungLabs/ASAM adds ``eta = 0.01`` and scales only ``weight`` tensors; we follow
BackdoorBench), and it disables BatchNorm running statistics during the second forward
(davda54's ``bypass_bn``: momentum 0, so the perturbed pass does not update the running mean and
variance; the batch statistics are still used in that pass). Done the same way here.

Defaults are BackdoorBench's ``config/defense/ft-sam/cifar10.yaml`` (PreAct-ResNet18, 5% of the
CIFAR-10 training set): SGD lr 0.01, momentum 0.9, weight decay 5e-4, cosine annealing over all
steps, 100 epochs, batch 256, ``rho = 2`` (``rho_min = rho_max = 2``: constant), adaptive
(``--adaptive`` is ``store_false``, so True), label smoothing 0.1 (davda54's
``smooth_crossentropy``: ``1 - s`` on the label and ``s / (K - 1)`` on each other class; torch's
``label_smoothing = s K / (K - 1)`` is the same target). ``gtsrb.yaml`` takes ``rho = 8``, 50
epochs and no smoothing. Augmentation: BackdoorBench crops with 4-px padding and flips; here
random 3-px shifts without flips (:func:`lib.train.random_translate`, the workbook's recipe:
traffic signs are not mirror-symmetric). How a test scales these to the smoke budget is stated
where it calls :func:`ft_sam`.

torch has no SAM optimiser, so the two-step update is written here (:func:`sam_perturbation`,
:class:`SamStep`) and plugged into :func:`lib.train.fit` through its ``loss`` hook (ascent pass,
perturbation, loss at ``w + e_w``) and ``after_backward`` hook (weights back to ``w``, BatchNorm
statistics on again), so that batching, augmentation, the schedule, seeding and devices are
``fit``'s own. The input model is never modified.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from ..models import freeze
from ..train import fit, random_translate

PERTURB_EPS = 1e-12  # BackdoorBench's perturb_eps: guards the division when the gradient is zero


@torch.no_grad()
def sam_perturbation(params, grads, rho: float, adaptive: bool = True) -> list[torch.Tensor]:
    """The SAM / ASAM ascent step ``e_w = rho * T_w^2 g / (||T_w g||_2 + eps)`` for each tensor
    (``T_w = |w|`` when ``adaptive``, else 1), the norm over all tensors together (BackdoorBench's
    ``perturb_weights`` and ``_grad_norm``). A ``None`` gradient gives a zero perturbation."""
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    norm = torch.linalg.vector_norm(torch.stack([
        ((p.abs() if adaptive else 1.0) * g).float().norm(2) for p, g in pairs]), 2)
    scale = rho / (norm + PERTURB_EPS)
    out = []
    for p, g in zip(params, grads):
        if g is None:
            out.append(torch.zeros_like(p))
            continue
        e = g * scale.to(g.dtype)
        out.append(e * p.pow(2) if adaptive else e)
    return out


def _bn_running_stats(model: nn.Module, on: bool) -> None:
    """davda54's ``disable_running_stats`` / ``enable_running_stats``: BatchNorm momentum 0 (the
    running statistics stay put) for the perturbed pass, the saved momentum back afterwards."""
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            if not on:
                m._sam_momentum = m.momentum
                m.momentum = 0.0
            elif hasattr(m, "_sam_momentum"):
                m.momentum = m._sam_momentum
                del m._sam_momentum


def smooth_cross_entropy(logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """davda54's ``smooth_crossentropy`` (mean): ``1 - s`` on the label, ``s / (K - 1)`` on the
    others; ``s = 0`` is plain cross-entropy."""
    k = logits.shape[1]
    return F.cross_entropy(logits.float(), y, label_smoothing=smoothing * k / (k - 1) if smoothing else 0.0)


class SamStep:
    """One (A)SAM step as :func:`lib.train.fit` hooks: ``loss`` does the ascent pass at ``w``,
    moves the weights to ``w + e_w`` (BatchNorm statistics off) and returns the loss there, whose
    gradient ``fit`` computes; ``after_backward`` moves the weights back to ``w`` (statistics on)
    before ``fit``'s optimiser steps. The history gains ``loss_at_w`` (the unperturbed loss; its
    ``train_loss`` is the loss at ``w + e_w``). ``criterion(output, y)``: the objective (default
:func:`smooth_cross_entropy` with ``smoothing``)."""

    def __init__(self, params, rho: float, adaptive: bool = True, smoothing: float = 0.0, criterion=None):
        self.params = [p for p in params if p.requires_grad]
        self.rho, self.adaptive = rho, adaptive
        self.criterion = criterion or (lambda out, y: smooth_cross_entropy(out, y, smoothing))
        self.e_w: list[torch.Tensor] | None = None

    def loss(self, model, x, y):
        logits = model(x)
        loss_w = self.criterion(logits, y)
        grads = torch.autograd.grad(loss_w, self.params, allow_unused=True)
        self.e_w = sam_perturbation(self.params, grads, self.rho, self.adaptive)
        with torch.no_grad():
            for p, e in zip(self.params, self.e_w):
                p.add_(e)
        _bn_running_stats(model, False)
        loss_e = self.criterion(model(x), y)
        return loss_e, logits.detach(), {"loss_at_w": loss_w.detach()}

    @torch.no_grad()
    def after_backward(self, model) -> None:
        if self.e_w is not None:
            for p, e in zip(self.params, self.e_w):
                p.sub_(e)
            self.e_w = None
        _bn_running_stats(model, True)


def ft_sam(model: nn.Module, clean_set, *, epochs: int = 100, lr: float = 0.01, rho: float = 2.0,
           adaptive: bool = True, batch_size: int = 256, momentum: float = 0.9, weight_decay: float = 5e-4,
           label_smoothing: float = 0.1, translate: int | None = 3, seed: int = 0, progress: bool = False,
           **fit_kw) -> nn.Module:
    """Purify the backdoored ``model`` with FT-SAM on ``clean_set`` (the defender's clean images,
    an ImageSet or ``(x, y)`` in [0, 1]); returns a fine-tuned deep copy in eval mode, ``model``
    untouched, every parameter trained. Defaults: BackdoorBench's CIFAR-10 config (module
    docstring); cosine schedule over all steps; SGD with Nesterov momentum (:func:`lib.train.fit`'s
    SGD; BackdoorBench's is plain momentum). A batch larger than the clean set is cut to its size.
    ``rho=0`` is the same recipe without SAM (two passes at ``w``: plain fine-tuning). ``fit_kw``
    go to :func:`lib.train.fit` (``device``, ``amp``, ``schedule``, ...). Deterministic given
    ``seed`` (on one device and thread count)."""
    m = freeze(copy.deepcopy(model), False)
    step = SamStep(m.parameters(), rho, adaptive, label_smoothing)
    kw = dict(optimizer="sgd", momentum=momentum, weight_decay=weight_decay, schedule="cosine",
              augment=random_translate(translate) if translate else None, desc="FT-SAM")
    kw.update(fit_kw)
    n = len(clean_set[1]) if isinstance(clean_set, (tuple, list)) else len(clean_set)
    fit(m, clean_set, epochs=epochs, lr=lr, batch_size=min(batch_size, n), loss=step.loss,
        after_backward=step.after_backward, seed=seed, progress=progress, **kw)
    return m.eval()
