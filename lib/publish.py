"""What a reader sees: one whole workbook run of one commit, published to ``figures/``.

``figures/`` (and ``figures/<profile>/`` for the other profiles) is written only here, by
``python -m lib.workbook`` at the end of a run that ran every notebook, with the profile's
recipes (no ``-p`` or ``--config``), from a tree without uncommitted code. It then holds every
figure and table of that run and ``MANIFEST.json``:

``run``, ``profile``, ``commit``, ``started``/``ended``; ``code`` (each notebook's code version:
its code cells and every ``lib`` module they reach, :func:`notebook_version`); ``files`` (each
file's notebook, kind, caption and n); ``findings`` (each notebook's generated Markdown, the
sentences that state its results); ``seconds`` per notebook.

``docs/results.md`` (``docs/results_<profile>.md``) is generated from that folder alone
(:func:`results_markdown`), so the README and ``docs/`` quote no measured number by hand: they
point there. :func:`stale` names the notebooks whose code changed since the published run
(``tests/test_published.py`` fails on it, and on any file the manifest does not list).
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shutil
from pathlib import Path

from .paths import MANIFEST, ROOT, docs_dir, published_dir
from .runs import describe_device, index_entries
from .store.keys import code_version
from .store.versions import lib_imports, module_closure

SHOWN_ROWS = 24  # longer tables are linked from the results page, not copied into it
NOTEBOOKS = ROOT / "notebooks"
# where and how results are kept or scheduled, never what they are or how they are drawn
INFRASTRUCTURE = ("lib.store", "lib.paths", "lib.config", "lib.runs", "lib.stall", "lib.workbook", "lib.reuse",
                  "lib.sweep", "lib.publish", "lib.dryrun", "lib.reported_asserts", "lib.read_log", "lib.notebook_run")
# outputs a run writes: NN_name.ext; anything else in figures/ is not the workbook's
_OUTPUT = re.compile(r"^\d\d_[\w.-]+$")
# what the run itself rewrites between its start and its end
_OWN_FILES = ("figures/", "docs/results")


def refresh(profile: str = "smoke") -> str:
    """The command that republishes ``profile``'s figures and results page (said by the page, the
    tests and ``python -m lib.publish``)."""
    if profile == "smoke":
        return "make workbook (on a tree with every change committed), then commit figures/ and docs/results.md"
    shared = " (../shared beside the project)" if profile == "real" else ""
    return (f'make workbook ARGS="--profile {profile}"{shared} on a tree with every change committed, then commit '
            f"figures/{profile}/ and docs/results_{profile}.md")


def results_doc(profile: str) -> Path:
    """``docs/results.md`` for the smoke profile, ``docs/results_<profile>.md`` for the others."""
    return docs_dir() / ("results.md" if profile == "smoke" else f"results_{profile}.md")


def notebook_code(path: Path) -> str:
    """The source of a notebook's code cells, one cell after another."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def notebook_version(path: Path) -> str:
    """12 hex digits over a notebook's code cells (without comments or formatting) and the code of
    every ``lib`` module they reach (studies, artifacts, methods, plots; not
    :data:`INFRASTRUCTURE`): what its figures and tables depend on."""
    tree = ast.parse(notebook_code(path))
    modules = sorted({m for root in lib_imports(tree) - {"lib"} for m in module_closure(root, INFRASTRUCTURE)})
    return code_version(ast.dump(tree), *(importlib.import_module(m) for m in modules))


def code_versions(paths) -> dict[str, str]:
    """Notebook file name -> :func:`notebook_version` for the notebook files ``paths``."""
    return {Path(p).name: notebook_version(Path(p)) for p in paths}


def _uncommitted(git: dict) -> list[str]:
    """Changed tracked files other than what the run itself writes."""
    paths = [line[3:] for line in git.get("changed", [])]
    return [p for p in paths if not p.startswith(_OWN_FILES)]


def why_not(manifest: dict, notebooks: list[Path]) -> str | None:
    """Why this run may not be published (``None``: it may); ``notebooks``: every notebook file of
    the workbook, in order."""
    params = {k: v for k, v in manifest["parameters"].items() if k != "retrain"}
    names = [e["name"] for e in manifest["notebooks"]]
    if manifest["status"] != "done":
        return f"the run is {manifest['status']}"
    if names != [Path(p).name for p in notebooks]:
        return "the run did not run every notebook (--only)"
    if params:
        return f"the run changed the recipes ({', '.join(sorted(params))})"
    changed = _uncommitted(manifest["git"])
    if changed or not manifest["git"].get("commit"):
        return f"the run started with uncommitted changes ({', '.join(changed[:5]) or 'no git commit'})"
    if manifest.get("code") != code_versions(notebooks):
        return "the code changed while the run ran"
    return None


def findings(executed: Path) -> list[str]:
    """The Markdown a notebook displayed (its generated sentences), in order."""
    try:
        cells = json.loads(Path(executed).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return []
    texts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/markdown")
            if text:
                texts.append("".join(text).strip())
    return texts


def _entries(folder: Path) -> dict[str, dict]:
    """File name -> its index entry (notebook, kind, caption, n) from the run's index.json files."""
    files = {}
    for items in index_entries(folder).values():
        for name, e in items.items():
            for f in e["files"]:
                files[f] = {"output": name, "notebook": e.get("notebook"), "kind": e["kind"],
                            "caption": e.get("caption"), "n": e.get("n"), "rows": e.get("rows")}
    return files


def _clear(top: Path) -> None:
    for f in top.iterdir():
        if f.is_file() and (f.name == MANIFEST or _OUTPUT.match(f.name)):
            f.unlink()


def publish(folder: Path, manifest: dict, top: Path | None = None, doc: Path | None = None) -> Path:
    """Replace ``top`` (default :func:`published_dir`) with the run's figures and tables and its
    manifest, and write the results page ``doc`` (default :func:`results_doc`); returns ``top``."""
    top = Path(top or published_dir(manifest["profile"]))
    top.mkdir(parents=True, exist_ok=True)
    files = _entries(folder)
    _clear(top)
    for name in files:
        src = folder / ("figures" if files[name]["kind"] == "figure" else "tables") / name
        shutil.copy2(src, top / name)
    published = {"run": manifest["run"], "profile": manifest["profile"], "commit": manifest["git"]["commit"],
                 "started": manifest["started"], "ended": manifest["ended"], "refresh": refresh(manifest["profile"]),
                 "code": manifest["code"], "device": describe_device(manifest.get("device", {})),
                 "seconds": {e["name"]: (e.get("reused") or e).get("seconds") for e in manifest["notebooks"]},
                 "reused": {e["name"]: e["reused"]["run"] for e in manifest["notebooks"] if e.get("reused")},
                 "findings": {e["name"]: findings(folder / e["name"]) for e in manifest["notebooks"]},
                 "files": dict(sorted(files.items()))}
    tmp = top / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(published, indent=1) + "\n")
    os.replace(tmp, top / MANIFEST)
    doc = Path(doc or results_doc(manifest["profile"]))
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(results_markdown(top, doc))
    return top


def read_manifest(top: Path) -> dict | None:
    path = Path(top) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def stale(top: Path | None = None) -> list[str]:
    """The notebooks whose code version differs from the one the published run recorded (and
    notebooks the run did not have)."""
    published = read_manifest(top or published_dir("smoke")) or {"code": {}}
    now = code_versions(sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))
    return [n for n in now if published["code"].get(n) != now[n]]


def unlisted(top: Path | None = None) -> tuple[list[str], list[str]]:
    """Files in ``top`` the manifest does not list, and files it lists that are missing."""
    top = Path(top or published_dir("smoke"))
    listed = set((read_manifest(top) or {"files": {}})["files"])
    present = {f.name for f in top.iterdir() if f.is_file() and _OUTPUT.match(f.name)}
    return sorted(present - listed), sorted(listed - present)


def _section(stem: str, published: dict, top: Path, rel: str) -> list[str]:
    name = f"{stem}.ipynb"
    earlier = published.get("reused", {}).get(name)
    where = f" in run `{earlier}` (reused: same code, recipes, inputs and stored models)" if earlier else ""
    lines = [f"## {stem}", "", f"Ran {published['seconds'].get(name) or 0:.0f} s{where}; code version "
             f"`{published['code'].get(name)}`.", ""]
    said = published["findings"].get(name) or []
    if said:
        lines += ["### What the notebook found (its generated text)", ""]
        lines += [text + "\n" for text in said]
    mine = {f: e for f, e in published["files"].items() if f.startswith(stem[:3])}
    for f, e in mine.items():
        n = e.get("n") or "not stated"
        if f.endswith(".png"):
            lines += [f"### {e['output']} (figure)", "", f"{e['caption']} (n: {n})", "", f"![{e['output']}]({rel}/{f})",
                      ""]
        elif f.endswith(".csv"):
            md = top / f.replace(".csv", ".md")
            lines += [f"### {e['output']} (table, [{f}]({rel}/{f}))", "", f"{e['caption']} (n: {n})", ""]
            if md.is_file() and (e.get("rows") or 0) <= SHOWN_ROWS:
                lines += [md.read_text().strip(), ""]
    return lines


def results_markdown(top: Path, doc: Path) -> str:
    """The results page of the run published in ``top``, with links relative to ``doc``."""
    published = read_manifest(top)
    rel = Path(os.path.relpath(top, doc.parent)).as_posix()
    lines = ["# Results", "",
             f"Generated from the {published['profile']} run `{published['run']}` of commit "
             f"`{(published['commit'] or '')[:12]}` ({published['started']} to {published['ended']}, "
             f"{published.get('device') or 'unknown CPU'}) by `python -m lib.workbook`; do not edit by hand. "
             f"Every number here is in the run's tables in [{rel}/]({rel}/); "
             f"[{MANIFEST}]({rel}/{MANIFEST}) holds each file's caption, n and code version. "
             f"To refresh: {refresh(published['profile'])}.", ""]
    for name in published["seconds"]:
        lines += _section(name.removesuffix(".ipynb"), published, top, rel)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m lib.publish [--profile P]``: the published run of a profile (commit, run, when)
    and the notebooks whose code changed since it, with the command that refreshes them."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lib.publish", description=main.__doc__.splitlines()[0])
    ap.add_argument("--profile", default="smoke", choices=("smoke", "real", "full"))
    args = ap.parse_args(argv)
    top = published_dir(args.profile)
    published = read_manifest(top)
    if published is None:
        print(f"nothing is published for the {args.profile} profile ({top} has no {MANIFEST})")
        return 0
    print(f"{top}: run {published['run']} of commit {(published['commit'] or '')[:12]}, "
          f"{published['started']} to {published['ended']}")
    changed = stale(top)
    print(f"stale (code changed since): {', '.join(changed)}; refresh: {refresh(args.profile)}" if changed
          else "every notebook's code is as the run had it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
