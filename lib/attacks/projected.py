"""PGD (Madry et al. 2018) in L-inf and L2 with a uniform random start; its loop is shared with
the feature-space attack (conventions in :mod:`lib.attacks.core`)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from .core import (attack_mode, attack_objective, bcast_per_sample, check_attack_args, l2_normalized, linf_step,
                   prepare_batch, project_ball, seeded_generator, value_and_grad)


# --------------------------------------------------------------------------------------------
# PGD
# --------------------------------------------------------------------------------------------
def _random_delta(x: Tensor, eps: float, norm: str, gen: torch.Generator | None) -> Tensor:
    """PGD's random start, uniform in the eps-ball.

    L-inf: every coordinate uniform in [-eps, eps] (Madry et al. 2018). L2: uniform in the *volume*
    of the ball: a Gaussian direction (isotropic, so uniform on the sphere) with radius
    ``eps * u ** (1 / d)``, ``u ~ U(0, 1)``, ``d`` = numbers per image. In high dimension almost
    all of the ball's volume is near its surface, so for a 3x32x32 image the radius exceeds
    ``0.999 eps`` with probability 0.95 (torchattacks' PGDL2 instead draws the radius uniformly in
    [0, eps], which concentrates starts near the centre).
    """
    if norm == "linf":
        return (torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    d = x[0].numel()
    direction = l2_normalized(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))
    radius = eps * torch.rand(len(x), generator=gen, device=x.device, dtype=x.dtype) ** (1.0 / d)
    return direction * bcast_per_sample(radius, x)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, norm: str = "linf",
        random_start: bool = True, targeted: bool = False, *, loss: str = "ce", seed: int | None = None,
        zero_shortcut: bool = False) -> Tensor:
    """Projected gradient descent (Madry et al. 2018), returning the last iterate.

    ``steps`` gradient steps of size ``alpha`` from ``x`` or, with ``random_start``, from a point
    drawn uniformly in the eps-ball (see :func:`_random_delta`; ``seed`` uses a private generator,
    None the global RNG). L-inf: ``x += alpha * sign(g)``; L2: ``x += alpha * g / ||g||_2``; after
    each step the perturbation is clipped (L-inf) or rescaled (L2) onto the ball and the image
    clamped to [0, 1]. ``loss``: ``"ce"`` or ``"dlr"`` (untargeted only). ``targeted=True``: ``y``
    is the target class and each step goes down its cross-entropy.
    At ``eps = 0`` the iterations still run (so the "eps 0 equals clean accuracy" sanity check
    exercises projection and clamping); ``zero_shortcut=True`` returns ``x`` at once instead.
    """
    check_attack_args(eps, norm, loss)
    with attack_mode(model):
        x0, y = prepare_batch(model, x, y)
        return pgd_loop(model, x0, attack_objective(loss, y, targeted), eps, alpha, steps, norm, random_start, seed,
                        zero_shortcut=zero_shortcut)


def pgd_loop(model: Callable[[Tensor], Tensor], x0: Tensor, objective, eps: float, alpha: float, steps: int, norm: str,
             random_start: bool, seed: int | None, start: Tensor | None = None,
             zero_shortcut: bool = False) -> Tensor:
    """PGD's iterations on a prepared ``x0`` (inside :func:`attack_mode`), maximising the per-sample
    ``objective(model(x))``; shared by :func:`pgd` and :func:`feature_attack` (whose ``model`` is
    a feature function of the attacked model). ``start``: the first iterate (projected onto the
    ball), overriding ``random_start`` (TRADES starts from ``x + 0.001 N(0, 1)``)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if eps == 0 and zero_shortcut:
        return x0.clone()
    if start is not None:
        x_adv = project_ball(x0, start.detach().clone(), eps, norm)
    elif random_start:
        x_adv = (x0 + _random_delta(x0, eps, norm, seeded_generator(seed, x0.device))).clamp_(0.0, 1.0)
    else:
        x_adv = x0.clone()
    for _ in range(steps):
        _, _, g = value_and_grad(model, x_adv, objective)
        if norm == "linf":
            x_adv = linf_step(x_adv, g, x0, alpha, eps)
        else:
            x_adv = project_ball(x0, x_adv + alpha * l2_normalized(g), eps, norm)
    return x_adv.detach()
