"""Goal (issue 34): ``make test`` on a clean clone in under 25 minutes on the 2-core CPU.

Clones the committed ``HEAD`` into a temporary folder (with ``../shared`` linked beside it, as CI
has it), builds its ``.venv`` from scratch (``make venv``, timed apart: CI pays it too) and runs
``make test`` there, with a JUnit XML report for each test's seconds. Records the wall seconds of
both, the workers (``TEST_WORKERS``), the slowest tests and the seconds per test file, with the
commit and the machine; ``results/suite_timing.json``. The goal is on ``make test``'s own wall
seconds (venv excluded); the venv's are beside it. Takes the suite's time (tens of minutes).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import timing_doc
from common import save

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 25 * 60


def _timed(cmd: list[str], cwd: Path, env: dict, log: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    with log.open("a") as out:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return rc, round(time.perf_counter() - t0, 1)


def per_test(junit: Path) -> list[dict]:
    """``[{"test", "file", "seconds"}]`` of a JUnit XML report, slowest first."""
    rows = [{"test": f"{c.get('classname')}::{c.get('name')}", "file": c.get("classname", "").rsplit(".", 1)[-1],
             "seconds": round(float(c.get("time") or 0), 1)} for c in ET.parse(junit).iter("testcase")]
    return sorted(rows, key=lambda r: -r["seconds"])


def main(workers: int = 0, keep: bool = False) -> dict:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="bench_suite_"))
    repo, log, junit = tmp / "repo", tmp / "suite.log", tmp / "junit.xml"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    if (ROOT.parent / "shared").is_dir():  # the team's data beside the clone, as CI has it
        (tmp / "shared").symlink_to(ROOT.parent / "shared")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBOOK_", "PYTEST_", "VIRTUAL_ENV"))}
    load = os.getloadavg()[0]
    venv_rc, venv_s = _timed(["make", "venv"], repo, env, log)
    rc, test_s = _timed(["make", "test", f"TEST_WORKERS={workers}", f"PYTEST_ARGS=--junitxml={junit}"], repo, env,
                        log)
    tests = per_test(junit) if junit.is_file() else []
    files: dict[str, float] = defaultdict(float)
    for t in tests:
        files[t["file"]] += t["seconds"]
    res = {"commit": commit, "workers": workers, "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2 (Makefile)"),
           "load_average_before": round(load, 2), "load_average_after": round(os.getloadavg()[0], 2),
           "venv_returncode": venv_rc, "venv_seconds": venv_s, "returncode": rc, "make_test_seconds": test_s,
           "tests": len(tests), "test_seconds_summed": round(sum(t["seconds"] for t in tests), 1),
           "slowest": tests[:15], "seconds_per_file": dict(sorted(((f, round(s, 1)) for f, s in files.items()),
                                                                  key=lambda kv: -kv[1])),
           "goal_seconds": GOAL_S, "log_tail": log.read_text()[-1500:] if rc else ""}
    res["meets_goal"] = rc == 0 and test_s < GOAL_S
    save("suite_timing" if workers == 0 else f"suite_timing_xdist{workers}", res)
    timing_doc.write()  # docs/performance.md quotes the new timing
    if rc == 0 and not keep:  # the clone and its .venv are several GB; a failed run keeps them to read
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"bench_suite: the clone, its log and JUnit report stay in {tmp}")
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=0, help="pytest-xdist workers (TEST_WORKERS; default 0: one "
                    "process, as make test runs)")
    ap.add_argument("--keep", action="store_true", help="keep the clone after a passing run (a failing one is kept)")
    args = ap.parse_args()
    main(args.workers, args.keep)
