"""Where the full profile's dry run spends its time, below the notebooks' own train / compute /
other split: a sampling profile of every kernel, summed into named kinds of work.

``python benchmarks/profile_dry_run.py`` runs ``python -m lib.workbook --profile full --dry-run
--jobs 2`` under py-spy (``pip install py-spy``; not a project requirement: only this benchmark
uses it) with ``--subprocesses``, keeps the samples taken while a notebook cell ran (the kernels'
idle threads are left out) and writes ``results/dry_run_profile.json``: per kind of work (a stack
frame that names it, :data:`KINDS`) the seconds whose samples pass through it, and the run's
manifest split per notebook. ``--folded FILE --run DIR`` summarises an earlier recording instead.

Why py-spy: it samples the kernels papermill starts without changing their code, which
``cProfile`` cannot do from outside, and its folded output is a plain text file.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

from common import save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RATE = 25  # samples per second
# kind of work -> a substring of the stack frame that does it (a sample counts for every kind it passes)
KINDS = {
    "convolution forward": "_conv_forward",
    "autograd backward": "_engine_run_backward",
    "imports": "_find_and_load",
    "torchvision init before weights load": "torchvision_net (lib/models/archs.py",
    "global weight sort (lib.backdoor.smallest)": "smallest (lib/backdoor/pruning.py",
    "PackNet per-layer prune": "_prune_smallest (lib/continual/ownership.py",
    "channels-last switch": "channels_last_while",
    "figures (savefig)": "savefig",
    "training checkpoints (torch.save)": "FitCheckpoint.save",
    "model fingerprints": "model_fingerprint",
    "store writes (safetensors)": "save_file (safetensors",
}


def summarise(folded: Path) -> dict:
    """Seconds per :data:`KINDS` entry over the samples taken inside a notebook cell."""
    kinds, cells = collections.Counter(), 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "run_cell" not in stack:  # an idle kernel thread, the runner or papermill itself
            continue
        n = int(count)
        cells += n
        for kind, frame in KINDS.items():
            if frame in stack:
                kinds[kind] += n
    return {"cell_seconds": round(cells / RATE, 1),
            "kinds_seconds": {k: round(kinds[k] / RATE, 1) for k in KINDS}}


def notebooks(run: Path) -> dict:
    manifest = json.loads((run / "manifest.json").read_text())
    started, ended = (datetime.fromisoformat(manifest[k]) for k in ("started", "ended"))
    return {"commit": manifest.get("git", {}).get("commit"),
            "wall_seconds": round((ended - started).total_seconds(), 1),
            "notebooks": {nb["name"]: {"seconds": nb.get("seconds"), **nb.get("time", {})}
                          for nb in manifest["notebooks"]}}


def record(out: Path) -> tuple[Path, Path]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    folded = out / "dry_run.folded"
    cmd = [spy, "record", "--subprocesses", "-r", str(RATE), "-f", "raw", "-o", str(folded), "--",
           sys.executable, "-m", "lib.workbook", "--profile", "full", "--dry-run", "--jobs", "2", "--quiet",
           "--name", "profile", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    return folded, out / "full" / "profile"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folded", type=Path, help="a py-spy raw recording of a dry run (with --run)")
    ap.add_argument("--run", type=Path, help="that dry run's folder (its manifest.json)")
    a = ap.parse_args(argv)
    if a.folded is None:
        folded, run = record(Path(tempfile.mkdtemp(prefix="dry_profile_")))
    else:
        folded, run = a.folded, a.run
    save("dry_run_profile", {"sampler": f"py-spy at {RATE} Hz, every kernel", **notebooks(run), **summarise(folded)})


if __name__ == "__main__":
    main()
