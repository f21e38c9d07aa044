"""Issue 33 for lib.store: bad inputs and hostile files get one clear error, no work is lost.

* an unwritable store fails before computing or training, naming the folder and the fix;
* ``python -m lib.store`` reports only what it deleted, and every bad option or folder is one
  line on stderr with exit status 2, never a traceback;
* an edit of a stored file's header (config, meta, dtypes, ...) and a weights file without a
  checksum are refused with :class:`CorruptArtifactError` naming the file and how to rebuild it;
  files written before header checksums existed still load, and ``seal`` gives them one.

Permissions: root ignores them, so the tests that chmod a folder skip as root and their twins
simulate the same folder through ``os.access`` (what the store consults) to keep their power.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import safetensors.torch
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib.store import CorruptArtifactError, Store, load_weights  # noqa: E402
from lib.store import files as store_files  # noqa: E402
from lib.store.__main__ import main as store_cli  # noqa: E402

CONFIG = {"arch": "tiny", "lr": 0.5, "epochs": 3}
ACCURACY = 0.123456789  # a meta value found once in a file header
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def never(*_):
    pytest.fail("must not compute or train")


def read_only(monkeypatch, folder: Path) -> None:
    """Make ``os.access`` report ``folder`` (and everything under it) as not writable."""
    real = os.access

    def access(path, mode, *args, **kw):
        inside = Path(path).resolve().is_relative_to(folder.resolve())
        return False if inside and mode & os.W_OK else real(path, mode, *args, **kw)

    monkeypatch.setattr(store_files.os, "access", access)


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


def edit_header(path: Path, old: str, new: str) -> None:
    """Change ``old`` to ``new`` (same length, found once) inside a safetensors file's JSON header:
    the file stays readable by safetensors, only the metadata differs."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[:8], "little")
    header = bytes(data[8:8 + size])
    assert len(old) == len(new) and header.count(old.encode()) == 1, (old, header[:400])
    data[8:8 + size] = header.replace(old.encode(), new.encode())
    path.write_bytes(bytes(data))


def edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (old, text[:400])
    path.write_text(text.replace(old, new), encoding="utf-8")


def without_header_checksum(path: Path) -> None:
    """Rewrite a store file as code from before issue 33 wrote it (no header checksum)."""
    if path.suffix == ".safetensors":
        tensors, metadata = store_files.read_safetensors(path)
        del metadata["__meta_sha256__"]
        safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    elif path.suffix == ".json":
        document = json.loads(path.read_text(encoding="utf-8"))
        del document["meta_sha256"]
        path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    else:
        first, _, body = path.read_text(encoding="utf-8").partition("\n")
        header = json.loads(first.removeprefix("# workbook-store "))
        del header["meta_sha256"]
        path.write_text("# workbook-store " + json.dumps(header, ensure_ascii=True) + "\n" + body, encoding="utf-8")


def refused(path: Path, load) -> str:
    """``load()`` raises CorruptArtifactError naming ``path`` and the command that rebuilds it."""
    with pytest.raises(CorruptArtifactError) as info:
        load()
    message = str(info.value)
    assert str(path) in message and f"rm {path}" in message, message
    return message


def stored(tmp_path) -> tuple[Store, Path, dict[str, Path]]:
    """A store holding one model (meta: an accuracy) and a JSON, a CSV and a tensor result."""
    store = Store(tmp_path / "store")
    store.model("net", CONFIG, tiny, lambda net: {"accuracy": ACCURACY})
    store.save_result("summary", CONFIG, {"acc": 0.5})
    store.save_result("table", CONFIG, pd.DataFrame({"eps": [0.0, 0.5], "n": [3, 4]}))
    store.save_result("crafted", CONFIG, {"adv": torch.ones(2, 3)})
    results = {n: store._result_path(n, CONFIG) for n in ("summary", "table", "crafted")}
    return store, store.model_path("net", CONFIG), results


# ----------------------------------------------------------------------------- an unwritable store


def test_result_and_model_fail_before_the_work_in_a_read_only_store(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    store.save_result("old", CONFIG, {"v": 1})
    store.save_model("old", CONFIG, tiny(), {"accuracy": 0.5})
    read_only(monkeypatch, store.root)
    before = listing(store.root)

    for work in (lambda: store.result("new", CONFIG, never), lambda: store.model("new", CONFIG, tiny, never)):
        with pytest.raises(PermissionError) as info:
            work()
        message = str(info.value)
        assert str(store.root) in message and "not writable" in message and "WORKBOOK_STORE" in message
    assert listing(store.root) == before
    # a read-only store still serves what it holds
    assert store.result("old", CONFIG, never) == {"v": 1}
    assert store.model("old", CONFIG, tiny, never)[1]["accuracy"] == 0.5


@pytest.mark.skipif(AS_ROOT, reason="root ignores permissions; the os.access twin above covers it")
def test_read_only_store_with_real_permissions(tmp_path):
    store = Store(tmp_path / "store")
    store.save_result("old", CONFIG, {"v": 1})
    folders = [store.root, store.results_dir, store.models_dir]
    store.models_dir.mkdir()
    for folder in folders:
        folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            store.result("new", CONFIG, never)
        with pytest.raises(PermissionError, match="not writable"):
            store.model("new", CONFIG, tiny, never)
        assert store.result("old", CONFIG, never) == {"v": 1}
    finally:
        for folder in folders:
            folder.chmod(0o755)


def test_a_store_under_a_file_fails_before_computing(tmp_path):
    (tmp_path / "plain").write_text("not a folder")
    store = Store(tmp_path / "plain" / "store")
    with pytest.raises(PermissionError, match="is not a folder") as info:
        store.result("r", CONFIG, never)
    assert str(tmp_path / "plain") in str(info.value)


def test_a_result_that_cannot_be_saved_is_returned_with_a_warning(tmp_path, monkeypatch, capsys):
    store = Store(tmp_path)

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Store, "save_result", disk_full)
    calls = []
    assert store.result("r", CONFIG, lambda: calls.append(1) or {"v": 2}) == {"v": 2}
    assert calls == [1]
    line = one_line(capsys.readouterr().err)
    assert "could not save" in line and store.key("r", CONFIG) in line and "No space left" in line


# ----------------------------------------------------------------------------- python -m lib.store


def test_clean_reports_only_what_it_deleted(tmp_path, monkeypatch, capsys):
    store, model_path, results = stored(tmp_path)
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):
        if self == model_path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    assert store_cli(["--root", str(store.root), "clean", "--all"]) == 2
    out, err = capsys.readouterr()
    assert "deleted model" not in out and out.count("deleted result") == 3 and "3 artifacts" in out
    line = one_line(err)
    assert str(model_path) in line and "Permission denied" in line
    assert model_path.exists() and not any(p.exists() for p in results.values())


@pytest.mark.skipif(AS_ROOT, reason="root ignores permissions; the simulated twin above covers it")
def test_clean_in_a_read_only_folder_with_real_permissions(tmp_path, capsys):
    store, model_path, _ = stored(tmp_path)
    store.models_dir.chmod(0o555)
    try:
        assert store_cli(["--root", str(store.root), "clean", "--all"]) == 2
    finally:
        store.models_dir.chmod(0o755)
    out, err = capsys.readouterr()
    assert "deleted model" not in out and str(model_path) in one_line(err) and model_path.exists()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    store, *_ = stored(tmp_path)
    (tmp_path / "plain").write_text("x")
    root = ["--root", str(store.root)]
    cases = {
        "bogus": root + ["bogus"],
        "command": root,
        "--all": root + ["clean"],
        "30x": root + ["clean", "--older-than", "30x"],
        "''": root + ["clean", "--older-than", ""],
        "weights": root + ["ls", "--kind", "weights"],
        "--nope": root + ["clean", "--all", "--nope"],
        str(tmp_path / "missing"): ["--root", str(tmp_path / "missing"), "ls"],
        str(tmp_path / "plain"): ["--root", str(tmp_path / "plain"), "clean", "--all"],
    }
    for named, argv in cases.items():
        try:
            status = store_cli(argv)
        except SystemExit as exit_:
            status = exit_.code
        out, err = capsys.readouterr()
        assert status == 2, (argv, out, err)
        assert named in one_line(err), (argv, err)
    assert len(store.entries()) == 4  # nothing was deleted along the way


def test_cli_in_a_subprocess_prints_no_traceback(tmp_path):
    (tmp_path / "plain").write_text("x")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKBOOK_STORE": str(tmp_path / "store")}
    for argv in (["--root", str(tmp_path / "plain"), "ls"], ["clean", "--older-than", "-3d"]):
        done = subprocess.run([sys.executable, "-m", "lib.store", *argv], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stdout == "", (argv, done)
        one_line(done.stderr)


# ----------------------------------------------------------------------------- headers and checksums


def test_an_edited_model_header_is_refused(tmp_path):
    store, path, _ = stored(tmp_path)
    good = path.read_bytes()
    edits = [
        ("0.123456789", "0.923456789"),  # meta: the accuracy
        ('"lr\\":0.5', '"lr\\":0.7'),  # config
        ('"name":"net"', '"name":"nex"'),
        ('"format":"workbook', '"format":"workbooc'),
        ('"__format__":"workbook', '"__format__":"workbooc'),
        ('"saved_at":"2', '"saved_at":"1'),
        ('"meta":', '"mfta":'),  # an entry's name
        ('"__aliases__":"{}"', '"__aliases__":"[]"'),
    ]
    for old, new in edits:
        path.write_bytes(good)
        edit_header(path, old, new)
        refused(path, lambda: store.load_model("net", CONFIG, tiny()))
    path.write_bytes(good)
    edit_header(path, "0.123456789", "0.923456789")
    refused(path, lambda: store.model("net", CONFIG, tiny, never))  # refused, not retrained


def test_edited_result_headers_are_refused(tmp_path):
    store, _, results = stored(tmp_path)
    edits = {
        "summary": [('"lr": 0.5', '"lr": 0.7'), ('"saved_at": "2', '"saved_at": "1')],
        "table": [('"int64"', '"int32"'), ('"saved_at": "2', '"saved_at": "1')],
        "crafted": [('"saved_at":"2', '"saved_at":"1')],
    }
    for name, pairs in edits.items():
        path = results[name]
        good = path.read_bytes()
        for old, new in pairs:
            path.write_bytes(good)
            (edit_header if path.suffix == ".safetensors" else edit_text)(path, old, new)
            refused(path, lambda: store.load_result(name, CONFIG))


def test_a_file_without_a_checksum_is_refused(tmp_path):
    store = Store(tmp_path)
    path = store.model_path("net", CONFIG)
    header = store._header("net", CONFIG)
    metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in header.items()}
    path.parent.mkdir(parents=True)
    safetensors.torch.save_file(tiny().state_dict(), str(path), metadata={**metadata, "meta": "{}"})
    message = refused(path, lambda: store.model("net", CONFIG, tiny, never))
    assert "no checksum" in message
    tensors = store.results_dir / f"{store.key('crafted', CONFIG)}.safetensors"
    tensors.parent.mkdir(parents=True)
    safetensors.torch.save_file({"adv": torch.ones(2)}, str(tensors), metadata=metadata)
    refused(tensors, lambda: store.result("crafted", CONFIG, never))
    # a user's plain safetensors checkpoint (lib.models.build) still loads outside the store
    load_weights(tiny(), path)


def test_files_from_before_header_checksums_load_checked_and_can_be_sealed(tmp_path, capsys):
    from lib.store.seal import seal_file

    store, path, results = stored(tmp_path)
    files = [path, *results.values()]
    for file in files:
        without_header_checksum(file)
    # they load as before, and what the key fixes (config, name, ...) is still checked
    assert store.model("net", CONFIG, tiny, never)[1]["accuracy"] == ACCURACY
    assert store.load_result("summary", CONFIG) == {"acc": 0.5}
    assert list(store.load_result("table", CONFIG)["n"]) == [3, 4]
    assert torch.equal(store.load_result("crafted", CONFIG)["adv"], torch.ones(2, 3))
    good = path.read_bytes()
    edit_header(path, '"lr\\":0.5', '"lr\\":0.7')
    refused(path, lambda: store.load_model("net", CONFIG, tiny()))
    path.write_bytes(good)

    # seal: checks each file, adds the header checksum, keeps the modification time
    mtimes, contents = {f: f.stat().st_mtime_ns for f in files}, {f: f.read_bytes() for f in files}
    assert store_cli(["--root", str(store.root), "seal", "--dry-run"]) == 0
    assert {f: f.read_bytes() for f in files} == contents
    assert store_cli(["--root", str(store.root), "seal"]) == 0
    assert "4 of 4 artifacts sealed" in capsys.readouterr().out
    assert {f: f.stat().st_mtime_ns for f in files} == mtimes
    assert not any(seal_file(f) for f in files)  # sealed once
    assert store.model("net", CONFIG, tiny, never)[1]["accuracy"] == ACCURACY
    pd.testing.assert_frame_equal(store.load_result("table", CONFIG), pd.DataFrame({"eps": [0.0, 0.5], "n": [3, 4]}))
    edit_header(path, "0.123456789", "0.923456789")  # now the meta is covered too
    refused(path, lambda: store.load_model("net", CONFIG, tiny()))
    # a file that fails is reported on one line and left alone
    assert store_cli(["--root", str(store.root), "seal"]) == 2
    assert str(path) in one_line(capsys.readouterr().err)
