"""Run the benchmarks (``make bench``); results land in ``benchmarks/results/*.json``.

``python benchmarks/run.py`` runs them all (the workbook timing runs every notebook twice: 20+
minutes on a 2-core CPU, the precision accuracy check trains 12 small models, and the flip rates
train notebooks 03's and 05's models at five seeds: about 50 minutes; the suite timing runs ``make test``
on a clean clone: about 25); ``--only precision fit`` picks some; ``--workbook-only 00`` restricts the
workbook timing's notebooks.
"""
import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import bench_ddp  # noqa: E402
import bench_determinism  # noqa: E402
import bench_fit  # noqa: E402
import bench_flip_rates  # noqa: E402
import bench_pgd  # noqa: E402
import bench_precision  # noqa: E402
import bench_precision_accuracy  # noqa: E402
import bench_synsigns  # noqa: E402
import bench_eval_layout  # noqa: E402
import bench_suite  # noqa: E402
import bench_workbook  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workbook-only", action="append", default=None, metavar="PREFIX")
    benches = {"synsigns": bench_synsigns.main, "fit": bench_fit.main, "pgd": bench_pgd.main,
               "precision": bench_precision.main, "precision_accuracy": bench_precision_accuracy.main,
               "ddp": bench_ddp.main, "eval_layout": bench_eval_layout.main, "determinism": bench_determinism.main,
               "flip_rates": lambda: bench_flip_rates.main([]), "suite": bench_suite.main, "workbook": None}
    ap.add_argument("--only", nargs="+", choices=sorted(benches), default=sorted(benches))
    args = ap.parse_args()
    benches["workbook"] = lambda: bench_workbook.main(args.workbook_only)
    results = {k: benches[k]() for k in benches if k in args.only}
    failed = [k for k, r in results.items() if not r["meets_goal"]]
    print("goals met" if not failed else f"goals missed: {failed}")
