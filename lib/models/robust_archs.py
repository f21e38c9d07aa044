"""The CIFAR architectures of the adversarial-training literature, wrapped as a :class:`Classifier`.

- ``preact_resnet18``: the pre-activation ResNet-18 of Wong et al. 2020 ("Fast is better than
  free", ``fast_adversarial/CIFAR10/preact_resnet.py``) and Rice et al. 2020 ("Overfitting in
  adversarially robust deep learning", ``robust_overfitting/preactresnet.py``): a 3x3 stem of 64
  channels, four stages of two pre-activation basic blocks (64, 128, 256, 512 channels, strides
  1, 2, 2, 2, 1x1 convolution shortcuts on the pre-activated input where the shape changes), then
  BN-ReLU, global average pooling and a Linear. About 11.2M parameters for 10 classes.
- ``wrn34_10`` and any ``wrn<depth>_<widen>`` (depth = 6n + 4): the Wide ResNet of Zagoruyko &
  Komodakis 2016 as Madry et al. 2018 and TRADES (Zhang et al. 2019, ``TRADES/models/wideresnet.py``)
  train it: a 3x3 stem of 16 channels, three stages of n pre-activation blocks of 16k, 32k and 64k
  channels (strides 1, 2, 2), then BN-ReLU, pooling and a Linear. WRN-34-10 has about 46.2M parameters.

The unwrapped modules (:class:`PreActResNet`, :class:`WideResNet`) keep the parameter names of
those repositories (``conv1``, ``layer1.0.bn1``, ``layer2.0.shortcut.0``, ``bn``, ``linear``;
``block1.layer.0.bn1``, ``block1.layer.0.convShortcut``, ``bn1``, ``fc``), so a checkpoint saved by
them (or a RobustBench model of the same layout) loads with strict keys through
:func:`lib.models.build`; :func:`remap_wrn_keys` drops TRADES's ``sub_block1``, a block that
TRADES builds but never calls.

Blocks and stages (the AnB units and feature maps): ``stem``, then one block per residual block
(``layer{i}_{j}`` / ``block{i}_{j}``); the final BN-ReLU belongs to the last block (as DenseNet's
``norm5`` does), so every stage's output, the last included, is what the next layer reads.
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from typing import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from .classifier import Classifier, Head

ROBUST_ARCHS = ("preact_resnet18", "wrn34_10", "wrn28_10")
_WRN = re.compile(r"^wrn(\d+)_(\d+)$")


def is_robust_arch(arch: str) -> bool:
    """``preact_resnet18`` or a ``wrn<depth>_<widen>`` name."""
    return arch == "preact_resnet18" or bool(_WRN.match(arch))


# --------------------------------------------------------------------------------------------
# PreActResNet-18 (He et al. 2016b; Wong et al. 2020; Rice et al. 2020)
# --------------------------------------------------------------------------------------------
class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut (1x1 conv of the pre-activated input
    when the shape changes, else the input itself)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so explainers can hook them
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """The unwrapped PreActResNet (``blocks_per_stage`` (2, 2, 2, 2): ResNet-18), with the key
    names of Wong et al.'s and Rice et al.'s code. PyTorch's default initialisation, as theirs."""

    def __init__(self, blocks_per_stage=(2, 2, 2, 2), num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        planes_in = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            layer = []
            for j in range(n):
                layer.append(PreActBlock(planes_in, planes, 2 if (i > 0 and j == 0) else 1))
                planes_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.bn = nn.BatchNorm2d(planes_in)
        self.linear = nn.Linear(planes_in, num_classes)

    def forward(self, x: Tensor) -> Tensor:  # the reference forward pass (the Classifier walks the same modules)
        out = self.conv1(x)
        for i in (1, 2, 3, 4):
            out = getattr(self, f"layer{i}")(out)
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


# --------------------------------------------------------------------------------------------
# Wide ResNet (Zagoruyko & Komodakis 2016; Madry et al. 2018; Zhang et al. 2019)
# --------------------------------------------------------------------------------------------
class WideBlock(nn.Module):
    """Pre-activation block of TRADES's ``wideresnet.py``: BN-ReLU, conv3x3 (stride), BN-ReLU,
    (dropout), conv3x3; the shortcut is the input, or a 1x1 conv of the pre-activated input when the
    width or stride changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop = drop
        self.equal = in_planes == out_planes and stride == 1
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        act = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.drop > 0:
            out = F.dropout(out, p=self.drop, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal else self.convShortcut(act))


class _Stage(nn.Module):
    """TRADES's ``NetworkBlock``: a ``layer`` Sequential of :class:`WideBlock` (keys ``blockK.layer.J``)."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop: float):
        super().__init__()
        self.layer = nn.Sequential(*[WideBlock(in_planes if j == 0 else out_planes, out_planes,
                                               stride if j == 0 else 1, drop) for j in range(n)])

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """The unwrapped WRN-``depth``-``widen`` (depth 6n + 4), with TRADES's key names and init
    (He-normal convolutions with fan-out, BN weight 1 / bias 0, Linear bias 0)."""

    def __init__(self, depth: int = 34, widen: int = 10, num_classes: int = 10, drop: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4 (16, 22, 28, 34, 40), got {depth}")
        if widen < 1:
            raise ValueError(f"widen factor must be >= 1, got {widen}")
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, ch[0], 3, stride=1, padding=1, bias=False)
        self.block1 = _Stage(n, ch[0], ch[1], 1, drop)
        self.block2 = _Stage(n, ch[1], ch[2], 2, drop)
        self.block3 = _Stage(n, ch[2], ch[3], 2, drop)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:  # the reference forward pass
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def remap_wrn_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A TRADES / Madry-style WRN state dict without ``sub_block1.*`` (built, never used)."""
    return {k: v for k, v in state.items() if not k.startswith("sub_block1.")}


# --------------------------------------------------------------------------------------------
# building and wrapping
# --------------------------------------------------------------------------------------------
def robust_net(arch: str, num_classes: int) -> nn.Module:
    """The unwrapped network of ``arch`` (``preact_resnet18`` or ``wrn<depth>_<widen>``)."""
    if arch == "preact_resnet18":
        return PreActResNet((2, 2, 2, 2), num_classes)
    m = _WRN.match(arch)
    if not m:
        raise ValueError(f"not a robust-training architecture: {arch!r} (preact_resnet18 or wrn<depth>_<widen>)")
    return WideResNet(int(m.group(1)), int(m.group(2)), num_classes)


def wrap_robust(net: nn.Module, arch: str, mean, std) -> Classifier:
    """``net`` (:class:`PreActResNet` or :class:`WideResNet`) as a :class:`Classifier` sharing its
    modules: ``stem``, one block per residual block, the final BN-ReLU inside the last block."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict(stem=nn.Sequential(OrderedDict(conv1=net.conv1)))
    stages = []
    if isinstance(net, PreActResNet):
        groups = [(f"layer{i}", getattr(net, f"layer{i}")) for i in (1, 2, 3, 4)]
        final, fc = OrderedDict(bn=net.bn, relu=nn.ReLU()), net.linear
    else:
        groups = [(f"block{i}", getattr(net, f"block{i}").layer) for i in (1, 2, 3)]
        final, fc = OrderedDict(bn=net.bn1, relu=net.relu), net.fc
    for g, (name, layer) in enumerate(groups):
        for j, block in enumerate(layer):
            last = g == len(groups) - 1 and j == len(layer) - 1
            blocks[f"{name}_{j}"] = nn.Sequential(OrderedDict(block=block, **final)) if last else block
        stages.append(f"{name}_{j}")
    return Classifier(arch, blocks, Head(fc), stages, mean, std)
