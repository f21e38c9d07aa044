"""Figures of notebook 06 (:mod:`lib.studies.attention`): the authors' picture chosen by rule
(:func:`select_images`, :func:`attention_grid`, with :func:`selection_text` saying how few images
pass and :func:`random_images` for a seeded, typical set beside it) and the attention-mass box plots
with each box's mean and 95% interval over images (:func:`mass_figure`)."""
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


def attention_grid(zoo: dict, ev, images, stage: str | None = None, how: str | None = None):
    """Rows = models, columns = clean / teacher-adversarial / triggered for each of ``images``
    (positions in the test set): Grad-CAM over the clean image (the adversarial map too, as the
    authors draw it) and over the triggered image, trigger outline in the last column. ``how``:
    how the images were chosen (:func:`selection_caption`), a second line of the title, so that the
    saved figure says it wherever it is shown."""
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
    title = (f"Grad-CAM ({stage or 'last stage'}): rows = models; per image, columns = clean / "
             "teacher-crafted adversarial (drawn over the clean image) / triggered")
    fig.suptitle(title + (f"\n{how}" if how else ""), fontsize=9)
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.97 if how else 0.98))
    return fig


def selection_caption(chosen: pd.DataFrame, kind: str = "rule", seed: int | None = None) -> str:
    """One line saying how the drawn images were picked: ``kind="rule"``, the images that pass
    :func:`select_images`'s rule (k of n, best-ranked first, and that they are not typical);
    ``kind="random"``, drawn at random with ``seed`` (:func:`random_images`)."""
    n, k = len(chosen), int(chosen["passed"].sum())
    shown = int(chosen["chosen"].sum())
    if kind == "random":
        return (f"{shown} images drawn at random (seed {seed}) from the same {n}, whatever the rule says: "
                f"typical images, for comparison with the rule's picture")
    filled = "" if k >= shown else f" ({shown - k} of them fail it: fewer pass than are drawn)"
    return (f"Chosen by a rule built to reproduce the authors' picture: {k} of {n} images pass it; the "
            f"{shown} best-ranked are drawn{filled}. Not typical images.")


def selection_text(chosen: pd.DataFrame, n_show: int) -> str:
    """Markdown saying how many images pass the rule (and each of its three parts) and what that
    means for the picture: the images drawn are the rare ones where the authors' story holds."""
    k, n = int(chosen["passed"].sum()), len(chosen)
    text = (f"Of {n} images, **{k}** ({k / n:.0%}) pass the rule (clean: {int(chosen['clean_ok'].sum())}; "
            f"baseline and mag on the trigger: {int(chosen['trigger_ok'].sum())}; divmag on the object: "
            f"{int(chosen['divmag_ok'].sum())}). The picture shows "
            + (f"the best-ranked {n_show} of them" if k >= n_show else f"all {k} of them") + ": it is "
            "chosen to look like the authors' figure and is **not typical** of the images; the measured "
            "averages over all images are in section 1 and section 4, and a second picture below shows "
            "images drawn at random.")
    if k < n_show:
        text += (f" Fewer than {n_show} pass, so the picture fills up with the best-ranked images that do not: "
                 "the picture the authors drew does not occur here by the rule.")
    return text


def random_images(chosen: pd.DataFrame, n_show: int, seed: int = 0) -> pd.DataFrame:
    """``chosen`` (one row per image, :func:`select_images`) with ``chosen`` set on ``n_show``
    images drawn at random with ``seed`` instead: the typical picture beside the rule's."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(chosen), size=min(n_show, len(chosen)), replace=False)
    out = chosen.copy()
    out["chosen"] = False
    out.loc[out.index[np.sort(pick)], "chosen"] = True
    return out


def mass_figure(scores: pd.DataFrame):
    """Box plots of the attention mass per model and input kind, for each map (rows) and region
    (columns), with each box's mean and its 95% interval over images (black tick and bar:
    :func:`mean_interval`, 1.96 standard errors of the per-image masses), the region's mean area
    share (dashed) and, for the object, the mean mass on another image's object region (dotted: the
    centre prior) as chance lines. Why the interval: a box shows the spread of single images, not
    how well the mean is known, and the text compares means."""
    import seaborn as sns

    long = pd.concat([scores.assign(region=r, mass=scores[f"{r}_mass"], area=scores[f"{r}_area"])
                      for r in ("object", "trigger")], ignore_index=True)
    models, kinds = list(scores["model"].unique()), [k for k in KINDS if k in set(scores["kind"])]
    grid = sns.catplot(long, x="mass", y="model", hue="kind", hue_order=kinds, order=models, row="map",
                       col="region", kind="box", fliersize=0.8, linewidth=0.6, height=4.2, aspect=1.0,
                       sharex=False, width=0.8, boxprops={"alpha": 0.55})
    grid.set_titles("{row_name} · {col_name}")
    width = 0.8 / len(kinds)
    for (map_name, region), ax in grid.axes_dict.items():
        part = long[(long["map"] == map_name) & (long["region"] == region)]
        for (model, kind), g in part.groupby(["model", "kind"], sort=False):
            m, lo, hi = mean_interval(g["mass"])
            y = models.index(model) - 0.4 + width * (kinds.index(kind) + 0.5)
            ax.plot([lo, hi], [y, y], color="black", lw=1.6, solid_capstyle="butt", zorder=5)
            ax.plot([m], [y], marker="|", color="black", ms=6, mew=1.6, zorder=5)
        ax.axvline(part["area"].mean(), color="black", ls="--", lw=1, label="area share")
        if region == "object":
            ax.axvline(part["other_object_mass"].mean(), color="black", ls=":", lw=1.2,
                       label="another image's object")
        ax.set(xlim=(0, 1) if region == "object" else (0, 0.4), xlabel=f"attention mass on the {region}", ylabel="")
    grid.axes[0, 0].legend(loc="lower left", fontsize=7, frameon=True)
    grid.figure.subplots_adjust(hspace=0.3)
    n = scores.groupby(["model", "kind", "map"]).size().iloc[0]
    grid.figure.suptitle(f"Share of each map's mass inside the region (n = {n} images per box)\nblack bar: mean "
                         "and its 95% interval over images, 1.96 SE; dashed: area share, dotted: mass on another "
                         "image's object)", y=1.02, fontsize=10)
    return grid.figure


def mean_interval(v: pd.Series) -> tuple[float, float, float]:
    """Mean and normal-approximation 95% interval (1.96 standard errors) of the non-NaN values
    (the summary table's interval; :mod:`lib.studies.attention` imports it from here)."""
    v = v.dropna().astype(float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    half = 1.96 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)
