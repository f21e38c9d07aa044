"""Study recipes and stories, one module per notebook: its recipe (one dict per profile; every
number once, read where it is used), its evaluation, tables, figures, generated paragraphs and
headline checks. A notebook is a story over one study module.

=======================  =========================  =======================================
notebook                 module                     holds
=======================  =========================  =======================================
``00_datasets``          :mod:`.datasets`           what the dataset figures draw
``01_pretrained_bases``  :mod:`.bases`              the bases' recipe, ImageNet-R, shared check
``02_transfer_finetune`` :mod:`.transfer`           students, attacks, headline, seeds
                                                    (figures: ``transfer_figures``;
                                                    GTSRB ablation: ``transfer_real``)
``03_adversarial_...``   :mod:`.adversarial`        evaluation ladder, headline
``04_continual_...``     :mod:`.continual`          continual runs, attacks, headline
``05_backdoor_poison``   :mod:`.backdoor`           recipe and method table (report:
                                                    ``backdoor_report``)
``06_attention_maps``    :mod:`.attention`          attention table, checks (figures:
                                                    ``attention_figures``; GTSRB: ``attention_real``)
``07_unrestricted_gan``  :mod:`.unrestricted`       unrestricted examples, augmentation
``08_backdoor_defences`` :mod:`.defences`           recipe (tables and findings:
                                                    ``defences_report``; figures:
                                                    ``defences_figures``)
=======================  =========================  =======================================

Studies sit on top: they import artifacts (:mod:`lib.artifacts`), methods and infrastructure,
never another study and never the other way round. Each declares ``NEEDS`` (the notebooks whose
models it reuses; the scheduler of ``python -m lib.workbook --jobs N`` reads it).

**One run configuration.** A study's notebook parameters are its recipe keys with the study's
``PREFIX`` (``adv_epochs`` sets the adversarial study's ``epochs``; a key that already starts with
the prefix keeps its name), so a name means one thing in the whole workbook. :func:`check_params`
validates a run's parameters against every study's recipe before any notebook runs (unknown
parameters, wrong types, values out of range or names no method has (:mod:`.rules`) and broken
cross-key rules are one-line errors); :func:`resolve_recipes` turns them into every notebook's
recipe, held by the run's :class:`lib.config.RunConfig`. A notebook opens with :func:`open_run`
(its run's ``run.json``, else the defaults) and ``run.recipe("NN")``: notebook 06 asking for
notebook 02's students asks with the recipe notebook 02 ran with.
"""
from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass

from ..config import ConfigError, RunConfig, activate
from ..paths import ROOT
from .rules import value_problem

__all__ = ["STUDIES", "RUN_PARAMS", "ConfigError", "Param", "check_params", "notebook_needs", "notebook_params",
           "open_run", "parameters", "recipe", "resolve_recipes", "run_config_for", "study_modules", "with_needs"]

# notebook number -> study module
STUDIES = {"00": "datasets", "01": "bases", "02": "transfer", "03": "adversarial", "04": "continual",
           "05": "backdoor", "06": "attention", "07": "unrestricted", "08": "defences"}
# run-wide parameters: not a recipe entry of one study
RUN_PARAMS = {"profile": "smoke, real or full (every notebook)",
              "seeds": "repeats of the training parts, in every study whose recipe has 'seeds'",
              "retrain": "retrain every model and recompute every result this run uses"}


@dataclass(frozen=True)
class Param:
    name: str       # the notebook parameter (unique in the workbook)
    study: str      # the study module's name
    notebook: str   # its notebook's number
    key: str        # the recipe key it sets


def notebook_params(prefix: str, table: dict) -> dict[str, str]:
    """Notebook parameter -> recipe key for every key of every profile of ``table``: the key with
    ``prefix_`` in front, or the key itself when it already starts with it (``gan_steps``)."""
    out: dict[str, str] = {}
    for key in dict.fromkeys(k for profile in table.values() for k in profile):
        name = key if key.startswith(prefix + "_") else f"{prefix}_{key}"
        if out.get(name, key) != key:
            raise RuntimeError(f"recipe keys {out[name]!r} and {key!r} both make the parameter {name!r}")
        out[name] = key
    return out


def study_modules() -> dict[str, object]:
    """Notebook number -> imported study module."""
    return {number: importlib.import_module(f"{__name__}.{name}") for number, name in STUDIES.items()}


def notebook_needs() -> dict[str, set[str]]:
    """Notebook number -> the earlier notebooks whose models and results it asks the store for:
    each study's ``NEEDS``, closed transitively. ``python -m lib.workbook --jobs N`` starts a
    notebook only after these have finished, so two kernels never train the same model at once."""
    direct = {number: set(getattr(module, "NEEDS", ())) for number, module in study_modules().items()}
    closed = {}
    for number in direct:
        seen, todo = set(), list(direct[number])
        while todo:
            other = todo.pop()
            if other not in seen:
                seen.add(other)
                todo += direct.get(other, ())
        closed[number] = seen - {number}
    return closed


def parameters() -> dict[str, Param]:
    """Every notebook parameter of the workbook (each study's ``PARAMS``)."""
    params: dict[str, Param] = {}
    for number, module in study_modules().items():
        for name, key in module.PARAMS.items():
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
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _table_profile(table: dict, profile: str) -> str:
    return profile if profile in table else "smoke"


def without_recipe(profile: str, numbers) -> list[str]:
    """The notebooks of ``numbers`` whose study has no recipe of its own for ``profile`` (it would
    run its smoke recipe): a whole run of ``profile`` refuses them rather than run smoke silently."""
    modules = study_modules()
    return sorted(n for n in numbers if n in modules and profile not in modules[n].RECIPE)


def check_params(params: dict, profile: str = "smoke") -> dict:
    """``params`` (notebook parameter -> value) checked against the studies' recipes for ``profile``.

    Returns them with ints given for float entries made floats. Raises :class:`ConfigError` with
    one line naming the bad key and the valid ones, or the expected type, or the range or names
    the value may take (:mod:`lib.studies.rules`)."""
    known = parameters()
    modules = study_modules()
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
        table = modules[p.notebook].RECIPE
        prof = _table_profile(table, profile)
        if p.key not in table[prof]:
            profiles = [k for k in table if p.key in table[k]]
            raise ConfigError(f"{name} is not used by the {profile!r} profile (only by {', '.join(profiles)})")
        default = table[prof][p.key]
        if not _type_ok(value, default):
            kind = type(default).__name__
            article = "an" if kind[0] in "aeiou" else "a"
            raise ConfigError(f"{name} must be {article} {kind} like the recipe's {default!r}, "
                              f"got {value!r} ({type(value).__name__})")
        problem = value_problem(name, p.key, value, p.study, getattr(modules[p.notebook], "METHODS", None))
        if problem:
            raise ConfigError(problem)
        out[name] = float(value) if isinstance(default, float) and isinstance(value, int) else value
    return out


def recipe(table: dict, profile: str = "smoke", **overrides) -> dict:
    """A deep copy of ``table[profile]`` with ``overrides`` applied; ``None`` values keep the
    recipe's (a notebook parameter left at ``None``). An unknown key is an error naming the valid
    ones, not silently ignored. Pure: the same arguments give the same dict, in a run or not."""
    if profile not in table:
        raise ValueError(f"profile must be one of {sorted(table)}, got {profile!r}")
    cfg = copy.deepcopy(table[profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"unknown recipe keys {unknown}; known: {sorted(cfg)}")
    cfg.update(copy.deepcopy({k: v for k, v in overrides.items() if v is not None}))
    return cfg


def resolve_recipes(profile: str, params: dict) -> dict[str, dict]:
    """Every notebook's recipe for ``profile`` with the run parameters ``params`` (already checked)
    applied; each study's cross-key rules (its ``check(cfg)``, if any) raise ConfigError. A study
    that reuses other notebooks' models (``NEEDS``) gets their recipes under ``cfg["needs"]``, so
    it asks the store for exactly the models those notebooks trained in this run."""
    out = {}
    for number, module in study_modules().items():
        table = module.RECIPE
        prof = _table_profile(table, profile)
        given = {key: params[name] for name, key in module.PARAMS.items() if name in params}
        if "seeds" in params and "seeds" in table[prof]:
            given.setdefault("seeds", params["seeds"])
        cfg = recipe(table, prof, **{k: v for k, v in given.items() if k in table[prof]})
        if hasattr(module, "check"):
            problem = module.check(cfg)
            if problem:
                raise ConfigError(f"notebook {number} ({module.__name__.rsplit('.', 1)[1]}): {problem}")
        out[number] = cfg
    for number, module in study_modules().items():  # the recipes of the notebooks it reuses, as they ran
        if module.NEEDS:
            out[number]["needs"] = {n: copy.deepcopy(out[n]) for n in module.NEEDS}
    return out


def with_needs(cfg: dict, needs, profile: str = "smoke", params: dict | None = None) -> dict:
    """``cfg`` with ``cfg["needs"]``: the recipes of the notebooks ``needs`` for ``profile`` and the run
    parameters ``params`` (default none), as :func:`resolve_recipes` makes them (a study's
    ``recipe()`` outside a run: tests, benchmarks, a user's own script)."""
    if needs:
        resolved = resolve_recipes(profile, check_params(dict(params or {}), profile))
        cfg["needs"] = {n: resolved[n] for n in needs}
    return cfg


def run_config_for(profile: str = "smoke", params: dict | None = None, **where) -> RunConfig:
    """A :class:`RunConfig` for ``profile`` and ``params`` (checked here), every recipe resolved;
    ``where`` sets the value's other fields (run, folder, figures, tables, store_log, ...)."""
    params = check_params(dict(params or {}), profile)
    return RunConfig(profile=profile, params=params, recipes=resolve_recipes(profile, params),
                     retrain=bool(params.get("retrain", False)), **where)


def _notebook_file(number: str) -> str:
    found = sorted((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
    return found[0].name if found else ""


def open_run(study, run_config=None, namespace: dict | None = None) -> RunConfig:
    """The configuration a notebook over ``study`` runs with, made current (:func:`lib.config.activate`).

    ``run_config``: a run's ``run.json`` (its path or its folder, as ``python -m lib.workbook``
    passes it), a :class:`RunConfig`, or ``None`` for this profile's defaults. ``namespace``: the
    notebook's ``globals()``; its ``profile`` (without a run file) and its parameters-cell knobs
    that are not ``None`` (names in ``study.PARAMS``, and the run-wide ``seeds`` and ``retrain``)
    are applied on top, checked like ``-p``.
    Prints what it used, so an executed notebook says where its configuration came from."""
    namespace = namespace or {}
    number = next(n for n, name in STUDIES.items() if study.__name__ == f"{__name__}.{name}")
    names = [*study.PARAMS, "seeds", "retrain"]  # its own knobs and the run-wide ones
    knobs = {k: namespace[k] for k in names if namespace.get(k) is not None}
    if run_config is None:
        base = RunConfig(profile=namespace.get("profile", "smoke"))
        source = f"no run.json given: the {base.profile!r} profile's defaults"
    else:
        base = run_config if isinstance(run_config, RunConfig) else RunConfig.read(run_config)
        source = f"run {base.run or '(unnamed)'} ({base.profile}) from {run_config}"
        if namespace.get("profile", base.profile) != base.profile:
            source += f"; this notebook's profile={namespace['profile']!r} is ignored (the run's wins)"
    if knobs or not base.recipes:
        params = {**base.params, **check_params(knobs, base.profile)}
        base = base.replace(params=params, recipes=resolve_recipes(base.profile, params))
    if knobs:
        source += "; set in this notebook: " + ", ".join(f"{k}={v!r}" for k, v in knobs.items())
    run = activate(base.replace(notebook=_notebook_file(number)))
    print(f"[config] {source}; figures and tables go to {run.figures_dir()}"
          + (f" and {run.tables_dir()}" if run.tables_dir() != run.figures_dir() else ""))
    if run.dry_run:  # random weights on fixtures: every headline check is run, none is enforced
        from .. import read_log, reported_asserts
        from ..paths import store_dir
        if run.folder:
            reported_asserts.install(f"{run.folder}/dry_run_asserts.jsonl")
            read_log.watch_reads(f"{run.folder}/dry_run", f"{run.folder}/{read_log.READS_LOG}")
        print(f"[config] DRY RUN of the {run.profile!r} profile: random weights, fixtures, shrunk budgets "
              f"(store {store_dir()}); asserts are reported, not enforced; no number here means anything")
    return run
