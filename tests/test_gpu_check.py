"""``make gpu-check`` (benchmarks/gpu_check.py): one line and exit 0 where there is no CUDA device,
and its utilisation summary over a notebook's time window."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_without_cuda_it_says_so_in_one_line_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA device") and "nothing measured" in lines[0]


def test_sampler_summarises_the_samples_inside_a_window():
    from gpu_check import Sampler
    s = Sampler()
    s.samples = [(10.0, 0.0, 100.0), (11.0, 80.0, 900.0), (12.0, 60.0, 800.0), (20.0, 100.0, 5000.0)]
    got = s.between(10.5, 12.5)
    assert got == {"samples": 2, "util_mean": 70.0, "util_at_least_50": 1.0, "peak_memory_mib": 900.0}
    assert s.between(30, 40) == {"samples": 0}
