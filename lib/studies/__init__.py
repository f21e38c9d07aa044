"""Study recipes, one module per notebook: its recipe (one dict with ``smoke`` and ``full``
entries; every number once, read where it is used), its data and model set-up through the store,
and its headline checks. A notebook is a story over one study module.

=======================  =========================  =======================================
notebook                 module                     holds
=======================  =========================  =======================================
``00_datasets``          :mod:`.datasets`           what the dataset figures draw
``01_pretrained_bases``  :mod:`.bases`              bases A and B, ImageNet bases
``02_transfer_finetune`` :mod:`.transfer`           teacher, students, attacks, headline
``03_adversarial_...``   :mod:`.adversarial`        robust models, evaluation ladder, headline
``05_backdoor_poison``   :mod:`.backdoor`           backdoored / clean / label-flip teachers,
                                                    students per method (cached for notebook 06);
                         :mod:`.backdoor_report`    tables, findings, generated paragraphs;
                         :mod:`.backdoor_data`      the real-image profiles' data
``06_attention_maps``    :mod:`.attention`          model zoo of 02 and 05, attention table,
                                                    checks (figures: ``attention_figures``;
                                                    GTSRB check: ``attention_real``)
=======================  =========================  =======================================

Studies sit on top: they import methods and infrastructure, never the other way round.
"""
from __future__ import annotations

import copy


def recipe(table: dict, profile: str = "smoke", **overrides) -> dict:
    """A deep copy of ``table[profile]`` with ``overrides`` applied; ``None`` values keep the
    recipe's (a notebook parameter left at ``None``). An unknown key is an error naming the
    valid ones, not silently ignored."""
    if profile not in table:
        raise ValueError(f"profile must be one of {sorted(table)}, got {profile!r}")
    cfg = copy.deepcopy(table[profile])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise KeyError(f"unknown recipe keys {unknown}; known: {sorted(cfg)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return cfg
