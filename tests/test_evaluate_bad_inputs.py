"""Issue 33: every bad input of ``python -m lib.evaluate`` is one line on stderr and exit status 2,
checked before any attack runs, and no report overwrites another without ``--overwrite``.

The model is an untrained 4-wide small CNN (the numbers do not matter here, only what the command
does), the data the tiny CIFAR-10 release fixture of :mod:`lib.data.fixtures`. Tests that must stop
before the evaluation replace :func:`lib.robustness.robustness_report` with one that fails the
test, so "checked before compute" is asserted, not assumed.
"""
from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest
import lib.data.fixtures as F
import safetensors.torch
import torch
from test_evaluate_cli import TouchFile

import lib.robustness
from lib import models as M
from lib.evaluate import NORM_PRESETS, load_checkpoint
from lib.evaluate.__main__ import main, parse_eps
from lib.store import save_weights

SMALL = ["--arch", "small_cnn", "--arch-option", "width=4", "--device", "cpu", "--quiet", "--eps", "8/255",
         "--n", "12", "--pgd-steps", "1", "2", "--apgd-steps", "2", "--square-queries", "0"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    F.write_cifar10_batches(root, per_class={"train": 1, "test": 2})
    return root


def _save(model, folder):
    return {"store": save_weights(model, folder / "tiny.safetensors"), "pt": _torch_save(model, folder / "tiny.pt")}


def _torch_save(model, path):
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """An untrained 10-class small CNN (width 4, CIFAR-10 statistics inside), saved by the store
    (checksummed safetensors) and as a .pt state dict."""
    torch.manual_seed(0)
    mean, std = NORM_PRESETS["cifar10"]
    return _save(M.build("small_cnn", 10, width=4, mean=mean, std=std).eval(), tmp_path_factory.mktemp("weights"))


@pytest.fixture
def no_attack(monkeypatch):
    """Fail the test if the evaluation starts (the input should have been refused before)."""
    def refused(model, data, *, square_queries=0, **kw):  # the real one's Square option, which is looked up
        raise AssertionError("the evaluation started although the input was bad")
    monkeypatch.setattr(lib.robustness, "robustness_report", refused)


def run(argv, capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit status (argparse's SystemExit included), stdout and stderr."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line(rc: int, err: str, *names: str) -> None:
    """Exit status 2, one line on stderr naming each of ``names``, no traceback."""
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for name in names:
        assert name in err, (name, err)


# --- finding 1: a new folder per report ---------------------------------------------------------

def test_each_report_goes_into_a_new_folder(cifar, weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", cifar, "--no-apgd"]  # quicker
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    first = [p for p in (tmp_path / "runs" / "evaluate").iterdir()]
    assert len(first) == 1 and first[0].name.startswith("tiny-")
    kept = {p.name: p.read_bytes() for p in first[0].iterdir()}
    assert "compact_table.md" in kept and f"runs/evaluate/{first[0].name}/compact_table.md" in out
    # the second report (asking more images than the split holds, which it states) gets its own folder
    rc, out, err = run([*argv, "--n", "50"], capsys)
    assert rc == 0, err
    assert "note: --n 50 asked for, but the test split holds only 20 images: all 20 were evaluated" in out
    folders = sorted((tmp_path / "runs" / "evaluate").iterdir())
    assert len(folders) == 2
    assert {p.name: p.read_bytes() for p in first[0].iterdir()} == kept  # the earlier report intact
    second = next(p for p in folders if p != first[0])
    info = json.loads((second / "checkpoint.json").read_text())
    assert info["n"] == 20 and "all 20 were evaluated" in info["notes"][0]


def test_an_out_folder_that_holds_files_needs_overwrite(cifar, weights, tmp_path, capsys, monkeypatch, no_attack):
    out = tmp_path / "report"
    out.mkdir()
    (out / "compact_table.md").write_text("an earlier report\n")
    argv = [*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", cifar, "--out", out]
    rc, _, err = run(argv, capsys)
    assert_one_line(rc, err, f"--out {out}", "compact_table.md", "--overwrite")
    assert (out / "compact_table.md").read_text() == "an earlier report\n"
    monkeypatch.undo()  # the evaluation may run now
    rc, _, err = run([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert "worst case" in (out / "compact_table.md").read_text()


# --- finding 2: an unusable --out fails before the evaluation ----------------------------------

def test_an_unusable_out_fails_before_the_evaluation(cifar, weights, tmp_path, capsys, no_attack):
    argv = [*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", cifar]
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me\n")
    rc, _, err = run([*argv, "--out", a_file], capsys)
    assert_one_line(rc, err, f"--out {a_file}", "existing file")
    rc, _, err = run([*argv, "--out", a_file / "report"], capsys)  # a folder under a file
    assert_one_line(rc, err, f"--out {a_file / 'report'}", "cannot be used")
    assert a_file.read_text() == "keep me\n"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable(locked):
            rc, _, err = run([*argv, "--out", locked / "report"], capsys)
            assert_one_line(rc, err, f"--out {locked / 'report'}", "cannot be used")
    finally:
        locked.chmod(0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locked", "results.txt"]


def _writable(folder) -> bool:
    """False when permissions bind (a root user can write in a read-only folder)."""
    try:
        (folder / ".probe").touch()
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


# --- finding 3: one rule for eps -----------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("8", 8 / 255), ("1", 1 / 255), ("2", 2 / 255),
                                         ("255", 1.0), ("1.5", 1.5 / 255), ("0.5", 0.5), ("0.0314", 0.0314),
                                         ("300/300", 1.0)])
def test_eps_rule(text, value):
    assert parse_eps(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["300", "256", "300/255", "0", "-1", "-8/255", "nan", "inf", "-inf", "8/0", "eight",
                                  "1e-400", "0/255"])
def test_eps_outside_the_rule_is_one_line(text, cifar, weights, capsys, no_attack):
    rc, _, err = run([*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", cifar, f"--eps={text}"],
                     capsys)
    assert_one_line(rc, err, "--eps", repr(text), "8/255")


# --- finding 4: counts are whole numbers >= 1 ----------------------------------------------------

@pytest.mark.parametrize("option, values", [("--n", ["-5"]), ("--n", ["0"]), ("--n", ["1.5"]), ("--batch-size", ["0"]),
                                            ("--apgd-steps", ["0"]), ("--pgd-steps", ["0", "4"]),
                                            ("--pgd-steps", ["-1", "4"]), ("--square-queries", ["-1"]),
                                            ("--size", ["0"]), ("--num-classes", ["-10"]), ("--seed", ["x"])])
def test_counts_must_be_whole_and_positive(option, values, cifar, weights, capsys, no_attack):
    argv = [*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", cifar, option, *values]
    rc, _, err = run(argv, capsys)
    assert_one_line(rc, err, option, repr(values[0]), "whole number")


# --- finding 5: a device this machine does not have ---------------------------------------------

def test_a_missing_or_unknown_device_is_refused_before_loading(monkeypatch, capsys, tmp_path, no_attack):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    missing = tmp_path / "not-there.pt"  # the device is checked first: this file is never looked at
    rc, _, err = run([*SMALL, "--weights", missing, "--device", "cuda"], capsys)
    assert_one_line(rc, err)
    assert err.strip() == ("error: --device cuda: no CUDA device here (torch.cuda.is_available() is False); "
                           "use --device cpu")
    for bad in ("gpu", "cuda:x", "cuda:-1"):
        rc, _, err = run([*SMALL, "--weights", missing, "--device", bad], capsys)
        assert_one_line(rc, err, "--device", bad, "cpu, cuda")
    assert not list(tmp_path.iterdir())


# --- finding 6: APGD-T needs 4 classes -----------------------------------------------------------

def test_a_two_class_model_is_refused_with_the_option_or_evaluated_without_apgd(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    paths = _save(M.build("small_cnn", 2, width=4, mean=(0.5,) * 3, std=(0.25,) * 3).eval(), tmp_path)
    data = F.write_image_folder(tmp_path / "two", classes=["cat", "dog"], per_class={"test": 3})
    argv = [*SMALL, "--weights", paths["pt"], "--data", data, "--out", tmp_path / "out"]
    with monkeypatch.context() as m:
        m.setattr(lib.robustness, "robustness_report",
                  lambda model, data, *, square_queries=0, **kw: pytest.fail("evaluation started"))
        rc, _, err = run(argv, capsys)
    assert_one_line(rc, err, "2-class", "APGD-T", "at least 4 classes", "--no-apgd")
    assert not (tmp_path / "out").exists()  # the folder made for the report is removed again
    rc, out, err = run([*argv, "--no-apgd"], capsys)
    assert rc == 0, err
    compact = pd.read_csv(tmp_path / "out" / "compact_table.csv")
    assert list(compact.attack) == ["clean", "FGSM", "PGD-2", "worst case"]
    assert "note: --no-apgd: APGD-CE, APGD-T and the AutoAttack-style chain were not run" in out
    notes = json.loads((tmp_path / "out" / "checkpoint.json").read_text())["notes"]
    assert any(note.startswith("--no-apgd: APGD-CE, APGD-T") for note in notes)


# --- finding 7: a refused pickle, an unreadable image --------------------------------------------

def test_a_refused_cifar_pickle_is_one_line(tmp_path, weights, capsys, no_attack):
    root = tmp_path / "cifar10"
    F.write_cifar10_batches(root, per_class={"train": 1, "test": 1})
    marker = tmp_path / "ran"
    evil = root / "cifar-10-batches-py" / "test_batch"
    evil.write_bytes(pickle.dumps({"data": TouchFile(marker), "labels": [0]}, protocol=2))
    rc, _, err = run([*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", root,
                      "--out", tmp_path / "out"], capsys)
    assert_one_line(rc, err, "test_batch", "system")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_an_unreadable_image_is_one_line_naming_it(tmp_path, weights, capsys):
    data = F.write_image_folder(tmp_path / "jpg", classes=F.CIFAR10_LABEL_NAMES, per_class={"test": 1})
    bad = data / "test" / "cat" / "0000.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG (its header still reads)
    rc, _, err = run([*SMALL, "--weights", weights["pt"], "--data", data, "--out", tmp_path / "out"], capsys)
    assert_one_line(rc, err, str(bad))
    garbage = data / "test" / "airplane" / "0000.jpg"  # the first image, read for the folder's size
    garbage.write_bytes(b"not an image")
    rc, _, err = run([*SMALL, "--weights", weights["pt"], "--data", data, "--out", tmp_path / "out2"], capsys)
    assert_one_line(rc, err, str(garbage))


# --- finding 8: a store file that fails its checksum --------------------------------------------

def test_a_store_weights_file_with_a_flipped_byte_is_refused(cifar, weights, tmp_path, capsys, no_attack):
    flipped = tmp_path / "flipped.safetensors"
    raw = bytearray(weights["store"].read_bytes())
    raw[-3] ^= 0x01  # a byte of the last tensor's data
    flipped.write_bytes(bytes(raw))
    rc, _, err = run([*SMALL, "--weights", flipped, "--data", "cifar10", "--data-root", cifar], capsys)
    assert_one_line(rc, err, str(flipped), "checksum", "intact copy")
    # a plain safetensors file (no store checksum: a user's own export) loads as before
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file(safetensors.torch.load_file(weights["store"]), plain)
    model, _ = load_checkpoint("small_cnn", plain, arch_kw={"width": 4})
    ref, _ = load_checkpoint("small_cnn", weights["pt"], arch_kw={"width": 4})
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in model.state_dict().items())


# --- finding 9: other bad inputs -----------------------------------------------------------------

def test_other_bad_inputs_are_one_line(cifar, weights, tmp_path, capsys, no_attack):
    data = ["--data", "cifar10", "--data-root", cifar]
    cases = [
        ([*SMALL, "--weights", tmp_path / "none.pt", *data], [f"--weights {tmp_path / 'none.pt'}", "no such"]),
        ([*SMALL, "--weights", weights["pt"].parent, *data], [f"--weights {weights['pt'].parent}", "is a folder",
                                                              "tiny.pt"]),
        ([*SMALL, "--weights", weights["pt"], "--data", "cifar10", "--data-root", tmp_path / "nowhere"],
         ["cifar10", str(tmp_path / "nowhere")]),
        ([*SMALL, "--weights", weights["pt"], *data, "--mean", "0.5", "0.5", "0.5", "--std", "0", "1", "1"],
         ["--std", "std > 0"]),
        ([*SMALL, "--weights", weights["pt"], *data, "--mean", "nan", "0.5", "0.5", "--std", "1", "1", "1"],
         ["--mean", "finite"]),
        ([*SMALL[4:], "--arch", "resnet20", "--weights", weights["pt"], *data],
         ["does not fit --arch resnet20", "missing keys", "It looks like --arch small_cnn --arch-option width=4"]),
        ([*SMALL, "--arch", "resnet20", "--weights", weights["pt"], *data], ["--arch resnet20", "width=4"]),
        ([*SMALL, "--weights", weights["pt"], *data, "--pgd-steps", "3", "3"], ["at least two PGD step counts"]),
        ([*SMALL, "--weights", weights["pt"], *data, "--size", "1"], ["--size 1", "1x1 px"]),
        (["--weights", weights["pt"]], ["--arch"]),  # a required option missing: argparse's line, not its usage
    ]
    for argv, names in cases:
        rc, _, err = run([*argv, "--out", tmp_path / "out"], capsys)
        assert_one_line(rc, err, *names)
    assert not (tmp_path / "out").exists()
