"""What each recipe value may be: a declared type and range (or set of names) per recipe key.

:func:`lib.studies.check_params` checks a run parameter's type against the recipe's value; this
module adds the range or the names a value may take, so that ``-p adv_eps=300``, ``adv_epochs=-3``,
``base_lr=-1.0`` or ``bd_methods=['nonexistent']`` stop before any notebook runs with one line
naming the parameter, the bad value and what is allowed.

A rule is found by the recipe key's name (:data:`RULES`, first match wins): ``eps`` keys are
budgets in pixel units (``[0, 1]``), ``epochs``/``steps``/``batch``/``n_*`` are whole numbers >= 1,
learning rates are > 0, rates, ratios and margins are in ``[0, 1]``, seeds >= 0. Keys that name
things take their names from the code that uses them (:func:`_names`): methods from the study
module's ``METHODS``, architectures from :data:`lib.models.ARCHS`, datasets from
:data:`lib.data.real.REAL_DATASETS`, trigger placement from :data:`lib.backdoor.triggers.WHERE`.
Nested tables (``method_kw``: method -> options) are checked entry by entry with the same rules,
their keys against the study's methods. Every recipe key of every study has a rule
(``tests/test_workbook_bad_inputs.py`` checks), so a new key without one fails a test instead of
going unchecked.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A value's allowed range (numbers) or names (strings); lists are checked per element."""

    what: str                     # how the allowed values read in an error ("a whole number >= 1")
    kind: str = "number"          # number | int | name | text | table | any
    low: float | None = None
    high: float | None = None
    open_low: bool = False        # low itself not allowed
    open_high: bool = False
    names: str | None = None      # registry of allowed names (see _names)

    def problem(self, value) -> str | None:
        """Why number ``value`` breaks this rule (``None``: it does not); names, lists, tables and
        ``None`` (the recipe's "not set") are handled by :func:`value_problem`."""
        if self.kind in ("any", "text", "table", "name"):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return self.what
        if self.kind == "int" and not float(value).is_integer():
            return self.what
        if not math.isfinite(value):
            return self.what
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return self.what
        if self.high is not None and (value > self.high or (self.open_high and value == self.high)):
            return self.what
        return None


_UNIT = Rule("a number in [0, 1]", low=0.0, high=1.0)
_BUDGET = Rule("a budget in pixel units, in [0, 1] (8/255 is written 8/255)", low=0.0, high=1.0)
_POSITIVE_INT = Rule("a whole number >= 1", kind="int", low=1)
_COUNT0 = Rule("a whole number >= 0", kind="int", low=0)
_RATE = Rule("a number > 0 (a learning rate)", low=0.0, open_low=True)
_NONNEG = Rule("a number >= 0", low=0.0)
_METHODS = Rule("", kind="name", names="methods")

# (regex over the recipe key, rule): the first match wins
RULES: list[tuple[str, Rule]] = [
    (r"^seeds$", _POSITIVE_INT),
    (r"seed$", Rule("a whole number >= 0 (a random seed)", kind="int", low=0)),
    (r"eps_z$|z_bound$", _NONNEG),  # latent-space bounds of notebook 07, not pixels
    (r"_steps$", _POSITIVE_INT),  # before eps: large_eps_steps counts steps, it is no budget
    (r"(^|_)eps(_|$)", _BUDGET),
    (r"(^|_)lr(_|$)|lr_mult$", _RATE),
    (r"^momentum$", Rule("a number in [0, 1)", low=0.0, high=1.0, open_high=True)),
    (r"^(bn_dropout|shared)$", Rule("True or False", kind="any")),
    (r"trigger_size$|tolerance$", Rule("a number in (0, 1]", low=0.0, high=1.0, open_low=True)),
    (r"dropout$", Rule("a number in [0, 1)", low=0.0, high=1.0, open_high=True)),
    (r"^(translate|target)$", _COUNT0),
    (r"^(grow_factor|max_width)$", Rule("a number >= 1", low=1.0)),
    (r"epochs|iterations|rounds$|steps$|queries$|batch|size$|width$|z_dim$|n_critic$|every$|frequency$|^n_|per_class|"
     r"classes_per_task$|_classes$", _POSITIVE_INT),
    (r"rates?$|ratios?$|fraction$|frr$|^prune$|sparsities$|margin$|gap$|^min_(?!over)|^max_|allow_acc_loss$|ramp$|"
     r"gain$|forgetting$|drop$", _UNIT),
    (r"weight_decay$|^(alpha|beta|feat_weight|adv_weight|min_over_chance)$|weight_g$|^attack_lambda|noise$",
     _NONNEG),
    (r"(^|_)methods$", _METHODS),
    (r"threshold$", _NONNEG),
    (r"^imagenet_archs$|^(weights_)?arch$", Rule("", kind="name", names="archs")),
    (r"dataset$", Rule("", kind="name", names="datasets")),
    (r"^where$", Rule("", kind="name", names="where")),
    (r"^triggers?$", Rule("", kind="name", names="triggers")),
    (r"^base$", Rule("", kind="name", names="bases")),
    (r"^asserted$", Rule("", kind="name", names="asserted")),
    (r"^schedule$", Rule("onecycle, cosine, piecewise[:f1,f2,...], cyclic or None", kind="text")),
    (r"^(stage|stages|shared_data|data_root|weights)$", Rule("a name or path", kind="text")),
    (r"^(cfg|fc|classes|anb_ns)$", Rule("a list of whole numbers (or 'M' in cfg)", kind="any")),
    (r"_kw$|^needs$|_recipe$|^yours$", Rule("a table", kind="table")),
]


def _names(registry: str, study: str, key: str = "", methods=None) -> tuple | None:
    """The names a value may take (``methods``: the study module's ``METHODS``); registries are
    imported where used, so that reading this module imports no method."""
    if registry == "methods" and study == "attention":  # it shows notebook 02's and 05's students
        registry = "backdoor" if key.startswith("backdoor") else "transfer"
    elif registry == "methods":
        return tuple(methods) if methods else None  # a study without METHODS names none
    if registry == "transfer":
        from ..artifacts.transfer import METHODS
        return tuple(METHODS)
    if registry == "backdoor":
        from ..artifacts.backdoor import METHODS
        return tuple(METHODS)
    if registry == "archs":
        from ..models import ARCHS
        return (*ARCHS, "densenet_bc100") if study == "unrestricted" else tuple(ARCHS)
    if registry == "datasets":
        from ..data.real import REAL_DATASETS
        return ("synsigns", "gtsrb_shared", "cifar10_shared", *sorted(REAL_DATASETS))
    if registry == "where":
        from ..backdoor.triggers import WHERE
        return tuple(WHERE)
    if registry == "triggers":
        return ("emblem", "badnets", "blended")
    if registry == "bases":
        return ("A", "resnet20_shared", "imagenet_resnet18")
    if registry == "asserted" and study == "transfer":  # notebook 02's two checks
        return ("headline", "anb")
    if registry == "asserted" and study == "attention":  # notebook 06's two
        return ("clean", "trigger")
    if registry == "asserted" and study == "unrestricted":  # notebook 07's five
        return ("samples", "attack", "aux", "augment", "clean_cost")
    if registry == "asserted" and study == "continual":  # notebook 04's three kinds
        return ("forgetting", "area", "worst")
    if registry == "asserted" and study != "backdoor":
        return None  # notebook 08's finding names depend on its other keys: its check() tests them
    if registry == "asserted":  # the findings lib.studies.backdoor_report.findings names
        from ..artifacts.backdoor import METHODS
        return ("planted", "planted_clean", "survives_targeted", "survives_untargeted", "survives_new_task",
                *(f"{m}_removes" for m in METHODS if m != "fine_tune"), "masked_survives_mag", "divmag_beats_mag")
    raise KeyError(f"no registry of names {registry!r} for study {study!r}")


def rule_for(key: str) -> Rule | None:
    """The rule of recipe key ``key`` (``None``: no rule declared)."""
    return next((rule for pattern, rule in RULES if re.search(pattern, key)), None)


def value_problem(name: str, key: str, value, study: str, methods=None) -> str | None:
    """One line saying why ``value`` is not allowed for recipe key ``key`` of ``study`` (shown as
    parameter ``name``; ``methods``: the study module's ``METHODS``), or ``None``. Lists are
    checked element by element, tables entry by entry."""
    rule = rule_for(key)
    if value is None or rule is None:
        return None
    if rule.kind == "table":
        return _table_problem(name, key, value, study, methods) if isinstance(value, dict) else None
    items = value if isinstance(value, (list, tuple)) and rule.kind != "any" else [value]
    for item in items:
        if rule.kind == "name":
            allowed = _names(rule.names, study, key, methods)
            if allowed is not None and item not in allowed:
                return f"{name}: {item!r} is not allowed; must be one of {', '.join(map(str, allowed))}"
            continue
        why = rule.problem(item)
        if why:
            shown = f"{item!r}" if item is value else f"{item!r} (in {value!r})"
            return f"{name}: {shown} is not allowed; must be {why}"
    return None


def _table_problem(name: str, key: str, table: dict, study: str, methods) -> str | None:
    """A nested table: ``method_kw`` keys are the study's methods; every leaf value by its own key."""
    for sub, value in table.items():
        if not isinstance(sub, str):
            return f"{name}: its keys must be names, got {sub!r}"
        if key == "method_kw" and methods and sub not in methods:
            return f"{name}: {sub!r} is not one of the methods {', '.join(methods)}"
        if isinstance(value, dict):
            problem = _table_problem(f"{name}[{sub!r}]", "options", value, study, methods)
        else:
            problem = value_problem(f"{name}[{sub!r}]", sub, value, study, methods)
        if problem:
            return problem
    return None
