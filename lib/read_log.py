"""Which dataset folders and weight files a notebook's kernel opens, for a dry run
(:mod:`lib.dryrun`): the evidence that every reader a recipe names was exercised.

:func:`watch_reads` installs a Python audit hook on ``open`` (so no reader needs to know it is
watched) that appends each new item to a JSON-lines log once.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

READS_LOG = "dry_run_reads.jsonl"


def watch_reads(folder: Path, log: Path) -> None:
    """Record in ``log`` (JSON lines, once each, with the number of the current run's notebook)
    every dataset folder and weight file under the dry run's ``folder`` that this process opens:
    what the dry run exercised (a Python audit hook on ``open``, so no reader needs to know it is
    watched). Call it after the run is activated (:func:`lib.config.activate`)."""
    from .config import current

    notebook = current().notebook[:2]  # the number of the notebook this kernel runs ("" outside one)
    data, home, seen = str(Path(folder) / "data") + os.sep, str(Path(folder) / "torch_home") + os.sep, set()

    def hook(event, args):
        if event != "open" or not isinstance(args[0], (str, os.PathLike)):
            return
        path = os.fspath(args[0])
        if path.startswith(data):
            item = ("dataset", path[len(data):].split(os.sep, 1)[0])
        elif path.startswith(home) and path.endswith(".pth"):
            item = ("weights", os.path.basename(path))
        else:
            return
        if item not in seen:
            seen.add(item)
            with open(log, "a") as f:
                f.write(json.dumps({"kind": item[0], "name": item[1], "notebook": notebook}) + "\n")
    sys.addaudithook(hook)
