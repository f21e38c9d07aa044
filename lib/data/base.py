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


class DataError(Exception):
    """Base of every error a bad dataset on disk causes: missing or malformed
    (:class:`DatasetNotFoundError`), an image that cannot be decoded (:class:`UnreadableImageError`),
    a refused or broken pickle (:mod:`lib.data.safe_pickle`). Command-line tools catch this one
    class and exit 2; the first line of its message names the file and what is wrong with it."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset is missing or malformed: names the dataset, the path and the expected layout.

    ``problem`` (what is wrong at ``path``, e.g. ``line 3: ClassId 99 is not in 0..42``) ends the
    first line, so that line alone is a complete error; the layout and ``hint`` follow it."""

    def __init__(self, name: str, path: str | Path, layout: str, hint: str = "", problem: str = ""):
        problem = " ".join(problem.split())  # one line, whatever the reader's text held
        self.name, self.path, self.layout, self.problem = name, Path(path), layout, problem
        msg = (f"{name}: no usable dataset at {self.path}{': ' + problem if problem else ''}.\n"
               f"Expected layout:\n{layout.rstrip()}")
        if hint:
            msg += f"\n{hint.rstrip()}"
        super().__init__(msg)


class UnreadableImageError(DataError):
    """An image file of a dataset that PIL cannot decode (truncated, corrupt or not an image).

    Built by :func:`unreadable_image` (one line naming the file, why, and what to do). It takes the
    message alone so that a ``DataLoader`` worker can re-raise it as itself; the worker's wrapped
    traceback is cut back to that one line (``path`` is then None)."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(_worker_message(message, type(self).__name__))


def unreadable_image(path: str | Path, err: BaseException) -> UnreadableImageError:
    """The :class:`UnreadableImageError` for ``path``, which failed to decode with ``err``."""
    why = " ".join(f"{type(err).__name__}: {err}".split())
    return UnreadableImageError(f"image file {path} cannot be read ({why}): it is truncated, corrupt or not "
                                "an image; remove it or download the dataset again", path)


def _worker_message(message: str, cls: str) -> str:
    """``message``, or, when it is torch's DataLoader re-raise text (``Caught <cls> in DataLoader
    worker process N.`` and the worker's traceback), the original one-line message at its end."""
    if not message.startswith(f"Caught {cls} ") or "Original Traceback" not in message:
        return message
    last = message.rstrip().rsplit("\n", 1)[-1]
    head, sep, rest = last.partition(": ")
    return rest if sep and head.split(".")[-1] == cls else message


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
