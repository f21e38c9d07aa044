"""Tests of lib.data.real on tiny fixtures written in each dataset's real on-disk format
(lib/data/fixtures.py), on the shared GTSRB and CIFAR-10 subsets when they are there, and of
the errors for missing or malformed datasets. Nothing here downloads."""
from __future__ import annotations

import numpy as np
import pytest
import lib.data.fixtures as F
import torch
import torchvision.transforms as T

from lib.data import DatasetNotFoundError
from lib.data.real import (
    IMAGENET1K_WNIDS,
    IMAGENET_R_TO_IMAGENET1K,
    IMAGENET_R_WNIDS,
    REAL_DATASETS,
    cifar100_superclass_tasks,
    image_folder,
    load_real,
)
from lib.paths import shared_dir


def check_items(ds, size, expected_labels=None, label_of_colour=None, n=None):
    """Every item (or the first ``n``): a float (3, size, size) image in [0, 1] whose flat
    colour decodes to the fixture class that maps to its label."""
    assert len(ds.targets) == len(ds)
    if expected_labels is not None:
        assert list(ds.targets) == list(expected_labels)
    for i in range(len(ds) if n is None else min(n, len(ds))):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (3, size, size)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert isinstance(y, int) and y == ds.targets[i]
        k = F.decode(x)
        assert (label_of_colour[k] if label_of_colour else k) == y, f"item {i}"


def transform_ops(ds):
    return [type(t) for t in ds.transform.transforms]


# ---------------------------------------------------------------------------------------------
# CIFAR-100 (torchvision's reader on the python pickles)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    return root, F.write_cifar100(root)


def test_cifar100_fine_pixels_and_labels(cifar100):
    root, written = cifar100
    ds = load_real("cifar100", "train", root=root)
    assert len(ds) == 200 and ds.targets == written["train"]["fine"]
    assert ds.classes == [f"fine_{i:02d}" for i in range(100)]
    x, y = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # the pickle's row is RRR..GGG..BBB, row-major 32x32: pixels come back exactly
    want = torch.from_numpy(written["train"]["data"][3].reshape(3, 32, 32).astype("float32")) / 255
    assert torch.equal(x, want) and y == written["train"]["fine"][3]
    test = load_real("cifar100", "test", root=root)
    assert len(test) == 100 and test.targets == written["test"]["fine"]
    # root may also be the cifar-100-python folder itself
    assert len(load_real("cifar100", "test", root=root / "cifar-100-python")) == 100


def test_cifar100_coarse_labels_and_sizes(cifar100):
    root, written = cifar100
    ds = load_real("cifar100", "test", root=root, label="coarse", size=48)
    assert ds.targets == written["test"]["coarse"]
    assert ds.classes == [f"coarse_{i:02d}" for i in range(20)] and len(ds.fine_classes) == 100
    assert ds[0][0].shape == (3, 48, 48)
    aug = load_real("cifar100", "train", root=root, train_augment=True)
    assert transform_ops(aug)[:2] == [T.RandomResizedCrop, T.RandomHorizontalFlip]
    assert aug[0][0].shape == (3, 32, 32)
    with pytest.raises(ValueError, match="fine"):
        load_real("cifar100", "train", root=root, label="superfine")


def test_cifar100_superclass_tasks(cifar100, monkeypatch, tmp_path):
    root, written = cifar100
    tasks = cifar100_superclass_tasks(root)
    assert tasks == written["tasks"]
    assert len(tasks) == 20 and all(len(t) == 5 for t in tasks)
    assert sorted(c for t in tasks for c in t) == list(range(100))
    # root=None reads data_dir()/cifar100
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path))
    other = F.write_cifar100(tmp_path / "cifar100", seed=1)
    assert cifar100_superclass_tasks() == other["tasks"]
    with pytest.raises(DatasetNotFoundError, match="cifar100"):
        cifar100_superclass_tasks(tmp_path / "absent")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (the release's cifar-10-batches-py pickles, or an ImageFolder)
# ---------------------------------------------------------------------------------------------
def test_cifar10_batches_pixels_labels_and_names(tmp_path):
    written = F.write_cifar10_batches(tmp_path, per_class={"train": 3, "test": 2})
    ds = load_real("cifar10", "train", root=tmp_path)
    assert len(ds) == 30 and ds.targets == written["train"]["labels"]
    assert ds.classes == F.CIFAR10_LABEL_NAMES and ds.class_to_idx["truck"] == 9
    for i in (0, 7, 29):  # batches concatenated in order 1..5; rows RRR..GGG..BBB, row-major
        x, y = ds[i]
        want = torch.from_numpy(written["train"]["data"][i].reshape(3, 32, 32).astype("float32")) / 255
        assert torch.equal(x, want) and y == written["train"]["labels"][i] == F.decode(x)
    check_items(ds, 32)
    test = load_real("cifar10", "test", root=tmp_path / "cifar-10-batches-py", size=40)  # root = the folder itself
    assert test.targets == written["test"]["labels"] and test[0][0].shape == (3, 40, 40)
    assert transform_ops(load_real("cifar10", "train", root=tmp_path, train_augment=True))[:2] == [
        T.RandomResizedCrop, T.RandomHorizontalFlip]


def test_cifar10_fixture_is_what_torchvision_reads(tmp_path, monkeypatch):
    # torchvision's reader (plain pickle.load, trusted here: we wrote the file) sees the same arrays
    import torchvision.datasets as tvd
    written = F.write_cifar10_batches(tmp_path, per_class=2)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *a, **k: True)  # our files have other md5s
    ref = tvd.CIFAR10(str(tmp_path), train=True)
    ours = load_real("cifar10", "train", root=tmp_path)
    assert (ref.data == ours.data).all() and ref.targets == ours.targets == written["train"]["labels"]
    assert ref.classes == ours.classes


def test_cifar10_also_reads_an_image_folder(tmp_path):
    root = F.write_image_folder(tmp_path / "jpg")
    ds = load_real("cifar10", "train", root=root)
    assert ds.classes == F.CIFAR10_CLASSES
    check_items(ds, 32, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    with pytest.raises(DatasetNotFoundError) as e:  # neither layout
        load_real("cifar10", "train", root=tmp_path / "jpg" / "train" / "bird")
    assert "cifar-10-batches-py" in str(e.value) and "ImageFolder" in str(e.value)


def test_cifar10_malformed_batches_are_reported(tmp_path):
    F.write_cifar10_batches(tmp_path, per_class=1)
    base = tmp_path / "cifar-10-batches-py"
    F.dump_py2({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, base / "test_batch")
    with pytest.raises(DatasetNotFoundError, match=r"uint8 \(N, 3072\)") as e:
        load_real("cifar10", "test", root=tmp_path)
    assert e.value.path == base / "test_batch"
    F.dump_py2({b"data": np.zeros((2, 3072), np.uint8)}, base / "test_batch")
    with pytest.raises(DatasetNotFoundError, match="no 'labels'"):
        load_real("cifar10", "test", root=tmp_path)


# ---------------------------------------------------------------------------------------------
# Flowers-102 (torchvision's reader on imagelabels.mat / setid.mat)
# ---------------------------------------------------------------------------------------------
def test_flowers102_splits(tmp_path):
    root, expected = F.write_flowers102(tmp_path)
    for split in ("train", "val", "test"):
        ds = load_real("flowers102", split, root=root, size=24)
        assert len(ds) == 4 and len(ds.classes) == 102 and ds.classes[0] == "pink primrose"
        check_items(ds, 24, expected[split])
    assert load_real("flowers102", "val", root=root)[0][0].shape == (3, 224, 224)


# ---------------------------------------------------------------------------------------------
# GTSRB (original archive layout, ROIs)
# ---------------------------------------------------------------------------------------------
def test_gtsrb_layout_labels_and_rois(tmp_path):
    root = F.write_gtsrb(tmp_path)
    ds = load_real("gtsrb", "train", root=root)
    assert len(ds) == 9 and len(ds.classes) == 43 and ds.classes[14] == "Stop"
    check_items(ds, 32, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    # ROI 5,5,35,25 of a 40x30 image, scaled by 32/40 and 32/30
    assert torch.allclose(ds.rois[0], torch.tensor([4.0, 16 / 3, 28.0, 80 / 3]))
    m = ds.roi_masks([0, 1])
    assert m.shape == (2, 32, 32) and m.dtype == torch.bool
    assert m[0, 16, 16] and not m[0, 0, 0] and m[0].sum() == 24 * 22  # pixel centres inside: cols 4..27, rows 5..26
    test = load_real("gtsrb", "test", root=root / "GTSRB", size=20)  # root may be GTSRB itself
    check_items(test, 20, [0, 1, 2, 0])
    assert test.rois[0, 2] == 35 * 20 / 40
    # no flip for signs
    aug = load_real("gtsrb", "train", root=root, train_augment=True)
    assert T.RandomResizedCrop in transform_ops(aug) and T.RandomHorizontalFlip not in transform_ops(aug)


def test_gtsrb_torchvision_download_layout(tmp_path):
    root = F.write_gtsrb(tmp_path, classes=(3, 7), per_class=2, n_test=2, torchvision_layout=True)
    check_items(load_real("gtsrb", "train", root=root), 32, [3, 3, 7, 7],
                label_of_colour={3: 3, 7: 7})
    check_items(load_real("gtsrb", "test", root=root), 32, [3, 7], label_of_colour={3: 3, 7: 7})


def test_gtsrb_missing_class_csv_is_reported(tmp_path):
    root = F.write_gtsrb(tmp_path)
    csv = root / "GTSRB/Final_Training/Images/00001/GT-00001.csv"
    csv.unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("gtsrb", "train", root=root)
    assert str(csv) in str(e.value) and "GT-000CC.csv" in str(e.value)
    assert "torchvision.datasets.GTSRB" in str(e.value) and "can fetch it" in str(e.value)


# ---------------------------------------------------------------------------------------------
# datasets read from their index files
# ---------------------------------------------------------------------------------------------
def test_cub200(tmp_path):
    root, expected = F.write_cub200(tmp_path)
    ds = load_real("cub200", "train", root=root, size=40)
    assert ds.classes == F.CUB_CLASSES
    check_items(ds, 40, expected["train"])
    assert ds.boxes.shape == (len(ds), 4) and ds.boxes[0].tolist() == [3, 4, 20, 30]
    test = load_real("cub200", "test", root=root / "CUB_200_2011")
    check_items(test, 224, expected["test"], n=2)  # default size for the large sets


def test_cub200_without_boxes(tmp_path):
    root, expected = F.write_cub200(tmp_path, boxes=False)
    assert load_real("cub200", "test", root=root, size=16).boxes is None


def test_stanford_dogs(tmp_path):
    root, expected = F.write_stanford_dogs(tmp_path)
    ds = load_real("stanford_dogs", "train", root=root, size=28)
    assert ds.classes == ["Chihuahua", "Japanese_spaniel", "Maltese_dog"]
    check_items(ds, 28, expected["train"])
    check_items(load_real("stanford_dogs", "test", root=root, size=28), 28, expected["test"])


def test_stanford_dogs_flat_lists_and_wrong_labels(tmp_path):
    root, expected = F.write_stanford_dogs(tmp_path)
    for f in ("train_list.mat", "test_list.mat"):  # the lists tarball unpacked into root
        (root / "lists" / f).rename(root / f)
    check_items(load_real("stanford_dogs", "test", root=root, size=16), 16, expected["test"])
    from scipy.io import loadmat, savemat
    m = loadmat(root / "test_list.mat")
    m["labels"] = m["labels"][::-1].copy()
    savemat(root / "test_list.mat", {k: v for k, v in m.items() if not k.startswith("__")})
    with pytest.raises(DatasetNotFoundError, match="does not match"):
        load_real("stanford_dogs", "test", root=root)


def test_stanford40(tmp_path):
    root, expected = F.write_stanford40(tmp_path)
    ds = load_real("stanford40", "train", root=root, size=30)
    assert ds.classes == F.ACTIONS
    check_items(ds, 30, expected["train"])
    check_items(load_real("stanford40", "test", root=root, size=30), 30, expected["test"])


def test_mit67(tmp_path):
    root, expected = F.write_mit67(tmp_path)
    ds = load_real("mit67", "train", root=root, size=30)
    assert ds.classes == F.MIT_CATEGORIES
    check_items(ds, 30, expected["train"])
    check_items(load_real("mit67", "test", root=root, size=30), 30, expected["test"])


# ---------------------------------------------------------------------------------------------
# ImageNet-R
# ---------------------------------------------------------------------------------------------
# ImageNet-1k indices of the 200 ImageNet-R classes, as listed in hendrycks/imagenet-r eval.py
HENDRYCKS_INDICES = [
    1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71, 76, 79, 84, 90, 94, 96, 97, 99,
    100, 105, 107, 113, 122, 125, 130, 132, 144, 145, 147, 148, 150, 151, 155, 160, 161, 162, 163,
    171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231, 232, 234, 235, 242, 245, 247, 250, 251,
    254, 259, 260, 263, 265, 267, 269, 276, 277, 281, 288, 289, 291, 292, 293, 296, 299, 301, 308,
    309, 310, 311, 314, 315, 319, 323, 327, 330, 334, 335, 337, 338, 340, 341, 344, 347, 353, 355,
    361, 362, 365, 366, 367, 368, 372, 388, 390, 393, 397, 401, 407, 413, 414, 425, 428, 430, 435,
    437, 441, 447, 448, 457, 462, 463, 469, 470, 471, 472, 476, 483, 487, 515, 546, 555, 558, 570,
    579, 583, 587, 593, 594, 596, 609, 613, 617, 621, 629, 637, 657, 658, 701, 717, 724, 763, 768,
    774, 776, 779, 780, 787, 805, 812, 815, 820, 824, 833, 847, 852, 866, 875, 883, 889, 895, 907,
    928, 931, 932, 933, 934, 936, 937, 943, 945, 947, 948, 949, 951, 953, 954, 957, 963, 965, 967,
    980, 981, 983, 988]


def test_imagenet_r_constants():
    assert len(IMAGENET1K_WNIDS) == 1000 and IMAGENET1K_WNIDS == sorted(set(IMAGENET1K_WNIDS))
    assert len(IMAGENET_R_WNIDS) == 200 and IMAGENET_R_WNIDS == sorted(set(IMAGENET_R_WNIDS))
    assert IMAGENET_R_TO_IMAGENET1K == HENDRYCKS_INDICES
    assert IMAGENET1K_WNIDS[0] == "n01440764"  # tench
    assert IMAGENET1K_WNIDS[IMAGENET_R_TO_IMAGENET1K[IMAGENET_R_WNIDS.index("n02085620")]] == "n02085620"
    assert IMAGENET_R_TO_IMAGENET1K[IMAGENET_R_WNIDS.index("n02085620")] == 151  # Chihuahua


def test_imagenet_r_split_and_label_spaces(tmp_path):
    labels = [0, 38, 199]
    root = F.write_imagenet_r(tmp_path, [IMAGENET_R_WNIDS[k] for k in labels])
    colour_to_r = dict(enumerate(labels))
    train = load_real("imagenet_r", "train", root=root, size=24)
    test = load_real("imagenet_r", "test", root=root, size=24)
    every = load_real("imagenet_r", "all", root=root, size=24)
    assert (len(train), len(test), len(every)) == (12, 3, 15)  # 80/20 of 5 per class
    assert sorted(map(str, train.files + test.files)) == sorted(map(str, every.files))
    assert train.classes == IMAGENET_R_WNIDS
    check_items(train, 24, label_of_colour=colour_to_r)
    check_items(test, 24, [0, 38, 199], label_of_colour=colour_to_r)
    # seeded and deterministic
    assert load_real("imagenet_r", "test", root=root).files == test.files
    seeds = {tuple(load_real("imagenet_r", "test", root=root, seed=s).files) for s in range(6)}
    assert len(seeds) > 1
    # ImageNet-1k label space
    in1k = load_real("imagenet_r", "all", root=root, size=24, label_space="imagenet1k")
    assert in1k.classes == IMAGENET1K_WNIDS
    assert in1k.targets == [IMAGENET_R_TO_IMAGENET1K[k] for k in every.targets]
    check_items(in1k, 24, label_of_colour={c: IMAGENET_R_TO_IMAGENET1K[k] for c, k in colour_to_r.items()})
    assert [in1k.classes[y] for y in in1k.targets] == [every.classes[y] for y in every.targets]
    with pytest.raises(ValueError, match="label_space"):
        load_real("imagenet_r", root=root, label_space="imagenet21k")


def test_imagenet_r_rejects_foreign_or_empty_folders(tmp_path):
    F.write_image(tmp_path / "a" / "imagenet-r" / "not_a_wnid" / "x.jpg", 0)
    with pytest.raises(DatasetNotFoundError, match="not ImageNet-R wnids"):
        load_real("imagenet_r", root=tmp_path / "a")
    (tmp_path / "b" / "imagenet-r" / IMAGENET_R_WNIDS[0]).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no images found"):
        load_real("imagenet_r", root=tmp_path / "b")


# ---------------------------------------------------------------------------------------------
# ImageFolder layouts
# ---------------------------------------------------------------------------------------------
def test_image_folders(tmp_path):
    root = F.write_image_folder(tmp_path)
    ds = load_real("cifar10_folder", "train", root=root)
    assert ds.classes == F.CIFAR10_CLASSES
    check_items(ds, 32, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    check_items(image_folder(root, "test", size=16), 16, [0, 0, 1, 1, 2, 2])
    assert image_folder(root, "test")[0][0].shape == (3, 224, 224)
    empty = tmp_path / "empty"
    (empty / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="cifar10_folder"):
        load_real("cifar10_folder", "train", root=empty)


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
TORCHVISION_CAN_FETCH = {"cifar10": "CIFAR10", "cifar100": "CIFAR100", "flowers102": "Flowers102", "gtsrb": "GTSRB"}


@pytest.mark.parametrize("name", sorted(REAL_DATASETS))
def test_missing_dataset_error_names_dataset_path_and_layout(name, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as e:
        load_real(name, "train", root=missing)
    msg = str(e.value)
    assert msg.startswith(f"{name}:") and str(missing) in msg
    assert REAL_DATASETS[name].layout.splitlines()[0] in msg and "Expected layout" in msg
    assert e.value.path == missing and isinstance(e.value, FileNotFoundError)
    if name in TORCHVISION_CAN_FETCH:
        assert f"torchvision.datasets.{TORCHVISION_CAN_FETCH[name]}" in msg and "can fetch it" in msg
    else:
        assert "can fetch it" not in msg


def test_default_root_is_data_dir_name(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("stanford40")
    assert e.value.path == tmp_path / "stanford40"
    root, expected = F.write_mit67(tmp_path / "mit67")
    assert load_real("mit67", "test", size=8).targets == expected["test"]


@pytest.mark.parametrize("name, writer, remove", [
    ("cub200", F.write_cub200, "CUB_200_2011/train_test_split.txt"),
    ("cifar100", F.write_cifar100, "cifar-100-python/meta"),
    ("cifar10", F.write_cifar10_batches, "cifar-10-batches-py/data_batch_4"),
    ("cifar10", F.write_cifar10_batches, "cifar-10-batches-py/batches.meta"),
    ("flowers102", F.write_flowers102, "flowers-102/setid.mat"),
    ("stanford_dogs", F.write_stanford_dogs, "lists/train_list.mat"),
    ("stanford40", F.write_stanford40, "ImageSplits/blowing_bubbles_train.txt"),
    ("mit67", F.write_mit67, "TrainImages.txt"),
    ("mit67", F.write_mit67, "Images/bakery/int100.jpg"),
    ("gtsrb", F.write_gtsrb, "GTSRB/Final_Training/Images/00002/00002_00001.ppm"),
])
def test_malformed_dataset_error_names_the_missing_file(name, writer, remove, tmp_path):
    writer(tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(DatasetNotFoundError) as e:
        load_real(name, "train", root=tmp_path)
    assert e.value.path == tmp_path / remove
    assert str(tmp_path / remove) in str(e.value) and REAL_DATASETS[name].layout.splitlines()[0] in str(e.value)


def test_bad_names_and_splits():
    with pytest.raises(ValueError, match="known"):
        load_real("imagenet_x")
    with pytest.raises(ValueError, match=r"\['train', 'val', 'test'\]"):
        load_real("flowers102", "validation")
    with pytest.raises(ValueError, match=r"\['train', 'test'\]"):
        load_real("gtsrb", "val")


# ---------------------------------------------------------------------------------------------
# the shared real subsets (skipped in a user's clone)
# ---------------------------------------------------------------------------------------------
def shared(name):
    path = shared_dir() / "data" / name if shared_dir() else None
    if path is None or not path.is_dir():
        pytest.skip(f"shared/data/{name} is not here")
    return path


def test_shared_gtsrb_subset():
    root = shared("gtsrb-32-subset")
    train, test = load_real("gtsrb", "train", root=root), load_real("gtsrb", "test", root=root)
    assert (len(train), len(test)) == (2580, 1290)
    assert len(train.classes) == 43 and set(train.targets) == set(range(43)) == set(test.targets)
    assert all(train.targets.count(c) == 60 for c in range(43))
    from PIL import Image
    for ds in (train, test):
        for i in (0, len(ds) // 2, len(ds) - 1):
            with Image.open(ds.files[i]) as im:
                assert im.size == (32, 32)
            x, _ = ds[i]
            assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
        assert (ds.rois >= 0).all() and (ds.rois <= 32).all()
        assert (ds.rois[:, 2] > ds.rois[:, 0]).all() and (ds.rois[:, 3] > ds.rois[:, 1]).all()


@pytest.mark.parametrize("name", ["cifar10_folder", "cifar10"])
def test_shared_cifar10_jpg_subset(name):
    root = shared("cifar10-jpg-subset")
    train, test = load_real(name, "train", root=root), load_real(name, "test", root=root)
    assert (len(train), len(test)) == (5000, 1000)
    assert train.classes == test.classes and len(train.classes) == 10
    assert train.classes[:3] == ["airplane", "automobile", "bird"]
    assert all(train.targets.count(c) == 500 and test.targets.count(c) == 100 for c in range(10))
    x, y = train[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1 and y == 0


def test_data_dir_fixture_for_the_full_profile(tmp_path, monkeypatch):
    roots = F.write_data_dir(tmp_path, per_class=1)
    monkeypatch.setenv("WORKBOOK_DATA", str(tmp_path))
    sizes = {name: (len(load_real(name, "train")), len(load_real(name, "test"))) for name in roots}
    assert sizes == {"cifar10": (10, 10), "cifar100": (100, 100), "gtsrb": (6, 6)}
    assert load_real("cifar10", "test")[0][0].shape == load_real("gtsrb", "test")[0][0].shape == (3, 32, 32)


def test_importing_the_studies_leaves_torchvision_unloaded():
    """torchvision (and torch._dynamo, which it imports, about 1.5 s) loads only when a real
    dataset is read or a torchvision model built: every notebook kernel imports the studies."""
    import subprocess
    import sys

    code = ("import sys; from lib.studies import study_modules; study_modules(); import lib.evaluate, lib.data.real; "
            "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
