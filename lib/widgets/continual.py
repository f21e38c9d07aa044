"""Notebook 04's explorer: every continual learner's model of one task, clean and under L-inf PGD,
at the reader's task, eps and steps, with the study's own images and attack."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .. import data
from ..attacks import as_batch_hook
from ..metrics import binomial_interval
from ..robustness import make_attack
from ..train import predict
from .explorer import explorer, headless

COLUMNS = ["method", "task", "eps", "steps", "n", "clean_acc", "clean_low", "clean_high", "adv_acc", "adv_low",
           "adv_high"]


def task_view(model, task: int):
    """The plain eval-mode model a learner uses for ``task`` (1-based): the ``task``-th
    independent model's own view for the independent baselines (a list of models), else the
    learner's :meth:`~lib.continual.TaskNet.task_model` (owners 1..task, the task's picks, BN and
    head). One entry of :func:`lib.studies.continual.task_views`, without building every task's
    copy of the body on each redraw."""
    return model[task - 1].task_model(1) if isinstance(model, list) else model.task_model(task)


def _correct(view, images, eps: float, steps: int, seed: int):
    """Per image, whether ``view`` classifies it correctly: clean, and under the study's PGD
    (:func:`lib.robustness.make_attack`: step ``2.5 eps / steps``, random start, seeded) as
    :func:`lib.studies.continual.correct_vector` runs it. Clean twice at eps 0 or 0 steps."""
    logits, y = predict(view, images)
    clean = logits.argmax(1) == y
    if eps == 0 or steps <= 0:
        return clean, clean
    hook = as_batch_hook(make_attack("pgd", eps, steps=steps, seed=seed))
    logits, y = predict(view, images, batch_hook=hook)  # predict puts the view in eval mode
    return clean, logits.argmax(1) == y


def continual_panel(runs: dict, tasks: list[dict], *, task: int, eps: float, steps: int = 10, n: int = 50,
                    seed: int = 0, methods=None):
    """Accuracy of each learner's model of ``task`` on the same first ``n`` stratified test images
    of ``tasks[task - 1]`` (:func:`lib.data.stratified_subset` with ``seed``, as the study's
    evaluation takes them; fewer when the task has fewer), clean and under L-inf PGD-``steps`` at
    ``eps`` (pixel scale) with the study's step ``2.5 eps / steps``: a pair of bars per method
    (``methods`` order, default ``runs``'), each with its 95% Wilson interval.

    Returns ``(fig, table)``; ``table`` has one row per method: ``method, task, eps, steps, n,
    clean_acc, clean_low, clean_high, adv_acc, adv_low, adv_high``."""
    import pandas as pd

    if not 1 <= task <= len(tasks):
        raise ValueError(f"task must be in 1..{len(tasks)}, got {task}")
    methods = [m for m in (methods or runs) if m in runs]
    images = data.stratified_subset(tasks[task - 1]["test"], n, seed)
    rows = []
    for m in methods:
        clean, adv = _correct(task_view(runs[m], task), images, eps, steps, seed)
        k = len(clean)
        (cl, ch), (al, ah) = binomial_interval(int(clean.sum()), k), binomial_interval(int(adv.sum()), k)
        rows.append({"method": m, "task": task, "eps": eps, "steps": steps, "n": k,
                     "clean_acc": int(clean.sum()) / k, "clean_low": cl, "clean_high": ch,
                     "adv_acc": int(adv.sum()) / k, "adv_low": al, "adv_high": ah})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return _draw(table, task, eps, steps, tasks[task - 1]["num_classes"]), table


def _draw(table, task: int, eps: float, steps: int, num_classes: int):
    """The bar pairs of :func:`continual_panel`'s ``table`` with their Wilson intervals, and chance."""
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 3.8))
    attacked = eps > 0 and steps > 0
    label = f"PGD-{steps}, eps {eps * 255:g}/255" if attacked else "PGD (eps 0 or 0 steps: clean)"
    for off, col, name, color in ((-0.2, "clean", "clean", "tab:blue"), (0.2, "adv", label, "tab:red")):
        acc = table[f"{col}_acc"].to_numpy()
        err = np.vstack([acc - table[f"{col}_low"].to_numpy(), table[f"{col}_high"].to_numpy() - acc])
        ax.bar(x + off, acc, 0.4, yerr=err, capsize=3, color=color, label=name)
        for xi, a, top in zip(x + off, acc, table[f"{col}_high"]):
            ax.text(xi, top + 0.01, f"{a:.0%}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1 / num_classes, color="grey", ls="--", lw=1, label=f"chance (1/{num_classes})")
    ax.set_xticks(x, table["method"], rotation=20, ha="right")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel(f"accuracy on task {task}")
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    n = int(table["n"].max()) if len(table) else 0
    step = f", step 2.5·eps/steps = {2.5 * eps * 255 / steps:.2g}/255, random start" if attacked else ""
    ax.set_title(f"Task {task}: each learner's model of the task, clean and under L∞ {label}{step}\n"
                 f"n={n} stratified test images (the same for every method), 95% Wilson intervals", fontsize=8.5)
    fig.tight_layout()
    return fig


def continual_explorer(runs: dict, tasks: list[dict], methods=None, n: int = 50, *, eps: float = 2 / 255,
                       steps: int = 10, seed: int = 0):
    """Sliders for the task, the L-inf eps (x 1/255) and the PGD steps over :func:`continual_panel`
    (opening at the last task, ``eps`` and ``steps``)."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    return explorer(
        lambda task, eps255, steps: continual_panel(runs, tasks, task=task, eps=eps255 / 255, steps=steps, n=n,
                                                    seed=seed, methods=methods),
        lambda t: (f"task {t['task'].iloc[0]}, {t['n'].iloc[0]} images, PGD-{t['steps'].iloc[0]} at eps "
                   f"{t['eps'].iloc[0] * 255:g}/255: " + "; ".join(
                       f"{r.method} accuracy {r.clean_acc:.0%} clean, {r.adv_acc:.0%} attacked" for r in t.itertuples())
                   if len(t) else "no method to show"),
        task=W.IntSlider(value=len(tasks), min=1, max=len(tasks), description="task"),
        eps255=W.FloatSlider(value=round(eps * 255 * 2) / 2, min=0, max=16, step=0.5, description="eps ×1/255"),
        steps=W.IntSlider(value=steps, min=0, max=max(20, steps), description="PGD steps"))
