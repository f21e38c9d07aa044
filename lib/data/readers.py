"""The per-dataset readers behind :func:`lib.data.real.load_real`, and what they build on.

A reader is ``(root, split, transform, size, **kw) -> Dataset``: it parses one dataset's
on-disk layout (index files, CSVs, .mat files, folder names) under ``root`` and returns a
dataset whose items are ``(transform(PIL RGB image), int label)`` with ``.classes`` and
``.targets``. A missing or malformed file raises :class:`MissingDataError` (path and problem),
which ``load_real`` turns into the user-facing :class:`~lib.data.base.DatasetNotFoundError`; readers
never build user-facing messages themselves. Held here: the file-backed datasets
(:class:`ImageFiles`, :class:`GTSRBImages`, :class:`CifarPickles` for CIFAR-10 / CIFAR-100's
pickles read through :mod:`lib.data.safe_pickle`, torchvision's Flowers-102 with presence checks
instead of md5s), the small path/index helpers, and one reader per dataset.

Kept apart from :mod:`lib.data.real` (the registry ``REAL_DATASETS``, the transforms and the
entry points), which re-exports every public name here.
"""
from __future__ import annotations

import csv
import functools
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import safe_pickle
from .class_ids import GTSRB_CLASSES, IMAGENET1K_WNIDS, IMAGENET_R_INDEX, IMAGENET_R_TO_IMAGENET1K, IMAGENET_R_WNIDS

# torchvision's ImageFolder extensions (torchvision.datasets.folder.IMG_EXTENSIONS). Written out,
# and torchvision imported only where a reader needs it: importing it pulls in torch._dynamo (about
# 1.5 s), which every notebook kernel paid although most never read a real dataset.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class MissingDataError(Exception):
    """A missing or malformed file (``path``, ``problem``), raised by the readers; :func:`load_real`
    turns it into a :class:`DatasetNotFoundError`."""

    def __init__(self, path: Path, problem: str = ""):
        super().__init__(str(path))
        self.path, self.problem = Path(path), problem


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
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB")), self.targets[i]

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
def locate_folder(root: Path, inner: str, required: Sequence[str] = ()) -> Path:
    """The dataset folder: ``root/inner`` (or ``root`` itself when it is named ``inner``),
    holding every path in ``required``."""
    base = root if not inner or root.name == inner else root / inner
    if not base.is_dir():
        raise MissingDataError(base, "folder not found")
    for r in required:
        if not (base / r).exists():
            raise MissingDataError(base / r, "required file or folder not found")
    return base


def _first_file(*candidates: Path) -> Path:
    """The first of ``candidates`` that exists (the error names the first one)."""
    for c in candidates:
        if c.is_file():
            return c
    raise MissingDataError(candidates[0], "index file not found")


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text index file."""
    if not path.is_file():
        raise MissingDataError(path, "index file not found")
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def _id_table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines (CUB's index files) as ``{id: value}`` in file order."""
    return dict(s.split(maxsplit=1) for s in _lines(path))


def _check_files(files: Sequence[Path], where: Path) -> None:
    if not files:
        raise MissingDataError(where, "no images found")
    for f in files:
        if not f.is_file():
            raise MissingDataError(f, "an image listed in the index is missing")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR pickle as a dict with ``str`` keys, read by :func:`lib.data.safe_pickle.load` (only
    numpy's array types allowed; a pickle naming anything else raises
    :class:`~lib.data.safe_pickle.UnsafePickleError`). Keys stored as bytes (a re-pack that read the
    release with ``encoding="bytes"``) are decoded."""
    d = safe_pickle.load(path, encoding="latin1")
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
        for key in ("fine_label_names", "coarse_label_names"):
            if key not in meta:
                raise MissingDataError(base / "meta", f"the pickled dict has no {key!r}")
        self.fine_classes = [str(_text(c)) for c in meta["fine_label_names"]]
        self.coarse_classes = [str(_text(c)) for c in meta["coarse_label_names"]]
        classes = self.coarse_classes if label == "coarse" else self.fine_classes
        super().__init__([base / ("train" if train else "test")], f"{label}_labels", classes, transform,
                         "cifar100", base)
        self.train = train


class CIFAR10(CifarPickles):
    """CIFAR-10's ``cifar-10-batches-py/``: ``data_batch_1`` .. ``data_batch_5`` (train),
    ``test_batch`` (test), ``batches.meta`` (``label_names``)."""

    def __init__(self, base: Path, train: bool, transform=None):
        meta = read_cifar_pickle(base / "batches.meta")
        if "label_names" not in meta:
            raise MissingDataError(base / "batches.meta", "the pickled dict has no 'label_names'")
        files = [base / f"data_batch_{i}" for i in range(1, 6)] if train else [base / "test_batch"]
        super().__init__(files, "labels", meta["label_names"], transform, "cifar10", base)
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


def read_flowers102(root, split, tf, size):
    base = locate_folder(root, "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"))
    ds = flowers102_class()(str(base.parent), split=split, transform=tf)
    _check_files(ds._image_files, base / "jpg")
    return ds


def _gtsrb_rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f, delimiter=";", skipinitialspace=True))


def read_gtsrb(root, split, tf, size):
    base = root if root.name == "GTSRB" else root / "GTSRB"
    if not base.is_dir():
        raise MissingDataError(base, "folder not found")
    samples = []  # (path, row)
    if split == "train":
        images = next((d for d in (base / "Final_Training" / "Images", base / "Training") if d.is_dir()), None)
        if images is None:
            raise MissingDataError(base / "Final_Training" / "Images", "folder not found")
        for d in sorted(p for p in images.iterdir() if p.is_dir()):
            csv_path = d / f"GT-{d.name}.csv"
            if not csv_path.is_file():
                raise MissingDataError(csv_path, "per-class annotation file not found")
            samples += [(d / r["Filename"], r) for r in _gtsrb_rows(csv_path)]
        where = images
    else:
        where = base / "Final_Test" / "Images"
        csv_path = _first_file(base / "Final_Test" / "GT-final_test.csv", base / "GT-final_test.csv",
                               base.parent / "GT-final_test.csv")
        samples = [(where / r["Filename"], r) for r in _gtsrb_rows(csv_path)]
    _check_files([p for p, _ in samples], where)
    keys = ("Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2")
    try:
        targets = [int(r["ClassId"]) for _, r in samples]
        boxes = [[float(r[k]) for k in keys] for _, r in samples]
    except (KeyError, TypeError, ValueError) as e:
        raise MissingDataError(where, f"annotation CSV lacks a column or value ({e!r}); expected "
                       "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId") from None
    return GTSRBImages([p for p, _ in samples], targets, boxes, tf, size, root)


def read_cub200(root, split, tf, size):
    """Class names as in ``classes.txt`` (``001.Black_footed_Albatross``); ``.boxes`` holds
    ``bounding_boxes.txt`` (x, y, width, height in original pixels) when it is there."""
    index = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    base = locate_folder(root, "CUB_200_2011", ("images", *index))
    paths, labels, is_train, names = (_id_table(base / f) for f in index)
    keep = [i for i in paths if is_train[i] == ("1" if split == "train" else "0")]
    files = [base / "images" / paths[i] for i in keep]
    _check_files(files, base / "images")
    classes = [names[k] for k in sorted(names, key=int)]
    ds = ImageFiles(files, [int(labels[i]) - 1 for i in keep], classes, tf, "cub200", root)
    ds.boxes = None
    if (base / "bounding_boxes.txt").is_file():
        bb = _id_table(base / "bounding_boxes.txt")
        ds.boxes = torch.tensor([[float(v) for v in bb[i].split()] for i in keep]).reshape(-1, 4)
    return ds


def read_stanford_dogs(root, split, tf, size):
    """Labels from ``lists/<split>_list.mat`` (1-based); label ``k`` is the k-th ``Images/``
    folder in sorted (wnid) order, named by its breed (``n02085620-Chihuahua`` -> ``Chihuahua``)."""
    from scipy.io import loadmat

    base = locate_folder(root, "", ("Images",))
    mat_path = _first_file(base / "lists" / f"{split}_list.mat", base / f"{split}_list.mat")
    m = loadmat(mat_path)
    if "file_list" not in m or "labels" not in m:
        raise MissingDataError(mat_path, "the .mat file lacks the keys file_list and labels")
    rel = [str(np.ravel(x)[0]) for x in np.ravel(m["file_list"])]
    targets = (np.ravel(m["labels"]).astype(int) - 1).tolist()
    folders = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    files = [base / "Images" / r for r in rel]
    _check_files(files, base / "Images")
    for r, t in zip(rel, targets):
        if not 0 <= t < len(folders) or Path(r).parts[0] != folders[t]:
            raise MissingDataError(mat_path, f"label {t + 1} of {r} does not match the sorted Images/ folders")
    return ImageFiles(files, targets, [f.split("-", 1)[-1] for f in folders], tf, "stanford_dogs", root)


def read_stanford40(root, split, tf, size):
    """Classes in ``actions.txt`` order (a header line ``action_name ...`` is skipped)."""
    base = locate_folder(root, "", ("JPEGImages", "ImageSplits"))
    actions = [s.split()[0] for s in _lines(base / "ImageSplits" / "actions.txt")]
    actions = actions[1:] if actions and actions[0] == "action_name" else actions
    files, targets = [], []
    for k, a in enumerate(actions):
        names = _lines(base / "ImageSplits" / f"{a}_{split}.txt")
        files += [base / "JPEGImages" / n for n in names]
        targets += [k] * len(names)
    _check_files(files, base / "JPEGImages")
    return ImageFiles(files, targets, actions, tf, "stanford40", root)


def read_mit67(root, split, tf, size):
    """Classes: the sorted ``Images/`` category folders; the index lines are ``<category>/<file>``."""
    index = "TrainImages.txt" if split == "train" else "TestImages.txt"
    base = locate_folder(root, "", ("Images", index))
    classes = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    label = {c: k for k, c in enumerate(classes)}
    rel = _lines(base / index)
    files = [base / "Images" / r for r in rel]
    _check_files(files, base / "Images")
    return ImageFiles(files, [label[Path(r).parts[0]] for r in rel], classes, tf, "mit67", root)


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
    _check_files(files, base)
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
            return ImageFolder(str(folder), transform=tf)
        except FileNotFoundError as e:  # no class folder, or a class folder without images
            raise MissingDataError(folder, str(e)) from None
    return read
