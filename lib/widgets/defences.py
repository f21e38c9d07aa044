"""Notebook 08's explorer: STRIP's threshold moved over a backdoored model's stored entropies, with
the clean and triggered histograms, the ROC and its operating point, and the error rates there."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..backdoor.strip import strip_roc, strip_stats
from .explorer import explorer, headless

FRR_STEPS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)  # the target-FRR slider's stops


def _histograms(ax, h: dict, s: dict):
    """Clean and triggered test entropies (filled) and the defender's clean ones (outline), with
    the threshold line: an input left of it is rejected as triggered."""
    values = {k: np.asarray(h[k], dtype=float).ravel() for k in ("defender", "clean", "triggered")}
    top = max((float(v.max()) for v in values.values() if v.size), default=1.0)
    bins = np.linspace(0, max(top, s["threshold"]) + 1e-6, 30)
    ax.hist(values["clean"], bins, alpha=0.55, color="C0", label=f"clean test (n={values['clean'].size})")
    ax.hist(values["triggered"], bins, alpha=0.55, color="C1", label=f"triggered test (n={values['triggered'].size})")
    ax.hist(values["defender"], bins, histtype="step", color="k", lw=0.8,
            label=f"defender's clean, set the threshold (n={values['defender'].size})")
    ax.axvline(s["threshold"], color="C3", ls="--", lw=1.2, label=f"threshold {s['threshold']:.3f} bits")
    ax.set(xlabel="normalised entropy of the blends H (bits); rejected when H < threshold", ylabel="images")
    ax.legend(fontsize=7)


def _roc(ax, h: dict, s: dict):
    """The ROC (triggered images the positives, the project's :func:`strip_roc`), its AUC with the
    Hanley-McNeil interval, and the operating point with its Wilson intervals on both axes."""
    fpr, tpr, _ = strip_roc(h["clean"], h["triggered"])
    ax.plot(fpr * 100, tpr * 100, color="C0",
            label=f"AUC {s['auc']:.3f} [{s['auc_low']:.3f}, {s['auc_high']:.3f}]")
    ax.plot([0, 100], [0, 100], color="grey", lw=0.6, ls=":")
    x, y = s["frr"] * 100, (1 - s["far"]) * 100
    xerr = [[x - s["frr_low"] * 100], [s["frr_high"] * 100 - x]]
    yerr = [[y - (1 - s["far_high"]) * 100], [(1 - s["far_low"]) * 100 - y]]
    ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color="C3", capsize=3, lw=1,
                label=f"threshold: FRR {s['frr']:.1%} (n={s['frr_n']}), 1 - FAR {1 - s['far']:.1%} (n={s['far_n']})")
    ax.set(xlim=(-2, 102), ylim=(-2, 102), xlabel="clean test images rejected, FRR (%)",
           ylabel="triggered test images caught, 1 - FAR (%)")
    ax.legend(fontsize=7, loc="lower right")


def strip_panel(entropies: dict, *, model: str, threshold: float | None = None, frr_target: float | None = None):
    """STRIP on ``entropies[model]`` (stored entropies only: no model runs, so a redraw is
    instant) at a threshold set directly (``threshold``) or from a target FRR on the defender's
    clean images (``frr_target``, default 0.01; the paper's form): left, the clean and triggered
    entropy histograms with the threshold; right, the ROC with the operating point and the FRR on
    clean / FAR on triggered test images there, with 95% Wilson intervals and n. Returns ``(fig,
    stats)``, ``stats`` from :func:`strip_stats` plus ``model``."""
    h = entropies[model]
    s = {"model": model, **strip_stats(h, threshold=threshold, frr_target=frr_target)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    _histograms(axes[0], h, s)
    _roc(axes[1], h, s)
    how = (f"set directly at {s['threshold']:.3f} bits" if s["frr_target"] is None else
           f"from a target FRR of {s['frr_target'] * 100:g}% (the slider) on the defender's {s['n_defender']} clean "
           f"images = {s['threshold']:.3f} bits")
    fig.suptitle(f"STRIP on {model} (stored entropies): threshold {how}\n"
                 f"FRR {s['frr']:.1%} [{s['frr_low']:.1%}, {s['frr_high']:.1%}] of {s['frr_n']} clean, "
                 f"FAR {s['far']:.1%} [{s['far_low']:.1%}, {s['far_high']:.1%}] of {s['far_n']} triggered "
                 f"test images (95% Wilson)", fontsize=9)
    fig.tight_layout()
    return fig, s


def strip_readout(s: dict) -> str:
    """The line under the figure: the threshold, FRR, FAR and AUC with their intervals and n."""
    return (f"{s['model']}: reject H < {s['threshold']:.3f} bits; FRR {s['frr']:.1%} "
            f"[{s['frr_low']:.1%}, {s['frr_high']:.1%}] of {s['frr_n']} clean test images, FAR {s['far']:.1%} "
            f"[{s['far_low']:.1%}, {s['far_high']:.1%}] of {s['far_n']} triggered; AUC {s['auc']:.3f} "
            f"[{s['auc_low']:.3f}, {s['auc_high']:.3f}]")


def strip_explorer(entropies: dict, models=None, *, model: str | None = None, frr_target: float = 0.01):
    """A model menu over ``models`` (default every model in ``entropies``; starts at ``model``,
    default the first) and a target-FRR slider (the share of the defender's clean images rejected;
    starts at ``frr_target``, the notebook passes its recipe's ``strip_frr``) over
    :func:`strip_panel`."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    names = list(entropies) if models is None else list(models)
    stops = sorted({*FRR_STEPS, float(frr_target)})
    return explorer(
        lambda model, frr: strip_panel(entropies, model=model, frr_target=frr),
        strip_readout,
        model=W.Dropdown(options=names, value=model if model is not None else names[0], description="model"),
        frr=W.SelectionSlider(options=[(f"{f * 100:g}%", f) for f in stops], value=float(frr_target),
                              description="target FRR on the defender's clean images"))
