"""Study of notebook 00: what do we train on? The recipe of the dataset figures and checks.

The smoke profile draws synsigns at 32 px; the full profile at 224 px (the real datasets are
listed by :func:`lib.data.real_status` in both).
"""
from __future__ import annotations

from . import notebook_params
from . import recipe as _recipe

RECIPE = {
    "smoke": {"size": 32, "per_class": 20, "seed": 0, "n_tasks": 20},  # 20 continual tasks of 5 classes
    "full": {"size": 224, "per_class": 20, "seed": 0, "n_tasks": 20},
}
PREFIX, NEEDS = "data", ()  # notebook parameters data_<key>; no earlier notebook's models
PARAMS = notebook_params(PREFIX, RECIPE)


def recipe(profile: str = "smoke", **overrides) -> dict:
    """Notebook 00's recipe for ``profile`` with ``overrides`` (``None`` keeps the recipe's)."""
    return _recipe(RECIPE, profile, **overrides)
