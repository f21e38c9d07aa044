"""The network every continual learner here trains: a VGG-style body whose shared weights carry
an integer owner each, with one head, one set of BatchNorm parameters and statistics, and (for
CPG) one binary *pick* mask per task.

What lives where (all of it in the state dict, so a model saved to the store is the model):

- **Owners**: one ``uint8`` tensor per shared weight (every conv, the 1x1 "fully connected"
  convs included), kept with :meth:`Classifier.set_mask` under the weight's name; 0 = free, k =
  task k. Heads and BatchNorm are not shared, so they have no owners.
- **Heads**: ``heads["task<k>"]`` (:meth:`Classifier.add_head`).
- **Per-task BatchNorm**: the simplest correct way is to keep one snapshot per task of every BN
  module's ``weight, bias, running_mean, running_var`` as buffers of ``task_state`` and to copy
  task k's snapshot into the BN modules before the model is used for task k (CPG's
  ``shared_layer_info`` does the same). The live BN modules only ever hold the task being
  trained; a task's view (:meth:`TaskNet.task_model`) is a separate plain model, so nothing
  has to be swapped back.
- **Pick masks** (CPG): ``task_state`` buffer ``t<k>__pick__<weight>`` (bool): which weights of
  earlier tasks task k reuses. While task k trains, its real-valued mask is a parameter
  ``pick`` of the :class:`SharedConv2d` (see :mod:`lib.continual.cpg`).

Task k's function (:meth:`TaskNet.task_model`): every shared weight with owner 1..k, times task
k's pick mask on the weights of tasks < k; task k's BN; head ``task<k>``. Weights of later tasks
and free weights are zero in that view, so a later task (or growth) cannot change it.

Growing (:meth:`TaskNet.grow`) widens every layer by a factor: old weights are copied into the
top-left slice, new weights get a fresh Kaiming initialisation and owner 0 (free), new BN
channels the identity, and existing heads zero weights on the new channels, so every earlier
task computes exactly what it computed before. :meth:`TaskNet.load_state_dict` resizes the body
to the saved widths and creates the saved heads and task state first, so a grown model saved to
the store loads into a freshly built one.

The body is CPG's ``custom_vgg_cifar100`` pattern (conv3x3 without bias, BN, ReLU, max-pools
between stages, then 1x1 convs for the fully connected layers on the 1x1 map); the full profile
uses VGG-16-BN's configuration (:data:`VGG16`), the smoke profile a four-conv version.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Sequence

import torch
from torch import Tensor, nn

from ..models.classifier import IMAGENET_MEAN, IMAGENET_STD, Classifier, Head

VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
VGG16_FC = (4096, 4096)
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
PICK_THRESHOLD = 5e-3  # CPG's binariser threshold (models/layers.py DEFAULT_THRESHOLD)


def _key(name: str) -> str:
    return name.replace(".", "__")


def binarize_ste(mask: Tensor, threshold: float = PICK_THRESHOLD) -> Tensor:
    """``1[mask > threshold]`` in the forward pass, identity gradient in the backward pass (the
    straight-through estimator of CPG / Piggyback). ``mask - mask.detach()`` is exactly zero, so
    the forward value is exactly 0 or 1."""
    return (mask > threshold).to(mask.dtype) + (mask - mask.detach())


class SharedConv2d(nn.Conv2d):
    """A conv whose weight may be multiplied by a task's binarised pick mask (CPG's
    ``SharableConv2d``). ``pick`` (a parameter, or None) is the real-valued mask; ``pickable``
    (bool, same shape) says where it applies (weights of earlier tasks); elsewhere the factor is 1."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.pick: nn.Parameter | None = None
        self.pickable: Tensor | None = None
        self.threshold = PICK_THRESHOLD

    def effective_weight(self) -> Tensor:
        if self.pick is None:
            return self.weight
        return self.weight * torch.where(self.pickable, binarize_ste(self.pick, self.threshold),
                                         torch.ones_like(self.pick))

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class TaskNet(Classifier):
    """A :class:`Classifier` for task-incremental learning; see the module docstring."""

    def __init__(self, cfg: Sequence, fc: Sequence[int], num_classes: int, width: float = 1.0,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.cfg, self.fc_cfg, self.width = list(cfg), list(fc), float(width)
        blocks, out = self._blocks(self._channels(self.width))
        super().__init__("task_vgg", blocks, Head(nn.Linear(out, num_classes)), list(blocks)[-1:], mean, std)
        self.task_state = nn.Module()  # per-task BN snapshots and pick masks (buffers)
        self._free_owners()
        self.build_args = {"arch": "task_vgg", "cfg": self.cfg, "fc": self.fc_cfg, "num_classes": num_classes,
                           "width": self.width, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}

    # ------------------------------------------------------------------ structure
    def _channels(self, width: float) -> list[int]:
        """Output channels of every shared layer (convs, then fc) at ``width``."""
        return [max(1, round(c * width)) for c in [*(c for c in self.cfg if c != "M"), *self.fc_cfg]]

    def _blocks(self, chans: list[int]):
        blocks, c_in, i = OrderedDict(), 3, 0
        cfg = list(self.cfg)
        for j, c in enumerate(cfg):
            if c == "M":
                continue
            layers = OrderedDict(conv=SharedConv2d(c_in, chans[i], 3, padding=1, bias=False),
                                 bn=nn.BatchNorm2d(chans[i]), relu=nn.ReLU())
            if j + 1 < len(cfg) and cfg[j + 1] == "M":
                layers["pool"] = nn.MaxPool2d(2)
            blocks[f"conv{i + 1}"] = nn.Sequential(layers)
            nn.init.kaiming_normal_(layers["conv"].weight, mode="fan_out", nonlinearity="relu")
            c_in, i = chans[i], i + 1
        for j in range(len(self.fc_cfg)):  # CPG's fully connected layers as 1x1 convs on the 1x1 map
            conv = SharedConv2d(c_in, chans[i], 1, bias=False)
            nn.init.normal_(conv.weight, 0, 0.01)
            blocks[f"fc{j + 1}"] = nn.Sequential(OrderedDict(conv=conv, relu=nn.ReLU()))
            c_in, i = chans[i], i + 1
        return blocks, c_in

    def _free_owners(self) -> None:
        self.masks = nn.Module()
        for name, conv in self.shared_layers().items():
            self.set_mask(name, torch.zeros(conv.weight.shape, dtype=torch.uint8))

    def shared_layers(self) -> dict[str, SharedConv2d]:
        """``{weight name: conv}`` of every shared layer, in forward order."""
        return {f"blocks.{b}.conv.weight": blk.conv for b, blk in self.blocks.items()}

    def bn_layers(self) -> dict[str, nn.BatchNorm2d]:
        return {f"blocks.{b}.bn": blk.bn for b, blk in self.blocks.items() if hasattr(blk, "bn")}

    @property
    def channels(self) -> list[int]:
        return [c.out_channels for c in self.shared_layers().values()]

    # ------------------------------------------------------------------ tasks
    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def check_task(self, task: int) -> int:
        """``task`` as an int if this model has learnt it, else one clear error."""
        if not isinstance(task, (int,)) or isinstance(task, bool) or not 1 <= task <= self.num_tasks:
            raise KeyError(f"unknown task id {task!r}: this model has learnt tasks 1..{self.num_tasks} "
                           f"(task ids start at 1; 0 means a free weight)")
        return task

    def owners(self, name: str) -> Tensor:
        """The owner tensor of shared weight ``name`` (uint8; a fresh model's are all 0, free)."""
        m = self.get_mask(name)
        if m is None:
            raise KeyError(f"{name!r} is not a shared weight; shared weights are {list(self.shared_layers())}")
        return m

    def set_owners(self, name: str, owners: Tensor) -> None:
        self.set_mask(name, owners.to(torch.uint8))

    def add_task(self, num_classes: int, seed: int | None = None) -> int:
        """Start task ``num_tasks + 1``: a fresh head (seeded if ``seed`` is given) made active.
        The live BN modules keep their current values as the new task's starting point."""
        k = self.num_tasks + 1
        if k > 255:
            raise ValueError("owners are uint8: at most 255 tasks")
        if seed is None:
            self.add_head(f"task{k}", num_classes)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.add_head(f"task{k}", num_classes)
        self.active_head = f"task{k}"
        return k

    def _put(self, key: str, value: Tensor) -> None:
        value = value.detach().clone()
        if key in self.task_state._buffers:
            self.task_state._buffers[key] = value
        else:
            self.task_state.register_buffer(key, value)

    def save_bn(self, task: int) -> None:
        """Snapshot the live BN modules as task ``task``'s BN."""
        for name, bn in self.bn_layers().items():
            for f in BN_FIELDS:
                self._put(f"t{task}__bn__{_key(name)}__{f}", getattr(bn, f))

    def load_bn(self, task: int, module: nn.Module | None = None) -> None:
        """Copy task ``task``'s BN snapshot into ``module``'s BN layers (default: this model's)."""
        self.check_task(task)
        target = dict((module or self).named_modules())
        with torch.no_grad():
            for name in self.bn_layers():
                bn = target[name]
                for f in BN_FIELDS:
                    getattr(bn, f).copy_(self.task_state._buffers[f"t{task}__bn__{_key(name)}__{f}"])

    def set_pick(self, task: int, name: str, picked: Tensor) -> None:
        self._put(f"t{task}__pick__{_key(name)}", picked.to(torch.bool))

    def get_pick(self, task: int, name: str) -> Tensor | None:
        return self.task_state._buffers.get(f"t{task}__pick__{_key(name)}")

    def task_keep(self, task: int, name: str) -> Tensor:
        """Where task ``task`` uses shared weight ``name``: owners 1..task, and of the weights of
        earlier tasks only those its pick mask chose (all of them without a pick mask)."""
        own = self.owners(name)
        keep = (own >= 1) & (own <= task)
        picked = self.get_pick(task, name)
        return keep & (picked | (own == task)) if picked is not None else keep

    def task_weight(self, task: int, name: str) -> Tensor:
        """Shared weight ``name`` as task ``task`` uses it (:meth:`task_keep`), zero elsewhere."""
        w = self.get_parameter(name).detach()
        return torch.where(self.task_keep(task, name).to(w.device), w, torch.zeros_like(w))

    def task_model(self, task: int) -> Classifier:
        """A plain eval-mode :class:`Classifier` computing task ``task`` exactly as this model
        does for it (see the module docstring); what every attack and metric is run on."""
        task = self.check_task(task)
        blocks = copy.deepcopy(self.blocks)
        head = copy.deepcopy(self.heads[f"task{task}"])
        net = Classifier(self.arch, blocks, head, self.stages, self.normalize.mean.flatten().tolist(),
                         self.normalize.std.flatten().tolist()).to(self.head.fc.weight.device)
        with torch.no_grad():
            for name in self.shared_layers():
                conv = net.get_submodule(name.rsplit(".", 1)[0])
                conv.pick, conv.pickable = None, None
                conv.weight.copy_(self.task_weight(task, name))
        self.load_bn(task, net)
        for p in net.parameters():
            p.requires_grad_(False)
        return net.eval()

    # ------------------------------------------------------------------ growth
    def _resize(self, chans: list[int]) -> None:
        """Replace the body's layers by fresh ones with ``chans`` output channels and every
        head's Linear by one reading ``chans[-1]`` features (values are the caller's to set)."""
        blocks, out = self._blocks(chans)
        dev = self.head.fc.weight.device
        for b, blk in blocks.items():
            self.blocks[b] = blk.to(dev)
        for head in [self.head, *self.heads.values()]:
            old = head.fc
            head.fc = nn.Linear(out, old.out_features, device=dev)
        self._free_owners()

    def grow(self, factor: float) -> list[int]:
        """Widen every shared layer by ``factor`` (channels ``ceil(c * factor)``), keeping every
        learnt task's function exactly (see the module docstring); returns the new channels."""
        if factor <= 1:
            raise ValueError(f"grow factor must be > 1, got {factor}")
        old_w = {n: c.weight.detach().clone() for n, c in self.shared_layers().items()}
        old_own = {n: self.owners(n).clone() for n in old_w}
        old_bn = {n: {f: getattr(bn, f).detach().clone() for f in BN_FIELDS} for n, bn in self.bn_layers().items()}
        old_heads = {h: (m.fc.weight.detach().clone(), m.fc.bias.detach().clone())
                     for h, m in [("head", self.head), *self.heads.items()]}
        chans = [math.ceil(c * factor) for c in self.channels]
        self.width *= factor
        self._resize(chans)
        with torch.no_grad():
            for n, conv in self.shared_layers().items():
                o, i = old_w[n].shape[:2]
                conv.weight[:o, :i] = old_w[n]
                own = torch.zeros(conv.weight.shape, dtype=torch.uint8)
                own[:o, :i] = old_own[n].cpu()
                self.set_owners(n, own)
            for n, bn in self.bn_layers().items():
                c = old_bn[n]["weight"].numel()
                for f in BN_FIELDS:
                    getattr(bn, f)[:c] = old_bn[n][f]
            for h, (w, b) in old_heads.items():
                fc = self.current_head(h).fc
                fc.weight.zero_()
                fc.weight[:, :w.shape[1]] = w
                fc.bias.copy_(b)
            for key, v in list(self.task_state._buffers.items()):
                t, kind, name = key.split("__", 2)
                if kind == "pick":  # new weights were never picked
                    new = torch.zeros(self.get_parameter(name.replace("__", ".")).shape, dtype=torch.bool)
                    new[:v.shape[0], :v.shape[1]] = v
                else:  # BN of an earlier task: identity on the new channels (their input is zero)
                    bn_key, field = name.rsplit("__", 1)
                    live = getattr(self.get_submodule(bn_key.replace("__", ".")), field)
                    new = torch.ones_like(live) if field in ("weight", "running_var") else torch.zeros_like(live)
                    new[:v.numel()] = v
                self.task_state._buffers[key] = new.to(v.device)
        self.build_args["width"] = self.width
        return chans

    # ------------------------------------------------------------------ saved state
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Resize the body to the saved widths and create the saved task state, heads and owner
        masks, then load (so a grown model with any number of tasks loads into a fresh one)."""
        chans = [state_dict[n].shape[0] for n in self.shared_layers() if n in state_dict]
        if len(chans) == len(self.channels) and chans != self.channels:
            self._resize(chans)
        dev = self.head.fc.weight.device
        for key, value in state_dict.items():
            if key.startswith("task_state.") and key[len("task_state."):] not in self.task_state._buffers:
                self.task_state.register_buffer(key[len("task_state."):], torch.empty_like(value, device=dev))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def task_vgg(cfg: Sequence = VGG16, fc: Sequence[int] = VGG16_FC, num_classes: int = 5, width: float = 1.0, *,
             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
             seed: int | None = None) -> TaskNet:
    """A :class:`TaskNet` with conv configuration ``cfg`` (channel counts and ``"M"`` max-pools),
    1x1 "fully connected" layers ``fc`` and every width scaled by ``width``. Defaults: CPG's
    VGG-16-BN for 32-px CIFAR (``VGG16``, ``VGG16_FC``). ``seed`` seeds the initial weights (in a
    forked RNG). The default ``head`` has ``num_classes`` outputs and is not used by any task."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TaskNet(cfg, fc, num_classes, width, mean, std)
    return TaskNet(cfg, fc, num_classes, width, mean, std)
