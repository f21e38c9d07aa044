"""One training loop (``fit``) and one evaluation loop (``evaluate``) for every notebook.

- Device: CUDA when present (``pick_device``); on CUDA, bf16 autocast and channels-last by default;
  on the CPU channels-last (fp32) by default, bf16 opt-in where native (``amp="auto"``).
- Processes: under ``torchrun`` each process trains on its slice of every global batch with the
  gradients averaged (:mod:`lib.distributed`); one process runs exactly as before.
- Data: an :class:`~lib.data.ImageSet` (or an ``(images, labels)`` tensor pair) is moved to the
  device once, as uint8 when it fits, and batched by indexing: no DataLoader, no per-batch
  host-to-device copies. Any other ``Dataset`` goes through a ``DataLoader`` with workers.
- Hooks: ``batch_hook(model, x, y) -> (x, y)`` replaces each training batch after augmentation
  (adversarial training is this loop with an attack as the hook); ``loss(model, x, y)`` replaces
  the cross-entropy objective (distillation, TRADES, L2-SP) and may return ``(loss, logits)``.
  A ``loss`` may also return ``(loss, logits, extras)``: ``extras`` (name -> scalar tensor) are
  averaged over the epoch into the history row without a device sync per batch.
- Weight edits: ``after_backward(model)`` runs between ``backward`` and the optimiser step (mask
  or edit gradients), ``after_step(model)`` after it (re-apply masks, clamp weights);
  :class:`FixedWeights` uses both to keep masked weights bit-identical.
- Modules marked with :func:`freeze` keep ``requires_grad=False`` and stay in eval mode (their
  BatchNorm statistics do not drift) while the rest of the model trains.
"""
from __future__ import annotations

import functools
import math
import os
import random
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import checkpoints, distributed
from .data.datalike import check_datalike, tensor_pair
from .metrics import accuracy
from .models.classifier import freeze, train_mode  # noqa: F401  (re-exported: lib.train.freeze)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ----------------------------------------------------------------------------- data on device
class Batches:
    """Batches of float images in [0,1] and labels, on ``device``.

    Tensor data (``ImageSet`` or ``(x, y)``) is copied to the device once (uint8 stays uint8 until
    the batch is taken). ``Dataset`` objects are read through a ``DataLoader``.
    """

    def __init__(self, data, batch_size: int, device: torch.device, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, num_workers: int | None = None):
        self.batch_size, self.device, self.shuffle = batch_size, device, shuffle
        self.seed, self.drop_last = seed, drop_last
        self.epoch = 0
        self.loader = None
        check_datalike(data)
        pair = tensor_pair(data)
        if pair is not None:
            x, y = pair
            self.x, self.y = self._to_device(x), y.to(device, non_blocking=True).long()
        else:
            workers = num_workers if num_workers is not None else min(4, max(0, (torch.get_num_threads() or 1) - 1))
            g = torch.Generator().manual_seed(seed)
            self.loader = DataLoader(data, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                     num_workers=workers, pin_memory=device.type == "cuda", generator=g,
                                     persistent_workers=workers > 0)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            if x.numel() * x.element_size() > 0.4 * free:
                return x  # too big to hold: batches are copied over one by one
        return x.to(self.device, non_blocking=True)

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        if self.loader is not None:
            for x, y in self.loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            return
        n = len(self.y)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
        else:
            order = None
        self.epoch += 1
        for i in range(len(self)):
            sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            x, y = self.x[idx], self.y[idx.to(self.y.device) if order is not None else idx]
            x = x.to(self.device, non_blocking=True)
            yield (x.float().div_(255) if x.dtype == torch.uint8 else x.float()), y


def random_translate(pad: int = 4, flip: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batched augmentation on the device: random shifts of up to ``pad`` px (reflect padding),
    optional horizontal flips (off by default: arrows and traffic signs are not mirror-symmetric)."""

    def augment(x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device)
        rows = (torch.arange(h, device=x.device)[None, :, None] + dy).expand(n, h, w)
        cols = (torch.arange(w, device=x.device)[None, None, :] + dx).expand(n, h, w)
        if flip:
            f = torch.rand(n, 1, 1, device=x.device) < 0.5
            cols = torch.where(f, (2 * pad + w - 1) - cols, cols)
        b = torch.arange(n, device=x.device)[:, None, None]
        return xp.permute(0, 2, 3, 1)[b, rows, cols].permute(0, 3, 1, 2).contiguous()

    return augment


# ----------------------------------------------------------------------------- fit / evaluate
def _cross_entropy(model, x, y):
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def _unpack(out) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """A loss's return value as ``(loss, logits or None, extras)``."""
    if not isinstance(out, tuple):
        return out, None, {}
    if len(out) == 2:
        return out[0], out[1], {}
    return out[0], out[1], dict(out[2])


def _optimizer(name: str, params, lr, momentum, weight_decay):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be sgd, adam or adamw, got {name!r}")


def _scheduler(name, opt, lr, total_steps):
    if name in (None, "constant"):
        return None
    if name == "onecycle":
        max_lr = [g["lr"] for g in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps, pct_start=0.25)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    if name is not None and name.split(":")[0] == "piecewise":
        # lr x 0.1 at each fraction of training: "piecewise" = at 50% and 75% (Madry et al. / Rice et al.:
        # epochs 100 and 150 of 200); "piecewise:0.97368" = after 74 of 76 epochs (the TRADES script's
        # `if epoch >= 75` with epochs counted from 1)
        fractions = [float(f) for f in name.split(":")[1].split(",")] if ":" in name else [0.5, 0.75]
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[round(f * total_steps) for f in fractions],
                                                    gamma=0.1)
    if name == "cyclic":  # Wong et al. 2020 (train_fgsm.py's CyclicLR): linear 0 -> lr at half the steps -> 0
        peak = max(1, total_steps // 2)
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: t / peak if t < peak else max(0.0, (total_steps - t) / max(1, total_steps - peak)))
    raise ValueError(f"schedule must be onecycle, cosine, piecewise[:f1,f2,...], cyclic or None, got {name!r}")


@functools.lru_cache(maxsize=None)
def cpu_bf16_supported() -> bool:
    """True when this CPU runs bf16 natively (AVX-512 BF16 or AMX tiles, through oneDNN).

    Elsewhere (AVX2, ARM without bf16) autocast still works but is emulated and slower than fp32,
    so ``fit(amp="auto")`` keeps fp32 there. ``WORKBOOK_CPU_BF16=0``/``1`` overrides the check."""
    forced = os.environ.get("WORKBOOK_CPU_BF16", "")
    if forced in ("0", "1"):
        return forced == "1"
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch's own CPUID probes
    native = any(getattr(cpu, name, lambda: False)() for name in checks)
    return bool(native and torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(device: torch.device, amp, channels_last) -> tuple[bool, bool]:
    """``(amp, channels_last)`` for ``fit``. ``amp``: ``None`` means on for CUDA, off for CPU (the
    default: bf16 cost the smoke recipes 1.5-1.9 points on the CPU); ``"auto"`` also turns it on
    for a CPU that runs bf16 natively (:func:`cpu_bf16_supported`). ``channels_last``: ``None`` or
    ``"auto"`` means on for CUDA and for a CPU whose convolutions run through oneDNN (fp32 there:
    the same arithmetic in another order, within 1 point on the smoke recipes, 1.35-1.6x per
    step). A bool is taken as given (``amp=True`` on a CPU without native bf16 runs emulated bf16)."""
    cpu_layout = device.type == "cpu" and torch.backends.mkldnn.is_available()

    def one(value, name, cpu_default, cpu_auto):
        if value is None:
            return device.type == "cuda" or cpu_default
        if value == "auto":
            return device.type == "cuda" or cpu_auto
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be True, False, None or 'auto', got {value!r}")
    bf16 = device.type == "cpu" and cpu_bf16_supported() if amp == "auto" else False
    return one(amp, "amp", False, bf16), one(channels_last, "channels_last", cpu_layout, cpu_layout)


@contextmanager
def channels_last_while(model: nn.Module):
    """Hold ``model`` in channels-last memory layout inside the block, then give it back the
    layout it had; yields whether inputs should be made channels-last too (the model has 4-D
    weights; a model already channels-last, as inside ``fit``, is left as it is).

    What for: training (:func:`fit`), attacks and evaluation (:func:`predict`,
    :func:`lib.evaluate.craft`). The arithmetic stays fp32, in another summation order. The layout
    is put back because code that views weights as flat (``view(-1)``) needs contiguous weights."""
    convs = [p for p in model.parameters() if p.dim() == 4]
    switch = bool(convs) and not all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    if switch:
        model.to(memory_format=torch.channels_last)
    try:
        yield bool(convs)
    finally:
        if switch:
            model.to(memory_format=torch.contiguous_format)


def as_channels_last(x: torch.Tensor, on: bool) -> torch.Tensor:
    """``x`` in channels-last layout when ``on`` and it is a batch of images (4-D)."""
    return x.contiguous(memory_format=torch.channels_last) if on and x.dim() == 4 else x


def _autocast(device: torch.device, amp: bool):
    if amp and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def fit(model: nn.Module, train, *, epochs: int = 5, lr: float = 0.05, batch_size: int = 128,
        optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 5e-4,
        schedule: str | None = "onecycle", params=None, val=None,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        batch_hook: Callable | None = None, loss: Callable | None = None,
        on_epoch_end: Callable[[int, dict, nn.Module], bool | None] | None = None,
        after_backward: Callable[[nn.Module], None] | None = None,
        after_step: Callable[[nn.Module], None] | None = None,
        device=None, amp: bool | str | None = None, channels_last: bool | str | None = None,
        seed: int = 0, progress: bool = True, desc: str = "fit") -> pd.DataFrame:
    """Train ``model`` in place and return its history (one row per epoch).

    ``params``: parameters or param groups to optimise (default: every parameter that requires
    grad). ``val``: data evaluated after each epoch. ``loss(model, x, y)`` returns the loss,
    ``(loss, logits)`` or ``(loss, logits, extras)``; each extra (a scalar) gets an epoch-mean
    column in the history. ``after_backward(model)`` runs after ``backward`` and before the
    optimiser step; ``after_step(model)`` right after the step (both once per batch).
    ``on_epoch_end(epoch, row, model)`` may add entries to ``row`` (the history row) and may
    return ``True`` to stop early (e.g. catastrophic-overfitting checks). ``amp`` (bf16 autocast
    of the training forward) defaults to on for CUDA, off for CPU (``"auto"``: also on a CPU with
    native bf16); ``channels_last`` to on for CUDA and a oneDNN CPU (:func:`resolve_precision`),
    and the model gets its own layout back at the end. Validation and attacks in ``batch_hook``
    stay fp32 on the CPU.

    Under ``torchrun --nproc_per_node=N`` (:mod:`lib.distributed`), ``batch_size`` stays the
    global batch: each process trains on its ``batch_size / N`` slice of every batch (drawn and
    augmented identically everywhere), gradients are averaged over the processes (DDP for the
    default loss; one all-reduce after ``backward`` for a custom ``loss``, whose several forwards
    DDP cannot carry), BatchNorm buffers follow rank 0, the history's sums cover all processes,
    and only rank 0 shows progress and writes checkpoints. ``batch_hook`` sees the local slice.
    """
    device = distributed.device_for(pick_device(device))
    amp, channels_last = resolve_precision(device, amp, channels_last)
    parallel, main = distributed.launched(), distributed.is_main()
    seed_everything(seed)
    model.to(device)
    # channels-last layout inside the loop (fp32 on the CPU: 1.35-1.6x per step, summation order
    # only), given back afterwards: in-place weight edits through view(-1) need contiguous weights;
    # batches follow only for a model with 4-D weights (one without may view its input as flat)
    with (channels_last_while(model) if channels_last else nullcontext(False)) as channels_last:
        ddp = None
        if parallel:
            distributed.broadcast_module(model)
            ddp = distributed.wrap(model, device) if loss is None else None
        batches = Batches(train, batch_size, device, shuffle=True, seed=seed, drop_last=True)
        if len(batches) == 0:
            raise ValueError(f"{len(train)} training images is fewer than one batch of {batch_size}")
        val_batches = Batches(val, 256, device) if val is not None else None
        params = [p for p in model.parameters() if p.requires_grad] if params is None else params
        opt = _optimizer(optimizer, params, lr, momentum, weight_decay)
        sched = _scheduler(schedule, opt, lr, epochs * len(batches))
        loss_fn = loss or _cross_entropy
        forward_model = ddp if ddp is not None else model
        reduced = [p for g in opt.param_groups for p in g["params"]] if parallel and ddp is None else None
        history = []
        bar = tqdm(total=epochs * len(batches), desc=desc, disable=not progress or not main, mininterval=0.5,
                   dynamic_ncols=True, leave=True)
        # inside Store.model: save each epoch, resume a killed run (lib.checkpoints); a callback with
        # state it cannot save makes this fit start over instead
        ck = checkpoints.current_fit()
        if ck is not None and on_epoch_end is not None and not hasattr(on_epoch_end, "state_dict"):
            ck = None
        first, stopped = 1, False
        state = ck.load() if ck is not None else None
        if state is not None and state["epochs"] == epochs and state["batches"] == len(batches):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None:
                sched.load_state_dict(state["scheduler"])
            if on_epoch_end is not None:
                on_epoch_end.load_state_dict(state["callback"])
            checkpoints.set_rng_state(state["rng"])
            history, first, stopped = list(state["history"]), state["epoch"] + 1, state["stopped"]
            batches.epoch = state["epoch"]
            bar.update(state["epoch"] * len(batches))
            ck.resumed_at(state["epoch"])
            if main:
                print(f"[checkpoint] {desc}: resumed after epoch {state['epoch']} of {epochs} from {ck.path}")
        for epoch in range(first, epochs + 1):
            if stopped:
                break
            train_mode(model)
            t0 = time.perf_counter()
            tot_loss = torch.zeros((), device=device)
            correct = torch.zeros((), device=device)
            seen, have_logits = 0, False
            extra_sums: dict[str, torch.Tensor] = {}
            for x, y in batches:
                if augment is not None:
                    x = augment(x)
                if parallel:
                    x, y = distributed.shard(x), distributed.shard(y)
                x = as_channels_last(x, channels_last)  # before the hook too: its attack runs the model
                if batch_hook is not None:
                    x, y = batch_hook(model, x, y)
                    train_mode(model)  # an attack in the hook may switch to eval mode
                    x = as_channels_last(x, channels_last)
                with _autocast(device, amp):
                    out = loss_fn(forward_model, x, y)
                l, logits, extras = _unpack(out)
                opt.zero_grad(set_to_none=True)
                l.backward()
                if reduced is not None:
                    distributed.all_reduce_gradients(reduced)
                if after_backward is not None:
                    after_backward(model)
                opt.step()
                if after_step is not None:
                    after_step(model)
                for k, v in extras.items():
                    v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
                    extra_sums[k] = extra_sums[k] + v if k in extra_sums else v
                if sched is not None:
                    sched.step()
                tot_loss += l.detach() * len(y)
                if logits is not None:
                    correct += (logits.detach().argmax(1) == y).sum()
                    have_logits = True
                seen += len(y)
                bar.update(1)
            if parallel:  # the epoch's sums over every process; BatchNorm statistics from rank 0
                tot_loss, correct = distributed.all_reduce_sum(tot_loss), distributed.all_reduce_sum(correct)
                seen *= distributed.world_size()
                extra_sums = {k: distributed.all_reduce_sum(v) / distributed.world_size()
                              for k, v in extra_sums.items()}
                distributed.broadcast_module(model)
            row = {"epoch": epoch, "train_loss": float(tot_loss) / seen,
                   "train_acc": float(correct) / seen if have_logits else float("nan"),
                   "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            row["images_per_s"] = seen / row["seconds"]
            row.update({k: float(v) / len(batches) for k, v in extra_sums.items()})
            if val_batches is not None:
                ev = evaluate(model, val_batches, device=device, amp=amp and device.type == "cuda")
                row.update(val_loss=ev["loss"], val_acc=ev["acc"])
            history.append(row)
            bar.set_postfix({k: round(v, 3) for k, v in row.items() if k in ("train_loss", "train_acc", "val_acc")})
            stopped = bool(on_epoch_end is not None and on_epoch_end(epoch, row, model))
            if ck is not None and main:
                ck.save({"epoch": epoch, "epochs": epochs, "batches": len(batches), "stopped": stopped,
                         "model": model.state_dict(), "optimizer": opt.state_dict(),
                         "scheduler": sched.state_dict() if sched is not None else {},
                         "callback": on_epoch_end.state_dict() if on_epoch_end is not None else {},
                         "history": history, "rng": checkpoints.rng_state()})
        bar.close()
        model.eval()
        return pd.DataFrame(history)


class FixedWeights:
    """Keep the entries of parameters selected by boolean masks bit-identical through :func:`fit`
    (PackNet/CPG: weights owned by earlier tasks), whatever the optimiser does.

    ``masks``: parameter name -> bool tensor of its shape, ``True`` = held fixed. Pass
    ``after_backward=fw.after_backward, after_step=fw.after_step``: the first zeroes the fixed
    entries' gradients (so they do not feed momentum), the second writes their saved values back
    (momentum and weight decay would otherwise still move them). Values are captured when the
    object is made; :meth:`capture` takes them again. The parameters are those of ``model`` when
    the object is made (``model.to()`` keeps them; a rebuilt model needs a new object).
    """

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]):
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise KeyError(f"masks name unknown parameters {unknown}")
        self.params = {k: params[k] for k in masks}  # looked up once, not per batch
        self.masks = {k: m.to(params[k].device, torch.bool) for k, m in masks.items()}
        self.capture(model)

    def capture(self, model: nn.Module) -> None:
        self.values = {k: p.detach().clone() for k, p in self.params.items()}

    def after_backward(self, model: nn.Module) -> None:
        for k, m in self.masks.items():
            g = self.params[k].grad
            if g is not None:
                g.masked_fill_(m.to(g.device), 0)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for k, m in self.masks.items():
            p = self.params[k]
            p.copy_(torch.where(m.to(p.device), self.values[k].to(p.device), p))


def predict(model: nn.Module, data, *, batch_size: int = 256, device=None, batch_hook=None,
            amp: bool | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over ``data`` (on CPU). ``batch_hook(model, x, y) -> (x, y)`` is applied
    to each batch first (e.g. an attack, which may need gradients: it runs outside ``no_grad``).
    The model and batches are channels-last meanwhile (:func:`channels_last_while`)."""
    device = pick_device(device) if device is not None else model_device(model)
    amp = device.type == "cuda" if amp is None else amp
    was_training = model.training
    model.eval()
    batches = data if isinstance(data, Batches) else Batches(data, batch_size, device)
    logits, labels = [], []
    with channels_last_while(model) as cl:
        for x, y in tqdm(batches, desc="predict", disable=not progress, mininterval=1, leave=False):
            x = as_channels_last(x, cl)
            if batch_hook is not None:
                x, y = batch_hook(model, x, y)
            with torch.no_grad(), _autocast(device, amp):
                logits.append(model(x).float())
            labels.append(y)
    model.train(was_training)
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()


def evaluate(model: nn.Module, data, **kw) -> dict:
    """``{"acc", "loss", "n"}`` of ``model`` on ``data`` (eval mode; see :func:`predict` for ``kw``)."""
    logits, y = predict(model, data, **kw)
    return {"acc": accuracy(logits, y),
            "loss": F.cross_entropy(logits, y).item(), "n": len(y)}
