"""How often each notebook's own asserts fail across training seeds: a flip rate per notebook, at
the test suite's sizes and at smoke.

A check that fails on one clean clone in twenty is a defect, so every headline assert and sanity
check is measured before it is trusted. Where ``bench_flip_rates.py`` re-applies notebook 03's
and 06's checks to models of several seeds, this runs whole notebooks: ``python -m lib.workbook
--only NN -p <seed parameter>=s`` (plus the notebook test's overrides at the test size), and a
run fails exactly when one of the notebook's asserts does. The seed parameter seeds the training
the asserts read (notebook 01's bases for 01; the students, learners, planting or GAN for the
others, on notebook 01's bases of the recipe).

Each run also records ``margins``: how far each asserted estimate sat from failing
(:func:`check_margins`), and for notebooks 05 and 08 their findings tables.

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
         "03": ("adv_seed", "test_notebooks", "SMALL03"),
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
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    entry = manifest["notebooks"][0] if manifest else {}
    error = entry.get("error") or (proc.stderr.strip().splitlines() or [""])[-1] if proc.returncode else ""
    tables = out / "smoke" / name / "tables"
    cfg = manifest.get("recipes", {}).get(notebook, {})
    margins = check_margins(notebook, tables, cfg)
    return {"notebook": notebook, "size": size, "seed": seed, "passed": proc.returncode == 0,
            "failed_assert": _assert_line(error), "seconds": round(time.perf_counter() - t0, 1),
            "findings": _findings(tables / f"{notebook}_findings.csv"), "margins": margins,
            "reported": reported_checks(notebook, tables, margins, cfg), "kinds": check_kinds(notebook, tables)}


def check_kinds(notebook: str, tables: Path) -> dict[str, str]:
    """Notebook 04's kind of each headline check (``04_headline_check``: forgetting, area, worst),
    which its recipe's ``asserted`` (and its test's ``cl_asserted``) name; ``{}`` for the others."""
    path = tables / f"{notebook}_headline_check.csv"
    if notebook != "04" or not path.is_file():
        return {}
    import pandas as pd

    return dict(pd.read_csv(path)[["name", "kind"]].itertuples(index=False))


def reported_checks(notebook: str, tables: Path, margins: dict[str, float], cfg: dict) -> list[str]:
    """The checks of ``margins`` (:func:`check_margins`) this run did not assert (the run's
    ``asserted`` leaves them out): notebooks 04 and 07 from their headline table, 05 from the run's
    recipe ``cfg``."""
    import pandas as pd

    if notebook == "05":
        asserted = cfg.get("asserted")
        return [] if asserted is None else [m for m in margins if m not in ("planted", *asserted, "error")]
    path = tables / f"{notebook}_headline_check.csv"
    if notebook not in ("04", "07") or not path.is_file():
        return []
    h = pd.read_csv(path)
    return list(h.loc[~h["asserted"].astype(bool), "name"])


def check_margins(notebook: str, tables: Path, cfg: dict) -> dict[str, float]:
    """How far each asserted estimate of notebooks 01-05 and 07 sat on its passing side in this run, in
    the asserted quantity's units (``flip_margins.py`` turns them into a flip probability over seeds).
    Notebooks 04 and 07 save the margin they assert (``NN_headline_check``), 05 each finding's value and
    margin (``05_findings``); for 01, 02 and 03 it is recomputed here from the tables and the recipe by
    the notebook's own rule. ``{"error": ...}`` when the run wrote no tables (it failed before them)."""
    import pandas as pd

    read = lambda t: pd.read_csv(tables / f"{t}.csv")  # noqa: E731
    try:
        if notebook in ("04", "07"):  # asserted or reported (reported_checks says which)
            h = read(f"{notebook}_headline_check")
            return {r["name"]: float(r["margin"]) for _, r in h.iterrows()}
        if notebook == "05":  # the planted teacher fires, and the smoke recipe's asserted findings hold
            from lib.studies import backdoor

            f = read("05_findings").set_index("finding")
            return {name: float(f.loc[name, "value"] - f.loc[name, "margin"])
                    for name in ("planted", *backdoor.recipe("smoke")["asserted"])}
        if notebook == "01":  # each base at least min_over_chance x chance
            b = read("01_bases")
            b = b[b["kind"] == "smoke base"]
            return {f"base_{r['base']}_over_chance": float(r["test_acc"] - cfg["min_over_chance"] * r["chance"])
                    for _, r in b.iterrows()}
        if notebook == "02":  # lib.studies.transfer.headline_check's and anb_check's rules
            h, a = read("02_headline_check"), read("02_anb_check")
            out = {f"headline_{r['method']}": float(min(r["gap"] - cfg["asr_gap"],
                                                        r["clean_acc"] - r["fine_tune_clean"] + cfg["clean_margin"]))
                   for _, r in h.iterrows()}
            return out | {f"anb_{i + 1}": float(r["difference"] - r["margin"]) for i, r in a.iterrows()}
        if notebook == "03":  # lib.studies.adversarial_report.headline: worst case at the training eps, against
            # the smoke recipe's floor (the claim), whatever floor the run had (the test's 0 reports the gain)
            from lib.studies import adversarial

            c = read("03_compact")
            w = c[((c["eps_255"] - cfg["eps"] * 255).abs() < 1e-6) & (c["attack"] == "worst case")].set_index("method")
            std, pgd = w.loc["standard"], w.loc["pgd_at"]
            slack, floor = 0.5 / float(std["n"]), adversarial.recipe("smoke")["min_pgd_at_gain"]
            return {"pgd_at_gain": float(pgd["acc"] - std["acc"] - (floor - slack)),
                    "intervals_disjoint": float(pgd["low"] - std["high"])}
    except (FileNotFoundError, KeyError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    return {}


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
    ap.add_argument("--append", action="store_true", help="add to the runs saved in the result file (a run of "
                    "the same notebook, size and seed is replaced)")
    ap.add_argument("--result", default="notebook_flips", help="the result file's name in results/ "
                    "(notebook_margins: the runs that record each check's margin)")
    a = ap.parse_args(argv)
    path = RESULTS / f"{a.result}.json"
    old = json.loads(path.read_text()) if a.append and path.is_file() else {}
    runs = [r for r in old.get("runs", [])
            if r["notebook"] not in a.notebooks or r["size"] not in a.sizes or r["seed"] not in a.seeds]
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
                save(a.result, {"seed_parameters": {k: v[0] for k, v in CASES.items()},
                                "summary": summarise(runs), "runs": runs, **kept})


if __name__ == "__main__":
    main()
