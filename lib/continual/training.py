"""The one training step every continual learner uses: :func:`lib.train.fit` on the live
:class:`~lib.continual.network.TaskNet` with the task's ownership hooks and, for the adversarial
variants, PGD adversarial training as the batch hook (:func:`lib.adversarial_training.pgd_at`:
examples crafted in eval mode on the task's current view, update in train mode)."""
from __future__ import annotations

from typing import Callable

import pandas as pd
from torch import nn

from ..adversarial_training import pgd_at
from ..attacks import as_batch_hook
from ..metrics import accuracy
from ..train import fit, predict
from .ownership import TaskHooks


def task_fit(model: nn.Module, train, hooks: TaskHooks | None, *, epochs: int, adversarial: dict | None = None,
             desc: str = "task", **kw) -> pd.DataFrame:
    """``fit`` ``model`` on ``train`` for ``epochs`` with ``hooks`` (None: every weight trains,
    sequential fine-tuning) and, when ``adversarial`` (``{"eps", "steps", "alpha"}``) is given,
    PGD-AT. Optimises the parameters that require grad except CPG's pick masks (their own
    optimiser steps in the hooks). ``kw`` go to ``fit`` (lr, batch_size, weight_decay, ...)."""
    if epochs <= 0:
        return pd.DataFrame()
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith(".pick")]
    extra = hooks.fit_kw() if hooks is not None else {}
    if adversarial:
        extra["batch_hook"] = pgd_at(**adversarial)
    return fit(model, train, epochs=epochs, params=params, desc=desc, **extra, **kw)


def val_accuracy(net: nn.Module, data, attack: Callable | None = None) -> float:
    """Accuracy of ``net`` on ``data``, under ``attack`` (an ``attack_fn``) when given."""
    logits, y = predict(net, data, batch_hook=as_batch_hook(attack) if attack is not None else None)
    return accuracy(logits, y)
