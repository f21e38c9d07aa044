"""Whether two workbook runs gave the same tables: ``python benchmarks/compare_runs.py RUN_A RUN_B``
(run folders, e.g. two cold ``make workbook`` runs on clean clones) writes
``results/workbook_determinism.json`` (an optional third argument: how each run got its
models): the tables that are byte-identical, those equal once their timing columns (``seconds``,
``cached``, ...) are left out and columns are put in one order, and those that differ, with the
largest absolute difference per numeric column."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path[:0] = [str(Path(__file__).resolve().parent)]

from common import save  # noqa: E402

TIMING = ("second", "cached", "time", "_s")


def _untimed(df: pd.DataFrame) -> pd.DataFrame:
    keep = sorted(c for c in df.columns if not any(k in c for k in TIMING))
    return df[keep]


def compare(a: Path, b: Path) -> dict:
    out = {"identical": [], "equal_but_timing_or_column_order": [], "differ": {}, "only_in_one": []}
    names = sorted({f.name for f in (a / "tables").glob("*.csv")} | {f.name for f in (b / "tables").glob("*.csv")})
    for name in names:
        fa, fb = a / "tables" / name, b / "tables" / name
        if not (fa.is_file() and fb.is_file()):
            out["only_in_one"].append(name)
        elif fa.read_bytes() == fb.read_bytes():
            out["identical"].append(name)
        else:
            x, y = _untimed(pd.read_csv(fa)), _untimed(pd.read_csv(fb))
            if x.shape == y.shape and x.equals(y):
                out["equal_but_timing_or_column_order"].append(name)
                continue
            diffs = {c: float(np.nanmax(np.abs(x[c].to_numpy(float) - y[c].to_numpy(float))))
                     for c in x.columns if c in y and len(x) == len(y) and pd.api.types.is_numeric_dtype(x[c])
                     and pd.api.types.is_numeric_dtype(y[c])}
            out["differ"][name] = {k: v for k, v in diffs.items() if v > 0} or "non-numeric or shape"
    return out


if __name__ == "__main__":
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    note = sys.argv[3] if len(sys.argv) > 3 else ""  # how each run got its models (cold store, ...)
    runs = []
    for folder in (a, b):
        m = json.loads((folder / "manifest.json").read_text())
        runs.append({"run": m["run"], "commit": m["git"]["commit"], "started": m["started"], "jobs": m.get("jobs")})
    save("workbook_determinism", {"runs": runs, "note": note, **compare(a, b)})
