"""Which settings change the weights a run trains: the same recipe twice, then with another thread
count and with oneDNN and ATen held to an older instruction set (what another CPU would pick).

Each case trains notebook 01's base A (``epochs`` epochs, the smoke recipe otherwise) in a fresh
process with an empty store and records the hash of its weights and its test accuracy. Equal
hashes mean bit-identical models. ``python benchmarks/bench_determinism.py``; the result is
``results/determinism.json`` (about 2 minutes on 2 cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import save  # noqa: E402

PROBE = """
import hashlib, json, sys, tempfile, torch
from lib.store import Store
from lib.artifacts.bases import base_model
from lib.studies import bases
m, meta = base_model("A", bases.recipe(epochs=int(sys.argv[1])), Store(tempfile.mkdtemp()), progress=False)
h = hashlib.sha256(b"".join(t.detach().contiguous().numpy().tobytes() for t in m.state_dict().values()))
print(json.dumps({"weights": h.hexdigest()[:16], "test_acc": meta["test_acc"], "threads": torch.get_num_threads()}))
"""
# name -> environment changes; "again" repeats "1 thread" in a new process
CASES = {"1 thread": {"OMP_NUM_THREADS": "1"}, "1 thread, again": {"OMP_NUM_THREADS": "1"},
         "2 threads": {"OMP_NUM_THREADS": "2"}, "2 threads, again": {"OMP_NUM_THREADS": "2"},
         "1 thread, oneDNN at AVX2": {"OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"},
         "1 thread, ATen at AVX2": {"OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2"}}


def main(epochs: int = 3) -> dict:
    root = Path(__file__).resolve().parent.parent
    runs = {}
    for name, env in CASES.items():
        out = subprocess.run([sys.executable, "-c", PROBE, str(epochs)], cwd=root, env={**os.environ, **env},
                             capture_output=True, text=True, check=True).stdout
        runs[name] = {**json.loads(out.strip().splitlines()[-1]), "env": env}
    same = lambda a, b: runs[a]["weights"] == runs[b]["weights"]
    result = {"what": f"notebook 01's base A, {epochs} epochs, empty store per case", "runs": runs,
              "repeatable": same("1 thread", "1 thread, again") and same("2 threads", "2 threads, again"),
              "thread_count_changes_weights": not same("1 thread", "2 threads"),
              "isa_changes_weights": not (same("1 thread", "1 thread, oneDNN at AVX2")
                                          and same("1 thread", "1 thread, ATen at AVX2"))}
    save("determinism", result)
    return {**result, "meets_goal": result["repeatable"]}


if __name__ == "__main__":
    main()
