"""Run the workbook headless: every notebook in ``notebooks/`` in order, through papermill.

``python -m lib.workbook`` (what ``make workbook`` calls) writes executed copies to ``runs/`` and
the figures and tables the notebooks save to ``figures/``, printing one line per notebook.
``-p key=value`` passes papermill parameters to every notebook (values parsed as Python
literals when they can be), ``--only 01`` runs the notebooks whose name starts with ``01``.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from pathlib import Path

from .paths import ROOT, figures_dir

NOTEBOOKS = ROOT / "notebooks"


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The workbook's notebooks in run order (their names start with a two-digit number)."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not only or any(p.name.startswith(o) for o in only)]


def run_notebook(path: Path, parameters: dict | None = None, out_dir: Path | None = None,
                 timeout: int | None = None) -> Path:
    """Execute one notebook with papermill; returns the path of the executed copy."""
    import papermill as pm

    out_dir = Path(out_dir or ROOT / "runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    # the kernel inherits this environment: make `import lib` work whatever the kernel's cwd
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    pm.execute_notebook(str(path), str(out), parameters=parameters or {}, kernel_name="python3",
                        cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
    return out


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="smoke", choices=["smoke", "full"])
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--only", action="append", default=None, metavar="PREFIX")
    ap.add_argument("--out", default=str(ROOT / "runs"))
    args = ap.parse_args(argv)
    params = {"profile": args.profile}
    for kv in args.param:
        key, _, value = kv.partition("=")
        params[key] = _literal(value)
    todo = notebooks(args.only)
    if not todo:
        print("no notebooks matched", file=sys.stderr)
        return 1
    total = time.perf_counter()
    for i, nb in enumerate(todo, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(todo)}] {nb.name} ...", flush=True)
        try:
            out = run_notebook(nb, params, Path(args.out))
        except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
            print(f"[{i}/{len(todo)}] {nb.name} FAILED after {time.perf_counter() - t0:.0f}s; "
                  f"executed copy with the error: {Path(args.out) / nb.name}\n{err}", file=sys.stderr)
            return 1
        shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
        print(f"[{i}/{len(todo)}] {nb.name} done in {time.perf_counter() - t0:.0f}s -> {shown}",
              flush=True)
    print(f"workbook done in {time.perf_counter() - total:.0f}s; figures and tables in {figures_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
