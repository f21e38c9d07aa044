"""A sequence of tasks learnt by one method, with the accuracy matrix filled as it goes.

:func:`learn_sequence` trains task after task and, after each, measures every task learnt so far
on its test set (``R[i, j]``, :class:`lib.metrics.AccuracyMatrix`) and keeps a digest of the
predictions, so "zero forgetting" can be checked as *identical predictions*, not just equal
accuracy. The independent baseline is a list of single-task models (``R[i, j]`` is model j's
accuracy for every i >= j).
"""
from __future__ import annotations

import hashlib
import time
from typing import Callable, Sequence

import torch

from ..metrics import AccuracyMatrix, accuracy
from ..train import predict
from .baselines import finetune_task, independent_task
from .cpg import cpg_task
from .network import TaskNet
from .packnet import packnet_task

METHODS = {"independent": independent_task, "finetune": finetune_task, "packnet": packnet_task, "cpg": cpg_task}


def predictions_digest(pred: torch.Tensor) -> str:
    """SHA-256 (16 hex digits) of predicted labels: equal digests = identical predictions."""
    return hashlib.sha256(pred.to(torch.int16).numpy().tobytes()).hexdigest()[:16]


def task_predictions(net, data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(predicted labels, labels)`` of a task view on ``data``."""
    logits, y = predict(net, data)
    return logits.argmax(1), y


def learn_sequence(method: str, build: Callable[[], TaskNet], tasks: Sequence[dict], *, progress: bool = True,
                   **kw) -> tuple[list[TaskNet] | TaskNet, dict]:
    """Learn ``tasks`` in order with ``method`` (a key of :data:`METHODS`).

    ``tasks``: dicts with ``train``, ``val``, ``test`` and ``num_classes`` (and, for ``cpg``, its
    accuracy ``goal``). ``build()`` makes a fresh :class:`TaskNet` (one per task for
    ``independent``). ``kw`` go to the method's per-task function (epochs, lr, adversarial, ...).
    Returns ``(model, log)``: the trained model (a list of models for ``independent``) and
    ``{"matrix": [rows of AccuracyMatrix.to_frame()], "evals": [...], "tasks": [per-task logs]}``,
    where each eval row holds ``after_task, task, acc, n, digest``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    fn = METHODS[method]
    n = len(tasks)
    R = AccuracyMatrix(n)
    evals, logs = [], []
    models: list[TaskNet] = []
    model = None if method == "independent" else build()
    seed = kw.pop("seed", 0)
    for i, task in enumerate(tasks):
        t0 = time.perf_counter()
        args = dict(kw, seed=seed + i, progress=progress)
        if method == "cpg":
            info = fn(model, task["train"], task["val"], task["num_classes"], goal=task["goal"], **args)
        else:
            net = build() if method == "independent" else model
            info = fn(net, task["train"], task["num_classes"], **args)
            if method == "independent":
                models.append(net)
        info["seconds"] = time.perf_counter() - t0
        logs.append(info)
        for j in range(i + 1):
            view = models[j].task_model(1) if method == "independent" else model.task_model(j + 1)
            pred, y = task_predictions(view, tasks[j]["test"])
            acc = accuracy(pred, y)
            R.record(i, j, acc)
            evals.append({"after_task": i + 1, "task": j + 1, "acc": acc, "n": len(y),
                          "digest": predictions_digest(pred)})
    log = {"matrix": R.to_frame().to_dict("records"), "evals": evals, "tasks": logs, "summary": R.summary()}
    return (models if method == "independent" else model), log
