"""Notebook 02's figures, drawn as a paper's reader needs them (n and intervals stated, eps in /255).

- :func:`attack_figure`: clean (and white-box) accuracy and transfer-attack success on separate
  panels, one bar per student with its 95% interval (solid bars: Student-t over seeds; hatched
  bars: one seed, Wilson over the test images), each student's seeds and training budget under
  its name, and the Renofeation paper's headline feature-attack success (:data:`SEED_HEADLINE`)
  as dashed outline bars on the feature-attack bars of fine-tuning and Renofeation.
- :func:`anb_figure`: Yosinski et al.'s block-transfer curves with 95% Wilson intervals, base B's
  accuracy on every panel, dark shades for frozen copies (AnB, BnB) and light ones for fine-tuned
  copies (AnB+, BnB+), and the chance line.
- :func:`feature_eps_figure`: the feature attack's success against its budget, per student, with
  Wilson intervals.
- :mod:`lib.studies.transfer_tradeoff`: clean accuracy against feature-attack success (``02_tradeoff``).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from ..metrics import rate_interval, seed_interval
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
                low, high = rate_interval(v, den)
                how = f"Wilson over {den} images"
            rows.append({"method": method, "metric": metric, "mean": float(values.mean()), "low": low,
                         "high": high, "seeds": len(values), "n": n, "interval": how})
    return pd.DataFrame(rows)


def _bars(ax, summary: pd.DataFrame, metrics: dict, methods: list[str]):
    """Grouped bars, one per metric and method, with their interval; a method's bars are hatched
    where they rest on one seed (a Wilson interval over images, not a seed interval)."""
    width = 0.8 / len(metrics)
    x = np.arange(len(methods))
    for i, (metric, label) in enumerate(metrics.items()):
        s = summary[summary["metric"] == metric].set_index("method").reindex(methods)
        if s["mean"].isna().all():
            continue
        pos = x + (i - (len(metrics) - 1) / 2) * width
        err = np.vstack([s["mean"] - s["low"], s["high"] - s["mean"]]).clip(min=0)
        bars = ax.bar(pos, s["mean"], width, yerr=err, capsize=2, label=label, error_kw={"lw": 0.8})
        for bar, seeds in zip(bars, s["seeds"]):
            if seeds == 1:
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
    ax.set_ylim(0, 1.25)


def _ticks(ax, methods: list[str], seeds: dict, budgets: dict | None):
    """Each student's name, its number of seeds and (when given) its training budget."""
    labels = [m.replace("_", " ") + f"\n{seeds[m]} seed{'s' if seeds[m] > 1 else ''}"
              + (f"\n{budgets[m]}".replace(", lr", "\nlr") if budgets and m in budgets else "")
              for m in methods]
    ax.set_xticks(np.arange(len(methods)), labels, fontsize=7)


def _paper_marks(ax, methods: list[str], summary: pd.DataFrame):
    """The paper's feature-attack success (:data:`SEED_HEADLINE`) as a dashed outline bar over
    each of fine-tuning's and Renofeation's feature-attack bars, labelled with its value above
    whichever is higher, the mark or the measured bar's interval (an arrow points to the mark)."""
    width = 0.8 / len(ASR_METRICS)
    high = summary[summary["metric"] == "feature_asr"].set_index("method")["high"]
    for k, (method, value) in enumerate(SEED_HEADLINE.items()):
        if method not in methods:
            continue
        x = methods.index(method) - width / 2  # the feature-attack bar (the first of ASR_METRICS)
        ax.bar(x, value, width, fill=False, edgecolor="black", linestyle="--", linewidth=1.2)
        ax.hlines(value, x - width / 2, x + width / 2, colors="black", linewidth=2.5,
                  label="paper's feature-attack success (ResNet-18, ImageNet)" if k == 0 else None)
        top = max(value, float(high.get(method, 0.0)))
        ax.annotate(f"paper\n{value:.1%}", (x, value), xytext=(x, top + (0.02 if top == value else 0.1)),
                    ha="center", va="bottom", fontsize=7, fontweight="bold",
                    arrowprops=None if top == value else {"arrowstyle": "->", "lw": 0.8})


def _interval_note(summary: pd.DataFrame, n: int) -> str:
    """Which bars rest on several seeds (t interval) and which on one (Wilson over images)."""
    per = summary.groupby("method", sort=False)["seeds"].max()
    many, one = per[per > 1], per[per == 1]
    parts = []
    for k in sorted(set(many)):
        names = ", ".join(m.replace("_", " ") for m in many[many == k].index)
        parts.append(f"solid bars ({names}): mean of {k} seeds, 95% t interval over seeds")
    if len(one):
        parts.append(f"hatched bars ({', '.join(m.replace('_', ' ') for m in one.index)}): single seed, 95% Wilson "
                     f"interval over the n = {n} images (success rates: over that student's clean-correct images)")
    return ";\n".join(parts)


def attack_figure(runs: pd.DataFrame, eps: float, title: str | None = None, budgets: dict | None = None):
    """Two panels over the students of an attack table (``runs``: one row per student and seed):
    accuracy (clean, white-box PGD) and attack success (feature attack and teacher-head PGD, both
    crafted on the teacher), each bar with its interval (:func:`method_summary`): solid bars are
    means over seeds with a t interval, hatched bars single seeds with a Wilson interval over the
    images, and the caption says which student is which. The paper's fine-tuning and Renofeation
    feature-attack success (:data:`SEED_HEADLINE`) is a dashed outline bar on those students'
    feature-attack bars. ``budgets`` (:func:`lib.studies.transfer.budgets`) writes each student's
    training budget under its name. ``eps`` (pixel units) is written in /255."""
    methods = list(dict.fromkeys(runs["method"]))
    summary = method_summary(runs, {**ACC_METRICS, **ASR_METRICS})
    seeds = summary.groupby("method")["seeds"].max().to_dict()
    n = int(runs["n"].iloc[0])
    fig, (ax_acc, ax_asr) = plt.subplots(1, 2, figsize=(2.4 * len(methods) + 2, 5.2))
    _bars(ax_acc, summary, ACC_METRICS, methods)
    ax_acc.set(ylabel="accuracy on the target task", title="accuracy (higher is better)")
    _bars(ax_asr, summary, ASR_METRICS, methods)
    ax_asr.set(ylabel="attack success rate",
               title="transfer attacks from the teacher: success on clean-correct images (lower is better)")
    _paper_marks(ax_asr, methods, summary)
    for ax in (ax_acc, ax_asr):
        _ticks(ax, methods, seeds, budgets)
        handles, labels = ax.get_legend_handles_labels()
        handles.append(Patch(facecolor="grey", hatch="///", edgecolor="white", label="hatched: single seed"))
        ax.legend(handles=handles, fontsize=7, loc="upper right")
    fig.suptitle((title + "\n" if title else "") + f"eps {eps * 255:.1f}/255, n = {n} test images per model; "
                 + _interval_note(summary, n) + ("; students trained at unequal budgets (under each name)"
                                                 if budgets else ""), fontsize=9)
    fig.tight_layout()
    return fig


def wilson_errors(rates, n) -> np.ndarray:
    """``(2, len)`` distances from each rate to its 95% Wilson interval over ``n`` trials (one ``n``
    or one per rate), for ``errorbar``'s ``yerr``."""
    rates = np.asarray(rates, dtype=float)
    ns = np.broadcast_to(np.asarray(n, dtype=float), rates.shape)
    bounds = np.array([rate_interval(p, k) for p, k in zip(rates, ns)]).reshape(-1, 2)
    return np.vstack([rates - bounds[:, 0], bounds[:, 1] - rates]).clip(min=0)


def anb_figure(table: pd.DataFrame, base_b: dict, chance: float, attacks=(), eps: float | None = None,
               title: str | None = None, n_natural: int | None = None):
    """Yosinski et al.'s figure: accuracy on task B against the number ``n`` of blocks copied, one
    line per variant (dark: AnB/BnB, copied blocks frozen; light: AnB+/BnB+, fine-tuned; red:
    copied from A; blue: from B). ``base_b``: base B's accuracy per panel column (``test_acc``
    and ``<attack>_acc``), drawn on every panel as a dotted line; ``chance`` a grey line. One panel
    for natural images and one per attack of ``attacks`` (crafted on base A at ``eps``). Each point
    is one network: its bar is the 95% Wilson interval over the images it was scored on
    (``n_natural`` natural test images; the table's ``attack_n`` attacked ones), drawn where that
    number is known, as is the band around base B's line."""
    attack_ns = table["attack_n"].dropna() if "attack_n" in table else []
    n_attack = int(attack_ns.iloc[0]) if len(attack_ns) else None
    panels = [("test_acc", "natural test images", n_natural)]
    panels += [(f"{a}_acc", f"{a.upper()} crafted on base A" + (f", eps {eps * 255:.0f}/255" if eps else ""), n_attack)
               for a in attacks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.9), sharey=True, squeeze=False)
    offsets = {v: (i - 1.5) * 0.06 for i, v in enumerate(ANB_COLOURS)}  # the intervals side by side
    for ax, (col, label, n) in zip(axes[0], panels):
        for variant, part in table.groupby("variant", sort=False):
            if variant not in ANB_COLOURS:
                continue
            part = part.sort_values("n")
            x = part["n"] + (offsets[variant] if n else 0)
            ax.plot(x, part[col], marker="o" if variant.startswith("A") else "s", color=ANB_COLOURS[variant],
                    label=variant, linestyle="-" if variant.startswith("A") else "--")
            if n:
                ax.errorbar(x, part[col], yerr=wilson_errors(part[col], n), fmt="none", ecolor=ANB_COLOURS[variant],
                            capsize=2, elinewidth=0.8)
        if col in base_b:
            ax.axhline(base_b[col], color="black", linestyle=":", linewidth=1.2, label=f"base B ({base_b[col]:.2f})")
            if n:
                low, high = rate_interval(base_b[col], n)
                ax.axhspan(low, high, color="black", alpha=0.08, linewidth=0)
        ax.axhline(chance, color="grey", linewidth=1, label=f"chance ({chance:.2f})")
        ax.set_xlabel("n (blocks copied from the source base)")
        ax.set_title(label + (f"\nn = {n} images per point, 95% Wilson intervals" if n else ""), fontsize=9)
        ax.set_xticks(sorted(set(table["n"])))
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="best")
    axes[0, 0].set_ylabel("top-1 accuracy on task B")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def feature_eps_figure(sweep: pd.DataFrame, title: str | None = None):
    """Feature-attack success (%) against its budget (``eps255``), one line per student of the
    first seed (the table of the notebook's sweep, one row per student and budget), each point
    with its 95% Wilson interval over that student's clean-correct images out of ``n``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    methods = list(dict.fromkeys(sweep["method"]))
    eps = sorted(set(sweep["eps255"]))
    step = 0.5 * (min(np.diff(eps)) if len(eps) > 1 else 1.0)  # the students' points side by side within it
    for i, m in enumerate(methods):
        part = sweep[sweep["method"] == m].sort_values("eps255")
        den = (part["clean_acc"] * part["n"]).round().astype(int)
        err = wilson_errors(part["feature_asr"], den) * 100
        ax.errorbar(part["eps255"] + (i - (len(methods) - 1) / 2) * step / len(methods), part["feature_asr"] * 100,
                    yerr=err, marker="o", capsize=2, elinewidth=0.8, label=m.replace("_", " "))
    n = int(sweep["n"].iloc[0])
    ax.set(xlabel="eps (x/255)", ylabel="feature-attack success rate (%)", ylim=(0, 100),
           title=title or f"Feature attack from the teacher vs budget (first seed, n = {n} test images per point)")
    ax.set_xticks(sorted(set(sweep["eps255"])))
    ax.legend(fontsize=7, title="95% Wilson over each student's\nclean-correct images", title_fontsize=7)
    fig.tight_layout()
    return fig
