"""Re-training: the pretrained model's architecture from random initialisation (the baseline
that inherits nothing from the public model)."""
from __future__ import annotations

import pandas as pd

from ..data import num_classes_of
from ..models import Classifier, build, derived_seed, fresh_like
from ..train import fit
from .common import with_augment


def retrain(arch_or_template: Classifier | str, train, *, epochs: int, lr: float = 0.01, seed: int = 0,
            translate="auto",
            **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Re-training from random initialisation with the pretrained model's architecture (a
    :class:`Classifier` template: same builder, width and normalisation; or an arch name for
    :func:`lib.models.build`). Nothing is taken from the template's weights.

    Default ``lr=0.01``: Renofeation's re-training baseline (90,000 iterations at batch 64, lr 0.01
    cosine, weight decay 5e-3, momentum 0.9; pass those through ``fit_kw``).
    """
    k = num_classes_of(train)
    if isinstance(arch_or_template, str):
        model = build(arch_or_template, k, seed=derived_seed(seed, "fresh_like"))
    else:
        model = fresh_like(arch_or_template, k, seed=seed)
    kw = with_augment(train, translate, fit_kw)
    kw.setdefault("desc", "re-train")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)
