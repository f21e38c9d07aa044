"""Real datasets, read from the on-disk layouts they ship in. Nothing here downloads.

``load_real(name, split, root=None, size=None, train_augment=False, **kw)`` returns a torch
``Dataset`` of ``(float image (3, size, size) in [0, 1], int label)`` with ``.classes`` (names
indexed by label) and ``.targets`` (one int per item). Images are not normalised (the model
holds its ``Normalize`` layer).

``root=None`` means ``lib.paths.data_dir() / <name>`` (``data/cifar100``, ``data/gtsrb``, ...;
``WORKBOOK_DATA`` moves ``data/``). ``REAL_DATASETS[name].layout`` spells out what must be
under that root; a missing or malformed dataset raises
:class:`~lib.data.base.DatasetNotFoundError` naming the dataset, the exact path looked at and
that layout. For CIFAR-100, Flowers-102 and GTSRB the error says which torchvision class can
fetch the data with ``download=True``; this package never does it for you.

Sizes: ``size=None`` gives the dataset's native small size for the 32-px sets (CIFAR: 32; GTSRB
is resized to 32x32) and 224 for the others. Evaluation transform: ``Resize(size)`` on the
shortest side then ``CenterCrop(size)`` (GTSRB: ``Resize((size, size))``, which keeps the whole
sign and lets its ROI be scaled per axis). ``train_augment=True``: ``RandomResizedCrop(size)``
(scale 0.5-1 on the 32-px sets, the ImageNet default 0.08-1 on the others) and a horizontal flip
(none for GTSRB: signs are not mirror-symmetric).

CIFAR-100 and Flowers-102 go through torchvision's classes. Their md5 checks are replaced by
presence checks (so re-packed copies and test fixtures load); CIFAR's files are pickles, read
with ``pickle`` as torchvision does: only load copies you trust.
"""
from __future__ import annotations

import csv
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision.datasets as tvd
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import Dataset

from ..paths import data_dir
from .base import DatasetNotFoundError

IMAGE_EXTENSIONS = tvd.folder.IMG_EXTENSIONS


class _Missing(Exception):
    """Raised by the readers; :func:`load_real` turns it into a :class:`DatasetNotFoundError`."""

    def __init__(self, path: Path, problem: str = ""):
        super().__init__(str(path))
        self.path, self.problem = Path(path), problem


# ----------------------------------------------------------------------------------------------
# a file-backed dataset
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


# GTSRB's 43 sign names, indexed by ClassId.
GTSRB_CLASSES = [
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)", "Speed limit (60km/h)",
    "Speed limit (70km/h)", "Speed limit (80km/h)", "End of speed limit (80km/h)",
    "Speed limit (100km/h)", "Speed limit (120km/h)", "No passing",
    "No passing for vehicles over 3.5 metric tons", "Right-of-way at the next intersection",
    "Priority road", "Yield", "Stop", "No vehicles", "Vehicles over 3.5 metric tons prohibited",
    "No entry", "General caution", "Dangerous curve to the left", "Dangerous curve to the right",
    "Double curve", "Bumpy road", "Slippery road", "Road narrows on the right", "Road work",
    "Traffic signals", "Pedestrians", "Children crossing", "Bicycles crossing",
    "Beware of ice/snow", "Wild animals crossing", "End of all speed and passing limits",
    "Turn right ahead", "Turn left ahead", "Ahead only", "Go straight or right",
    "Go straight or left", "Keep right", "Keep left", "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
]


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
def _locate(root: Path, inner: str, required: Sequence[str] = ()) -> Path:
    """The dataset folder: ``root/inner`` (or ``root`` itself when it is named ``inner``),
    holding every path in ``required``."""
    base = root if not inner or root.name == inner else root / inner
    if not base.is_dir():
        raise _Missing(base, "folder not found")
    for r in required:
        if not (base / r).exists():
            raise _Missing(base / r, "required file or folder not found")
    return base


def _first_file(*candidates: Path) -> Path:
    """The first of ``candidates`` that exists (the error names the first one)."""
    for c in candidates:
        if c.is_file():
            return c
    raise _Missing(candidates[0], "index file not found")


def _lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text index file."""
    if not path.is_file():
        raise _Missing(path, "index file not found")
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def _id_table(path: Path) -> dict[str, str]:
    """``<id> <value>`` lines (CUB's index files) as ``{id: value}`` in file order."""
    return dict(s.split(maxsplit=1) for s in _lines(path))


def _check_files(files: Sequence[Path], where: Path) -> None:
    if not files:
        raise _Missing(where, "no images found")
    for f in files:
        if not f.is_file():
            raise _Missing(f, "an image listed in the index is missing")


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def _transform(size: int, augment: bool, small: bool, flip: bool, square: bool) -> T.Compose:
    if augment:
        ops = [T.RandomResizedCrop(size, scale=(0.5, 1.0) if small else (0.08, 1.0))]
        ops += [T.RandomHorizontalFlip()] if flip else []
    elif square:
        ops = [T.Resize((size, size))]
    else:
        ops = [T.Resize(size), T.CenterCrop(size)]
    return T.Compose([*ops, T.ToTensor()])


# ----------------------------------------------------------------------------------------------
# readers: (root, split, transform, size, **kw) -> Dataset
# ----------------------------------------------------------------------------------------------
class CIFAR100(tvd.CIFAR100):
    """torchvision's CIFAR-100 with ``label="fine"`` (100 classes) or ``"coarse"`` (20
    superclasses). ``fine_classes`` / ``coarse_classes`` keep both name lists."""

    def __init__(self, root, train: bool, transform=None, label: str = "fine"):
        super().__init__(str(root), train=train, transform=transform)
        if label == "coarse":
            name = "train" if train else "test"
            self.targets = list(_unpickle(Path(root) / self.base_folder / name)["coarse_labels"])
            self.classes = list(self.coarse_classes)
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    def _check_integrity(self) -> bool:
        return True  # load_real checked that the files are there; md5s would reject re-packs

    def _load_meta(self) -> None:
        meta = _unpickle(Path(self.root) / self.base_folder / self.meta["filename"])
        self.classes = self.fine_classes = list(meta["fine_label_names"])
        self.coarse_classes = list(meta["coarse_label_names"])
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


def _cifar100(root, split, tf, size, label: str = "fine"):
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    base = _locate(root, "cifar-100-python", (split, "meta"))
    return CIFAR100(base.parent, train=split == "train", transform=tf, label=label)


def cifar100_superclass_tasks(root=None) -> list[list[int]]:
    """CIFAR-100's 20 superclass tasks: ``tasks[c]`` = the sorted fine labels whose coarse label
    is ``c`` (5 each in the real data), read from the training file's ``fine_labels`` and
    ``coarse_labels``."""
    root = Path(root).expanduser() if root is not None else data_dir() / REAL_DATASETS["cifar100"].folder
    try:
        base = _locate(root, "cifar-100-python", ("train",))
    except _Missing as e:
        raise _error("cifar100", root, e) from None
    d = _unpickle(base / "train")
    coarse_of: dict[int, int] = {}
    for f, c in zip(d["fine_labels"], d["coarse_labels"]):
        if coarse_of.setdefault(int(f), int(c)) != int(c):
            raise ValueError(f"fine class {f} has two coarse labels in {base / 'train'}")
    return [sorted(f for f, c in coarse_of.items() if c == k) for k in sorted(set(coarse_of.values()))]


class Flowers102(tvd.Flowers102):
    """torchvision's Oxford Flowers-102 reader (``classes`` are its 102 names), plus ``targets``."""

    def _check_integrity(self) -> bool:
        return True  # load_real checked that the files are there; md5s would reject re-packs

    @property
    def targets(self) -> list[int]:
        return list(self._labels)


def _flowers102(root, split, tf, size):
    base = _locate(root, "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"))
    ds = Flowers102(str(base.parent), split=split, transform=tf)
    _check_files(ds._image_files, base / "jpg")
    return ds


def _gtsrb_rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f, delimiter=";", skipinitialspace=True))


def _gtsrb(root, split, tf, size):
    base = root if root.name == "GTSRB" else root / "GTSRB"
    if not base.is_dir():
        raise _Missing(base, "folder not found")
    samples = []  # (path, row)
    if split == "train":
        images = next((d for d in (base / "Final_Training" / "Images", base / "Training") if d.is_dir()), None)
        if images is None:
            raise _Missing(base / "Final_Training" / "Images", "folder not found")
        for d in sorted(p for p in images.iterdir() if p.is_dir()):
            csv_path = d / f"GT-{d.name}.csv"
            if not csv_path.is_file():
                raise _Missing(csv_path, "per-class annotation file not found")
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
        raise _Missing(where, f"annotation CSV lacks a column or value ({e!r}); expected "
                       "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId") from None
    return GTSRBImages([p for p, _ in samples], targets, boxes, tf, size, root)


def _cub200(root, split, tf, size):
    """Class names as in ``classes.txt`` (``001.Black_footed_Albatross``); ``.boxes`` holds
    ``bounding_boxes.txt`` (x, y, width, height in original pixels) when it is there."""
    index = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")
    base = _locate(root, "CUB_200_2011", ("images", *index))
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


def _stanford_dogs(root, split, tf, size):
    """Labels from ``lists/<split>_list.mat`` (1-based); label ``k`` is the k-th ``Images/``
    folder in sorted (wnid) order, named by its breed (``n02085620-Chihuahua`` -> ``Chihuahua``)."""
    from scipy.io import loadmat

    base = _locate(root, "", ("Images",))
    mat_path = _first_file(base / "lists" / f"{split}_list.mat", base / f"{split}_list.mat")
    m = loadmat(mat_path)
    if "file_list" not in m or "labels" not in m:
        raise _Missing(mat_path, "the .mat file lacks the keys file_list and labels")
    rel = [str(np.ravel(x)[0]) for x in np.ravel(m["file_list"])]
    targets = (np.ravel(m["labels"]).astype(int) - 1).tolist()
    folders = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    files = [base / "Images" / r for r in rel]
    _check_files(files, base / "Images")
    for r, t in zip(rel, targets):
        if not 0 <= t < len(folders) or Path(r).parts[0] != folders[t]:
            raise _Missing(mat_path, f"label {t + 1} of {r} does not match the sorted Images/ folders")
    return ImageFiles(files, targets, [f.split("-", 1)[-1] for f in folders], tf, "stanford_dogs", root)


def _stanford40(root, split, tf, size):
    """Classes in ``actions.txt`` order (a header line ``action_name ...`` is skipped)."""
    base = _locate(root, "", ("JPEGImages", "ImageSplits"))
    actions = [s.split()[0] for s in _lines(base / "ImageSplits" / "actions.txt")]
    actions = actions[1:] if actions and actions[0] == "action_name" else actions
    files, targets = [], []
    for k, a in enumerate(actions):
        names = _lines(base / "ImageSplits" / f"{a}_{split}.txt")
        files += [base / "JPEGImages" / n for n in names]
        targets += [k] * len(names)
    _check_files(files, base / "JPEGImages")
    return ImageFiles(files, targets, actions, tf, "stanford40", root)


def _mit67(root, split, tf, size):
    """Classes: the sorted ``Images/`` category folders; the index lines are ``<category>/<file>``."""
    index = "TrainImages.txt" if split == "train" else "TestImages.txt"
    base = _locate(root, "", ("Images", index))
    classes = sorted(d.name for d in (base / "Images").iterdir() if d.is_dir())
    label = {c: k for k, c in enumerate(classes)}
    rel = _lines(base / index)
    files = [base / "Images" / r for r in rel]
    _check_files(files, base / "Images")
    return ImageFiles(files, [label[Path(r).parts[0]] for r in rel], classes, tf, "mit67", root)


def _imagenet_r(root, split, tf, size, label_space: str = "imagenet_r", seed: int = 0,
                test_fraction: float = 0.2):
    """``label_space="imagenet_r"``: labels 0..199 (position in ``IMAGENET_R_WNIDS``);
    ``"imagenet1k"``: ImageNet-1k indices (``classes`` are then the 1000 ImageNet-1k wnids).
    Labels are fixed by the wnid, so a copy with only some folders keeps them. Split: per wnid
    folder, the sorted files are shuffled with a seed from ``(seed, wnid)`` and
    ``round(test_fraction * n)`` of them (at least 1 and at most n-1 when n >= 2) go to test."""
    if label_space not in ("imagenet_r", "imagenet1k"):
        raise ValueError(f"label_space must be 'imagenet_r' or 'imagenet1k', got {label_space!r}")
    base = _locate(root, "imagenet-r")
    folders = sorted(d for d in base.iterdir() if d.is_dir())
    unknown = [d.name for d in folders if d.name not in _R_INDEX]
    if unknown:
        raise _Missing(base, f"folders that are not ImageNet-R wnids: {unknown[:5]}")
    files, targets = [], []
    for d in folders:
        imgs = _image_files(d)
        if split != "all":
            n = len(imgs)
            n_test = min(max(round(test_fraction * n), 1), n - 1) if n >= 2 else 0
            g = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{d.name}".encode()))
            test = set(torch.randperm(n, generator=g)[:n_test].tolist())
            imgs = [p for i, p in enumerate(imgs) if (i in test) == (split == "test")]
        k = _R_INDEX[d.name]
        files += imgs
        targets += [k if label_space == "imagenet_r" else IMAGENET_R_TO_IMAGENET1K[k]] * len(imgs)
    _check_files(files, base)
    classes = IMAGENET_R_WNIDS if label_space == "imagenet_r" else IMAGENET1K_WNIDS
    return ImageFiles(files, targets, classes, tf, "imagenet_r", root)


def _image_folder(name: str):
    def read(root, split, tf, size):
        folder = root / split
        if not folder.is_dir():
            raise _Missing(folder, "split folder not found")
        try:
            return tvd.ImageFolder(str(folder), transform=tf)
        except FileNotFoundError as e:  # no class folder, or a class folder without images
            raise _Missing(folder, str(e)) from None
    return read


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
    "cifar100": RealSpec(
        "cifar100",
        "<root>/cifar-100-python/{train,test,meta}: the python pickles of the CIFAR-100 release\n"
        "  train/test: dicts with data (N x 3072 uint8, RRR..GGG..BBB), fine_labels, coarse_labels\n"
        "  meta: fine_label_names, coarse_label_names\n"
        "kw: label='fine' (100 classes) | 'coarse' (20 superclasses)",
        ("train", "test"), 32, _cifar100,
        download="torchvision.datasets.CIFAR100(root='{root}', download=True)"),
    "flowers102": RealSpec(
        "flowers102",
        "<root>/flowers-102/jpg/image_00001.jpg ... image_08189.jpg\n"
        "<root>/flowers-102/imagelabels.mat (key labels, 1-based)\n"
        "<root>/flowers-102/setid.mat (keys trnid, valid, tstid)",
        ("train", "val", "test"), 224, _flowers102,
        download="torchvision.datasets.Flowers102(root='{root}', split=..., download=True)"),
    "gtsrb": RealSpec(
        "gtsrb",
        "<root>/GTSRB/Final_Training/Images/000CC/*.ppm with GT-000CC.csv in each class folder\n"
        "<root>/GTSRB/Final_Test/Images/*.ppm with <root>/GTSRB/Final_Test/GT-final_test.csv\n"
        "  CSVs: Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
        "  (<root> may be the GTSRB folder itself; torchvision's download layout, GTSRB/Training/\n"
        "  and <root>/GT-final_test.csv, is read too)",
        ("train", "test"), 32, _gtsrb, flip=False, square=True,
        download="torchvision.datasets.GTSRB(root='{parent}', split=..., download=True) "
                 "(it writes {parent}/gtsrb: pass that folder as root)"),
    "cub200": RealSpec(
        "cub200",
        "<root>/CUB_200_2011/images/<NNN.Class_Name>/*.jpg\n"
        "<root>/CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, classes.txt}\n"
        "  (lines '<id> <value>'; labels 1-based; is_training 1/0; bounding_boxes.txt optional)",
        ("train", "test"), 224, _cub200),
    "stanford_dogs": RealSpec(
        "stanford_dogs",
        "<root>/Images/n02085620-Chihuahua/*.jpg (120 breed folders)\n"
        "<root>/lists/{train_list.mat, test_list.mat} (keys file_list, labels 1-based; "
        "lists/ may be flattened into <root>)",
        ("train", "test"), 224, _stanford_dogs),
    "stanford40": RealSpec(
        "stanford40",
        "<root>/JPEGImages/<action>_NNN.jpg\n"
        "<root>/ImageSplits/actions.txt (header 'action_name number_of_images', then one action a line)\n"
        "<root>/ImageSplits/<action>_train.txt, <action>_test.txt (one image file name a line)",
        ("train", "test"), 224, _stanford40),
    "mit67": RealSpec(
        "mit67",
        "<root>/Images/<category>/*.jpg (67 category folders)\n"
        "<root>/TrainImages.txt, <root>/TestImages.txt (lines like kitchen/int474.jpg)",
        ("train", "test"), 224, _mit67),
    "imagenet_r": RealSpec(
        "imagenet_r",
        "<root>/imagenet-r/<wnid>/*.jpg (200 ImageNet wnid folders; <root> may be imagenet-r itself)\n"
        "  no official split: train/test is a seeded 80/20 split per class; split='all' is everything\n"
        "kw: label_space='imagenet_r' (0..199) | 'imagenet1k', seed=0, test_fraction=0.2",
        ("train", "test", "all"), 224, _imagenet_r),
    "cifar10_folder": RealSpec(
        "cifar10_folder",
        "<root>/{train,test}/<class>/*.jpg (torchvision ImageFolder; e.g. shared/data/cifar10-jpg-subset)",
        ("train", "test"), 32, _image_folder("cifar10_folder")),
    "image_folder": RealSpec(
        "image_folder",
        "<root>/<split>/<class>/*.jpg (torchvision ImageFolder; any split folder name)",
        None, 224, _image_folder("image_folder")),
}


def _error(name: str, root: Path, e: _Missing) -> DatasetNotFoundError:
    spec = REAL_DATASETS[name]
    hint = [f"Problem: {e.problem}." if e.problem else "",
            f"Put it under {data_dir() / spec.folder} (the default root) or pass root=... "
            f"(this call used root={root})."]
    if spec.download:
        call = spec.download.format(root=root, parent=root.parent)
        hint.append(f"torchvision can fetch it: {call}. This workbook never downloads.")
    return DatasetNotFoundError(name, e.path, spec.layout, "\n".join(h for h in hint if h))


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
            raise _Missing(root, "folder not found")
        return spec.read(root, split, tf, size, **kw)
    except _Missing as e:
        raise _error(name, root, e) from None


def image_folder(root, split: str = "train", size: int | None = None,
                 train_augment: bool = False) -> Dataset:
    """A torchvision ``ImageFolder`` at ``<root>/<split>/<class>/*`` (224 px unless ``size``)."""
    return load_real("image_folder", split, root=root, size=size, train_augment=train_augment)


# ----------------------------------------------------------------------------------------------
# ImageNet-R's classes (data constants from the public hendrycks/imagenet-r eval.py:
# ``imagenet_r_wnids`` and ``all_wnids``, the 1000 ILSVRC-2012 wnids in sorted order)
# ----------------------------------------------------------------------------------------------
IMAGENET1K_WNIDS: list[str] = """
n01440764 n01443537 n01484850 n01491361 n01494475 n01496331 n01498041 n01514668 n01514859 n01518878
n01530575 n01531178 n01532829 n01534433 n01537544 n01558993 n01560419 n01580077 n01582220 n01592084
n01601694 n01608432 n01614925 n01616318 n01622779 n01629819 n01630670 n01631663 n01632458 n01632777
n01641577 n01644373 n01644900 n01664065 n01665541 n01667114 n01667778 n01669191 n01675722 n01677366
n01682714 n01685808 n01687978 n01688243 n01689811 n01692333 n01693334 n01694178 n01695060 n01697457
n01698640 n01704323 n01728572 n01728920 n01729322 n01729977 n01734418 n01735189 n01737021 n01739381
n01740131 n01742172 n01744401 n01748264 n01749939 n01751748 n01753488 n01755581 n01756291 n01768244
n01770081 n01770393 n01773157 n01773549 n01773797 n01774384 n01774750 n01775062 n01776313 n01784675
n01795545 n01796340 n01797886 n01798484 n01806143 n01806567 n01807496 n01817953 n01818515 n01819313
n01820546 n01824575 n01828970 n01829413 n01833805 n01843065 n01843383 n01847000 n01855032 n01855672
n01860187 n01871265 n01872401 n01873310 n01877812 n01882714 n01883070 n01910747 n01914609 n01917289
n01924916 n01930112 n01943899 n01944390 n01945685 n01950731 n01955084 n01968897 n01978287 n01978455
n01980166 n01981276 n01983481 n01984695 n01985128 n01986214 n01990800 n02002556 n02002724 n02006656
n02007558 n02009229 n02009912 n02011460 n02012849 n02013706 n02017213 n02018207 n02018795 n02025239
n02027492 n02028035 n02033041 n02037110 n02051845 n02056570 n02058221 n02066245 n02071294 n02074367
n02077923 n02085620 n02085782 n02085936 n02086079 n02086240 n02086646 n02086910 n02087046 n02087394
n02088094 n02088238 n02088364 n02088466 n02088632 n02089078 n02089867 n02089973 n02090379 n02090622
n02090721 n02091032 n02091134 n02091244 n02091467 n02091635 n02091831 n02092002 n02092339 n02093256
n02093428 n02093647 n02093754 n02093859 n02093991 n02094114 n02094258 n02094433 n02095314 n02095570
n02095889 n02096051 n02096177 n02096294 n02096437 n02096585 n02097047 n02097130 n02097209 n02097298
n02097474 n02097658 n02098105 n02098286 n02098413 n02099267 n02099429 n02099601 n02099712 n02099849
n02100236 n02100583 n02100735 n02100877 n02101006 n02101388 n02101556 n02102040 n02102177 n02102318
n02102480 n02102973 n02104029 n02104365 n02105056 n02105162 n02105251 n02105412 n02105505 n02105641
n02105855 n02106030 n02106166 n02106382 n02106550 n02106662 n02107142 n02107312 n02107574 n02107683
n02107908 n02108000 n02108089 n02108422 n02108551 n02108915 n02109047 n02109525 n02109961 n02110063
n02110185 n02110341 n02110627 n02110806 n02110958 n02111129 n02111277 n02111500 n02111889 n02112018
n02112137 n02112350 n02112706 n02113023 n02113186 n02113624 n02113712 n02113799 n02113978 n02114367
n02114548 n02114712 n02114855 n02115641 n02115913 n02116738 n02117135 n02119022 n02119789 n02120079
n02120505 n02123045 n02123159 n02123394 n02123597 n02124075 n02125311 n02127052 n02128385 n02128757
n02128925 n02129165 n02129604 n02130308 n02132136 n02133161 n02134084 n02134418 n02137549 n02138441
n02165105 n02165456 n02167151 n02168699 n02169497 n02172182 n02174001 n02177972 n02190166 n02206856
n02219486 n02226429 n02229544 n02231487 n02233338 n02236044 n02256656 n02259212 n02264363 n02268443
n02268853 n02276258 n02277742 n02279972 n02280649 n02281406 n02281787 n02317335 n02319095 n02321529
n02325366 n02326432 n02328150 n02342885 n02346627 n02356798 n02361337 n02363005 n02364673 n02389026
n02391049 n02395406 n02396427 n02397096 n02398521 n02403003 n02408429 n02410509 n02412080 n02415577
n02417914 n02422106 n02422699 n02423022 n02437312 n02437616 n02441942 n02442845 n02443114 n02443484
n02444819 n02445715 n02447366 n02454379 n02457408 n02480495 n02480855 n02481823 n02483362 n02483708
n02484975 n02486261 n02486410 n02487347 n02488291 n02488702 n02489166 n02490219 n02492035 n02492660
n02493509 n02493793 n02494079 n02497673 n02500267 n02504013 n02504458 n02509815 n02510455 n02514041
n02526121 n02536864 n02606052 n02607072 n02640242 n02641379 n02643566 n02655020 n02666196 n02667093
n02669723 n02672831 n02676566 n02687172 n02690373 n02692877 n02699494 n02701002 n02704792 n02708093
n02727426 n02730930 n02747177 n02749479 n02769748 n02776631 n02777292 n02782093 n02783161 n02786058
n02787622 n02788148 n02790996 n02791124 n02791270 n02793495 n02794156 n02795169 n02797295 n02799071
n02802426 n02804414 n02804610 n02807133 n02808304 n02808440 n02814533 n02814860 n02815834 n02817516
n02823428 n02823750 n02825657 n02834397 n02835271 n02837789 n02840245 n02841315 n02843684 n02859443
n02860847 n02865351 n02869837 n02870880 n02871525 n02877765 n02879718 n02883205 n02892201 n02892767
n02894605 n02895154 n02906734 n02909870 n02910353 n02916936 n02917067 n02927161 n02930766 n02939185
n02948072 n02950826 n02951358 n02951585 n02963159 n02965783 n02966193 n02966687 n02971356 n02974003
n02977058 n02978881 n02979186 n02980441 n02981792 n02988304 n02992211 n02992529 n02999410 n03000134
n03000247 n03000684 n03014705 n03016953 n03017168 n03018349 n03026506 n03028079 n03032252 n03041632
n03042490 n03045698 n03047690 n03062245 n03063599 n03063689 n03065424 n03075370 n03085013 n03089624
n03095699 n03100240 n03109150 n03110669 n03124043 n03124170 n03125729 n03126707 n03127747 n03127925
n03131574 n03133878 n03134739 n03141823 n03146219 n03160309 n03179701 n03180011 n03187595 n03188531
n03196217 n03197337 n03201208 n03207743 n03207941 n03208938 n03216828 n03218198 n03220513 n03223299
n03240683 n03249569 n03250847 n03255030 n03259280 n03271574 n03272010 n03272562 n03290653 n03291819
n03297495 n03314780 n03325584 n03337140 n03344393 n03345487 n03347037 n03355925 n03372029 n03376595
n03379051 n03384352 n03388043 n03388183 n03388549 n03393912 n03394916 n03400231 n03404251 n03417042
n03424325 n03425413 n03443371 n03444034 n03445777 n03445924 n03447447 n03447721 n03450230 n03452741
n03457902 n03459775 n03461385 n03467068 n03476684 n03476991 n03478589 n03481172 n03482405 n03483316
n03485407 n03485794 n03492542 n03494278 n03495258 n03496892 n03498962 n03527444 n03529860 n03530642
n03532672 n03534580 n03535780 n03538406 n03544143 n03584254 n03584829 n03590841 n03594734 n03594945
n03595614 n03598930 n03599486 n03602883 n03617480 n03623198 n03627232 n03630383 n03633091 n03637318
n03642806 n03649909 n03657121 n03658185 n03661043 n03662601 n03666591 n03670208 n03673027 n03676483
n03680355 n03690938 n03691459 n03692522 n03697007 n03706229 n03709823 n03710193 n03710637 n03710721
n03717622 n03720891 n03721384 n03724870 n03729826 n03733131 n03733281 n03733805 n03742115 n03743016
n03759954 n03761084 n03763968 n03764736 n03769881 n03770439 n03770679 n03773504 n03775071 n03775546
n03776460 n03777568 n03777754 n03781244 n03782006 n03785016 n03786901 n03787032 n03788195 n03788365
n03791053 n03792782 n03792972 n03793489 n03794056 n03796401 n03803284 n03804744 n03814639 n03814906
n03825788 n03832673 n03837869 n03838899 n03840681 n03841143 n03843555 n03854065 n03857828 n03866082
n03868242 n03868863 n03871628 n03873416 n03874293 n03874599 n03876231 n03877472 n03877845 n03884397
n03887697 n03888257 n03888605 n03891251 n03891332 n03895866 n03899768 n03902125 n03903868 n03908618
n03908714 n03916031 n03920288 n03924679 n03929660 n03929855 n03930313 n03930630 n03933933 n03935335
n03937543 n03938244 n03942813 n03944341 n03947888 n03950228 n03954731 n03956157 n03958227 n03961711
n03967562 n03970156 n03976467 n03976657 n03977966 n03980874 n03982430 n03983396 n03991062 n03992509
n03995372 n03998194 n04004767 n04005630 n04008634 n04009552 n04019541 n04023962 n04026417 n04033901
n04033995 n04037443 n04039381 n04040759 n04041544 n04044716 n04049303 n04065272 n04067472 n04069434
n04070727 n04074963 n04081281 n04086273 n04090263 n04099969 n04111531 n04116512 n04118538 n04118776
n04120489 n04125021 n04127249 n04131690 n04133789 n04136333 n04141076 n04141327 n04141975 n04146614
n04147183 n04149813 n04152593 n04153751 n04154565 n04162706 n04179913 n04192698 n04200800 n04201297
n04204238 n04204347 n04208210 n04209133 n04209239 n04228054 n04229816 n04235860 n04238763 n04239074
n04243546 n04251144 n04252077 n04252225 n04254120 n04254680 n04254777 n04258138 n04259630 n04263257
n04264628 n04265275 n04266014 n04270147 n04273569 n04275548 n04277352 n04285008 n04286575 n04296562
n04310018 n04311004 n04311174 n04317175 n04325704 n04326547 n04328186 n04330267 n04332243 n04335435
n04336792 n04344873 n04346328 n04347754 n04350905 n04355338 n04355933 n04356056 n04357314 n04366367
n04367480 n04370456 n04371430 n04371774 n04372370 n04376876 n04380533 n04389033 n04392985 n04398044
n04399382 n04404412 n04409515 n04417672 n04418357 n04423845 n04428191 n04429376 n04435653 n04442312
n04443257 n04447861 n04456115 n04458633 n04461696 n04462240 n04465501 n04467665 n04476259 n04479046
n04482393 n04483307 n04485082 n04486054 n04487081 n04487394 n04493381 n04501370 n04505470 n04507155
n04509417 n04515003 n04517823 n04522168 n04523525 n04525038 n04525305 n04532106 n04532670 n04536866
n04540053 n04542943 n04548280 n04548362 n04550184 n04552348 n04553703 n04554684 n04557648 n04560804
n04562935 n04579145 n04579432 n04584207 n04589890 n04590129 n04591157 n04591713 n04592741 n04596742
n04597913 n04599235 n04604644 n04606251 n04612504 n04613696 n06359193 n06596364 n06785654 n06794110
n06874185 n07248320 n07565083 n07579787 n07583066 n07584110 n07590611 n07613480 n07614500 n07615774
n07684084 n07693725 n07695742 n07697313 n07697537 n07711569 n07714571 n07714990 n07715103 n07716358
n07716906 n07717410 n07717556 n07718472 n07718747 n07720875 n07730033 n07734744 n07742313 n07745940
n07747607 n07749582 n07753113 n07753275 n07753592 n07754684 n07760859 n07768694 n07802026 n07831146
n07836838 n07860988 n07871810 n07873807 n07875152 n07880968 n07892512 n07920052 n07930864 n07932039
n09193705 n09229709 n09246464 n09256479 n09288635 n09332890 n09399592 n09421951 n09428293 n09468604
n09472597 n09835506 n10148035 n10565667 n11879895 n11939491 n12057211 n12144580 n12267677 n12620546
n12768682 n12985857 n12998815 n13037406 n13040303 n13044778 n13052670 n13054560 n13133613 n15075141
""".split()

IMAGENET_R_WNIDS: list[str] = """
n01443537 n01484850 n01494475 n01498041 n01514859 n01518878 n01531178 n01534433 n01614925 n01616318
n01630670 n01632777 n01644373 n01677366 n01694178 n01748264 n01770393 n01774750 n01784675 n01806143
n01820546 n01833805 n01843383 n01847000 n01855672 n01860187 n01882714 n01910747 n01944390 n01983481
n01986214 n02007558 n02009912 n02051845 n02056570 n02066245 n02071294 n02077923 n02085620 n02086240
n02088094 n02088238 n02088364 n02088466 n02091032 n02091134 n02092339 n02094433 n02096585 n02097298
n02098286 n02099601 n02099712 n02102318 n02106030 n02106166 n02106550 n02106662 n02108089 n02108915
n02109525 n02110185 n02110341 n02110958 n02112018 n02112137 n02113023 n02113624 n02113799 n02114367
n02117135 n02119022 n02123045 n02128385 n02128757 n02129165 n02129604 n02130308 n02134084 n02138441
n02165456 n02190166 n02206856 n02219486 n02226429 n02233338 n02236044 n02268443 n02279972 n02317335
n02325366 n02346627 n02356798 n02363005 n02364673 n02391049 n02395406 n02398521 n02410509 n02423022
n02437616 n02445715 n02447366 n02480495 n02480855 n02481823 n02483362 n02486410 n02510455 n02526121
n02607072 n02655020 n02672831 n02701002 n02749479 n02769748 n02793495 n02797295 n02802426 n02808440
n02814860 n02823750 n02841315 n02843684 n02883205 n02906734 n02909870 n02939185 n02948072 n02950826
n02951358 n02966193 n02980441 n02992529 n03124170 n03272010 n03345487 n03372029 n03424325 n03452741
n03467068 n03481172 n03494278 n03495258 n03498962 n03594945 n03602883 n03630383 n03649909 n03676483
n03710193 n03773504 n03775071 n03888257 n03930630 n03947888 n04086273 n04118538 n04133789 n04141076
n04146614 n04147183 n04192698 n04254680 n04266014 n04275548 n04310018 n04325704 n04347754 n04389033
n04409515 n04465501 n04487394 n04522168 n04536866 n04552348 n04591713 n07614500 n07693725 n07695742
n07697313 n07697537 n07714571 n07714990 n07718472 n07720875 n07734744 n07742313 n07745940 n07749582
n07753275 n07753592 n07768694 n07873807 n07880968 n07920052 n09472597 n09835506 n10565667 n12267677
""".split()

_R_INDEX = {w: k for k, w in enumerate(IMAGENET_R_WNIDS)}
_1K_INDEX = {w: k for k, w in enumerate(IMAGENET1K_WNIDS)}
# ImageNet-R label k -> ImageNet-1k class index (position in the sorted 1000 wnids)
IMAGENET_R_TO_IMAGENET1K: list[int] = [_1K_INDEX[w] for w in IMAGENET_R_WNIDS]
