"""Where the workbook reads and writes.

Every location can be redirected with an environment variable so that tests and sweeps
write into their own folders instead of the user's ``figures/`` and ``data/``.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "MANIFEST.json"  # the published run's record in figures/: written by lib.publish, read by lib.runs


def _dir(env: str, default: Path) -> Path:
    path = Path(os.environ.get(env, default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Root under which real datasets live (``data/<name>``); ``WORKBOOK_DATA`` overrides."""
    return _dir("WORKBOOK_DATA", ROOT / "data")


def store_dir() -> Path:
    """The artifact cache (``data/store``); ``WORKBOOK_STORE`` overrides."""
    return _dir("WORKBOOK_STORE", ROOT / "data" / "store")


def figures_dir() -> Path:
    """The published figures and tables (``figures/``), written only by a whole workbook run
    (:mod:`lib.publish`); ``WORKBOOK_FIGURES`` overrides."""
    return _dir("WORKBOOK_FIGURES", ROOT / "figures")


def published_dir(profile: str) -> Path:
    """Where a whole run of ``profile`` publishes: :func:`figures_dir` for the smoke profile,
    ``figures/<profile>/`` for the others (:mod:`lib.publish` writes it, the scheduler reads it)."""
    return figures_dir() if profile == "smoke" else figures_dir() / profile


def outputs_dir() -> Path:
    """Where a notebook opened outside a workbook run (JupyterLab, papermill by hand) writes its
    figures and tables: ``runs/interactive/``, never ``figures/``; ``WORKBOOK_OUTPUTS`` overrides."""
    return _dir("WORKBOOK_OUTPUTS", ROOT / "runs" / "interactive")


def measured_dir() -> Path:
    """Committed tables of the separate real-data commands (``measurements/``, e.g. ``python -m
    lib.studies.transfer_real``), which notebooks read; ``WORKBOOK_MEASURED`` overrides. Not
    ``figures/``: that holds only what the workbook run itself wrote."""
    return _dir("WORKBOOK_MEASURED", ROOT / "measurements")


def docs_dir() -> Path:
    """Where the generated results page goes (``docs/``); ``WORKBOOK_DOCS`` overrides."""
    return _dir("WORKBOOK_DOCS", ROOT / "docs")


def tables_dir() -> Path:
    """Tables a notebook opened outside a workbook run writes (CSV + Markdown): ``WORKBOOK_TABLES``,
    else :func:`outputs_dir`."""
    return _dir("WORKBOOK_TABLES", outputs_dir())


def shared_dir() -> Path | None:
    """The team's ``../shared`` folder beside the checkout, or ``None`` in a user's clone."""
    path = Path(os.environ.get("WORKBOOK_SHARED", ROOT.parent / "shared"))
    return path if path.is_dir() else None
