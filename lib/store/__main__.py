"""``python -m lib.store``: list and clean the artifact cache.

    python -m lib.store ls [--name base_A] [--kind model]      # key, kind, size, date, config
    python -m lib.store clean --older-than 30d [--name ...] [--dry-run]
    python -m lib.store clean --all [--dry-run]
    python -m lib.store seal [--dry-run]         # verify every file; add header checksums to old ones

``--older-than`` takes days (``30d``), hours (``12h``) or minutes (``90m``), measured from each
file's modification time. Epoch checkpoints of unfinished training (``checkpoints/``) are listed
and cleaned with the models. ``seal`` (see :mod:`lib.store.seal`) checks every model and result as
a read would and gives files written before header checksums existed one; ``--dry-run`` only
checks. A bad option or store folder, a file that cannot be deleted and a file that fails its
check are each one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

from lib.cli import OneLineParser
from lib.paths import store_dir
from lib.store import CorruptArtifactError, Store

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_age(text: str) -> float:
    """Seconds in ``30d`` / ``12h`` / ``90m`` / ``45s``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms])\s*", text)
    if not m:
        raise ValueError(f"--older-than must look like 30d, 12h, 90m or 45s, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _table(store: Store, name: str | None, kind: str | None):
    import pandas as pd

    table = store.entries()
    ck = store.root / "checkpoints"
    if ck.is_dir():
        rows = []
        for folder in sorted(p for p in ck.iterdir() if p.is_dir()):
            files = list(folder.glob("*.pt"))
            if not files:
                continue
            key_name, _, digest = folder.name.rpartition("-")
            newest = max(f.stat().st_mtime for f in files)
            rows.append({"name": key_name, "hash": digest, "kind": "checkpoint", "format": "pt",
                         "bytes": sum(f.stat().st_size for f in files),
                         "modified": pd.Timestamp(newest, unit="s"), "path": str(folder)})
        if rows:
            table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    if name:
        table = table[table["name"].str.contains(name, regex=False)]
    if kind:
        table = table[table["kind"] == kind]
    return table.reset_index(drop=True)


HINT = "see python -m lib.store --help"  # the end of every one-line error, subcommands' included


def _parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="python -m lib.store", description=__doc__, hint=HINT,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="store folder (default: WORKBOOK_STORE or data/store)")
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", hint=HINT, help="list artifacts")
    clean = sub.add_parser("clean", hint=HINT, help="delete artifacts")
    seal = sub.add_parser("seal", hint=HINT, help="verify artifacts; add header checksums to files written before them")
    for p in (ls, clean, seal):
        p.add_argument("--name", default=None, help="only artifacts whose name contains this")
        p.add_argument("--kind", default=None, choices=["model", "result", "checkpoint"])
    group = clean.add_mutually_exclusive_group(required=True)
    group.add_argument("--older-than", default=None, metavar="AGE", help="e.g. 30d, 12h, 90m")
    group.add_argument("--all", action="store_true")
    for p in (clean, seal):
        p.add_argument("--dry-run", action="store_true", help="change nothing, say what would be done")
    return ap


def _store(root) -> Store:
    """The store at ``root`` (default: ``lib.paths.store_dir()``); ValueError naming the folder
    when it does not exist or is not a folder."""
    try:
        folder = Path(root).expanduser() if root is not None else store_dir()
    except OSError as err:  # WORKBOOK_STORE names a place where the folder cannot be made
        raise ValueError(f"cannot use the store folder from WORKBOOK_STORE: {err}") from err
    fix = "pass --root <the store folder> or set WORKBOOK_STORE"
    if not folder.exists():
        raise ValueError(f"store folder {folder} does not exist; {fix}")
    if not folder.is_dir():
        raise ValueError(f"store folder {folder} is not a folder; {fix}")
    return Store(folder)


def _delete(table) -> tuple[int, int, list[str]]:
    """Delete the table's artifacts; prints each deletion as it happens. Returns (count, bytes,
    one error line per artifact that could not be deleted)."""
    count = size = 0
    errors = []
    for row in table.itertuples():
        path = Path(row.path)
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        except OSError as err:
            errors.append(f"could not delete {row.kind} {row.name}-{row.hash} ({path}): {err.strerror or err}")
            continue
        print(f"deleted {row.kind} {row.name}-{row.hash}")
        count, size = count + 1, size + row.bytes
    return count, size, errors


def _seal(table, dry_run: bool) -> tuple[int, list[str]]:
    """Verify (and unless ``dry_run`` seal) the table's models and results; (count sealed, errors)."""
    from lib.store.seal import seal_file

    count, errors = 0, []
    for row in table[table["kind"] != "checkpoint"].itertuples():
        try:
            if seal_file(row.path, dry_run):
                count += 1
                print(("would seal " if dry_run else "sealed ") + f"{row.kind} {row.name}-{row.hash}")
        except CorruptArtifactError as err:
            errors.append(str(err))
        except OSError as err:  # a read-only store: the check passed, the rewrite could not be made
            errors.append(f"could not seal {row.path}: {err.strerror or err}")
    return count, errors


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        older_than = getattr(args, "older_than", None)
        cutoff = None if older_than is None else time.time() - parse_age(older_than)
        store = _store(args.root)
        table = _table(store, args.name, args.kind)
    except Exception as err:  # a bad age or folder, an unreadable folder: one line, not a traceback
        print(f"lib.store: {err}", file=sys.stderr)
        return 2
    if args.command == "ls":
        if table.empty:
            print(f"no artifacts in {store.root}")
            return 0
        shown = table.assign(size=(table["bytes"] / 2**20).round(2).astype(str) + " MiB",
                             modified=table["modified"].dt.strftime("%Y-%m-%d %H:%M"),
                             key=table["name"] + "-" + table["hash"])
        print(shown[["key", "kind", "format", "size", "modified"]].to_string(index=False))
        print(f"{len(table)} artifacts, {table['bytes'].sum() / 2**20:.1f} MiB in {store.root}")
        return 0
    if args.command == "seal":
        count, errors = _seal(table, args.dry_run)
        print(f"{count} of {len(table)} artifacts " + ("would be sealed" if args.dry_run else "sealed")
              + f", {len(errors)} failed their check")
    else:
        if cutoff is not None:
            table = table[table["modified"].map(lambda t: t.timestamp()) < cutoff]
        if args.dry_run:
            for row in table.itertuples():
                print(f"would delete {row.kind} {row.name}-{row.hash}")
            count, size, errors = len(table), table["bytes"].sum(), []
        else:
            count, size, errors = _delete(table)
        print(f"{count} artifacts, {size / 2**20:.1f} MiB" + (" would be" if args.dry_run else "") + " removed")
    for line in errors:
        print(f"lib.store: {line}", file=sys.stderr)
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
