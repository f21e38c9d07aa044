"""Bad dataset files get one clear error naming the file (issue 33): index entries that point
outside the dataset folder, labels out of range or not integers, truncated or corrupt images (also
through DataLoader workers), broken or refused pickles. Fixtures are the real on-disk formats of
lib/data/fixtures.py; each test asserts the error class, that the message's first line names the
file (and the line where there is one) and the bad value, and, for path escapes, that the file
outside was never opened although a readable image was put there."""
from __future__ import annotations

import contextlib
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import lib.data.fixtures as F
from scipy.io import loadmat, savemat

from lib.data import safe_pickle
from lib.data.base import DataError, DatasetNotFoundError, UnreadableImageError
from lib.data.real import cifar100_superclass_tasks, load_real
from lib.data.safe_pickle import UnreadablePickleError, UnsafePickleError

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
_OPENED: list[str] | None = None


def _audit(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(Path(str(args[0])).resolve()))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only inside opened_files()


@contextlib.contextmanager
def opened_files():
    """Records the (resolved) path of every file opened inside the block."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def first_line(e) -> str:
    return str(e.value).splitlines()[0]


def edit_line(path: Path, line: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` on line ``line`` (1-based) of a text file, keeping line ends."""
    lines = path.read_text().splitlines(keepends=True)
    assert old in lines[line - 1], (old, lines[line - 1])
    lines[line - 1] = lines[line - 1].replace(old, new)
    path.write_text("".join(lines))


def refuses_escape(name: str, split: str, root: Path, target: Path, index: Path, where: str, entry: str):
    """load_real(name, split) raises DatasetNotFoundError whose first line names ``index``,
    ``where`` (the line) and ``entry``, and never opens ``target`` (a readable image)."""
    assert target.is_file()
    with opened_files() as opened, pytest.raises(DatasetNotFoundError) as e:
        load_real(name, split, root=root)
    head = first_line(e)
    assert str(index) in head and where in head and entry in head, head
    assert isinstance(e.value, DataError) and e.value.path == index
    assert str(target.resolve()) not in opened


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# ---------------------------------------------------------------------------------------------
# 1. index entries that leave the dataset folder
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_gtsrb_test_csv_filename_outside_the_folder_is_refused(tmp_path, how):
    root = F.write_gtsrb(tmp_path / "g")
    target = F.write_image(tmp_path / "g" / "GTSRB" / "outside.ppm", 1, (40, 30))  # Images/../../outside.ppm
    entry = "../../outside.ppm" if how == "dotdot" else str(target)
    csv = root / "GTSRB/Final_Test/GT-final_test.csv"
    edit_line(csv, 3, "00001.ppm", entry)
    refuses_escape("gtsrb", "test", root, target, csv, "line 3", entry)


@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_gtsrb_train_csv_filename_outside_the_folder_is_refused(tmp_path, how):
    root = F.write_gtsrb(tmp_path / "g")
    target = F.write_image(tmp_path / "outside.ppm", 1, (40, 30))
    entry = "../../../../../outside.ppm" if how == "dotdot" else str(target)
    assert (root / "GTSRB/Final_Training/Images/00001" / entry).resolve() == target.resolve()
    csv = root / "GTSRB/Final_Training/Images/00001/GT-00001.csv"
    edit_line(csv, 2, "00001_00000.ppm", entry)
    refuses_escape("gtsrb", "train", root, target, csv, "line 2", entry)


def test_cub200_images_txt_outside_the_folder_is_refused(tmp_path):
    root, _ = F.write_cub200(tmp_path / "c")
    target = F.write_image(tmp_path / "c" / "outside.jpg", 0)  # CUB_200_2011/images/../../outside.jpg
    images_txt = root / "CUB_200_2011" / "images.txt"
    edit_line(images_txt, 1, "001.Black_footed_Albatross/Black_footed_Albatross_0000_101.jpg", "../../outside.jpg")
    refuses_escape("cub200", "test", root, target, images_txt, "line 1", "../../outside.jpg")


def test_stanford_dogs_file_list_outside_the_folder_is_refused(tmp_path):
    root, _ = F.write_stanford_dogs(tmp_path / "d")
    target = F.write_image(tmp_path / "d" / "outside.jpg", 0)
    mat = root / "lists" / "test_list.mat"
    m = loadmat(mat)
    entry = "n02085620-Chihuahua/../../outside.jpg"  # passes the old "first folder matches the label" check
    m["file_list"][0, 0] = np.array([entry])  # a cell holding a char array, as loadmat gives it
    savemat(mat, {k: v for k, v in m.items() if not k.startswith("__")})
    refuses_escape("stanford_dogs", "test", root, target, mat, "file_list entry 1", entry)


def test_stanford40_split_list_outside_the_folder_is_refused(tmp_path):
    root, _ = F.write_stanford40(tmp_path / "s")
    target = F.write_image(tmp_path / "s" / "outside.jpg", 0)  # JPEGImages/../outside.jpg
    lst = root / "ImageSplits" / "applauding_test.txt"
    edit_line(lst, 1, "applauding_001.jpg", "../outside.jpg")
    refuses_escape("stanford40", "test", root, target, lst, "line 1", "../outside.jpg")


def test_stanford40_actions_txt_cannot_name_a_list_outside_the_folder(tmp_path):
    root, _ = F.write_stanford40(tmp_path / "s")
    outside_list = tmp_path / "evil_test.txt"  # ImageSplits/../../evil + _test.txt
    outside_list.write_text("applauding_001.jpg\n")
    actions = root / "ImageSplits" / "actions.txt"
    edit_line(actions, 2, "applauding", "../../evil")
    refuses_escape("stanford40", "test", root, outside_list, actions, "line 2", "../../evil_test.txt")


@pytest.mark.parametrize("entry", ["kitchen/../../outside.jpg", "/abs"])
def test_mit67_index_outside_the_folder_is_refused(tmp_path, entry):
    root, _ = F.write_mit67(tmp_path / "m")
    target = F.write_image(tmp_path / "m" / "outside.jpg", 0)
    entry = entry if entry != "/abs" else str(target)
    index = root / "TestImages.txt"
    edit_line(index, 1, "airport_inside/int102.jpg", entry)
    refuses_escape("mit67", "test", root, target, index, "line 1", entry)


# ---------------------------------------------------------------------------------------------
# 2. labels out of range or not integers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["99", "-1", "43", "x", "2.5", ""])
def test_gtsrb_classid_must_be_0_to_42(tmp_path, value):
    root = F.write_gtsrb(tmp_path)
    csv = root / "GTSRB/Final_Test/GT-final_test.csv"
    edit_line(csv, 4, ";25;2\n", f";25;{value}\n")
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("gtsrb", "test", root=root)
    head = first_line(e)
    assert str(csv) in head and "line 4" in head and f"ClassId {value!r}" in head and "0..42" in head, head


def test_gtsrb_classid_in_a_training_csv(tmp_path):
    root = F.write_gtsrb(tmp_path)
    csv = root / "GTSRB/Final_Training/Images/00002/GT-00002.csv"
    edit_line(csv, 3, ";25;2\n", ";25;99\n")
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("gtsrb", "train", root=root)
    assert str(csv) in first_line(e) and "line 3" in first_line(e) and "'99'" in first_line(e)


@pytest.mark.parametrize("change, says", [
    (("Filename;", "Name;", 1), "lacks Filename"),
    (("40;30;", "0;30;", 2), "Width and Height > 0"),
    (("35;25", "nan;25", 2), "finite numbers"),
])
def test_gtsrb_malformed_columns_name_the_csv_and_line(tmp_path, change, says):
    root = F.write_gtsrb(tmp_path)
    csv = root / "GTSRB/Final_Test/GT-final_test.csv"
    old, new, line = change
    edit_line(csv, line, old, new)
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("gtsrb", "test", root=root)
    assert str(csv) in first_line(e) and f"line {line}" in first_line(e) and says in first_line(e)


@pytest.mark.parametrize("file, line, old, new, says", [
    ("image_class_labels.txt", 2, "2 1", "2 0", "class id '0' is not an integer in 1..3"),
    ("image_class_labels.txt", 5, "5 2", "5 4", "class id '4'"),
    ("image_class_labels.txt", 3, "3 1", "3 one", "class id 'one'"),
    ("image_class_labels.txt", 3, "3 1", "3", "expected '<id> <value>'"),
    ("train_test_split.txt", 4, "4 1", "4 2", "is_training_image '2'"),
    ("classes.txt", 2, "2 ", "x ", "class id 'x'"),
    ("bounding_boxes.txt", 1, "20.0 30.0", "20.0", "x y width height"),
])
def test_cub200_bad_index_lines_name_file_and_line(tmp_path, file, line, old, new, says):
    root, _ = F.write_cub200(tmp_path)
    path = root / "CUB_200_2011" / file
    edit_line(path, line, old, new)
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("cub200", "test", root=root)
    head = first_line(e)
    assert str(path) in head and f"line {line}" in head and says in head, head


def test_cub200_image_without_a_label_line(tmp_path):
    root, _ = F.write_cub200(tmp_path)
    labels = root / "CUB_200_2011" / "image_class_labels.txt"
    labels.write_text("".join(s for s in labels.read_text().splitlines(True) if not s.startswith("7 ")))
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("cub200", "train", root=root)
    assert str(labels) in first_line(e) and "image id 7" in first_line(e)


@pytest.mark.parametrize("labels", [[1.5, 2, 3], [1, 2, 3, 3]])
def test_stanford_dogs_labels_must_be_whole_and_one_per_file(tmp_path, labels):
    root, _ = F.write_stanford_dogs(tmp_path)
    mat = root / "lists" / "test_list.mat"
    m = loadmat(mat)
    m["labels"] = np.array(labels, float)[:, None]
    savemat(mat, {k: v for k, v in m.items() if not k.startswith("__")})
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("stanford_dogs", "test", root=root)
    assert str(mat) in first_line(e)
    assert ("labels entry 1" in first_line(e) and "1.5" in first_line(e)) or "but labels 4" in first_line(e)


def test_mit67_line_without_a_category_folder(tmp_path):
    root, _ = F.write_mit67(tmp_path)
    F.write_image(root / "Images" / "int100.jpg", 0)
    index = root / "TestImages.txt"
    edit_line(index, 2, "bakery/int102.jpg", "int100.jpg")
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("mit67", "test", root=root)
    assert str(index) in first_line(e) and "line 2" in first_line(e) and "'int100.jpg'" in first_line(e)


@pytest.mark.parametrize("bad", [0, 103])
def test_flowers102_labels_must_be_1_to_102(tmp_path, bad):
    root, _ = F.write_flowers102(tmp_path)
    mat = root / "flowers-102" / "imagelabels.mat"
    labels = loadmat(mat)["labels"].astype(np.uint8)
    labels[0, 5] = bad
    savemat(mat, {"labels": labels})
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("flowers102", "val", root=root)
    assert str(mat) in first_line(e) and "labels entry 6" in first_line(e) and "1..102" in first_line(e)


def test_flowers102_split_id_without_a_label(tmp_path):
    root, _ = F.write_flowers102(tmp_path)
    mat = root / "flowers-102" / "setid.mat"
    savemat(mat, {"trnid": np.array([[1, 2, 3, 40]], np.uint16), "valid": np.array([[5]], np.uint16),
                  "tstid": np.array([[9]], np.uint16)})
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("flowers102", "train", root=root)
    assert str(mat) in first_line(e) and "trnid entry 4" in first_line(e) and "40" in first_line(e)


@pytest.mark.parametrize("labels", [[0, 10], [0, -1], [0, "x"]])
def test_cifar10_labels_out_of_range(tmp_path, labels):
    F.write_cifar10_batches(tmp_path, per_class=1)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    F.dump_py2({b"data": np.zeros((2, 3072), np.uint8), b"labels": labels}, batch)
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("cifar10", "test", root=tmp_path)
    assert str(batch) in first_line(e) and "labels[1]" in first_line(e) and "0..9" in first_line(e)


# ---------------------------------------------------------------------------------------------
# 3. images that cannot be decoded
# ---------------------------------------------------------------------------------------------
def assert_unreadable(e, path: Path):
    msg = str(e.value)
    assert isinstance(e.value, DataError) and "\n" not in msg and "Traceback" not in msg
    assert str(path) in msg and "cannot be read" in msg and "download" in msg


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_jpeg_in_an_image_folder_names_the_file(tmp_path, keep):
    root = F.write_image_folder(tmp_path)
    bad = truncate(root / "test" / "bird" / "0001.jpg", keep)
    ds = load_real("image_folder", "test", root=root, size=16)
    ds[0]  # the good ones still load
    with pytest.raises(UnreadableImageError) as e:
        ds[len(ds) - 1]
    assert_unreadable(e, bad)
    assert e.value.path == bad


def test_not_an_image_and_truncated_ppm_in_the_file_readers(tmp_path):
    root, _ = F.write_mit67(tmp_path / "m")
    bad = root / "Images" / "kitchen" / "int102.jpg"
    bad.write_bytes(b"this is not a JPEG")
    ds = load_real("mit67", "test", root=root, size=16)
    with pytest.raises(UnreadableImageError) as e:
        ds[ds.files.index(bad)]
    assert_unreadable(e, bad)
    groot = F.write_gtsrb(tmp_path / "g")
    for keep in (0.5, 0.002):  # decoder error (OSError) and header error (ValueError)
        ppm = truncate(groot / "GTSRB/Final_Test/Images/00002.ppm", keep)
        with pytest.raises(UnreadableImageError) as e:
            load_real("gtsrb", "test", root=groot)[2]
        assert_unreadable(e, ppm)


def test_truncated_jpeg_in_flowers102(tmp_path):
    root, _ = F.write_flowers102(tmp_path)
    bad = truncate(root / "flowers-102" / "jpg" / "image_00005.jpg")
    ds = load_real("flowers102", "val", root=root, size=16)
    with pytest.raises(UnreadableImageError) as e:
        ds[0]
    assert_unreadable(e, bad)


def test_truncated_image_through_dataloader_workers_keeps_one_line(tmp_path):
    """A DataLoader worker re-raises the error class with the worker's traceback as its message;
    the error is cut back to its one line naming the file."""
    from torch.utils.data import DataLoader

    root = F.write_image_folder(tmp_path, per_class={"test": 2})
    bad = truncate(root / "test" / "airplane" / "0001.jpg")
    ds = load_real("cifar10_folder", "test", root=root)
    batches = iter(DataLoader(ds, batch_size=2, num_workers=1))
    try:
        with pytest.raises(UnreadableImageError) as e:
            for _ in batches:
                pass
    finally:
        batches._shutdown_workers()  # now, not when the traceback is collected (5 s of joins then)
    assert_unreadable(e, bad)


# ---------------------------------------------------------------------------------------------
# 4. pickles: refused or not whole
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_broken_cifar_pickle_names_the_file(tmp_path, damage):
    F.write_cifar10_batches(tmp_path, per_class=1)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    data = batch.read_bytes()
    batch.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a pickle" * 9, "empty": b""}[damage])
    with pytest.raises(UnreadablePickleError) as e:
        safe_pickle.load(batch)
    assert isinstance(e.value, DataError) and isinstance(e.value, pickle.UnpicklingError)
    assert "\n" not in str(e.value) and str(batch) in str(e.value) and "fresh copy" in str(e.value)
    with pytest.raises(DatasetNotFoundError) as e:
        load_real("cifar10", "train", root=tmp_path)
    assert str(batch) in first_line(e) and "not a complete pickle" in first_line(e)


def test_refusals_are_one_line_data_errors_naming_the_file(tmp_path):
    path = tmp_path / "batch"
    cases = {b"cos\nsystem\n(S'true'\ntR.": "os.system",
             b"c_codecs\nencode\n(S'abc'\nS'rot13'\ntR.": "latin1",
             pickle.dumps({"data": np.array([1, "a"], dtype=object)}, protocol=2): "plain numeric",
             b"\x80\x04\x8c\x04os\nx\x8c\x01y\x93.": "os\\nx.y"}  # STACK_GLOBAL of a name with a line break
    for data, says in cases.items():
        path.write_bytes(data)
        with pytest.raises(UnsafePickleError) as e:
            safe_pickle.load(path)
        msg = str(e.value)
        assert isinstance(e.value, DataError) and "\n" not in msg, msg
        assert str(path) in msg and says in msg and e.value.source == str(path), msg


def test_cifar100_superclass_tasks_reports_a_malformed_train_file(tmp_path):
    F.write_cifar100(tmp_path)
    train = tmp_path / "cifar-100-python" / "train"
    for bad, says in (([1, 2, 3], "expected a pickled dict"), ({b"fine_labels": [1]}, "no 'coarse_labels'"),
                      ({b"fine_labels": [100], b"coarse_labels": [0]}, "fine_labels[0]")):
        F.dump_py2(bad, train)
        with pytest.raises(DatasetNotFoundError) as e:
            cifar100_superclass_tasks(tmp_path)
        assert str(train) in first_line(e) and says in first_line(e), first_line(e)


def test_every_dataset_error_is_one_class_for_the_clis():
    assert issubclass(DatasetNotFoundError, DataError) and issubclass(DatasetNotFoundError, FileNotFoundError)
    for cls in (UnreadableImageError, UnsafePickleError, UnreadablePickleError):
        assert issubclass(cls, DataError)
