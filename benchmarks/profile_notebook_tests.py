"""Where the notebook tests' seconds go, cell by cell (issue 34: the suite's goal; the notebook
tests and the full dry run are most of it).

``python benchmarks/profile_notebook_tests.py [TEST ...]`` runs the given pytest node ids (default
:data:`DEFAULT`, the slowest notebook tests, in the order ``make test`` runs them) in one process
as ``make test`` does, keeping every test's temporary folder, reads the seconds papermill recorded
for each cell of the executed notebooks there, and writes ``results/notebook_test_profile.json``:
per test its seconds, the seconds inside notebook cells, the rest (kernel starts, imports before
the first cell, the test's own reading) and the slowest cells with their first line.
``--from BASETEMP --log LOG`` summarises an earlier run instead (the folder it kept and its pytest
output with ``--durations``). Nothing else may run on the machine meanwhile.

Why by cell: a notebook test's seconds are the notebook's, and a cell is the unit a change to a
test's sizes or to the notebook moves; pytest's durations stop at the test.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["tests/test_notebooks.py::test_01_pretrained_bases_trains_then_reuses",
           "tests/test_notebooks.py::test_02_transfer_finetune",
           "tests/test_notebooks.py::test_03_adversarial_training",
           "tests/test_notebook_07_unrestricted_gan.py::test_07_unrestricted_gan_trains_and_scores_your_classifier"]
TOP = 6  # slowest cells kept per notebook
_DURATION = re.compile(r"^\s*([0-9.]+)s call\s+(\S+)", re.M)


def run_tests(tests: list[str], basetemp: Path) -> str:
    """Run ``tests`` keeping their folders under ``basetemp``; pytest's output."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "tmp_path_retention_policy=all",
           "--basetemp", str(basetemp), "--durations=0", *tests]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the tests failed (return code {proc.returncode}):\n{proc.stdout[-3000:]}")
    return proc.stdout


def cell_seconds(path: Path) -> list[dict]:
    """Each executed code cell of notebook ``path``: its index, papermill's seconds, its first line."""
    cells = []
    for i, c in enumerate(json.loads(path.read_text())["cells"]):
        seconds = c.get("metadata", {}).get("papermill", {}).get("duration")
        if c["cell_type"] == "code" and seconds is not None:
            lines = [line for line in "".join(c["source"]).splitlines() if line.strip() and not line.startswith("#")]
            cells.append({"cell": i, "seconds": round(seconds, 1), "first_line": (lines or [""])[0][:100]})
    return cells


def summarise(basetemp: Path, log: str) -> list[dict]:
    """Per test of ``log`` (pytest's durations): its seconds and its notebooks' cells, found in the
    folder pytest named after the test (the name's first 30 characters) under ``basetemp``. Only the
    tests' call phase is read (a notebook a fixture runs is not counted), and two tests whose names
    share their first 30 characters would share their cells: profile such tests apart."""
    out = []
    for seconds, nodeid in _DURATION.findall(log):
        folders = list(basetemp.glob(nodeid.rsplit("::", 1)[-1][:30] + "[0-9]*"))
        notebooks = []
        for path in sorted(p for f in folders for p in f.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts):
            cells = cell_seconds(path)
            notebooks.append({"notebook": str(path.relative_to(basetemp)), "cell_seconds": round(sum(
                c["seconds"] for c in cells), 1), "slowest": sorted(cells, key=lambda c: -c["seconds"])[:TOP]})
        if notebooks:
            in_cells = sum(n["cell_seconds"] for n in notebooks)
            out.append({"test": nodeid, "seconds": float(seconds), "cell_seconds": round(in_cells, 1),
                        "outside_cells": round(float(seconds) - in_cells, 1), "notebooks": notebooks})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tests", nargs="*", default=DEFAULT)
    ap.add_argument("--from", dest="basetemp", type=Path, help="an earlier run's kept folder (with --log)")
    ap.add_argument("--log", type=Path, help="that run's pytest output, with its durations")
    ap.add_argument("--commit", help="the commit that run tested (default: this checkout's HEAD)")
    args = ap.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                           text=True).stdout.strip()
    if args.basetemp:
        if not args.log:
            ap.error("--from needs --log (the pytest output of that run, with --durations)")
        basetemp, log = args.basetemp, args.log.read_text()
        measured = time.strftime("%Y-%m-%d %H:%M", time.localtime(args.log.stat().st_mtime))
    else:
        basetemp = Path(tempfile.mkdtemp(prefix="profile_notebook_tests_"))
        log, measured = run_tests(args.tests, basetemp), None
    tests = summarise(basetemp, log)
    if not tests:
        raise SystemExit(f"no executed notebook found under {basetemp} for the tests in the log")
    save("notebook_test_profile", {"commit": commit, **({"tests_ended": measured} if measured else {}),
                                   "tests": tests, "seconds": round(sum(t["seconds"] for t in tests), 1)})


if __name__ == "__main__":
    main()
