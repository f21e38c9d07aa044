"""Notebook 02's figures, drawn as a paper's reader needs them (n and intervals stated, eps in /255).

- :func:`attack_figure`: clean (and white-box) accuracy and transfer-attack success on separate
  panels, one bar per student with its 95% interval (Student-t over seeds when several, else
  Wilson over the test images), and the Renofeation paper's headline (fine-tuning 74.3%,
  Renofeation 6.9% feature-attack success) drawn as reference marks on the success panel.
- :func:`anb_figure`: Yosinski et al.'s block-transfer curves, base B's accuracy on every panel,
  dark shades for frozen copies (AnB, BnB) and light ones for fine-tuned copies (AnB+, BnB+), and
  the chance line.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics import binomial_interval, seed_interval
from .transfer import SEED_HEADLINE

# dark: copied blocks frozen; light: copied blocks fine-tuned (red: copied from A, blue: from B)
ANB_COLOURS = {"AnB": "#a50f15", "AnB+": "#fc9272", "BnB": "#08519c", "BnB+": "#9ecae1"}
ACC_METRICS = {"clean_acc": "clean", "whitebox_acc": "white-box PGD"}
ASR_METRICS = {"feature_asr": "feature attack", "teacher_pgd_asr": "teacher-head PGD"}


def method_summary(runs: pd.DataFrame, metrics) -> pd.DataFrame:
    """Per method and metric of an attack table over seeds (a ``seed`` column; one seed is
    fine): ``mean``, ``low``, ``high``, ``seeds``, ``n`` and ``interval`` (how it was made).

    Several seeds: Student-t over the seeds (:func:`lib.metrics.seed_interval`). One seed: Wilson
    over the test images (accuracies) or over the student's clean-correct images (success
    rates), :func:`lib.metrics.binomial_interval`."""
    rows = []
    runs = runs if "seed" in runs else runs.assign(seed=0)
    for method, part in runs.groupby("method", sort=False):
        for metric in metrics:
            if metric not in part or part[metric].isna().all():
                continue
            values = part[metric].dropna()
            n = int(part["n"].iloc[0])
            if len(values) > 1:
                s = seed_interval(values)
                low, high, how = max(0.0, s["low"]), min(1.0, s["high"]), f"t over {len(values)} seeds"
            else:
                v = float(values.iloc[0])
                den = n if metric.endswith("_acc") else round(float(part["clean_acc"].iloc[0]) * n)
                low, high = binomial_interval(round(v * den), den)
                how = f"Wilson over {den} images"
            rows.append({"method": method, "metric": metric, "mean": float(values.mean()), "low": low,
                         "high": high, "seeds": len(values), "n": n, "interval": how})
    return pd.DataFrame(rows)


def _bars(ax, summary: pd.DataFrame, metrics: dict, methods: list[str]):
    width = 0.8 / len(metrics)
    x = np.arange(len(methods))
    for i, (metric, label) in enumerate(metrics.items()):
        s = summary[summary["metric"] == metric].set_index("method").reindex(methods)
        if s["mean"].isna().all():
            continue
        pos = x + (i - (len(metrics) - 1) / 2) * width
        err = np.vstack([s["mean"] - s["low"], s["high"] - s["mean"]]).clip(min=0)
        bars = ax.bar(pos, s["mean"], width, yerr=err, capsize=2, label=label, error_kw={"lw": 0.8})
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_xticks(x, [m.replace("_", " ") for m in methods], rotation=20)
    ax.set_ylim(0, 1.1)


def attack_figure(runs: pd.DataFrame, eps: float, title: str | None = None):
    """Two panels over the students of an attack table (``runs``: one row per student and seed):
    accuracy (clean, white-box PGD) and attack success (feature attack and teacher-head PGD, both
    crafted on the teacher), each bar with its interval (:func:`method_summary`); the paper's
    fine-tuning and Renofeation feature-attack success (:data:`SEED_HEADLINE`) as black marks
    over those two students' bars. ``eps`` (pixel units) is written in /255."""
    methods = list(dict.fromkeys(runs["method"]))
    summary = method_summary(runs, {**ACC_METRICS, **ASR_METRICS})
    seeds = int(summary["seeds"].max())
    n = int(runs["n"].iloc[0])
    fig, (ax_acc, ax_asr) = plt.subplots(1, 2, figsize=(2.4 * len(methods) + 2, 4.4))
    _bars(ax_acc, summary, ACC_METRICS, methods)
    ax_acc.set(ylabel="accuracy on the target task", title="accuracy (higher is better)")
    _bars(ax_asr, summary, ASR_METRICS, methods)
    ax_asr.set(ylabel="attack success rate",
               title="transfer attacks from the teacher: success on clean-correct images (lower is better)")
    width = 0.8 / len(ASR_METRICS)
    for k, (method, value) in enumerate(SEED_HEADLINE.items()):
        if method in methods:
            x = methods.index(method) - width / 2  # over the feature-attack bar
            ax_asr.hlines(value, x - width / 2, x + width / 2, colors="black", linewidth=2.5,
                          label="paper, feature attack (ResNet-18, ImageNet)" if k == 0 else None)
            ax_asr.annotate(f"paper {value:.1%}", (x - width / 2, value), xytext=(-2, 0), textcoords="offset points",
                            ha="right", va="center", fontsize=7, fontweight="bold")
    for ax in (ax_acc, ax_asr):
        ax.legend(fontsize=7, loc="upper right")
    how = f"mean of {seeds} seeds, 95% t interval" if seeds > 1 else "one seed, 95% Wilson interval"
    fig.suptitle((title + "\n" if title else "") + f"eps {eps * 255:.1f}/255, n = {n} test images per model; {how}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def anb_figure(table: pd.DataFrame, base_b: dict, chance: float, attacks=(), eps: float | None = None,
               title: str | None = None):
    """Yosinski et al.'s figure: accuracy on task B against the number ``n`` of blocks copied, one
    line per variant (dark: AnB/BnB, copied blocks frozen; light: AnB+/BnB+, fine-tuned; red:
    copied from A; blue: from B). ``base_b``: base B's accuracy per panel column (``test_acc``
    and ``<attack>_acc``), drawn on every panel as a dotted line; ``chance`` a grey line. One panel
    for natural images and one per attack of ``attacks`` (crafted on base A at ``eps``)."""
    panels = [("test_acc", "natural test images")]
    panels += [(f"{a}_acc", f"{a.upper()} crafted on base A" + (f", eps {eps * 255:.0f}/255" if eps else ""))
               for a in attacks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.9), sharey=True, squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for variant, part in table.groupby("variant", sort=False):
            if variant not in ANB_COLOURS:
                continue
            part = part.sort_values("n")
            ax.plot(part["n"], part[col], marker="o" if variant.startswith("A") else "s", color=ANB_COLOURS[variant],
                    label=variant, linestyle="-" if variant.startswith("A") else "--")
        if col in base_b:
            ax.axhline(base_b[col], color="black", linestyle=":", linewidth=1.2, label=f"base B ({base_b[col]:.2f})")
        ax.axhline(chance, color="grey", linewidth=1, label=f"chance ({chance:.2f})")
        ax.set_xlabel("n (blocks copied from the source base)")
        ax.set_title(label, fontsize=10)
        ax.set_xticks(sorted(set(table["n"])))
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="best")
    axes[0, 0].set_ylabel("top-1 accuracy on task B")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
