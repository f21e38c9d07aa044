"""The model wrapper every notebook uses: ``normalize -> blocks -> head``.

Because normalisation happens inside the model, attack budgets (epsilon, step size) are in
pixel units and attacks never need to know the dataset statistics.

*Blocks* are the units of Yosinski et al.'s AnB transfer: each is an ``nn.Module`` in the
ordered ``model.blocks`` ``ModuleDict`` that maps one feature map to the next. *Stages*
(``model.stages``) are the block names whose outputs are the per-resolution feature maps used
for feature distillation and Grad-CAM. :meth:`Classifier.walk` is the one loop over the
blocks (with start/stop and a per-block callback); ``forward``, ``features`` and every method
that needs intermediate maps go through it.

The *head* is global average pooling, flatten, optional dropout and a Linear ``head.fc``.
Extra named heads (one per task in task-incremental continual learning) live in ``heads``.

Saved state beyond parameters and buffers (so a model loaded from the store is the model that
was saved): which modules are frozen (:func:`freeze`, kept as the module's extra state), named
weight masks (:meth:`Classifier.set_mask`, buffers under ``masks``) and extra heads.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def freeze(module: nn.Module, frozen: bool = True) -> nn.Module:
    """Freeze (or unfreeze) a module: no gradients, and eval mode kept during training
    (:func:`train_mode`), so its BatchNorm statistics do not drift. Saved with a
    :class:`Classifier`'s state."""
    for p in module.parameters():
        p.requires_grad_(not frozen)
    for m in module.modules():
        m._workbook_frozen = frozen
    return module


def is_frozen(module: nn.Module) -> bool:
    return bool(getattr(module, "_workbook_frozen", False))


def train_mode(model: nn.Module) -> None:
    """``model.train()`` except for modules marked by :func:`freeze`, which stay in eval mode."""
    model.train()
    for m in model.modules():
        if is_frozen(m):
            m.eval()


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
        def fmt(t):
            return "(" + ", ".join(f"{v:.4g}" for v in t.flatten().tolist()) + ")"
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


def _mask_key(param: str) -> str:
    return param.replace(".", "__")


class Classifier(nn.Module):
    """``normalize -> blocks (in order) -> head``; see the module docstring for the terms.

    Attributes: ``arch`` (builder name), ``num_classes`` (of the active head), ``stages``
    (feature-map block names), ``normalize``, ``blocks`` (ordered ``ModuleDict``), ``head``
    (its Linear is ``head.fc``), ``heads`` (extra named heads), ``masks`` (named weight masks),
    ``build_args`` (the :func:`lib.models.build` arguments that made it; set by ``build``).
    """

    def __init__(self, arch: str, blocks: Mapping[str, nn.Module], head: Head,
                 stages: Sequence[str], mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.arch = arch
        self.normalize = Normalize(mean, std)
        self.blocks = nn.ModuleDict(OrderedDict(blocks))
        self.head = head
        self.heads = nn.ModuleDict()
        self.masks = nn.Module()  # buffers named after the parameter they mask ('.' -> '__')
        self.active_head: str | None = None
        self.build_args: dict | None = None
        unknown = [s for s in stages if s not in self.blocks]
        if unknown:
            raise ValueError(f"stages {unknown} are not block names {self.block_names}")
        self.stages = list(stages)
        # Out-of-place activations everywhere: in-place ReLUs break module backward hooks
        # (captum's guided methods) and make hooked feature maps change under the caller.
        for m in self.modules():
            if isinstance(m, (nn.ReLU, nn.ReLU6, nn.Dropout)):
                m.inplace = False

    # ------------------------------------------------------------------ structure
    @property
    def num_classes(self) -> int:
        return self.current_head().fc.out_features

    @property
    def block_names(self) -> list[str]:
        """Names of ``blocks`` in forward order (the AnB cut points)."""
        return list(self.blocks.keys())

    @property
    def classifier_layer(self) -> nn.Linear:
        """The last Linear of the active head."""
        return self.current_head().fc

    def current_head(self, name: str | None = None) -> Head:
        """Head ``name``; ``None``: the active one (``active_head``, else the default ``head``)."""
        name = self.active_head if name is None else name
        if name is None or name == "head":
            return self.head
        if name not in self.heads:
            raise KeyError(f"no head {name!r}; heads are {['head', *self.heads]}")
        return self.heads[name]

    def add_head(self, name: str, num_classes: int) -> Head:
        """A new named head (same input width as ``head``, freshly initialised Linear)."""
        fc = self.head.fc
        self.heads[name] = Head(nn.Linear(fc.in_features, num_classes, device=fc.weight.device,
                                          dtype=fc.weight.dtype))
        return self.heads[name]

    # ------------------------------------------------------------------ forward passes
    def walk(self, x: Tensor, *, start: str | None = None, stop: str | None = None,
             each: Callable[[str, Tensor], Tensor | None] | None = None) -> Tensor:
        """Run the blocks from ``start`` through ``stop`` (inclusive) and return the last output.

        ``start=None`` normalises ``x`` (images in [0, 1]) and begins at the first block; a block
        name means ``x`` is the input of that block (a feature map). ``stop=None`` runs to the
        last block. ``each(name, h)`` is called after every block; if it returns a tensor, that
        replaces ``h`` for the following blocks (e.g. dropout after a stage).
        """
        names = self.block_names
        for n in (start, stop):
            if n is not None and n not in self.blocks:
                raise KeyError(f"unknown block {n!r}; blocks are {names}")
        i0 = 0 if start is None else names.index(start)
        i1 = len(names) - 1 if stop is None else names.index(stop)
        h = self.normalize(x) if start is None else x
        for name in names[i0:i1 + 1]:
            h = self.blocks[name](h)
            if each is not None:
                new = each(name, h)
                h = h if new is None else new
        return h

    def forward(self, x: Tensor, head: str | None = None) -> Tensor:
        """``x``: images in [0, 1], shape ``(N, C, H, W)`` -> logits of head ``head`` (default:
        the active head)."""
        return self.current_head(head)(self.walk(x))

    def features(self, x: Tensor, stages: Sequence[str] | None = None, *,
                 logits: bool = True) -> dict[str, Tensor]:
        """One forward pass returning the outputs of ``stages`` (default ``self.stages``; any
        block names are allowed) plus, with ``logits``, ``"penultimate"`` (pooled vector before
        dropout and ``fc``) and ``"logits"`` (identical to ``forward(x)``). ``logits=False``
        stops after the last requested block."""
        wanted = self.stages if stages is None else list(stages)
        unknown = [s for s in wanted if s not in self.blocks]
        if unknown:
            raise KeyError(f"unknown block names {unknown}; blocks are {self.block_names}")
        out: dict[str, Tensor] = {}

        def tap(name, h):
            if name in wanted:
                out[name] = h

        last = None if logits else max(wanted, key=self.block_names.index)
        h = self.walk(x, stop=last, each=tap)
        if logits:
            head = self.current_head()
            out["penultimate"] = pen = head.pooled(h)
            out["logits"] = head.fc(head.dropout(pen))
        return out

    def penultimate(self, x: Tensor) -> Tensor:
        """The pooled feature vector that the head's ``fc`` reads, shape ``(N, fc.in_features)``."""
        return self.current_head().pooled(self.walk(x))

    def reset_head(self, num_classes: int) -> nn.Linear:
        """Replace ``head.fc`` by a freshly initialised Linear with ``num_classes`` outputs (same
        input width, device and dtype); returns the new layer."""
        old = self.head.fc
        self.head.fc = nn.Linear(old.in_features, num_classes, bias=old.bias is not None,
                                 device=old.weight.device, dtype=old.weight.dtype)
        return self.head.fc

    # ------------------------------------------------------------------ masks
    def set_mask(self, param: str, mask: Tensor) -> None:
        """Keep ``mask`` (same shape as parameter ``param``, any dtype: binary or integer owners)
        with the model; saved and loaded with its state dict."""
        p = self.get_parameter(param)
        if tuple(mask.shape) != tuple(p.shape):
            raise ValueError(f"mask for {param} has shape {tuple(mask.shape)}, parameter {tuple(p.shape)}")
        key = _mask_key(param)
        if key in self.masks._buffers:
            self.masks._buffers[key] = mask.detach().to(p.device)
        else:
            self.masks.register_buffer(key, mask.detach().to(p.device))

    def get_mask(self, param: str) -> Tensor | None:
        return self.masks._buffers.get(_mask_key(param))

    def mask_items(self) -> dict[str, Tensor]:
        """``{parameter name: mask}`` of every stored mask."""
        return {k.replace("__", "."): v for k, v in self.masks._buffers.items()}

    # ------------------------------------------------------------------ saved state
    def get_extra_state(self) -> Tensor:
        # one byte per module (in ``modules()`` order): frozen or not
        return torch.tensor([is_frozen(m) for m in self.modules()], dtype=torch.uint8)

    def set_extra_state(self, state) -> None:
        flags = torch.as_tensor(state).tolist()
        mods = list(self.modules())
        if len(flags) != len(mods):
            raise ValueError(f"saved frozen flags cover {len(flags)} modules, the model has {len(mods)}")
        for m, f in zip(mods, flags):
            if bool(f) != is_frozen(m):
                m._workbook_frozen = bool(f)
                for p in m.parameters(recurse=False):
                    p.requires_grad_(not f)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, creating first the extra heads and mask buffers that
        ``state_dict`` holds and this model lacks (so a model saved after ``add_head`` or
        ``set_mask`` loads into a freshly built one)."""
        fc = self.head.fc
        for key, value in state_dict.items():
            if key.startswith("heads.") and key.endswith(".fc.weight"):
                name = key[len("heads."):-len(".fc.weight")]
                if name not in self.heads:
                    self.add_head(name, value.shape[0])
            elif key.startswith("masks.") and key[len("masks."):] not in self.masks._buffers:
                self.masks.register_buffer(key[len("masks."):], torch.empty_like(value, device=fc.weight.device))
        flags = state_dict.get("_extra_state")
        if flags is None or (not strict and len(flags) != len(list(self.modules()))):
            # checkpoints from before frozen flags were saved, or (non-strict) of another structure
            state_dict = {**state_dict, "_extra_state": self.get_extra_state()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}, stages={self.stages}"


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
