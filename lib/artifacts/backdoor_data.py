"""Real-image data of notebook 05's ``real`` and ``full`` profiles (:mod:`lib.artifacts.backdoor`).

``real`` (the check on real photographs, CPU-sized): the team's shared GTSRB subset at 32 px
(``../shared/data/gtsrb-32-subset``: 60 training images per class over every physical sign
track, 43 classes, and the 1,290 official test images) is split per class into the attacker's
half and the victim's half (``per_class_train`` each, seeded); the new task is CIFAR-10:
``new_per_class_train`` training images per class of the shared subset, tested on the 5,000 images
of its official test split (``cifar10-jpg-official-test``), which the teacher never saw.

``full`` (the authors' setting, GPU-sized): GTSRB from ``data/gtsrb`` at ``size`` (224) px, its
first ``teacher_classes`` classes, split per class into the attacker's and the victim's
``per_class_train`` images as in ``real`` (the authors' final scripts reuse one set for both; we
keep the victim's images its own, as the other profiles do), tested on ``per_class_test`` test
images per class; the new task the first ``new_classes`` classes of ``new_dataset`` (MIT-67 or
CUB-200; ``new_per_class_train`` training images per class, None = all, and all their test
images). Only those images are read, into memory (a few hundred MB at 224 px), so every table and
figure of notebook 05 takes them as it takes the smoke sets (augmented as those are, by
``fit``'s options, not by the loaders' random crop).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch.utils.data import Subset

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


# the shared folders and the reader of each: the new task's test images are CIFAR-10's official test split,
# never the subset's test folder, which comes from the training split the shared ResNet-20 teacher learnt
SHARED_FOLDERS = {"gtsrb": ("gtsrb", "gtsrb-32-subset"), "cifar10_folder": ("cifar10_folder", "cifar10-jpg-subset"),
                  "cifar10_official": ("cifar10_folder", "cifar10-jpg-official-test")}


@lru_cache(maxsize=8)
def _shared_set(name: str, split: str) -> ImageSet:
    """A shared 32-px subset as an ImageSet (read once per process)."""
    reader, folder = SHARED_FOLDERS[name]
    ds = load_real(reader, split, root=_shared(folder))
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
            return train, _shared_set("cifar10_official", "test")
        attacker, victim = _halves(_shared_set("gtsrb", "train"), cfg["per_class_train"], cfg["data_seed"])
        return (attacker if which == "teacher" else victim), _shared_set("gtsrb", "test")
    if which == "new":
        root, name, k = cfg.get("new_root"), cfg["new_dataset"], cfg["new_classes"]
        return (_first_classes(load_real(name, "train", root=root, size=cfg["size"]), k,
                               cfg["new_per_class_train"], cfg["data_seed"], f"{name}-new-train"),
                _first_classes(load_real(name, "test", root=root, size=cfg["size"]), k, None, 0, f"{name}-new-test"))
    name, k, per = cfg["dataset"], cfg["teacher_classes"], cfg["per_class_train"]
    both = _first_classes(load_real(name, "train", root=cfg.get("root"), size=cfg["size"]), k, 2 * per,
                          cfg["data_seed"], f"{name}-train")
    attacker, victim = _halves(both, per, cfg["data_seed"])
    test = _first_classes(load_real(name, "test", root=cfg.get("root"), size=cfg["size"]), k,
                          cfg["per_class_test"], cfg["data_seed"], f"{name}-test")
    return (attacker if which == "teacher" else victim), test


def _first_classes(ds, k: int, per_class: int | None, seed: int, name: str) -> ImageSet:
    """The first ``k`` classes of a file-backed set, at most ``per_class`` images of each (a seeded
    draw; None = all), read into an ImageSet. Only those images are decoded; GTSRB's ROI boxes
    become the set's object masks (what notebook 06 measures attention against)."""
    labels = data.labels_of(ds)
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(k):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            raise ValueError(f"{name}: class {c} has no images; the recipe asks for its first {k} classes")
        picked.append(idx if per_class is None else idx[torch.randperm(len(idx), generator=g)][:per_class])
    chosen = torch.cat(picked).sort().values
    out = data.to_imageset(Subset(ds, chosen.tolist()), name=name, classes=list(ds.classes)[:k], progress=False)
    masks = ds.roi_masks(chosen) if hasattr(ds, "roi_masks") else None
    return ImageSet(out.images, out.labels, out.classes, masks, name)
