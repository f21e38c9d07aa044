"""The architectures behind :func:`lib.models.build`, each wrapped as a :class:`Classifier`.

- ``small_cnn``: four conv-BN-ReLU blocks (the smoke-profile default for 32-px images);
- CIFAR ResNets (He et al. 2016, section 4.2) in the layout of the shared ResNet-20 checkpoint;
- torchvision's ResNet-18/50/101, MobileNetV2 and DenseNet-121, whose ImageNet weights are read
  from the local torch hub cache only (:func:`pretrained_path`); nothing here downloads;
- the adversarial-training literature's PreActResNet-18 and Wide ResNets (``wrn34_10``), in
  :mod:`lib.models.robust_archs`.

What a *block* is per architecture (the AnB unit): for ResNets the stem or one residual block,
for MobileNetV2 one entry of ``features``, for DenseNet-121 the stem, a dense block or a
transition, for the small CNN one conv-BN-ReLU unit.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier, Head
from .robust_archs import ROBUST_ARCHS

CIFAR_RESNETS = ("resnet20", "resnet32", "resnet56")
TORCHVISION_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "densenet121")
# ROBUST_ARCHS (lib.models.robust_archs): preact_resnet18, wrn34_10, wrn28_10; any wrn<depth>_<widen> builds too
ARCHS = ("small_cnn", *CIFAR_RESNETS, *TORCHVISION_ARCHS, *ROBUST_ARCHS)

# torchvision Weights enum class per architecture; the tag (default IMAGENET1K_V1) picks a member.
TV_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "densenet121": "DenseNet121_Weights",
}
# Key of the last Linear's weight in each architecture's *unwrapped* state dict.
RAW_HEAD_KEYS = {
    "resnet18": "fc.weight",
    "resnet50": "fc.weight",
    "resnet101": "fc.weight",
    "mobilenet_v2": "classifier.1.weight",
    "densenet121": "classifier.weight",
    **{a: "linear.weight" for a in CIFAR_RESNETS},
    "preact_resnet18": "linear.weight",  # wrn<depth>_<widen>: "fc.weight" (see raw_head_key)
}
HEAD_KEY = "head.fc.weight"  # the same in the wrapped (Classifier) state dict


# --------------------------------------------------------------------------------------------
# Small CNN (the smoke-profile default for 32-px images)
# --------------------------------------------------------------------------------------------
def small_cnn(num_classes: int, width: int = 32, pools: int = 3, dropout: float = 0.0,
              in_channels: int = 3, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> Classifier:
    """Four conv3x3-BN-ReLU blocks ``conv1..conv4`` with ``width * (1, 2, 4, 8)`` channels.

    ``pools`` (0-3) of the blocks ``conv2, conv3, conv4`` start with a 2x2 max-pool, so with the
    default 3 a 32-px input gives stage maps of 32, 16, 8 and 4 px (``pools=2`` keeps conv4 at
    8 px for finer Grad-CAM, at about twice the compute). All four blocks are stages.
    """
    if not 0 <= pools <= 3:
        raise ValueError("pools must be between 0 and 3")
    chans = [in_channels] + [width * m for m in (1, 2, 4, 8)]
    blocks = OrderedDict()
    for i in range(4):
        layers = OrderedDict()
        if 1 <= i <= pools:
            layers["pool"] = nn.MaxPool2d(2)
        layers["conv"] = nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False)
        layers["bn"] = nn.BatchNorm2d(chans[i + 1])
        layers["relu"] = nn.ReLU()
        blocks[f"conv{i + 1}"] = nn.Sequential(layers)
    for m in blocks.values():
        nn.init.kaiming_normal_(m.conv.weight, mode="fan_out", nonlinearity="relu")
    head = Head(nn.Linear(chans[-1], num_classes), dropout)
    return Classifier("small_cnn", blocks, head, list(blocks), mean, std)


# --------------------------------------------------------------------------------------------
# CIFAR ResNet (He et al. 2016, section 4.2), the layout of the shared ResNet-20 checkpoint
# --------------------------------------------------------------------------------------------
class ShortcutA(nn.Module):
    """Option-A shortcut: take every other pixel and zero-pad the new channels (no weights)."""

    def __init__(self, extra_channels: int):
        super().__init__()
        self.extra = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))

    def extra_repr(self) -> str:
        return f"stride=2, zero_channels={self.extra}"


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()  # modules, so explainers can hook them
        if stride != 1 or in_planes != planes:
            if stride != 2:
                raise ValueError("option-A shortcuts only downsample by 2")
            self.shortcut: nn.Module = ShortcutA(planes - in_planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The unwrapped CIFAR ResNet (depth 6n+2, 16/32/64 channels); its state-dict keys are
    ``conv1, bn1, layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}, linear`` like the shared checkpoint.
    Only used to load such checkpoints; :func:`build` wraps it into a :class:`Classifier`."""

    def __init__(self, depth: int = 20, num_classes: int = 10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        planes_in = 16
        for i, planes in enumerate((16, 32, 64)):
            layer = []
            for j in range(n):
                layer.append(CifarBasicBlock(planes_in, planes, 2 if (i > 0 and j == 0) else 1))
                planes_in = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)


def wrap_cifar_resnet(net: CifarResNet, arch: str, mean, std) -> Classifier:
    """``net`` as a :class:`Classifier` sharing its modules: stem, one block per residual block, head."""
    blocks = OrderedDict(stem=nn.Sequential(OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=nn.ReLU())))
    stages = []
    for i in (1, 2, 3):
        for j, block in enumerate(getattr(net, f"layer{i}")):
            blocks[f"layer{i}_{j}"] = block
        stages.append(f"layer{i}_{j}")
    return Classifier(arch, blocks, Head(net.linear), stages, mean, std)


# --------------------------------------------------------------------------------------------
# torchvision architectures
# --------------------------------------------------------------------------------------------
def wrap_torchvision(net: nn.Module, arch: str, mean, std) -> Classifier:
    """A torchvision ``arch`` network as a :class:`Classifier` sharing its modules (its stages and head)."""
    blocks: OrderedDict[str, nn.Module] = OrderedDict()
    if arch.startswith("resnet"):
        blocks["stem"] = nn.Sequential(OrderedDict(
            conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool))
        stages = []
        for i in (1, 2, 3, 4):
            for j, block in enumerate(getattr(net, f"layer{i}")):
                blocks[f"layer{i}_{j}"] = block
            stages.append(f"layer{i}_{j}")
        head = Head(net.fc)
    elif arch == "mobilenet_v2":
        for i, block in enumerate(net.features):
            blocks[f"f{i}"] = block
        # Last block of each output stride 4, 8, 16, 32 (the stride-2 blocks are f2, f4, f7, f14).
        stages = ["f3", "f6", "f13", f"f{len(net.features) - 1}"]
        head = Head(net.classifier[1], dropout=net.classifier[0].p)
    elif arch == "densenet121":
        feats = net.features
        blocks["stem"] = nn.Sequential(OrderedDict(
            conv0=feats.conv0, norm0=feats.norm0, relu0=feats.relu0, pool0=feats.pool0))
        for i in (1, 2, 3):
            blocks[f"denseblock{i}"] = getattr(feats, f"denseblock{i}")
            blocks[f"transition{i}"] = getattr(feats, f"transition{i}")
        # torchvision applies norm5 and a ReLU after the last dense block; they belong to it here.
        blocks["denseblock4"] = nn.Sequential(OrderedDict(
            block=feats.denseblock4, norm5=feats.norm5, relu=nn.ReLU()))
        stages = ["transition1", "transition2", "transition3", "denseblock4"]
        head = Head(net.classifier)
    else:
        raise ValueError(f"not a torchvision architecture: {arch}")
    return Classifier(arch, blocks, head, stages, mean, std)


def torchvision_net(arch: str, num_classes: int) -> nn.Module:
    """torchvision's ``arch`` with ``num_classes`` outputs, randomly initialised (no weights loaded)."""
    import torchvision.models as tvm

    return getattr(tvm, arch)(weights=None, num_classes=num_classes)


def torchvision_weights(arch: str, tag: str = "IMAGENET1K_V1"):
    """The torchvision ``Weights`` enum member for ``arch`` (e.g. ``ResNet18_Weights.IMAGENET1K_V1``)."""
    import torchvision.models as tvm

    if arch not in TV_WEIGHTS:
        raise ValueError(f"no torchvision ImageNet weights for {arch!r}; choose from {TORCHVISION_ARCHS}")
    return getattr(getattr(tvm, TV_WEIGHTS[arch]), tag)


def pretrained_path(arch: str, tag: str = "IMAGENET1K_V1") -> Path:
    """Where ``build(arch, ..., pretrained=True)`` looks: the torch hub cache file that
    torchvision itself would download to (``torch.hub.get_dir()/checkpoints/<url basename>``)."""
    url = torchvision_weights(arch, tag).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def remap_densenet_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Old torchvision DenseNet checkpoints name layers ``norm.1``; modules are ``norm1`` now
    (torchvision's ``densenet._load_state_dict`` regex, also matching ``num_batches_tracked``)."""
    out = {}
    for key, value in state.items():
        m = _DENSENET_OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out

