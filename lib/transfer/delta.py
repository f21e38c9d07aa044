"""DELTA (Li et al. 2019, "DELTA: DEep Learning Transfer using feature map with attention for
convolutional networks", ICLR): fine-tuning regularised by the attention-weighted distance of the
student's feature maps to the pretrained model's. ``delta`` is the method, ``delta_penalty`` its
feature-map term and ``delta_channel_attention`` the supervised channel attention."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import num_classes_of
from ..models import Classifier, copy_for_target, frozen_copy
from ..train import Batches, fit, pick_device
from .common import head_params, sq, with_augment
from .finetune import linear_probe


@torch.no_grad()
def _channel_loss_increase(model: Classifier, x, y, stage: str, budget: int = 1 << 24) -> torch.Tensor:
    """Per channel ``c`` of ``stage``'s output: the CE increase of ``model`` when channel ``c`` is
    zeroed (the channel's filter removed), for one batch; channels are ablated in chunks."""
    names = model.block_names
    i = names.index(stage)
    h = model.walk(x, stop=stage)

    def rest(f):
        if i + 1 < len(names):
            f = model.walk(f, start=names[i + 1])
        return model.head(f)

    base = F.cross_entropy(rest(h).float(), y)
    b, c = h.shape[:2]
    per = max(1, budget // max(1, h.numel()))
    out = torch.empty(c, device=h.device)
    for c0 in range(0, c, per):
        cs = torch.arange(c0, min(c, c0 + per), device=h.device)
        k = len(cs)
        hk = h.unsqueeze(0).repeat(k, 1, 1, 1, 1)
        hk[torch.arange(k, device=h.device), :, cs] = 0
        logits = rest(hk.flatten(0, 1)).float()
        losses = F.cross_entropy(logits, y.repeat(k), reduction="none").view(k, b).mean(1)
        out[cs] = losses - base
    return out


def delta_channel_attention(pretrained: Classifier, train, *, stages: Sequence[str] | None = None,
                            epochs: int = 10, lr: float = 0.1,
                            batches: int = 10,
                            attention_batch_size: int = 32, temperature: float = 5.0, seed: int = 0,
                            progress: bool = False, **fit_kw) -> dict[str, torch.Tensor]:
    """DELTA's supervised channel attention (Li et al. 2019; procedure of tllib's implementation):

    1. train a new head on the frozen pretrained body (:func:`linear_probe`, ``epochs``);
    2. for ``batches`` training batches of ``attention_batch_size``, measure for every channel
       ``c`` of every stage the loss increase when ``c`` is removed, averaged over batches;
    3. per stage, standardise the increases (z-score) and take ``softmax(z / temperature)``.

    Returns ``{stage: weights}`` (CPU tensors summing to 1 over the stage's channels). DELTA
    removes a channel by zeroing its conv filter; here the stage's output channel is zeroed,
    which is the same for a stage ending in that conv and the natural analogue for stages ending
    in BatchNorm/ReLU, a residual addition or a concatenation.
    tllib's defaults: 10 head epochs, batch 32, 10 batches, temperature 5 (the authors' training
    script applies the same z-score and ``softmax(./5)`` to precomputed weights). Cost: one
    forward of the rest of the network per channel and batch (channels are ablated in chunks of
    about 16M activations).
    """
    stages = list(pretrained.stages if stages is None else stages)
    kw = {"desc": "DELTA attention head", **fit_kw}
    probe, _ = linear_probe(pretrained, train, epochs=epochs, lr=lr, seed=seed, progress=progress, **kw)
    probe.eval()
    device = next(probe.parameters()).device
    loader = Batches(train, attention_batch_size, device, shuffle=True, seed=seed + 1)
    sums = {s: None for s in stages}
    seen = 0
    for x, y in loader:
        if seen >= batches:
            break
        for s in stages:
            d = _channel_loss_increase(probe, x, y, s)
            sums[s] = d if sums[s] is None else sums[s] + d
        seen += 1
    out = {}
    for s in stages:
        d = sums[s] / max(seen, 1)
        sd = d.std()
        z = (d - d.mean()) / sd if float(sd) > 0 else torch.zeros_like(d)
        out[s] = torch.softmax(z / temperature, 0).cpu()
    return out


def delta_penalty(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                  attention: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """DELTA's feature-map term (the authors' code): over stages ``j``, images ``i`` and channels
    ``c`` of ``C`` (``H x W`` maps), ``1/2 * sum_{j,i,c} C * a_jc * ||FM_jc(x_i) - FM0_jc(x_i)||^2 / (H W)``.

    ``attention[j]``: channel weights summing to 1 (:func:`delta_channel_attention`); ``None``
    means uniform ``1/C``, i.e. the unweighted feature-map L2 (per-pixel mean over space). The
    sum runs over the batch, as in the original code (so the effective strength grows with it).
    """
    total = 0.0
    for s, fs in student.items():
        ft = teacher[s].detach()
        b, c, hgt, wid = fs.shape
        dist = (fs.float() - ft.float()).pow(2).flatten(2).sum(2)  # (B, C)
        if attention is None:
            w = torch.full((c,), 1.0 / c, device=fs.device)
        else:
            w = attention[s].to(fs.device)
        total = total + 0.5 * (c * w * dist / (hgt * wid)).sum()
    return total


def delta(pretrained: Classifier, train, *, alpha: float = 0.01,
          beta: float = 0.01, epochs: int, lr: float = 0.01, attention: bool | Mapping[str, torch.Tensor] = True,
          stages: Sequence[str] | None = None,
          attention_epochs: int = 10, attention_batches: int = 10,
          teacher_bn: str = "eval", seed: int = 0, translate="auto",
          **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """DELTA (Li, Xiong, Wang, Huan, Liu, Xu, Chen, Liu, Dou 2019, "DELTA: DEep Learning Transfer
    using feature map with attention for convolutional networks", ICLR): fine-tuning with
    ``CE + alpha * Omega'(FM) + beta/2 ||w_head||^2``, where ``Omega'`` (:func:`delta_penalty`) is
    the attention-weighted squared distance between the student's and the frozen pretrained
    model's feature maps at ``stages`` (default the model's stages: the last block of each
    resolution), summed over the batch as in the authors' code. The student runs in train mode,
    the teacher (a frozen copy, no grads) in eval mode as in the authors' code
    (``teacher_bn="eval"``); ``teacher_bn="batch"`` lets the teacher's BatchNorm layers use batch
    statistics instead, so that the distance is exactly 0 at the first step (the authors hook the
    last conv of each stage, *before* its BatchNorm, where the mode matters less; our stages are
    block outputs, after BatchNorm).

    ``attention=True``: the paper's supervised channel attention (:func:`delta_channel_attention`:
    a head trained on the frozen body for ``attention_epochs``, channel-removal loss increases over
    ``attention_batches`` batches of 32, ``softmax(z/5)``); ``False``: uniform weights, i.e. the
    unweighted feature-map L2; or a precomputed ``{stage: weights}``.

    Paper / authors' code defaults: ``alpha = beta = 0.01``, SGD lr 0.01, momentum 0.9, batch 64,
    9,000 iterations with the lr divided by 10 after two thirds, no weight decay; attention
    (tllib's implementation): 10 head epochs, 10 batches of 32, temperature 5. These are the
    defaults, with ``batch_size=64`` (the penalty is a sum over the batch, so its strength grows
    with it); weight decay stays at ``fit``'s default 5e-4 unless given (pass ``weight_decay=0``
    to match the paper). The history gains
    ``feat_reg`` (epoch mean of ``Omega'``) and ``head_sq``; the model's ``delta_attention``
    attribute holds the weights used.
    """
    stages = list(pretrained.stages if stages is None else stages)
    device = pick_device(fit_kw.get("device"))
    if attention is True and alpha == 0:
        att = None  # no feature term: skip the (costly) attention estimate
    elif attention is True:
        att = delta_channel_attention(
            pretrained, train, stages=stages, epochs=attention_epochs, batches=attention_batches,
            seed=seed, **{k: v for k, v in fit_kw.items() if k in ("device", "amp", "batch_size")})
    elif attention is False or attention is None:
        att = None
    else:
        att = {s: torch.as_tensor(attention[s]).float() for s in stages}
    model = copy_for_target(pretrained, num_classes_of(train), seed).to(device)
    teacher = frozen_copy(pretrained, device)
    if teacher_bn == "batch":
        for m in teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    elif teacher_bn != "eval":
        raise ValueError(f"teacher_bn must be 'batch' or 'eval', got {teacher_bn!r}")
    att_dev = None if att is None else {s: w.to(device) for s, w in att.items()}

    def loss(m, x, y):
        feats = m.features(x, stages)
        logits = feats["logits"]
        with torch.no_grad():
            t = teacher.features(x, stages, logits=False)
        reg = delta_penalty({s: feats[s] for s in stages}, t, att_dev)
        head_sq = sq(head_params(m))
        return (F.cross_entropy(logits, y) + alpha * reg + 0.5 * beta * head_sq, logits,
                {"feat_reg": reg, "head_sq": head_sq})

    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", "DELTA")
    kw.setdefault("batch_size", 64)
    hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, loss=loss, **kw)
    model.delta_attention = att
    return model, hist
