"""How often notebook 08's asserted findings would fail across the defender's draws: each seed
draws another clean set (``clean_seed``) and seeds every defence (``seed``); the backdoored models
are notebook 05's (fixed by its recipe). For every finding the smoke recipe names in
``asserted``, the value, its 95% interval and whether the interval reaches the margin (what the
notebook asserts), per seed.

Cheaper than ``bench_notebook_flips.py`` (which reruns whole notebooks): only the models and
detectors the asserted findings read are run, through the notebook's own functions.

``python benchmarks/bench_defence_flips.py --seeds 0 1 2 3 4 [--store DIR]``; the result is
``results/defence_flips.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import RESULTS, save  # noqa: E402


def one_seed(seed: int) -> list[dict]:
    """The asserted findings of the smoke recipe at defender seed ``seed``."""
    import pandas as pd

    from lib.studies import defences as ds
    from lib.studies import defences_report as R

    asserted = ds.recipe("smoke")["asserted"]
    methods = sorted({f.split("_removes_")[0] for f in asserted if "_removes_" in f}) or ["fine_tune"]
    triggers = sorted({f.rsplit("_", 1)[1] for f in asserted})
    cfg = ds.recipe("smoke", clean_seed=seed, seed=seed, methods=methods, transfer_methods=[], triggers=triggers)
    purification = R.purification_table(cfg)
    teachers = [(n, s) for n, s in R.detected_models(cfg, students=False) if s.kind == "teacher"]
    strips = R.strip_table({n: R.strip_result(s, cfg) for n, s in teachers}, teachers, cfg)
    found = R.findings(purification, strips, pd.DataFrame(columns=["model"]), pd.DataFrame(), cfg)
    found = found.set_index("finding")
    cols = ("value", "low", "high", "margin")
    return [{"seed": seed, "finding": name, **{k: float(found.loc[name, k]) for k in cols},
             "shown": bool(found.loc[name, "shown"])} for name in asserted if name in found.index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--store", default=str(RESULTS.parent / "store"))
    args = parser.parse_args()
    os.environ["WORKBOOK_STORE"] = args.store
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs = [row for seed in args.seeds for row in one_seed(seed)]
    summary = {}
    for row in runs:
        s = summary.setdefault(row["finding"], {"seeds": 0, "failed": 0, "smallest_low": None, "margin": row["margin"]})
        s["seeds"] += 1
        s["failed"] += not row["shown"]
        s["smallest_low"] = row["low"] if s["smallest_low"] is None else min(s["smallest_low"], row["low"])
    save("defence_flips", {"what": __doc__.split("\n\n")[0], "threads": 1,
                           "seconds": round(time.perf_counter() - t0, 1), "summary": summary, "runs": runs})
    for name, s in summary.items():
        print(f"{name}: {s['failed']} of {s['seeds']} seeds fail; smallest interval low {s['smallest_low']:.3f} "
              f"against {s['margin']:.3f}")


if __name__ == "__main__":
    main()
