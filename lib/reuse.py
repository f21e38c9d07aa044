"""Reuse a notebook's executed copy, figures and tables from an earlier run when nothing it reads
has changed, instead of executing it again.

With every model and result in the store, executing a notebook still costs 10-30 s of kernel
start, imports, loading and drawing; a second ``make workbook`` would spend most of its time
redrawing what it drew before. A notebook is reused when an earlier finished run of the same
profile under the same ``--out`` executed it with the same :func:`reuse_key` (its cells,
markdown included; the code version of it and of every notebook it needs, as in the store keys;
their recipes; the package versions and the accelerator; the files of the real datasets' folders
and of ``../shared``; the store's folder), its executed copy and outputs are still there, and every store
entry it used then is still in the store (so a cleaned store executes it again). Runs that
retrain (``--fresh``) or dry runs never reuse; ``--no-reuse`` executes every notebook.

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
from .paths import data_dir, shared_dir, store_dir

KEY_VERSION = 1  # raise when what a key covers changes, so older runs are not reused under a new rule


def notebook_text(path: Path) -> list:
    """Every cell's type, tags and source (not its outputs): what a reader of the executed copy sees
    besides what the code printed."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return [[c["cell_type"], c.get("metadata", {}).get("tags", []), "".join(c["source"])] for c in cells]


def _files(top: Path) -> list:
    listed = []
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            st = Path(dirpath, name).stat()
            listed.append([str(Path(dirpath, name).relative_to(top)), st.st_size, st.st_mtime_ns])
    return sorted(listed)


def inputs_fingerprint() -> str:
    """A hash over the path, size and modification time of every file in the real datasets' folders
    under the data folder (``data/cifar100``, ...) and in ``../shared``'s data and weights: a
    dataset added or changed there makes every notebook execute again. (A dataset a recipe reads
    from a folder of its own is not covered: ``--no-reuse`` after changing it.)"""
    from .data.real import REAL_DATASETS

    listing = {}
    for folder in sorted({spec.folder for spec in REAL_DATASETS.values()}):
        top = data_dir() / folder
        listing[f"data/{folder}"] = _files(top) if top.is_dir() else []
    shared = shared_dir()
    for sub in ("data", "weights"):
        listing[f"shared/{sub}"] = _files(shared / sub) if shared and (shared / sub).is_dir() else []
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def reuse_key(path: Path, manifest: dict, needs: set[str], code: dict[str, str], inputs: str) -> str | None:
    """The hash an earlier execution of notebook ``path`` must match to be reused in the run of
    ``manifest``; None when this run must execute it (it retrains or is a dry run). ``code`` maps
    each notebook number to its code version (:func:`lib.publish.notebook_version`)."""
    if manifest.get("dry_run") or manifest["parameters"].get("retrain"):
        return None
    mine = sorted({path.name[:2], *needs})
    device = manifest.get("device", {})
    payload = {"version": KEY_VERSION, "notebook": notebook_text(path), "profile": manifest["profile"],
               "code": {n: code.get(n) for n in mine},
               "recipes": {n: manifest["recipes"].get(n) for n in mine},
               "packages": manifest.get("packages"), "cuda": device.get("cuda"), "gpus": device.get("gpus"),
               "inputs": inputs, "store": str(store_dir().resolve())}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _plain(name) -> bool:
    return isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..")


def _outputs(folder: Path, name: str) -> dict[str, dict[str, dict]]:
    """``{"figures": {output: entry}, "tables": {...}}``: the index entries of notebook ``name`` in
    the run ``folder``."""
    return {sub: {out: e for out, e in items.items() if runs.same_notebook(e.get("notebook") or out, name)}
            for sub, items in runs.index_entries(folder).items()}


def _usable(folder: Path, entry: dict) -> bool:
    """Whether the earlier run ``folder`` still holds ``entry``'s executed copy and outputs, and the
    store every entry that notebook used then."""
    if not (folder / entry["name"]).is_file():
        return False
    for sub, items in _outputs(folder, entry["name"]).items():
        for e in items.values():
            files = e.get("files", [])
            if not all(_plain(f) and (folder / sub / f).is_file() for f in files):
                return False
    store = store_dir().resolve()
    return all(Path(p).resolve().is_relative_to(store) and Path(p).exists() for p in store_used(folder, entry))


def store_used(folder: Path, entry: dict) -> list[str]:
    """The store files notebook ``entry`` of the run ``folder`` loaded or made (for a reused entry,
    those of the execution it was copied from)."""
    if entry.get("reused"):
        return list(entry["reused"].get("store", []))
    log = runs.store_entries(folder)
    return sorted({e["path"] for e in log if runs.same_notebook(e.get("notebook", ""), entry["name"])})


def earlier(out_root: Path, profile: str, name: str, key: str, this_run: Path) -> tuple[Path, dict] | None:
    """The newest earlier run folder (and its manifest entry) under ``out_root`` that executed
    notebook ``name`` with ``key`` and still holds everything it made; None when there is none."""
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
                found.append((str(manifest.get("ended") or ""), path.parent, e))
    for _, folder, entry in sorted(found, key=lambda f: f[0], reverse=True):
        if _usable(folder, entry):
            return folder, entry
    return None


def copy_outputs(src: Path, dst: Path, name: str) -> int:
    """Copy notebook ``name``'s executed copy, figures and tables (with their index entries) from
    run folder ``src`` into ``dst``; the number of output files copied."""
    from .plots import record  # the kernels' own locked writer of index.json

    shutil.copy2(src / name, dst / name)
    copied = 0
    for sub, items in _outputs(src, name).items():
        (dst / sub).mkdir(exist_ok=True)
        for output, e in items.items():
            for f in e.get("files", []):
                shutil.copy2(src / sub / f, dst / sub / f)
                copied += 1
            record(dst / sub, output, {k: v for k, v in e.items() if k != "notebook"}, notebook=e.get("notebook"))
    return copied


def apply(manifest: dict, folder: Path, out_root: Path, notebook_dir: Path, needs: dict[str, set[str]],
          use: bool = True) -> list[dict]:
    """Give each pending notebook of the run ``manifest`` (in run ``folder``) its :func:`reuse_key`
    and reuse what :func:`earlier` finds: its outputs are copied and its entry marked done, with
    ``reused`` naming the run it came from, the seconds its execution took and the store files it
    used. Returns the reused entries; ``notebook_dir`` holds the notebooks, ``needs`` what each
    needs (:func:`lib.studies.notebook_needs`). With ``use`` False
    (``--no-reuse``) the keys are recorded and nothing is reused."""
    import time

    from .publish import code_versions

    inputs, reused = inputs_fingerprint(), []
    mine = {e["name"][:2] for e in manifest["notebooks"]}
    wanted = mine | {n for m in mine for n in needs.get(m, ())}
    extra = [p for p in sorted(Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
             if p.name[:2] in wanted and p.name not in manifest["code"]]
    code = {name[:2]: v for name, v in {**code_versions(extra), **manifest["code"]}.items()}
    for entry in manifest["notebooks"]:
        if entry["status"] == "done":
            continue
        key = reuse_key(notebook_dir / entry["name"], manifest, needs.get(entry["name"][:2], set()), code, inputs)
        entry["reuse_key"] = key
        found = None if key is None or not use else earlier(out_root, manifest["profile"], entry["name"], key, folder)
        if found is None:
            continue
        src, old = found
        t0, started = time.perf_counter(), runs.now()
        copy_outputs(src, folder, entry["name"])
        seconds = round(time.perf_counter() - t0, 1)
        execution = old.get("reused") or {"run": src.name, "seconds": old.get("seconds")}
        entry.update(status="done", executed=entry["name"], started=started, ended=runs.now(), seconds=seconds,
                     time=runs.time_profile([], entry["name"], seconds), slowest_cells=[],
                     reused={"run": execution["run"], "seconds": execution["seconds"],
                             "store": store_used(src, old)})
        reused.append(entry)
    return reused
