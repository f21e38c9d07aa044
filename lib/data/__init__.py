"""Datasets: ``load(name, split, profile)`` for the embedded default and every real dataset.

``synsigns`` (embedded, generated, no download) is the default of the ``smoke`` profile. Real
datasets are read from the layouts they ship in under ``data/<name>`` (see
:mod:`lib.data.real`); a missing one raises :class:`DatasetNotFoundError` naming the path and
the layout expected.
"""
from __future__ import annotations

from .base import DatasetNotFoundError, ImageSet, shared_images, to_imageset
from .datalike import (check_datalike, class_counts, data_fingerprint, labels_of, num_classes_of,
                       stratified_order, stratified_subset, tensor_pair)
from .splits import source_target_split, subset_classes, task_split, train_val_split
from .synsigns import CLASSES as SYNSIGNS_CLASSES
from .synsigns import generate, load_synsigns

# default sizes per profile: smoke keeps every notebook in minutes on a 2-core CPU
PROFILES = {
    "smoke": {"size": 32, "per_class_train": 50, "per_class_test": 20},
    "full": {"size": 224, "per_class_train": 500, "per_class_test": 100},
}


def load(name: str = "synsigns", split: str = "train", profile: str = "smoke", *, root=None,
         size: int | None = None, n: int | None = None, classes=None, seed: int = 0, **kw):
    """Load a dataset split.

    ``synsigns``: an :class:`ImageSet` generated at the profile's size (``n`` images, default
    ``per_class_*`` of the profile times the number of ``classes``). Any other name: the real
    loader of :func:`lib.data.real.load_real` (``root``, ``size`` and ``**kw`` passed on).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    progress = kw.pop("progress", False)
    if name == "synsigns":
        k = len(SYNSIGNS_CLASSES) if classes is None else len(list(classes))
        per = prof["per_class_train"] if split == "train" else prof["per_class_test"]
        return load_synsigns(split, n=n if n is not None else k * per, size=size or prof["size"],
                             seed=seed, classes=classes, progress=progress)
    from .real import load_real
    return load_real(name, split, root=root, size=size, **kw)


def real_status():
    """Which real datasets are present: one row per dataset with the folder looked at, whether a
    usable copy is there (and its size), and the first line of the layout expected. The team's
    ``../shared`` subsets are listed too when present."""
    import pandas as pd

    from ..paths import data_dir, shared_dir
    from .real import REAL_DATASETS, load_real

    places = [(name, data_dir() / spec.folder) for name, spec in REAL_DATASETS.items() if name != "image_folder"]
    shared = shared_dir()
    if shared:
        places += [("gtsrb", shared / "data/gtsrb-32-subset"), ("cifar10_folder", shared / "data/cifar10-jpg-subset")]
    rows = []
    for name, path in places:
        spec = REAL_DATASETS[name]
        row = {"dataset": name, "path": str(path), "found": False, "train_images": None, "classes": None,
               "layout": spec.layout.splitlines()[0]}
        if path.exists():
            try:
                ds = load_real(name, spec.splits[0], root=path)
                row.update(found=True, train_images=len(ds), classes=len(ds.classes))
            except DatasetNotFoundError as err:
                row["layout"] = str(err).splitlines()[0]
        rows.append(row)
    return pd.DataFrame(rows)


__all__ = ["real_status", "shared_images", "load", "PROFILES", "ImageSet", "DatasetNotFoundError", "to_imageset",
           "generate",
           "load_synsigns", "SYNSIGNS_CLASSES", "task_split", "source_target_split",
           "subset_classes", "train_val_split", "check_datalike", "data_fingerprint", "num_classes_of",
           "tensor_pair", "labels_of", "stratified_order", "stratified_subset", "class_counts"]
