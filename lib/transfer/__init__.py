"""Transfer methods of notebook 02: block transfer (``anb``) and six ways to fine-tune a base.

Every method takes a pretrained :class:`~lib.models.Classifier` and the target training data,
returns ``(model, history)``, never modifies the pretrained model, and trains through the one
:func:`lib.train.fit` loop. Each lives in a file of its own, with its paper's defaults:

=================  ================  ==========================================================
``anb``            ``anb.py``        Yosinski et al. 2014: first n blocks of A copied (AnB:
                                     frozen, AnB+: trained), the rest re-initialised
``fine_tune``      ``finetune.py``   copy, new head, every layer trained
``linear_probe``   ``finetune.py``   body frozen (eval-mode BN), only the new head trained
``l2_sp``          ``finetune.py``   Li, Grandvalet & Davoine 2018: ``alpha/2 ||w - w0||^2``
``delta``          ``delta.py``      Li et al. 2019: attention-weighted feature-map distance
``retrain``        ``retrain.py``    random initialisation, same architecture
``renofeation``    ``renofeation.py`` Chin, Zhang & Marculescu 2021: noisy feature distillation,
                                     then SWA
=================  ================  ==========================================================

:func:`transfer_model` trains any of them once and then loads it from the store. The settings
a notebook uses (smoke and full) are its study's recipe, :mod:`lib.studies.transfer`.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from ..data import data_fingerprint, num_classes_of
from ..models import Classifier, copy_for_target, fresh_like, model_fingerprint, param_distance
from ..store import Store
from ..store.versions import module_version
from .anb import ANB_VARIANTS, anb, anb_model, anb_sweep
from .common import fit_config
from .delta import delta, delta_channel_attention, delta_penalty
from .finetune import fine_tune, l2_sp, l2_sp_penalty, linear_probe
from .renofeation import NoisyStudent, renofeation
from .retrain import retrain

TRANSFER_METHODS: dict[str, Callable[..., tuple[Classifier, pd.DataFrame]]] = {
    "fine_tune": fine_tune,
    "linear_probe": linear_probe,
    "l2_sp": l2_sp,
    "delta": delta,
    "retrain": retrain,
    "renofeation": renofeation,
}


def method_version(method: str) -> str:
    """The computed code version of a cached ``method`` model: its module and every ``lib``
    module it imports (:func:`lib.store.versions.module_version`), so an edit of the method, the
    shared helpers, the training loop or the model code trains a new model."""
    return module_version(TRANSFER_METHODS[method].__module__)


def transfer_model(method: str, pretrained: Classifier, train, *, seed: int = 0, store: Store | None = None,
                   progress: bool = True, retrain: bool = False, cache_tag: str | None = None,
                   **kw) -> tuple[Classifier, dict]:
    """``TRANSFER_METHODS[method](pretrained, train, **kw)``, trained once and then loaded from the
    store. Returns ``(model, meta)``; ``meta`` holds the per-epoch ``history`` (records),
    ``cached`` and the store ``key``.

    The key hashes the method, the pretrained weights (:func:`model_fingerprint`; for ``retrain``
    only the architecture matters, but the template is pinned the same way), the training data
    (:func:`data_fingerprint`), every keyword (functions only with a ``cache_tag``) and the code
    version of the method's module and what it imports (:func:`method_version`), so a change of
    any of them trains a new model.
    """
    if method not in TRANSFER_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(TRANSFER_METHODS)}")
    store = store or Store()
    k = num_classes_of(train)
    cfg = {"method": method, "pretrained": model_fingerprint(pretrained),
           "arch": pretrained.arch, "num_classes": k, "train": data_fingerprint(train),
           "seed": seed, "kw": fit_config(kw, cache_tag)}

    def build_fn():
        return fresh_like(pretrained, k)

    def train_fn(model):
        trained, hist = TRANSFER_METHODS[method](pretrained, train, seed=seed, progress=progress, **kw)
        model.load_state_dict(trained.state_dict())  # frozen flags included (linear probe)
        return {"method": method, "history": hist.to_dict("records")}

    cfg["code"] = method_version(method)
    model, meta = store.model(f"transfer_{method}", cfg, build_fn, train_fn, retrain=retrain)
    meta["key"] = store.key(f"transfer_{method}", cfg)
    return model.eval(), meta


__all__ = ["ANB_VARIANTS", "TRANSFER_METHODS", "NoisyStudent", "anb", "anb_model", "anb_sweep", "copy_for_target",
           "data_fingerprint", "delta", "delta_channel_attention", "delta_penalty", "fine_tune", "fresh_like", "l2_sp",
           "l2_sp_penalty", "linear_probe", "model_fingerprint", "param_distance", "renofeation", "retrain",
           "transfer_model", "method_version"]
