"""Sweeps: many parameter sets of one notebook, each its own workbook run, submitted through submitit.

``python -m lib.workbook --sweep sweep.toml --executor local|slurm`` (``--resume`` reruns only the
failed or missing points). A sweep file (TOML, YAML or JSON)::

    name = "transfer-pairs"        # default: the file's stem; run folders are <name>-00, <name>-01, ...
    only = ["02"]                  # the notebook(s) each point runs (or --only on the command line)
    profile = "full"               # default: smoke
    parallel = 2                   # local executor: points at a time (default 1)
    timeout = 3600                 # optional: seconds per cell, as --timeout

    [params]                       # shared by every point
    transfer_epochs = 3

    [grid]                         # every combination of these lists (the order of the keys sets the order)
    transfer_arch = ["resnet18", "resnet50"]
    transfer_dataset = ["cifar10", "gtsrb"]

    [[points]]                     # and/or explicit parameter sets, after the grid's
    transfer_arch = "densenet121"

    [slurm]                        # submitit parameters for --executor slurm
    timeout_min = 240
    slurm_partition = "gpu"
    gpus_per_node = 1
    cpus_per_task = 8

Every point is validated against the study recipes (:func:`lib.studies.check_params`) before
anything is submitted. Each point runs ``python -m lib.workbook --name <name>-NN`` in its own job,
so it gets its own run folder ``runs/<profile>/<name>-NN/`` with its manifest (:mod:`lib.runs`).
The sweep's own record is ``runs/sweeps/<name>/sweep.json`` (points, parameters, job ids,
status, seconds) with ``summary.md``; submitit's job logs are under ``runs/sweeps/<name>/logs/``.

Re-submitting (``--resume``): a point whose run finished is skipped; a failed, interrupted or
killed one is continued in its run folder (``lib.workbook --resume``: finished notebooks are not
rerun) when its parameters are unchanged, and started again in a new folder (``<name>-NN-r2``)
when the sweep file now gives it other parameters (after fixing a bad value); a point whose job
is still queued or running is left alone.

Executors: ``slurm`` needs Slurm on this machine (``sbatch`` on ``PATH``); ``local`` (the default)
runs each point as a local process (submitit's ``LocalExecutor``), ``parallel`` at a time.

This module does not import :mod:`lib.workbook` (which imports it to run ``--sweep``): a job
starts ``python -m lib.workbook`` as a child process (:func:`run_point`), and the sweep file and
the notebook names are read here.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import runs
from .config import read_table
from .paths import ROOT

ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED")
NOTEBOOKS = ROOT / "notebooks"  # the workbook's notebooks, NN_<name>.ipynb (as lib.workbook.NOTEBOOKS)


class SweepError(ValueError):
    """A sweep file or request that cannot run; the message says what to change."""


@dataclass
class Sweep:
    name: str
    only: list[str]
    profile: str
    points: list[dict]
    parallel: int = 1
    timeout: int | None = None
    slurm: dict = field(default_factory=dict)


def expand(params: dict | None = None, grid: dict | None = None, points: list | None = None) -> list[dict]:
    """The parameter sets of a sweep: ``params`` merged into every combination of ``grid`` (in
    the order of its keys), then into every entry of ``points``."""
    params, grid, points = dict(params or {}), dict(grid or {}), list(points or [])
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid entry {key!r} must be a non-empty list of values, got {values!r}")
    out = [{**params, **dict(zip(grid, combo))} for combo in itertools.product(*grid.values())] if grid else []
    for i, p in enumerate(points):
        if not isinstance(p, dict):
            raise SweepError(f"points[{i}] must be a table of name = value, got {p!r}")
        out.append({**params, **p})
    return out


def notebooks(only: list[str]) -> list[Path]:
    """The workbook's notebooks (``notebooks/NN_*.ipynb``) whose names start with one of ``only``."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb") if any(p.name.startswith(o) for o in only))


def load(path: str, only: list[str] | None = None, profile: str | None = None) -> Sweep:
    """Read and validate a sweep file (``only``/``profile`` from the command line win)."""
    from .studies import check_params

    data = read_table(path, "sweep file")
    known = {"name", "only", "profile", "parallel", "timeout", "params", "grid", "points", "slurm"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SweepError(f"sweep file {path}: unknown entries {unknown}; valid: {sorted(known)}")
    name = str(data.get("name") or Path(path).stem)
    only = only or data.get("only")
    only = [only] if isinstance(only, str) else only
    if not only:
        raise SweepError(f"sweep file {path} must name its notebook(s): only = [\"02\"] (or pass --only 02)")
    if not notebooks([str(o) for o in only]):
        raise SweepError(f"no notebook matches only = {only}")
    profile = profile or data.get("profile", "smoke")
    if profile not in ("smoke", "full"):
        raise SweepError(f"profile must be smoke or full, got {profile!r}")
    points = expand(data.get("params"), data.get("grid"), data.get("points"))
    if not points:
        raise SweepError(f"sweep file {path} gives no points: add a [grid] table or [[points]] entries")
    for i, p in enumerate(points):
        try:
            points[i] = check_params(p, profile)
        except ValueError as err:
            raise SweepError(f"point {i} ({runs.short_json(p)}): {err}") from err
    parallel = data.get("parallel", 1)
    if not isinstance(parallel, int) or parallel < 1:
        raise SweepError(f"parallel must be a whole number >= 1, got {parallel!r}")
    return Sweep(name, [str(o) for o in only], profile, points, parallel, data.get("timeout"),
                 dict(data.get("slurm") or {}))


def slurm_available() -> bool:
    """True when this machine can submit Slurm jobs (``sbatch`` on ``PATH``)."""
    return shutil.which("sbatch") is not None


def make_executor(kind: str, folder: Path, sweep: Sweep):
    """A submitit executor writing its logs under ``folder``."""
    import submitit

    if kind == "slurm":
        if not slurm_available():
            raise SweepError("--executor slurm needs Slurm, but sbatch is not on PATH: run the sweep on the "
                             "cluster's login node, or use --executor local to run the points here")
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        ex.update_parameters(name=f"workbook-{sweep.name}", **sweep.slurm)
        return ex
    if kind != "local":
        raise SweepError(f"--executor must be local or slurm, got {kind!r}")
    ex = submitit.LocalExecutor(folder=str(folder))
    ex.update_parameters(timeout_min=int(sweep.slurm.get("timeout_min", 24 * 60)))
    return ex


def run_point(argv: list[str]) -> int:
    """The job of one point: ``python -m lib.workbook`` with ``argv``, a child process of the job
    (this Python, working folder the repository root, the repository on ``PYTHONPATH``); returns
    its exit code 0, raises when the run fails, so submitit records the job as failed. An interrupt
    of the job (submitit cancels a local job with SIGINT) is passed on to the run, which then
    records itself as interrupted, as it does on Ctrl-C."""
    env = dict(os.environ)
    others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(ROOT)]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *others])
    proc = subprocess.Popen([sys.executable, "-m", "lib.workbook", *argv], cwd=ROOT, env=env)
    try:
        code = proc.wait()
    except BaseException:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        raise
    if code != 0:
        raise RuntimeError(f"lib.workbook {' '.join(argv)} exited with {code}")
    return code


def _manifest(out: Path, profile: str, run: str) -> dict | None:
    path = out / profile / run / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _seconds(manifest: dict | None) -> float:
    return round(sum(nb.get("seconds", 0) for nb in (manifest or {}).get("notebooks", [])), 1)


def _alive(kind: str, job_id: str | None, logs: Path) -> bool:
    """Whether the job that ran a point is still queued or running."""
    if not job_id:
        return False
    if kind == "local":
        try:
            os.kill(int(job_id), 0)
            return True
        except (OSError, ValueError):
            return False
    import submitit

    try:
        return submitit.SlurmJob(folder=str(logs), job_id=job_id).state in ACTIVE
    except Exception:  # sacct unreachable: do not resubmit a point that may still run
        return True


def _plan(sweep: Sweep, out: Path, record: dict, resume: bool, logs: Path) -> list[dict]:
    """Each point's entry with ``todo``: None (skip), ``"fresh"`` or ``"continue"``."""
    old = {p["index"]: p for p in record.get("points", [])}
    plan = []
    for i, params in enumerate(sweep.points):
        prev = old.get(i, {})
        entry = {"index": i, "params": params, "run": prev.get("run", f"{sweep.name}-{i:02d}"),
                 "attempts": prev.get("attempts", []), "job_id": prev.get("job_id"),
                 "executor": prev.get("executor")}
        manifest = _manifest(out, sweep.profile, entry["run"])
        status = manifest["status"] if manifest else ("missing" if not (out / sweep.profile / entry["run"]).exists()
                                                      else "broken")
        if manifest is not None and not resume:
            raise SweepError(f"run folder {out / sweep.profile / entry['run']} exists: rerun failed points with "
                             f"--sweep ... --resume, or give the sweep another name")
        if status == "done" and manifest["parameters"] == params:
            entry.update(status="done", todo=None, seconds=_seconds(manifest))
        elif status in ("running", "missing") and _alive(entry["executor"] or "local", entry["job_id"], logs):
            entry.update(status="running" if manifest else "queued", todo=None)  # its job is still queued or running
        elif manifest is not None and manifest["parameters"] == params:
            entry.update(status=status, todo="continue")
        else:
            if manifest is not None or status == "broken":  # new parameters (or no manifest): a new folder
                entry["attempts"].append(entry["run"])
                entry["run"] = f"{sweep.name}-{i:02d}-r{len(entry['attempts']) + 1}"
            entry.update(status="missing", todo="fresh")
        plan.append(entry)
    return plan


def _argv(sweep: Sweep, entry: dict, out: Path, config: Path) -> list[str]:
    common = ["--profile", sweep.profile, "--out", str(out), "--quiet"]
    if sweep.timeout:
        common += ["--timeout", str(sweep.timeout)]
    if entry["todo"] == "continue":
        return ["--resume", entry["run"], *common]
    config.write_text(json.dumps(entry["params"], indent=1) + "\n")
    return ["--name", entry["run"], "--config", str(config), *common,
            *itertools.chain.from_iterable(("--only", o) for o in sweep.only)]


def summary(record: dict) -> str:
    """The points as a table: run folder, parameters, status, seconds, and the error of a failed one."""
    lines = [f"{'point':<5} {'run':<28} {'status':<11} {'seconds':>8}  parameters"]
    for p in record["points"]:
        lines.append(f"{p['index']:<5} {p['run']:<28} {p['status']:<11} {p.get('seconds', 0):>8.0f}  "
                     f"{runs.short_json(p['params'], 70)}")
        if p.get("error"):
            lines.append(f"{'':<5} error: {p['error']}")
    done = sum(p["status"] == "done" for p in record["points"])
    lines.append(f"{done} of {len(record['points'])} points done")
    return "\n".join(lines)


def _write(folder: Path, record: dict) -> None:
    runs.write_json(folder / "sweep.json", record)
    (folder / "summary.md").write_text(f"# Sweep {record['name']} ({record['profile']})\n\n```\n"
                                       f"{summary(record)}\n```\n")


def _finish(entry: dict, job, out: Path, profile: str) -> None:
    """Record a finished job's outcome from its run manifest (and the job's error, if any)."""
    error = None
    try:
        job.result()
    except Exception as err:  # submitit's FailedJobError carries the job's traceback
        lines = [line for line in str(err).splitlines() if line.strip()]
        error = lines[-1][-300:] if lines else type(err).__name__
    manifest = _manifest(out, profile, entry["run"])
    entry["status"] = manifest["status"] if manifest else "failed"
    if error and entry["status"] == "done":
        entry["status"] = "failed"
    failed_nb = next((nb for nb in (manifest or {}).get("notebooks", []) if nb.get("status") == "failed"), None)
    if failed_nb is not None:
        last = [line for line in failed_nb.get("error", "").splitlines() if line.strip()]
        error = f"{failed_nb['name']}: {last[-1][-300:] if last else 'failed'}"
    entry.update(seconds=_seconds(manifest), error=error if entry["status"] != "done" else None,
                 ended=runs.now())


def run(path: str, executor: str = "local", *, resume: bool = False, only: list[str] | None = None,
        profile: str | None = None, out: Path | None = None, parallel: int | None = None) -> int:
    """Submit the sweep in ``path`` and wait for its points; 0 when every point is done."""
    out = Path(out or ROOT / "runs").resolve()  # the points run in the repository root
    sweep = load(path, only, profile)
    if parallel:
        sweep.parallel = parallel
    folder = out / "sweeps" / sweep.name
    logs = folder / "logs"
    record_path = folder / "sweep.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record and not resume:
        raise SweepError(f"sweep {sweep.name!r} was submitted before ({record_path}): rerun its failed points "
                         f"with --resume, or set another name in the sweep file")
    plan = _plan(sweep, out, record, resume, logs)
    ex = make_executor(executor, logs, sweep)
    (folder / "points").mkdir(parents=True, exist_ok=True)
    record = {"name": sweep.name, "file": str(Path(path).resolve()), "profile": sweep.profile, "only": sweep.only,
              "executor": executor, "submitted": runs.now(), "points": plan}
    _write(folder, record)
    # the jobs import lib from this checkout, whatever their working folder
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    todo = [e for e in plan if e["todo"]]
    print(f"[sweep] {sweep.name}: {len(plan)} points, {len(todo)} to run ({executor} executor); "
          f"record {folder / 'sweep.json'}", flush=True)
    limit = sweep.parallel if executor == "local" else len(todo)
    waiting, running = list(todo), {}
    try:
        while waiting or running:
            while waiting and len(running) < limit:
                entry = waiting.pop(0)
                argv = _argv(sweep, entry, out, folder / "points" / f"{entry['run']}.json")
                job = ex.submit(run_point, argv)
                entry.update(status="submitted", job_id=str(job.job_id), executor=executor, argv=argv,
                             submitted=runs.now(), error=None)
                running[entry["index"]] = (entry, job)
                print(f"[sweep] point {entry['index']} -> {entry['run']} (job {job.job_id})", flush=True)
                _write(folder, record)
            for index, (entry, job) in list(running.items()):
                if job.done():
                    _finish(entry, job, out, sweep.profile)
                    del running[index]
                    print(f"[sweep] point {index} {entry['status']} after {entry.get('seconds', 0):.0f}s"
                          + (f": {entry['error']}" if entry.get("error") else ""), flush=True)
                    _write(folder, record)
            time.sleep(0.5 if running else 0)
    except KeyboardInterrupt:
        print(f"\n[sweep] stopped waiting; the submitted jobs keep running. Check or rerun failed points with: "
              f"python -m lib.workbook --sweep {path} --resume", file=sys.stderr)
        _write(folder, record)
        return 130
    for e in record["points"]:
        e.pop("todo", None)
    _write(folder, record)
    print(summary(record))
    failed = [e for e in record["points"] if e["status"] != "done"]
    if failed:
        print(f"[sweep] {len(failed)} point(s) not done; rerun them with: python -m lib.workbook --sweep {path} "
              f"--resume" + (f" --executor {executor}" if executor != "local" else ""), file=sys.stderr)
    return 1 if failed else 0
