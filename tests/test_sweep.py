"""Sweeps (``python -m lib.workbook --sweep``): grid expansion and validation, the Slurm check, and a
two-point sweep of notebook 00 through submitit's local executor where one point fails, is
reported, and is re-submitted with ``--resume`` after its value is fixed (the done point is not
rerun)."""
import json

import pytest

from lib import sweep, workbook


def test_grid_and_points_expand_over_shared_params():
    points = sweep.expand({"data_seed": 1}, {"data_size": [32, 64], "data_per_class": [2, 3]},
                          [{"data_size": 48}])
    assert points == [{"data_seed": 1, "data_size": 32, "data_per_class": 2},
                      {"data_seed": 1, "data_size": 32, "data_per_class": 3},
                      {"data_seed": 1, "data_size": 64, "data_per_class": 2},
                      {"data_seed": 1, "data_size": 64, "data_per_class": 3},
                      {"data_seed": 1, "data_size": 48}]
    with pytest.raises(sweep.SweepError, match="non-empty list"):
        sweep.expand(grid={"data_size": 32})


def test_bad_sweep_files_stop_before_anything_is_submitted(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('[grid]\ndata_size = [32]\n')
    assert workbook.main(["--sweep", str(f), "--out", str(tmp_path / "runs")]) == 2
    assert "only" in capsys.readouterr().err
    f.write_text('only = ["00"]\n[grid]\ndata_size = [32, "big"]\n')
    assert workbook.main(["--sweep", str(f), "--out", str(tmp_path / "runs")]) == 2
    assert "point 1" in capsys.readouterr().err
    f.write_text('only = ["00"]\nbogus = 1\n[grid]\ndata_size = [32]\n')
    assert workbook.main(["--sweep", str(f), "--out", str(tmp_path / "runs")]) == 2
    assert "bogus" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_slurm_executor_without_slurm_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sweep, "slurm_available", lambda: False)
    f = tmp_path / "s.toml"
    f.write_text('only = ["00"]\n[grid]\ndata_per_class = [2]\n')
    assert workbook.main(["--sweep", str(f), "--executor", "slurm", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "sbatch" in err and "--executor local" in err


@pytest.mark.notebooks
def test_two_point_local_sweep_reports_a_failed_point_and_resubmits_it(tmp_path, capsys):
    out = tmp_path / "runs"
    f = tmp_path / "pair.toml"
    # point 1 asks synsigns for 8 px images, which it cannot render: its notebook fails
    f.write_text('name = "pair"\nonly = ["00"]\nparallel = 2\n'
                 '[params]\ndata_per_class = 2\n[grid]\ndata_size = [32, 8]\n')
    assert workbook.main(["--sweep", str(f), "--executor", "local", "--out", str(out)]) == 1
    printed = capsys.readouterr()
    assert "1 of 2 points done" in printed.out and "--resume" in printed.err
    record = json.loads((out / "sweeps" / "pair" / "sweep.json").read_text())
    assert [p["status"] for p in record["points"]] == ["done", "failed"]
    assert "00_datasets" in record["points"][1]["error"]
    for i, size in enumerate((32, 8)):
        manifest = json.loads((out / "smoke" / f"pair-{i:02d}" / "manifest.json").read_text())
        assert manifest["parameters"] == {"data_per_class": 2, "data_size": size}
        assert manifest["only"] == ["00"] and manifest["status"] == ("done" if i == 0 else "failed")
    first = out / "smoke" / "pair-00" / "manifest.json"
    before = first.stat().st_mtime_ns
    assert (out / "smoke" / "pair-00" / "00_datasets.ipynb").is_file()
    # without --resume the sweep is not submitted twice
    assert workbook.main(["--sweep", str(f), "--out", str(out)]) == 2
    # the bad value fixed, --resume reruns only the failed point, in a new folder (new parameters)
    f.write_text('name = "pair"\nonly = ["00"]\n[params]\ndata_per_class = 2\n[grid]\ndata_size = [32, 40]\n')
    assert workbook.main(["--sweep", str(f), "--resume", "--out", str(out)]) == 0
    record = json.loads((out / "sweeps" / "pair" / "sweep.json").read_text())
    assert [p["status"] for p in record["points"]] == ["done", "done"]
    assert record["points"][1]["run"] == "pair-01-r2" and record["points"][1]["attempts"] == ["pair-01"]
    assert first.stat().st_mtime_ns == before  # the done point was not rerun
    manifest = json.loads((out / "smoke" / "pair-01-r2" / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["parameters"]["data_size"] == 40
    assert "2 of 2 points done" in capsys.readouterr().out
