"""Real-image data of notebook 05's ``real`` and ``full`` profiles (:mod:`lib.artifacts.backdoor`).

``real`` (the check on real photographs, CPU-sized): the team's shared GTSRB subset at 32 px
(``../shared/data/gtsrb-32-subset``: 60 training images per class over every physical sign
track, 43 classes, and the 1,290 official test images) is split per class into the attacker's
half and the victim's half (``per_class_train`` each, seeded); the new task is the shared
CIFAR-10 JPEG subset (``new_per_class_train`` training images per class, all 1,000 test images).

``full`` (the authors' setting, GPU-sized): GTSRB from ``data/gtsrb`` at 224 px with training
augmentation (random resized crop) for teacher *and* victim (the authors' final scripts use the
same dataset for both), the new task a real 224-px dataset (``new_dataset``: MIT-67 or CUB-200).
These stay file-backed; :func:`lib.backdoor.poison` wraps them so the trigger is pasted after
the crop.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from .. import data
from ..data import ImageSet
from ..data.real import load_real
from ..paths import shared_dir


def _shared(folder: str):
    shared = shared_dir()
    path = shared / "data" / folder if shared else None
    if path is None or not path.is_dir():
        raise data.DatasetNotFoundError(folder, path or f"../shared/data/{folder}",
                                     "the team's shared subsets (../shared/data/README.md)",
                                     "The 'real' profile needs ../shared; use profile='smoke' without it.")
    return path


def shared_weights():
    """The team's real CIFAR-10 ResNet-20 checkpoint (``../shared/weights``)."""
    path = (shared_dir() or _shared("weights")) / "weights/resnet20-cifar10/resnet20-12fca82f.th"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the 'real' profile needs ../shared/weights")
    return path


@lru_cache(maxsize=8)
def _shared_set(name: str, split: str) -> ImageSet:
    """A shared 32-px subset as an ImageSet (read once per process)."""
    folder = {"gtsrb": "gtsrb-32-subset", "cifar10_folder": "cifar10-jpg-subset"}[name]
    ds = load_real(name, split, root=_shared(folder))
    return data.to_imageset(ds, name=f"{name}-shared-{split}", progress=False)


def _halves(ds: ImageSet, per_class: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """Per class, a seeded shuffle split into two disjoint parts of ``per_class`` images."""
    g = torch.Generator().manual_seed(seed)
    first, second = [], []
    for c in range(ds.num_classes):
        idx = (ds.labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        if len(idx) < 2 * per_class:
            raise ValueError(f"class {c} of {ds.name} has {len(idx)} images, fewer than 2 x per_class_train = "
                             f"{2 * per_class}; lower per_class_train")
        first.append(idx[:per_class])
        second.append(idx[per_class:2 * per_class])
    return (ds.subset(torch.cat(first).sort().values, name=f"{ds.name}-attacker"),
            ds.subset(torch.cat(second).sort().values, name=f"{ds.name}-victim"))


def real_sets(cfg: dict, which: str):
    """``(train, test)`` of ``which`` (``"teacher"``, ``"same"``, ``"new"``) for the ``real`` and
    ``full`` profiles."""
    if cfg["dataset"] == "gtsrb_shared":
        if which == "new":
            train = data.stratified_subset(_shared_set("cifar10_folder", "train"),
                                        10 * cfg["new_per_class_train"], cfg["data_seed"])
            return train, _shared_set("cifar10_folder", "test")
        attacker, victim = _halves(_shared_set("gtsrb", "train"), cfg["per_class_train"], cfg["data_seed"])
        return (attacker if which == "teacher" else victim), _shared_set("gtsrb", "test")
    name = cfg["new_dataset"] if which == "new" else cfg["dataset"]
    root = cfg.get("new_root") if which == "new" else cfg.get("root")
    return (load_real(name, "train", root=root, size=cfg["size"], train_augment=True),
            load_real(name, "test", root=root, size=cfg["size"]))
