"""Study of notebook 00: what do we train on? The recipe of the dataset figures and checks.

The smoke profile draws synsigns at 32 px; the full profile at 224 px (the real datasets are
listed by :func:`lib.data.real_status` in both). The real profile also reads the team's shared
real images (``../shared/data``), which its other notebooks train and score on: their splits,
class balance, repeated images and any image a test split shares with a training split
(:func:`shared_summary`).
"""
from __future__ import annotations

import pandas as pd

from ..artifacts.backdoor_data import SHARED_FOLDERS
from ..data import ImageSet, shared_images, to_imageset
from ..data.real import load_real
from ..paths import shared_dir
from . import notebook_params
from . import recipe as _recipe

RECIPE = {
    "smoke": {"size": 32, "per_class": 20, "seed": 0, "n_tasks": 20},  # 20 continual tasks of 5 classes
    "full": {"size": 224, "per_class": 20, "seed": 0, "n_tasks": 20},
}
# real: the synsigns part as smoke (notebooks 01 and 06 still use it) and the shared sets' checks
RECIPE["real"] = {**RECIPE["smoke"], "shared": True}
PREFIX, NEEDS = "data", ()  # notebook parameters data_<key>; no earlier notebook's models
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 00's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)


# ----------------------------------------------------------------------------- the shared real data
# (name, split) of every shared set the real profile reads, and the pairs a leak between them would
# flatter: a test split against the training images of its domain (the subset's CIFAR-10 images all
# come from CIFAR-10's training split, so its test folder is checked against the official test too)
SHARED_SPLITS = [("gtsrb", "train"), ("gtsrb", "test"), ("cifar10_folder", "train"), ("cifar10_folder", "test"),
                 ("cifar10_official", "test")]
LEAK_PAIRS = [(("gtsrb", "train"), ("gtsrb", "test")),
              (("cifar10_folder", "train"), ("cifar10_folder", "test")),
              (("cifar10_folder", "train"), ("cifar10_official", "test")),
              (("cifar10_folder", "test"), ("cifar10_official", "test"))]


def shared_sets() -> dict[tuple[str, str], ImageSet]:
    """Every split of :data:`SHARED_SPLITS` read from ``../shared/data`` at 32 px, keyed by
    ``(name, split)`` (the names of :data:`lib.artifacts.backdoor_data.SHARED_FOLDERS`, which the
    real recipes read too). A missing folder is a FileNotFoundError that says where to put it."""
    shared = shared_dir()
    out = {}
    for name, split in SHARED_SPLITS:
        reader, folder = SHARED_FOLDERS[name]
        root = shared / "data" / folder if shared else None
        if root is None or not root.is_dir():
            raise FileNotFoundError(f"the real profile reads ../shared/data/{folder}: put the team's shared folder "
                                    f"beside the project (or set WORKBOOK_SHARED), or run the smoke profile")
        out[name, split] = to_imageset(load_real(reader, split, root=root), name=f"{name}-{split}", progress=False)
    return out


def duplicates_within(ds: ImageSet) -> int:
    """How many images of ``ds`` repeat, byte for byte, an earlier image of ``ds``."""
    return len(ds) - len({img.numpy().tobytes() for img in ds.images})


def shared_summary(sets: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables of the shared sets: one row per split (images, classes, the smallest and largest
    class, repeated images), and one per pair of :data:`LEAK_PAIRS` (images of the second split
    that occur byte for byte in the first, of how many)."""
    rows = []
    for (name, split), ds in sets.items():
        counts = pd.Series(ds.labels.tolist()).value_counts()
        rows.append({"set": name, "folder": SHARED_FOLDERS[name][1], "split": split, "images": len(ds),
                     "classes": ds.num_classes, "min_per_class": int(counts.min()),
                     "max_per_class": int(counts.max()), "repeated_images": duplicates_within(ds)})
    leaks = [{"training": f"{a[0]}/{a[1]}", "tested": f"{b[0]}/{b[1]}", "n": len(sets[b]),
              "shared_images": shared_images(sets[a], sets[b])} for a, b in LEAK_PAIRS]
    return pd.DataFrame(rows), pd.DataFrame(leaks)


def first_of_each_class(ds: ImageSet):
    """One image of each class of ``ds`` (the first) and the class names, for a sample grid."""
    first = [int((ds.labels == c).nonzero()[0]) for c in range(ds.num_classes)]
    return ds.images[first], [ds.classes[c][:14] for c in range(ds.num_classes)]
