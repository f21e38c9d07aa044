"""Shared bits of the benchmarks: machine description and result files."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

# this checkout's lib, whatever checkout the venv's workbook.pth names (some benchmarks do not put it on
# sys.path themselves, and machine() below needs it)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lib.runs import cpu_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The machine a benchmark ran on: the CPU as :func:`lib.runs.cpu_info` names it (model, family
    and model numbers, SIMD extensions: the CI kind has varied between AVX-512 and AVX2-only EPYCs that
    share a model name), cores, threads, torch, python, the GPU."""
    info = {**cpu_info(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def save(name: str, result: dict) -> Path:
    """Write ``results/<name>.json`` (atomically) with the machine it ran on, and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), **result}
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    print(json.dumps(payload, indent=2))
    return path
