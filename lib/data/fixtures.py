"""Writers of tiny real-format datasets (for tests, and the dry run of :mod:`lib.dryrun`): the
files, names and keys each dataset ships with (pickles, .mat, CSV/TXT indexes, JPEG/PPM images), only fewer images.

Every image is one flat colour that encodes the fixture's class number ``k`` (see
:func:`colour` / :func:`decode`), so a test can check that each loaded image carries the label
its index files give it. Each writer returns the root to pass to ``load_real``.
"""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import savemat


def colour(k: int) -> tuple[int, int, int]:
    """The flat colour of fixture class ``k`` (0..143)."""
    return 10 + 20 * (k % 12), 10 + 20 * (k // 12), 128


def decode(x: torch.Tensor) -> int:
    """Fixture class number of a loaded image (float (3, H, W) in [0, 1])."""
    r, g, _ = (x.mean(dim=(1, 2)) * 255).tolist()
    return round((r - 10) / 20) + 12 * round((g - 10) / 20)


def write_image(path: Path, k: int, size: tuple[int, int] = (40, 30)) -> Path:
    """A flat image of class ``k`` (``size`` = width, height); the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour(k)).save(path, quality=95)
    return path


# ---------------------------------------------------------------------------------------------
# CIFAR's python release: Python 2 cPickle files at protocol 2
# ---------------------------------------------------------------------------------------------
_RECONSTRUCT = np.empty(0).__reduce__()[0]


class Py2Pickler(pickle._Pickler):
    """Writes protocol-2 pickles the way Python 2's cPickle wrote CIFAR's release: ``bytes`` as
    Python 2 ``str`` (opcodes SHORT_BINSTRING / BINSTRING, so dict keys and filenames are ``b"..."``
    written by Python 2 and an array's pixel buffer a py2 string), and numpy's array
    reconstructor under its numpy-1 name ``numpy.core.multiarray._reconstruct``. (Python 3's own
    protocol-2 pickler writes ``bytes`` as ``_codecs.encode(...)`` calls instead.)"""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file):
        super().__init__(file, protocol=2)

    def save_py2_str(self, obj: bytes):
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if obj is _RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def dump_py2(obj, path: Path) -> Path:
    """``obj`` pickled by :class:`Py2Pickler` into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        Py2Pickler(f).dump(obj)
    return path


CIFAR10_LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_batches(root: Path, per_class: dict[str, int] | int | None = None, classes: int = 10,
                          seed: int = 0) -> dict:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` in the release's
    format: each batch a dict ``{b"batch_label", b"labels" (list of int), b"data" (uint8 N x 3072,
    RRR..GGG..BBB), b"filenames"}``, ``batches.meta`` ``{b"num_cases_per_batch", b"label_names",
    b"num_vis"}``. ``per_class``: images per class per split (default ``{"train": 5, "test": 2}``; an
    int means that many in both); the training images are shuffled and dealt into the five
    batches. Image of class ``k``: flat :func:`colour` ``k`` plus seeded noise of at most 8 levels,
    so :func:`decode` gives ``k`` and a model can learn it. Only the first ``classes`` classes
    get images (the meta lists all ten names). Returns ``{split: {"data", "labels"}}`` in load order."""
    per_class = per_class or {"train": 5, "test": 2}
    if isinstance(per_class, int):
        per_class = {"train": per_class, "test": per_class}
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    out = {}
    for split, n in per_class.items():
        labels = np.repeat(np.arange(classes), n)
        rng.shuffle(labels)
        flat = np.array([colour(int(k)) for k in labels], dtype=np.int16).repeat(1024, axis=1)
        data = np.clip(flat + rng.integers(-8, 9, flat.shape), 0, 255).astype(np.uint8)
        parts = np.array_split(np.arange(len(labels)), 5) if split == "train" else [np.arange(len(labels))]
        for b, idx in enumerate(parts, 1):
            name = f"data_batch_{b}" if split == "train" else "test_batch"
            label = f"training batch {b} of 5" if split == "train" else "testing batch 1 of 1"
            dump_py2({b"batch_label": label.encode(), b"labels": [int(k) for k in labels[idx]],
                      b"data": data[idx], b"filenames": [f"img_{split}_{i:05d}.png".encode() for i in idx]},
                     base / name)
        out[split] = {"data": data, "labels": labels.tolist()}
    dump_py2({b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in CIFAR10_LABEL_NAMES],
              b"num_vis": 3072}, base / "batches.meta")
    return out


def write_cifar100(root: Path, per_class: dict[str, int] | None = None, seed: int = 0) -> dict:
    """``root/cifar-100-python/{train,test,meta}`` in the release's format (Python 2 pickles, see
    :class:`Py2Pickler`; random pixels) with all 100 fine classes; fine class ``f``
    belongs to coarse class ``(7 f) % 20`` (5 fine classes each, like the real data). Returns
    the written arrays: ``{split: {"data", "fine", "coarse"}}`` and the expected tasks."""
    per_class = per_class or {"train": 2, "test": 1}
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in per_class.items():
        fine = np.repeat(np.arange(100), n)
        rng.shuffle(fine)
        coarse = (7 * fine) % 20
        data = rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8)
        entry = {b"filenames": [f"img_{i:05d}.png".encode() for i in range(len(fine))],
                 b"batch_label": f"{split}ing batch 1 of 1".encode(), b"fine_labels": fine.tolist(),
                 b"coarse_labels": coarse.tolist(), b"data": data}
        dump_py2(entry, base / split)
        out[split] = {"data": data, "fine": fine.tolist(), "coarse": coarse.tolist()}
    meta = {b"fine_label_names": [f"fine_{i:02d}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i:02d}".encode() for i in range(20)]}
    dump_py2(meta, base / "meta")
    out["tasks"] = [sorted(f for f in range(100) if (7 * f) % 20 == c) for c in range(20)]
    return out


def write_flowers102(root: Path) -> tuple[Path, dict]:
    """``root/flowers-102/{jpg/image_0000N.jpg, imagelabels.mat, setid.mat}``: 12 images of
    labels 1..3 (1-based, as shipped), 4 per split. Returns root and ``{split: [labels 0-based]}``."""
    base = root / "flowers-102"
    labels = [1 + i % 3 for i in range(12)]
    for i, lab in enumerate(labels, 1):
        write_image(base / "jpg" / f"image_{i:05d}.jpg", lab - 1, (50, 40))
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    ids = {"trnid": [1, 2, 3, 4], "valid": [5, 6, 7, 8], "tstid": [9, 10, 11, 12]}
    savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})
    split = {"train": "trnid", "val": "valid", "test": "tstid"}
    return root, {s: [labels[i - 1] - 1 for i in ids[k]] for s, k in split.items()}


GTSRB_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"


def write_gtsrb(root: Path, classes=(0, 1, 2), per_class: int = 3, n_test: int = 4,
                torchvision_layout: bool = False) -> Path:
    """The original archive layout (``GTSRB/Final_Training/Images/000CC/*.ppm`` + ``GT-000CC.csv``,
    ``GTSRB/Final_Test/Images/*.ppm`` + ``Final_Test/GT-final_test.csv``); with
    ``torchvision_layout``, torchvision's download layout (``GTSRB/Training``, ``GT-final_test.csv``
    beside ``GTSRB``). Images are 40x30 (W x H) with ROI 5,5,35,25; test image ``i`` has class
    ``classes[i % len(classes)]``."""
    base = root / "GTSRB"
    train = base / ("Training" if torchvision_layout else "Final_Training/Images")
    for c in classes:
        d = train / f"{c:05d}"
        rows = []
        for j in range(per_class):
            name = f"{c:05d}_{j:05d}.ppm"
            write_image(d / name, c, (40, 30))
            rows.append(f"{name};40;30;5;5;35;25;{c}\n")
        (d / f"GT-{c:05d}.csv").write_text(GTSRB_HEADER + "".join(rows))
    rows = []
    for i in range(n_test):
        c = classes[i % len(classes)]
        write_image(base / "Final_Test" / "Images" / f"{i:05d}.ppm", c, (40, 30))
        rows.append(f"{i:05d}.ppm;40;30;5;5;35;25;{c}\n")
    csv_dir = root if torchvision_layout else base / "Final_Test"
    (csv_dir / "GT-final_test.csv").write_text(GTSRB_HEADER + "".join(rows))
    return root


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def write_cub200(root: Path, per_class: int = 4, boxes: bool = True, classes=CUB_CLASSES) -> tuple[Path, dict]:
    """``root/CUB_200_2011`` with its five index files; every other image is a training image.
    Returns root and ``{split: [labels 0-based]}``."""
    base = root / "CUB_200_2011"
    lines = {"images.txt": [], "image_class_labels.txt": [], "train_test_split.txt": [],
             "bounding_boxes.txt": []}
    expected = {"train": [], "test": []}
    i = 0
    for k, cls in enumerate(classes):
        for j in range(per_class):
            i += 1
            rel = f"{cls}/{cls.split('.', 1)[1]}_{j:04d}_{100 + i}.jpg"
            write_image(base / "images" / rel, k, (60 + 10 * j, 45))
            is_train = j % 2
            lines["images.txt"].append(f"{i} {rel}")
            lines["image_class_labels.txt"].append(f"{i} {k + 1}")
            lines["train_test_split.txt"].append(f"{i} {is_train}")
            lines["bounding_boxes.txt"].append(f"{i} 3.0 4.0 20.0 30.0")
            expected["train" if is_train else "test"].append(k)
    if not boxes:
        del lines["bounding_boxes.txt"]
    for name, ls in lines.items():
        (base / name).write_text("\n".join(ls) + "\n")
    (base / "classes.txt").write_text("".join(f"{k + 1} {c}\n" for k, c in enumerate(classes)))
    return root, expected


DOG_FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]


def write_stanford_dogs(root: Path, per_class: int = 3) -> tuple[Path, dict]:
    """``root/Images/<wnid-breed>/*.jpg`` and ``root/lists/{train,test}_list.mat`` (cell array
    ``file_list``, ``annotation_list``, 1-based ``labels``); the last image of each breed is a
    test image. Returns root and ``{split: [labels 0-based]}``."""
    lists = {"train": ([], []), "test": ([], [])}
    for k, folder in enumerate(DOG_FOLDERS):
        wnid = folder.split("-")[0]
        for j in range(per_class):
            rel = f"{folder}/{wnid}_{1000 + j}.jpg"
            write_image(root / "Images" / rel, k, (50, 70))
            files, labels = lists["test" if j == per_class - 1 else "train"]
            files.append(rel)
            labels.append(k + 1)
    (root / "lists").mkdir(parents=True, exist_ok=True)
    for split, (files, labels) in lists.items():
        cell = np.empty((len(files), 1), dtype=object)
        ann = np.empty((len(files), 1), dtype=object)
        for i, f in enumerate(files):
            cell[i, 0], ann[i, 0] = f, f[:-4]
        savemat(root / "lists" / f"{split}_list.mat",
                {"file_list": cell, "annotation_list": ann, "labels": np.array(labels, float)[:, None]})
    return root, {s: [y - 1 for y in labels] for s, (_, labels) in lists.items()}


ACTIONS = ["applauding", "blowing_bubbles", "brushing_teeth"]


def write_stanford40(root: Path, per_class: int = 3) -> tuple[Path, dict]:
    """``root/JPEGImages/<action>_NNN.jpg`` and ``root/ImageSplits/{actions.txt,
    <action>_train.txt, <action>_test.txt}``; image 1 of each action is a test image."""
    splits = root / "ImageSplits"
    splits.mkdir(parents=True, exist_ok=True)
    expected = {"train": [], "test": []}
    rows = ["action_name\tnumber_of_images"]
    for k, a in enumerate(ACTIONS):
        names = {"train": [], "test": []}
        for j in range(1, per_class + 1):
            name = f"{a}_{j:03d}.jpg"
            write_image(root / "JPEGImages" / name, k, (64, 48))
            split = "test" if j == 1 else "train"
            names[split].append(name)
            expected[split].append(k)
        for split, ns in names.items():
            (splits / f"{a}_{split}.txt").write_text("\n".join(ns) + "\n")
        rows.append(f"{a}\t{per_class}")
    (splits / "actions.txt").write_text("\n".join(rows) + "\n")
    return root, expected


MIT_CATEGORIES = ["airport_inside", "bakery", "kitchen"]


def write_mit67(root: Path, per_class: int = 3, categories=MIT_CATEGORIES) -> tuple[Path, dict]:
    """``root/Images/<category>/*.jpg`` with ``TrainImages.txt`` / ``TestImages.txt`` (CRLF lines
    like ``kitchen/int474.jpg``, as in the release); the last image of a category is a test image."""
    expected = {"train": [], "test": []}
    index = {"train": [], "test": []}
    for k, c in enumerate(categories):
        for j in range(per_class):
            rel = f"{c}/int{100 + j}.jpg"
            write_image(root / "Images" / rel, k, (48, 64))
            split = "test" if j == per_class - 1 else "train"
            index[split].append(rel)
            expected[split].append(k)
    (root / "TrainImages.txt").write_text("\r\n".join(index["train"]) + "\r\n")
    (root / "TestImages.txt").write_text("\r\n".join(index["test"]) + "\r\n")
    return root, expected


def write_imagenet_r(root: Path, wnids, per_class: int = 5) -> Path:
    """``root/imagenet-r/<wnid>/art_N.jpg``; images of ``wnids[k]`` have colour ``k``."""
    for k, w in enumerate(wnids):
        for j in range(per_class):
            write_image(root / "imagenet-r" / w / f"art_{j}.jpg", k, (40, 40))
    return root


CIFAR10_CLASSES = ["airplane", "automobile", "bird"]


def write_image_folder(root: Path, classes=CIFAR10_CLASSES, per_class=None) -> Path:
    """torchvision ImageFolder layout ``root/<split>/<class>/NNNN.jpg`` of 32x32 JPEGs."""
    per_class = per_class or {"train": 3, "test": 2}
    for split, n in per_class.items():
        for k, c in enumerate(classes):
            for j in range(n):
                write_image(root / split / c / f"{j:04d}.jpg", k, (32, 32))
    return root


def write_data_dir(root: Path, per_class: int = 2) -> dict[str, Path]:
    """A ``data/`` folder with tiny copies of the three 32-px sets of notebook 03's full profile, each
    under its default folder name (so ``WORKBOOK_DATA=root`` makes ``load_real(name)`` find it):
    ``cifar10/cifar-10-batches-py`` (the release's pickles, ``per_class`` images per class and split),
    ``cifar100/cifar-100-python`` (``per_class`` train and 1 test image per fine class) and
    ``gtsrb/GTSRB`` (the archive layout, classes 0-2). Returns ``{name: root}``."""
    roots = {name: Path(root) / name for name in ("cifar10", "cifar100", "gtsrb")}
    write_cifar10_batches(roots["cifar10"], per_class=per_class)
    write_cifar100(roots["cifar100"], per_class={"train": per_class, "test": 1})
    write_gtsrb(roots["gtsrb"], per_class=max(per_class, 2), n_test=6)
    return roots


def write_full_data_dir(root: Path) -> dict[str, Path]:
    """A ``data/`` folder with a tiny copy of every dataset a ``full`` recipe reads, each under its
    default folder name and large enough for the dry run's shrunk recipes (:mod:`lib.dryrun`):
    CIFAR-10 and CIFAR-100 (all 100 classes in their 20 superclasses), GTSRB (12 classes, enough
    per class for notebook 05's attacker/victim halves), MIT-67 (12 categories), CUB-200 and
    ImageNet-R (a few wnids). Returns ``{name: root}``."""
    from .class_ids import IMAGENET_R_WNIDS

    names = ("cifar10", "cifar100", "gtsrb", "mit67", "cub200", "imagenet_r")
    roots = {name: Path(root) / name for name in names}
    write_cifar10_batches(roots["cifar10"], per_class={"train": 4, "test": 2})
    write_cifar100(roots["cifar100"], per_class={"train": 4, "test": 2})
    write_gtsrb(roots["gtsrb"], classes=tuple(range(12)), per_class=6, n_test=36)
    write_mit67(roots["mit67"], per_class=4, categories=[f"{c}_{k}" for k in range(4) for c in MIT_CATEGORIES])
    write_cub200(roots["cub200"], per_class=4)
    write_imagenet_r(roots["imagenet_r"], IMAGENET_R_WNIDS[:4], per_class=2)
    return roots
