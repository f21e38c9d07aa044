"""Run folders and their provenance: what ``python -m lib.workbook`` writes beside the notebooks.

Each run gets ``runs/<profile>/<name>/`` (``name``: ``--name`` or a UTC timestamp; an existing
folder is never reused except by ``--resume``) holding the executed notebooks, ``figures/``,
``tables/``, ``store_log.jsonl`` (every model and result the store handed out, and whether it was
loaded or made) and ``manifest.json``:

``parameters``  the validated run parameters (``-p`` and ``--config``), ``recipes`` the resolved
recipe of each notebook's study, ``git`` commit, branch and dirty flag, ``packages`` versions,
``device``, ``started``/``ended`` (UTC), ``notebooks`` (name, status, seconds, executed copy, and
where the seconds went: ``time`` from :func:`time_profile`, ``slowest_cells`` from
:func:`cell_seconds`) and ``store`` (the log's entries, with the seconds of what was made). The
manifest is rewritten after every notebook, so a killed run
shows what finished. ``index.md`` lists every figure and table with its caption, n and the
parameters behind it.
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata as md
import json
import os
import platform
import re
import subprocess
from pathlib import Path

from .paths import MANIFEST, ROOT, published_dir

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "captum", "safetensors", "papermill",
            "matplotlib", "seaborn")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def plain_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a plain folder name (letters, digits, ``.``, ``_``, ``-``; no separator,
    no ``..``), so that a run folder made from it stays inside ``--out``; else ValueError."""
    if not isinstance(name, str) or not _PLAIN.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {name!r} is not a plain name: use letters, digits, '.', '_' and '-' "
                         "(no '/', no '..', at most 100 characters); the run folder is made under --out")
    return name


def new_run_dir(out: Path, profile: str, name: str | None) -> Path:
    """A fresh folder ``out/<profile>/<name or timestamp>``; never an existing one, never outside
    ``out`` (``name`` must be a :func:`plain_name`)."""
    base = Path(out) / profile
    if name:
        folder = base / plain_name(name)
        if folder.exists():
            raise FileExistsError(f"run folder {folder} exists; pick another --name "
                                  f"or continue it with --resume {name}")
    else:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        folder, k = base / stamp, 1
        while folder.exists():
            k += 1
            folder = base / f"{stamp}-{k}"
    (folder / "figures").mkdir(parents=True)
    (folder / "tables").mkdir()
    return folder


def read_manifest(path: Path) -> dict:
    """A run's ``manifest.json``; ValueError naming the file when it is unreadable or not a run's."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable run manifest ({err}); delete that run folder or "
                         "start a new run") from None
    entries = data.get("notebooks") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or not {"run", "profile", "parameters", "notebooks"} <= set(data)
            or not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                       for e in entries)
            or not (data.get("only") is None or (isinstance(data["only"], list)
                                                 and all(isinstance(o, str) for o in data["only"])))):
        raise ValueError(f"{path} is not a run manifest (it needs run, profile, parameters, a list of notebooks "
                         "and only as a list or null); delete that run folder or start a new run")
    return data


def latest_unfinished(out: Path, profile: str, warn=print) -> Path | None:
    """The newest run folder of ``profile`` whose manifest does not say ``done``; a manifest that
    cannot be read is skipped, with one line through ``warn`` naming it."""
    runs = sorted((p for p in (Path(out) / profile).glob("*/manifest.json")), key=lambda p: p.stat().st_mtime)
    for manifest in reversed(runs):
        try:
            status = read_manifest(manifest).get("status")
        except ValueError as err:
            warn(f"skipped: {err}")
            continue
        if status != "done":
            return manifest.parent
    return None


def git_info(root: Path = ROOT) -> dict:
    """The commit, branch and changed tracked files (``git status --porcelain`` lines, every one:
    :func:`lib.publish.why_not` reads them to refuse a run of uncommitted code) of ``root``."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    # not stripped: a porcelain line starts with its two status columns, the first often a space
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return {"commit": git("rev-parse", "HEAD").strip() or None,
            "branch": git("rev-parse", "--abbrev-ref", "HEAD").strip() or None,
            "dirty": bool(changed), "changed": changed}


def packages() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


# the SIMD extensions that decide how fast (and, for bf16, in which precision) a CPU trains here: oneDNN's
# fp32 kernels use AVX-512 where present, and "amp": "auto" trains in bf16 only on AVX-512 BF16 or AMX
SIMD_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu_info(cpuinfo: str | None = None) -> dict:
    """This CPU as /proc/cpuinfo (or the text ``cpuinfo``) names it: ``cpu`` (its model name, else the architecture),
    ``cpu_id`` ("family F model M": a virtual machine's model name is often just the vendor's) and
    ``simd`` (which of :data:`SIMD_FLAGS` it has). Timings compare only between equal entries."""
    info = {"cpu": platform.processor() or platform.machine()}
    try:
        lines = (Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo).splitlines()
    except OSError:
        return info
    first = {}
    for line in lines:
        key, _, value = line.partition(":")
        first.setdefault(key.strip(), value.strip())
    if first.get("model name"):
        info["cpu"] = first["model name"]
    if "cpu family" in first and "model" in first:
        info["cpu_id"] = f"family {first['cpu family']} model {first['model']}"
    info["simd"] = [f for f in SIMD_FLAGS if f in first.get("flags", "").split()]
    return info


def cpu_label(info: dict) -> str:
    """One line for a :func:`cpu_info` record: model name, family and model, SIMD extensions (a
    record made before those fields names only what it has)."""
    return ", ".join([info.get("cpu") or "unknown CPU", *([info["cpu_id"]] if info.get("cpu_id") else []),
                      *([" ".join(info["simd"]) or "no AVX2"] if "simd" in info else [])])


def device_info() -> dict:
    """Where a run computes: platform, :func:`cpu_info`, cores and threads, CUDA and its GPUs, and
    ``cpu_bf16``: whether a recipe's ``"amp": "auto"`` trains in bf16 on this CPU
    (:func:`lib.train.cpu_bf16_supported`), which changes what those recipes compute."""
    import torch

    from .train import cpu_bf16_supported

    info = {"platform": platform.platform(), **cpu_info(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cuda": torch.cuda.is_available(),
            "cpu_bf16": cpu_bf16_supported()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def describe_device(device: dict) -> str | None:
    """One line naming a run's :func:`device_info` for its results page: the GPUs or the CPU (with
    its family, model and SIMD extensions) and whether ``"amp": "auto"`` trained in bf16; None for
    an empty record."""
    if not device:
        return None
    where = ", ".join(device["gpus"]) if device.get("gpus") else cpu_label(device)
    if "cpu_bf16" not in device or device.get("gpus"):
        return where
    return f"{where}; recipes' \"amp\": \"auto\" trained in {'bf16' if device['cpu_bf16'] else 'fp32'}"


def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def store_entries(folder: Path) -> list[dict]:
    log = folder / "store_log.jsonl"
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def same_notebook(a: str, b: str) -> bool:
    """Whether two notebook (or output) names are of one notebook: the same two-digit number (a
    kernel logs its study's notebook, ``lib.config.RunConfig.notebook``, whatever the file's name)."""
    return a[:2] == b[:2] and a[:2].isdigit()


def time_profile(entries: list[dict], notebook: str, seconds: float, since: str | None = None) -> dict:
    """Where ``notebook``'s ``seconds`` went, from the run's store log (``entries``; those ``at``
    or after ``since``, the attempt's start, so a resumed run does not count an earlier attempt's
    work): ``train`` (models the store trained, its own seconds), ``compute`` (results it
    computed: attack tables, crafted sets, sweeps; without models trained inside them, with
    models loaded inside them) and ``other`` (the rest: kernel start, loading from the store,
    work no store call wraps, figures), with how many of each were made and loaded."""
    mine = [e for e in entries
            if same_notebook(e.get("notebook", ""), notebook) and (since is None or e["at"] >= since)]
    own = lambda action: sum(e.get("own_seconds", 0.0) for e in mine if e["action"] == action)
    train, compute = own("trained"), own("computed")
    count = lambda action: sum(e["action"] == action for e in mine)
    return {"train": round(train, 1), "compute": round(compute, 1), "other": round(seconds - train - compute, 1),
            "trained": count("trained"), "computed": count("computed"), "loaded": count("loaded")}


def critical_path(entries: list[dict], needs: dict[str, set[str]], slack: float = 5.0) -> list[dict]:
    """The chain of notebooks the run's wall clock waited on, first to last: from the notebook
    that ended last, back through the notebook whose end let each one start (the latest to end at
    most ``slack`` seconds after it started: one it needs, or one that freed a ``--jobs`` slot);
    stops at a notebook that started with the run. Each item: ``{"name", "seconds",
    "waited_for"}`` (``"needs"``, ``"slot"`` or ``"start"``). Manifest entries without both
    ``started`` and ``ended`` (skipped or pending ones) are left out."""
    t = lambda stamp: _dt.datetime.fromisoformat(stamp).timestamp()
    ran = [e for e in entries if e.get("started") and e.get("ended")]
    if not ran:
        return []
    first = min(t(e["started"]) for e in ran)
    chain, current = [], max(ran, key=lambda e: t(e["ended"]))
    while current is not None:
        start = t(current["started"])
        before = [e for e in ran if e is not current and t(e["ended"]) <= start + slack]
        previous = max(before, key=lambda e: t(e["ended"]), default=None)
        if start - first <= slack or previous is None:
            waited, previous = "start", None
        else:
            waited = "needs" if previous["name"][:2] in needs.get(current["name"][:2], ()) else "slot"
        chain.append({"name": current["name"], "seconds": current.get("seconds", 0), "waited_for": waited})
        current = previous
    return chain[::-1]


def chain_seconds(seconds: dict[str, float], needs: dict[str, set[str]]) -> dict[str, float]:
    """Per notebook number in ``seconds`` (expected seconds each): its own seconds plus the longest
    chain of notebooks that wait on it, directly or not (the priority of longest-remaining-path list
    scheduling: what starts first when a slot frees)."""
    memo: dict[str, float] = {}

    def chain(n: str) -> float:
        if n not in memo:
            after = [m for m in seconds if n in needs.get(m, ())]
            memo[n] = seconds[n] + max((chain(m) for m in after), default=0.0)
        return memo[n]

    return {n: chain(n) for n in seconds}


def start_order(ready: list[dict], waiting: list[dict], needs: dict[str, set[str]],
                seconds: dict[str, float] | None = None) -> list[dict]:
    """``ready`` (manifest entries) in the order ``--jobs`` starts them. With ``seconds`` for every
    waiting notebook (the published run's, :func:`published_seconds`): the longest chain
    of work still ahead first (:func:`chain_seconds`; docs/running.md has the replay).
    Without: first those that more of the ``waiting`` notebooks need, then in notebook order."""
    if seconds and all(e["name"][:2] in seconds for e in waiting):
        rank = chain_seconds(seconds, needs)
        return sorted(ready, key=lambda e: (-rank[e["name"][:2]], e["name"]))
    wanted = lambda e: sum(e["name"][:2] in needs.get(w["name"][:2], ()) for w in waiting)
    return sorted(ready, key=lambda e: (-wanted(e), e["name"]))


def published_seconds(profile: str) -> dict[str, float]:
    """Seconds per notebook number (``"02"``) of the profile's published run (``figures/MANIFEST.json``,
    ``figures/<profile>/MANIFEST.json`` for the other profiles: :mod:`lib.publish`); ``{}`` when there
    is none or it ran another profile."""
    path = published_dir(profile) / MANIFEST
    try:
        published = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if published.get("profile") != profile or not isinstance(published.get("seconds"), dict):
        return {}
    return {name[:2]: float(s) for name, s in published["seconds"].items()}


def cell_seconds(path: Path, top: int = 5) -> list[dict]:
    """The ``top`` slowest code cells of an executed notebook, from the per-cell durations papermill
    records: its index among the cells, seconds and first line of code (``[]`` if unreadable)."""
    try:
        cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return []
    rows = []
    for i, cell in enumerate(cells):
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if cell.get("cell_type") != "code" or duration is None:
            continue
        source = "".join(cell.get("source", []))
        first = next((ln.strip() for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
        rows.append({"cell": i, "seconds": round(float(duration), 1), "code": first[:80]})
    return sorted(rows, key=lambda r: -r["seconds"])[:top]


def short_json(value, width: int = 60) -> str:
    """``value`` as JSON, cut to ``width`` characters."""
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 3] + "..."



def index_entries(folder: Path) -> dict[str, dict[str, dict]]:
    """``{"figures": {...}, "tables": {...}}``: each output folder's ``index.json`` of the run in
    ``folder`` (output name -> its entry: kind, files, caption, n, notebook), empty where absent.
    Kept per folder because a figure and a table may share a name (``02_anb``)."""
    entries = {}
    for sub in ("figures", "tables"):
        index = Path(folder) / sub / "index.json"
        entries[sub] = json.loads(index.read_text()) if index.is_file() else {}
    return entries


def write_index(folder: Path, manifest: dict) -> Path:
    """``index.md``: per notebook, its parameters, then each figure and table with caption and n."""
    items = {name: {**entry, "folder": sub} for sub, entries in index_entries(folder).items()
             for name, entry in entries.items()}
    lines = [f"# Run {manifest['run']} ({manifest['profile']} profile)", "",
             f"Commit `{(manifest['git'].get('commit') or 'unknown')[:12]}`"
             + (" with uncommitted changes" if manifest["git"].get("dirty") else "")
             + f", started {manifest['started']}, status **{manifest['status']}**. "
             f"Run parameters: {short_json(manifest['parameters']) if manifest['parameters'] else 'the recipes'}.",
             ""]
    for nb in manifest["notebooks"]:
        stem = nb["name"].removesuffix(".ipynb")
        was = nb.get("reused")  # copied from an earlier run's execution (lib.reuse): say which, and its seconds
        how = f"reused from run {was['run']}, executed in {was.get('seconds') or 0:.0f} s" if was else \
            f"{nb['status']}, {nb.get('seconds', 0):.0f} s"
        lines += [f"## {stem} ({how})", ""]
        recipe = manifest["recipes"].get(stem[:2], {})
        if recipe:
            lines += ["Parameters: " + ", ".join(f"`{k}={short_json(v)}`" for k, v in recipe.items()
                                                 if not isinstance(v, dict)), ""]
        mine = {k: v for k, v in items.items() if same_notebook(v.get("notebook") or k, nb["name"])}
        if mine:
            lines += ["| output | kind | caption | n |", "|---|---|---|---|"]
            for name, e in sorted(mine.items()):
                link = f"[{name}]({e['folder']}/{e['files'][0]})"
                caption = (e.get("caption") or "").replace("|", "/")
                lines.append(f"| {link} | {e['kind']} | {caption} | {e.get('n') or 'not stated'} |")
            lines.append("")
    path = folder / "index.md"
    path.write_text("\n".join(lines) + "\n")
    return path
