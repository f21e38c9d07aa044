"""Figures of notebook 08 (:mod:`lib.studies.defences`), each drawn from a table of
:mod:`.defences_report` (or the stored detector outputs), with n and 95% intervals drawn."""
from __future__ import annotations

import numpy as np
import pandas as pd

_COLOURS = {"none": "k", "control": "grey", "fine_tune": "C0", "fine_pruning": "C1", "nad": "C2", "anp": "C3",
            "ibau": "C4", "ft_sam": "C5"}


def _err(r: dict, m: str) -> list:
    """Matplotlib's ``[[below], [above]]`` error of column ``m`` of row ``r``, in percent."""
    return [[(r[m] - r[m + "_low"]) * 100], [(r[m + "_high"] - r[m]) * 100]]


def _count(n) -> int:
    """An image count from a table cell (a count the table could not form reads as 0)."""
    return int(n) if np.isfinite(n) else 0


def tradeoff_figure(purification: pd.DataFrame):
    """Clean accuracy against ASR (new task: the untargeted rate), one panel per backdoored model:
    the undefended model (black), an arrow from it to each defence's point (both 95% Wilson
    intervals drawn), and for the teachers notebook 05's clean teacher (grey: where a backdoor-free
    model sits). A point with no rate (the untargeted rate counts only triggered images the model
    gets right when clean, so a model that gets none right has none) is left out, with its arrows,
    and the panel's title says which."""
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(purification["subject"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 4.2), squeeze=False)
    for ax, name in zip(axes[0], panels):
        d = purification[purification["subject"] == name]
        x = d["asr_metric"].iloc[0]
        start = d[d["defence"] == "none"].iloc[0]
        drawn = d[np.isfinite(d[x].astype(float)) & np.isfinite(d["clean_acc"].astype(float))]
        for r in drawn.to_dict("records"):
            c = _COLOURS.get(r["defence"], "C7")
            if r["defence"] not in ("none", "control") and start.name in drawn.index:
                ax.annotate("", (r[x] * 100, r["clean_acc"] * 100), (start[x] * 100, start["clean_acc"] * 100),
                            arrowprops={"arrowstyle": "->", "color": c, "lw": 1, "alpha": 0.6})
            ax.errorbar(r[x] * 100, r["clean_acc"] * 100, xerr=_err(r, x), yerr=_err(r, "clean_acc"), fmt="o",
                        color=c, ms=6 if r["defence"] != "none" else 8, capsize=2, lw=0.8, label=r["defence"])
        missing = sorted(set(d["defence"]) - set(drawn["defence"]))
        ax.set(xlim=(-3, 103), ylim=(0, 100), xlabel=("ASR, BackdoorBench (%)" if x == "asr_bb" else
                                                      "untargeted rate (%)"),
               title=f"{name}\n(n={_count(start['clean_acc_n'])} clean, {_count(start[x + '_n'])} triggered)"
               + (f"\nno rate: {', '.join(missing)}" if missing else ""))
    axes[0][0].set_ylabel("clean accuracy (%)")
    legend = {label: h for ax in axes[0] for h, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=max(len(legend), 1), fontsize=8,
               bbox_to_anchor=(0.5, -0.02))
    fig.suptitle("each defence's move from the undefended model (95% Wilson intervals)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def neural_cleanse_figure(nc: pd.DataFrame, results: dict[str, dict], true_triggers: dict[str, "np.ndarray"],
                          threshold: float):
    """Left: Neural Cleanse's anomaly index per class for each model, signed (negative: a mask
    larger than the median, which cannot be a backdoor's; the target class ringed; flagged: above
    ``threshold``). Right: the reversed trigger of each
    model's target class (mask times pattern) beside the true trigger (``true_triggers``: model ->
    an HxWx3 image of the trigger pasted on black)."""
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(nc["model"]))
    fig = plt.figure(figsize=(13, 1.6 + 1.6 * len(models)))
    grid = fig.add_gridspec(len(models), 4, width_ratios=[4, 1, 1, 0.1])
    ax = fig.add_subplot(grid[:, 0])
    for i, m in enumerate(models):
        g = nc[nc["model"] == m]
        ax.scatter(g["class"], g["signed_index"], color=f"C{i}", label=m, s=18, zorder=3)
        t = g[g["target"]]
        ax.scatter(t["class"], t["signed_index"], s=110, facecolors="none", edgecolors=f"C{i}", zorder=3)
    ax.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:g}")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set(xlabel="class (ringed: the attacker's target)",
           ylabel="anomaly index (MAD; < 0: mask above the median)",
           title=f"Neural Cleanse (n={nc['class'].nunique()} classes per model)")
    ax.legend(fontsize=8)
    for i, m in enumerate(models):
        r, target = results[m], int(nc[(nc["model"] == m) & nc["target"]]["class"].iloc[0])
        rev = (r["masks"][target] * r["patterns"][target]).permute(1, 2, 0).numpy()
        for j, (img, what) in enumerate(((rev, "reversed"), (true_triggers[m], "true"))):
            a = fig.add_subplot(grid[i, 1 + j])
            a.imshow(np.clip(img, 0, 1))
            a.set_xticks([]), a.set_yticks([])
            a.set_title(f"{what}" + (f"\n{m}" if j == 0 else ""), fontsize=7)
    fig.tight_layout()
    return fig


def strip_figure(strips: pd.DataFrame, entropies: dict[str, dict]):
    """Left: STRIP's entropy of clean and triggered test images on the first planted teacher, with
    the threshold set on the defender's clean images. Right: the ROC of every model (triggered
    images the positives), its AUC and Hanley-McNeil 95% interval in the legend."""
    import matplotlib.pyplot as plt

    from ..backdoor.strip import strip_roc

    fig, (ax, roc) = plt.subplots(1, 2, figsize=(11, 4))
    first = strips[strips["model"].str.startswith("teacher")].iloc[0]
    h = entropies[first["model"]]
    bins = np.linspace(0, max(float(h["clean"].max()), float(h["triggered"].max())) + 1e-6, 30)
    ax.hist(h["clean"].numpy(), bins, alpha=0.6, label=f"clean (n={len(h['clean'])})")
    ax.hist(h["triggered"].numpy(), bins, alpha=0.6, label=f"triggered (n={len(h['triggered'])})")
    ax.axvline(first["threshold"], color="k", ls="--", lw=0.8, label="threshold")
    ax.set(xlabel="normalised entropy of the blends (bits)", ylabel="images", title=first["model"])
    ax.legend(fontsize=8)
    for i, r in enumerate(strips.to_dict("records")):
        fpr, tpr, _ = strip_roc(entropies[r["model"]]["clean"], entropies[r["model"]]["triggered"])
        roc.plot(fpr * 100, tpr * 100, color=f"C{i}",
                 label=f"{r['model']}: AUC {r['auc']:.2f} [{r['auc_low']:.2f}, {r['auc_high']:.2f}]")
    roc.plot([0, 100], [0, 100], color="grey", lw=0.6, ls=":")
    roc.set(xlabel="clean images rejected, FRR (%)", ylabel="triggered images caught, 1 - FAR (%)",
            title="STRIP's ROC")
    roc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def detection_figure(detection: pd.DataFrame):
    """Precision and recall of the poisoned images for Activation Clustering and Spectral
    Signatures at each poison rate, with 95% Wilson intervals."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, m in zip(axes, ("precision", "recall")):
        for i, (det, g) in enumerate(detection.groupby("detector", sort=False)):
            x = np.arange(len(g)) + (i - 0.5) * 0.35
            ax.bar(x, g[m] * 100, 0.35, color=f"C{i}", label=det)
            ax.errorbar(x, g[m] * 100, yerr=[(g[m] - g[m + "_low"]) * 100, (g[m + "_high"] - g[m]) * 100],
                        fmt="none", color="k", capsize=3, lw=0.8)
        ax.set_xticks(np.arange(len(g)), [f"{r:g}\n({int(p)} poisoned)" for r, p in zip(g["rate"], g["poisoned"])])
        ax.set(xlabel="poison rate", ylabel=f"{m} (%)", ylim=(0, 105), title=m)
    axes[0].legend(fontsize=8)
    fig.suptitle("training-data detectors on the attacker's poisoned set (95% Wilson intervals)")
    fig.tight_layout()
    return fig


def transfer_figure(transfer: pd.DataFrame):
    """Per task, each defence's student ASR (new task: untargeted rate) when the teacher was
    purified before transfer and when the student was purified after, beside the undefended student
    (black line) and the control (grey line), with 95% Wilson intervals."""
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(transfer["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        d = transfer[transfer["task"] == task]
        m = d["asr_metric"].iloc[0]
        for when, colour in (("none", "k"), ("control", "grey")):
            ax.axhline(d[d["when"] == when][m].iloc[0] * 100, color=colour, ls="--", lw=0.9, label=when)
        defs = [x for x in dict.fromkeys(d["defence"]) if x not in ("none", "control")]
        for i, when in enumerate(("before", "after")):
            g = d[d["when"] == when].set_index("defence").loc[defs]
            x = np.arange(len(defs)) + (i - 0.5) * 0.38
            ax.bar(x, g[m] * 100, 0.38, color=f"C{i}", label=f"purified {when} transfer")
            ax.errorbar(x, g[m] * 100, yerr=[(g[m] - g[m + "_low"]) * 100, (g[m + "_high"] - g[m]) * 100],
                        fmt="none", color="k", capsize=2, lw=0.8)
        ax.set_xticks(np.arange(len(defs)), defs, rotation=20)
        ax.set(ylim=(0, 105), ylabel=("ASR, BackdoorBench (%)" if m == "asr_bb" else "untargeted rate (%)"),
               title=f"{task} task (n={int(d[m + '_n'].max())} triggered test images)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
