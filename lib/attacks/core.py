"""What every attack shares: eval-mode handling, input checks, objectives (CE, DLR), gradients,
projections. The attacks themselves are in the sibling modules; :mod:`lib.attacks` lists them.

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
- Attacks are silent; progress bars belong to the callers that loop over data (:mod:`lib.evaluate`).

APGD (Croce & Hein, ICML 2020, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", Algorithm 1 and Sec. 3) is written from the paper; the
places where the paper leaves a choice open and we follow the authors' reference code are
marked "(as the reference code)" in :func:`_apgd_run`.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

NORMS = ("linf", "l2")
LOSSES = ("ce", "dlr")

# Added to the L2 norm of a gradient before dividing by it (guards all-zero gradients). Read at
# call time, so a test can set it to the value that reproduces another implementation exactly.
_L2_DIV = 1e-12
_DLR_DIV = 1e-12  # added to the DLR denominator (as in the paper's reference code)

# --------------------------------------------------------------------------------------------
# Model state and input handling
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def saved_modes(model: nn.Module):
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
    with saved_modes(model):
        model.eval()
        try:
            for p, _ in flags:
                p.requires_grad_(False)
            with torch.inference_mode(False), torch.enable_grad():
                yield model
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def module_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter, else of its first buffer, else the CPU."""
    p = next(model.parameters(), None)
    if p is None:
        p = next(model.buffers(), None)
    return p.device if p is not None else torch.device("cpu")


def prepare_batch(model: nn.Module, x: Tensor, y: Tensor | None = None):
    """``x`` (and ``y``) on the model's device, detached, checked to be images in [0, 1]."""
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise ValueError(f"attacks expect float images in [0, 1], got {getattr(x, 'dtype', type(x))}")
    device = module_device(model)
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


def check_attack_args(eps: float, norm: str = "linf", loss: str = "ce") -> None:
    """Raise ValueError unless ``norm`` is one of :data:`NORMS`, ``loss`` one of :data:`LOSSES` and ``eps >= 0``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def seeded_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A private generator for ``seed`` (the global RNG stays untouched); None: global RNG."""
    return None if seed is None else torch.Generator(device=device).manual_seed(int(seed))


def bcast_per_sample(v: Tensor, x: Tensor) -> Tensor:
    """Per-sample values ``(N,)`` shaped to broadcast against ``x`` ``(N, ...)``."""
    return v.view(-1, *([1] * (x.dim() - 1)))


def l2_norms(v: Tensor) -> Tensor:
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


def attack_objective(loss: str, y: Tensor, targeted: bool,
                     y_target: Tensor | None = None) -> Callable[[Tensor], Tensor]:
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


def value_and_grad(model: nn.Module, x: Tensor, objective, need_grad: bool = True):
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


def project_ball(x0: Tensor, x_new: Tensor, eps: float, norm: str) -> Tensor:
    """Onto the eps-ball around ``x0`` (L-inf: clip the perturbation; L2: rescale it), then into
    [0, 1]. Clamping after the ball projection cannot leave the ball: with ``x0`` in [0, 1],
    clamping moves every coordinate of ``x0 + delta`` toward ``x0``."""
    delta = x_new - x0
    if norm == "linf":
        delta = delta.clamp_(-eps, eps)
    else:
        delta = delta.mul_(bcast_per_sample((eps / l2_norms(delta).clamp_min(1e-12)).clamp_max(1.0), delta))
    return (x0 + delta).clamp_(0.0, 1.0)


def linf_step(x_adv: Tensor, g: Tensor, x0: Tensor, alpha: float, eps: float) -> Tensor:
    """One L-inf PGD step ``x + alpha sign(g)``, projected onto the eps-ball around ``x0`` and into
    [0, 1]: :func:`project_ball`'s arithmetic in place on fresh tensors (fewer passes over memory; the
    same floating-point operations as torchattacks' PGD, so results match it bit for bit)."""
    delta = torch.add(x_adv, g.sign(), alpha=alpha).sub_(x0).clamp_(-eps, eps)  # g may be a broadcast view
    return delta.add_(x0).clamp_(0.0, 1.0)


def l2_normalized(g: Tensor) -> Tensor:
    """``g`` divided per sample by its L2 norm (plus ``_L2_DIV``, which guards all-zero gradients)."""
    return g / bcast_per_sample(l2_norms(g) + _L2_DIV, g)


def ascent_direction(g: Tensor, norm: str) -> Tensor:
    """Steepest ascent direction of unit norm: ``sign(g)`` (L-inf), ``g / ||g||_2`` (L2)."""
    return g.sign() if norm == "linf" else l2_normalized(g)

