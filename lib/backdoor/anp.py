"""ANP, Adversarial Neuron Perturbation (Wu & Wang 2021, "Adversarial Neuron Pruning Purifies
Backdoored Deep Models", NeurIPS; the authors' code: github.com/csdongxian/ANP_backdoor).

A backdoored network is far more sensitive to small perturbations of some neurons than a clean
one: perturbing them makes it fall into the backdoor on clean inputs. ANP gives every BatchNorm
neuron k a mask ``m_k`` in [0, 1] and multiplicative noises ``delta_k, xi_k`` in [-eps, eps] on its
scale and shift (the authors' ``NoisyBatchNorm2d``: ``gamma * (m + delta)``, ``beta * (1 + xi)``)
and solves, on the defender's small clean set (paper eq. 5)::

    min_m  alpha * L(m, 0, 0) + (1 - alpha) * max_{|delta|,|xi| <= eps} L(m, delta, xi)

by alternating, per batch, (1) the inner maximisation: noise drawn uniformly in [-eps, eps], then
``anp_steps`` signed-gradient ascent steps of size ``eps / anp_steps``; (2) one SGD step (momentum
0.9) on the mask, clipped to [0, 1]. Neurons whose mask ends below a threshold are pruned: their
BatchNorm scale is set to 0 (the authors' ``pruning``; the shift is kept, as there).

Defaults are the paper's / authors': ``eps=0.4``, ``steps=1``, ``alpha=0.2``, mask ``lr=0.2``
with momentum 0.9, batches of 128 drawn with replacement from the clean set, BatchNorm in
training mode (batch statistics) while the mask is optimised, pruning by threshold 0.2. Scaled
to the smoke budget: ``iterations=300`` instead of 2000 (the clean set here is 60 images, not the
paper's 500; a batch of 128 drawn with replacement covers it twice per step). Two choices of ours,
stated: the noise is clipped to [-eps, eps] after the ascent step (the paper's constraint; the
authors' code does not clip, so a step from the random start may reach 2 eps), and no data
augmentation (the authors use random crop and flip on CIFAR; flipping a traffic sign changes it).

Written by hand (with :func:`torch.func.functional_call`, no model class rewritten): neither
BackdoorBench nor ART packages ANP as a library function over an arbitrary ``nn.Module``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data.datalike import float_pair
from ..train import as_channels_last
from .pruning import smallest


def bn_layers(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """``{module name: BatchNorm2d}`` of every affine BatchNorm2d (the neurons ANP masks; for
    ``small_cnn`` ``blocks.conv1.bn`` .. ``blocks.conv4.bn``)."""
    out = {n: m for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and m.affine}
    if not out:
        raise ValueError("the model has no affine BatchNorm2d layer: ANP has no neuron to mask")
    return out


def _overrides(bns, masks, noise, perturbed: bool) -> dict[str, torch.Tensor]:
    """BatchNorm scale and shift as ANP's noisy layer uses them (the authors' ``NoisyBatchNorm2d``):
    ``gamma * (m + delta)`` and ``beta * (1 + xi)`` when perturbed, else ``gamma * m`` and ``beta``."""
    out = {}
    for name, bn in bns.items():
        if perturbed:
            delta, xi = noise[name]
            out[f"{name}.weight"] = bn.weight * (masks[name] + delta)
            out[f"{name}.bias"] = bn.bias * (1 + xi)
        else:
            out[f"{name}.weight"] = bn.weight * masks[name]
    return out


def _ascend_noise(work, bns, masks, noise, x, y, eps: float, steps: int) -> None:
    """Inner maximisation (step 1 of the authors' ``mask_train``): uniform start in [-eps, eps],
    then ``steps`` signed-gradient ascent steps of size ``eps / steps`` on the clean loss,
    clipped to [-eps, eps] (paper's constraint)."""
    for d, xi in noise.values():
        d.uniform_(-eps, eps)
        xi.uniform_(-eps, eps)
    flat = [t for pair in noise.values() for t in pair]
    fixed = {k: m.detach() for k, m in masks.items()}
    for _ in range(steps):
        for t in flat:
            t.requires_grad_(True)
        loss = F.cross_entropy(functional_call(work, _overrides(bns, fixed, noise, True), (x,)), y)
        grads = torch.autograd.grad(loss, flat)
        with torch.no_grad():
            for t, g in zip(flat, grads):
                t.add_(g.sign(), alpha=eps / steps).clamp_(-eps, eps)
        for t in flat:
            t.requires_grad_(False)


def anp_masks(model: nn.Module, clean_set, *, eps: float = 0.4, alpha: float = 0.2, steps: int = 1,
              lr: float = 0.2, iterations: int = 300, batch_size: int = 128, seed: int = 0,
              device=None) -> dict[str, torch.Tensor]:
    """ANP's mask value per BatchNorm neuron, ``{BatchNorm module name: (channels,) tensor in
    [0, 1]}`` (CPU), optimised on ``clean_set`` (an ``ImageSet`` or an (images, labels) pair,
    images uint8 or float in [0, 1]) as in the module docstring. ``model`` is not modified (the
    optimisation runs on a deep copy, whose BatchNorm running statistics it is free to update).
    ``seed`` fixes the batches and the noise starts (a forked RNG: the global one is left as is)."""
    if not 0 <= alpha <= 1 or eps < 0 or steps < 1 or iterations < 0:
        raise ValueError("need 0 <= alpha <= 1, eps >= 0, steps >= 1, iterations >= 0")
    device = device or next(model.parameters()).device
    work = copy.deepcopy(model).to(device).train()  # the authors optimise with model.train()
    for p in work.parameters():
        p.requires_grad_(False)
    bns = bn_layers(work)
    x, y = float_pair(clean_set, device)
    masks = {n: torch.ones(b.num_features, device=device, requires_grad=True) for n, b in bns.items()}
    noise = {n: (torch.zeros(b.num_features, device=device), torch.zeros(b.num_features, device=device))
             for n, b in bns.items()}
    opt = torch.optim.SGD(masks.values(), lr=lr, momentum=0.9)
    work.to(memory_format=torch.channels_last)  # the copy is ours: 1.35x a step on the CPU, same arithmetic
    x = as_channels_last(x, True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(iterations):
            idx = torch.randint(len(x), (batch_size,)).to(device)  # the authors' RandomSampler(replacement=True)
            xb, yb = x[idx], y[idx]
            loss_rob = 0.0
            if eps > 0:
                _ascend_noise(work, bns, masks, noise, xb, yb, eps, steps)
                loss_rob = F.cross_entropy(functional_call(work, _overrides(bns, masks, noise, True), (xb,)), yb)
            loss_nat = F.cross_entropy(functional_call(work, _overrides(bns, masks, noise, False), (xb,)), yb)
            opt.zero_grad()
            (alpha * loss_nat + (1 - alpha) * loss_rob).backward()
            opt.step()
            with torch.no_grad():
                for m in masks.values():
                    m.clamp_(0, 1)
    return {n: m.detach().cpu() for n, m in masks.items()}


def pruned_neurons(masks: dict[str, torch.Tensor], *, threshold: float | None = 0.2,
                   fraction: float | None = None) -> dict[str, torch.Tensor]:
    """Indices of the neurons to prune per layer: mask value below ``threshold`` (the authors'
    ``--pruning-by threshold``), or, with ``fraction`` given (and ``threshold=None``), the
    ``int(fraction * total)`` neurons with the smallest mask over all layers (``--pruning-by
    number``; ties by position)."""
    if (threshold is None) == (fraction is None):
        raise ValueError("give exactly one of threshold and fraction")
    if threshold is not None:
        return {n: (m < threshold).nonzero().flatten() for n, m in masks.items()}
    return {n: m.nonzero().flatten() for n, m in smallest(masks, fraction).items()}


def anp_prune(model: nn.Module, masks: dict[str, torch.Tensor], *, threshold: float | None = 0.2,
              fraction: float | None = None) -> nn.Module:
    """A deep copy of ``model`` (eval mode) with the neurons :func:`pruned_neurons` picks removed:
    their BatchNorm scale set to 0, as the authors' ``prune_neuron_cifar.py`` does. ``model`` is
    not modified. With every mask at 1 and a threshold nothing is pruned: the copy equals it."""
    out = copy.deepcopy(model).eval()
    bns = bn_layers(out)
    with torch.no_grad():
        for name, idx in pruned_neurons(masks, threshold=threshold, fraction=fraction).items():
            bns[name].weight[idx.to(bns[name].weight.device)] = 0.0
    return out


def anp(model: nn.Module, clean_set, *, threshold: float | None = 0.2, fraction: float | None = None,
        **kw) -> tuple[nn.Module, dict]:
    """ANP end to end: :func:`anp_masks` (``kw``: eps, alpha, steps, lr, iterations, batch_size,
    seed, device) then :func:`anp_prune`. Returns the pruned copy and ``info``: ``masks`` (per
    layer), ``pruned`` (neuron indices per layer), ``n_pruned`` (count per layer), ``total``."""
    masks = anp_masks(model, clean_set, **kw)
    picked = pruned_neurons(masks, threshold=threshold, fraction=fraction)
    pruned = anp_prune(model, masks, threshold=threshold, fraction=fraction)
    info = {"masks": masks, "pruned": picked, "n_pruned": {n: len(i) for n, i in picked.items()},
            "total": int(sum(len(i) for i in picked.values()))}
    return pruned, info
