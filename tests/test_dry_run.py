"""The full profile's dry run (``python -m lib.workbook --profile full --dry-run``, lib.dryrun):
its budget shrinking, its reported asserts, and the whole run on fixtures, which must exercise
every dataset reader and pretrained architecture a ``full`` recipe names."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torchvision
from safetensors.torch import save_file

from lib import dryrun, reported_asserts
from lib.models import TORCHVISION_ARCHS, pretrained_path
from lib.studies import check_params, study_modules

ROOT = Path(__file__).resolve().parent.parent


def test_every_whole_number_entry_of_a_full_recipe_is_a_budget_or_named_structure():
    """A recipe entry the dry run does not know would run at its full size (hours on a CPU):
    each one must be a budget it shrinks or listed in NOT_BUDGETS."""
    for number, module in study_modules().items():
        assert dryrun.unclassified(module.RECIPE.get("full", {})) == set(), number


def test_shrink_budgets_keep_structure_and_pass_the_recipe_checks():
    cfg = {"epochs": 200, "anb_epochs": 4, "iterations": 30000, "pgd_steps": [7, 10, 20, 40], "apgd_steps": 100,
           "batch_size": 64, "n_eval": 1000, "size": 224, "seed": 3, "lr": 0.1, "arch": "resnet18",
           "method_kw": {"fine_tune": {"iterations": 9000, "batch_size": 64, "lr": 0.01}},
           "rates": [0.01, 0.05, 0.1, 0.2], "square_queries": 5000, "weights": None}
    small = dryrun.shrink(cfg)
    assert small["epochs"] == small["anb_epochs"] == 1 and small["iterations"] == 2
    assert small["pgd_steps"] == [2, 3] and small["apgd_steps"] == 2 and small["square_queries"] == 2
    assert small["batch_size"] == 4 and small["n_eval"] == 4 and small["rates"] == [0.01, 0.05]
    assert small["method_kw"] == {"fine_tune": {"iterations": 2, "batch_size": 4, "lr": 0.01}}
    assert {k: small[k] for k in ("seed", "lr", "arch", "weights")} == \
           {"seed": 3, "lr": 0.1, "arch": "resnet18", "weights": None}
    assert small["size"] == 64 and dryrun.shrink({"size": 32})["size"] == 32  # stated in STRUCTURE
    assert dryrun.budget_keys(cfg) >= {"epochs", "iterations", "batch_size", "pgd_steps"}
    params = dryrun.dry_params("full")
    assert check_params(params, "full") and params["seeds"] == 1
    with pytest.raises(ValueError, match="--profile full"):
        dryrun.run_params("smoke", {})


def test_named_by_recipes_lists_the_full_datasets_and_architectures():
    named = dryrun.named_by_recipes("full")
    assert {"cub200", "gtsrb", "mit67", "cifar10", "cifar100", "imagenet_r"} <= set(named["datasets"])
    assert named["datasets"]["gtsrb"] == {"05", "06"} and named["datasets"]["imagenet_r"] == {"01", "02"}
    assert {"resnet18", "resnet50", "preact_resnet18", "densenet_bc100"} <= set(named["archs"])
    assert named["archs"]["resnet18"] == {"01", "02", "05"}


def test_asserts_are_reported_not_raised_and_messages_stay_lazy(tmp_path, capsys):
    src = ("x = 1\nassert x == 2, 'x is ' + str(x)\nassert x == 1, 1 / 0\n"
           "for i in range(2):\n    assert i < 1, f'i={i}'\ndef f():\n    assert False\n")
    tree = reported_asserts.transform(ast.parse(src), src)
    log = tmp_path / "asserts.jsonl"
    reported_asserts._LOG[0] = log
    ns = {reported_asserts.NAME: reported_asserts.report}
    try:
        exec(compile(tree, "<cell>", "exec"), ns)  # no AssertionError, no ZeroDivisionError
    finally:
        reported_asserts._LOG[0] = None
    out = capsys.readouterr().out
    assert "assert x == 2, 'x is ' + str(x) -- x is 1" in out and "i=1" in out and "i=0" not in out
    assert [json.loads(line)["message"] for line in log.read_text().splitlines()] == ["x is 1", "i=1"]
    with pytest.raises(AssertionError):  # a function defined in a cell keeps its own asserts
        ns["f"]()


def test_write_weights_puts_random_weights_where_the_loader_reads(tmp_path, monkeypatch):
    from lib.models import build
    paths = dryrun.write_weights(tmp_path, ["mobilenet_v2", "preact_resnet18"])
    assert [p.name for p in paths] == [pretrained_path("mobilenet_v2").name]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build("mobilenet_v2", 5, pretrained=True)
    assert model.num_classes == 5


@pytest.mark.notebooks
def test_full_dry_run_passes_and_exercises_every_named_reader_and_weight(tmp_path):
    """The whole full-profile code path on fixtures: one one-thread kernel per thread this test process
    has (two alone, one beside another xdist worker). Notebooks 02 and 06 take a teacher of the reader's
    own (torchvision's ResNet-18 built by its factory, adopted by lib.models.adopt) and notebook 05 a public
    model of the reader's own in the arch form: their own-teacher cells run at no extra cost, while 02's AnB
    sweep and 05's own model still read the ImageNet weight file."""
    threads = torch.get_num_threads()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    torch.manual_seed(0)
    weights = tmp_path / "yours.safetensors"
    save_file(torchvision.models.resnet18(num_classes=7).state_dict(), str(weights))
    yours = {"factory": "torchvision.models:resnet18", "weights": str(weights), "norm": "imagenet"}
    # notebook 05's public model in the arch form, from the file the dry run writes for ImageNet ResNet-18
    # (so the weights it names are still read there)
    folder = tmp_path / "full" / "dry"
    hub = folder / "dry_run" / "torch_home" / "hub" / "checkpoints"
    public = {"arch": "resnet18", "norm": "imagenet", "weights": str(hub / pretrained_path("resnet18").name)}
    proc = subprocess.run([sys.executable, "-m", "lib.workbook", "--profile", "full", "--dry-run",
                           "--jobs", str(threads), "--quiet", "--name", "dry", "--out", str(tmp_path),
                           "-p", f"transfer_yours={yours!r}", "-p", f"att_yours={yours!r}",
                           "-p", f"bd_yours={public!r}"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "RANDOM initialisation" in proc.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dry_run"] and {nb["status"] for nb in manifest["notebooks"]} == {"done"}
    assert len(manifest["notebooks"]) == len(study_modules())
    # each dataset and pretrained weight file read by every notebook whose recipe names it (notebook 00
    # lists every dataset present, so a read anywhere would prove little)
    reads = {(r["kind"], r["name"], r["notebook"])
             for r in map(json.loads, (folder / dryrun.READS_LOG).read_text().splitlines())}
    named = dryrun.named_by_recipes("full")
    wanted = {("dataset", d, nb) for d, nbs in named["datasets"].items() for nb in nbs}
    wanted |= {("weights", pretrained_path(a).name, nb) for a, nbs in named["archs"].items()
               if a in TORCHVISION_ARCHS for nb in nbs}
    assert len(wanted) >= 12 and wanted <= reads, sorted(wanted - reads)
    mine = pd.read_csv(folder / "tables" / "02_yours.csv")  # the headline check on your teacher, reported
    assert set(mine["method"]) == {"retrain", "renofeation"} and set(mine["teacher"]) == {yours["factory"]}
    assert "your teacher's checks are reported above" in (folder / "06_attention_maps.ipynb").read_text()
    assert "nothing (your own public model" in (folder / "05_backdoor_poison.ipynb").read_text()
    store = folder / "dry_run" / "store"
    assert any(store.rglob("*.safetensors"))  # the dry run's models stayed in its own store
    for line in (folder / "dry_run_asserts.jsonl").read_text().splitlines() if (
            folder / "dry_run_asserts.jsonl").is_file() else []:
        assert json.loads(line)["assert"].startswith("assert ")
