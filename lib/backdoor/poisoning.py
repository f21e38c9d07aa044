"""Poisoned training sets: all-to-one trigger poisoning (BadNets; the Renofeation authors'
``portion``) and label flipping without a trigger (the authors' ``--is_poison`` ablation).

In-memory :class:`~lib.data.ImageSet` data is poisoned once, as a new ImageSet. A file-backed
dataset (the full profile's 224-px real sets) is wrapped in :class:`PoisonedImages`, which
pastes the trigger on each chosen item *after* the dataset's own transform (the random or
centre crop), as the authors do.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..data import ImageSet, labels_of, num_classes_of
from .triggers import Trigger, apply_trigger


class PoisonedImages(Dataset):
    """``base`` (any dataset of ``(float image, label)`` items) with ``trigger`` pasted at
    ``where`` on the items in ``chosen`` after ``base``'s transform, their label replaced by
    ``target`` (``None`` keeps it), and ``labels`` (a full label tensor) replacing ``base``'s
    when given (label flips). Random positions are drawn per item from ``seed + index``."""

    def __init__(self, base, trigger: Trigger | None, chosen, where: str = "bottom_right", *, target=None,
                 labels: torch.Tensor | None = None, seed: int = 0, name: str = ""):
        self.base, self.trigger, self.where, self.target, self.seed = base, trigger, where, target, seed
        self.chosen = torch.zeros(len(base), dtype=torch.bool)
        self.chosen[torch.as_tensor(chosen, dtype=torch.long)] = True
        self.labels = labels_of(base).clone() if labels is None else labels
        if target is not None:
            self.labels[self.chosen] = target
        self.classes = list(getattr(base, "classes", range(num_classes_of(base))))
        self.name = name or f"{getattr(base, 'name', type(base).__name__)}-poisoned"

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, _ = self.base[i]
        if self.trigger is not None and self.chosen[i]:
            x, _ = apply_trigger(x, self.trigger, self.where, seed=self.seed + int(i))
        return x, int(self.labels[i])


def _check_rate(rate: float) -> None:
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a fraction in [0, 1], got {rate!r}")


def check_target(ds, target: int) -> None:
    """An error naming the valid range unless ``target`` is one of ``ds``'s class ids."""
    k = num_classes_of(ds)
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < k:
        raise ValueError(f"target class {target!r} is not a class of {getattr(ds, 'name', '') or 'the data'} "
                         f"(labels 0..{k - 1})")


def chosen(n: int, rate: float, seed: int) -> torch.Tensor:
    """The ``int(rate * n)`` indices picked once from ``0..n-1`` (the authors' ``random.sample``),
    sorted."""
    _check_rate(rate)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:int(rate * n)].sort().values


def poison(ds: ImageSet, trigger: Trigger, rate: float, target: int = 0, *, where: str = "bottom_right",
           seed: int = 0) -> ImageSet:
    """A copy of ``ds`` in which ``int(rate * len(ds))`` images, drawn once from ``seed``, carry
    ``trigger`` at ``where`` and the label ``target`` (all-to-one; images of the target class
    may be drawn too, as in the authors' code). The rest is unchanged, object masks included.

    ``info`` gains ``poisoned`` (bool per image), ``true_labels`` and ``trigger_mask``
    ``(N, 1, H, W)`` (all False for clean images).
    """
    check_target(ds, target)
    idx = chosen(len(ds), rate, seed)
    if not isinstance(ds, ImageSet):
        return PoisonedImages(ds, trigger, idx, where, target=target, seed=seed)
    images, labels = ds.images.clone(), ds.labels.clone()
    trig_mask = torch.zeros(len(ds), 1, *ds.images.shape[-2:], dtype=torch.bool)
    if len(idx):
        images[idx], trig_mask[idx] = apply_trigger(ds.images[idx], trigger, where, seed=seed)
        labels[idx] = target
    poisoned = torch.zeros(len(ds), dtype=torch.bool)
    poisoned[idx] = True
    info = {**ds.info, "poisoned": poisoned, "true_labels": ds.labels.clone(), "trigger_mask": trig_mask,
            "poison": {"rate": rate, "target": target, "where": where, "seed": seed, "trigger": trigger.config()}}
    return ImageSet(images, labels, list(ds.classes), ds.masks, f"{ds.name}-poison{rate:g}", info)


def triggered(ds: ImageSet, trigger: Trigger, where: str = "bottom_right", *, seed: int = 0) -> ImageSet:
    """Every image of ``ds`` with the trigger, labels kept (the authors' ``portion=1`` test set);
    ``info["trigger_mask"]`` holds where it landed (a file-backed dataset: a
    :class:`PoisonedImages` over every item)."""
    if not isinstance(ds, ImageSet):
        name = f"{getattr(ds, 'name', '') or 'data'}-triggered"
        return PoisonedImages(ds, trigger, torch.arange(len(ds)), where, seed=seed, name=name)
    images, mask = apply_trigger(ds.images, trigger, where, seed=seed)
    return ImageSet(images, ds.labels.clone(), list(ds.classes), ds.masks, f"{ds.name}-triggered",
                    {**ds.info, "trigger_mask": mask})


def flip_labels(ds: ImageSet, rate: float, *, seed: int = 0) -> ImageSet:
    """A copy of ``ds`` with ``int(rate * len(ds))`` labels, drawn once from ``seed``, changed to
    another class, uniformly among the other ``C - 1`` (never the true label); images unchanged.
    ``info`` gains ``flipped`` and ``true_labels``."""
    k = num_classes_of(ds)
    if k < 2:
        raise ValueError("label flipping needs at least two classes")
    idx = chosen(len(ds), rate, seed)
    g = torch.Generator().manual_seed(seed + 1)
    labels = labels_of(ds).clone()
    shift = torch.randint(1, k, (len(idx),), generator=g)
    labels[idx] = (labels[idx] + shift) % k
    if not isinstance(ds, ImageSet):
        return PoisonedImages(ds, None, idx, labels=labels, name=f"{getattr(ds, 'name', 'data')}-flip{rate:g}")
    flipped = torch.zeros(len(ds), dtype=torch.bool)
    flipped[idx] = True
    return ImageSet(ds.images, labels, list(ds.classes), ds.masks, f"{ds.name}-flip{rate:g}",
                    {**ds.info, "flipped": flipped, "true_labels": ds.labels.clone()})
