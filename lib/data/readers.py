"""The per-dataset readers behind :func:`lib.data.real.load_real`, and what they build on.

A reader is ``(root, split, transform, size, **kw) -> Dataset``: it parses one dataset's
on-disk layout (index files, CSVs, .mat files, folder names) under ``root`` and returns a
dataset whose items are ``(transform(PIL RGB image), int label)`` with ``.classes`` and
``.targets``. A missing or malformed file raises :class:`MissingDataError` (path and problem),
which ``load_real`` turns into the user-facing :class:`~lib.data.base.DatasetNotFoundError`; readers
never build user-facing messages themselves. Every file an index names goes through
:func:`inside` (no absolute paths, no ``..``: an index cannot make a reader open files outside its
dataset folder) and every label read from a file is checked against the class count, the error
naming the index file, the line and the value. An image that PIL cannot decode when an item is
read raises :class:`~lib.data.base.UnreadableImageError` naming the file (:func:`open_rgb`); those
checks live in :mod:`lib.data.index_files`. Held here: the file-backed datasets (:class:`ImageFiles`,
:class:`GTSRBImages`, :class:`CifarPickles` for CIFAR-10 / CIFAR-100's pickles read through
:mod:`lib.data.safe_pickle`, torchvision's Flowers-102 with presence checks instead of md5s) and one
reader per dataset.

Kept apart from :mod:`lib.data.real` (the registry ``REAL_DATASETS``, the transforms and the
entry points), which re-exports every public name here.
"""
from __future__ import annotations

import csv
import functools
import math
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import safe_pickle
from .class_ids import GTSRB_CLASSES, IMAGENET1K_WNIDS, IMAGENET_R_INDEX, IMAGENET_R_TO_IMAGENET1K, IMAGENET_R_WNIDS
# MissingDataError, locate_folder, open_rgb and inside are re-exported (lib.data.real imports them from here)
from .index_files import (check_files, check_labels, first_file, id_table, inside, int_label,  # noqa: F401
                          locate_folder, mat_values, numbered_lines, open_rgb, read_mat, MissingDataError)

# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS). Written out,
# and torchvision imported only where a reader needs it: importing it pulls in torch._dynamo (about
# 1.5 s), which every notebook kernel paid although most never read a real dataset.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------------
# file-backed datasets
# ----------------------------------------------------------------------------------------------
class ImageFiles(Dataset):
    """Images read from files with PIL (as RGB) and passed through ``transform``.

    ``files[i]`` has label ``targets[i]``; ``classes[label]`` is its class name.
    """

    def __init__(self, files: Sequence[Path], targets: Sequence[int], classes: Sequence[str],
                 transform: Callable, name: str = "", root: Path | None = None):
        if len(files) != len(targets):
            raise ValueError("files and targets differ in length")
        self.files = [Path(f) for f in files]
        self.targets = [int(t) for t in targets]
        self.classes = list(classes)
        self.transform, self.name, self.root = transform, name, root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(open_rgb(self.files[i])), self.targets[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {len(self)} images, {len(self.classes)} classes, root={self.root})"


class GTSRBImages(ImageFiles):
    """GTSRB images with their sign's region of interest.

    ``rois``: float ``(N, 4)`` boxes ``x1, y1, x2, y2`` in pixels of the loaded ``size x size``
    image (the CSV's ``Roi.*`` times ``size/Width`` and ``size/Height``). They describe the
    evaluation view; random crops of ``train_augment`` move the sign.
    """

    def __init__(self, files, targets, csv_boxes, transform, size: int, root=None):
        super().__init__(files, targets, GTSRB_CLASSES, transform, "gtsrb", root)
        b = torch.tensor(csv_boxes, dtype=torch.float32).reshape(-1, 6)  # W, H, X1, Y1, X2, Y2
        self.size = size
        self.rois = b[:, 2:] * (size / b[:, [0, 1, 0, 1]])

    def roi_masks(self, idx=None) -> torch.Tensor:
        """Bool ``(n, size, size)`` masks: the pixels whose centre lies inside the ROI."""
        r = self.rois if idx is None else self.rois[torch.as_tensor(idx)].reshape(-1, 4)
        c = torch.arange(self.size, dtype=torch.float32) + 0.5
        cols = (c >= r[:, 0:1]) & (c <= r[:, 2:3])
        rows = (c >= r[:, 1:2]) & (c <= r[:, 3:4])
        return rows[:, :, None] & cols[:, None, :]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


def label_names(meta: dict, key: str, path: Path) -> list[str]:
    """The class names list ``key`` of a CIFAR meta pickle ``path``."""
    if not isinstance(meta.get(key), (list, tuple, np.ndarray)):
        raise MissingDataError(path, f"the pickled dict has no {key!r} list of class names")
    return [str(_text(c)) for c in meta[key]]


def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with ``str`` keys, read by :func:`lib.data.safe_pickle.load` (only
    numpy's array types allowed; a pickle naming anything else raises
    :class:`~lib.data.safe_pickle.UnsafePickleError`; one that is not a whole pickle
    :class:`MissingDataError`). Keys stored as bytes (a re-pack that read the release with
    ``encoding="bytes"``) are decoded."""
    try:
        d = safe_pickle.load(path, encoding="latin1")
    except safe_pickle.UnreadablePickleError as e:
        raise MissingDataError(path, f"not a complete pickle ({e.reason}); delete it and get a fresh copy") from None
    if not isinstance(d, dict):
        raise MissingDataError(path, f"expected a pickled dict, found {type(d).__name__}")
    return {_text(k): v for k, v in d.items()}


# ----------------------------------------------------------------------------------------------
# readers: (root, split, transform, size, **kw) -> Dataset
# ----------------------------------------------------------------------------------------------
class CifarPickles(Dataset):
    """Images of CIFAR's python release (``data``: uint8 rows ``RRR..GGG..BBB`` of 32x32, one per
    image) from the pickle ``files``, concatenated in order; ``label_key`` names the labels list.

    Read with :func:`read_cifar_pickle` (the restricted unpickler), never ``pickle.load``: this replaces
    torchvision's CIFAR classes, which unpickle the files with ``pickle.load``. Attributes as in
    torchvision: ``data`` (uint8 ``(N, 32, 32, 3)``), ``targets``, ``classes``, ``class_to_idx``.
    """

    def __init__(self, files: Sequence[Path], label_key: str, classes: Sequence[str], transform: Callable,
                 name: str = "", root: Path | None = None):
        data, targets = [], []
        for f in files:
            d = read_cifar_pickle(f)
            for key in ("data", label_key):
                if key not in d:
                    raise MissingDataError(f, f"the pickled dict has no {key!r} (keys: {sorted(map(str, d))})")
            x = np.asarray(d["data"])
            check_labels(d[label_key], len(classes), f, label_key)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(d[label_key]) != len(x):
                raise MissingDataError(f, f"'data' must be uint8 (N, 3072) with N {label_key!r}; got {x.dtype} "
                               f"{x.shape} and {len(d[label_key])} labels")
            data.append(x.reshape(-1, 3, 32, 32))
            targets += [int(t) for t in d[label_key]]
        self.data = np.ascontiguousarray(np.concatenate(data).transpose(0, 2, 3, 1))
        self.targets = targets
        self.classes = [str(_text(c)) for c in classes]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform, self.name, self.root = transform, name, root

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.data[i])
        return (self.transform(img) if self.transform else img), self.targets[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}: {len(self)} images, {len(self.classes)} classes, root={self.root})"


class CIFAR100(CifarPickles):
    """CIFAR-100's ``cifar-100-python/{train,test,meta}`` with ``label="fine"`` (100 classes) or
    ``"coarse"`` (20 superclasses); ``fine_classes`` / ``coarse_classes`` keep both name lists."""

    def __init__(self, base: Path, train: bool, transform=None, label: str = "fine"):
        meta = read_cifar_pickle(base / "meta")
        self.fine_classes = label_names(meta, "fine_label_names", base / "meta")
        self.coarse_classes = label_names(meta, "coarse_label_names", base / "meta")
        classes = self.coarse_classes if label == "coarse" else self.fine_classes
        super().__init__([base / ("train" if train else "test")], f"{label}_labels", classes, transform,
                         "cifar100", base)
        self.train = train


class CIFAR10(CifarPickles):
    """CIFAR-10's ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train),
    ``test_batch`` (test), ``batches.meta`` (``label_names``)."""

    def __init__(self, base: Path, train: bool, transform=None):
        meta = read_cifar_pickle(base / "batches.meta")
        classes = label_names(meta, "label_names", base / "batches.meta")
        files = [base / f"data_batch_{i}" for i in range(1, 6)] if train else [base / "test_batch"]
        super().__init__(files, "labels", classes, transform, "cifar10", base)
        self.train = train


def read_cifar100(root, split, tf, size, label: str = "fine"):
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    base = locate_folder(root, "cifar-100-python", (split, "meta"))
    return CIFAR100(base, train=split == "train", transform=tf, label=label)


CIFAR10_BATCHES = "cifar-10-batches-py"


def read_cifar10(root, split, tf, size):
    """The release's pickles under ``root/cifar-10-batches-py`` (or ``root`` itself when it is that
    folder); otherwise an ImageFolder ``root/<split>/<class>/*`` (e.g. the shared JPEG subset). The
    two agree on labels when the class folders carry CIFAR-10's names: ``label_names`` is alphabetical."""
    pickled = root.name == CIFAR10_BATCHES or (root / CIFAR10_BATCHES).is_dir()
    if not pickled and (root / split).is_dir():
        return image_folder_reader("cifar10")(root, split, tf, size)
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    base = locate_folder(root, CIFAR10_BATCHES, ("batches.meta", *files))
    return CIFAR10(base, train=split == "train", transform=tf)


@functools.cache
def flowers102_class() -> type:
    """torchvision's Oxford Flowers-102 reader (``classes`` are its 102 names), plus ``targets``
    (a subclass made on first use, so that importing this module does not import torchvision)."""
    import torchvision.datasets as tvd

    class Flowers102(tvd.Flowers102):
        def _check_integrity(self) -> bool:
            return True  # load_real checked that the files are there; md5s would reject re-packs

        @property
        def targets(self) -> list[int]:
            return list(self._labels)

    return Flowers102


FLOWERS_SPLIT_KEYS = {"train": "trnid", "val": "valid", "test": "tstid"}


def _check_flowers_mats(base: Path, split: str) -> None:
    """What torchvision's Flowers-102 reads, checked first (it would fail with a KeyError or take
    any number): labels in ``imagelabels.mat`` integers in 1..102, the split's image ids in
    ``setid.mat`` integers that have a label."""
    lab_path, set_path = base / "imagelabels.mat", base / "setid.mat"
    labels = mat_values(read_mat(lab_path), "labels", lab_path)
    for k, v in enumerate(labels):
        int_label(v, 102, lab_path, f"labels entry {k + 1}", first=1)
    key = FLOWERS_SPLIT_KEYS[split]
    for k, v in enumerate(mat_values(read_mat(set_path), key, set_path)):
        int_label(v, len(labels), set_path, f"{key} entry {k + 1}", "image id", first=1)


def read_flowers102(root, split, tf, size):
    base = locate_folder(root, "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"))
    _check_flowers_mats(base, split)
    ds = flowers102_class()(str(base.parent), split=split, transform=tf, loader=open_rgb)
    check_files(ds._image_files, base / "jpg")
    return ds


GTSRB_COLUMNS = ("Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId")


def _gtsrb_rows(csv_path: Path, folder: Path) -> list[tuple[Path, int, list[float]]]:
    """``(image path, ClassId, [Width, Height, Roi.X1, Roi.Y1, Roi.X2, Roi.Y2])`` per row of a GTSRB
    annotation CSV whose ``Filename``s are in ``folder``, each row checked (:func:`_gtsrb_row`)."""
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f, delimiter=";", skipinitialspace=True)
            lacking = [c for c in GTSRB_COLUMNS if c not in (reader.fieldnames or ())]
            if lacking:
                raise MissingDataError(csv_path, f"line 1: the header lacks {', '.join(lacking)}; expected "
                                                 f"{';'.join(GTSRB_COLUMNS)}")
            return [_gtsrb_row(r, folder, csv_path, reader.line_num) for r in reader]
    except (UnicodeError, csv.Error) as e:
        raise MissingDataError(csv_path, f"not a readable annotation CSV ({e})") from None


def _gtsrb_row(r: dict, folder: Path, csv_path: Path, line: int) -> tuple[Path, int, list[float]]:
    """One CSV row: ``Filename`` inside ``folder``, ``ClassId`` an integer in 0..42, the size and
    ROI finite numbers with a positive size; anything else names the CSV, the line and the value."""
    path = inside(folder, r["Filename"], csv_path, line)
    label = int_label(r["ClassId"], len(GTSRB_CLASSES), csv_path, line, "ClassId")
    try:
        box = [float(r[k]) for k in GTSRB_COLUMNS[1:7]]
    except (TypeError, ValueError):
        box = []
    if len(box) != 6 or not all(map(math.isfinite, box)) or box[0] <= 0 or box[1] <= 0:
        values = ";".join(str(r[k]) for k in GTSRB_COLUMNS[1:7])
        raise MissingDataError(csv_path, f"line {line}: Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2 must be finite "
                                         f"numbers with Width and Height > 0, got {values}")
    return path, label, box


def read_gtsrb(root, split, tf, size):
    base = root if root.name == "GTSRB" else root / "GTSRB"
    if not base.is_dir():
        raise MissingDataError(base, "folder not found")
    samples = []  # (path, ClassId, box)
    if split == "train":
        images = next((d for d in (base / "Final_Training" / "Images", base / "Training") if d.is_dir()), None)
        if images is None:
            raise MissingDataError(base / "Final_Training" / "Images", "folder not found")
        for d in sorted(p for p in images.iterdir() if p.is_dir()):
            csv_path = d / f"GT-{d.name}.csv"
            if not csv_path.is_file():
                raise MissingDataError(csv_path, "per-class annotation file not found")
            samples += _gtsrb_rows(csv_path, d)
        where = images
    else:
        where = base / "Final_Test" / "Images"
        csv_path = first_file(base / "Final_Test" / "GT-final_test.csv", base / "GT-final_test.csv",
                               base.parent / "GT-final_test.csv")
        samples = _gtsrb_rows(csv_path, where)
    check_files([p for p, _, _ in samples], where)
    return GTSRBImages([p for p, _, _ in samples], [y for _, y, _ in samples], [b for _, _, b in samples],
                       tf, size, root)


def _cub_index(base: Path) -> tuple[dict, dict, dict, list[str]]:
    """CUB's index files, checked line by line: ``{id: image path}`` (inside ``images/``),
    ``{id: 0-based label}``, ``{id: "1" | "0"}`` (training or not), and the class names in id
    order (``classes.txt``'s ids must be 1..n)."""
    names_file = base / "classes.txt"
    names = id_table(names_file)
    ids = sorted((int_label(i, 10**9, names_file, n, "class id"), v) for i, (n, v) in names.items())
    if [i for i, _ in ids] != list(range(1, len(ids) + 1)):
        raise MissingDataError(names_file, f"class ids must be 1..{len(ids)}, got {[i for i, _ in ids][:10]}")
    classes = [v for _, v in ids]
    tables = {f: id_table(base / f) for f in ("images.txt", "image_class_labels.txt", "train_test_split.txt")}
    paths, labels, is_train = {}, {}, {}
    for i, (n, rel) in tables["images.txt"].items():
        paths[i] = inside(base / "images", rel, base / "images.txt", n)
        for f in ("image_class_labels.txt", "train_test_split.txt"):
            if i not in tables[f]:
                raise MissingDataError(base / f, f"no line for image id {i} (images.txt line {n})")
        n, v = tables["image_class_labels.txt"][i]
        labels[i] = int_label(v, len(classes), base / "image_class_labels.txt", n, "class id", first=1) - 1
        n, v = tables["train_test_split.txt"][i]
        is_train[i] = str(int_label(v, 2, base / "train_test_split.txt", n, "is_training_image"))
    return paths, labels, is_train, classes


def _cub_boxes(path: Path, keep: list[str]) -> torch.Tensor:
    """``bounding_boxes.txt`` (x, y, width, height) of the images ``keep``, as ``(n, 4)``."""
    bb = id_table(path)
    rows = []
    for i in keep:
        n, v = bb.get(i, (None, ""))
        try:
            row = [float(x) for x in v.split()]
        except ValueError:
            row = []
        if n is None or len(row) != 4 or not all(map(math.isfinite, row)):
            raise MissingDataError(path, f"line {n}: expected '<id> x y width height', got {i} {v!r}" if n else
                                         f"no line for image id {i}")
        rows.append(row)
    return torch.tensor(rows).reshape(-1, 4)


def read_cub200(root, split, tf, size):
    """Class names as in ``classes.txt`` (``001.Black_footed_Albatross``); ``.boxes`` holds
    ``bounding_boxes.txt`` (x, y, width, height in original pixels) when it is there."""
    index = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    base = locate_folder(root, "CUB_200_2011", ("images", *index))
    paths, labels, is_train, classes = _cub_index(base)
    keep = [i for i in paths if is_train[i] == ("1" if split == "train" else "0")]
    files = [paths[i] for i in keep]
    check_files(files, base / "images")
    ds = ImageFiles(files, [labels[i] for i in keep], classes, tf, "cub200", root)
    ds.boxes = None
    if (base / "bounding_boxes.txt").is_file():
        ds.boxes = _cub_boxes(base / "bounding_boxes.txt", keep)
    return ds


def _dogs_list(mat_path: Path, images: Path) -> tuple[list[str], list[Path], list[int]]:
    """``file_list`` (names relative to ``images``, checked by :func:`inside`), the image paths and
    the 0-based ``labels`` (whole numbers) of a Stanford Dogs ``<split>_list.mat``."""
    m = read_mat(mat_path)
    if "file_list" not in m or "labels" not in m:
        raise MissingDataError(mat_path, "the .mat file lacks the keys file_list and labels")
    try:
        rel = [str(np.ravel(x)[0]) for x in np.ravel(m["file_list"])]
    except (IndexError, TypeError, ValueError):
        raise MissingDataError(mat_path, "file_list must be a cell array of file names") from None
    raw = mat_values(m, "labels", mat_path)
    if len(raw) != len(rel):
        raise MissingDataError(mat_path, f"file_list has {len(rel)} entries but labels {len(raw)}")
    for k, v in enumerate(raw):
        int_label(v, 10**9, mat_path, f"labels entry {k + 1}", first=1)
    files = [inside(images, r, mat_path, f"file_list entry {k + 1}") for k, r in enumerate(rel)]
    return rel, files, (raw.astype(int) - 1).tolist()


def read_stanford_dogs(root, split, tf, size):
    """Labels from ``lists/<split>_list.mat`` (1-based); label ``k`` is the k-th ``Images/``
    folder in sorted (wnid) order, named by its breed (``n02085620-Chihuahua`` -> ``Chihuahua``)."""
    base = locate_folder(root, "", ("Images",))
    mat_path = first_file(base / "lists" / f"{split}_list.mat", base / f"{split}_list.mat")
    rel, files, targets = _dogs_list(mat_path, base / "Images")
    folders = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    check_files(files, base / "Images")
    for k, (r, t) in enumerate(zip(rel, targets), 1):
        if not 0 <= t < len(folders) or Path(r).parts[0] != folders[t]:
            raise MissingDataError(mat_path, f"entry {k}: label {t + 1} of {r} does not match the sorted Images/ "
                                             "folders")
    return ImageFiles(files, targets, [f.split("-", 1)[-1] for f in folders], tf, "stanford_dogs", root)


def read_stanford40(root, split, tf, size):
    """Classes in ``actions.txt`` order (a header line ``action_name ...`` is skipped)."""
    base = locate_folder(root, "", ("JPEGImages", "ImageSplits"))
    actions_file = base / "ImageSplits" / "actions.txt"
    actions = [(n, s.split()[0]) for n, s in numbered_lines(actions_file)]
    actions = actions[1:] if actions and actions[0][1] == "action_name" else actions
    files, targets = [], []
    for k, (n, a) in enumerate(actions):
        names = numbered_lines(inside(base / "ImageSplits", f"{a}_{split}.txt", actions_file, n))
        files += [inside(base / "JPEGImages", s, base / "ImageSplits" / f"{a}_{split}.txt", m) for m, s in names]
        targets += [k] * len(names)
    check_files(files, base / "JPEGImages")
    return ImageFiles(files, targets, [a for _, a in actions], tf, "stanford40", root)


def read_mit67(root, split, tf, size):
    """Classes: the sorted ``Images/`` category folders; the index lines are ``<category>/<file>``."""
    index = "TrainImages.txt" if split == "train" else "TestImages.txt"
    base = locate_folder(root, "", ("Images", index))
    classes = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    label = {c: k for k, c in enumerate(classes)}
    rel = numbered_lines(base / index)
    files = [inside(base / "Images", r, base / index, n) for n, r in rel]
    check_files(files, base / "Images")
    for n, r in rel:
        if len(Path(r).parts) < 2 or Path(r).parts[0] not in label:
            raise MissingDataError(base / index, f"line {n}: {r!r} is not <category>/<file> with a category "
                                                 "folder of Images/")
    return ImageFiles(files, [label[Path(r).parts[0]] for _, r in rel], classes, tf, "mit67", root)


def read_imagenet_r(root, split, tf, size, label_space: str = "imagenet_r", seed: int = 0,
                test_fraction: float = 0.2):
    """``label_space="imagenet_r"``: labels 0..199 (position in ``IMAGENET_R_WNIDS``);
    ``"imagenet1k"``: ImageNet-1k indices (``classes`` are then the 1000 ImageNet-1k wnids).
    Labels are fixed by the wnid, so a copy with only some folders keeps them. Split: per wnid
    folder, the sorted files are shuffled with a seed from ``(seed, wnid)`` and
    ``round(test_fraction * n)`` of them (at least 1 and at most n-1 when n >= 2) go to test."""
    if label_space not in ("imagenet_r", "imagenet1k"):
        raise ValueError(f"label_space must be 'imagenet_r' or 'imagenet1k', got {label_space!r}")
    base = locate_folder(root, "imagenet-r")
    folders = sorted(d for d in base.iterdir() if d.is_dir())
    unknown = [d.name for d in folders if d.name not in IMAGENET_R_INDEX]
    if unknown:
        raise MissingDataError(base, f"folders that are not ImageNet-R wnids: {unknown[:5]}")
    files, targets = [], []
    for d in folders:
        imgs = _image_files(d)
        if split != "all":
            n = len(imgs)
            n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
            g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{d.name}".encode()))
            test = set(torch.randperm(n, generator=g)[:n_test].tolist())
            imgs = [p for i, p in enumerate(imgs) if (i in test) == (split == "test")]
        k = IMAGENET_R_INDEX[d.name]
        files += imgs
        targets += [k if label_space == "imagenet_r" else IMAGENET_R_TO_IMAGENET1K[k]] * len(imgs)
    check_files(files, base)
    classes = IMAGENET_R_WNIDS if label_space == "imagenet_r" else IMAGENET1K_WNIDS
    return ImageFiles(files, targets, classes, tf, "imagenet_r", root)


def image_folder_reader(name: str):
    """A reader of a torchvision ``ImageFolder`` at ``<root>/<split>/<class>/*``."""
    def read(root, split, tf, size):
        folder = root / split
        if not folder.is_dir():
            raise MissingDataError(folder, "split folder not found")
        from torchvision.datasets import ImageFolder

        try:
            return ImageFolder(str(folder), transform=tf, loader=open_rgb)
        except FileNotFoundError as e:  # no class folder, or a class folder without images
            raise MissingDataError(folder, str(e)) from None
    return read
