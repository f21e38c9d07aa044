"""Running one notebook headless with papermill (:func:`run_notebook`), as ``make workbook`` and the
tests do: the kernel finds ``lib`` whatever its folder, builds no explorer widgets
(:data:`lib.stall.HEADLESS_ENV`) and is watched for wedges (:mod:`lib.stall`)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

from .paths import ROOT
from .stall import HEADLESS_ENV, STALL_ENV, KernelWatch


def run_notebook(path: Path, parameters: dict | None = None, out_dir: Path | None = None,
                 timeout: int | None = None, log_output: bool = False) -> Path:
    """Execute one notebook with papermill; returns the path of the executed copy.

    ``log_output``: stream cell progress and the cells' output to the terminal. A kernel that
    goes idle while papermill still waits (:mod:`lib.stall`) is killed and the notebook run once
    more."""
    import papermill as pm

    out_dir = Path(out_dir or ROOT / "runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    # the kernel inherits this environment: make `import lib` work whatever the kernel's cwd
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with headless():
        return _run_watched(pm, path, out, parameters, timeout, log_output)


def headless():
    """``WORKBOOK_HEADLESS=1`` for the kernels started inside (explorers then print a line instead of
    sliders, :mod:`lib.widgets`); the environment as it was afterwards, so that a JupyterLab started
    later by the same process shows them."""
    return mock.patch.dict(os.environ, {HEADLESS_ENV: "1"})


def _run_watched(pm, path: Path, out: Path, parameters: dict | None, timeout: int | None, log_output: bool) -> Path:
    """papermill with the stall watchdog: run once more when the kernel wedged (:mod:`lib.stall`)."""
    for attempt in (1, 2):
        with KernelWatch() as watch:  # a kernel idle while papermill waits is wedged: see lib.stall
            try:
                pm.execute_notebook(str(path), str(out), parameters=parameters or {}, kernel_name="python3",
                                    cwd=str(path.parent), progress_bar=log_output, log_output=log_output,
                                    execution_timeout=timeout)
                return out
            except Exception as err:
                if watch.stalled is None:
                    raise
                if attempt == 2:
                    raise RuntimeError(f"{path.name}: {watch.stalled}, twice; rerun it (--resume), or set "
                                       f"{STALL_ENV}=0 if a cell really waits that long without computing") from err
                print(f"{path.name}: {watch.stalled}; running it again (the store keeps what it finished)",
                      file=sys.stderr, flush=True)
