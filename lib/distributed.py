"""Data-parallel training across processes: what ``fit`` does when started by ``torchrun``.

``torchrun --nproc_per_node=N script.py`` (or ``python -m torch.distributed.run``) starts N copies
of a script with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and a rendezvous address) in their
environment. :func:`launched` reads them; :func:`init` starts the process group once (NCCL when
the process has a CUDA device, gloo on CPU) the first time something needs it, so a script needs
no distributed code of its own: ``fit`` shards each batch and all-reduces the gradients, and
:class:`lib.store.Store` lets only rank 0 write while the others wait and load.

Outside ``torchrun`` (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) every function here is a no-op:
:func:`rank` is 0, :func:`world_size` is 1, :func:`barrier` returns at once, and nothing imports
or initialises ``torch.distributed``.

Sharding keeps ``fit``'s batches what they are in one process: every rank draws the same global
batch of ``batch_size`` images (same seed, same order, same augmentation) and trains on its
``batch_size / N`` slice (:func:`shard`), so N ranks average to exactly the gradient of one
process on the whole batch, and a recipe gives the same model (up to float summation order)
whatever the number of processes.
"""
from __future__ import annotations

import datetime as _dt
import os

import torch
import torch.nn as nn

__all__ = ["launched", "rank", "local_rank", "world_size", "is_main", "init", "barrier", "device_for",
           "shard", "broadcast_module", "all_reduce_gradients", "all_reduce_sum", "wrap"]


def launched() -> bool:
    """True inside a multi-process launch (``torchrun`` set ``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if launched() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if launched() else 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def is_main() -> bool:
    """True in the process that prints, writes checkpoints and writes to the store (rank 0)."""
    return rank() == 0


def device_for(device: torch.device) -> torch.device:
    """``device`` with this rank's GPU filled in (``cuda`` -> ``cuda:<LOCAL_RANK>``) under a launch."""
    if launched() and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    return device


def init(device: torch.device | None = None) -> bool:
    """Start the process group if this process was launched and it is not started yet.

    Backend: NCCL when ``device`` (default: CUDA when available) is a GPU, gloo otherwise.
    Returns True when a process group is active."""
    if not launched():
        return False
    import torch.distributed as dist

    if dist.is_initialized():
        return True
    if "MASTER_ADDR" not in os.environ:
        raise RuntimeError("WORLD_SIZE > 1 but MASTER_ADDR is not set: start the script with "
                           "`torchrun --nproc_per_node=N script.py` (or python -m torch.distributed.run)")
    cuda = (device.type == "cuda") if device is not None else torch.cuda.is_available()
    if cuda:
        device_for(torch.device("cuda"))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=_dt.timedelta(minutes=30))
    return True


def barrier() -> None:
    """Wait until every rank gets here (no-op outside a launch)."""
    if init():
        import torch.distributed as dist

        dist.barrier()


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (the whole batch in one process)."""
    n = world_size()
    if n == 1:
        return x
    if len(x) % n:
        raise ValueError(f"a batch of {len(x)} does not split over {n} processes: "
                         f"use a batch_size divisible by {n} (the global batch; each process takes 1/{n})")
    per = len(x) // n
    return x[rank() * per:(rank() + 1) * per]


def broadcast_module(model: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (identical start and BatchNorm statistics)."""
    if not init():
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks, in one flat buffer per dtype and device.

    Used for the losses DDP cannot carry (several forwards per step, attacks inside the loss,
    submodules called directly): DDP's reducer supports only one forward through its wrapper per
    backward. Parameters without a gradient keep ``None`` (as in one process: the optimiser
    skips them); every rank runs the same code, so the same parameters have gradients everywhere."""
    if not init():
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params if isinstance(p, torch.Tensor) and p.grad is not None]
    groups: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        groups.setdefault((g.dtype, g.device), []).append(g)
    n = world_size()
    for group in groups.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat.div_(n)
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(synced)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (a new tensor; ``t`` itself outside a launch)."""
    if not init():
        return t
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t)
    return t


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (gradients all-reduced in
    buckets while backward runs; buffers broadcast from rank 0 at each forward).

    ``find_unused_parameters``: a model may hold trainable parameters its forward does not use
    (the inactive heads of a multi-head classifier); DDP then still finishes each step, and those
    parameters keep ``grad=None`` as in one process (so weight decay does not move them)."""
    from torch.nn.parallel import DistributedDataParallel

    init(device)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
