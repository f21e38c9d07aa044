"""Figures of notebook 04 (continual adversarial learning), drawn from its tidy tables so that a
run's tables redraw them: the clean and adversarial accuracy matrices, the pooled PGD bars with
95% Wilson intervals, CMAT minus adversarial PackNet with its paired interval, and the parameter
use. Each function returns ``(figure, caption)``; the caption states n and the interval and goes
to :func:`lib.plots.save`."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from .. import metrics

MARKERS = "osD^vP*X"


def wilson_half_width(n: int) -> float:
    """The widest 95% Wilson half-width over ``n`` images (at accuracy 1/2), in points."""
    low, high = metrics.binomial_interval(n // 2, n)
    return 100 * (high - low) / 2


def _matrix(table: pd.DataFrame, n_tasks: int) -> np.ndarray:
    R = np.full((n_tasks, n_tasks), np.nan)
    for r in table.itertuples():
        R[int(r.after_task), int(r.task)] = r.acc
    return R


def _heatmap_row(axes, table: pd.DataFrame, methods: list, n_tasks: int, label: str, xlabel: bool = True) -> None:
    for ax, m in zip(axes, methods):
        sub = table[table["method"] == m]
        R = _matrix(sub, n_tasks)
        sns.heatmap(R, vmin=0, vmax=1, annot=True, fmt=".2f", cbar=False, ax=ax, cmap="viridis",
                    xticklabels=range(1, n_tasks + 1), yticklabels=range(1, n_tasks + 1), annot_kws={"size": 7})
        if "measured" in sub:  # cells that were not attacked: hatched, "n/a"
            for r in sub[~sub["measured"].astype(bool)].itertuples():
                ax.add_patch(plt.Rectangle((r.task, r.after_task), 1, 1, fill=False, hatch="//", lw=0))
                ax.text(r.task + 0.5, r.after_task + 0.5, "n/a", ha="center", va="center", fontsize=7)
        ax.set(title=m, xlabel="evaluated task j" if xlabel else "")
    axes[0].set_ylabel(f"{label}\nafter training task i")


def accuracy_matrices(matrix: pd.DataFrame, methods: list, n_tasks: int, n_test: int):
    """The clean accuracy matrix ``R[i, j]`` of every method (``matrix``: the table
    ``04_accuracy_matrix``, 0-based ``after_task``/``task``); every cell is one task's whole
    test set of ``n_test`` images."""
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 2.9), sharey=True)
    _heatmap_row(np.atleast_1d(axes), matrix, methods, n_tasks, "clean")
    caption = (f"accuracy matrix R[i, j] (clean): n = {n_test} test images per cell (task j's whole test set); "
               f"95% Wilson interval of a cell at most +-{wilson_half_width(n_test):.0f} points")
    fig.suptitle(caption, y=1.06, fontsize=10)
    return fig, caption


def adversarial_matrices(matrix: pd.DataFrame, adv: pd.DataFrame, methods: list, n_tasks: int, n_test: int,
                         n_eval: int, attack: str):
    """Clean ``R`` (top) beside adversarial ``R_adv`` (bottom; ``adv``: the table
    ``04_adversarial_matrix`` of :func:`lib.studies.continual_report.adversarial_matrix_table`,
    unattacked cells hatched)."""
    fig, axes = plt.subplots(2, len(methods), figsize=(2.6 * len(methods), 5.8), sharey=True)
    axes = np.atleast_2d(axes)
    fig.subplots_adjust(hspace=0.35)
    _heatmap_row(axes[0], matrix, methods, n_tasks, "clean", xlabel=False)
    _heatmap_row(axes[1], adv, methods, n_tasks, attack)
    caption = (f"accuracy matrices: clean R[i, j] (top, n = {n_test} test images per cell, 95% Wilson at most "
               f"+-{wilson_half_width(n_test):.0f} points) and under {attack} R_adv[i, j] (bottom, n = {n_eval} "
               f"images per cell, at most +-{wilson_half_width(n_eval):.0f} points). R_adv's earlier rows repeat "
               "the final row where the task's predictions never changed (digests); hatched n/a: not attacked "
               "(fine-tuning's intermediate models are not kept)")
    fig.suptitle(caption.replace("(bottom", "\n(bottom").replace(". R_adv", ".\nR_adv"), y=1.08, fontsize=10)
    return fig, caption


def pgd_bars(pooled: pd.DataFrame, methods: list, eps_list: list, n_tasks: int, paired_note: str = ""):
    """Pooled accuracy under PGD-k per method, one panel per eps, with 95% Wilson intervals over
    the pooled images (``pooled``: the table ``04_attacks_pooled``); ``paired_note`` (the paired
    CMAT - adversarial PackNet verdict) goes to the caption."""
    bars = pooled[(pooled["attack"] == "pgd") & pooled["eps"].isin(eps_list)]
    methods = [m for m in methods if m in set(bars["method"])]
    steps = sorted(bars["steps"].unique())
    n = sorted(set(bars["n"].astype(int)))
    fig, axes = plt.subplots(1, len(eps_list), figsize=(4.4 * len(eps_list), 3.4), sharey=True)
    width, colors = 0.8 / len(methods), sns.color_palette("colorblind", len(methods))
    for ax, eps in zip(np.atleast_1d(axes), eps_list):
        sub = bars[bars["eps"] == eps].set_index(["method", "steps"])
        for i, m in enumerate(methods):
            r = sub.loc[[(m, s) for s in steps]]
            x = np.arange(len(steps)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(x, r["acc"], width, color=colors[i], label=m)
            ax.errorbar(x, r["acc"], yerr=[r["acc"] - r["low"], r["high"] - r["acc"]], fmt="none", ecolor="black",
                        elinewidth=0.9, capsize=2)
        ax.set(title=f"eps = {eps * 255:g}/255", xlabel="PGD steps", xticks=range(len(steps)), xticklabels=steps,
               ylim=(0, 1))
    np.atleast_1d(axes)[0].set_ylabel(f"accuracy (pooled over {n_tasks} tasks)")
    np.atleast_1d(axes)[-1].legend(title="method", loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
    caption = (f"accuracy under PGD per method x steps x eps; bars: 95% Wilson intervals over "
               f"n = {', '.join(map(str, n))} images per bar ({n[0] // n_tasks} per task x {n_tasks} tasks)")
    fig.suptitle(caption + ("\n" + paired_note if paired_note else ""), y=1.1 if paired_note else 1.04, fontsize=10)
    return fig, caption + (f"; {paired_note}" if paired_note else "")


def cmat_vs_packnet(paired: pd.DataFrame, steps: int):
    """CMAT minus adversarial PackNet accuracy under PGD-``steps`` per task and pooled ("all"),
    one panel per eps, with the paired 95% interval (``paired``: the table ``04_cmat_vs_packnet``)."""
    eps_all = sorted(paired["eps"].unique())
    fig, axes = plt.subplots(1, len(eps_all), figsize=(3.6 * len(eps_all), 3.3), sharey=True)
    for ax, eps in zip(np.atleast_1d(axes), eps_all):
        sub = paired[paired["eps"] == eps].reset_index(drop=True)
        d, lo, hi = 100 * sub["diff"], 100 * sub["low"], 100 * sub["high"]
        colors = ["black" if t == "all" else "tab:blue" for t in sub["task"]]
        for i in range(len(sub)):
            ax.errorbar(i, d[i], yerr=[[d[i] - lo[i]], [hi[i] - d[i]]], fmt="o", color=colors[i], capsize=3)
            ax.annotate(f"+{sub['a_only'][i]}/-{sub['b_only'][i]}", (i, hi[i]), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=7)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set(title=f"eps = {eps * 255:g}/255", xticks=range(len(sub)), xticklabels=sub["task"], xlabel="task")
    np.atleast_1d(axes)[0].set_ylabel("CMAT - adv. PackNet (points)")
    n_task = sorted(set(paired.loc[paired["task"] != "all", "n"].astype(int)))
    n_all = sorted(set(paired.loc[paired["task"] == "all", "n"].astype(int)))
    caption = (f"CMAT minus adversarial PackNet under PGD-{steps}, paired 95% interval on the same images "
               f"(n = {', '.join(map(str, n_task))} per task, {', '.join(map(str, n_all))} pooled); "
               "+a/-b: images only CMAT / only PackNet survives")
    fig.suptitle(caption, y=1.06, fontsize=10)
    return fig, caption


def parameter_use(sizes: pd.DataFrame, methods: list, n_tasks: int):
    """Shared weights each task computes with, one small panel per method (equal series would
    hide each other in one axes), and the parameters stored for all tasks (exact counts)."""
    methods = [m for m in methods if m in set(sizes["method"])]
    fig = plt.figure(figsize=(max(10, 2.0 * len(methods)), 5.6))
    grid = fig.add_gridspec(2, len(methods), height_ratios=[1, 1.1], hspace=0.7)
    top = sizes["used"].max() * 1.15
    for i, m in enumerate(methods):
        ax = fig.add_subplot(grid[0, i], sharey=fig.axes[0] if i else None)
        sub = sizes[sizes["method"] == m]
        ax.plot(sub["task"], sub["used"] / 1e3, marker=MARKERS[i % len(MARKERS)], color="tab:blue")
        ax.set(title=m, xlabel="task", xticks=range(1, n_tasks + 1), ylim=(0, top / 1e3))
        ax.title.set_fontsize(9)
        if i:
            ax.tick_params(labelleft=False)
    fig.axes[0].set_ylabel("shared weights\nused (thousands)")
    ax = fig.add_subplot(grid[1, :])
    tot = sizes.groupby("method")["total_params"].first().reindex(methods)
    ax.bar(range(len(tot)), tot / 1e3, color="tab:gray")
    for i, v in enumerate(tot):
        ax.text(i, v / 1e3, f"{v / 1e3:.0f}k", ha="center", va="bottom", fontsize=8)
    ax.set(xticks=range(len(tot)), xticklabels=tot.index, ylabel="parameters\n(thousands)",
           title=f"parameters stored for all {n_tasks} tasks")
    caption = (f"shared weights each task computes with (top, one panel per method) and parameters stored for "
               f"all {n_tasks} tasks (bottom); exact counts of one trained model per method, no sampling interval")
    fig.suptitle(caption, y=1.0, fontsize=10)
    return fig, caption
