"""GPU check for whoever has one: ``make gpu-check``.

On a machine with CUDA it runs, each from an empty temporary store (never ``data/store``, so no
GPU-trained model is handed to a CPU run, and never publishing to ``figures/``):

1. the smoke workbook (every notebook, one at a time), and
2. the full profile's dry run (:mod:`lib.dryrun`: its ImageNet architectures at 224 px on fixtures,
   random weights, one or two batches per loop),

while a thread samples ``nvidia-smi`` (GPU utilisation and memory used, every half second). It
writes ``benchmarks/results/gpu_check.json``: seconds per notebook and where they went (training,
computing stored results, the rest), peak GPU memory and utilisation while each notebook ran (mean,
and the share of samples at 50% or more: training and attacks are most of every notebook), and
whether ``fit`` used bf16 autocast and channels-last there (its defaults on CUDA,
:func:`lib.train.resolve_precision`). On a machine without CUDA it says so in one line and exits 0.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSES = {"smoke": [], "full_dry_run": ["--profile", "full", "--dry-run"]}


class Sampler(threading.Thread):
    """``nvidia-smi`` samples ``(unix time, utilisation %, memory used MiB)`` every ``interval`` s."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stop = interval, [], threading.Event()

    def run(self):
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self.stop.is_set():
            try:
                util, mem = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.split(",")[:2]
                self.samples.append((time.time(), float(util), float(mem)))
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
            self.stop.wait(self.interval)

    def between(self, start: float, end: float) -> dict:
        got = [s for s in self.samples if start <= s[0] <= end]
        if not got:
            return {"samples": 0}
        util = [s[1] for s in got]
        return {"samples": len(got), "util_mean": round(sum(util) / len(util), 1),
                "util_at_least_50": round(sum(u >= 50 for u in util) / len(util), 3),
                "peak_memory_mib": max(s[2] for s in got)}


def _stamp(text: str | None) -> float:
    return dt.datetime.fromisoformat(text).timestamp() if text else time.time()


def run_pass(name: str, args: list[str], work: Path, sampler: Sampler) -> dict:
    env = {**os.environ, "WORKBOOK_STORE": str(work / name / "store"), "WORKBOOK_FIGURES": str(work / name / "fig"),
           "WORKBOOK_DOCS": str(work / name / "docs")}
    cmd = [sys.executable, "-m", "lib.workbook", "--quiet", "--jobs", "1", "--name", name, "--out", str(work), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    profile = "full" if "--profile" in args else "smoke"
    manifest = json.loads((work / profile / name / "manifest.json").read_text())
    notebooks = {nb["name"]: {"status": nb["status"], "seconds": nb.get("seconds"), "time": nb.get("time"),
                              "gpu": sampler.between(_stamp(nb.get("started")), _stamp(nb.get("ended")))}
                 for nb in manifest["notebooks"]}
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "status": manifest["status"],
            "wall_seconds": round(time.perf_counter() - t0, 1), "notebooks": notebooks,
            "error_tail": proc.stderr[-1500:] if proc.returncode else ""}


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}); nothing measured")
        return 0
    from common import save

    from lib.train import resolve_precision
    amp, channels_last = resolve_precision(torch.device("cuda"), None, None)
    if shutil.which("nvidia-smi") is None:
        print("gpu-check: nvidia-smi not found; utilisation and memory are not sampled", file=sys.stderr)
    sampler = Sampler()
    sampler.start()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        passes = {name: run_pass(name, args, Path(tmp), sampler) for name, args in PASSES.items()}
    sampler.stop.set()
    save("gpu_check", {"device": torch.cuda.get_device_name(0), "fit_bf16_autocast": amp,
                       "fit_channels_last": channels_last, "passes": passes})
    return 0 if all(p["returncode"] == 0 for p in passes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
