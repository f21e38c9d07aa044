"""FGSM (Goodfellow et al. 2015) and least-likely-class FGSM (Kurakin et al. 2017): one signed
gradient step (conventions in :mod:`lib.attacks.core`)."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .core import attack_mode, attack_objective, check_attack_args, prepare_batch, value_and_grad


# --------------------------------------------------------------------------------------------
# FGSM family
# --------------------------------------------------------------------------------------------
def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, targeted: bool = False,
         zero_shortcut: bool = False) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad CE))``.

    ``targeted=True``: ``y`` is the target class and the step goes *down* its cross-entropy.
    At ``eps = 0`` the iterations still run (so the "eps 0 equals clean accuracy" sanity check
    exercises projection and clamping); ``zero_shortcut=True`` returns ``x`` at once instead.
    """
    check_attack_args(eps)
    with attack_mode(model):
        x0, y = prepare_batch(model, x, y)
        if eps == 0 and zero_shortcut:
            return x0.clone()
        _, _, g = value_and_grad(model, x0, attack_objective("ce", y, targeted))
        return (x0 + eps * g.sign()).clamp_(0.0, 1.0).detach()


def ll_fgsm(model: nn.Module, x: Tensor, eps: float) -> Tensor:
    """Least-likely-class FGSM ("step l.l.", Kurakin et al. 2017, "Adversarial machine learning at
    scale"): ``clip(x - eps * sign(grad_x CE(f(x), y_LL)))`` with ``y_LL`` the class the model
    finds least likely on the clean ``x``. Needs no labels."""
    check_attack_args(eps)
    with attack_mode(model):
        x0 = prepare_batch(model, x)
        with torch.no_grad():
            y_ll = model(x0).float().argmin(dim=1)
        return fgsm(model, x0, y_ll, eps, targeted=True)
