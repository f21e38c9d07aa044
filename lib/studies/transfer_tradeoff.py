"""Notebook 02's ``02_tradeoff`` figure: clean accuracy against feature-attack success, one point
per trained student (method and seed), so a reader sees both what a method buys in robustness to
the teacher's attack and what it costs in accuracy, and how far seeds of one method scatter.

Panels: the notebook's own students (:func:`lib.studies.transfer.split_seeds`'s table, one row per
student and seed, as ``02_transfer_attacks_seeds.csv``) and, when present, the real-image GTSRB
seed runs of :mod:`lib.studies.transfer_real` (``02_renofeation_seed_runs.csv``). Every point has
its 95% Wilson interval on both axes (clean accuracy over the ``n`` test images, success rate over
the student's clean-correct images); a method's seeds are its several points, and its legend
entry says how many seeds and at which training budget (the budgets differ between methods).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from .transfer_real import with_intervals

SEED_RUNS_CSV = "02_renofeation_seed_runs.csv"
MARKERS = "osD^vPX*"


def load_real_seed_runs(folders=None) -> pd.DataFrame | None:
    """The real-image seed runs (``02_renofeation_seed_runs.csv``, one row per configuration and
    seed) from ``folders`` (default: :func:`lib.paths.measured_dir`); ``None`` when absent."""
    from ..paths import measured_dir

    folders = folders or [measured_dir()]
    path = next((Path(f) / SEED_RUNS_CSV for f in folders if (Path(f) / SEED_RUNS_CSV).is_file()), None)
    return pd.read_csv(path) if path is not None else None


def _with_intervals(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with the Wilson bounds of :func:`lib.studies.transfer_real.with_intervals` (clean
    accuracy over ``n``, feature-attack success over the clean-correct images) where the table
    does not carry them already (the real-image seed runs do: ``transfer_real`` wrote them)."""
    out = runs.copy()
    missing = [m for m in ("clean", "feature_asr") if f"{m}_low" not in out]
    if missing:
        bounds = with_intervals(runs)
        for m in missing:
            out[[f"{m}_low", f"{m}_high"]] = bounds[[f"{m}_low", f"{m}_high"]]
    return out


def _panel(ax, runs: pd.DataFrame, key: str, labels: dict[str, str], title: str):
    """One point per row of ``runs`` (grouped by ``key``), with its Wilson cross."""
    runs = _with_intervals(runs)
    for i, (name, part) in enumerate(runs.groupby(key, sort=False)):
        x, y = part["clean_acc"] * 100, part["feature_asr"] * 100
        xerr = [x - part["clean_low"] * 100, part["clean_high"] * 100 - x]
        yerr = [y - part["feature_asr_low"] * 100, part["feature_asr_high"] * 100 - y]
        k = len(part)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=MARKERS[i % len(MARKERS)], color=f"C{i}", capsize=2,
                    elinewidth=0.7, alpha=0.85, label=f"{labels.get(name, name)} ({k} seed{'s' if k > 1 else ''})")
    ns = ", ".join(str(v) for v in dict.fromkeys(runs["n"].astype(int)))
    ax.set(xlabel="clean accuracy on the target task (%)", ylabel="feature-attack success rate (%)",
           title=f"{title}\nn = {ns} test images per point")
    ax.set_ylim(0, min(100, float(runs["feature_asr_high"].max()) * 100 + 5))
    ax.set_xlim(max(0, float(runs["clean_low"].min()) * 100 - 5), min(100, float(runs["clean_high"].max()) * 100 + 5))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: the points stay clear


def tradeoff_figure(runs: pd.DataFrame, real_runs: pd.DataFrame | None = None, budgets: dict | None = None,
                    eps: float | None = None):
    """Clean accuracy (%) against feature-attack success (%), one point per student and seed with
    95% Wilson intervals on both axes: the notebook's students (``runs``: ``method``, ``seed``,
    ``clean_acc``, ``feature_asr``, ``n``; ``budgets`` from :func:`lib.studies.transfer.budgets` in
    the legend) and, given ``real_runs`` (:func:`load_real_seed_runs`), the GTSRB configurations
    with their budget in multiples of fine-tuning's epochs. Lower right is better: accurate, and
    hard to attack from the teacher. ``eps``: the feature attack's budget (pixel units)."""
    panels = 2 if real_runs is not None and len(real_runs) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 5.6), squeeze=False)
    labels = {m: m.replace("_", " ") + (f"; {budgets[m]}" if budgets and m in budgets else "")
              for m in dict.fromkeys(runs["method"])}
    _panel(axes[0, 0], runs, "method", labels, "the notebook's students (target of this run"
           + (f", feature attack at eps {eps * 255:.1f}/255)" if eps else ")"))
    if panels == 2:
        real_labels = {c: f"{c}; {b:g}x fine-tuning's epochs"
                       for c, b in real_runs.groupby("config", sort=False)["budget_x_ft"].first().items()}
        _panel(axes[0, 1], real_runs, "config", real_labels, "real images: GTSRB from the CIFAR-10 ResNet-20")
    fig.suptitle("Clean accuracy vs feature-attack success from the teacher: one point per trained student and seed; "
                 "bars: 95% Wilson intervals (accuracy over the test images,\nsuccess over each student's "
                 "clean-correct images); methods trained at unequal budgets (legend); lower right is better",
                 fontsize=9)
    fig.tight_layout()
    return fig
