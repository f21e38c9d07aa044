"""Run the workbook headless: every notebook in ``notebooks/`` in order, through papermill.

``python -m lib.workbook`` (what ``make workbook`` calls)::

    python -m lib.workbook                          # smoke profile, every notebook
    python -m lib.workbook -p base_epochs=20 --only 01 --only 02
    python -m lib.workbook --config my_study.toml --name my-study
    python -m lib.workbook --resume                 # continue the newest unfinished run
    python -m lib.workbook --fresh                  # retrain every model (same as -p retrain=True)
    python -m lib.workbook --no-reuse               # execute every notebook, even one an earlier run did as is
    python -m lib.workbook --jobs 2                 # two notebooks at a time (what make workbook does)
    python -m lib.workbook --sweep sweep.toml --executor slurm   # one run per parameter set (lib.sweep)
    python -m lib.workbook --sweep sweep.toml --resume           # rerun the sweep's failed points

``-p key=value`` sets one run parameter (values are Python literals; ``8/255`` is a float);
``--config`` reads them from a TOML, YAML or JSON file (``-p`` wins). Every name is checked
against the study recipes before anything runs (:func:`lib.studies.check_params`): an unknown
name or a value of the wrong type stops with one line. A parameter means one thing in every
notebook, and a notebook that asks for an earlier notebook's model asks with this run's recipe.

Each run writes ``runs/<profile>/<name>/`` (see :mod:`lib.runs`): executed notebooks, figures,
tables, ``manifest.json`` and ``index.md``. A whole run of the profile's recipes from committed
code is published to ``figures/`` with its manifest and ``docs/results.md`` (:mod:`lib.publish`);
any other run leaves them as they are and says why. A notebook that an earlier run of the profile
executed with the same code, recipes, inputs and stored models is not executed again: its outputs
are copied (:mod:`lib.reuse`; ``--no-reuse`` executes it). Cell progress and each notebook's output
(training and attack progress bars) stream to the terminal; a summary of seconds per notebook,
and how many of them trained models or computed stored results (:func:`lib.runs.time_profile`),
ends the run.
"""
from __future__ import annotations

import argparse
import ast
import datetime as _dt
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

from . import lab_browser, publish, reuse, runs
from .cli import OneLineParser, whole_number
from .config import RUN_FILE, read_table
from .paths import ROOT
from .notebook_run import run_notebook  # noqa: F401  (lib.workbook.run_notebook: tests and sweeps call it)
from .store.files import store_problem

NOTEBOOKS = ROOT / "notebooks"
WORKBOOK_PROFILES = ("smoke", "real", "full")  # real: the notebooks whose study has a real recipe (see select)


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The workbook's notebooks in run order (their names start with a two-digit number)."""
    found = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in found if not only or any(p.name.startswith(o) for o in only)]


def parameter_names(path: Path) -> list[str]:
    """The names assigned in a notebook's ``parameters`` cell."""
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return [t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)]
    return []


def _literal(value: str, key: str = "value"):
    """A ``-p`` value: ``8/255`` as a float (a budget in the units people write), else a Python
    literal, else the text itself (a name)."""
    if re.fullmatch(r"\s*[\d.]+\s*/\s*[\d.]+\s*", value):
        num, den = value.split("/")
        try:
            return float(num) / float(den)
        except (ValueError, ZeroDivisionError):
            from .config import ConfigError
            raise ConfigError(f"-p {key}={value}: not a number like 8/255") from None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="workbook", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       hint="python -m lib.workbook --help lists the options")
    ap.add_argument("--profile", default=None, choices=WORKBOOK_PROFILES, help="default: smoke")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--config", default=None, metavar="FILE", help="TOML, YAML or JSON run parameters")
    ap.add_argument("--only", action="append", default=None, metavar="PREFIX")
    ap.add_argument("--name", default=None, help="run folder name (default: a UTC timestamp)")
    ap.add_argument("--resume", nargs="?", const="", default=None, metavar="NAME",
                    help="continue a run (default: the newest unfinished one), skipping finished notebooks")
    ap.add_argument("--fresh", action="store_true", help="retrain every model and recompute every result")
    ap.add_argument("--no-reuse", action="store_true",
                    help="execute every notebook, even one an earlier run executed with the same code, recipes, "
                         "inputs and stored models (by default its outputs are copied: lib.reuse)")
    ap.add_argument("--dry-run", action="store_true",
                    help="with --profile full: every notebook's code path on fixtures, random weights and "
                         "one or two batches and attack steps, asserts reported (lib.dryrun)")
    ap.add_argument("--out", default=str(ROOT / "runs"))
    ap.add_argument("--timeout", type=whole_number(1), default=None, help="seconds per cell")
    ap.add_argument("--quiet", action="store_true", help="one line per notebook instead of streamed output")
    ap.add_argument("--jobs", type=whole_number(1), default=1, metavar="N",
                    help="notebooks at a time, each after the notebooks whose models it uses (lib.studies."
                         "notebook_needs), with OMP_NUM_THREADS shared out between them (make workbook: 2)")
    ap.add_argument("--list-params", action="store_true", help="print every parameter with its recipe values")
    ap.add_argument("--sweep", default=None, metavar="FILE",
                    help="run every parameter set of a sweep file, each as its own run (see lib.sweep)")
    ap.add_argument("--executor", default="local", choices=["local", "slurm"],
                    help="with --sweep: local processes, or Slurm jobs through submitit")
    ap.add_argument("--parallel", type=whole_number(1), default=None, metavar="N",
                    help="with --sweep --executor local: points at a time (default: the file's, else 1)")
    return ap


def list_params() -> str:
    """Every run parameter: its notebook, the recipe key it sets and the smoke / real / full values
    (``-`` where the profile's recipe lacks the key, ``(none)`` where the study has no real recipe)."""
    from .studies import RUN_PARAMS, parameters, study_modules

    modules = study_modules()
    lines = [f"{'parameter':<26} {'notebook':<8} {'smoke':<22} {'real':<22} full"]
    lines += [f"{name:<26} {'all':<8} {text}" for name, text in RUN_PARAMS.items()]
    for p in parameters().values():
        table = modules[p.notebook].RECIPE

        def show(prof):
            if prof not in table:
                return "(none)"
            return runs.short_json(table[prof][p.key], 20) if p.key in table[prof] else "-"
        lines.append(f"{p.name:<26} {p.notebook:<8} {show('smoke'):<22} {show('real'):<22} {show('full')}")
    return "\n".join(lines)



def configure(args) -> tuple[str, dict]:
    """The run's profile and validated parameters from ``--config`` and ``-p`` (or ConfigError)."""
    from .studies import ConfigError, check_params

    params = read_table(args.config, "config file") if args.config else {}
    for kv in args.param:
        key, sep, value = kv.partition("=")
        if not sep:
            raise ConfigError(f"-p {kv!r} must be KEY=VALUE")
        params[key.strip()] = _literal(value.strip(), key.strip())
    if args.fresh:
        params["retrain"] = True
    profile = args.profile or params.get("profile", "smoke")
    if profile not in WORKBOOK_PROFILES:
        raise ConfigError(f"profile must be one of {', '.join(WORKBOOK_PROFILES)}, got {profile!r}")
    return profile, check_params(params, profile)


def select(only: list[str] | None, profile: str = "smoke") -> list[Path]:
    """The notebooks ``--only`` names: each entry a notebook's number (``03``) or the start of its
    file name (at least two characters); one that names no notebook is a ConfigError (``--only 0``
    would otherwise match all eight). A notebook whose study has no recipe for ``profile`` is a
    ConfigError too, naming the ones that have: it would otherwise run its smoke recipe unsaid."""
    from .studies import ConfigError, without_recipe

    every = notebooks(None)
    for prefix in only or []:
        if len(prefix) < 2 or not any(p.name.startswith(prefix) for p in every):
            raise ConfigError(f"--only {prefix!r} names no notebook; give a notebook's number "
                              f"({', '.join(p.name[:2] for p in every)}) or the start of its file name")
    todo = notebooks(only)
    lacking = without_recipe(profile, [p.name[:2] for p in every])
    missing = [p.name[:2] for p in todo if p.name[:2] in lacking]
    if missing:
        have = [p.name[:2] for p in every if p.name[:2] not in lacking]
        raise ConfigError(f"notebooks {', '.join(missing)} have no {profile!r} recipe yet (issue 35); "
                          f"run the others: {' '.join('--only ' + n for n in have)}")
    return todo


def unused_params(params: dict, todo: list[Path]) -> list[str]:
    """The run parameters that set the recipe of a notebook that neither runs (``todo``) nor is
    used by one that runs (:func:`lib.studies.notebook_needs`): they change nothing in this run."""
    from .studies import notebook_needs, parameters

    running = {p.name[:2] for p in todo}
    used = running | {n for r in running for n in notebook_needs().get(r, ())}
    known = parameters()
    return [name for name in params if name in known and known[name].notebook not in used]


def _resumed(args, out_root: Path) -> dict:
    """The manifest of the run ``--resume`` continues, its parameters checked again (a manifest is
    a file a user can edit); ConfigError when there is none or it is not a run's."""
    from .studies import ConfigError, check_params

    if args.param or args.config:
        raise ConfigError("--resume continues a run with its own parameters; drop -p/--config")
    prof = args.profile or "smoke"
    if args.resume:
        folder = out_root / prof / runs.plain_name(args.resume, "--resume")
    else:
        folder = runs.latest_unfinished(out_root, prof, warn=lambda m: print(f"workbook: {m}", file=sys.stderr))
    if folder is None or not (folder / "manifest.json").is_file():
        raise ConfigError(f"no unfinished {prof} run to resume under {out_root / prof}")
    manifest = runs.read_manifest(folder / "manifest.json")
    if manifest["profile"] not in WORKBOOK_PROFILES:
        raise ConfigError(f"{folder / 'manifest.json'}: profile must be one of {', '.join(WORKBOOK_PROFILES)}, "
                          f"got {manifest['profile']!r}")
    if not isinstance(manifest["parameters"], dict):
        raise ConfigError(f"{folder / 'manifest.json'}: parameters must be a table")
    try:
        manifest["parameters"] = check_params(manifest["parameters"], manifest["profile"])
    except ConfigError as err:
        raise ConfigError(f"{folder / 'manifest.json'}: {err}") from None
    manifest["folder"] = str(folder)
    return manifest


def _summary(rows: list[dict], wall: float | None = None, jobs: int = 1) -> str:
    """Seconds per notebook and where they went (:func:`lib.runs.time_profile`), with a total
    and, for ``--jobs`` above 1, the run's wall-clock seconds (less than the notebooks' sum)."""
    width = max([len(r["name"]) for r in rows] + [8])
    cols = ("train", "compute", "other")
    lines = [f"{'notebook':<{width}}  {'status':<12} {'seconds':>8}" + "".join(f" {c:>8}" for c in cols)]
    for r in rows:
        t = r.get("time", {})
        status = "reused" if r.get("reused") else r["status"]
        lines.append(f"{r['name']:<{width}}  {status:<12} {r.get('seconds', 0):>8.0f}"
                     + "".join(f" {t[c]:>8.0f}" if c in t else f" {'':>8}" for c in cols))
    sums = [sum(r.get("time", {}).get(c, 0) for r in rows) for c in cols]
    lines.append(f"{'total':<{width}}  {'':<12} {sum(r.get('seconds', 0) for r in rows):>8.0f}"
                 + "".join(f" {v:>8.0f}" for v in sums))
    if wall is not None and jobs > 1:
        from .studies import notebook_needs
        lines.append(f"{'wall clock':<{width}}  {f'{jobs} at a time':<12} {wall:>8.0f}")
        path = runs.critical_path(rows, notebook_needs())
        lines.append("critical path: " + " -> ".join(f"{e['name'][:2]} ({e['seconds']:.0f} s)" for e in path)
                     + f", {sum(e['seconds'] for e in path):.0f} s of the wall clock")
    return "\n".join(lines)


def run_threads() -> int:
    """The threads a run may use: ``OMP_NUM_THREADS`` when set (a number), else every core."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 0) or os.cpu_count() or 1)
    except ValueError:
        return os.cpu_count() or 1


def _execute(path: str, parameters: dict, folder: str, env: dict, timeout: int | None, log_output: bool,
             tagged: bool = False) -> dict:
    """Run one notebook with ``env`` added to this process's environment (the kernel inherits
    it); ``{"status", "seconds"}`` and ``error`` when it failed. A top-level function so that
    ``--jobs`` can run it in a worker process; ``tagged`` prefixes streamed lines with the
    notebook's number there, since two notebooks' output then interleaves."""
    os.environ.update(env)
    if tagged and log_output:
        logging.basicConfig(level=logging.INFO, format=f"[{Path(path).name[:2]}] %(message)s", stream=sys.stdout,
                            force=True)
    t0 = time.perf_counter()
    try:
        run_notebook(Path(path), parameters, Path(folder), timeout=timeout, log_output=log_output)
    except Exception as err:  # papermill raises PapermillExecutionError with the cell's traceback
        return {"status": "failed", "error": str(err)[-2000:], "seconds": round(time.perf_counter() - t0, 1)}
    return {"status": "done", "seconds": round(time.perf_counter() - t0, 1)}


def _parallel(todo: list[dict], every: list[dict], jobs: int, launch, finished, failed, seconds=None) -> None:
    """Run ``todo`` (manifest entries) ``jobs`` at a time in worker processes (a kernel inherits
    its worker's environment, so each gets its share of ``OMP_NUM_THREADS``), each once
    every notebook it needs (:func:`lib.studies.notebook_needs`) among ``every`` is done; a notebook
    that no longer can run (one it needs failed) stays pending for ``--resume``. After a
    failure nothing new starts, and those running finish."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from .studies import notebook_needs

    needs = notebook_needs()
    in_run = {e["name"][:2]: e for e in every}
    waiting, running = list(todo), {}

    def ready(entry):
        return all(in_run[n]["status"] == "done" for n in needs.get(entry["name"][:2], ()) if n in in_run)

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        try:
            while waiting or running:
                ready_now = [e for e in waiting if ready(e)] if not failed() else []
                for entry in runs.start_order(ready_now, waiting, needs, seconds):
                    if len(running) == jobs:
                        break
                    waiting.remove(entry)
                    running[pool.submit(_execute, *launch(entry))] = entry
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    entry, err = running.pop(future), future.exception()
                    if err is not None:  # the worker itself died (killed, out of memory)
                        since = time.time() - _dt.datetime.fromisoformat(entry["started"]).timestamp()
                        result = {"status": "failed", "error": f"worker process: {err!r}", "seconds": round(since, 1)}
                    finished(entry, future.result() if err is None else result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _sweep(args) -> int:
    from . import sweep
    from .studies import ConfigError

    if args.param or args.config or args.name or args.fresh or (args.resume not in (None, "")):
        print("workbook: --sweep takes its parameters from the sweep file; drop -p/--config/--name/--fresh "
              "(--resume takes no name with --sweep)", file=sys.stderr)
        return 2
    try:
        return sweep.run(args.sweep, args.executor, resume=args.resume is not None, only=args.only,
                         profile=args.profile, out=Path(args.out), parallel=args.parallel)
    except (sweep.SweepError, ConfigError, FileNotFoundError) as err:
        print(f"workbook: {err}", file=sys.stderr)
        return 2


def _publish(folder: Path, manifest: dict) -> None:
    """Publish a whole run of the profile's recipes from committed code to ``figures/`` (see
    :mod:`lib.publish`), or say why ``figures/`` was left as it is."""
    if manifest["status"] != "done":
        return
    reason = publish.why_not(manifest, notebooks(None))
    if reason:
        print(f"[workbook] figures/ left as it is: {reason}; only a whole run of the {manifest['profile']} "
              "recipes from committed code is published", flush=True)
        return
    said = lab_browser.readme_shot(folder, manifest)  # the README's picture of the lab, from this run
    if said:
        print(f"[workbook] {said}", flush=True)
    top = publish.publish(folder, manifest)
    print(f"[workbook] published to {top} and {publish.results_doc(manifest['profile'])}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from .studies import ConfigError, notebook_needs, run_config_for

    args = _parser().parse_args(argv)
    if args.list_params:
        print(list_params())
        return 0
    if args.sweep:
        return _sweep(args)
    out_root = Path(args.out)
    try:
        if args.resume is not None:
            manifest = _resumed(args, out_root)
            folder = Path(manifest["folder"])
            profile, params = manifest["profile"], manifest["parameters"]
            own = {} if manifest.get("dry_run") else params
        else:
            profile, params = configure(args)
            manifest, own = None, params
            if args.dry_run:
                from . import dryrun
                params = dryrun.run_params(profile, params)
        todo = select(args.only if manifest is None else manifest.get("only"), profile)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"workbook: {err}", file=sys.stderr)
        return 2
    dry = bool(args.dry_run if manifest is None else manifest.get("dry_run"))
    problem = None if dry else store_problem()  # a dry run writes its own store, in its run folder
    if problem:
        print(f"workbook: the store: {problem}", file=sys.stderr)
        return 2
    unused = unused_params(own, todo)  # a dry run's shrunk budgets are not the user's
    if unused:
        print(f"workbook: warning: {', '.join(unused)} set recipes of notebooks this run does not run or use "
              f"(--only {' '.join(args.only or [])}); they change nothing here", file=sys.stderr)
    if manifest is None:
        try:
            folder = runs.new_run_dir(out_root, profile, args.name)
        except (FileExistsError, ValueError) as err:
            print(f"workbook: {err}", file=sys.stderr)
            return 2
        except OSError as err:
            print(f"workbook: cannot make a run folder under {out_root}: {err.strerror or err}", file=sys.stderr)
            return 2
        manifest = {"run": folder.name, "folder": str(folder), "profile": profile, "parameters": params,
                    "only": args.only, "recipes": {}, "git": runs.git_info(), "packages": runs.packages(),
                    "device": runs.device_info(), "started": runs.now(), "ended": None, "status": "running",
                    "notebooks": [{"name": nb.name, "status": "pending"} for nb in todo], "store": [],
                    "jobs": args.jobs, "code": publish.code_versions(todo), "dry_run": dry}
    else:
        manifest.update(status="running", resumed=manifest.get("resumed", []) + [runs.now()])
    if dry:
        from . import dryrun
        print(f"[workbook] {dryrun.BANNER.format(profile=profile)}", flush=True)
        os.environ.update(dryrun.prepare(folder / "dry_run", profile))  # the kernels inherit it
    try:
        run = run_config_for(profile, params, run=manifest["run"], folder=str(folder),
                             figures=str(folder / "figures"), tables=str(folder / "tables"),
                             store_log=str(folder / "store_log.jsonl"), dry_run=dry)
    except ConfigError as err:  # a cross-key rule of a study's recipe
        print(f"workbook: {err}", file=sys.stderr)
        return 2
    run.write(folder / RUN_FILE)  # what each notebook gets as its run_config parameter
    manifest["recipes"] = run.recipes
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    print(f"[workbook] {profile} run {manifest['run']} -> {shown}", flush=True)

    def save_manifest():
        manifest["store"] = runs.store_entries(folder)
        runs.write_json(folder / "manifest.json", manifest)

    save_manifest()
    jobs = max(1, args.jobs)
    names = [e["name"] for e in manifest["notebooks"]]
    width = len(str(len(names)))
    status, code, t_run = "done", 0, time.perf_counter()

    def launch(entry):
        nb = NOTEBOOKS / entry["name"]
        env = {}
        if jobs > 1:  # share the cores out: N kernels of one thread beat one of N on short ops
            env["OMP_NUM_THREADS"] = str(max(1, run_threads() // jobs))
        entry.update(status="running", started=runs.now())
        save_manifest()
        print(f"[{names.index(nb.name) + 1:>{width}}/{len(names)}] {nb.name} ...", flush=True)
        return (str(nb), {"run_config": str(folder / RUN_FILE)}, str(folder), env, args.timeout, not args.quiet,
                jobs > 1)

    def finished(entry, result):
        nonlocal status, code
        entry.update(result, ended=runs.now())
        entry.update(time=runs.time_profile(runs.store_entries(folder), entry["name"], entry["seconds"],
                                            since=entry["started"]),
                     slowest_cells=runs.cell_seconds(folder / entry["name"]))
        i = f"[{names.index(entry['name']) + 1:>{width}}/{len(names)}]"
        if entry["status"] == "done":
            entry["executed"] = entry["name"]
            reuse.record(entry, folder)  # the store files it used, as they are now
            print(f"{i} {entry['name']} done in {entry['seconds']:.0f}s", flush=True)
        else:
            print(f"{i} {entry['name']} FAILED after {entry['seconds']:.0f}s; executed copy with the "
                  f"error: {folder / entry['name']}\n{entry['error']}", file=sys.stderr)
            status, code = "failed", 1
        save_manifest()

    try:
        for entry in manifest["notebooks"]:
            if entry["status"] == "done":
                print(f"[{names.index(entry['name']) + 1:>{width}}/{len(names)}] {entry['name']} done in an "
                      "earlier attempt; skipped", flush=True)
        try:
            reused = reuse.apply(manifest, folder, out_root, NOTEBOOKS, notebook_needs(), use=not args.no_reuse)
        except Exception as err:  # reuse only saves time: an entry is marked done only once copied
            print(f"[workbook] warning: reusing earlier runs stopped ({err!r}); executing the rest", flush=True)
            reused = [e for e in manifest["notebooks"] if e.get("reused") and e["status"] == "done"]
        for entry in reused:
            print(f"[{names.index(entry['name']) + 1:>{width}}/{len(names)}] {entry['name']} reused from run "
                  f"{entry['reused']['run']} (same code, recipes, inputs and stored models; --no-reuse "
                  "executes it)", flush=True)
        save_manifest()
        todo_entries = [e for e in manifest["notebooks"] if e["status"] != "done"]
        if jobs == 1:
            for entry in todo_entries:
                finished(entry, _execute(*launch(entry)))
                if status == "failed":
                    break
        else:
            _parallel(todo_entries, manifest["notebooks"], jobs, launch, finished, lambda: status == "failed",
                      runs.published_seconds(profile))
    except KeyboardInterrupt:
        for entry in manifest["notebooks"]:
            if entry["status"] == "running":
                entry["status"] = "interrupted"
        status, code = "interrupted", 130
        print(f"\n[workbook] interrupted; continue with: python -m lib.workbook --resume {manifest['run']}"
              + (f" --profile {profile}" if profile != "smoke" else ""), file=sys.stderr)
    finally:
        attempts = manifest.get("attempt_seconds", []) + [round(time.perf_counter() - t_run, 1)]
        manifest.update(status=status, ended=runs.now(), jobs=jobs, attempt_seconds=attempts)
        save_manifest()
        runs.write_index(folder, manifest)
    _publish(folder, manifest)
    print(_summary(manifest["notebooks"], manifest["attempt_seconds"][-1], jobs))
    print(f"[workbook] {status}; run folder {shown} (manifest.json, index.md)", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
