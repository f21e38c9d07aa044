"""Poisoned training sets: all-to-one trigger poisoning (BadNets; the Renofeation authors'
``portion``) and label flipping without a trigger (the authors' ``--is_poison`` ablation)."""
from __future__ import annotations

import torch

from ..data import ImageSet
from .triggers import Trigger, apply_trigger


def _check_rate(rate: float) -> None:
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be a fraction in [0, 1], got {rate!r}")


def check_target(ds: ImageSet, target: int) -> None:
    """An error naming the valid range unless ``target`` is one of ``ds``'s class ids."""
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < ds.num_classes:
        raise ValueError(f"target class {target!r} is not a class of {ds.name or 'the data'} "
                         f"(labels 0..{ds.num_classes - 1})")


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
    ``info["trigger_mask"]`` holds where it landed."""
    images, mask = apply_trigger(ds.images, trigger, where, seed=seed)
    return ImageSet(images, ds.labels.clone(), list(ds.classes), ds.masks, f"{ds.name}-triggered",
                    {**ds.info, "trigger_mask": mask})


def flip_labels(ds: ImageSet, rate: float, *, seed: int = 0) -> ImageSet:
    """A copy of ``ds`` with ``int(rate * len(ds))`` labels, drawn once from ``seed``, changed to
    another class, uniformly among the other ``C - 1`` (never the true label); images unchanged.
    ``info`` gains ``flipped`` and ``true_labels``."""
    if ds.num_classes < 2:
        raise ValueError("label flipping needs at least two classes")
    idx = chosen(len(ds), rate, seed)
    g = torch.Generator().manual_seed(seed + 1)
    labels = ds.labels.clone()
    shift = torch.randint(1, ds.num_classes, (len(idx),), generator=g)
    labels[idx] = (labels[idx] + shift) % ds.num_classes
    flipped = torch.zeros(len(ds), dtype=torch.bool)
    flipped[idx] = True
    return ImageSet(ds.images, labels, list(ds.classes), ds.masks, f"{ds.name}-flip{rate:g}",
                    {**ds.info, "flipped": flipped, "true_labels": ds.labels.clone()})
