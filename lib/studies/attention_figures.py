"""Figures of notebook 06 (:mod:`lib.studies.attention`): the authors' picture chosen by rule
(:func:`select_images`, :func:`attention_grid`) and the attention-mass box plots (:func:`mass_figure`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import explain

KINDS = ("clean", "teacher_adv", "own_pgd", "triggered")


def select_images(scores: pd.DataFrame, n_show: int, map_name: str = "gradcam") -> pd.DataFrame:
    """The authors' picture chosen by rule rather than by hand. Per image: ``clean_ok`` every
    model puts more than the object's area share of its mass on the object on the clean input;
    ``trigger_ok`` the baseline (``05 fine_tune``) and ``05 mag`` students' maxima lie on the
    trigger on the triggered input (pointing hits, with the table's tolerance); ``divmag_ok``
    ``05 divmag`` still puts more than the area share on the object there (a rule whose model is
    absent holds). ``passed``: all three. ``score`` (ranking): the two students' trigger mass
    plus divmag's object mass on the triggered input. One row per image, best first;
    ``chosen``: the first ``n_show`` (passing ones first)."""
    s = scores[scores["map"] == map_name].set_index(["model", "kind", "image"]).sort_index()
    images = np.sort(scores["image"].unique())
    models = list(scores["model"].unique())
    ones = pd.Series(True, index=images)

    def col(model, kind, c):
        return s.loc[(model, kind), c].reindex(images)

    clean_ok = ones.copy()
    for m in models:
        clean_ok &= col(m, "clean", "object_mass") > col(m, "clean", "object_area")
    trig_ok, score = ones.copy(), pd.Series(0.0, index=images)
    for m in ("05 fine_tune", "05 mag"):
        if m in models:
            trig_ok &= col(m, "triggered", "trigger_hit").astype(bool)
            score += col(m, "triggered", "trigger_mass").fillna(0)
    div_ok = ones.copy()
    if "05 divmag" in models:
        div_ok = col("05 divmag", "triggered", "object_mass") > col("05 divmag", "triggered", "object_area")
        score += col("05 divmag", "triggered", "object_mass").fillna(0)
    labels = scores.drop_duplicates("image").set_index("image")["label"].reindex(images)
    out = pd.DataFrame({"image": images, "label": labels.to_numpy(), "clean_ok": clean_ok.to_numpy(),
                        "trigger_ok": trig_ok.to_numpy(), "divmag_ok": div_ok.to_numpy(), "score": score.to_numpy()})
    out["passed"] = out["clean_ok"] & out["trigger_ok"] & out["divmag_ok"]
    out = out.sort_values(["passed", "score"], ascending=False, ignore_index=True)
    out["chosen"] = out.index < n_show
    return out


def attention_grid(zoo: dict, ev, images, stage: str | None = None):
    """Rows = models, columns = clean / teacher-adversarial / triggered for each of ``images``
    (positions in the test set): Grad-CAM over the clean image (the adversarial map too, as the
    authors draw it) and over the triggered image, trigger outline in the last column."""
    import matplotlib.pyplot as plt

    pos = {int(i): k for k, i in enumerate(ev.indices.tolist())}
    at = torch.as_tensor([pos[int(i)] for i in images])
    adv = ev.teacher_adv(zoo["pretrained teacher"].model)[at]
    kinds = [("clean", ev.x[at], ev.x[at]), ("adversarial", adv, ev.x[at]), ("triggered", ev.x_trig[at], ev.x_trig[at])]
    n, names = len(at), list(zoo)
    fig, axes = plt.subplots(len(names), 3 * n, figsize=(3 * n * 0.95, len(names) * 1.0), squeeze=False)
    for r, name in enumerate(names):
        for c, (kind, x, shown) in enumerate(kinds):
            pictures = explain.overlay(shown, explain.gradcam(zoo[name].model, x, stage=stage))
            for j in range(n):
                ax = axes[r, 3 * j + c]
                ax.imshow(pictures[j], interpolation="nearest")
                if kind == "triggered":
                    ax.contour(ev.trigger[at[j]].float().numpy(), levels=[0.5], colors="black", linewidths=0.5)
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"#{int(images[j])} {kind}", fontsize=7, fontweight="normal")
                if 3 * j + c == 0:
                    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"Grad-CAM ({stage or 'last stage'}): rows = models; per image, columns = clean / "
                 "teacher-crafted adversarial (drawn over the clean image) / triggered", fontsize=9)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.98))
    return fig


def mass_figure(scores: pd.DataFrame):
    """Box plots of the attention mass per model and input kind, for each map (rows) and region
    (columns), with the region's mean area share (dashed) and, for the object, the mean mass on
    another image's object region (dotted: the centre prior) as chance lines."""
    import seaborn as sns

    long = pd.concat([scores.assign(region=r, mass=scores[f"{r}_mass"], area=scores[f"{r}_area"])
                      for r in ("object", "trigger")], ignore_index=True)
    grid = sns.catplot(long, x="mass", y="model", hue="kind", hue_order=list(KINDS), row="map", col="region",
                       kind="box", fliersize=0.8, linewidth=0.6, height=4.2, aspect=1.0, sharex=False)
    grid.set_titles("{row_name} · {col_name}")
    for (map_name, region), ax in grid.axes_dict.items():
        part = long[(long["map"] == map_name) & (long["region"] == region)]
        ax.axvline(part["area"].mean(), color="black", ls="--", lw=1, label="area share")
        if region == "object":
            ax.axvline(part["other_object_mass"].mean(), color="black", ls=":", lw=1.2,
                       label="another image's object")
        ax.set(xlim=(0, 1) if region == "object" else (0, 0.4), xlabel=f"attention mass on the {region}", ylabel="")
    grid.axes[0, 0].legend(loc="lower left", fontsize=7, frameon=True)
    grid.figure.subplots_adjust(hspace=0.3)
    n = scores.groupby(["model", "kind", "map"]).size().iloc[0]
    grid.figure.suptitle(f"Share of each map's mass inside the region (n = {n} images per box; "
                         "dashed: area share, dotted: mass on another image's object)", y=1.02, fontsize=10)
    return grid.figure
