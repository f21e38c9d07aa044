"""Bad input to ``python -m lib.workbook``, its parameters and config files (issue 33): each is
one line on stderr with exit 2, before any notebook runs, and no run folder leaves ``--out``.

Every test here failed on the code before this issue's fixes (d97a041 and 655e878): the names
escaped ``--out``, the parameters were accepted, the errors were tracebacks or named no file.
"""
from __future__ import annotations

import json
import math
import random

import pytest

from lib import workbook
from lib.config import ConfigError, read_table
from lib.studies import check_params, parameters, run_config_for


def _fails(argv, capsys, *needles):
    """``main(argv)`` exits 2 with one stderr line containing every needle, and no traceback."""
    try:
        code = workbook.main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b", "..", ".hidden", "x" * 101])
def test_run_names_cannot_leave_out(tmp_path, capsys, name):
    out = tmp_path / "deep" / "runs"
    _fails(["--out", str(out), "--name", name, "--only", "00"], capsys, "--name", "plain name")
    assert not any(tmp_path.rglob("*/figures")), "a run folder was made"
    assert not (tmp_path / "escape").exists()


def test_resume_takes_a_plain_name_only(tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "manifest.json").write_text(json.dumps({"run": "x", "profile": "smoke", "parameters": {},
                                                       "notebooks": [], "only": None}))
    _fails(["--out", str(tmp_path / "runs"), "--resume", "../../elsewhere"], capsys, "--resume", "plain name")


def _manifest(folder, **changes):
    folder.mkdir(parents=True)
    data = {"run": folder.name, "profile": "smoke", "parameters": {}, "only": ["00"], "status": "failed",
            "notebooks": [{"name": "00_datasets.ipynb", "status": "failed"}], **changes}
    (folder / "manifest.json").write_text(json.dumps(data))
    return folder / "manifest.json"


@pytest.mark.parametrize("params,needle", [({"adv_eps": "abc"}, "adv_eps"), ({"bogus": 1}, "bogus"),
                                           ({"adv_epochs": -3}, "adv_epochs")])
def test_resume_checks_the_parameters_of_the_manifest_again(tmp_path, capsys, params, needle):
    path = _manifest(tmp_path / "runs" / "smoke" / "edited", parameters=params)
    _fails(["--out", str(tmp_path / "runs"), "--resume", "edited"], capsys, str(path), needle)


def test_one_unreadable_manifest_does_not_block_resume(tmp_path, capsys):
    bad = tmp_path / "runs" / "smoke" / "bad"
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text('{"a": "x\ny"}')  # a control character inside a string
    code = workbook.main(["--out", str(tmp_path / "runs"), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert str(bad / "manifest.json") in err and "no unfinished smoke run" in err
    _fails(["--out", str(tmp_path / "runs"), "--resume", "bad"], capsys, str(bad / "manifest.json"))


@pytest.mark.parametrize("param,needle", [
    ("adv_eps=-0.1", "[0, 1]"), ("adv_eps=300", "[0, 1]"), ("adv_eps=float('nan')", "adv_eps"),
    ("adv_eps=8/0", "8/0"), ("adv_epochs=-3", ">= 1"), ("base_lr=-1.0", "> 0"), ("base_lr=0", "> 0"),
    ("adv_methods=['nonexistent']", "pgd_at"), ("bd_methods=['nope']", "fine_tune"),
    ("transfer_method_kw={'fine_tune': {'epochs': 0}}", "epochs"), ("transfer_method_kw={'bogus': {}}", "bogus"),
    ("bd_rate=1.5", "[0, 1]"), ("bd_where='middle'", "bottom_right"), ("cl_n_eval=0", ">= 1"),
    ("adv_eps_list=[0.0078, 2.0]", "[0, 1]"), ("data_seed=-1", ">= 0"), ("seeds=0", "seeds"),
    ("base_arch='nonet'", "small_cnn"), ("adv_dataset='imagenet_xl'", "cifar10")])
def test_parameters_out_of_range_or_unknown_names_stop_in_one_line(tmp_path, capsys, param, needle):
    name = param.split("=")[0]
    _fails(["--out", str(tmp_path), "-p", param], capsys, name, needle)
    assert not any(tmp_path.iterdir()), "a run folder was made before the check"


def test_every_recipe_value_has_a_declared_rule_and_meets_it():
    from lib.studies import study_modules
    from lib.studies.rules import rule_for, value_problem

    def walk(key, value, study, where, module):
        if isinstance(value, dict) and not key.endswith("_kw"):
            for k, v in value.items():
                walk(k, v, study, f"{where}.{k}", module)
            return
        assert rule_for(key) is not None, f"{where}: no rule in lib.studies.rules.RULES"
        assert value_problem(where, key, value, study, getattr(module, "METHODS", None)) is None

    for module in study_modules().values():
        study = module.__name__.rsplit(".", 1)[1]
        for profile, table in module.RECIPE.items():
            for key, value in table.items():
                walk(key, value, study, f"{study}:{profile}:{key}", module)


@pytest.mark.parametrize("argv,needle", [(["--jobs", "-3"], "--jobs"), (["--jobs", "0"], "--jobs"),
                                         (["--timeout", "0"], "--timeout"), (["--profile", "huge"], "--profile")])
def test_bad_options_are_one_line(tmp_path, capsys, argv, needle):
    _fails(["--out", str(tmp_path), *argv], capsys, needle)


@pytest.mark.parametrize("only", ["0", "9", "99", "x"])
def test_only_must_name_a_notebook(tmp_path, capsys, only):
    _fails(["--out", str(tmp_path), "--only", only], capsys, "--only", "00")
    assert not any(tmp_path.iterdir())


def test_parameters_of_notebooks_outside_only_are_named():
    todo = workbook.select(["00"])
    assert workbook.unused_params({"adv_epochs": 3, "data_size": 32}, todo) == ["adv_epochs"]
    # notebook 06 asks for notebook 02's students: 02's parameters change what 06 shows
    assert workbook.unused_params({"transfer_seed": 5, "base_epochs": 2}, workbook.select(["06"])) == []


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    _fails(["--out", str(target), "--only", "00"], capsys, str(target))


@pytest.mark.parametrize("suffix,text,needle", [
    (".toml", "adv_eps = [\n", "TOML"), (".json", '{"adv_eps": 1,,}', "JSON"),
    (".json", '{"a": "x\ny"}', "JSON"), (".yaml", "a: [1,\n", "YAML"),
    (".yaml", 'a: !!python/object/apply:os.system ["true"]\n', "YAML"), (".json", "[1, 2]", "table"),
    (".ini", "a=1", ".toml")])
def test_config_file_errors_name_the_file(tmp_path, capsys, suffix, text, needle):
    path = tmp_path / f"study{suffix}"
    path.write_text(text)
    _fails(["--out", str(tmp_path / "runs"), "--config", str(path)], capsys, str(path), needle)


def test_config_that_is_a_folder_says_so(tmp_path, capsys):
    _fails(["--out", str(tmp_path / "runs"), "--config", str(tmp_path)], capsys, "is a folder")


def test_config_that_is_not_text_says_so(tmp_path, capsys):
    path = tmp_path / "study.toml"
    path.write_bytes(b"\xff\xfe\x00a")
    _fails(["--out", str(tmp_path / "runs"), "--config", str(path)], capsys, str(path), "UTF-8")


def _random_value(rng: random.Random, depth: int = 0):
    pick = rng.randrange(12)
    if depth > 2 and pick in (5, 6):
        pick = 0
    return [lambda: rng.choice([-1, 0, 1, 3, 10 ** 9, 2 ** 70]),
            lambda: rng.choice([-0.5, 0.0, 0.5, 1.5, math.nan, math.inf, -math.inf, 1e308]),
            lambda: rng.choice(["", "x", "pgd_at", "nan", "../x", "\x00", "8/255"]),
            lambda: None, lambda: rng.choice([True, False]),
            lambda: [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))],
            lambda: {rng.choice(["fine_tune", "epochs", "lr", "x", 1]): _random_value(rng, depth + 1)},
            lambda: (1, 2), lambda: b"x", lambda: rng.random(), lambda: rng.randrange(-5, 50),
            lambda: [rng.random() * 2 for _ in range(3)]][pick]()


def test_fuzz_parameters_give_a_run_or_one_line_error():
    """Four hundred random parameter sets (known names, values of every type and sign): each gives
    a run configuration or one ConfigError line, never another exception."""
    rng = random.Random(33)
    names = sorted(parameters()) + ["seeds", "retrain", "profile", "nope"]
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        params = {rng.choice(names): _random_value(rng) for _ in range(rng.randrange(1, 3))}
        try:
            run_config_for(rng.choice(["smoke", "full"]), params)
            outcomes["ok"] += 1
        except ConfigError as err:
            assert "\n" not in str(err), (params, str(err))
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 10, outcomes  # the fuzz reaches both outcomes


def test_fuzz_config_files_give_a_table_or_one_line_error(tmp_path):
    """Three hundred random config files (fragments of TOML, YAML and JSON, and random bytes)."""
    rng = random.Random(33)
    chunks = ["a = 1", "[x]", "a:", "- 1", "{", "}", '"', "!!python/name:os.system", "\x00", "a = [1,",
              "b: {c: d}", "1: 2", "null", "[1,2]", "a = nan", "\t", "=", ":", '{"adv_eps": 0.1}']
    for i in range(300):
        path = tmp_path / f"f{i}{rng.choice(['.toml', '.yaml', '.yml', '.json', '.txt'])}"
        if rng.random() < 0.2:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(30))))
        else:
            path.write_text("\n".join(rng.choice(chunks) for _ in range(rng.randrange(5))))
        try:
            assert isinstance(read_table(path), dict)
        except ConfigError as err:
            assert "\n" not in str(err) and str(path) in str(err), str(err)


def test_valid_parameters_still_pass():
    assert check_params({"adv_eps": 8 / 255, "adv_methods": ["pgd_at"], "base_lr": 0.05, "seeds": 2,
                         "gan_arch": "densenet_bc100", "bd_asserted": ["fine_pruning_removes"]})


def test_a_store_that_cannot_be_written_stops_the_run_before_a_notebook(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("WORKBOOK_STORE", str(blocker / "store"))
    _fails(["--out", str(tmp_path / "runs"), "--only", "00"], capsys, str(blocker), "WORKBOOK_STORE")
    assert not (tmp_path / "runs").exists()
