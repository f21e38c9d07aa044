"""Pieces shared by the transfer methods: default augmentation, the parameter groups the
regularisers read, and the part of a method's options that belongs in a cache key."""
from __future__ import annotations

import torch
from torch import nn

from ..data import ImageSet
from ..models import Classifier
from ..train import random_translate

UNKEYED = {"progress", "desc", "device", "val"}  # fit options that do not change the weights


def with_augment(train, translate, fit_kw: dict) -> dict:
    """``fit_kw`` with the default augmentation: random shifts of ``translate`` px (the bases'
    recipe) for in-memory tensor data; none for file-backed datasets (their transforms augment).
    An ``augment`` in ``fit_kw`` always wins."""
    kw = dict(fit_kw)
    if "augment" not in kw:
        if translate == "auto":
            translate = 3 if isinstance(train, (ImageSet, tuple, list)) else None
        kw["augment"] = random_translate(translate) if translate else None
    return kw


def head_params(model: Classifier) -> list[nn.Parameter]:
    return list(model.head.parameters())


def body_named_params(model: Classifier) -> dict[str, nn.Parameter]:
    return {k: p for k, p in model.named_parameters() if not k.startswith(("head.", "heads."))}


def sq(params) -> torch.Tensor:
    """Sum of squares of ``params`` (float32)."""
    return sum(p.float().pow(2).sum() for p in params)


def fit_config(fit_kw: dict, cache_tag: str | None) -> dict:
    """The keyword options of a method as a cache-key dict: options that do not change the
    weights are left out; a function is keyed by ``cache_tag`` (a function cannot be hashed)."""
    cfg = {}
    for k, v in sorted(fit_kw.items()):
        if k in UNKEYED:
            continue
        if callable(v):
            if cache_tag is None:
                raise TypeError(
                    f"{k}= is a function, which cannot be part of a cache key; pass cache_tag='...' "
                    f"naming it (and change the tag whenever the function changes)")
            v = f"callable:{cache_tag}"
        cfg[k] = v
    return cfg
