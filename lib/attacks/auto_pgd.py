"""APGD and APGD-T (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with
an ensemble of diverse parameter-free attacks", Algorithm 1 and Sec. 3), written from the paper;
the places where the paper leaves a choice open and we follow the authors' reference code are
marked "(as the reference code)" in :func:`_apgd_run`. ``apgd`` is the function."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .core import (ascent_direction, attack_mode, attack_objective, bcast_per_sample, check_attack_args, l2_normalized,
                   prepare_batch, project_ball, seeded_generator, value_and_grad)


# --------------------------------------------------------------------------------------------
# APGD
# --------------------------------------------------------------------------------------------
def _apgd_checkpoints(steps: int) -> list[int]:
    """Iterations ``w_j = ceil(p_j * steps)`` at which APGD checks its step size.

    ``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` (paper, Sec. 3.2),
    computed in integer hundredths so that e.g. ``0.22 * 100`` cannot round up to 23. For 100
    steps: 22, 41, 57, 70, 80, 87, 93, 99.
    """
    p = [0, 22]
    while True:
        nxt = p[-1] + max(p[-1] - p[-2] - 3, 6)
        if nxt > 100:
            break
        p.append(nxt)
    return sorted({-(-pj * steps // 100) for pj in p[1:]} - {0})


def _apgd_reduce(n_increase: Tensor, length: int, rho: float, f_max: Tensor, f_max_last: Tensor,
                 reduced_last: Tensor) -> Tensor:
    """Which samples halve their step size at a checkpoint ``w_j`` (paper, Sec. 3.2):

    1. the objective rose in fewer than a fraction ``rho`` of the ``length = w_j - w_{j-1}``
       steps since the last checkpoint: ``sum 1[f(x(i+1)) > f(x(i))] < rho * length``;
    2. the step size was not reduced at the last checkpoint (``eta(w_{j-1}) == eta(w_j)``) and the
       best objective did not improve since then (``f_max(w_{j-1}) == f_max(w_j)``).

    At the first checkpoint condition 2 compares with the start (nothing was reduced at
    ``w_0 = 0``); the reference code instead never applies it there.
    """
    cond1 = n_increase < rho * length
    cond2 = ~reduced_last & (f_max <= f_max_last)
    return cond1 | cond2


def _apgd_run(model: nn.Module, x0: Tensor, objective, success, eps: float, norm: str, steps: int,
              rho: float, gen: torch.Generator | None, momentum: float = 0.75):
    """One run of APGD (paper, Algorithm 1) on a batch; all state is per sample.

    Returns ``(x_best, fooled, loss_best)``: for samples that were adversarial (``success`` of the
    predicted labels) at some iterate, the adversarial iterate with the highest objective;
    otherwise the iterate with the highest objective (``x_max``).
    """
    n = len(x0)
    b = lambda v: bcast_per_sample(v, x0)
    # x(0): a random point on the surface of the eps-ball, clamped to [0, 1] (as the reference
    # code: L-inf eps * t / ||t||_inf with t ~ U(-1, 1); L2 a Gaussian direction of length eps).
    if norm == "linf":
        t = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype) * 2 - 1
        t = t / b(t.flatten(1).abs().amax(dim=1).clamp_min(1e-12))
    else:
        t = l2_normalized(torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype))
    x_cur = (x0 + eps * t).clamp_(0.0, 1.0)
    f_cur, logits, grad = value_and_grad(model, x_cur, objective)
    # Best point so far (x_max, f_max) and its gradient, to restart from it.
    x_max, f_max, g_max = x_cur.clone(), f_cur.clone(), grad.clone()
    # Best adversarial point so far (the result for samples that were fooled at any iterate).
    fooled = success(logits.argmax(1))
    x_adv = x_cur.clone()
    f_adv = torch.where(fooled, f_cur, torch.full_like(f_cur, float("-inf")))

    eta = torch.full((n,), 2.0 * eps, device=x0.device, dtype=x0.dtype)  # eta(0) = 2 eps
    checkpoints = set(_apgd_checkpoints(steps))
    last_check = 0
    n_increase = torch.zeros(n, device=x0.device)
    f_max_last = f_max.clone()
    reduced_last = torch.zeros(n, dtype=torch.bool, device=x0.device)
    x_prev = x_cur
    for k in range(steps):
        # z(k+1) = P_S(x(k) + eta * direction(grad f(x(k))))
        z = project_ball(x0, x_cur + b(eta) * ascent_direction(grad, norm), eps, norm)
        if k == 0:
            x_new = z  # x(1) = z(1): the first step has no momentum
        else:
            # x(k+1) = P_S(x(k) + alpha (z(k+1) - x(k)) + (1 - alpha) (x(k) - x(k-1))), alpha = 0.75
            x_new = project_ball(x0, x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev), eps, norm)
        # The last iterate only needs its value (nothing steps from it), not a gradient.
        f_new, logits, g_new = value_and_grad(model, x_new, objective, need_grad=k < steps - 1)

        n_increase += f_new > f_cur  # counts 1[f(x(k+1)) > f(x(k))] for condition 1
        better = f_new > f_max  # if f(x(k+1)) > f_max: x_max <- x(k+1), f_max <- f(x(k+1))
        x_max = torch.where(b(better), x_new, x_max)
        f_max = torch.where(better, f_new, f_max)
        if g_new is not None:
            g_max = torch.where(b(better), g_new, g_max)
        adv_better = success(logits.argmax(1)) & (f_new > f_adv)
        x_adv = torch.where(b(adv_better), x_new, x_adv)
        f_adv = torch.where(adv_better, f_new, f_adv)
        fooled |= adv_better

        x_prev, x_cur, f_cur, grad = x_cur, x_new, f_new, g_new
        w = k + 1
        if w in checkpoints and w < steps:
            reduce = _apgd_reduce(n_increase, w - last_check, rho, f_max, f_max_last, reduced_last)
            eta = torch.where(reduce, eta / 2, eta)
            # Restart from the best point: x(w_j) <- x_max (with its objective and gradient).
            # The momentum term of the next step is then x_max - x(w_j - 1) (as the reference code).
            x_cur = torch.where(b(reduce), x_max, x_cur)
            grad = torch.where(b(reduce), g_max, grad)
            f_cur = torch.where(reduce, f_max, f_cur)
            reduced_last, f_max_last, last_check = reduce, f_max.clone(), w
            n_increase.zero_()
    return torch.where(b(fooled), x_adv, x_max), fooled, torch.where(fooled, f_adv, f_max)


def apgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, norm: str = "linf", steps: int = 100,
         loss: str = "ce", targeted: bool = False, n_target_classes: int = 9, restarts: int = 1,
         rho: float = 0.75, seed: int | None = 0, y_target: Tensor | None = None,
         zero_shortcut: bool = False) -> Tensor:
    """Auto-PGD (Croce & Hein 2020): step-size-free PGD with momentum, checkpoints that halve the
    step size, and restarts from the best point (see :func:`_apgd_run`). ``y`` is the *true*
    label here, also when ``targeted``.

    - untargeted: maximise ``CE(z, y)`` (APGD-CE) or ``DLR(z, y)`` (APGD-DLR);
    - ``targeted=True`` (APGD-T when ``loss="dlr"``): for each of the ``n_target_classes`` (at most
      C - 1) non-true classes with the highest clean logits, in order, run APGD maximising the
      targeted DLR (or ``-CE(z, t)``) on the samples not yet misclassified; success is any
      misclassification, as in AutoAttack. With an explicit ``y_target`` it runs toward that
      class only and success means predicting it.

    ``restarts`` random restarts (per target) re-attack only the samples not yet fooled.
    ``steps`` is per run, so APGD-T costs ``n_target_classes * restarts * steps`` gradient
    evaluations. Returns the per-sample worst case: samples already fooled by ``x`` are returned
    unchanged; for the others the best adversarial point found (highest objective among fooling
    iterates), else the point of highest objective. ``seed`` seeds a private generator for the
    random starting points (None: global RNG). At ``eps = 0`` the iterations still run (the
    sanity check "eps 0 equals clean accuracy" then exercises them); ``zero_shortcut=True``
    returns ``x`` at once instead.
    """
    check_attack_args(eps, norm, loss)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    with attack_mode(model):
        x0, y = prepare_batch(model, x, y)
        if eps == 0 and zero_shortcut:
            return x0.clone()
        with torch.no_grad():
            logits = model(x0).float()
        explicit = y_target is not None
        if explicit:  # one run toward the given classes; success = predicting them
            if not targeted:
                raise ValueError("y_target is given but targeted=False")
            y_target = torch.as_tensor(y_target).to(x0.device).long()
            targets = [y_target]
            done = logits.argmax(1) == y_target
        else:  # success = any misclassification (also for APGD-T, as in AutoAttack)
            done = logits.argmax(1) != y
            if targeted:
                # The top non-true classes by clean logit (AutoAttack: 2nd, 3rd, ... highest logit).
                k = min(n_target_classes, logits.shape[1] - 1)
                if k < 1:
                    raise ValueError("targeted APGD needs at least 2 classes")
                order = logits.scatter(1, y.view(-1, 1), float("-inf")).topk(k, dim=1).indices
                targets = [order[:, j] for j in range(k)]
            else:
                targets = [None]
        x_out = x0.clone()
        best = torch.full((len(x0),), float("-inf"), device=x0.device)
        gen = seeded_generator(seed, x0.device)
        for t in targets:
            for _ in range(restarts):
                idx = (~done).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                y_run, t_run = y[idx], (t[idx] if t is not None else None)
                objective = attack_objective(loss, y_run, targeted, t_run)
                if explicit:
                    succ = lambda pred, t_run=t_run: pred == t_run
                else:
                    succ = lambda pred, y_run=y_run: pred != y_run
                x_run, fooled, f_run = _apgd_run(model, x0[idx], objective, succ, eps, norm, steps, rho, gen)
                # Keep a sample's new point if it fools the model, else if its objective is higher.
                take = fooled | (f_run > best[idx])
                x_out[idx[take]] = x_run[take]
                best[idx[take]] = f_run[take]
                done[idx[fooled]] = True
        return x_out.detach()
