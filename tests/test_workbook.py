"""The run configuration, run folders, manifest, index and resume of ``python -m lib.workbook``
(on two tiny notebooks written here, so each run takes seconds), and the store's command line."""
import json
import os
import re

import nbformat
import pandas as pd
import pytest

from lib import config, runs, studies, workbook
from lib.config import RunConfig
from lib.store import Store
from lib.store.__main__ import main as store_main
from lib.store.__main__ import parse_age
from lib.studies import ConfigError, check_params, run_config_for

OPEN = "from lib.studies import {study}, open_run\nrun = open_run({study}, run_config, globals())\n"


def _notebook(path, params: str, body: str):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def tiny_notebooks(tmp_path, monkeypatch):
    """01 trains nothing but records the bases recipe it was given; 02 asks for the bases recipe
    without any parameter of its own (as notebook 02 asks for base A) and fails when FAIL_02 is set."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_first.ipynb", 'profile = "smoke"\nrun_config = None\nbase_epochs = None',
              "import pandas as pd\nfrom lib import plots\n" + OPEN.format(study="bases") +
              "cfg = run.recipe('01')\n"
              "plots.save_table(pd.DataFrame({'epochs': [cfg['epochs']], 'n': [7]}), '01_first', caption='first')")
    _notebook(folder / "02_second.ipynb", 'profile = "smoke"\nrun_config = None',
              "import os\nimport pandas as pd\nfrom lib import plots\n" + OPEN.format(study="transfer") +
              "assert not os.environ.get('FAIL_02'), 'asked to fail'\n"
              "plots.save_table(pd.DataFrame({'epochs': [run.recipe('02')['needs']['01']['epochs']]}), '02_second')")
    monkeypatch.setattr(workbook, "NOTEBOOKS", folder)
    monkeypatch.setenv("WORKBOOK_FIGURES", str(tmp_path / "top_figures"))  # where a whole run publishes
    monkeypatch.setenv("WORKBOOK_DOCS", str(tmp_path / "docs"))
    (tmp_path / "top_figures").mkdir()
    (tmp_path / "top_figures" / "01_old.csv").write_text("an earlier run's table\n")
    return tmp_path


def test_unknown_or_mistyped_parameter_stops_before_anything_runs(tmp_path, capsys):
    assert workbook.main(["-p", "bogus=1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "base_epochs" in err and len(err.strip().splitlines()) == 1
    assert workbook.main(["-p", "base_epochs=2.5", "--out", str(tmp_path)]) == 2
    assert "base_epochs must be an int" in capsys.readouterr().err
    assert workbook.main(["-p", "transfer_arch='resnet18'", "--out", str(tmp_path)]) == 2  # a full-profile knob
    assert "full" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run folder was made


def test_a_profile_runs_only_the_notebooks_with_a_recipe_of_their_own(tmp_path, capsys, monkeypatch):
    every = list(studies.study_modules())
    assert studies.without_recipe("real", every) == [] and studies.without_recipe("smoke", every) == []
    monkeypatch.delitem(studies.study_modules()["04"].RECIPE, "real")  # a study without a real recipe
    assert studies.without_recipe("real", every) == ["04"]
    assert workbook.main(["--profile", "real", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "04" in err and "--only 05" in err and "--only 04" not in err
    assert not any(tmp_path.iterdir())  # refused before a run folder is made
    have = [n for n in every if n != "04"]
    assert [p.name[:2] for p in workbook.select(have, "real")] == have


def test_values_parse_as_people_write_them(tmp_path):
    assert workbook._literal("8/255") == pytest.approx(8 / 255)
    assert workbook._literal("[2, 4]") == [2, 4] and workbook._literal("fine_tune") == "fine_tune"
    cfg = tmp_path / "study.toml"
    cfg.write_text('base_epochs = 3\nadv_eps = 0.0314\nadv_methods = ["standard", "pgd_at"]\n')
    args = workbook._parser().parse_args(["--config", str(cfg), "-p", "base_epochs=4"])
    profile, params = workbook.configure(args)
    assert profile == "smoke" and params == {"base_epochs": 4, "adv_eps": 0.0314, "adv_methods": ["standard", "pgd_at"]}
    with pytest.raises(ConfigError, match="seeds"):
        check_params({"seeds": 0})
    assert check_params({"adv_eps": 1}) == {"adv_eps": 1.0}  # an int where the recipe has a float


def test_every_notebook_parameter_is_a_study_parameter():
    """The parameters cell holds ``profile``, ``run_config`` and knobs, each a parameter derived from
    its study's recipe (``<PREFIX>_<key>``); every notebook opens with the same two lines."""
    known = studies.parameters()
    for path in workbook.notebooks():
        names = set(workbook.parameter_names(path)) - set(studies.RUN_PARAMS) - {"run_config"}
        module = studies.study_modules().get(path.name[:2])
        assert module is not None, f"{path.name} has no study module"
        assert {"profile", "run_config"} <= set(workbook.parameter_names(path)), path.name
        assert names <= set(module.PARAMS), (path.name, names - set(module.PARAMS))
        assert all(known[n].notebook == path.name[:2] for n in names)
        assert module.PARAMS == studies.notebook_params(module.PREFIX, module.RECIPE)
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert re.search(r"\nrun = open_run\(\w+, run_config, globals\(\)\)", code), path.name
        assert f'cfg = run.recipe("{path.name[:2]}")' in code, path.name
        assert "\ndef " not in "\n" + code and not any(f" as {c}\n" in code for c in "ABDMRS"), path.name


def test_recipes_are_pure_values_of_the_run_configuration(tmp_path, monkeypatch):
    """One RunConfig gives the same recipes in a run and out of it: no environment is read, and
    notebook 02 and 05 get notebook 01's recipe as 01 runs it."""
    run = run_config_for("smoke", {"base_epochs": 3, "adv_epochs": 2, "transfer_anb_epochs": 8})
    assert run.recipe("01")["epochs"] == 3 and run.recipe("03")["epochs"] == 2
    assert run.recipe("02")["needs"]["01"] == run.recipe("01") == run.recipe("05")["needs"]["01"]
    assert run.recipe("06")["needs"]["02"]["anb_epochs"] == 8
    before = {n: run.recipe(n) for n in run.recipes}
    monkeypatch.setenv("WORKBOOK_CONFIG", json.dumps({"params": {"base_epochs": 9}}))  # what runs used to read
    config.activate(run_config_for("smoke", {"base_epochs": 7}))  # another run made current
    try:
        again = run_config_for("smoke", {"base_epochs": 3, "adv_epochs": 2, "transfer_anb_epochs": 8})
        assert {n: again.recipe(n) for n in again.recipes} == before
        from lib.studies import bases
        assert bases.recipe() == studies.recipe(bases.RECIPE, "smoke")  # pure: the table's smoke entry
        run.write(tmp_path / "run.json")
        assert RunConfig.read(tmp_path / "run.json") == run and RunConfig.read(tmp_path) == run
    finally:
        config.activate(RunConfig())
    run.recipe("02")["needs"]["01"]["epochs"] = 99  # a copy: the value does not change
    assert run.recipe("02")["needs"]["01"]["epochs"] == 3


def test_open_run_reads_a_run_file_and_applies_the_notebooks_knobs(tmp_path, capsys):
    from lib.studies import adversarial, bases

    try:
        plain = studies.open_run(bases, None, {"profile": "smoke", "base_epochs": None})
        assert plain.recipe("01") == bases.recipe() and "no run.json" in capsys.readouterr().out
        run = run_config_for("smoke", {"base_epochs": 3}, run="r1", tables=str(tmp_path / "tables"))
        run.write(tmp_path / "run.json")
        opened = studies.open_run(adversarial, str(tmp_path / "run.json"), {"profile": "smoke"})
        assert opened.recipes == run.recipes and opened.tables == run.tables
        assert opened.notebook == "03_adversarial_training.ipynb" and config.current() is opened
        assert "run r1" in capsys.readouterr().out
        knob = studies.open_run(adversarial, str(tmp_path / "run.json"), {"adv_epochs": 1})
        assert knob.recipe("03")["epochs"] == 1 and knob.recipe("01")["epochs"] == 3
        with pytest.raises(ConfigError, match="adv_epochs must be an int"):
            studies.open_run(adversarial, None, {"adv_epochs": 1.5})
        with pytest.raises(ConfigError, match="does not exist"):
            studies.open_run(adversarial, str(tmp_path / "missing.json"), {})
    finally:
        config.activate(RunConfig())


@pytest.mark.notebooks
def test_runs_get_their_own_folders_manifest_index_and_resume(tiny_notebooks, monkeypatch):
    out = tiny_notebooks / "runs"
    assert workbook.main(["-p", "base_epochs=3", "--out", str(out), "--name", "first", "--quiet"]) == 0
    run = out / "smoke" / "first"
    assert pd.read_csv(run / "tables" / "01_first.csv")["epochs"].item() == 3
    assert pd.read_csv(run / "tables" / "02_second.csv")["epochs"].item() == 3  # the same bases recipe in 02
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["parameters"] == {"base_epochs": 3}
    assert manifest["recipes"]["01"]["epochs"] == 3
    assert RunConfig.read(run / "run.json").recipe("01")["epochs"] == 3  # what each notebook was handed
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    assert manifest["packages"]["torch"] and "cpu_count" in manifest["device"]
    assert [nb["status"] for nb in manifest["notebooks"]] == ["done", "done"]
    assert all(nb["seconds"] > 0 for nb in manifest["notebooks"]) and manifest["ended"] >= manifest["started"]
    for nb in manifest["notebooks"]:  # where the seconds went: nothing trained or computed; every cell timed
        assert nb["time"]["train"] == nb["time"]["compute"] == 0 and nb["time"]["other"] == nb["seconds"]
        cells = nb["slowest_cells"]  # parameters, papermill's injected parameters, the body
        assert len(cells) == 3 and cells == sorted(cells, key=lambda c: -c["seconds"])
        assert sum(c["code"].startswith("import ") for c in cells) == 1  # the body, by its first line of code
    index = (run / "index.md").read_text()
    assert "[01_first](tables/01_first.csv)" in index and "| first | 7 |" in index and "`epochs=3`" in index
    top = tiny_notebooks / "top_figures"
    assert sorted(f.name for f in top.iterdir()) == ["01_old.csv"]  # a run with -p is not published
    # a second run never reuses the first one's folder; the same --name is refused. It runs the
    # recipes as they are from committed code (git_info says so), so it replaces figures/
    monkeypatch.setattr(workbook.runs, "git_info", lambda: {"commit": "c" * 40, "dirty": False, "changed": []})
    assert workbook.main(["--out", str(out), "--quiet"]) == 0
    assert len(list((out / "smoke").iterdir())) == 2
    published = json.loads((top / "MANIFEST.json").read_text())
    assert sorted(published["files"]) == ["01_first.csv", "01_first.md", "02_second.csv", "02_second.md"]
    assert sorted(f.name for f in top.iterdir()) == sorted([*published["files"], "MANIFEST.json"])
    assert published["commit"] == "c" * 40 and set(published["code"]) == {"01_first.ipynb", "02_second.ipynb"}
    results = (tiny_notebooks / "docs" / "results.md").read_text()
    assert "## 01_first" in results and "first (n: 7)" in results
    assert workbook.main(["--out", str(out), "--name", "first", "--quiet"]) == 2
    # a failed run resumes where it stopped, with its own parameters
    monkeypatch.setenv("FAIL_02", "1")
    assert workbook.main(["-p", "base_epochs=2", "--out", str(out), "--name", "broken", "--quiet"]) == 1
    failed = json.loads((out / "smoke" / "broken" / "manifest.json").read_text())
    assert failed["status"] == "failed" and [nb["status"] for nb in failed["notebooks"]] == ["done", "failed"]
    assert failed["notebooks"][1]["time"]["other"] > 0 and failed["notebooks"][1]["slowest_cells"]  # profiled too
    monkeypatch.delenv("FAIL_02")
    before = (out / "smoke" / "broken" / "tables" / "01_first.csv").stat().st_mtime_ns
    assert workbook.main(["--resume", "--out", str(out), "--quiet"]) == 0
    resumed = json.loads((out / "smoke" / "broken" / "manifest.json").read_text())
    assert resumed["status"] == "done" and len(resumed["resumed"]) == 1
    assert (out / "smoke" / "broken" / "tables" / "01_first.csv").stat().st_mtime_ns == before  # 01 not rerun
    assert pd.read_csv(out / "smoke" / "broken" / "tables" / "02_second.csv")["epochs"].item() == 2


def test_notebook_needs_are_what_the_studies_declare():
    needs = studies.notebook_needs()
    assert needs["06"] == {"01", "02", "05"}  # 02's students and 05's backdoored models, both on 01's bases
    assert needs["02"] == needs["05"] == {"01"} and needs["00"] == needs["01"] == needs["03"] == set()
    assert all(n not in v for n, v in needs.items())
    for number, module in studies.study_modules().items():  # each study gets the recipes of what it needs
        assert set(run_config_for().recipe(number).get("needs", {})) == set(module.NEEDS)


@pytest.mark.notebooks
def test_jobs_run_notebooks_side_by_side_after_what_they_need(tiny_notebooks, monkeypatch):
    """``--jobs 2``: 00 (needs nothing) runs beside 01 (it waits until 01 has started), 02 only
    after 01 is done (it reads 01's table); each kernel gets its own notebook name and half the
    threads. A failure leaves what needs it pending, and --resume runs only that."""
    folder = tiny_notebooks / "notebooks"
    _notebook(folder / "00_zero.ipynb", 'profile = "smoke"\nrun_config = None',
              "import os, time\nimport pandas as pd\nfrom lib import plots\n" + OPEN.format(study="datasets") +
              "marker = os.path.join(run.tables_dir(), '01_started')\n"
              "t0 = time.time()\nwhile not os.path.exists(marker) and time.time() - t0 < 120:\n    time.sleep(0.1)\n"
              "assert os.path.exists(marker), '01 did not run beside 00'\n"
              "plots.save_table(pd.DataFrame({'nb': [run.notebook],"
              " 'threads': [os.environ['OMP_NUM_THREADS']]}), '00_zero')")
    _notebook(folder / "01_first.ipynb", 'profile = "smoke"\nrun_config = None\nbase_epochs = None',
              "import os\nimport pandas as pd\nfrom lib import plots\n" + OPEN.format(study="bases") +
              "open(os.path.join(run.tables_dir(), '01_started'), 'w').close()\n"
              "assert not os.environ.get('FAIL_01'), 'asked to fail'\n"
              "plots.save_table(pd.DataFrame({'nb': [run.notebook]}), '01_first')")
    _notebook(folder / "02_second.ipynb", 'profile = "smoke"\nrun_config = None',
              "import os\nimport pandas as pd\nfrom lib import plots\n" + OPEN.format(study="transfer") +
              "first = pd.read_csv(os.path.join(run.tables_dir(), '01_first.csv'))\n"
              "plots.save_table(first.assign(me=run.notebook), '02_second')")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    out = tiny_notebooks / "runs"
    monkeypatch.setenv("FAIL_01", "1")
    assert workbook.main(["--out", str(out), "--name", "par", "--quiet", "--jobs", "2"]) == 1
    run = out / "smoke" / "par"
    manifest = json.loads((run / "manifest.json").read_text())
    assert [nb["status"] for nb in manifest["notebooks"]] == ["done", "failed", "pending"]
    assert manifest["jobs"] == 2 and len(manifest["attempt_seconds"]) == 1
    zero = pd.read_csv(run / "tables" / "00_zero.csv")
    assert zero["nb"].item() == "00_datasets.ipynb" and zero["threads"].item() == 1  # the study's notebook
    monkeypatch.delenv("FAIL_01")
    assert workbook.main(["--resume", "par", "--out", str(out), "--quiet", "--jobs", "2"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert [nb["status"] for nb in manifest["notebooks"]] == ["done"] * 3
    second = pd.read_csv(run / "tables" / "02_second.csv")
    assert (second["nb"].item(), second["me"].item()) == ("01_pretrained_bases.ipynb", "02_transfer_finetune.ipynb")
    assert manifest["notebooks"][2]["started"] >= manifest["notebooks"][1]["ended"]


@pytest.fixture
def as_run():
    """``as_run(**fields)`` makes a RunConfig current as a workbook run's kernel has it; undone after."""
    yield lambda **fields: config.activate(RunConfig(**fields))
    config.activate(RunConfig())


def test_retrain_redoes_each_artifact_once_per_run(tmp_path, as_run):
    import torch.nn as nn

    store, calls = Store(tmp_path / "store"), []

    def train(model):
        calls.append(1)
        nn.init.constant_(model.weight, float(len(calls)))

    get = lambda: store.model("lin", {"a": 1}, lambda: nn.Linear(2, 2), train)
    get()
    assert get()[1]["cached"] and len(calls) == 1
    as_run(retrain=True, store_log=str(tmp_path / "log.jsonl"))  # a -p retrain=True run
    net, meta = get()
    assert not meta["cached"] and len(calls) == 2 and float(net.weight.detach()[0, 0]) == 2.0
    net, meta = get()  # a later notebook of the same run reuses what this run retrained
    assert meta["cached"] and len(calls) == 2 and float(net.weight.detach()[0, 0]) == 2.0
    assert store.result("r", {"b": 1}, lambda: {"v": len(calls)}) == {"v": 2}
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["action"] for e in log] == ["trained", "loaded", "computed"]


def test_run_profile_counts_nested_store_work_once(tmp_path, as_run):
    """A result whose computation trains a model: the log gives each its own seconds, and the
    notebook's profile splits its time into training, computing and the rest without counting twice."""
    import time

    import torch.nn as nn

    from lib import runs

    as_run(store_log=str(tmp_path / "store_log.jsonl"), notebook="02_x.ipynb")  # as a run folder has it
    store = Store(tmp_path / "store")

    def compute():
        store.model("lin", {"a": 1}, lambda: nn.Linear(2, 2), lambda m: time.sleep(0.3))
        time.sleep(0.1)
        return {"v": 1}

    store.result("table", {"b": 1}, compute)
    store.result("table", {"b": 1}, compute)  # loaded: no seconds, nothing trained
    log = runs.store_entries(tmp_path)
    trained, computed, loaded = log
    assert trained["own_seconds"] == pytest.approx(trained["seconds"]) and trained["seconds"] >= 0.3
    assert computed["seconds"] >= 0.4 and 0.1 <= computed["own_seconds"] < 0.3
    assert "seconds" not in loaded
    prof = runs.time_profile(log + [{**trained, "notebook": "03_y.ipynb"}], "02_x.ipynb", seconds=1.0)
    assert prof["train"] == round(trained["own_seconds"], 1) and prof["compute"] == round(computed["own_seconds"], 1)
    assert prof["other"] == pytest.approx(1.0 - prof["train"] - prof["compute"], abs=0.11)
    assert (prof["trained"], prof["computed"], prof["loaded"]) == (1, 1, 1)  # the other notebook's entry not counted
    later = runs.time_profile(log, "02_x.ipynb", seconds=1.0, since="9999")  # a resumed attempt: none of it
    assert later["train"] == later["compute"] == 0 and later["other"] == 1.0


def test_store_command_lists_and_cleans(tmp_path, capsys):
    import torch.nn as nn

    store = Store(tmp_path)
    store.model("old_model", {"a": 1}, lambda: nn.Linear(2, 2), lambda m: None)
    store.result("a_table", {"b": 2}, lambda: pd.DataFrame({"x": [1, 2]}))
    old = store.model_path("old_model", {"a": 1})
    os.utime(old, (old.stat().st_atime - 3 * 86400,) * 2)
    assert store_main(["--root", str(tmp_path), "ls"]) == 0
    listing = capsys.readouterr().out
    assert "old_model-" in listing and "a_table-" in listing and "2 artifacts" in listing
    assert store_main(["--root", str(tmp_path), "clean", "--older-than", "2d", "--dry-run"]) == 0
    assert old.is_file() and "would delete model old_model" in capsys.readouterr().out
    assert store_main(["--root", str(tmp_path), "clean", "--older-than", "2d"]) == 0
    assert not old.is_file() and store.has_result("a_table", {"b": 2})
    assert parse_age("12h") == 43200 and parse_age("90m") == 5400
    assert store_main(["--root", str(tmp_path), "clean", "--older-than", "soon"]) == 2


def test_jobs_start_first_what_waiting_notebooks_need():
    needs = studies.notebook_needs()
    entry = lambda n: {"name": f"{n}_x.ipynb"}
    waiting = [entry(n) for n in ("03", "04", "05", "06", "07")]
    order = runs.start_order([e for e in waiting if e["name"] != "06_x.ipynb"], waiting, needs)
    assert [e["name"][:2] for e in order] == ["05", "03", "04", "07"]  # 06 waits for 05


def test_critical_path_follows_what_each_notebook_waited_for():
    from lib.runs import critical_path

    stamp = lambda s: f"2026-12-05T10:{s // 60:02d}:{s % 60:02d}+00:00"
    spans = {"00": (0, 10), "01": (0, 50), "03": (10, 200), "02": (50, 400), "05": (200, 300), "06": (401, 450)}
    entries = [{"name": f"{k}_x.ipynb", "started": stamp(a), "ended": stamp(b), "seconds": b - a}
               for k, (a, b) in spans.items()] + [{"name": "07_x.ipynb", "status": "pending"}]
    needs = {"02": {"01"}, "06": {"02", "05"}}
    path = critical_path(entries, needs)
    assert [(e["name"][:2], e["waited_for"]) for e in path] == [("01", "start"), ("02", "needs"), ("06", "needs")]
    assert sum(e["seconds"] for e in path) == 50 + 350 + 49
    # 05 started when 03 freed its slot: a slot wait, back to 00's slot, back to the start
    spans["06"] = (300, 320)
    entries = [{"name": f"{k}_x.ipynb", "started": stamp(a), "ended": stamp(b), "seconds": b - a}
               for k, (a, b) in spans.items() if k != "02"]
    assert [(e["name"][:2], e["waited_for"]) for e in critical_path(entries, needs)] == [
        ("00", "start"), ("03", "slot"), ("05", "slot"), ("06", "needs")]
    assert critical_path([], needs) == []


def test_jobs_start_the_longest_chain_first_given_the_published_seconds(tmp_path, monkeypatch):
    """With the published run's seconds, 02 (whose chain 02 -> 06 is the longest) starts before 05,
    which the count of waiting notebooks alone would start first; without them, that count decides."""

    needs = studies.notebook_needs()
    seconds = {"00": 14, "01": 96, "02": 1041, "03": 641, "04": 165, "05": 281, "06": 131, "07": 157, "08": 315}
    entry = lambda n: {"name": f"{n}_x.ipynb"}
    waiting = [entry(n) for n in ("02", "03", "04", "05", "06", "07", "08")]
    ready = [e for e in waiting if e["name"][:2] not in ("06", "08")]
    chains = runs.chain_seconds(seconds, needs)
    assert chains["02"] == 1041 + 131 and chains["05"] == 281 + 315 and chains["01"] == 96 + 1041 + 131
    order = lambda known: [e["name"][:2] for e in runs.start_order(ready, waiting, needs, known)]
    assert order(seconds) == ["02", "03", "05", "04", "07"]
    assert order({"02": 1})[0] == "05"  # not every waiting notebook's seconds known: the count decides
    monkeypatch.setenv("WORKBOOK_FIGURES", str(tmp_path))
    assert runs.published_seconds("smoke") == {}
    (tmp_path / "MANIFEST.json").write_text(json.dumps({"profile": "smoke", "seconds": {"02_x.ipynb": 10.5}}))
    assert runs.published_seconds("smoke") == {"02": 10.5} and runs.published_seconds("full") == {}
    (tmp_path / "real").mkdir()  # another profile's run is published to figures/<profile>/
    (tmp_path / "real" / "MANIFEST.json").write_text(json.dumps({"profile": "real", "seconds": {"05_x.ipynb": 7.0}}))
    assert runs.published_seconds("real") == {"05": 7.0} and runs.published_seconds("smoke") == {"02": 10.5}


def test_a_second_run_reuses_each_notebook_whose_code_recipes_inputs_and_models_are_unchanged(
        tiny_notebooks, monkeypatch, capsys):
    """The outputs of a notebook an earlier run executed with the same key are copied, not made again;
    a changed recipe (and what needs it), a changed cell, a changed input file, a store file it used
    rewritten, or --no-reuse executes it; a failure while reusing executes it too."""
    from lib import reuse
    from lib.data.real import REAL_DATASETS

    _notebook(tiny_notebooks / "notebooks" / "01_first.ipynb",
              'profile = "smoke"\nrun_config = None\nbase_epochs = None',
              "import pandas as pd\nfrom lib import plots\nfrom lib.paths import store_dir\n"
              "from lib.store import Store\n" + OPEN.format(study="bases") + "cfg = run.recipe('01')\n"
              "Store(store_dir()).result('tiny', {'epochs': cfg['epochs']}, lambda: {'v': 1})\n"
              "plots.save_table(pd.DataFrame({'epochs': [cfg['epochs']], 'n': [7]}), '01_first', caption='first')")
    out, data = tiny_notebooks / "runs", tiny_notebooks / "data"
    gtsrb = data / REAL_DATASETS["gtsrb"].folder
    gtsrb.mkdir(parents=True)
    (gtsrb / "x.txt").write_text("one")
    monkeypatch.setenv("WORKBOOK_DATA", str(data))
    monkeypatch.setenv("WORKBOOK_STORE", str(tiny_notebooks / "store"))
    monkeypatch.setenv("WORKBOOK_MEASURED", str(tiny_notebooks / "measurements"))  # inputs of this test alone
    monkeypatch.setenv("WORKBOOK_SHARED", str(tiny_notebooks / "shared"))
    monkeypatch.setattr(workbook.runs, "git_info", lambda: {"commit": "c" * 40, "dirty": False, "changed": []})
    manifest = lambda name: json.loads((out / "smoke" / name / "manifest.json").read_text())
    reused = lambda name: [bool(e.get("reused")) for e in manifest(name)["notebooks"]]
    run = lambda name, *more: workbook.main(["--out", str(out), "--name", name, "--quiet", *more])

    assert run("a") == 0 and reused("a") == [False, False]
    first = manifest("a")["notebooks"][0]
    [stored] = first["store_files"]  # the result 01 computed, with its size and time
    assert first["reuse_key"] and stored.startswith(str(tiny_notebooks / "store"))
    (data / "flip_store").mkdir()  # a folder of data/ no notebook reads
    (data / "flip_store" / "x.txt").write_text("anything")
    capsys.readouterr()
    assert run("b") == 0 and reused("b") == [True, True]
    said = capsys.readouterr().out
    assert "01_first.ipynb reused from run a" in said and re.search(r"^01_first.ipynb +reused", said, re.M)
    again = manifest("b")["notebooks"][0]
    assert again["reused"] == {"run": "a", "seconds": first["seconds"], "commit": "c" * 40, "dirty": False}
    for f in ("tables/01_first.csv", "tables/02_second.csv"):
        assert (out / "smoke" / "b" / f).read_bytes() == (out / "smoke" / "a" / f).read_bytes()
    executed = (out / "smoke" / "b" / "01_first.ipynb").read_text()  # its parameters name this run's file
    assert str(out / "smoke" / "b" / "run.json") in executed and str(out / "smoke" / "a") not in executed
    index = (out / "smoke" / "b" / "index.md").read_text()
    assert "[01_first](tables/01_first.csv)" in index and "## 01_first (reused from run a, executed in" in index
    published = json.loads((tiny_notebooks / "top_figures" / "MANIFEST.json").read_text())
    assert published["run"] == "b" and published["reused"] == {"01_first.ipynb": "a", "02_second.ipynb": "a"}
    assert sorted(published["files"]) == ["01_first.csv", "01_first.md", "02_second.csv", "02_second.md"]
    assert "in run `a` (reused" in (tiny_notebooks / "docs" / "results.md").read_text()
    # a recipe of 01 changes 01 and 02, which needs it
    assert run("c", "-p", "base_epochs=3") == 0 and reused("c") == [False, False]
    # a changed cell (prose too) executes that notebook only
    nb = nbformat.read(str(tiny_notebooks / "notebooks" / "02_second.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A sentence a reader sees."))
    nbformat.write(nb, str(tiny_notebooks / "notebooks" / "02_second.ipynb"))
    assert run("d") == 0 and reused("d") == [True, False]
    (gtsrb / "x.txt").write_text("two")  # an input changed: every notebook (01 alone from here, to save time)
    assert run("e", "--only", "01") == 0 and reused("e") == [False]
    assert run("f", "--only", "01", "--no-reuse") == 0 and reused("f") == [False]
    key = manifest("f")["notebooks"][0]["reuse_key"]
    assert key == manifest("e")["notebooks"][0]["reuse_key"]
    assert reuse.earlier(out, "smoke", "01_first.ipynb", key, out / "x")[0].name == "f"  # the newest
    os.utime(stored, ns=(os.stat(stored).st_atime_ns, os.stat(stored).st_mtime_ns + 10**9))  # rewritten
    assert reuse.earlier(out, "smoke", "01_first.ipynb", key, out / "x") is None
    assert run("g", "--only", "01") == 0 and reused("g") == [False]

    def broken(*args):
        raise OSError("disk full")
    monkeypatch.setattr(reuse, "copy_outputs", broken)
    capsys.readouterr()
    assert run("h", "--only", "01") == 0 and reused("h") == [False]  # executed instead
    assert "could not reuse 01_first.ipynb from run g (OSError('disk full')); executing it" in capsys.readouterr().out
