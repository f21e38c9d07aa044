"""A network built outside :mod:`lib.models` as a :class:`Classifier`, so that a study can use it as
its pretrained teacher: fine-tune it, cut it into AnB blocks, distil its stages, take its Grad-CAM.

A teacher is more than a function from images to logits: transfer learning replaces its head,
regularises towards its body and reads its intermediate feature maps. :func:`adopt` therefore
takes a network whose ``forward`` runs its direct children in order and ends in the Linear
classifier (``nn.Sequential`` does, and so do torchvision's ResNets, whose ``forward`` only adds a
flatten before ``fc``): the children before the last become the blocks, the last becomes
``head.fc``, and the stages are the last block at each feature-map resolution. The adopted model's
output is compared with the network's own ``forward`` on two images before anything uses it, so a
network whose ``forward`` does something else (a skip connection between children, a functional
call) is refused with what to give instead rather than silently changed.

Nothing here is written by hand that torch does: the blocks are the network's own modules, and
:func:`fresh_like_adopted` re-initialises a copy through each module's own ``reset_parameters``.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from .classifier import Classifier, Head
from .copies import derived_seed

ADOPTED = "adopted"  # build_args["arch"] of an adopted model (fresh_like dispatches on it)


class AsMap(nn.Module):
    """``(N, C) -> (N, C, 1, 1)``: a network that flattens before its classifier still ends its
    blocks in a feature map, as :class:`Head` (global pool, flatten, ``fc``) expects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:2], 1, 1) if x.ndim == 2 else x


class AdoptError(ValueError):
    """The network cannot be a teacher as it is; the message says what to give instead."""


def adopt(net: nn.Module, *, mean: Sequence[float], std: Sequence[float], size: int, name: str) -> Classifier:
    """``net`` (taking images normalised with ``mean``/``std``) as a :class:`Classifier` on ``size``-px
    [0, 1] images, checked to compute what ``net`` computes. ``name`` becomes ``arch``. Raises
    :class:`AdoptError` naming the fix."""
    children = list(net.named_children())
    if not children or not isinstance(children[-1][1], nn.Linear):
        last = type(children[-1][1]).__name__ if children else "nothing"
        raise AdoptError(f"{name}: a teacher's last direct child must be its Linear classifier (found {last}); "
                         "wrap the network as nn.Sequential(body..., nn.Flatten(), nn.Linear(...))")
    body = OrderedDict((k, m) for k, m in children[:-1])
    if not body:
        raise AdoptError(f"{name}: a Linear layer alone has no feature maps to transfer")
    net = net.eval()
    shapes = _block_shapes(body, mean, std, size, name)
    if len(shapes[next(reversed(shapes))]) == 2:  # flattened before the classifier
        body["as_map"] = AsMap()
    model = Classifier(name, body, Head(children[-1][1]), stages=_stages(shapes), mean=mean, std=std)
    model.build_args = {"arch": ADOPTED, "name": name}
    _check_same(net, model, mean, std, size, name)
    return model.eval()


def _block_shapes(body: "OrderedDict[str, nn.Module]", mean, std, size: int, name: str) -> dict[str, tuple]:
    """Each block's output shape for one ``size``-px image (the walk a Classifier will make)."""
    x = (torch.rand(1, 3, size, size) - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    shapes = {}
    with torch.no_grad():
        for k, m in body.items():
            try:
                x = m(x)
            except Exception as e:  # the children do not chain: forward does more than run them in order
                raise AdoptError(f"{name}: its children do not run in order ({k}: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160]}); give a network whose forward runs its "
                                 "direct children one after another, e.g. an nn.Sequential") from None
            if not isinstance(x, torch.Tensor):
                raise AdoptError(f"{name}: child {k} returns a {type(x).__name__}, not a tensor")
            shapes[k] = tuple(x.shape)
    return shapes


def _stages(shapes: dict[str, tuple]) -> list[str]:
    """The last block at each spatial resolution of the feature maps (``1x1`` maps only when there is
    nothing larger): the per-resolution maps that distillation and Grad-CAM read."""
    maps = {k: s for k, s in shapes.items() if len(s) == 4}
    wide = {k: s for k, s in maps.items() if s[2] * s[3] > 1} or maps
    last: dict[tuple, str] = {}
    for k, s in wide.items():
        last[s[2:]] = k
    stages = list(last.values())
    if not stages:
        raise AdoptError("a teacher needs feature maps (N, C, H, W) between its input and its classifier")
    return stages


def _check_same(net: nn.Module, model: Classifier, mean, std, size: int, name: str) -> None:
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        want = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
        got = model(x)
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=1e-4):
        raise AdoptError(f"{name}: its forward is not its children in order then the Linear classifier (the "
                         "adopted blocks give other logits: a skip connection or a functional call between "
                         "children?); give a network that is, e.g. an nn.Sequential")


def fresh_like_adopted(template: Classifier, num_classes: int | None = None, seed: int = 0) -> Classifier:
    """A randomly initialised copy of an adopted ``template`` with ``num_classes`` outputs: every
    module re-initialised by its own ``reset_parameters`` (the initialisation its author chose),
    seeded from ``derived_seed(seed, "fresh_like")``; unfrozen, masks and extra heads dropped."""
    model = copy.deepcopy(template)
    model.heads, model.masks, model.active_head = nn.ModuleDict(), nn.Module(), None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "fresh_like"))
        for m in model.modules():
            if m is not model and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        if num_classes is not None and num_classes != model.num_classes:
            model.reset_head(num_classes)
    for p in model.parameters():
        p.requires_grad_(True)
    for m in model.modules():
        m._workbook_frozen = False
    return model
