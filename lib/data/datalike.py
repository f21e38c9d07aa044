"""What every function that takes "data" accepts, in one place.

A *data-like* value is one of: an :class:`~lib.data.ImageSet` (in memory, uint8), an
``(images, labels)`` pair of tensors, or any torch ``Dataset`` of ``(float image, label)`` items
(the file-backed real loaders). Training, evaluation, attacks and the store all ask the same
questions of it: is it in memory, how many classes, its first ``n`` items, a fingerprint of its
content. The answers live here so that the check is written once.
"""
from __future__ import annotations

import hashlib

import torch
from torch.utils.data import Dataset, Subset

from .base import ImageSet


def tensor_pair(data) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(images, labels)`` tensors of in-memory data (an ``ImageSet`` or a tensor pair, images
    uint8 or float as stored), or ``None`` for a file-backed ``Dataset``."""
    if isinstance(data, ImageSet):
        return data.images, data.labels
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return data[0], data[1]
    return None


def check_datalike(data) -> None:
    """Raise ``TypeError`` naming what is accepted unless ``data`` is data-like."""
    if tensor_pair(data) is None and not isinstance(data, Dataset):
        raise TypeError(f"expected an ImageSet, an (images, labels) tensor pair or a Dataset, "
                        f"got {type(data).__name__}")


def first_n(data, n: int | None):
    """The first ``n`` items of ``data`` (same kind as ``data``); all of it when ``n`` is None or
    not smaller."""
    check_datalike(data)
    if n is None or n >= len(data if not isinstance(data, (tuple, list)) else data[1]):
        return data
    if isinstance(data, ImageSet):
        return data.subset(range(n))
    pair = tensor_pair(data)
    if pair is not None:
        return (pair[0][:n], pair[1][:n])
    return Subset(data, range(n))


def num_classes_of(data) -> int:
    """Number of classes of a training set (``ImageSet.num_classes``, a dataset's ``classes``,
    or ``max(label) + 1`` of an ``(images, labels)`` pair)."""
    if isinstance(data, ImageSet):
        return data.num_classes
    pair = tensor_pair(data)
    if pair is not None and isinstance(pair[1], torch.Tensor):
        return int(pair[1].max()) + 1
    for attr in ("num_classes", "classes"):
        v = getattr(data, attr, None)
        if isinstance(v, int):
            return v
        if v is not None:
            return len(v)
    raise TypeError(f"cannot tell the number of classes of a {type(data).__name__}")


def data_fingerprint(data) -> str:
    """SHA-256 (16 hex digits) of a data set's content: images and labels for in-memory data; for
    file-backed datasets (not hashed image by image) the type, ``name``/``root`` and length."""
    h = hashlib.sha256()
    pair = tensor_pair(data)
    if pair is not None:
        for t in pair:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        desc = f"{type(data).__module__}.{type(data).__name__}|{getattr(data, 'name', '')}|" \
               f"{getattr(data, 'root', '')}|{len(data)}"
        h.update(desc.encode())
    return h.hexdigest()[:16]
