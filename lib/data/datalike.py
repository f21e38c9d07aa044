"""What every function that takes "data" accepts, in one place.

A *data-like* value is one of: an :class:`~lib.data.ImageSet` (in memory, uint8), an
``(images, labels)`` pair of tensors, or any torch ``Dataset`` of ``(float image, label)`` items
(the file-backed real loaders). Training, evaluation, attacks and the store all ask the same
questions of it: is it in memory, its labels, how many classes, a fingerprint of its
content, a subset that keeps every class in proportion. The answers live here so that the
check is written once.

Evaluation and selection subsets are *stratified*: real datasets are often stored in class order
(an ImageFolder's first 500 of 1,000 CIFAR-10 test images are classes 0-4 only), so "the first n"
silently drops classes. :func:`stratified_subset` takes a seeded shuffle within each class and
interleaves the classes, so any prefix holds every class in proportion; the same ``(n, seed)``
always gives the same images, for every model and attack of a study.
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


def float_pair(data, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images as float in [0, 1], labels as long)`` of in-memory data (:func:`tensor_pair`), on
    ``device``; ``TypeError`` for anything else. What a method that loops over a small clean set
    itself (ANP, I-BAU) needs from an ``ImageSet`` or a tensor pair."""
    pair = tensor_pair(data)
    if pair is None:
        raise TypeError(f"expected an ImageSet or an (images, labels) tensor pair, got {type(data).__name__}")
    x, y = pair
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return x.to(device), torch.as_tensor(y).long().to(device)


def check_datalike(data) -> None:
    """Raise ``TypeError`` naming what is accepted unless ``data`` is data-like."""
    if tensor_pair(data) is None and not isinstance(data, Dataset):
        raise TypeError(f"expected an ImageSet, an (images, labels) tensor pair or a Dataset, "
                        f"got {type(data).__name__}")


def labels_of(data) -> torch.Tensor:
    """The labels of every item (int64, CPU), without reading images where the data set records
    them (``ImageSet``, tensor pairs, ``.targets`` of the real loaders and torchvision, ``Subset``);
    otherwise by reading each item."""
    pair = tensor_pair(data)
    if pair is not None:
        return torch.as_tensor(pair[1]).long().cpu()
    if isinstance(data, Subset):
        return labels_of(data.dataset)[torch.as_tensor(list(data.indices), dtype=torch.long)]
    targets = getattr(data, "targets", None)
    if targets is not None:
        return torch.as_tensor(list(targets) if not isinstance(targets, torch.Tensor) else targets).long()
    return torch.tensor([int(data[i][1]) for i in range(len(data))], dtype=torch.long)


def _take(data, idx: torch.Tensor):
    """The items of ``data`` at ``idx`` (same kind as ``data``)."""
    if isinstance(data, ImageSet):
        return data.subset(idx)
    pair = tensor_pair(data)
    if pair is not None:
        return (pair[0][idx], torch.as_tensor(pair[1])[idx])
    return Subset(data, idx.tolist())


def stratified_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """An order of the indices ``0..N-1`` whose every prefix holds each class in proportion to its
    share of ``labels``: within each class a seeded shuffle; then item ``r`` of class ``c`` (of
    ``n_c``) is placed at ``(r + 0.5) / n_c`` (ties broken by class)."""
    g = torch.Generator().manual_seed(int(seed))
    keys = torch.empty(len(labels), dtype=torch.float64)
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        keys[idx] = (torch.arange(len(idx), dtype=torch.float64) + 0.5) / len(idx)
    # sort by position, then by class: exact ties between classes keep a fixed class order
    return torch.as_tensor(sorted(range(len(labels)), key=lambda i: (float(keys[i]), int(labels[i]))))


def stratified_subset(data, n: int | None, seed: int = 0):
    """``n`` items of ``data`` (same kind) with every class in proportion (see
    :func:`stratified_order`), in that order; all of ``data`` in stratified order when ``n`` is
    None or not smaller. Use it for every evaluation and model-selection subset."""
    check_datalike(data)
    order = stratified_order(labels_of(data), seed)
    return _take(data, order if n is None else order[:n])


def class_counts(data) -> dict[int, int]:
    """``{label: number of items}`` of ``data``, for stating what an evaluation saw."""
    labels, counts = labels_of(data).unique(return_counts=True)
    return {int(k): int(v) for k, v in zip(labels, counts)}


def num_classes_of(data) -> int:
    """Number of classes of a training set (``ImageSet.num_classes``, a dataset's ``classes``,
    or ``max(label) + 1`` of an ``(images, labels)`` pair)."""
    if isinstance(data, ImageSet):
        return data.num_classes
    if isinstance(data, Subset):
        return num_classes_of(data.dataset)
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
    if isinstance(data, Subset):  # which items of which data set
        h.update(f"subset|{data_fingerprint(data.dataset)}|".encode())
        h.update(torch.as_tensor(list(data.indices), dtype=torch.int64).numpy().tobytes())
    elif pair is not None:
        for t in pair:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        desc = f"{type(data).__module__}.{type(data).__name__}|{getattr(data, 'name', '')}|" \
               f"{getattr(data, 'root', '')}|{len(data)}"
        h.update(desc.encode())
    return h.hexdigest()[:16]
