"""Notebook 03's figures, each with its interval and n: the training curves, PGD accuracy by steps,
accuracy against eps, clean against robust accuracy, and the clean/adversarial example panels.

Every plotted accuracy is a share of ``n`` images, drawn with its 95% Wilson interval
(:func:`lib.metrics.binomial_interval`) unless the table already holds an interval (the compact
table: Wilson for one seed, Student-t over seeds for several). Each ``*_figure`` returns
``(fig, saved)`` where ``saved`` holds the ``caption`` and ``n`` for :func:`lib.plots.save`, so the
notebook cell stays one call and one save."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import PercentFormatter

from ..metrics import binomial_interval, rate_interval  # noqa: F401 (binomial_interval: tests/test_adversarial_study.py)

LABEL_WIDTH = 18  # lib.widgets.attack_panel cuts class names to this many characters


def wilson(acc: pd.Series, n) -> tuple[pd.Series, pd.Series]:
    """95% Wilson ``(low, high)`` of accuracies ``acc`` each measured on ``n`` images (a number or a
    Series); the image count is ``round(acc * n)`` (exact: every accuracy here is a count / n)."""
    n = pd.Series(n, index=acc.index) if not isinstance(n, pd.Series) else n
    ci = [rate_interval(a, int(k)) for a, k in zip(acc, n)]
    return (pd.Series([c[0] for c in ci], index=acc.index), pd.Series([c[1] for c in ci], index=acc.index))


def _colours(methods) -> dict:
    return dict(zip(methods, sns.color_palette(n_colors=max(len(methods), 1))))


def class_labels(classes, width: int = LABEL_WIDTH) -> list[str]:
    """Short class labels that stay distinct: ``"<index> <name>"`` with every word (and every
    hyphenated part) cut to as many letters as fit ``width`` characters, e.g.
    ``circle/blue-white/bar`` -> ``0 cir blu-whi bar``. Why: the example panels cut names to
    ``width`` characters, and two classes that differ only in their tail (``.../bar`` and
    ``.../arrow``) then printed the same, so a wrong prediction read as right; the index keeps
    truth and prediction distinguishable whatever the abbreviation."""
    out = []
    for i, raw in enumerate(classes):
        words = str(raw).replace("/", " ").replace("_", " ").split()
        keep = max((len(p) for w in words for p in w.split("-")), default=0)
        label = f"{i} {' '.join(words)}"
        while len(label) > width and keep > 1:
            keep -= 1
            label = f"{i} " + " ".join("-".join(p[:keep] for p in w.split("-")) for w in words)
        out.append(label[:width])
    return out


def examples_figure(model, x, y, eps: float, classes, method: str, steps: int = 10, alpha: float = 2 / 255):
    """The clean / PGD / perturbation panel of :func:`lib.widgets.attack_panel` for ``method``'s
    model, with :func:`class_labels` (index + abbreviated name) and a key of the full names of the
    classes shown. Returns ``(fig, stats, saved)``."""
    from ..widgets import attack_panel

    labels = class_labels(classes)
    fig, stats = attack_panel(model, x, y, eps=eps, alpha=alpha, steps=steps, classes=labels)
    shown = range(len(classes)) if len(classes) <= 20 else sorted({int(c) for c in y})  # predictions may be any
    key = "; ".join(f"{i} = {classes[i]}" for i in shown)
    fig.text(0.5, -0.01, f"classes (index = name): {key}", ha="center", va="top", fontsize=7, wrap=True)
    k, k_adv = round(stats["clean_acc"] * len(y)), round(stats["adv_acc"] * len(y))
    fig.suptitle(f"{method}: PGD-{steps}, eps {eps * 255:g}/255, step {alpha * 255:g}/255; {k} of {len(y)} correct "
                 f"clean, {k_adv} of {len(y)} after the attack (examples, not an estimate: accuracies with intervals "
                 "are in 03_compact)\ntop: true class; under each image: the prediction, green when correct, red when "
                 "wrong; labels: class index + abbreviated name", fontsize=9)
    caption = (f"{len(y)} test images, clean and PGD-{steps} (eps {eps * 255:g}/255), {method}; labels: class index "
               "and abbreviated name (green: prediction correct, red: wrong)")
    return fig, stats, {"caption": caption, "n": f"{len(y)} images (examples, no estimate)"}


def _band(ax, x, acc, low, high, colour, label=None, marker="o"):
    ax.plot(x, acc, marker=marker, ms=4, color=colour, label=label)
    ax.fill_between(x, low, high, color=colour, alpha=0.15, lw=0)


def training_curves_figure(histories: dict, metas: dict, eps: float, n_val: int):
    """Clean and PGD-10 validation accuracy per epoch (left, right), one line per method with its
    95% Wilson band over the ``val_n`` validation images of that epoch's estimate; circles: the
    epoch each robust model keeps. ``histories``: method -> history DataFrame; ``metas``: method
    -> training meta (its ``val_n``; ``n_val`` where missing)."""
    colours = _colours(list(histories))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.0), sharey=True)
    ns = set()
    for m, h in histories.items():
        n = int((metas.get(m) or {}).get("val_n") or n_val)
        ns.add(n)
        for ax, col in zip(axes, ("val_acc", "val_robust_acc")):
            part = h.dropna(subset=[col]) if col in h else h.iloc[:0]
            if len(part):
                low, high = wilson(part[col], n)
                _band(ax, part["epoch"], part[col], low, high, colours[m], label=m)
        sel = h[h["selected"]] if "selected" in h else h.iloc[:0]
        if m != "standard" and "val_robust_acc" in sel:
            axes[1].scatter(sel["epoch"], sel["val_robust_acc"], s=140, facecolors="none", edgecolors="k", zorder=5)
    n_txt = "/".join(str(k) for k in sorted(ns)) or str(n_val)
    axes[0].set(title="clean", ylim=(0, 1), xlabel="training epoch", ylabel="validation accuracy")
    axes[1].set(title=f"under PGD-10 (eps {eps * 255:g}/255)", xlabel="training epoch")
    axes[0].legend(title="method", fontsize=8, loc="upper left")
    axes[1].scatter([], [], s=140, facecolors="none", edgecolors="k",
                    label="selected epoch: best PGD-10 validation accuracy\n(the standard model keeps its last epoch "
                          "and\nis not attacked in training)")
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"validation accuracy per epoch (n = {n_txt} validation images); bands: 95% Wilson interval",
                 fontsize=11)
    fig.tight_layout()
    caption = (f"validation accuracy per epoch, clean and under PGD-10, on the same {n_txt} validation images; "
               "bands: 95% Wilson interval of each epoch's estimate; circles: the selected epochs")
    return fig, {"caption": caption, "n": f"{n_txt} validation images per point"}


def curves_flat_text(histories: dict, n_val: int) -> str:
    """Markdown: how much clean validation accuracy moved over the last three epochs per method, and
    whether the curves have flattened (at most 5 points)."""
    flat = {m: h["val_acc"].iloc[-3:].max() - h["val_acc"].iloc[-3:].min() for m, h in histories.items()}
    return ("Clean validation accuracy over the last three epochs moved by at most "
            f"**{max(flat.values()):.1%}** ({', '.join(f'{m}: {v:.1%}' for m, v in flat.items())}; "
            f"{n_val} images, so one image is {1 / n_val:.1%}): "
            + ("the curves have flattened." if max(flat.values()) <= 0.05 else
               "**the curves are still moving**: more epochs would change these models."))


def _eps_label(eps255: float) -> str:
    return f"{eps255:g}/255"


def pgd_steps_figure(report: pd.DataFrame, eps_list):
    """PGD-k test accuracy per step count, one panel per eps of ``eps_list`` and one bar per method,
    each bar with its 95% Wilson interval over the report's ``n`` test images (one seed)."""
    rows = report[(report["attack"] == "pgd") & report["eps"].isin(list(eps_list))].copy()
    rows["low"], rows["high"] = wilson(rows["acc"], rows["n"])
    methods, steps = list(dict.fromkeys(rows["method"])), sorted(rows["steps"].unique())
    colours, width = _colours(methods), 0.8 / max(len(methods), 1)
    eps_values = sorted(rows["eps"].unique())
    fig, axes = plt.subplots(1, len(eps_values), figsize=(5.2 * len(eps_values), 3.9), sharey=True, squeeze=False)
    for ax, eps in zip(axes[0], eps_values):
        for j, m in enumerate(methods):
            part = rows[(rows["eps"] == eps) & (rows["method"] == m)].set_index("steps").reindex(steps)
            xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(steps))]
            ax.bar(xs, part["acc"], width, color=colours[m], label=m,
                   yerr=[part["acc"] - part["low"], part["high"] - part["acc"]], capsize=2,
                   error_kw={"lw": 0.8, "ecolor": "0.2"})
        ax.set_xticks(range(len(steps)), [str(int(s)) for s in steps])
        ax.set(title=f"eps = {_eps_label(round(eps * 255, 6))}", xlabel="PGD steps", ylim=(0, 1))
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, -1].legend(title="method", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    n = int(rows["n"].iloc[0]) if len(rows) else 0
    fig.suptitle(f"PGD-k test accuracy (n = {n} test images, one seed); bars: 95% Wilson interval", fontsize=11)
    fig.tight_layout()
    caption = f"PGD-k accuracy per step count and eps, one seed; error bars: 95% Wilson interval over {n} test images"
    return fig, {"caption": caption, "n": f"{n} test images per bar"}


def eps_sweep_figure(sweep: pd.DataFrame, eps_train: float):
    """PGD-k test accuracy (k: the sweep's ``steps``) against eps (log2 axis), one line per method
    with its 95% Wilson band over the sweep's ``n`` images; the clean accuracy (eps 0) at the left
    edge with its Wilson error bar and as a dotted line; dashed: the training eps."""
    sweep = sweep.copy()
    sweep["low"], sweep["high"] = wilson(sweep["acc"], sweep["n"])
    methods = list(dict.fromkeys(sweep["method"]))
    colours = _colours(methods)
    attacked = sweep[sweep["eps"] > 0]
    ticks = sorted(attacked["eps_255"].unique())
    x_clean = ticks[0] / 2 if ticks else 0.5
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for j, m in enumerate(methods):
        part = attacked[attacked["method"] == m].sort_values("eps")
        _band(ax, part["eps_255"], part["acc"], part["low"], part["high"], colours[m], label=m)
        clean = sweep[(sweep["method"] == m) & (sweep["eps"] == 0)]
        if len(clean):  # side by side around the "clean" tick, so overlapping bars stay readable
            c, dx = clean.iloc[0], 2 ** (0.12 * (j - (len(methods) - 1) / 2))
            ax.errorbar([x_clean * dx], [c["acc"]], yerr=[[c["acc"] - c["low"]], [c["high"] - c["acc"]]], fmt="s",
                        color=colours[m], ms=4, capsize=2)
            ax.axhline(c["acc"], color=colours[m], ls=":", lw=1)
    ax.axvline(eps_train * 255, ls="--", c="grey")
    ax.set_xscale("log", base=2)
    ax.set_xticks([x_clean, *ticks], ["clean", *[f"{t:g}" for t in ticks]])
    n = int(sweep["n"].iloc[0]) if len(sweep) else 0
    k = int(attacked["steps"].max()) if len(attacked) else 0
    ax.set(xlabel="eps (/255, L-inf, log2 scale)", ylabel=f"PGD-{k} test accuracy", ylim=(0, 1),
           title=f"accuracy vs. attack budget (n = {n} test images per point)\nbands and bars: 95% Wilson interval; "
                 "dotted: clean accuracy; dashed: training eps")
    ax.title.set_fontsize(10)
    ax.legend(title="method", fontsize=8)
    fig.tight_layout()
    caption = (f"PGD-{k} accuracy per eps, one seed; bands (and the clean points' bars): 95% Wilson interval over "
               f"{n} test images; dashed: training eps {eps_train * 255:g}/255")
    return fig, {"caption": caption, "n": f"{n} test images per point"}


def tradeoff_table(compact: pd.DataFrame, eps: float) -> pd.DataFrame:
    """One row per method: clean and worst-case accuracy at ``eps`` (the training eps) with their
    intervals, from the compact table (:func:`lib.robustness.compact_table`)."""
    e = round(eps * 255, 6)
    cols = ["method", "acc", "low", "high"]
    clean = compact[compact["attack"] == "clean"][cols + ["n", "interval"]]
    worst = compact[(compact["attack"] == "worst case") & ((compact["eps_255"] - e).abs() < 1e-6)][cols]
    names = {"acc": "{}", "low": "{}_low", "high": "{}_high"}
    clean = clean.rename(columns={k: v.format("clean") for k, v in names.items()})
    worst = worst.rename(columns={k: v.format("worst") for k, v in names.items()})
    return clean.merge(worst, on="method", how="inner").assign(eps_255=e)


def tradeoff_figure(compact: pd.DataFrame, eps: float):
    """Clean (x) against per-image worst-case accuracy at the training ``eps`` (y), one point per
    method with both intervals as error bars (the compact table's: 95% Wilson over the n test
    images for one seed, Student-t over seeds for several), axes in percent."""
    t = tradeoff_table(compact, eps)
    colours = _colours(list(t["method"]))
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    for r, marker in zip(t.itertuples(), "osD^vP*X" * 4):  # a marker each: close points stay apart
        ax.errorbar([r.clean], [r.worst], xerr=[[r.clean - r.clean_low], [r.clean_high - r.clean]],
                    yerr=[[r.worst - r.worst_low], [r.worst_high - r.worst]], fmt=marker, color=colours[r.method],
                    capsize=3, ms=6, alpha=0.85, label=r.method)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    pad = 0.05
    ax.set(xlim=(max(0.0, t["clean_low"].min() - pad), min(1.0, t["clean_high"].max() + pad)),
           ylim=(max(0.0, t["worst_low"].min() - pad), min(1.0, t["worst_high"].max() + pad)),
           xlabel="clean test accuracy",
           ylabel=f"worst-case accuracy at {eps * 255:g}/255")
    n = int(t["n"].iloc[0]) if len(t) else 0
    interval = t["interval"].iloc[0] if len(t) else ""
    ax.set_title(f"clean vs. robust accuracy (n = {n} test images)\nbars: 95% interval on both axes ({interval})",
                 fontsize=10)
    ax.legend(title="method", fontsize=8, loc="best")
    fig.tight_layout()
    caption = (f"clean accuracy against per-image worst-case accuracy (every attack of the report) at "
               f"{eps * 255:g}/255 per method; error bars on both axes: 95% interval ({interval}), n = {n} test images")
    return fig, {"caption": caption, "n": f"{n} test images"}
