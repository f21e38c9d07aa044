"""Evasion attacks: FGSM, least-likely FGSM, PGD (L-inf, L2), APGD / APGD-T, a feature-space
attack on a pretrained layer, transfer evaluation.

Conventions shared by every attack here
---------------------------------------
- Images are float tensors in [0, 1]; ``eps`` and step sizes are in pixel units (the models of
  :mod:`lib.models` normalise internally). Every iterate is projected onto the eps-ball around
  ``x`` *and* clamped to [0, 1], so the result satisfies ``||x_adv - x|| <= eps`` and
  ``0 <= x_adv <= 1``. L-inf and L2 norms are taken per sample over all non-batch dimensions.
- Each attack *maximises* an objective, always per sample and summed over the batch before the
  gradient is taken: the gradient for one image does not depend on the batch it is in (a
  batch-mean loss would scale it by 1/N). Untargeted: ``CE(z, y)`` or ``DLR(z, y)``. Targeted
  (``targeted=True``; for :func:`fgsm` and :func:`pgd` ``y`` is then the *target* class):
  ``-CE(z, y)``, i.e. the attack walks down the loss toward the target.
- The model is attacked in eval mode with its parameters' ``requires_grad`` switched off; the
  previous mode of every submodule and every flag are restored afterwards
  (:func:`attack_mode`). BatchNorm running statistics are never touched, no ``.grad`` is left on
  parameters; gradients are taken w.r.t. the input only (``torch.autograd.grad``), so the
  attacks also work when called under ``torch.no_grad()``.
- Inputs are moved to the model's device; ``x`` is never modified; results are detached.
- Under CUDA a caller may wrap an attack in ``torch.autocast("cuda", torch.bfloat16)``: the
  forward pass then runs in bf16, while losses, the iterates and all norms stay in float32.
- Attacks are silent; only :func:`transfer_eval` has a progress bar (``progress=True``).

APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1 and Sec. 3) is written from the paper; the
places where the paper leaves a choice open and we follow the authors' reference code are
marked "(as the reference code)" in :func:`_apgd_run`.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr")
ATTACKS = ("fgsm", "ll_fgsm", "pgd", "apgd", "apgd_t", "feature")

# Added to the L2 norm of a gradient before dividing by it (guards all-zero gradients). Read at
# call time, so a test can set it to the value that reproduces another implementation exactly.
_L2_DIV = 1e-12
_DLR_DIV = 1e-12  # added to the DLR denominator (as in the paper's reference code)


# --------------------------------------------------------------------------------------------
# Model state and input handling
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _saved_modes(model: nn.Module):
    """Restore the ``training`` flag of every submodule on exit (frozen parts included)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def attack_mode(model: nn.Module):
    """Eval mode, parameters without ``requires_grad``, gradients enabled; all restored on exit.

    Eval mode keeps BatchNorm running statistics fixed and dropout off; switching
    ``requires_grad`` off makes the backward pass compute input gradients only and guarantees
    that no ``.grad`` appears on parameters. ``enable_grad`` (and leaving inference mode) lets
    an attack run inside a caller's ``torch.no_grad()`` / ``torch.inference_mode()``.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    with _saved_modes(model):
        model.eval()
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            with torch.inference_mode(False), torch.enable_grad():
                yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def _prepare(model: nn.Module, x: Tensor, y: Tensor | None = None):
    """``x`` (and ``y``) on the model's device, detached, checked to be images in [0, 1]."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"attacks expect float images in [0, 1], got {getattr(x, 'dtype', type(x))}")
    device = _model_device(model)
    x0 = x.detach().to(device)
    if x0.is_inference():
        x0 = x0.clone()  # a normal tensor, usable by autograd outside inference mode
    if x0.numel() and not (x0.min() >= -1e-6 and x0.max() <= 1 + 1e-6):  # also rejects NaN
        raise ValueError("attacks expect images in [0, 1] (models normalise internally); got values in "
                         f"[{x0.min().item():.3g}, {x0.max().item():.3g}]")
    if y is None:
        return x0
    y = torch.as_tensor(y).detach().to(device).long()
    if x0.is_inference() or y.is_inference():
        y = y.clone()
    if y.shape != x0.shape[:1]:
        raise ValueError(f"labels of shape {tuple(y.shape)} for a batch of {len(x0)} images")
    return x0, y


def _check(eps: float, norm: str = "linf", loss: str = "ce") -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A private generator for ``seed`` (the global RNG stays untouched); None: global RNG."""
    return None if seed is None else torch.Generator(device=device).manual_seed(int(seed))


def _bcast(v: Tensor, x: Tensor) -> Tensor:
    """Per-sample values ``(N,)`` shaped to broadcast against ``x`` ``(N, ...)``."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def _l2(v: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch dimensions, shape ``(N,)``."""
    return torch.linalg.vector_norm(v.flatten(1), dim=1)


# --------------------------------------------------------------------------------------------
# Losses, gradients, projections
# --------------------------------------------------------------------------------------------
def dlr_loss(logits: Tensor, y: Tensor, y_target: Tensor | None = None) -> Tensor:
    """Per-sample Difference-of-Logits-Ratio loss (Croce & Hein 2020, eqs. 5 and 6), in float32.

    With ``z`` the logits sorted so that ``z_pi1 >= z_pi2 >= ...``:

    - untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)`` (needs >= 3 classes);
    - targeted toward ``y_target``: ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` (>= 4 classes).

    ``y`` is always the true label. Larger is more adversarial (attacks maximise it); the value
    is positive exactly when the point is misclassified (untargeted) or the target beats the true
    class (targeted). It is invariant to shifting and positively scaling the logits, which is
    what makes it robust to the gradient masking of over-confident models.
    """
    z = logits.float()
    need = 3 if y_target is None else 4
    if z.dim() != 2 or z.shape[1] < need:
        raise ValueError(f"{'targeted ' if y_target is not None else ''}DLR needs logits (N, C) with "
                         f"C >= {need}, got {tuple(z.shape)}")
    top = z.topk(need, dim=1).values  # z_pi1, z_pi2, z_pi3 (, z_pi4)
    z_y = z.gather(1, y.view(-1, 1)).squeeze(1)
    if y_target is None:
        z_other = z.scatter(1, y.view(-1, 1), float("-inf")).amax(dim=1)  # max over i != y
        return -(z_y - z_other) / (top[:, 0] - top[:, 2] + _DLR_DIV)
    z_t = z.gather(1, y_target.view(-1, 1)).squeeze(1)
    return -(z_y - z_t) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + _DLR_DIV)


def _objective(loss: str, y: Tensor, targeted: bool, y_target: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """The per-sample function of the logits that an attack maximises (computed in float32).

    ``y_target`` is None for FGSM/PGD, where ``targeted`` means ``y`` *is* the target; APGD
    passes the true ``y`` and the target separately.
    """
    if loss == "ce":
        if not targeted:
            return lambda z: F.cross_entropy(z.float(), y, reduction="none")
        t = y if y_target is None else y_target
        return lambda z: -F.cross_entropy(z.float(), t, reduction="none")
    if not targeted:
        return lambda z: dlr_loss(z, y)
    if y_target is None:
        raise ValueError("targeted DLR needs the true label as well as the target: use "
                         "apgd(..., loss='dlr', targeted=True) (APGD-T) or loss='ce'")
    return lambda z: dlr_loss(z, y, y_target)


def _value_and_grad(model: nn.Module, x: Tensor, objective, need_grad: bool = True):
    """Per-sample objective, logits and the gradient of the summed objective w.r.t. ``x``."""
    if not need_grad:
        with torch.no_grad():
            logits = model(x)
            return objective(logits).detach(), logits.detach(), None
    x = x.detach().requires_grad_(True)
    logits = model(x)
    values = objective(logits)
    (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), logits.detach(), grad


def _project(x0: Tensor, x_new: Tensor, eps: float, norm: str) -> Tensor:
    """Onto the eps-ball around ``x0`` (L-inf: clip the perturbation; L2: rescale it), then into
    [0, 1]. Clamping after the ball projection cannot leave the ball: with ``x0`` in [0, 1],
    clamping moves every coordinate of ``x0 + delta`` toward ``x0``."""
    delta = x_new - x0
    if norm == "linf":
        delta = delta.clamp_(-eps, eps)
    else:
        delta = delta.mul_(_bcast((eps / _l2(delta).clamp_min(1e-12)).clamp_max(1.0), delta))
    return (x0 + delta).clamp_(0.0, 1.0)


def _normalized_l2(g: Tensor) -> Tensor:
    return g / _bcast(_l2(g) + _L2_DIV, g)


def _ascent_direction(g: Tensor, norm: str) -> Tensor:
    """Steepest ascent direction of unit norm: ``sign(g)`` (L-inf), ``g / ||g||_2`` (L2)."""
    return g.sign() if norm == "linf" else _normalized_l2(g)


# --------------------------------------------------------------------------------------------
# FGSM family
# --------------------------------------------------------------------------------------------
def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, targeted: bool = False) -> Tensor:
    """Fast Gradient Sign Method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad CE))``.

    ``targeted=True``: ``y`` is the target class and the step goes *down* its cross-entropy.
    """
    _check(eps)
    with attack_mode(model):
        x0, y = _prepare(model, x, y)
        if eps == 0:
            return x0.clone()
        _, _, g = _value_and_grad(model, x0, _objective("ce", y, targeted))
        return (x0 + eps * g.sign()).clamp_(0.0, 1.0).detach()


def ll_fgsm(model: nn.Module, x: Tensor, eps: float) -> Tensor:
    """Least-likely-class FGSM ("step l.l.", Kurakin et al. 2017, "Adversarial machine learning at
    scale"): ``clip(x - eps * sign(grad_x CE(f(x), y_LL)))`` with ``y_LL`` the class the model
    finds least likely on the clean ``x``. Needs no labels."""
    _check(eps)
    with attack_mode(model):
        x0 = _prepare(model, x)
        with torch.no_grad():
            y_ll = model(x0).float().argmin(dim=1)
        return fgsm(model, x0, y_ll, eps, targeted=True)


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
    direction = _normalized_l2(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))
    radius = eps * torch.rand(len(x), generator=gen, device=x.device, dtype=x.dtype) ** (1.0 / d)
    return direction * _bcast(radius, x)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, alpha: float, steps: int, norm: str = "linf",
        random_start: bool = True, targeted: bool = False, *, loss: str = "ce", seed: int | None = None) -> Tensor:
    """Projected gradient descent (Madry et al. 2018), returning the last iterate.

    ``steps`` gradient steps of size ``alpha`` from ``x`` or, with ``random_start``, from a point
    drawn uniformly in the eps-ball (see :func:`_random_delta`; ``seed`` uses a private generator,
    None the global RNG). L-inf: ``x += alpha * sign(g)``; L2: ``x += alpha * g / ||g||_2``; after
    each step the perturbation is clipped (L-inf) or rescaled (L2) onto the ball and the image
    clamped to [0, 1]. ``loss``: ``"ce"`` or ``"dlr"`` (untargeted only). ``targeted=True``: ``y``
    is the target class and each step goes down its cross-entropy.
    """
    _check(eps, norm, loss)
    with attack_mode(model):
        x0, y = _prepare(model, x, y)
        return _pgd_loop(model, x0, _objective(loss, y, targeted), eps, alpha, steps, norm, random_start, seed)


def _pgd_loop(model: Callable[[Tensor], Tensor], x0: Tensor, objective, eps: float, alpha: float, steps: int, norm: str,
              random_start: bool, seed: int | None) -> Tensor:
    """PGD's iterations on a prepared ``x0`` (inside :func:`attack_mode`), maximising the per-sample
    ``objective(model(x))``; shared by :func:`pgd` and :func:`feature_attack` (whose ``model`` is
    a feature function of the attacked model)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if eps == 0:
        return x0.clone()
    if random_start:
        x_adv = (x0 + _random_delta(x0, eps, norm, _generator(seed, x0.device))).clamp_(0.0, 1.0)
    else:
        x_adv = x0.clone()
    for _ in range(steps):
        _, _, g = _value_and_grad(model, x_adv, objective)
        if norm == "linf":
            # _project's arithmetic, in place on fresh tensors (fewer passes over memory; the
            # same floating-point operations, so results match torchattacks' PGD bit for bit)
            delta = torch.add(x_adv, g.sign_(), alpha=alpha).sub_(x0).clamp_(-eps, eps)
            x_adv = delta.add_(x0).clamp_(0.0, 1.0)
        else:
            x_adv = _project(x0, x_adv + alpha * _normalized_l2(g), eps, norm)
    return x_adv.detach()


# --------------------------------------------------------------------------------------------
# Feature-space attack on a pretrained layer
# --------------------------------------------------------------------------------------------
def feature_attack_loss(features: Tensor, neuron: int = 0, target: float = 1000.0,
                        rest_weight: float = 0.1) -> Tensor:
    """Per-sample distance of a feature vector ``(N, D)`` from the attack's target ``t``, with
    ``t[neuron] = target`` and every other entry 0:
    ``(f[neuron] - target)^2 + rest_weight * mean_{j != neuron} f[j]^2`` (float32, shape ``(N,)``).

    This is the task-agnostic objective of the Renofeation evaluation (its ``myloss``, after
    Rezaei & Liu 2020): the attacker knows only the pretrained feature extractor, not the
    student's head or task, and drives the penultimate features to an extreme, unnatural point.
    :func:`feature_attack` minimises it.
    """
    f = features.float().flatten(1)
    if not 0 <= neuron < f.shape[1]:
        raise ValueError(f"neuron {neuron} is outside the {f.shape[1]} features")
    rest = torch.cat([f[:, :neuron], f[:, neuron + 1:]], dim=1)
    far = (f[:, neuron] - target) ** 2
    return far + rest_weight * rest.pow(2).mean(1) if rest.shape[1] else far


def feature_attack(model: nn.Module, x: Tensor, eps: float, alpha: float, steps: int, *, neuron: int = 0,
                   target: float = 1000.0, rest_weight: float = 0.1, norm: str = "linf",
                   random_start: bool = True, seed: int | None = None, features: Callable | None = None) -> Tensor:
    """PGD in pixel space on a pretrained model's *features* (no labels, no head needed).

    Each step goes down :func:`feature_attack_loss` of ``features(x)`` - by default the
    penultimate vector (``model.penultimate``, the pooled features ``head.fc`` reads) - pushing
    feature ``neuron`` toward ``target`` and the rest toward zero, with the projections,
    clamping, random start and eval-mode handling of :func:`pgd`. It is the transfer attack of
    the Renofeation study: crafted on the pretrained model alone and sent to every student
    fine-tuned from it, whatever its task.

    The seed evaluation (Renofeation ``eval_robustness.py``, advertorch ``LinfPGDAttack``) uses
    ``neuron=0``, ``target=1000``, ``rest_weight=0.1``, 40 steps of 0.01 within eps 0.1 with a
    random start - in the ImageNet-*normalised* input space, i.e. about 5.7/255 (eps) and
    0.57/255 (step) in pixels; pass pixel units here (``eps=0.1 * 0.226``, ``alpha=0.01 * 0.226``
    reproduce it). ``target=1000`` lies far beyond any natural activation, so the objective is in
    effect "maximise one neuron while keeping the others small".
    ``features``: any ``x -> (N, ...)`` callable of the model to attack instead of the
    penultimate layer (e.g. ``lambda x: model.features(x, ["conv3"])["conv3"]``).
    """
    _check(eps, norm)
    if features is None and not hasattr(model, "penultimate"):
        raise TypeError(f"{type(model).__name__} has no penultimate(); pass features=...")
    with attack_mode(model):
        x0 = _prepare(model, x)
        objective = lambda f: -feature_attack_loss(f, neuron, target, rest_weight)
        return _pgd_loop(features or model.penultimate, x0, objective, eps, alpha, steps, norm, random_start, seed)


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
    b = lambda v: _bcast(v, x0)
    # x(0): a random point on the surface of the eps-ball, clamped to [0, 1] (as the reference
    # code: L-inf eps * t / ||t||_inf with t ~ U(-1, 1); L2 a Gaussian direction of length eps).
    if norm == "linf":
        t = torch.rand(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype) * 2 - 1
        t = t / b(t.flatten(1).abs().amax(dim=1).clamp_min(1e-12))
    else:
        t = _normalized_l2(torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype))
    x_cur = (x0 + eps * t).clamp_(0.0, 1.0)
    f_cur, logits, grad = _value_and_grad(model, x_cur, objective)
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
        z = _project(x0, x_cur + b(eta) * _ascent_direction(grad, norm), eps, norm)
        if k == 0:
            x_new = z  # x(1) = z(1): the first step has no momentum
        else:
            # x(k+1) = P_S(x(k) + alpha (z(k+1) - x(k)) + (1 - alpha) (x(k) - x(k-1))), alpha = 0.75
            x_new = _project(x0, x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev), eps, norm)
        # The last iterate only needs its value (nothing steps from it), not a gradient.
        f_new, logits, g_new = _value_and_grad(model, x_new, objective, need_grad=k < steps - 1)

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
         rho: float = 0.75, seed: int | None = 0, y_target: Tensor | None = None) -> Tensor:
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
    random starting points (None: global RNG).
    """
    _check(eps, norm, loss)
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps} and {restarts}")
    if not 0 < rho <= 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    with attack_mode(model):
        x0, y = _prepare(model, x, y)
        if eps == 0:
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
        gen = _generator(seed, x0.device)
        for t in targets:
            for _ in range(restarts):
                idx = (~done).nonzero().squeeze(1)
                if idx.numel() == 0:
                    break
                y_run, t_run = y[idx], (t[idx] if t is not None else None)
                objective = _objective(loss, y_run, targeted, t_run)
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


# --------------------------------------------------------------------------------------------
# AutoAttack-style evaluation
# --------------------------------------------------------------------------------------------
def autoattack_eval(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", *,
                    evaluator: str = "ours", version: str = "standard", steps: int = 100,
                    n_target_classes: int = 9, seed: int = 0, batch_size: int = 256) -> dict:
    """Robust accuracy under an AutoAttack-style ensemble.

    ``evaluator="ours"``: APGD-CE, then APGD-T (targeted DLR, ``n_target_classes`` targets) on
    the points still robust, each with ``steps`` iterations and one restart: the two gradient
    attacks of AutoAttack "standard". FAB-T and Square are not included (on models without
    gradient masking they rarely change the result, Croce & Hein 2020, Table 2).
    ``evaluator="autoattack"``: the reference implementation (``autoattack`` package,
    https://github.com/fra31/auto-attack) with ``version``; raises ImportError when it is not
    installed.

    Returns ``{"clean_acc", "robust_acc", "acc_after": {attack: acc}, "n", "evaluator", "x_adv"}``
    (``x_adv`` on the CPU, clean images where the model was already wrong or robust).
    """
    _check(eps, norm)
    if evaluator not in ("ours", "autoattack"):
        raise ValueError(f"evaluator must be 'ours' or 'autoattack', got {evaluator!r}")
    device = _model_device(model)
    x, y = x.detach(), torch.as_tensor(y).long()

    def accuracy(images) -> tuple[float, Tensor]:
        with _saved_modes(model), torch.no_grad():
            model.eval()
            pred = torch.cat([model(images[i:i + batch_size].to(device)).argmax(1).cpu()
                              for i in range(0, len(images), batch_size)])
        correct = pred == y.cpu()
        return correct.float().mean().item(), correct

    clean_acc, _ = accuracy(x)
    if evaluator == "autoattack":
        try:
            from autoattack import AutoAttack
        except ImportError as err:
            raise ImportError("autoattack_eval(evaluator='autoattack') needs the reference package "
                              "`autoattack` (pip install git+https://github.com/fra31/auto-attack); "
                              "it is not installed. evaluator='ours' runs APGD-CE + APGD-T from lib.attacks.") from err
        with attack_mode(model):
            adversary = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version=version,
                                   seed=seed, verbose=False, device=device)
            x_adv = adversary.run_standard_evaluation(x.to(device), y.to(device), bs=batch_size).detach().cpu()
        robust_acc, _ = accuracy(x_adv)
        return {"clean_acc": clean_acc, "robust_acc": robust_acc, "acc_after": {"autoattack": robust_acc},
                "n": len(y), "evaluator": "autoattack", "x_adv": x_adv}

    x_adv = x.clone().cpu()
    acc_after = {}
    stages = [("apgd_ce", dict(loss="ce")), ("apgd_t", dict(loss="dlr", targeted=True, n_target_classes=n_target_classes))]
    _, robust = accuracy(x_adv)
    for name, kw in stages:
        idx = robust.nonzero().squeeze(1)
        for i in range(0, len(idx), batch_size):
            part = idx[i:i + batch_size]
            x_adv[part] = apgd(model, x[part], y[part], eps, norm=norm, steps=steps, seed=seed, **kw).cpu()
        acc_after[name], robust = accuracy(x_adv)
    return {"clean_acc": clean_acc, "robust_acc": acc_after["apgd_t"], "acc_after": acc_after, "n": len(y),
            "evaluator": "ours", "x_adv": x_adv}


# --------------------------------------------------------------------------------------------
# Metrics, transfer, attack factories
# --------------------------------------------------------------------------------------------
def _labels(pred: Tensor) -> Tensor:
    pred = torch.as_tensor(pred)
    return (pred.argmax(1) if pred.dim() == 2 else pred).detach().cpu().long()


def attack_success_rate(clean_pred: Tensor, adv_pred: Tensor, y: Tensor) -> float:
    """Share of the images the model classifies correctly when clean that the attack makes it
    misclassify: ``#(clean right and adversarial wrong) / #(clean right)``; ``nan`` when no image
    is clean-correct. Predictions may be labels ``(N,)`` or logits ``(N, C)``."""
    clean, adv, y = _labels(clean_pred), _labels(adv_pred), torch.as_tensor(y).cpu().long()
    right = clean == y
    if not right.any():
        return float("nan")
    return ((adv != y) & right).sum().item() / right.sum().item()


def transfer_eval(source: nn.Module, target: nn.Module, data, attack: Callable, *, batch_size: int = 256,
                  progress: bool = False) -> dict:
    """Craft adversarial examples on ``source`` with ``attack(source, x, y)`` and evaluate them on
    ``target`` (a transfer, or black-box, attack; ``source is target`` is the white-box case).

    ``data``: an ``ImageSet``, an ``(images, labels)`` pair or a ``Dataset`` (batched like
    :func:`lib.train.predict`). Returns ``{"clean_acc", "adv_acc", "asr", "n"}`` measured on the
    target, plus ``"source_clean_acc"`` and ``"source_adv_acc"`` (the white-box effect on the
    source). Both models are evaluated in eval mode and their modes restored.
    """
    from tqdm.auto import tqdm

    from .train import Batches

    src_dev, tgt_dev = _model_device(source), _model_device(target)
    batches = Batches(data, batch_size, src_dev)
    parts = {k: [] for k in ("y", "src_clean", "src_adv", "tgt_clean", "tgt_adv")}
    with _saved_modes(source), _saved_modes(target):
        for x, y in tqdm(batches, desc="transfer", disable=not progress, mininterval=1, leave=False):
            x_adv = attack(source, x, y)
            source.eval()  # the attack restored the source's previous mode
            target.eval()
            with torch.no_grad():
                parts["src_clean"].append(source(x).argmax(1).cpu())
                parts["src_adv"].append(source(x_adv.to(src_dev)).argmax(1).cpu())
                parts["tgt_clean"].append(target(x.to(tgt_dev)).argmax(1).cpu())
                parts["tgt_adv"].append(target(x_adv.to(tgt_dev)).argmax(1).cpu())
            parts["y"].append(y.cpu())
    r = {k: torch.cat(v) for k, v in parts.items()}
    acc = lambda pred: (pred == r["y"]).float().mean().item()
    return {"clean_acc": acc(r["tgt_clean"]), "adv_acc": acc(r["tgt_adv"]),
            "asr": attack_success_rate(r["tgt_clean"], r["tgt_adv"], r["y"]), "n": len(r["y"]),
            "source_clean_acc": acc(r["src_clean"]), "source_adv_acc": acc(r["src_adv"])}


def with_own_labels(attack: Callable) -> Callable[[nn.Module, Tensor, Tensor | None], Tensor]:
    """``attack(model, x, y)`` run with the model's own clean predictions as labels, ``y`` ignored.

    For a source model whose classes are not the data's (a pretrained teacher's head over its
    source task, attacked with images of the target task): untargeted PGD then pushes each image
    away from whatever the teacher sees in it."""

    def own(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        with attack_mode(model):
            x0 = _prepare(model, x)
            with torch.no_grad():
                pred = model(x0).float().argmax(1)
        return attack(model, x0, pred)

    own.attack = attack
    own.__name__ = f"{getattr(attack, 'name', getattr(attack, '__name__', 'attack'))}_own_labels"
    return own


def craft(source: nn.Module, data, attack: Callable, *, batch_size: int = 256,
          progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Adversarial versions of every image of ``data``, crafted on ``source`` with
    ``attack(source, x, y)``: returns ``(x, x_adv, y)`` on the CPU, in ``data``'s order, so
    one crafted set can be sent to many target models (``data`` as in :func:`transfer_eval`)."""
    from tqdm.auto import tqdm

    from .train import Batches

    xs, advs, ys = [], [], []
    with _saved_modes(source):
        for x, y in tqdm(Batches(data, batch_size, _model_device(source)), desc="craft",
                         disable=not progress, mininterval=1, leave=False):
            advs.append(attack(source, x, y).cpu())
            xs.append(x.cpu())
            ys.append(y.cpu())
    return torch.cat(xs), torch.cat(advs), torch.cat(ys)


_FUNCTIONS = {"fgsm": fgsm, "ll_fgsm": ll_fgsm, "pgd": pgd, "apgd": apgd, "feature": feature_attack,
              "apgd_t": functools.partial(apgd, loss="dlr", targeted=True)}


_LABEL_FREE = ("ll_fgsm", "feature")  # attacks that take no labels: called as fn(model, x, ...)


class AttackFn:
    """An attack with its parameters bound: ``attack(model, x, y) -> x_adv`` (see :func:`attack_fn`).
    ``name`` and ``params`` label results; ``repr`` reads like the call that made it."""

    def __init__(self, name: str, params: dict):
        self.name, self.params = name, dict(params)
        self._fn = _FUNCTIONS[name]

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.name in _LABEL_FREE:  # the least-likely class / the feature target replaces the label
            return self._fn(model, x, **self.params)
        return self._fn(model, x, y, **self.params)

    def __repr__(self) -> str:
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else repr(v)
        return f"{self.name}({', '.join(f'{k}={fmt(v)}' for k, v in self.params.items())})"


def attack_fn(name: str, **params) -> AttackFn:
    """An attack by name with its parameters bound, called as ``attack(model, x, y)``.

    Names: ``fgsm``, ``ll_fgsm`` (ignores ``y``), ``pgd``, ``apgd``, ``apgd_t`` (:func:`apgd` with
    ``loss="dlr", targeted=True``), ``feature`` (:func:`feature_attack`, ignores ``y``). E.g. ``attack_fn("pgd", eps=8/255, alpha=2/255, steps=10)``.
    Missing or unknown parameters raise TypeError here, not at the first call.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown attack {name!r}; choose from {ATTACKS}")
    fn = _FUNCTIONS[name]
    placeholders = (None, None) if name in _LABEL_FREE else (None, None, None)
    try:
        inspect.signature(fn).bind(*placeholders, **params)
    except TypeError as err:
        raise TypeError(f"attack_fn({name!r}, ...): {err}") from None
    return AttackFn(name, params)


def as_batch_hook(attack: Callable) -> Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``attack(model, x, y) -> x_adv`` as a ``batch_hook(model, x, y) -> (x_adv, y)`` for
    :func:`lib.train.fit` (adversarial training) and :func:`lib.train.predict` (robust accuracy)."""

    def hook(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return attack(model, x, y), y

    hook.attack = attack
    return hook


__all__ = ["fgsm", "ll_fgsm", "pgd", "apgd", "feature_attack", "feature_attack_loss", "dlr_loss", "autoattack_eval", "attack_success_rate",
           "transfer_eval", "craft", "with_own_labels", "attack_fn", "as_batch_hook", "attack_mode", "AttackFn", "NORMS", "LOSSES",
           "ATTACKS"]
