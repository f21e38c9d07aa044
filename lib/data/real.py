"""Real datasets, read from the on-disk layouts they ship in. Nothing here downloads.

``load_real(name, split, root=None, size=None, train_augment=False, **kw)`` returns a torch
``Dataset`` of ``(float image (3, size, size) in [0, 1], int label)`` with ``.classes`` (names
indexed by label) and ``.targets`` (one int per item). Images are not normalised (the model
holds its ``Normalize`` layer).

``root=None`` means ``lib.paths.data_dir() / <name>`` (``data/cifar100``, ``data/gtsrb``, ...;
``WORKBOOK_DATA`` moves ``data/``). ``REAL_DATASETS[name].layout`` spells out what must be
under that root; a missing or malformed dataset raises
:class:`~lib.data.base.DatasetNotFoundError` naming the dataset, the exact path looked at and
that layout (its first line alone says the file and what is wrong: an index entry outside the
dataset folder, a label out of range, a truncated pickle, with the line). For CIFAR-100, Flowers-102
and GTSRB the error says which torchvision class can fetch the data with ``download=True``; this
package never does it for you. An image file that cannot be decoded when an item is read raises
:class:`~lib.data.base.UnreadableImageError` naming it; a tampered pickle
:class:`~lib.data.safe_pickle.UnsafePickleError`. All three are :class:`~lib.data.base.DataError`.

Sizes: ``size=None`` gives the dataset's native small size for the 32-px sets (CIFAR: 32; GTSRB,
whose photographs range from 15 to 250 px, is resized to the 32x32 the literature trains on) and
224 for the others. Evaluation transform: ``Resize(size)`` on the shortest side then
``CenterCrop(size)`` (GTSRB: ``Resize((size, size))``, which keeps the whole sign and lets its ROI
be scaled per axis). ``train_augment=True``: ``RandomResizedCrop(size)`` (scale 0.5-1 on the
32-px sets, the ImageNet default 0.08-1 on the others) and a horizontal flip
(none for GTSRB: signs are not mirror-symmetric).

CIFAR-10 and CIFAR-100's files are pickles: they are read by :mod:`lib.data.safe_pickle`, which
allows only the numpy array types they hold and refuses (naming what and where) a pickle that asks
for anything else, so a tampered copy cannot run code. (Torchvision's CIFAR classes use plain
``pickle.load``; they are not used.) ``cifar10`` reads the release's ``cifar-10-batches-py/`` or,
when that folder is absent, an ImageFolder ``<root>/<split>/<class>/`` (``cifar10_folder`` reads
only the latter). Flowers-102 goes through torchvision's class with its md5 check replaced by
presence checks (so re-packed copies and test fixtures load).

This module holds the registry (:class:`RealSpec`, ``REAL_DATASETS``), the transforms and the
entry points; the per-dataset readers are in :mod:`lib.data.readers` and the class-id tables in
:mod:`lib.data.class_ids`. Their names are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch.utils.data import Dataset

from ..paths import data_dir
from .base import DataError, DatasetNotFoundError, UnreadableImageError  # noqa: F401

# The class-id tables and the readers live in their own modules; their public names are
# re-exported here (tests, lib.studies.bases and lib.data import from here).
from .class_ids import (  # noqa: F401
    GTSRB_CLASSES,
    IMAGENET1K_WNIDS,
    IMAGENET_R_INDEX,
    IMAGENET_R_TO_IMAGENET1K,
    IMAGENET_R_WNIDS,
)
from .index_files import check_labels
from .readers import (  # noqa: F401
    CIFAR10,
    CIFAR10_BATCHES,
    CIFAR100,
    IMAGE_EXTENSIONS,
    CifarPickles,
    GTSRBImages,
    ImageFiles,
    MissingDataError,
    flowers102_class,
    image_folder_reader,
    inside,
    locate_folder,
    open_rgb,
    read_cifar10,
    read_cifar100,
    read_cifar_pickle,
    read_cub200,
    read_flowers102,
    read_gtsrb,
    read_imagenet_r,
    read_mit67,
    read_stanford40,
    read_stanford_dogs,
)


def _transform(size: int, augment: bool, small: bool, flip: bool, square: bool) -> Callable:
    import torchvision.transforms as T  # here, not at the top: see readers.IMAGE_EXTENSIONS

    if augment:
        ops = [T.RandomResizedCrop(size, scale=(0.5, 1.0) if small else (0.08, 1.0))]
        ops += [T.RandomHorizontalFlip()] if flip else []
    elif square:
        ops = [T.Resize((size, size))]
    else:
        ops = [T.Resize(size), T.CenterCrop(size)]
    return T.Compose([*ops, T.ToTensor()])


# ----------------------------------------------------------------------------------------------
# the registry and the entry points
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RealSpec:
    """How to read one real dataset.

    ``folder``: default root ``data_dir() / folder``; ``layout``: the expected files (shown in
    errors); ``splits``: valid split names (``None``: any subfolder); ``size``: native size
    when ``size=None``; ``flip``: flip in ``train_augment``; ``square``: resize to
    ``(size, size)`` instead of resize-and-centre-crop; ``download``: the torchvision call that
    fetches it (said in errors, never run).
    """

    folder: str
    layout: str
    splits: tuple[str, ...] | None
    size: int
    read: Callable
    flip: bool = True
    square: bool = False
    download: str = ""


REAL_DATASETS: dict[str, RealSpec] = {
    "cifar10": RealSpec(
        "cifar10",
        "<root>/cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch,batches.meta}: the python\n"
        "  pickles of the CIFAR-10 release; batches: dicts with data (N x 3072 uint8, RRR..GGG..BBB),\n"
        "  labels, batch_label, filenames; batches.meta: label_names\n"
        "  (or, without cifar-10-batches-py, an ImageFolder <root>/{train,test}/<class>/*.png|jpg)",
        ("train", "test"), 32, read_cifar10,
        download="torchvision.datasets.CIFAR10(root='{root}', download=True)"),
    "cifar100": RealSpec(
        "cifar100",
        "<root>/cifar-100-python/{train,test,meta}: the python pickles of the CIFAR-100 release\n"
        "  train/test: dicts with data (N x 3072 uint8, RRR..GGG..BBB), fine_labels, coarse_labels\n"
        "  meta: fine_label_names, coarse_label_names\n"
        "kw: label='fine' (100 classes) | 'coarse' (20 superclasses)",
        ("train", "test"), 32, read_cifar100,
        download="torchvision.datasets.CIFAR100(root='{root}', download=True)"),
    "flowers102": RealSpec(
        "flowers102",
        "<root>/flowers-102/jpg/image_00001.jpg ... image_08189.jpg\n"
        "<root>/flowers-102/imagelabels.mat (key labels, 1-based)\n"
        "<root>/flowers-102/setid.mat (keys trnid, valid, tstid)",
        ("train", "val", "test"), 224, read_flowers102,
        download="torchvision.datasets.Flowers102(root='{root}', split=..., download=True)"),
    "gtsrb": RealSpec(
        "gtsrb",
        "<root>/GTSRB/Final_Training/Images/000CC/*.ppm with GT-000CC.csv in each class folder\n"
        "<root>/GTSRB/Final_Test/Images/*.ppm with <root>/GTSRB/Final_Test/GT-final_test.csv\n"
        "  CSVs: Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
        "  (<root> may be the GTSRB folder itself; torchvision's download layout, GTSRB/Training/\n"
        "  and <root>/GT-final_test.csv, is read too)",
        ("train", "test"), 32, read_gtsrb, flip=False, square=True,
        download="torchvision.datasets.GTSRB(root='{parent}', split=..., download=True) "
                 "(it writes {parent}/gtsrb: pass that folder as root)"),
    "cub200": RealSpec(
        "cub200",
        "<root>/CUB_200_2011/images/<NNN.Class_Name>/*.jpg\n"
        "<root>/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt}\n"
        "  (lines '<id> <value>'; labels 1-based; is_training 1/0; bounding_boxes.txt optional)",
        ("train", "test"), 224, read_cub200),
    "stanford_dogs": RealSpec(
        "stanford_dogs",
        "<root>/Images/n02085620-Chihuahua/*.jpg (120 breed folders)\n"
        "<root>/lists/{train_list.mat, test_list.mat} (keys file_list, labels 1-based; "
        "lists/ may be flattened into <root>)",
        ("train", "test"), 224, read_stanford_dogs),
    "stanford40": RealSpec(
        "stanford40",
        "<root>/JPEGImages/<action>_NNN.jpg\n"
        "<root>/ImageSplits/actions.txt (header 'action_name number_of_images', then one action a line)\n"
        "<root>/ImageSplits/<action>_train.txt, <action>_test.txt (one image file name a line)",
        ("train", "test"), 224, read_stanford40),
    "mit67": RealSpec(
        "mit67",
        "<root>/Images/<category>/*.jpg (67 category folders)\n"
        "<root>/TrainImages.txt, <root>/TestImages.txt (lines like kitchen/int474.jpg)",
        ("train", "test"), 224, read_mit67),
    "imagenet_r": RealSpec(
        "imagenet_r",
        "<root>/imagenet-r/<wnid>/*.jpg (200 ImageNet wnid folders; <root> may be imagenet-r itself)\n"
        "  no official split: train/test is a seeded 80/20 split per class; split='all' is everything\n"
        "kw: label_space='imagenet_r' (0..199) | 'imagenet1k', seed=0, test_fraction=0.2",
        ("train", "test", "all"), 224, read_imagenet_r),
    "cifar10_folder": RealSpec(
        "cifar10_folder",
        "<root>/{train,test}/<class>/*.jpg (torchvision ImageFolder; e.g. shared/data/cifar10-jpg-subset)",
        ("train", "test"), 32, image_folder_reader("cifar10_folder")),
    "image_folder": RealSpec(
        "image_folder",
        "<root>/<split>/<class>/*.jpg (torchvision ImageFolder; any split folder name)",
        None, 224, image_folder_reader("image_folder")),
}


def _error(name: str, root: Path, e: MissingDataError) -> DatasetNotFoundError:
    spec = REAL_DATASETS[name]
    hint = [f"Put it under {data_dir() / spec.folder} (the default root) or pass root=... "
            f"(this call used root={root})."]
    if spec.download:
        call = spec.download.format(root=root, parent=root.parent)
        hint.append(f"torchvision can fetch it: {call}. This workbook never downloads.")
    return DatasetNotFoundError(name, e.path, spec.layout, "\n".join(hint), problem=e.problem)


def load_real(name: str, split: str = "train", root=None, size: int | None = None,
              train_augment: bool = False, **kw) -> Dataset:
    """One split of a real dataset (see ``REAL_DATASETS[name].layout`` for the files).

    Items are ``(float (3, size, size) in [0, 1], int label)``; the dataset has ``.classes`` and
    ``.targets``. ``kw`` goes to the reader (``label`` for cifar100; ``label_space``, ``seed``,
    ``test_fraction`` for imagenet_r).
    """
    if name not in REAL_DATASETS:
        raise ValueError(f"unknown real dataset {name!r}; known: {sorted(REAL_DATASETS)}")
    spec = REAL_DATASETS[name]
    if spec.splits is not None and split not in spec.splits:
        raise ValueError(f"{name} has splits {list(spec.splits)}, got {split!r}")
    root = Path(root).expanduser() if root is not None else data_dir() / spec.folder
    size = int(size or spec.size)
    tf = _transform(size, train_augment, small=spec.size <= 64, flip=spec.flip, square=spec.square)
    try:
        if not root.is_dir():
            raise MissingDataError(root, "folder not found")
        return spec.read(root, split, tf, size, **kw)
    except MissingDataError as e:
        raise _error(name, root, e) from None


def image_folder(root, split: str = "train", size: int | None = None,
                 train_augment: bool = False) -> Dataset:
    """A torchvision ``ImageFolder`` at ``<root>/<split>/<class>/*`` (224 px unless ``size``)."""
    return load_real("image_folder", split, root=root, size=size, train_augment=train_augment)


def cifar100_superclass_tasks(root=None) -> list[list[int]]:
    """CIFAR-100's 20 superclass tasks: ``tasks[c]`` = the sorted fine labels whose coarse label
    is ``c`` (5 each in the real data), read from the training file's ``fine_labels`` and
    ``coarse_labels``."""
    root = Path(root).expanduser() if root is not None else data_dir() / REAL_DATASETS["cifar100"].folder
    try:
        base = locate_folder(root, "cifar-100-python", ("train",))
        d = read_cifar_pickle(base / "train")
        for key, count in (("fine_labels", 100), ("coarse_labels", 20)):
            if key not in d:
                raise MissingDataError(base / "train", f"the pickled dict has no {key!r}")
            check_labels(d[key], count, base / "train", key)
        if len(d["fine_labels"]) != len(d["coarse_labels"]):
            raise MissingDataError(base / "train", "fine_labels and coarse_labels differ in length")
        coarse_of: dict[int, int] = {}
        for f, c in zip(d["fine_labels"], d["coarse_labels"]):
            if coarse_of.setdefault(int(f), int(c)) != int(c):
                raise MissingDataError(base / "train", f"fine class {f} has two coarse labels "
                                                       f"({coarse_of[int(f)]} and {c})")
    except MissingDataError as e:
        raise _error("cifar100", root, e) from None
    return [sorted(f for f, c in coarse_of.items() if c == k) for k in sorted(set(coarse_of.values()))]
