"""JupyterLab in a real browser: Playwright for Python drives Chromium (Debian's package through
``executable_path``, or ``$WORKBOOK_CHROMIUM``; nothing is downloaded) against ``jupyter lab`` on a
free localhost port. Used by the browser test (``tests/test_lab_browser.py``) and by ``make
workbook``, which refreshes the README's picture of notebook 03's explorer (:func:`explorer_shot`).

Written here rather than taken from a library: no maintained package drives JupyterLab's own UI for
a headless check (Galata, JupyterLab's UI-test tool, is a Node/TypeScript suite), and the few
waits it needs (an idle kernel through ``/api/sessions``, every cell's execution count, the
explorer's redraw) are the JupyterLab specifics below. What made it work: ``--allow-root`` for
root, autosave off and every cell rendered through ``JUPYTERLAB_SETTINGS_DIR``, ``?reset`` for a
fresh workspace, and no ``MPLBACKEND`` for the kernels (with ``Agg``, which ``make test`` exports,
IPython shows a figure as its text repr instead of a PNG).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .stall import HEADLESS_ENV

CHROMIUM_ENV = "WORKBOOK_CHROMIUM"
TIMEOUT_MS = 240_000
ERROR = "Traceback (most recent call last)"
SHOT = "03_lab_explorer.png"  # the README's picture, published with notebook 03's outputs


def chromium() -> str | None:
    """The browser to drive: ``$WORKBOOK_CHROMIUM``, else Debian's ``chromium``."""
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """Why no browser can be driven here (``None`` when one can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -r requirements-test.txt)"
    if not chromium():
        return f"no Chromium to drive: apt-get install chromium (as .ci/run does), or set {CHROMIUM_ENV}"
    return None


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(folder: Path) -> None:
    """No autosave (a check must not write into the notebooks it opens), every cell rendered, no
    news or update checks."""
    plugins = {"@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
               # every cell in the page (JupyterLab 4 otherwise renders only those in view)
               "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
               "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                   {"fetchNews": "false", "checkForUpdates": False}}
    for name, value in plugins.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(value))


@dataclass
class Lab:
    base: str
    token: str
    root: Path

    def sessions(self) -> list:
        return get(f"{self.base}/api/sessions?token={self.token}")


@contextlib.contextmanager
def lab(folder: Path, env: dict | None = None):
    """A JupyterLab serving ``folder/lab`` (empty: copy notebooks in), as a reader's ``make lab`` starts
    it (explorers with sliders, figures inline), its settings, log and runtime files under ``folder``;
    ``env`` added to its environment. Yields a :class:`Lab`."""
    folder = Path(folder)
    root, token, port = folder / "lab", secrets.token_hex(16), _free_port()
    root.mkdir(parents=True, exist_ok=True)
    _settings(folder / "settings")
    env = {**{k: v for k, v in os.environ.items() if k not in (HEADLESS_ENV, "MPLBACKEND")}, **(env or {}),
           "JUPYTERLAB_SETTINGS_DIR": str(folder / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"), "JUPYTER_RUNTIME_DIR": str(folder / "rt")}
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--ServerApp.token={token}",
           f"--ServerApp.root_dir={root}"]
    log = (folder / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    served = Lab(f"http://127.0.0.1:{port}", token, root)
    try:
        for _ in range(120):
            try:
                get(f"{served.base}/api/status?token={token}")
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("jupyter lab stopped: " + (folder / "lab.log").read_text()[-2000:]) from None
                time.sleep(0.5)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def page(width: int = 1400, height: int = 1000):
    """A Chromium page (``(page, page_errors)``), every wait at most :data:`TIMEOUT_MS`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # root in CI: no sandbox; containers often have a tiny /dev/shm: Chromium's shared memory in /tmp
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-dev-shm-usage"])
        pg = browser.new_page(viewport={"width": width, "height": height})
        errors = []
        pg.on("pageerror", lambda err: errors.append(str(err)))
        pg.set_default_timeout(TIMEOUT_MS)
        try:
            yield pg, errors
        finally:
            browser.close()


def with_run_config(source: Path, run_json: Path) -> tuple[dict, int]:
    """Notebook ``source`` with its parameters cell pointing at ``run_json``, and its code-cell count."""
    nb = json.loads(Path(source).read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    text = "".join(params["source"])
    if "run_config = None" not in text:
        raise ValueError(f"{source}: its parameters cell has no 'run_config = None' to point at a run")
    params["source"] = text.replace("run_config = None", f"run_config = {str(run_json)!r}", 1)
    return nb, sum(c["cell_type"] == "code" for c in nb["cells"])


def open_notebook(pg, served: Lab, name: str) -> None:
    """Open ``name`` in a fresh workspace (``?reset``) and wait for its kernel to be idle."""
    pg.goto(f"{served.base}/lab/tree/{name}?reset&token={served.token}")
    pg.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    deadline = time.time() + 120
    while time.time() < deadline:
        if [s["kernel"]["execution_state"] for s in served.sessions() if s["path"].endswith(name)] == ["idle"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{name}: no idle kernel after 120 s")


def menu(pg, top: str, item: str) -> None:
    pg.click(f".lm-MenuBar-itemLabel:text-is('{top}')")
    pg.click(f".lm-Menu-itemLabel:text-is('{item}')")


def prompts(pg) -> list[str]:
    return [t.strip() for t in pg.locator(".jp-NotebookPanel:visible .jp-CodeCell .jp-InputPrompt").all_inner_texts()]


def outputs(pg) -> str:
    return "\n".join(pg.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").all_inner_texts())


def wait_all_ran(pg, n_code: int) -> None:
    """Until every code cell shows an execution count, or a cell failed (Run All stops there)."""
    deadline = time.time() + TIMEOUT_MS / 1000
    while time.time() < deadline:
        if len([p for p in prompts(pg) if re.fullmatch(r"\[\d+\]:", p)]) == n_code or ERROR in outputs(pg):
            return
        time.sleep(1)
    raise AssertionError(f"Run All did not finish in {TIMEOUT_MS // 1000} s: prompts {prompts(pg)}")


def explorer_state(pg) -> tuple[str, str]:
    """The explorer's readout line and its figure (the PNG's data URL)."""
    out = pg.locator(".widget-output").last
    text = next((t for t in out.inner_text().splitlines() if t.startswith("accuracy")), "")
    return text, out.locator("img").last.get_attribute("src")


def run_all(pg, served: Lab, source: Path, run_json: Path) -> str:
    """Copy notebook ``source`` (pointed at ``run_json``) into the lab, open it, Run All Cells, and
    return what its cells show; raises when a cell failed."""
    nb, n_code = with_run_config(source, run_json)
    (served.root / Path(source).name).write_text(json.dumps(nb))
    open_notebook(pg, served, Path(source).name)
    menu(pg, "Run", "Run All Cells")
    wait_all_ran(pg, n_code)
    shown = outputs(pg)
    if ERROR in shown:
        raise AssertionError(shown[shown.find(ERROR) - 200:][:3000])
    return shown


def lab_run_config(run_json: Path, work: Path) -> Path:
    """A copy of the run ``run_json`` for a notebook opened in the lab: the same recipes and store, its
    figures and tables under ``work`` (never over the run's own), no store log."""
    from .config import RunConfig

    work = Path(work).resolve()  # the kernel runs in notebooks/: a relative run.json or figures folder would miss
    work.mkdir(parents=True, exist_ok=True)
    cfg = RunConfig.read(run_json).replace(figures=str(work / "figures"), tables=str(work / "figures"),
                                           notebook="", folder=None, store_log=None)
    return cfg.write(work / "run.json")


def shoot(pg, served: Lab, run_json: Path, out: Path,
          before: Path | None = None) -> tuple[tuple[str, str], tuple[str, str]]:
    """In the open lab: notebook 03 run on ``run_json``, its attack explorer's step size moved one notch
    (keyboard on the slider handle, as a reader does), the page saved as ``out`` with the explorer at
    the top (and as ``before`` ahead of the move, when given). Returns the explorer's (readout, image)
    before and after the move. When no figure comes within a minute, saves ``explorer_missing.png``
    beside ``out`` and raises with what the cell shows."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from .paths import ROOT

    run_all(pg, served, next((ROOT / "notebooks").glob("03_*.ipynb")), run_json)
    cell = pg.locator(".jp-NotebookPanel:visible .jp-CodeCell").filter(has_text="attack_explorer(").last
    try:
        pg.locator(".widget-output img").last.wait_for(state="attached", timeout=60_000)
    except PlaywrightTimeout:
        pg.screenshot(path=str(Path(out).with_name("explorer_missing.png")))
        shown = cell.locator(".jp-Cell-outputArea").first.inner_text()
        raise AssertionError(f"the explorer drew no figure within a minute of Run All; its cell shows {shown[:500]!r}")
    first = explorer_state(pg)
    cell.evaluate("e => e.scrollIntoView({block: 'start'})")  # the sliders at the top, the figure below
    if before is not None:
        pg.screenshot(path=str(before))
    handle = pg.locator(".widget-slider .noUi-handle").nth(1)  # the step size, one notch up
    handle.focus()
    handle.press("ArrowRight")
    deadline = time.time() + 60
    while explorer_state(pg)[0] == first[0] and time.time() < deadline:
        time.sleep(0.5)
    cell.evaluate("e => e.scrollIntoView({block: 'start'})")  # the sliders at the top, the figure below
    time.sleep(0.5)
    pg.screenshot(path=str(out))
    return first, explorer_state(pg)


def explorer_shot(run_json: Path, out: Path, work: Path) -> str:
    """The README's picture: :func:`shoot` on the run ``run_json`` describes (its models and reports
    come from the store the run filled; the lab's own figures and tables go under ``work``). Returns
    one line saying what was done or why not (no browser: nothing is written)."""
    why = missing()
    if why:
        return f"README picture not refreshed: {why}"
    t0 = time.perf_counter()
    with lab(work) as served, page() as (pg, errors):
        shoot(pg, served, lab_run_config(run_json, work), out)
        if errors:
            return f"README picture taken with page errors: {errors[:2]}"
    return f"README picture {Path(out).name}: notebook 03's explorer in JupyterLab ({time.perf_counter() - t0:.0f} s)"


def readme_shot(folder: Path, manifest: dict) -> str | None:
    """:func:`explorer_shot` for a finished run whose notebook 03 ran: the picture goes into the run's
    figures (``03_lab_explorer.png``, an output of notebook 03), so a published run publishes it with
    the rest. ``None`` when the run has no notebook 03 or is a dry run; else the line to print."""
    from .plots import record

    name = next((e["name"] for e in manifest["notebooks"] if e["name"].startswith("03_")), None)
    if name is None or manifest.get("dry_run"):
        return None
    folder = Path(folder)
    out = folder / "figures" / SHOT
    try:
        said = explorer_shot(folder / "run.json", out, folder / "lab_shot")
    except Exception as err:  # a picture must not fail the run that made the results
        return f"README picture not refreshed: {type(err).__name__}: {str(err).splitlines()[0][:300]}"
    if out.is_file():
        record(folder / "figures", Path(SHOT).stem, {
            "kind": "figure", "files": [SHOT], "n": None,
            "caption": "notebook 03's attack explorer in JupyterLab (Chromium, driven by lib.lab_browser), "
                       "its step size moved one notch"}, notebook=name)
    return said
