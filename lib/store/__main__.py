"""``python -m lib.store``: list and clean the artifact cache.

    python -m lib.store ls [--name base_A] [--kind model]      # key, kind, size, date, config
    python -m lib.store clean --older-than 30d [--name ...] [--dry-run]
    python -m lib.store clean --all [--dry-run]

``--older-than`` takes days (``30d``), hours (``12h``) or minutes (``90m``), measured from each
file's modification time. Epoch checkpoints of unfinished training (``checkpoints/``) are listed
and cleaned with the models.
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

from lib.store import Store

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lib.store", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None, help="store folder (default: WORKBOOK_STORE or data/store)")
    sub = ap.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list artifacts")
    clean = sub.add_parser("clean", help="delete artifacts")
    for p in (ls, clean):
        p.add_argument("--name", default=None, help="only artifacts whose name contains this")
        p.add_argument("--kind", default=None, choices=["model", "result", "checkpoint"])
    group = clean.add_mutually_exclusive_group(required=True)
    group.add_argument("--older-than", default=None, metavar="AGE", help="e.g. 30d, 12h, 90m")
    group.add_argument("--all", action="store_true")
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    args = ap.parse_args(argv)
    store = Store(args.root)
    try:
        table = _table(store, args.name, args.kind)
    except Exception as err:  # e.g. an unreadable folder
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
    if args.older_than is not None:
        try:
            cutoff = time.time() - parse_age(args.older_than)
        except ValueError as err:
            print(f"lib.store: {err}", file=sys.stderr)
            return 2
        table = table[table["modified"].map(lambda t: t.timestamp()) < cutoff]
    for row in table.itertuples():
        print(("would delete " if args.dry_run else "deleted ") + f"{row.kind} {row.name}-{row.hash}")
        if not args.dry_run:
            path = Path(row.path)
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    print(f"{len(table)} artifacts, {table['bytes'].sum() / 2**20:.1f} MiB" + (" would be" if args.dry_run else "")
          + " removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
