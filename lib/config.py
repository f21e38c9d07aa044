"""The run's configuration as one value: :class:`RunConfig`.

A run (``python -m lib.workbook``, or one notebook opened in JupyterLab) is described by one
``RunConfig``: its profile, the validated run parameters, the resolved recipe of every notebook's
study, and where its outputs go (figures, tables, the store log) and whether it retrains. It is
built once, by ``lib.workbook`` or by a notebook's first cell (:func:`lib.studies.open_run`),
written to ``run.json`` in the run folder, and handed to each notebook as the papermill
parameter ``run_config`` (the path of that file). Nothing below the entry points reads the run's
settings from the environment: the infrastructure that needs them (the store's log and retrain
flag, the figures' folder) reads the value the entry point made current with :func:`activate`.

The only environment variables are user-facing overrides of *where* things live (``WORKBOOK_DATA``,
``WORKBOOK_STORE``, ``WORKBOOK_FIGURES``, ``WORKBOOK_OUTPUTS``, ``WORKBOOK_TABLES``, ``WORKBOOK_SHARED``, read in
:mod:`lib.paths`) and process settings (``OMP_NUM_THREADS``, ``WORKBOOK_STALL_SECONDS``,
``WORKBOOK_CPU_BF16``), none of which changes a recipe. ``WORKBOOK_CPU_BF16`` does change the store
keys of trainings whose recipe says ``"amp": "auto"`` (it decides their precision:
:func:`lib.store.keys.config_hash`).
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .paths import outputs_dir, tables_dir

PROFILES = ("smoke", "real", "full")
RUN_FILE = "run.json"


class ConfigError(ValueError):
    """A run parameter that no study knows, a value of the wrong type or range, or a bad run file."""


@dataclass(frozen=True)
class RunConfig:
    """One run's configuration (see the module docstring). ``recipes`` maps a notebook's number
    (``"02"``) to its study's resolved recipe; ``params`` are the run parameters it came from."""

    profile: str = "smoke"
    params: dict = field(default_factory=dict)
    recipes: dict = field(default_factory=dict)
    run: str = ""                 # the run's name ("" outside a workbook run)
    folder: str | None = None     # the run folder (None: a notebook opened without a run.json)
    figures: str | None = None    # where figures go (None: lib.paths.outputs_dir())
    tables: str | None = None     # where tables go (None: lib.paths.tables_dir())
    store_log: str | None = None  # where the store logs what it hands out (None: nowhere)
    retrain: bool = False         # retrain every model and recompute every result this run uses
    notebook: str = ""            # the notebook file this process runs ("" outside one)
    dry_run: bool = False         # a dry run (lib.dryrun): random weights, fixtures, asserts reported

    def recipe(self, number: str) -> dict:
        """A deep copy of notebook ``number``'s resolved recipe (a KeyError names the known ones)."""
        if number not in self.recipes:
            raise KeyError(f"no recipe for notebook {number!r} in this run; known: {sorted(self.recipes)}")
        return copy.deepcopy(self.recipes[number])

    def figures_dir(self) -> Path:
        path = Path(self.figures) if self.figures else outputs_dir()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def tables_dir(self) -> Path:
        if self.tables:
            path = Path(self.tables)
        elif self.figures:
            path = Path(self.figures)
        else:
            return tables_dir()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def replace(self, **changes) -> "RunConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path) -> Path:
        """Write this value as JSON to ``path`` (atomically: a temporary file, then a rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path) -> "RunConfig":
        """The value written by :meth:`write`; a missing file or unknown entry is a ConfigError."""
        path = Path(path)
        if path.is_dir():
            path = path / RUN_FILE
        if not path.is_file():
            raise ConfigError(f"run configuration {path} does not exist (a run folder holds {RUN_FILE})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"run configuration {path} is not valid JSON: {err}") from err
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known) if isinstance(data, dict) else ["<not a table>"]
        if unknown:
            raise ConfigError(f"run configuration {path} has unknown entries {unknown}; known: {sorted(known)}")
        if data.get("profile") not in PROFILES:
            raise ConfigError(f"run configuration {path}: profile must be one of {PROFILES}, "
                              f"got {data.get('profile')!r}")
        return cls(**data)


def read_table(path, what: str = "config file") -> dict:
    """A flat table of name = value from a TOML, YAML or JSON file (chosen by its suffix): run
    parameters (``--config``) or a sweep file; ``what`` names it in the errors. Anything wrong with
    the file (missing, a folder, not text, malformed, a YAML tag that would build a Python object,
    not a table) is one :class:`ConfigError` naming the file and, where the parser says, the line."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p} is a folder; give the file (.toml, .yaml, .yml or .json)")
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    if p.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"{what} {p} must end in .toml, .yaml, .yml or .json")
    try:
        data = _parse(p.read_text(encoding="utf-8"), p.suffix)
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"{what} {p} cannot be read: {err.strerror or err}") from None
    except ValueError as err:  # tomllib.TOMLDecodeError, json.JSONDecodeError and yaml.YAMLError (below)
        problem = " ".join(str(err).split())
        raise ConfigError(f"{what} {p} is not valid {p.suffix.lstrip('.').upper()}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {p} must hold a table of name = value, not a {type(data).__name__}")
    return data


def _parse(text: str, suffix: str):
    """The data of a config file's ``text``; every parser's error as a ValueError."""
    if suffix == ".toml":
        import tomllib
        return tomllib.loads(text)
    if suffix == ".json":
        return json.loads(text)
    import yaml
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as err:  # also the refusal of !!python/... tags (safe_load builds no objects)
        raise ValueError(str(err)) from None


_CURRENT: list[RunConfig] = [RunConfig()]


def activate(config: RunConfig) -> RunConfig:
    """Make ``config`` the process's current run (what the store and the figures read); returns it.
    Called by the entry points only: :func:`lib.studies.open_run` and ``lib.workbook``."""
    if not isinstance(config, RunConfig):
        raise TypeError(f"activate() takes a RunConfig, got {type(config).__name__}")
    _CURRENT[0] = config
    return config


def current() -> RunConfig:
    """The current run's configuration (the defaults until an entry point activates one)."""
    return _CURRENT[0]
