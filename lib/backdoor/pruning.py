"""Weight selections of the backdoor study: the global magnitude threshold over every conv
weight (the authors' ``weight_prune``: masked planting and ``mag``), divmag's relative-change
score, and fine-pruning's channel activity (Liu, Dolan-Gavitt & Garg 2018).

Every selection is *exact*: the ``int(fraction * total)`` weights with the smallest value of
the score, ties broken by position (a stable sort), so a test can count them; the authors'
``|w| > sorted|w|[k]`` threshold differs only on ties.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """``{parameter name: weight}`` of every ``Conv2d`` in ``model`` (what the authors' global
    threshold covers; BatchNorm and the fully connected head are not in it)."""
    return {f"{name}.weight": m.weight for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def smallest(scores: dict[str, torch.Tensor], fraction: float) -> dict[str, torch.Tensor]:
    """Bool masks (same shapes) of the ``int(fraction * total)`` entries with the smallest score
    over all tensors together (one global threshold); ``nan`` scores count as largest."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    flat = torch.cat([s.detach().float().flatten().cpu() for s in scores.values()])
    flat = torch.nan_to_num(flat, nan=float("inf"))
    k = int(fraction * flat.numel())
    picked = torch.zeros(flat.numel(), dtype=torch.bool)
    if k > 0:
        # the first k of a stable sort, in linear time (a sort of a ResNet-18's 11M weights took about
        # a second a call): every score below the k-th smallest, then the ties at it by position
        kth = torch.kthvalue(flat, k).values
        picked = flat < kth
        ties = (flat == kth).nonzero().flatten()
        picked[ties[:k - int(picked.sum())]] = True
    out, i = {}, 0
    for name, s in scores.items():
        out[name] = picked[i:i + s.numel()].view(s.shape).to(s.device)
        i += s.numel()
    return out


def magnitude_masks(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """Masks of the globally smallest ``fraction`` of conv weights by ``|w|``."""
    return smallest({k: p.detach().abs() for k, p in conv_weights(model).items()}, fraction)


@torch.no_grad()
def zero_weights(model: nn.Module, masks: dict[str, torch.Tensor]) -> int:
    """Set the masked entries of the named parameters to 0 in place; returns how many."""
    params = dict(model.named_parameters())
    for k, m in masks.items():
        params[k].masked_fill_(m.to(params[k].device), 0.0)
    return int(sum(int(m.sum()) for m in masks.values()))


def magnitude_prune(model: nn.Module, fraction: float) -> dict[str, torch.Tensor]:
    """``mag`` (the authors' ``WeightPruner`` with ``weight_init_prune_ratio``): zero the
    globally smallest ``fraction`` of conv weights in place; returns the masks."""
    masks = magnitude_masks(model, fraction)
    zero_weights(model, masks)
    return masks


def divmag_scores(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor],
                  low_bound: float = 0.0) -> dict[str, torch.Tensor]:
    """divmag's score of each weight: ``|w_after - w_before| / max(|w_before|, low_bound)`` (the
    authors' ``weight_low_bound``, 0 by default). With the bound 0 a zero weight that moved
    scores ``inf`` and one that did not ``nan``; both rank as largest (never reset)."""
    out = {}
    for k, b in before.items():
        b = b.detach().float()
        out[k] = (after[k].detach().float().to(b.device) - b).abs() / b.abs().clamp_min(low_bound)
    return out


def last_conv(model: nn.Module) -> tuple[str, nn.Conv2d, nn.BatchNorm2d | None]:
    """The last ``Conv2d`` of the model's last stage and the ``BatchNorm2d`` right after it in
    module order (``None`` if there is none): the layer fine-pruning prunes (for a ResNet, the
    last block's second conv; its shortcut is not pruned, as in BackdoorBench)."""
    stage = model.blocks[model.stages[-1]]
    mods = list(stage.named_modules())
    convs = [i for i, (_, m) in enumerate(mods) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"stage {model.stages[-1]!r} has no Conv2d to prune")
    i = convs[-1]
    bn = next((m for _, m in mods[i + 1:] if isinstance(m, nn.BatchNorm2d)), None)
    if bn is not None and bn.num_features != mods[i][1].out_channels:
        bn = None
    return f"blocks.{model.stages[-1]}.{mods[i][0]}".rstrip("."), mods[i][1], bn


@torch.no_grad()
def channel_activity(model: nn.Module, data, *, batch_size: int = 256) -> torch.Tensor:
    """Mean activation per output channel of :func:`last_conv` (after its BatchNorm, rectified)
    over ``data`` in eval mode: what Liu et al. rank channels by (dormant on clean data =
    candidate backdoor channels)."""
    from ..train import Batches, model_device

    _, conv, bn = last_conv(model)
    layer = bn if bn is not None else conv
    sums, count = torch.zeros(layer.weight.shape[0]), 0

    def hook(_m, _inp, out):
        nonlocal sums, count
        sums += out.detach().float().relu().mean((2, 3)).sum(0).cpu()
        count += out.shape[0]

    was = model.training
    model.eval()
    handle = layer.register_forward_hook(hook)
    try:
        for x, _ in Batches(data, batch_size, model_device(model)):
            model(x)
    finally:
        handle.remove()
        model.train(was)
    return sums / max(count, 1)


def channel_masks(model: nn.Module, channels) -> dict[str, torch.Tensor]:
    """Parameter masks that remove output ``channels`` of :func:`last_conv`: their conv filters
    and, when it follows, their BatchNorm scale and shift (so the channel's output is exactly 0)."""
    name, conv, bn = last_conv(model)
    ch = torch.as_tensor(list(channels), dtype=torch.long)
    w = torch.zeros_like(conv.weight, dtype=torch.bool)
    w[ch] = True
    masks = {f"{name}.weight": w}
    if conv.bias is not None:
        masks[f"{name}.bias"] = torch.zeros_like(conv.bias, dtype=torch.bool).index_fill_(0, ch, True)
    if bn is not None:
        bn_name = next(k for k, m in model.named_modules() if m is bn)
        dev = bn.weight.device
        sel = torch.zeros(bn.num_features, dtype=torch.bool, device=dev).index_fill_(0, ch.to(dev), True)
        masks[f"{bn_name}.weight"] = sel
        masks[f"{bn_name}.bias"] = sel.clone()
    return masks
