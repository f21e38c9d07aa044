"""Square Attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a
query-efficient black-box adversarial attack via random search", arXiv:1912.00049), L-inf and L2,
untargeted, one restart (conventions in :mod:`lib.attacks.core`).

Random search on the margin ``z_y - max_{j != y} z_j``: each query proposes a change of one
square window of the current perturbation and keeps it only if the margin drops; an image stops
being queried once its margin is <= 0 (misclassified). It uses no gradient, so gradient masking
(quantised inputs, shattered or vanishing gradients) does not stop it: it is the gradient-free
member of AutoAttack "standard" and the check that a gradient attack's number is not an artefact.

Written here rather than taken from a library: torchattacks' and AutoAttack's ``Square`` use one
window position per batch (a result then depends on which images share a batch), loop over the
restarts in Python and follow neither our eval-mode / input-check conventions nor a private
seeded generator. This version draws every window per image, fully batched (masks, no per-image
Python loops), and runs forward passes only on the images still correctly classified.

Following the paper (Algorithms 1-3, Sec. 3) and the authors' reference code
(github.com/max-andr/square-attack, ``attack.py``):

- the square's side is ``round(sqrt(p * h * w))``, p halved at the paper's query milestones
  10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of a 10,000-query budget, rescaled to the
  budget ``queries`` (iteration ``i`` reads the schedule at ``int(i / queries * 10000)``, as the
  reference code's ``p_selection``); ``rescale_schedule=False`` reads it at ``i`` itself, as
  AutoAttack's ``SquareAttack(..., resc_schedule=False)`` does with 5,000 queries;
- L-inf: start from vertical stripes (``+-eps`` per column and channel), each update sets one
  window to ``+-eps`` per channel (redrawn while it would not change the image); L2: start from
  a 5 x 5 grid of pseudo-Gaussian bumps, each update moves mass from a second window into a new
  bump in the first, the perturbation rescaled to norm ``eps`` (Algorithm 3);
- one query for the start and one per update, only for images not yet misclassified.

The L2 update takes the freed budget per channel (norms over each channel's windows), as the
reference code; torchattacks 3.5.1 takes the norm of the windows over all channels instead, and
leaves about 4 points more accuracy at L2 eps 1.0 with 1,000 queries on a small CNN (85-87 vs
77-78 of 200 images over 3 seeds; the L-inf versions agree within 0-4 images).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from .core import (attack_mode, bcast_per_sample, check_attack_args, l2_norms, prepare_batch, project_ball,
                   seeded_generator)

# p is halved after each of these iterations of a 10,000-query schedule (the paper's Sec. 4 and
# the reference code's p_selection).
MILESTONES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# p_init: AutoAttack "standard" runs Square with p_init = 0.8 for both norms and 5,000 queries
# (autoattack.py: SquareAttack(self.model, p_init=.8, n_queries=5000, ...)), which is the
# setting for adversarially trained models; the paper's README uses 0.05 (L-inf) and 0.1 (L2)
# on standard ImageNet models, 0.3 on defended CIFAR-10 and 0.8 on Madry's robust MNIST model.
P_INIT = {"linf": 0.8, "l2": 0.8}
_RESAMPLE = 20  # L-inf: redraws of a window's signs that would leave the image unchanged (the paper loops until)


def p_schedule(p_init: float, it: int, queries: int, rescale: bool = True) -> float:
    """The fraction ``p`` of pixels an update changes at iteration ``it`` (0-based): ``p_init``
    up to iteration 10, then halved after each of :data:`MILESTONES` (``p_init / 512`` after
    8,000), read at ``int(it / queries * 10000)`` when ``rescale``."""
    if rescale:
        it = int(it / max(queries, 1) * 10000)
    for k, m in enumerate(MILESTONES):
        if it <= m:
            return p_init / 2 ** k
    return p_init / 2 ** len(MILESTONES)


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """Per-sample margin ``z_y - max_{j != y} z_j`` in float32: > 0 exactly when ``y`` wins."""
    z = logits.float()
    z_y = z.gather(1, y.view(-1, 1)).squeeze(1)
    return z_y - z.scatter(1, y.view(-1, 1), float("-inf")).amax(dim=1)


def _signs(shape, gen, device) -> Tensor:
    return torch.randint(0, 2, shape, generator=gen, device=device).float().mul_(2).sub_(1)


def _window_mask(v: Tensor, s: int, size: int) -> Tensor:
    """``(m, size)`` booleans: True on ``[v_i, v_i + s)`` for each image ``i``."""
    ar = torch.arange(size, device=v.device)
    return (ar >= v[:, None]) & (ar < v[:, None] + s)


def _windows(m: int, s: int, h: int, w: int, gen, device) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``s x s`` window per image (top-left uniform in ``[0, h - s) x [0, w - s)``, as the
    reference code's ``randint(0, h - s)``): ``(mask (m, 1, h, w), rows (m,), cols (m,))``."""
    vh = torch.randint(0, max(h - s, 1), (m,), generator=gen, device=device)
    vw = torch.randint(0, max(w - s, 1), (m,), generator=gen, device=device)
    mask = _window_mask(vh, s, h)[:, None, :, None] & _window_mask(vw, s, w)[:, None, None, :]
    return mask, vh, vw


def _rings(a: int, b: int, device) -> Tensor:
    """An ``a x b`` block of concentric rectangles around cell ``(a // 2, b // 2)``: ring ``k``
    (cells at Chebyshev distance ``<= k``) adds ``1 / (k + 1)^2``, for ``k`` up to
    ``max(a // 2, b // 2)``; unit L2 norm (the paper's pseudo-Gaussian, Sec. 3.2)."""
    i = (torch.arange(a, device=device) - a // 2).abs()[:, None]
    j = (torch.arange(b, device=device) - b // 2).abs()[None, :]
    d = torch.maximum(i, j)
    k_max = max(a // 2, b // 2) + 1
    weights = 1.0 / torch.arange(1, k_max + 1, device=device, dtype=torch.float32) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} 1 / (k + 1)^2
    block = tail[d.clamp_max(k_max - 1)]
    return block / block.norm()


def _bump(s: int, device) -> Tensor:
    """The L2 update's ``s x s`` pattern: two rings blocks of opposite sign (top and bottom
    halves), unit L2 norm; the caller transposes it for a random half of the images."""
    block = torch.cat([_rings(s // 2, s, device), -_rings(s - s // 2, s, device)], 0)
    return block / block.norm()


def _random_bumps(m: int, s: int, gen, device) -> Tensor:
    """``(m, 1, s, s)``: :func:`_bump`, transposed for each image with probability 1/2."""
    b = _bump(s, device)
    flip = torch.rand(m, generator=gen, device=device) < 0.5
    return torch.where(flip[:, None, None], b.t(), b)[:, None]


def _place(canvas: Tensor, vh: Tensor, vw: Tensor, s: int, values: Tensor | None = None) -> Tensor:
    """Read (``values`` None) or write the ``(m, c, s, s)`` window at ``(vh_i, vw_i)`` of ``canvas``."""
    ar = torch.arange(s, device=canvas.device)
    n = torch.arange(len(canvas), device=canvas.device)[:, None, None]
    ii, jj = (vh[:, None] + ar)[:, :, None], (vw[:, None] + ar)[:, None, :]
    if values is None:
        return canvas[n, :, ii, jj].permute(0, 3, 1, 2)  # advanced indices first: (m, s, s, c)
    canvas[n, :, ii, jj] = values.permute(0, 2, 3, 1)
    return canvas


def _init_linf(x0: Tensor, eps: float, gen) -> Tensor:
    n, c, _, w = x0.shape
    return (x0 + eps * _signs((n, c, 1, w), gen, x0.device)).clamp_(0.0, 1.0)


def _init_l2(x0: Tensor, eps: float, gen) -> Tensor:
    """A 5 x 5 grid of ``h // 5`` bumps, random sign per image, channel and tile, scaled to ``eps``."""
    n, c, h, w = x0.shape
    s = h // 5
    delta = torch.zeros_like(x0)
    start = (h - 5 * s) // 2
    for a in range(h // s):  # 5 x 5 tiles (a Python loop over tiles, each batched over the images)
        for b in range(w // s):
            top, left = start + a * s, start + b * s
            if top + s > h or left + s > w:
                continue
            bump = _random_bumps(1, s, gen, x0.device)[0]
            delta[:, :, top:top + s, left:left + s] += bump * _signs((n, c, 1, 1), gen, x0.device)
    return (x0 + eps * delta / bcast_per_sample(l2_norms(delta).clamp_min(1e-12), delta)).clamp_(0.0, 1.0)


def _propose_linf(xc: Tensor, xb: Tensor, eps: float, p: float, gen) -> Tensor:
    """Algorithm 2: one window per image set to ``+-eps`` per channel, redrawn where it would
    leave the current best image unchanged."""
    m, c, h, w = xc.shape
    s = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1)
    mask, _, _ = _windows(m, s, h, w, gen, xc.device)
    delta = xb - xc
    signs = _signs((m, c, 1, 1), gen, xc.device)
    for _ in range(_RESAMPLE if eps > 0 else 1):  # at eps 0 no window can change anything
        x_new = (xc + torch.where(mask, eps * signs, delta)).clamp_(0.0, 1.0)
        same = (((x_new - xb).abs() < 1e-7) | ~mask).flatten(1).all(1)
        if not same.any():
            break
        signs = torch.where(bcast_per_sample(same, signs), _signs((m, c, 1, 1), gen, xc.device), signs)
    return x_new


def _propose_l2(xc: Tensor, xb: Tensor, eps: float, p: float, gen) -> Tensor:
    """Algorithm 3: a new bump in window 1 (plus its old content, renormalised), window 2
    emptied; the freed budget per channel is put into window 1, the image rescaled to ``eps``."""
    m, c, h, w = xc.shape
    s = max(int(round(math.sqrt(p * h * w))), 3)
    s = min(s if s % 2 else s + 1, h - 1)  # odd, as the reference code, and inside the image
    m1, vh, vw = _windows(m, s, h, w, gen, xc.device)
    m2, _, _ = _windows(m, s, h, w, gen, xc.device)
    delta = xb - xc
    norm_win1 = (delta * m1).square().sum((2, 3), keepdim=True).sqrt()             # (m, c, 1, 1)
    norm_img = bcast_per_sample(l2_norms(delta), delta)                            # (m, 1, 1, 1)
    norm_wins = (delta * (m1 | m2)).square().sum((2, 3), keepdim=True).sqrt()      # (m, c, 1, 1)
    new = _random_bumps(m, s, gen, xc.device) * _signs((m, c, 1, 1), gen, xc.device)
    new = new + _place(delta, vh, vw, s) / (1e-10 + norm_win1)
    budget = ((eps ** 2 - norm_img ** 2).clamp_min(0) / c + norm_wins ** 2).sqrt()
    new = new / new.square().sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * budget
    delta = _place(delta * ~m2, vh, vw, s, new)
    return (xc + eps * delta / bcast_per_sample(l2_norms(delta).clamp_min(1e-12), delta)).clamp_(0.0, 1.0)


def square(model: nn.Module, x: Tensor, y: Tensor, eps: float, norm: str = "linf", queries: int = 5000,
           p_init: float | None = None, seed: int | None = 0, *, rescale_schedule: bool = True,
           return_queries: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Square Attack (Andriushchenko et al. 2020), untargeted, one restart, margin loss.

    Args:
        model: classifier taking [0, 1] images (attacked in eval mode, see :func:`attack_mode`).
        x, y: images in [0, 1] and their true labels.
        eps: budget in pixel units (L-inf, or L2 over all numbers of an image).
        norm: ``"linf"`` or ``"l2"``.
        queries: budget of model queries per image, the start included (AutoAttack: 5,000).
        p_init: initial fraction of pixels per update; None = :data:`P_INIT` (0.8, AutoAttack's
            value for both norms; the paper's other settings are listed there).
        seed: seeds a private generator (None: the global RNG).
        rescale_schedule: read the schedule of ``p`` at ``int(i / queries * 10000)`` (the paper's
            code), or at ``i`` (AutoAttack's ``resc_schedule=False``); see :func:`p_schedule`.
        return_queries: also return the queries each image used.

    Returns:
        ``x_adv`` (``||x_adv - x|| <= eps``, in [0, 1]): for each image the point of lowest margin
        found, ``x`` itself for images the model already misclassifies. With ``return_queries``,
        ``(x_adv, n_queries)``, ``n_queries`` a long tensor ``(N,)``: 0 for images misclassified
        on ``x`` (the clean prediction is not counted, as in the paper), otherwise 1 (the start)
        plus one per update tried, never above ``queries``.
    """
    check_attack_args(eps, norm)
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    p_init = P_INIT[norm] if p_init is None else float(p_init)
    if not 0 < p_init <= 1:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    with attack_mode(model), torch.no_grad():
        x0, y = prepare_batch(model, x, y)
        if x0.dim() != 4 or min(x0.shape[2:]) < (5 if norm == "l2" else 2):
            raise ValueError(f"square needs images (N, C, H, W) with H, W >= {5 if norm == 'l2' else 2}, "
                             f"got {tuple(x0.shape)}")
        gen = seeded_generator(seed, x0.device)
        n_queries = torch.zeros(len(x0), dtype=torch.long, device=x0.device)
        x_best = x0.clone()
        best = margin(model(x0), y)
        idx = (best > 0).nonzero().squeeze(1)  # only correctly classified images are attacked
        if idx.numel():
            init = (_init_linf if norm == "linf" else _init_l2)(x0[idx], eps, gen)
            m_init = margin(model(init), y[idx])
            x_best[idx], best[idx], n_queries[idx] = init, m_init, 1
        propose = _propose_linf if norm == "linf" else _propose_l2
        for it in range(queries - 1):
            idx = (best > 0).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xc, xb = x0[idx], x_best[idx]
            x_new = propose(xc, xb, eps, p_schedule(p_init, it, queries, rescale_schedule), gen)
            m_new = margin(model(x_new), y[idx])
            better = m_new < best[idx]
            x_best[idx] = torch.where(bcast_per_sample(better, xb), x_new, xb)
            best[idx] = torch.where(better, m_new, best[idx])
            n_queries[idx] += 1
        x_best = project_ball(x0, x_best, eps, norm)  # float rounding of the L2 rescaling only
    return (x_best, n_queries) if return_queries else x_best
