"""Run every benchmark (``make bench``); results land in ``benchmarks/results/*.json``."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import bench_fit  # noqa: E402
import bench_pgd  # noqa: E402
import bench_synsigns  # noqa: E402

if __name__ == "__main__":
    results = {"synsigns": bench_synsigns.main(), "fit": bench_fit.main(), "pgd": bench_pgd.main()}
    failed = [k for k, r in results.items() if not r["meets_goal"]]
    print("goals met" if not failed else f"goals missed: {failed}")
