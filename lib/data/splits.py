"""Class and sample splits with fixed seeds: continual task sequences, AnB source/target halves,
train/val carve-outs, and relabelling a dataset to a subset of its classes."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import ImageSet


def _perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def task_split(num_classes: int, n_tasks: int, seed: int | None = 0) -> list[list[int]]:
    """Split classes ``0..num_classes-1`` into ``n_tasks`` disjoint equal tasks.

    ``seed=None`` keeps class order (task t = a contiguous block); otherwise classes are
    shuffled once with ``seed``. Leftover classes (when not divisible) are dropped.
    """
    per = num_classes // n_tasks
    if per == 0:
        raise ValueError(f"cannot split {num_classes} classes into {n_tasks} tasks")
    order = torch.arange(num_classes) if seed is None else _perm(num_classes, seed)
    return [sorted(order[t * per:(t + 1) * per].tolist()) for t in range(n_tasks)]


def source_target_split(num_classes: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Two disjoint random class halves (Yosinski et al. 2014: A = source task, B = target task)."""
    a, b = task_split(num_classes, 2, seed)
    return a, b


def subset_classes(ds: ImageSet, classes: Sequence[int], relabel: bool = True, name: str | None = None) -> ImageSet:
    """Keep the images whose label is in ``classes``; with ``relabel``, label ``classes[i]`` becomes ``i``."""
    classes = list(classes)
    lut = torch.full((max(ds.num_classes, max(classes) + 1),), -1, dtype=torch.long)
    lut[torch.as_tensor(classes)] = torch.arange(len(classes))
    keep = (lut[ds.labels] >= 0).nonzero().flatten()
    out = ds.subset(keep, name=name)
    if relabel:
        out.labels = lut[out.labels]
        out.classes = [ds.classes[c] for c in classes]
    out.info["class_ids"] = classes
    return out


def train_val_split(ds: ImageSet, val_fraction: float = 0.1, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Stratified train/val carve-out with a fixed seed (each class keeps ``val_fraction`` for val)."""
    g = torch.Generator().manual_seed(seed)
    val = []
    for c in ds.labels.unique():
        idx = (ds.labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val.append(idx[:max(1, round(len(idx) * val_fraction))])
    val = torch.cat(val).sort().values
    mask = torch.ones(len(ds), dtype=torch.bool)
    mask[val] = False
    return ds.subset(mask.nonzero().flatten()), ds.subset(val)
