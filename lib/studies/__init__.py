"""Study recipes, one module per notebook: its recipe (one dict with ``smoke`` and ``full``
entries; every number once, read where it is used), its data and model set-up through the store,
and its headline checks. A notebook is a story over one study module.

=======================  =========================  =======================================
notebook                 module                     holds
=======================  =========================  =======================================
``00_datasets``          :mod:`.datasets`           what the dataset figures draw
``01_pretrained_bases``  :mod:`.bases`              bases A and B, ImageNet bases
``02_transfer_finetune`` :mod:`.transfer`           teacher, students, attacks, headline,
                                                    seeds (figures: ``transfer_figures``;
                                                    GTSRB ablation: ``transfer_real``)
``03_adversarial_...``   :mod:`.adversarial`        robust models, evaluation ladder, headline
``04_continual_...``     :mod:`.continual`          task sequence, continual runs, attacks, headline
``05_backdoor_poison``   :mod:`.backdoor`           backdoored / clean / label-flip teachers,
                                                    students per method (cached for notebook 06);
                         :mod:`.backdoor_report`    tables, findings, generated paragraphs;
                         :mod:`.backdoor_data`      the real-image profiles' data
``06_attention_maps``    :mod:`.attention`          model zoo of 02 and 05, attention table,
                                                    checks (figures: ``attention_figures``;
                                                    GTSRB check: ``attention_real``)
``07_unrestricted_gan``  :mod:`.unrestricted`       AC-GAN, unrestricted examples, augmentation
=======================  =========================  =======================================

Studies sit on top: they import methods and infrastructure, never the other way round.

**One run configuration.** Each study module names its notebook parameters in ``PARAMS``
(notebook parameter -> recipe key), with a prefix of its own (``base_epochs``, ``adv_epochs``) so a
name means one thing in the whole workbook. :func:`check_params` validates a run's parameters
against every study's recipe before any notebook runs (unknown names and wrong types are one-line
errors), and ``python -m lib.workbook`` hands the validated set to every notebook's kernel in
``WORKBOOK_CONFIG``: :func:`recipe` applies it to every study's recipe, so notebook 02 asking for
base A gets the base that notebook 01 trained in the same run (``-p base_epochs=3`` reaches both).
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import os
import pkgutil
import types
from dataclasses import dataclass

# notebook number -> study module (those not written yet are skipped)
STUDIES = {"00": "datasets", "01": "bases", "02": "transfer", "03": "adversarial", "04": "continual",
           "05": "backdoor", "06": "attention", "07": "unrestricted"}
CONFIG_ENV = "WORKBOOK_CONFIG"
# run-wide parameters: not a recipe entry of one study
RUN_PARAMS = {"profile": "smoke or full (every notebook)",
              "seeds": "repeats of the training parts, in every study whose recipe has 'seeds'",
              "retrain": "retrain every model and recompute every result this run uses"}


class ConfigError(ValueError):
    """A run parameter that no study knows, or a value of the wrong type."""


@dataclass(frozen=True)
class Param:
    name: str       # the notebook parameter (unique in the workbook)
    study: str      # the study module's name
    notebook: str   # its notebook's number
    key: str        # the recipe key it sets


def study_modules() -> dict[str, object]:
    """Notebook number -> imported study module, for the studies that exist."""
    found = {}
    for number, name in STUDIES.items():
        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            found[number] = importlib.import_module(f"{__name__}.{name}")
    return found


def notebook_needs() -> dict[str, set[str]]:
    """Notebook number -> the earlier notebooks whose models and results it asks the store for.

    Read from the imports, so it cannot go stale: a study module, or one of its helpers
    (``<study>_*``), that holds another study's module or a function, class or object defined
    there asks for that notebook's models with this run's recipe (notebook 06 asks for 02's
    students and 05's backdoored models, and both ask for 01's bases). Closed transitively.
    ``python -m lib.workbook --jobs N`` starts a notebook only after these have finished, so two
    kernels never train the same model at once."""
    family = {}  # module name -> its notebook's number
    for info in pkgutil.iter_modules(__path__):
        for number, name in STUDIES.items():
            if info.name == name or info.name.startswith(name + "_"):
                family[f"{__name__}.{info.name}"] = number
    direct: dict[str, set[str]] = {number: set() for number in set(family.values())}
    for module_name, number in family.items():
        for value in vars(importlib.import_module(module_name)).values():
            owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            if family.get(owner, number) != number:
                direct[number].add(family[owner])
    closed = {}
    for number in direct:
        seen, todo = set(), list(direct[number])
        while todo:
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo += direct[other]
        closed[number] = seen - {number}
    return closed


def parameters() -> dict[str, Param]:
    """Every notebook parameter of the workbook (``PARAMS`` of each study module)."""
    params: dict[str, Param] = {}
    for number, module in study_modules().items():
        for name, key in getattr(module, "PARAMS", {}).items():
            if name in params or name in RUN_PARAMS:
                raise RuntimeError(f"notebook parameter {name!r} is declared twice ({module.__name__})")
            params[name] = Param(name, module.__name__.rsplit(".", 1)[1], number, key)
    return params


def _type_ok(value, default) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_params(params: dict, profile: str = "smoke") -> dict:
    """``params`` (notebook parameter -> value) checked against the studies' recipes for ``profile``.

    Returns them with ints given for float entries made floats. Raises :class:`ConfigError` with
    one line naming the bad key and the valid ones (or the expected type)."""
    known = parameters()
    modules = {m.__name__.rsplit(".", 1)[1]: m for m in study_modules().values()}
    out = {}
    for name, value in params.items():
        if name == "profile":
            continue
        if name == "seeds":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"seeds must be a whole number >= 1, got {value!r}")
            out[name] = value
            continue
        if name == "retrain":
            if not isinstance(value, bool):
                raise ConfigError(f"retrain must be True or False, got {value!r}")
            out[name] = value
            continue
        if name not in known:
            raise ConfigError(f"unknown parameter {name!r}; valid: {', '.join(sorted(RUN_PARAMS) + sorted(known))}")
        p = known[name]
        table = modules[p.study].RECIPE
        profiles = [prof for prof in table if p.key in table[prof]]
        if profile not in profiles:
            raise ConfigError(f"{name} is not used by the {profile!r} profile (only by {', '.join(profiles)})")
        default = table[profile][p.key]
        if not _type_ok(value, default):
            kind = type(default).__name__
            article = "an" if kind[0] in "aeiou" else "a"
            raise ConfigError(f"{name} must be {article} {kind} like the recipe's {default!r}, "
                              f"got {value!r} ({type(value).__name__})")
        out[name] = float(value) if isinstance(default, float) and isinstance(value, int) else value
    return out


def run_config() -> dict:
    """The run configuration handed down by ``python -m lib.workbook`` (empty outside a run)."""
    text = os.environ.get(CONFIG_ENV)
    return json.loads(text) if text else {}


def _run_overrides(table: dict, profile: str) -> dict:
    """Recipe overrides of the current run for the study whose ``RECIPE`` is ``table``."""
    config = run_config().get("params", {})
    if not config:
        return {}
    owner = next((m for m in study_modules().values() if getattr(m, "RECIPE", None) is table), None)
    if owner is None:
        return {}
    names = getattr(owner, "PARAMS", {})
    out = {key: config[name] for name, key in names.items() if name in config}
    if "seeds" in config and "seeds" in table[profile]:
        out["seeds"] = config["seeds"]
    return {k: v for k, v in out.items() if k in table[profile]}


def recipe(table: dict, profile: str = "smoke", **overrides) -> dict:
    """A deep copy of ``table[profile]`` with the run's configuration (see the module docstring)
    and then ``overrides`` applied; ``None`` values keep the recipe's (a notebook parameter left at
    ``None``). An unknown key is an error naming the valid ones, not silently ignored."""
    if profile not in table:
        raise ValueError(f"profile must be one of {sorted(table)}, got {profile!r}")
    cfg = copy.deepcopy(table[profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"unknown recipe keys {unknown}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy(_run_overrides(table, profile)))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg
