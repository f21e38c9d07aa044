"""lib.data.safe_pickle: dataset pickles load, pickles that name anything else are refused before
anything runs (issue 14, item 7)."""
from __future__ import annotations

import copyreg
import os
import pickle

import numpy as np
import pytest
import lib.data.fixtures as F

from lib.data import safe_pickle
from lib.data.real import cifar100_superclass_tasks, load_real
from lib.data.safe_pickle import UnsafePickleError


class TouchFile:
    """A payload: unpickling it runs ``os.system("touch <marker>")``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_the_payload_really_runs_under_plain_pickle(tmp_path):
    # so the refusals below are refusals of a working exploit
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(TouchFile(marker)))
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_os_system_is_refused_and_never_runs(tmp_path, protocol):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data": TouchFile(marker)}, protocol=protocol))
    with pytest.raises(UnsafePickleError) as e:
        safe_pickle.load(path)
    assert f"{os.system.__module__}.system" in str(e.value) and str(path) in str(e.value)
    assert e.value.what == f"{os.system.__module__}.system" and e.value.source == str(path)
    assert isinstance(e.value, pickle.UnpicklingError)
    with open(path, "rb") as f:  # an open file is named by its name too
        with pytest.raises(UnsafePickleError, match="evil.pkl"):
            safe_pickle.load(f)
    assert not marker.exists()


def test_other_routes_to_a_callable_are_refused(tmp_path):
    marker = tmp_path / "ran"
    # the copyreg extension registry (EXT opcodes) resolves names through find_class too
    copyreg.add_extension(os.system.__module__, "system", 0x7A)
    try:
        data = pickle.dumps(TouchFile(marker), protocol=2)
        assert data[2:3] == pickle.EXT1
        with pytest.raises(UnsafePickleError, match="system"):
            safe_pickle.loads(data)
    finally:
        copyreg.remove_extension(os.system.__module__, "system", 0x7A)
    # INST (protocol 0), builtins.eval, a persistent id
    inst = b"(S'touch " + str(marker).encode() + b"'\nios\nsystem\n."
    with pytest.raises(UnsafePickleError, match="os.system"):
        safe_pickle.loads(inst)
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_pickle.loads(b"cbuiltins\neval\n(S'1'\ntR.")
    with pytest.raises(UnsafePickleError, match="persistent id"):
        safe_pickle.loads(b"P1\n.")
    # _codecs.encode is allowed for latin-1 only (the form Python 3 gives bytes at protocol 2)
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        safe_pickle.loads(b"c_codecs\nencode\n(S'abc'\nS'rot13'\ntR.")
    assert not marker.exists()


def test_the_allow_list_is_small():
    assert len(safe_pickle.ALLOWED) == 7
    assert {m.split(".")[0] for m, _ in safe_pickle.ALLOWED} == {"numpy", "_codecs"}
    # numpy scalars are not in CIFAR's files, so they are refused too
    with pytest.raises(UnsafePickleError, match="scalar"):
        safe_pickle.loads(pickle.dumps({"labels": np.int64(3)}))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_python3_repacks_load_at_every_protocol(protocol):
    d = {"data": np.arange(3072 * 2, dtype=np.int64).astype(np.uint8).reshape(2, 3072), "labels": [3, 7],
         "filenames": [b"a.png", b"b.png"], "batch_label": "x", "f": 0.5, "none": None, "t": (1, True)}
    r = safe_pickle.loads(pickle.dumps(d, protocol=protocol))
    assert r.keys() == d.keys() and r["data"].dtype == np.uint8 and np.array_equal(r["data"], d["data"])
    assert [r[k] for k in d if k != "data"] == [d[k] for k in d if k != "data"]


def test_python2_release_format_loads_with_both_encodings(tmp_path):
    x = np.arange(3072, dtype=np.uint16).astype(np.uint8).reshape(1, 3072)
    path = F.dump_py2({b"data": x, b"labels": [4], b"filenames": [b"cat_01.png"]}, tmp_path / "batch")
    raw = path.read_bytes()
    assert raw.startswith(b"\x80\x02") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    latin = safe_pickle.load(path)
    assert list(latin) == ["data", "labels", "filenames"] and latin["filenames"] == ["cat_01.png"]
    as_bytes = safe_pickle.load(path, encoding="bytes")
    assert list(as_bytes) == [b"data", b"labels", b"filenames"]
    for d in (latin, as_bytes):
        assert np.array_equal(d[next(iter(d))], x)
    # the same bytes through the reference reader
    assert np.array_equal(pickle.loads(raw, encoding="latin1")["data"], x)


def test_tampered_cifar_files_are_refused_by_the_loaders(tmp_path):
    marker = tmp_path / "ran"
    F.write_cifar10_batches(tmp_path / "c10")
    batch = tmp_path / "c10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(pickle.dumps({"data": TouchFile(marker), "labels": []}, protocol=2))
    load_real("cifar10", "test", root=tmp_path / "c10")  # the untouched test batch still loads
    with pytest.raises(UnsafePickleError) as e:
        load_real("cifar10", "train", root=tmp_path / "c10")
    assert str(batch) in str(e.value) and "system" in str(e.value)

    F.write_cifar100(tmp_path / "c100")
    meta = tmp_path / "c100" / "cifar-100-python" / "meta"
    meta.write_bytes(pickle.dumps(TouchFile(marker)))
    with pytest.raises(UnsafePickleError, match="meta"):
        load_real("cifar100", "test", root=tmp_path / "c100")
    train = tmp_path / "c100" / "cifar-100-python" / "train"
    train.write_bytes(pickle.dumps(TouchFile(marker)))
    with pytest.raises(UnsafePickleError, match="train"):
        cifar100_superclass_tasks(tmp_path / "c100")
    assert not marker.exists()


def test_no_plain_pickle_load_left_in_lib():
    """Every unpickling in lib goes through safe_pickle or torch.load(weights_only=True)."""
    import re
    from pathlib import Path

    import lib
    root = Path(lib.__file__).parent
    plain = re.compile(r"(?<!safe_)pickle\.(load|loads|Unpickler)\(|\bUnpickler\("
                       r"|torch\.load\((?![^)]*weights_only=True)")
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                 if p.name != "safe_pickle.py" and plain.search(p.read_text())]
    assert offenders == []


def test_object_and_structured_dtypes_are_refused():
    import pickle as _pickle

    import numpy as np

    from lib.data import safe_pickle

    for arr in (np.array([1, "a"], dtype=object), np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])):
        data = _pickle.dumps({"data": arr}, protocol=2)
        with pytest.raises(_pickle.UnpicklingError):
            safe_pickle.loads(data)
    ok = safe_pickle.loads(_pickle.dumps({"data": np.arange(6, dtype=np.uint8)}, protocol=2))
    assert ok["data"].dtype == np.uint8
