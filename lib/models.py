"""Model builders: every model takes [0, 1] images and carries its own ``Normalize`` layer.

Because normalisation happens inside the model, attack budgets (epsilon, step size) are in
pixel units and attacks never need to know the dataset statistics.

Every model is a :class:`Classifier`::

    x in [0,1] -> normalize -> blocks[0] -> blocks[1] -> ... -> blocks[-1] -> head -> logits

*Blocks* are the units of Yosinski et al.'s AnB transfer ("copy the first n blocks of network
A, freeze them, re-initialise the rest"): each is an ``nn.Module`` in the ordered
``model.blocks`` ``ModuleDict`` that maps one feature map to the next. For ResNets a block is
the stem or one residual block, for MobileNetV2 one entry of ``features``, for DenseNet-121 the
stem, a dense block or a transition, for the small CNN one conv-BN-ReLU unit. Whoever freezes
blocks (``requires_grad_(False)``) must also keep their BatchNorm layers in eval mode, because
``model.train()`` would otherwise keep updating the frozen running statistics.

*Stages* (``model.stages``) are the block names whose outputs are the per-resolution feature
maps used for feature distillation and Grad-CAM; :meth:`Classifier.features` returns them in one
forward pass.

The *head* is global average pooling, flatten, optional dropout and a Linear ``head.fc``;
:meth:`Classifier.reset_head` swaps in a fresh Linear for a new task.

Pretrained ImageNet weights for the torchvision architectures are read from the local torch hub
cache only (``$TORCH_HOME/hub/checkpoints``); nothing here downloads. A missing file raises
:class:`PretrainedWeightsMissing`, whose message names the file to place and where to get it.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CIFAR_RESNETS = ("resnet20", "resnet32", "resnet56")
TORCHVISION_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2", "densenet121")
ARCHS = ("small_cnn", *CIFAR_RESNETS, *TORCHVISION_ARCHS)

# torchvision Weights enum class per architecture; the tag (default IMAGENET1K_V1) picks a member.
_TV_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "densenet121": "DenseNet121_Weights",
}
# Key of the last Linear's weight in each architecture's *unwrapped* state dict.
_RAW_HEAD_KEY = {
    "resnet18": "fc.weight",
    "resnet50": "fc.weight",
    "resnet101": "fc.weight",
    "mobilenet_v2": "classifier.1.weight",
    "densenet121": "classifier.weight",
    **{a: "linear.weight" for a in CIFAR_RESNETS},
}
_HEAD_KEY = "head.fc.weight"  # the same in the wrapped (Classifier) state dict


class PretrainedWeightsMissing(FileNotFoundError):
    """Pretrained weights are not in the local cache; the message says what to put where."""


# --------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------
class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean/std as buffers (they follow ``.to()`` and are
    saved in the state dict, so a checkpoint remembers the statistics it was trained with)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std  # out of place: never touches the (attacked) input

    def extra_repr(self) -> str:
        fmt = lambda t: "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"
        return f"mean={fmt(self.mean)}, std={fmt(self.std)}"


class Head(nn.Module):
    """Global average pool -> flatten -> dropout (identity when ``dropout == 0``) -> ``fc``."""

    def __init__(self, fc: nn.Linear, dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = fc

    def pooled(self, x: Tensor) -> Tensor:
        """The penultimate vector: pooled and flattened, before dropout and ``fc``."""
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.pooled(x)))


class Classifier(nn.Module):
    """``normalize -> blocks (in order) -> head``; see the module docstring for the terms.

    Attributes: ``arch`` (builder name), ``num_classes``, ``stages`` (feature-map block names),
    ``normalize``, ``blocks`` (ordered ``ModuleDict``), ``head`` (its Linear is ``head.fc``).
    """

    def __init__(self, arch: str, blocks: Mapping[str, nn.Module], head: Head,
                 stages: Sequence[str], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.arch = arch
        self.normalize = Normalize(mean, std)
        self.blocks = nn.ModuleDict(OrderedDict(blocks))
        self.head = head
        unknown = [s for s in stages if s not in self.blocks]
        if unknown:
            raise ValueError(f"stages {unknown} are not block names {self.block_names}")
        self.stages = list(stages)
        # Out-of-place activations everywhere: in-place ReLUs break module backward hooks
        # (captum's guided methods) and make hooked feature maps change under the caller.
        for m in self.modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Dropout)):
                m.inplace = False

    @property
    def num_classes(self) -> int:
        return self.head.fc.out_features

    @property
    def block_names(self) -> list[str]:
        """Names of ``blocks`` in forward order (the AnB cut points)."""
        return list(self.blocks.keys())

    @property
    def classifier_layer(self) -> nn.Linear:
        """The last Linear (``head.fc``)."""
        return self.head.fc

    def forward(self, x: Tensor) -> Tensor:
        """``x``: images in [0, 1], shape ``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        x = self.normalize(x)
        for block in self.blocks.values():
            x = block(x)
        return self.head(x)

    def features(self, x: Tensor, stages: Sequence[str] | None = None) -> dict[str, Tensor]:
        """One forward pass returning the outputs of ``stages`` (default ``self.stages``; any
        block names are allowed) plus ``"penultimate"`` (pooled vector before dropout and
        ``fc``) and ``"logits"`` (identical to ``forward(x)``)."""
        wanted = self.stages if stages is None else list(stages)
        unknown = [s for s in wanted if s not in self.blocks]
        if unknown:
            raise KeyError(f"unknown block names {unknown}; blocks are {self.block_names}")
        out: dict[str, Tensor] = {}
        x = self.normalize(x)
        for name, block in self.blocks.items():
            x = block(x)
            if name in wanted:
                out[name] = x
        pen = self.head.pooled(x)
        out["penultimate"] = pen
        out["logits"] = self.head.fc(self.head.dropout(pen))
        return out

    def penultimate(self, x: Tensor) -> Tensor:
        """The pooled feature vector that ``head.fc`` reads, shape ``(N, fc.in_features)``."""
        x = self.normalize(x)
        for block in self.blocks.values():
            x = block(x)
        return self.head.pooled(x)

    def reset_head(self, num_classes: int) -> nn.Linear:
        """Replace ``head.fc`` by a freshly initialised Linear with ``num_classes`` outputs (same
        input width, device and dtype); returns the new layer."""
        old = self.head.fc
        self.head.fc = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                                 device=old.weight.device, dtype=old.weight.dtype)
        return self.head.fc

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}, stages={self.stages}"


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


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


def _wrap_cifar_resnet(net: CifarResNet, arch: str, mean, std) -> Classifier:
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
def _wrap_torchvision(net: nn.Module, arch: str, mean, std) -> Classifier:
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


def _torchvision_net(arch: str, num_classes: int) -> nn.Module:
    import torchvision.models as tvm

    return getattr(tvm, arch)(weights=None, num_classes=num_classes)


def torchvision_weights(arch: str, tag: str = "IMAGENET1K_V1"):
    """The torchvision ``Weights`` enum member for ``arch`` (e.g. ``ResNet18_Weights.IMAGENET1K_V1``)."""
    import torchvision.models as tvm

    if arch not in _TV_WEIGHTS:
        raise ValueError(f"no torchvision ImageNet weights for {arch!r}; choose from {TORCHVISION_ARCHS}")
    return getattr(getattr(tvm, _TV_WEIGHTS[arch]), tag)


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


# --------------------------------------------------------------------------------------------
# Loading state dicts
# --------------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``; unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and
    strips the ``module.`` prefix that DataParallel checkpoints carry."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper_key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper_key), Mapping):
            obj = obj[wrapper_key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _safetensors_head_classes(path: Path) -> int | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_slice(_HEAD_KEY).get_shape()[0] if _HEAD_KEY in f.keys() else None


def _is_wrapped(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("blocks.", "head.", "normalize.")) for k in state)


def build(arch: str, num_classes: int, pretrained: bool | str | Path = False, *,
          weights: str = "IMAGENET1K_V1", mean: Sequence[float] = IMAGENET_MEAN,
          std: Sequence[float] = IMAGENET_STD, seed: int | None = None, **kw) -> Classifier:
    """Build ``arch`` (one of :data:`ARCHS`) as a :class:`Classifier` with ``num_classes`` outputs.

    ``seed``: draw the random initial weights from ``torch.manual_seed(seed)`` inside a forked
    RNG (the global RNG is left as it was); None uses the global RNG as it stands, so the weights
    then depend on whatever the process drew before.

    ``pretrained``:
      * ``False``: random initialisation.
      * ``True`` (torchvision archs only): ImageNet weights ``weights`` (a torchvision Weights tag,
        default ``IMAGENET1K_V1``) from the local hub cache, see :func:`pretrained_path`; raises
        :class:`PretrainedWeightsMissing` when the file is absent. Never downloads.
      * a path: a ``.safetensors`` file saved from a :class:`Classifier` (loaded with
        ``lib.store.load_weights``), or a torch file read with ``weights_only=True`` holding either
        a :class:`Classifier` state dict or the architecture's own layout (torchvision keys; the
        ``conv1/bn1/layerK/linear`` CIFAR-ResNet keys; optional ``state_dict`` wrapper and
        ``module.`` prefixes).
    Loading is strict. The checkpoint's head is kept when it has ``num_classes`` outputs and
    replaced by a fresh Linear otherwise. ``mean``/``std`` set the Normalize layer (a wrapped
    checkpoint's own buffers win). Extra ``kw`` go to :func:`small_cnn` (``width``, ``pools``, ...).
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(arch, num_classes, pretrained, weights=weights, mean=mean, std=std, **kw)
    arch = arch.lower()
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")
    if kw and arch != "small_cnn":
        raise TypeError(f"unexpected options for {arch}: {sorted(kw)}")

    path: Path | None = None
    if pretrained is True:
        if arch not in TORCHVISION_ARCHS:
            raise ValueError(f"{arch} has no ImageNet weights; pass the path of a checkpoint instead")
        path = pretrained_path(arch, weights)
        if not path.is_file():
            url = torchvision_weights(arch, weights).url
            raise PretrainedWeightsMissing(
                f"Pretrained {arch} weights ({weights}) are not in the local torch cache.\n"
                f"Place the file at: {path}\n"
                f"On a machine with internet access, download it from: {url}\n"
                f"(e.g. `curl -L -o {path.name} {url}`), then copy it to the path above. "
                f"Set TORCH_HOME to use another cache directory.")
    elif pretrained:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file at {path}")

    raw_state = wrapped_state = None
    head_classes = num_classes  # how many outputs the checkpoint's head has
    if path is not None and path.suffix == ".safetensors":
        head_classes = _safetensors_head_classes(path) or num_classes
    elif path is not None:
        state = _read_state_dict(path)
        if _is_wrapped(state) or arch == "small_cnn":
            wrapped_state = state
            if _HEAD_KEY in state:
                head_classes = state[_HEAD_KEY].shape[0]
        else:
            raw_state = remap_densenet_keys(state) if arch == "densenet121" else state
            key = _RAW_HEAD_KEY[arch]
            if key not in raw_state:
                raise KeyError(f"{path} is not a {arch} state dict (no {key!r})")
            head_classes = raw_state[key].shape[0]

    if arch == "small_cnn":
        model = small_cnn(head_classes, mean=mean, std=std, **kw)
    else:
        if arch in CIFAR_RESNETS:
            net = CifarResNet(int(arch[len("resnet"):]), head_classes)
        else:
            net = _torchvision_net(arch, head_classes)
        if raw_state is not None:
            net.load_state_dict(raw_state, strict=True)
        wrap = _wrap_cifar_resnet if arch in CIFAR_RESNETS else _wrap_torchvision
        model = wrap(net, arch, mean, std)

    if wrapped_state is not None:
        model.load_state_dict(wrapped_state, strict=True)
    elif path is not None and path.suffix == ".safetensors":
        from lib.store import load_weights  # lazy: lib.store imports heavier things

        load_weights(model, path, strict=True)
    if model.num_classes != num_classes:
        model.reset_head(num_classes)
    return model


def load_cifar_resnet20(path: str | Path, num_classes: int = 10) -> Classifier:
    """The shared CIFAR-10 ResNet-20 (``{"state_dict": {"module.conv1.weight", ...}}``), loaded
    with strict keys; trained on ImageNet-normalised [0,1] inputs, which is the default here.
    With ``num_classes != 10`` the CIFAR-10 head is replaced by a fresh one."""
    return build("resnet20", num_classes, pretrained=path)
