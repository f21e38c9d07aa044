"""Unrestricted adversarial examples by latent optimisation (Song, Shu, Kushman & Ermon 2018,
"Constructing unrestricted adversarial examples with generative models", NeurIPS), as the CS236
study implements it (``trainers/attack_trainer.py``), with its two bugs fixed.

For source labels ``y`` and a starting code ``z0`` (drawn per call: the study never re-initialised
its latent variable, so its trust region sat at the origin and z carried over between batches),
plain SGD minimises::

    x(z)  = G(z, y)                                  (in [-1, 1])
    x~    = clip(x(z) + eps * tanh(eta), -1, 1)        (eta: a small pixel-noise variable)
    L_cls = mean_i min_{k != y_i} CE(f(to_pixels(x~_i)), k)     (the closest wrong class)
    L_z   = mean(max((z - z0)^2 - eps_z^2, 0))          (soft trust region on z)
    L_aux = CE(aux(x(z)), y)                           (the GAN's own classifier must still say y)
    L     = L_cls + lambda_z L_z + lambda_aux L_aux

with Gaussian noise of variance ``noise / (1 + t)^0.55`` added to z's gradient (Langevin-style)
and eta's gradient L2-normalised per sample. The target classifier ``f`` always sees pixels in
[0, 1] (the study fed it [0, 1] in one trainer and [-1, 1] in the other). On top of the soft
penalty, z is projected onto the box ``|z - z0| <= z_bound`` after each step, a hard bound the
study does not have, so that "near its start" is a guarantee. A sample is a **success** when
``f`` is wrong on ``x~`` and ``aux`` still predicts ``y`` on ``x~``.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..attacks import attack_mode
from .nets import check_labels, to_pixels


def closest_wrong_class_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Per sample ``min_{k != y} CE(logits, k) = -max_{k != y} log p_k`` (the study's untargeted loss)."""
    logp = F.log_softmax(logits.float(), dim=1)
    logp = logp.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return -logp.max(dim=1).values


def success(pred: Tensor, aux_pred: Tensor, y: Tensor) -> Tensor:
    """The study's success definition: the classifier is wrong **and** the aux classifier says ``y``."""
    return (pred != y) & (aux_pred == y)


@dataclass
class UnrestrictedResult:
    """What :func:`unrestricted_attack` returns (all on the CPU; images in pixels [0, 1]).

    ``images``: the final ``x~`` (judged by both classifiers); ``samples``: ``G(z, y)`` without the
    pixel noise; ``clean``: ``G(z0, y)``; ``z``, ``z0``; ``pred`` / ``aux_pred``: the classifier's and
    the aux classifier's labels on ``images``; ``success``; ``trace``: per step (before its update)
    the classifier's accuracy, the aux agreement with y and the success rate on the batch."""
    images: Tensor
    samples: Tensor
    clean: Tensor
    z: Tensor
    z0: Tensor
    y: Tensor
    pred: Tensor
    aux_pred: Tensor
    success: Tensor
    trace: pd.DataFrame


def unrestricted_attack(G: nn.Module, aux: nn.Module, classifier: nn.Module, y: Tensor, steps: int, *,
                        z0: Tensor | None = None, eps: float = 0.1, eps_z: float = 0.1, z_bound: float = 1.0,
                        lambda_z: float = 0.1, lambda_aux: float = 0.1, lr: float = 0.1, noise: float = 0.01,
                        seed: int | None = None) -> UnrestrictedResult:
    """Unrestricted adversarial examples of classes ``y`` against ``classifier`` (module docstring).

    ``G(z, y)`` and ``aux(x)`` work in [-1, 1]; ``classifier`` takes pixels in [0, 1]. ``steps``
    SGD steps of ``lr`` (the study: 500 steps of 0.1, ``eps = eps_z = 0.1``, ``lambda = 0.1``);
    ``z0``: the starting codes (default: drawn from N(0, I) with ``seed``). All three networks run
    in eval mode with their parameters untouched (modes and flags restored afterwards)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    y = check_labels(y, G.num_classes)
    device = next(G.parameters()).device
    clf_device = next(classifier.parameters()).device  # the classifier may live elsewhere (e.g. inside fit)
    y = y.to(device)
    y_clf = y.to(clf_device)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    if z0 is None:
        z0 = torch.randn(len(y), G.z_dim, generator=gen)
    z0 = z0.to(device).detach()
    rows = []
    with attack_mode(G), attack_mode(aux), attack_mode(classifier):
        z = z0.clone().requires_grad_(True)
        eta = torch.zeros(len(y), 3, G.size, G.size, device=device, requires_grad=True)
        with torch.no_grad():
            clean = G(z0, y)
        for t in range(steps + 1):
            x = G(z, y)
            x_t = (x + eps * torch.tanh(eta)).clamp(-1, 1)
            logits = classifier(to_pixels(x_t).to(clf_device))
            with torch.no_grad():
                pred, aux_pred = logits.argmax(1).to(device), aux(x_t).argmax(1)
                ok = success(pred, aux_pred, y)
                rows.append({"step": t, "acc": (pred == y).float().mean().item(),
                             "aux_agree": (aux_pred == y).float().mean().item(), "success": ok.float().mean().item()})
            if t == steps:
                break
            loss = (closest_wrong_class_loss(logits, y_clf).mean().to(device)
                    + lambda_z * F.relu((z - z0) ** 2 - eps_z ** 2).mean()
                    + lambda_aux * F.cross_entropy(aux(x).float(), y))
            gz, geta = torch.autograd.grad(loss, (z, eta))
            with torch.no_grad():
                std = (noise / (1 + t) ** 0.55) ** 0.5
                gz = gz + std * torch.randn(gz.shape, generator=gen).to(device)
                geta = geta / geta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                z -= lr * gz
                z.copy_(torch.maximum(torch.minimum(z, z0 + z_bound), z0 - z_bound))
                eta -= lr * geta
    cpu = lambda v: v.detach().cpu()
    return UnrestrictedResult(images=cpu(to_pixels(x_t)), samples=cpu(to_pixels(x)), clean=cpu(to_pixels(clean)),
                              z=cpu(z), z0=cpu(z0), y=cpu(y), pred=cpu(pred), aux_pred=cpu(aux_pred),
                              success=cpu(ok), trace=pd.DataFrame(rows))


def unrestricted_batches(G, aux, classifier, y: Tensor, steps: int, *, batch_size: int = 256,
                         seed: int = 0, **kw) -> UnrestrictedResult:
    """:func:`unrestricted_attack` over ``y`` in batches of ``batch_size`` (each batch its own fresh
    ``z0``, seeded by ``seed`` and the batch index); results concatenated, traces averaged over
    samples."""
    y = torch.as_tensor(y).long()
    parts = [unrestricted_attack(G, aux, classifier, y[i:i + batch_size], steps, seed=seed * 7919 + i, **kw)
             for i in range(0, len(y), batch_size)]
    weights = [len(p.y) for p in parts]
    trace = sum(p.trace.set_index("step") * w for p, w in zip(parts, weights)) / sum(weights)
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])
    return UnrestrictedResult(**{k: cat(k) for k in ("images", "samples", "clean", "z", "z0", "y", "pred", "aux_pred",
                                                     "success")}, trace=trace.reset_index())
