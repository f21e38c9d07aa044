"""How often each notebook's own asserts fail across training seeds: a flip rate per notebook, at
the test suite's sizes and at smoke.

A check that fails on one clean clone in twenty is a defect, so every headline assert and sanity
check is measured before it is trusted. Where ``bench_flip_rates.py`` re-applies notebook 03's
and 06's checks to models of several seeds, this runs whole notebooks: ``python -m lib.workbook
--only NN -p <seed parameter>=s`` (plus the notebook test's overrides at the test size), and a
run fails exactly when one of the notebook's asserts does. The seed parameter seeds the training
the asserts read (notebook 01's bases for 01; the students, learners, planting or GAN for the
others, on notebook 01's bases of the recipe).

``python benchmarks/bench_notebook_flips.py --notebooks 04 05 --sizes smoke test --seeds 0 1 2 3 4
[--store DIR] [--append]``; the result is ``results/notebook_flips.json`` (a summary row per
notebook and size: seeds run, runs failed, the asserts that failed; and every run). Models go to
``--store`` (default: a folder beside the results), so a rerun only adds what is new.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import RESULTS, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# notebook -> (its seed parameter, the test module and the name of its overrides there)
CASES = {"01": ("base_seed", None, None),
         "02": ("transfer_seed", "test_notebooks", "SMALL02"),
         "04": ("cl_seed", "test_notebook_04_continual", "SMALL"),
         "05": ("bd_seed", "test_notebook_05_backdoor_poison", "SMALL"),
         "07": ("gan_seed", "test_notebook_07_unrestricted_gan", "SMALL")}


def test_overrides(notebook: str) -> dict:
    """The overrides the notebook's test runs it with (the test module's own dict, so they agree)."""
    _, module, name = CASES[notebook]
    if module is None:
        return {}
    spec = importlib.util.spec_from_file_location(module, ROOT / "tests" / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return dict(getattr(mod, name))


def run_once(notebook: str, size: str, seed: int, out: Path, store: Path) -> dict:
    """One headless run of ``notebook`` at ``seed``; whether its asserts held, and the first that failed."""
    param = CASES[notebook][0]
    params = {**(test_overrides(notebook) if size == "test" else {}), param: seed}
    name = f"{notebook}-{size}-{seed}-{int(time.time())}"
    cmd = [sys.executable, "-m", "lib.workbook", "--only", notebook, "--out", str(out), "--name", name, "--quiet"]
    for key, value in params.items():
        cmd += ["-p", f"{key}={value!r}"]
    env = {**os.environ, "WORKBOOK_STORE": str(store), "WORKBOOK_OUTPUTS": str(out / "outputs"),
           "WORKBOOK_FIGURES": str(out / "published"), "WORKBOOK_DOCS": str(out / "docs")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    manifest_path = out / "smoke" / name / "manifest.json"
    entry = json.loads(manifest_path.read_text())["notebooks"][0] if manifest_path.is_file() else {}
    error = entry.get("error") or (proc.stderr.strip().splitlines() or [""])[-1] if proc.returncode else ""
    return {"notebook": notebook, "size": size, "seed": seed, "passed": proc.returncode == 0,
            "failed_assert": _assert_line(error), "seconds": round(time.perf_counter() - t0, 1),
            "findings": _findings(out / "smoke" / name / "tables" / f"{notebook}_findings.csv")}


def _findings(path: Path) -> list[dict]:
    """The run's findings table (notebooks 05 and 08: each finding's value, interval and margin),
    so that ``flip_margins.py`` can read how far each asserted one sat from failing."""
    if not path.is_file():
        return []
    import pandas as pd

    cols = ["finding", "value", "low", "high", "margin", "held", "shown"]
    return pd.read_csv(path)[cols].to_dict("records")


def _assert_line(error: str) -> str:
    """The line of an error that names what failed (an AssertionError's message), cut to 300 characters."""
    lines = [ln.strip() for ln in (error or "").splitlines() if ln.strip()]
    hit = next((ln for ln in lines if "AssertionError" in ln), lines[-1] if lines else "")
    return hit[:300]


def summarise(runs: list[dict]) -> list[dict]:
    rows = {}
    for r in runs:
        row = rows.setdefault((r["notebook"], r["size"]), {"notebook": r["notebook"], "size": r["size"], "seeds": [],
                                                            "failed_runs": 0, "failed_asserts": []})
        row["seeds"].append(r["seed"])
        if not r["passed"]:
            row["failed_runs"] += 1
            row["failed_asserts"].append(f"seed {r['seed']}: {r['failed_assert']}")
    return [{**row, "runs": len(row["seeds"])} for row in rows.values()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--sizes", nargs="+", default=["test", "smoke"], choices=["test", "smoke"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--store", default=str(ROOT / "runs" / "flip_store"))
    ap.add_argument("--append", action="store_true", help="add to the runs saved in notebook_flips.json")
    a = ap.parse_args(argv)
    path = RESULTS / "notebook_flips.json"
    old = json.loads(path.read_text()) if a.append and path.is_file() else {}
    runs = old.get("runs", [])
    # what else the file holds (notebook_05_values: the asserted values of earlier runs) stays
    kept = {k: v for k, v in old.items() if k not in ("benchmark", "when", "machine", "seed_parameters", "summary",
                                                        "runs")}
    out = Path(tempfile.mkdtemp(prefix="notebook_flips_"))
    for notebook in a.notebooks:
        for size in a.sizes:
            for seed in a.seeds:
                r = run_once(notebook, size, seed, out, Path(a.store))
                print(json.dumps(r), flush=True)
                runs.append(r)
                save("notebook_flips", {"seed_parameters": {k: v[0] for k, v in CASES.items()},
                                        "summary": summarise(runs), "runs": runs, **kept})


if __name__ == "__main__":
    main()
