"""Where the real profile's time goes, from the manifests of real runs that already happened.

``python benchmarks/real_run_seconds.py runs/real/NAME [runs/real/NAME ...]`` reads each run's
``manifest.json`` and records, per notebook that finished, its seconds and their split into
training models, computing stored results and the rest (:func:`lib.runs.time_profile`), and how
many store entries it trained, computed and loaded (a loaded one was made by an earlier run), with
the run's commit. It writes ``results/real_run_seconds.json``.

This is not the cold benchmark of issue 35 (``bench_workbook.py --profile real``: every notebook
from an empty store, twice); it says where the time of the runs made so far went.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from common import save


def notebook_rows(folder: Path) -> list[dict]:
    """One row per finished notebook of the run in ``folder``."""
    manifest = json.loads((folder / "manifest.json").read_text())
    rows = []
    for nb in manifest["notebooks"]:
        if nb.get("status") != "done":
            continue
        t = nb.get("time") or {}
        rows.append({"run": manifest["run"], "commit": manifest["git"]["commit"][:10], "notebook": nb["name"],
                     "seconds": nb.get("seconds"), "train_seconds": t.get("train"), "compute_seconds": t.get("compute"),
                     "other_seconds": t.get("other"), "notebooks_in_run": len(manifest["notebooks"]),
                     "trained": t.get("trained"), "computed": t.get("computed"), "loaded": t.get("loaded")})
    return rows


if __name__ == "__main__":
    rows = [row for arg in sys.argv[1:] for row in notebook_rows(Path(arg))]
    save("real_run_seconds", {"profile": "real", "runs": rows,
                              "note": "runs of the real profile as they happened (stores partly warm); "
                                      "not the cold benchmark"})
    for r in rows:
        print(f"{r['notebook']:<34} {r['seconds']:>7.0f} s  (train {r['train_seconds']}, compute "
              f"{r['compute_seconds']})  run {r['run']}")
