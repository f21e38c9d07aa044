"""Reuse a notebook's executed copy, figures and tables from an earlier run when nothing it reads
has changed, instead of executing it again.

With every model and result in the store, executing a notebook still costs 10-30 s of kernel
start, imports, loading and drawing; a second ``make workbook`` would spend most of its time
redrawing what it drew before. A notebook is reused when an earlier run of the same profile under
the same ``--out`` executed it to the end with the same :func:`reuse_key` (its cells, markdown
included; the code version of it and of every notebook it needs, as in the store keys, and of
:mod:`lib.store`; their recipes; the package versions and the accelerator; the files of the real
datasets' folders, of ``measurements/`` and of ``../shared``; the store's folder), its executed
copy and outputs are still there, and every store file it used then is still in the store, unchanged
(same size and modification time: a ``--fresh`` run that rewrote it, or a cleaned store, executes it
again). Runs that retrain (``--fresh``) or dry runs never reuse; ``--no-reuse`` executes every notebook.

Papermill and nbclient have no such cache (they execute what they are given), and the store's
keys cover models and results, not a notebook's drawing and prose: hence this module.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from . import runs
from .paths import data_dir, measured_dir, shared_dir, store_dir

KEY_VERSION = 2  # raise when what a key covers changes, so older runs are not reused under a new rule


def notebook_text(path: Path) -> list:
    """Every cell's type, tags and source (not its outputs): what a reader of the executed copy sees
    besides what the code printed."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return [[c["cell_type"], c.get("metadata", {}).get("tags", []), "".join(c["source"])] for c in cells]


def _stat(path: Path) -> list[int] | None:
    try:
        st = Path(path).stat()
    except OSError:  # a dangling link, a file gone meanwhile
        return None
    return [st.st_size, st.st_mtime_ns]


def _files(top: Path) -> list:
    """Path, size and modification time of every file under ``top`` (linked folders followed)."""
    return sorted([str(Path(d, f).relative_to(top)), _stat(Path(d, f))]
                  for d, _, names in os.walk(top, followlinks=True) for f in names)


def inputs_fingerprint() -> str:
    """A hash over the path, size and modification time of every file in the real datasets' folders
    under the data folder (``data/cifar100``, ...), in ``measurements/`` (the real profile's tables
    that notebooks 02 and 08 read) and in ``../shared``'s data and weights: a file added or changed
    there makes every notebook execute again. (A dataset a recipe reads from a folder of its own is
    not covered: ``--no-reuse`` after changing it.)"""
    from .data.real import REAL_DATASETS

    tops = {f"data/{folder}": data_dir() / folder for folder in {spec.folder for spec in REAL_DATASETS.values()}}
    tops["measurements"] = measured_dir()
    shared = shared_dir()
    tops |= {f"shared/{sub}": shared / sub for sub in ("data", "weights")} if shared else {}
    listing = {name: _files(top) if top.is_dir() else [] for name, top in sorted(tops.items())}
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def store_code() -> str:
    """The code version of :mod:`lib.store` (keys, files, tables): how a stored result comes back."""
    import importlib
    import pkgutil

    from . import store
    from .store.keys import code_version

    names = sorted(m.name for m in pkgutil.iter_modules(store.__path__) if m.name != "__main__")
    return code_version(store, *(importlib.import_module(f"lib.store.{n}") for n in names))


def context() -> dict:
    """What every notebook's key shares: the package versions, the accelerator and whether the CPU
    trains ``"amp": "auto"`` recipes in bf16, the inputs (:func:`inputs_fingerprint`), the store's
    folder and code (:func:`store_code`); read once a run."""
    device = runs.device_info()
    return {"packages": runs.packages(), "cuda": device.get("cuda"), "gpus": device.get("gpus"),
            "cpu_bf16": device.get("cpu_bf16"),
            "inputs": inputs_fingerprint(), "store": str(store_dir().resolve()), "store_code": store_code()}


def reuse_key(path: Path, manifest: dict, needs: set[str], code: dict[str, str], shared: dict) -> str | None:
    """The hash an earlier execution of notebook ``path`` must match to be reused in the run of
    ``manifest``; None when this run must execute it (it retrains or is a dry run). ``code`` maps
    each notebook number to its code version (:func:`lib.publish.notebook_version`); ``shared`` is
    :func:`context`."""
    if manifest.get("dry_run") or manifest["parameters"].get("retrain"):
        return None
    mine = sorted({path.name[:2], *needs})
    payload = {"version": KEY_VERSION, "notebook": notebook_text(path), "profile": manifest["profile"],
               "code": {n: code.get(n) for n in mine}, "recipes": {n: manifest["recipes"].get(n) for n in mine},
               **shared}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _plain(name) -> bool:
    return isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..")


def _regular(path: Path) -> bool:
    """A file that is not a link (a copy never follows one out of its run folder)."""
    return path.is_file() and not path.is_symlink()


def _outputs(folder: Path, name: str) -> dict[str, dict[str, dict]]:
    """``{"figures": {output: entry}, "tables": {...}}``: the index entries of notebook ``name`` in
    the run ``folder``."""
    return {sub: {out: e for out, e in items.items() if runs.same_notebook(e.get("notebook") or out, name)}
            for sub, items in runs.index_entries(folder).items()}


def store_files(folder: Path, name: str) -> dict[str, list[int] | None]:
    """Each store file notebook ``name`` loaded or made in the run ``folder`` (its store log), with
    its size and modification time now."""
    paths = {e["path"] for e in runs.store_entries(folder) if runs.same_notebook(e.get("notebook", ""), name)}
    return {p: _stat(Path(p)) for p in sorted(paths)}


def record(entry: dict, folder: Path) -> None:
    """Note in a finished notebook's manifest entry the store files it used, as they are now (none
    noted, so never reused, when the store log cannot be read)."""
    try:
        entry["store_files"] = store_files(folder, entry["name"])
    except (OSError, ValueError, KeyError):
        entry["store_files"] = None


def _usable(folder: Path, entry: dict) -> bool:
    """Whether the earlier run ``folder`` still holds ``entry``'s executed copy and outputs, and the
    store every file that notebook used then, unchanged."""
    if not _regular(folder / entry["name"]) or not isinstance(entry.get("store_files"), dict):
        return False
    for sub, items in _outputs(folder, entry["name"]).items():
        if not all(_plain(f) and _regular(folder / sub / f) for e in items.values() for f in e.get("files", [])):
            return False
    store = store_dir().resolve()
    return all(was is not None and Path(p).resolve().is_relative_to(store) and _stat(Path(p)) == was
               for p, was in entry["store_files"].items())


def earlier(out_root: Path, profile: str, name: str, key: str, this_run: Path) -> tuple[Path, dict, dict] | None:
    """The earlier run folder, its manifest entry for notebook ``name`` and its manifest, of the
    newest execution under ``out_root`` with ``key`` that still holds everything it made; None when
    there is none. A notebook that finished in a run that failed later counts."""
    found = []
    for path in (Path(out_root) / profile).glob("*/manifest.json"):
        if path.parent.resolve() == Path(this_run).resolve():
            continue
        try:
            manifest = runs.read_manifest(path)
        except ValueError:
            continue
        for e in manifest["notebooks"]:
            if e.get("name") == name and e.get("status") == "done" and e.get("reuse_key") == key:
                found.append(((str(e.get("ended") or ""), path.parent.name), path.parent, e, manifest))
    for _, folder, entry, manifest in sorted(found, key=lambda f: f[0], reverse=True):
        if _usable(folder, entry):
            return folder, entry, manifest
    return None


def copy_outputs(src: Path, dst: Path, name: str, src_said: str | None = None, dst_said: str | None = None) -> None:
    """Copy notebook ``name``'s executed copy, figures and tables (with their index entries) from run
    folder ``src`` into ``dst``. In the executed copy, the run
    folder as the earlier run spelled it (``src_said``, its manifest's ``folder``) becomes this run's
    (``dst_said``), so its parameters cell names this run's run file. A file already at a destination
    (an earlier attempt's) is replaced."""
    from .plots import record as index_record  # the kernels' own locked writer of index.json

    text = (src / name).read_text(encoding="utf-8")
    if src_said and dst_said:  # as nbformat writes it: JSON without ASCII escapes
        said = [json.dumps(str(f), ensure_ascii=False)[1:-1] for f in (src_said, dst_said)]
        text = text.replace(*said)
    _replace(dst / name, text)
    for sub, items in _outputs(src, name).items():
        (dst / sub).mkdir(exist_ok=True)
        for output, e in items.items():
            for f in e.get("files", []):
                _replace(dst / sub / f, None, src / sub / f)
            index_record(dst / sub, output, {k: v for k, v in e.items() if k != "notebook"}, notebook=e.get("notebook"))


def _replace(path: Path, text: str | None, src: Path | None = None) -> None:
    """Write ``text`` (or copy ``src``) to ``path``, unlinking what is there first (never writing
    through a link)."""
    if path.is_symlink() or path.exists():
        path.unlink()
    if src is None:
        path.write_text(text, encoding="utf-8")
    else:
        shutil.copy2(src, path, follow_symlinks=False)


def apply(manifest: dict, folder: Path, out_root: Path, notebook_dir: Path, needs: dict[str, set[str]],
          use: bool = True) -> list[dict]:
    """Give each pending notebook of the run ``manifest`` (in run ``folder``) its :func:`reuse_key`
    and reuse what :func:`earlier` finds: its outputs are copied and its entry marked done, with
    ``reused`` naming the run it came from (its commit and whether it had uncommitted changes) and
    the seconds its execution took. Returns the reused entries; ``notebook_dir`` holds the notebooks,
    ``needs`` what each needs (:func:`lib.studies.notebook_needs`). With ``use`` False
    (``--no-reuse``) the keys are recorded and nothing is reused. Code versions, packages and the
    device are read now, not from the manifest (which a resumed run wrote before)."""
    import time

    from .publish import code_versions

    mine = {e["name"][:2] for e in manifest["notebooks"]}
    wanted = mine | {n for m in mine for n in needs.get(m, ())}
    paths = [p for p in sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb")) if p.name[:2] in wanted]
    code = {name[:2]: v for name, v in code_versions(paths).items()}
    shared, reused = context(), []
    pending = [e for e in manifest["notebooks"] if e["status"] != "done"]
    for entry in pending:  # every key first: a later run can reuse what this one executes
        entry["reuse_key"] = reuse_key(notebook_dir / entry["name"], manifest, needs.get(entry["name"][:2], set()),
                                       code, shared)
    for entry in pending if use else []:
        key = entry["reuse_key"]
        found = None if key is None else earlier(out_root, manifest["profile"], entry["name"], key, folder)
        if found is None:
            continue
        src, old, source = found
        t0, started = time.perf_counter(), runs.now()
        try:
            copy_outputs(src, folder, entry["name"], source.get("folder"), manifest.get("folder"))
        except Exception as err:  # a copy that fails leaves the notebook to execute
            print(f"[workbook] warning: could not reuse {entry['name']} from run {src.name} ({err!r}); "
                  "executing it", flush=True)
            continue
        seconds = round(time.perf_counter() - t0, 1)
        git = source.get("git", {})
        execution = old.get("reused") or {"run": src.name, "seconds": old.get("seconds"), "commit": git.get("commit"),
                                          "dirty": git.get("dirty")}
        entry.update(status="done", executed=entry["name"], started=started, ended=runs.now(), seconds=seconds,
                     time=runs.time_profile([], entry["name"], seconds), slowest_cells=[], reused=execution,
                     store_files=old["store_files"])
        reused.append(entry)
    return reused
