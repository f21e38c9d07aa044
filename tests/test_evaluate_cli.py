"""Bring your own model (issue 14, item 5): ``python -m lib.evaluate`` / ``evaluate_checkpoint`` on a
tiny model saved as safetensors and as a .pt state dict, on a tiny CIFAR-10 release fixture; the
clear errors for a wrong architecture, missing or conflicting normalisation, a wrong head and a
pickled whole model."""
from __future__ import annotations

import os

import pandas as pd
import pytest
import lib.data.fixtures as F
import torch

from lib import models as M
from lib.data.real import load_real
from lib.evaluate import (NORM_PRESETS, CheckpointError, eval_images, evaluate_checkpoint, guess_arch,
                          load_checkpoint)
from lib.evaluate.__main__ import main, parse_eps
from lib.paths import shared_dir
from lib.store import save_weights

FAST = ["--eps", "8/255", "--n", "20", "--pgd-steps", "2", "4", "--apgd-steps", "3", "--quiet",
        "--arch-option", "width=4", "--device", "cpu"]


@pytest.fixture(scope="module")
def tiny(cifar, tmp_path_factory):
    """A 4-wide small CNN fitted to the fixture's flat colours, saved three ways."""
    torch.manual_seed(0)
    model = M.build("small_cnn", 10, width=4, mean=NORM_PRESETS["cifar10"][0], std=NORM_PRESETS["cifar10"][1])
    x, y = eval_images(load_real("cifar10", "train", root=cifar), None)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    d = tmp_path_factory.mktemp("weights")
    paths = {"safetensors": save_weights(model, d / "tiny.safetensors"), "pt": d / "tiny.pt"}
    torch.save(model.state_dict(), paths["pt"])
    return model, paths


def test_cli_writes_the_tables_for_safetensors_and_pt(cifar, tiny, tmp_path, capsys):
    model, paths = tiny
    results = {}
    for kind, path in paths.items():
        out = tmp_path / kind
        rc = main(["--arch", "small_cnn", "--weights", str(path), "--data", "cifar10", "--data-root", str(cifar),
                   "--out", str(out), *FAST])
        printed = capsys.readouterr().out
        assert rc == 0
        for f in ("robustness_report.csv", "sanity_checks.csv", "sanity_checks.md", "compact_table.csv",
                  "compact_table.md", "checkpoint.json"):
            assert (out / f).is_file(), f
        compact = pd.read_csv(out / "compact_table.csv")
        assert list(compact.attack) == ["clean", "FGSM", "PGD-4", "APGD-CE", "APGD-T (DLR)",
                                      "AutoAttack-style (APGD-CE, APGD-T, Square)", "worst case"]
        assert (compact.n == 20).all() and (compact.low <= compact.acc).all() and (compact.acc <= compact.high).all()
        assert set(compact.eps_255) == {0.0, 8.0}
        long = pd.read_csv(out / "robustness_report.csv")
        assert {"fgsm", "pgd", "apgd", "apgd_t", "worst", "clean"} <= set(long.attack)
        assert "workbook Classifier layout" in printed and "normalisation inside the checkpoint" in printed
        assert "| worst case" in printed and "Sanity checks" in printed and "eps 8/255" in printed
        assert "worst case" in (out / "compact_table.md").read_text()
        results[kind] = compact
    pd.testing.assert_frame_equal(results["safetensors"].drop(columns="method"), results["pt"].drop(columns="method"))
    # the clean accuracy is the model's own on the same stratified 20 test images
    x, y = eval_images(load_real("cifar10", "test", root=cifar), 20)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    assert results["pt"].acc.iloc[0] == pytest.approx(clean) and clean >= 0.9
    worst = results["pt"].set_index("attack").acc
    assert worst["worst case"] <= min(worst["FGSM"], worst["PGD-4"], worst["APGD-CE"], worst["APGD-T (DLR)"])


def test_evaluate_checkpoint_on_an_image_folder(tiny, tmp_path):
    _, paths = tiny
    root = F.write_image_folder(tmp_path / "jpg", classes=F.CIFAR10_LABEL_NAMES, per_class={"test": 1})
    r = evaluate_checkpoint("small_cnn", paths["pt"], root, [4 / 255], n=10, arch_kw={"width": 4}, pgd_steps=(1, 2),
                            apgd_steps=2, progress=False, name="tiny", out=tmp_path / "out")
    assert r["info"]["n"] == 10 and r["info"]["classes"] == 10 and set(r["compact"].method) == {"tiny"}
    assert (tmp_path / "out" / "compact_table.md").is_file() and len(r["checks"]) >= 6


def test_wrong_architecture_names_the_keys_and_a_guess(tiny, tmp_path, capsys):
    _, paths = tiny
    rc = main(["--arch", "resnet20", "--weights", str(paths["safetensors"]), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not fit --arch resnet20" in err
    assert "missing keys" in err and "blocks.stem.conv1.weight" in err
    assert "unexpected keys" in err and "blocks.conv1.conv.weight" in err
    shapes = r"shape mismatches .*blocks.conv1.conv.weight: checkpoint \[4, 3, 3, 3\]"
    with pytest.raises(CheckpointError, match=shapes) as e:
        load_checkpoint("small_cnn", paths["pt"], arch_kw={"width": 8})
    assert "It looks like --arch small_cnn --arch-option width=4" in str(e.value)
    # a checkpoint one architecture of lib.models fits exactly: the error says which
    torch.manual_seed(0)
    path = tmp_path / "r20.pt"
    torch.save({"state_dict": M.build("resnet20", 10).state_dict()}, path)
    with pytest.raises(CheckpointError, match="It looks like --arch resnet20"):
        load_checkpoint("resnet32", path)
    raw = tmp_path / "raw_r20.pt"
    torch.save(M.raw_net("resnet20", 10).state_dict(), raw)
    assert guess_arch(torch.load(raw, weights_only=True)) == "resnet20"
    with pytest.raises(CheckpointError, match="It looks like --arch resnet20"):
        load_checkpoint("preact_resnet18", raw, norm="cifar10")
    with pytest.raises(CheckpointError, match="unknown --arch"):
        load_checkpoint("vgg16", raw)


def test_normalisation_missing_given_or_conflicting(tiny, tmp_path, capsys):
    _, paths = tiny
    torch.manual_seed(0)
    net = M.raw_net("resnet20", 10).eval()
    raw = tmp_path / "raw.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, raw)
    rc = main(["--arch", "resnet20", "--weights", str(raw), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "has no normalisation inside" in err and "--norm" in err and "--mean" in err
    model, info = load_checkpoint("resnet20", raw, norm="cifar10")
    assert info["layout"] == "resnet20's own" and info["normalisation"] == "given (cifar10)"
    x = torch.rand(2, 3, 32, 32)
    ref = M.build("resnet20", 10, pretrained=raw, mean=NORM_PRESETS["cifar10"][0], std=NORM_PRESETS["cifar10"][1])
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref.eval()(x))
    assert not torch.allclose(model(x), M.build("resnet20", 10, pretrained=raw).eval()(x))  # ImageNet stats differ
    model, _ = load_checkpoint("resnet20", raw, mean=[0.5] * 3, std=[0.25] * 3)
    assert model.normalize.std.flatten().tolist() == [0.25] * 3
    with pytest.raises(CheckpointError, match="both --mean and --std"):
        load_checkpoint("resnet20", raw, mean=[0.5] * 3)
    with pytest.raises(CheckpointError, match="not both"):
        load_checkpoint("resnet20", raw, mean=[0.5] * 3, std=[0.2] * 3, norm="cifar10")
    # a checkpoint with its own Normalize: a different one given is an error, the same one is fine
    with pytest.raises(CheckpointError, match="carries its own normalisation"):
        load_checkpoint("small_cnn", paths["safetensors"], norm="imagenet", arch_kw={"width": 4})
    load_checkpoint("small_cnn", paths["safetensors"], norm="cifar10", arch_kw={"width": 4})
    with pytest.raises(CheckpointError, match="10-class head but 5 classes"):
        load_checkpoint("small_cnn", paths["pt"], num_classes=5, arch_kw={"width": 4})


class TouchFile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_a_pickled_model_is_refused_and_nothing_runs(tiny, tmp_path, capsys):
    model, _ = tiny
    whole = tmp_path / "whole.pt"
    torch.save(model, whole)  # the model object itself, not its state dict
    rc = main(["--arch", "small_cnn", "--weights", str(whole), "--data", str(tmp_path), "--arch-option", "width=4"])
    err = capsys.readouterr().err
    assert rc == 2 and "pickled Python objects" in err and "model.state_dict()" in err
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": TouchFile(marker)}, evil)
    with pytest.raises(CheckpointError, match="pickled Python objects") as refused:
        load_checkpoint("small_cnn", evil)
    assert "system" in str(refused.value)  # names the global it refused (posix.system / nt.system)
    assert not marker.exists()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02garbage" * 8)
    with pytest.raises(CheckpointError, match="corrupt") as broken:
        load_checkpoint("small_cnn", corrupt)
    assert "pickled Python objects" not in str(broken.value)  # not called a whole model
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")  # torch.load raises EOFError here, a truncated zip a RuntimeError
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint("small_cnn", empty)
    with pytest.raises(CheckpointError, match="not tensors"):
        bad = tmp_path / "bad.pt"
        torch.save({"w": torch.zeros(1), "epoch": 3}, bad)
        load_checkpoint("small_cnn", bad)


def test_eps_parsing_and_bad_data(capsys, tiny):
    assert parse_eps("8/255") == pytest.approx(8 / 255) and parse_eps("8") == pytest.approx(8 / 255)
    assert parse_eps("0.5") == 0.5
    with pytest.raises(SystemExit):
        main(["--arch", "small_cnn", "--weights", "w.pt", "--eps", "eight"])
    assert "8/255" in capsys.readouterr().err
    rc = main(["--arch", "small_cnn", "--weights", str(tiny[1]["pt"]), "--data", "no/such/folder",
               "--arch-option", "width=4"])
    assert rc == 2 and "neither a dataset name" in capsys.readouterr().err
    rc = main(["--arch", "small_cnn", "--weights", str(tiny[1]["pt"]), "--pgd-steps", "10"])
    assert rc == 2 and "at least two PGD step counts" in capsys.readouterr().err


def test_shared_resnet20_loads_with_its_normalisation():
    shared = shared_dir()
    path = shared / "weights" / "resnet20-cifar10" / "resnet20-12fca82f.th" if shared else None
    if path is None or not path.is_file():
        pytest.skip("shared ResNet-20 weights absent (a user's clone)")
    with pytest.raises(CheckpointError, match="no normalisation inside"):
        load_checkpoint("resnet20", path)
    model, info = load_checkpoint("resnet20", path, norm="imagenet")
    ref = M.load_cifar_resnet20(path).eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
    assert info["num_classes"] == 10 and info["layout"] == "resnet20's own"


def test_eval_dataset_reads_every_named_layout_and_folders(tmp_path):
    from lib.evaluate import eval_dataset
    roots = F.write_data_dir(tmp_path / "data", per_class=1)
    assert len(eval_dataset("cifar10", roots["cifar10"])) == 10
    assert len(eval_dataset("cifar100", roots["cifar100"]).classes) == 100
    gtsrb = eval_dataset("gtsrb", roots["gtsrb"])
    assert len(gtsrb.classes) == 43 and gtsrb[0][0].shape == (3, 32, 32)
    folder = F.write_image_folder(tmp_path / "jpg", per_class={"test": 2})
    assert eval_dataset(folder)[0][0].shape == (3, 32, 32)  # size of its first image
    small = eval_dataset(folder / "test", size=16)  # a folder of class folders itself
    assert len(small) == 6 and small[0][0].shape[-1] == 16
