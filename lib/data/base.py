"""Dataset containers shared by the embedded generator and the real loaders.

Images are float tensors in [0, 1] (normalisation belongs to the model). Small sets are held
as uint8 tensors in an :class:`ImageSet` (compact, and ``lib.train`` can keep them on the
device); large real sets stay file-backed torch ``Dataset`` objects with the same item shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import Dataset


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing or malformed: names the dataset, the path and the expected layout."""

    def __init__(self, name: str, path: str | Path, layout: str, hint: str = ""):
        self.name, self.path, self.layout = name, Path(path), layout
        msg = (f"{name}: no usable dataset at {self.path}.\n"
               f"Expected layout:\n{layout.rstrip()}")
        if hint:
            msg += f"\n{hint.rstrip()}"
        super().__init__(msg)


@dataclass
class ImageSet(Dataset):
    """An in-memory labelled image set.

    ``images``: uint8 ``(N, 3, H, W)``; ``labels``: int64 ``(N,)``; ``masks``: optional bool
    ``(N, H, W)`` object masks; ``classes``: class names indexed by label.
    ``__getitem__`` returns ``(float image in [0,1], int label)`` like the file-backed loaders.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None = None
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N,3,H,W), got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.labels) != len(self.images):
            raise ValueError("images and labels differ in length")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div_(255), int(self.labels[i])

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def float_images(self, idx=None) -> torch.Tensor:
        """Float images in [0,1] (all, or those at ``idx``)."""
        x = self.images if idx is None else self.images[idx]
        return x.float().div_(255)

    def subset(self, idx: Sequence[int] | torch.Tensor, name: str | None = None) -> "ImageSet":
        """The images at ``idx`` (per-image tensors in ``info`` are indexed too)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        info = {k: v[idx] if isinstance(v, torch.Tensor) and len(v) == len(self) else v
                for k, v in self.info.items()}
        return ImageSet(self.images[idx], self.labels[idx], list(self.classes),
                        None if self.masks is None else self.masks[idx], name or self.name, info)


def to_imageset(ds: Dataset, name: str = "", classes: Sequence[str] | None = None,
                progress: bool = True) -> ImageSet:
    """Materialise a file-backed dataset of equal-sized ``(float image, label)`` items into an
    :class:`ImageSet` (for small real sets such as CIFAR or GTSRB at 32 px)."""
    from tqdm.auto import tqdm

    n = len(ds)
    x0, _ = ds[0]
    images = torch.empty((n, *x0.shape), dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.long)
    for i in tqdm(range(n), desc=f"load {name or type(ds).__name__}", disable=not progress, mininterval=1):
        x, y = ds[i]
        images[i] = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        labels[i] = int(y)
    default = [str(c) for c in range(int(labels.max()) + 1)]
    classes = list(classes if classes is not None else getattr(ds, "classes", default))
    return ImageSet(images, labels, classes, name=name)


def shared_images(a: ImageSet, b: ImageSet) -> int:
    """How many images of ``b`` also occur, byte for byte, in ``a`` (leakage between splits)."""
    seen = {img.numpy().tobytes() for img in a.images}
    return sum(img.numpy().tobytes() in seen for img in b.images)
