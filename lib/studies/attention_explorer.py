"""Notebook 06's explorer: one model's attention map on one input kind, pictured on a few images and
measured (attention mass on the object and on the trigger, accuracy) over the evaluation images.

The inputs are the study's four kinds (:data:`lib.studies.attention_figures.KINDS`, as
:func:`lib.studies.attention.model_inputs` builds them): clean, the pretrained teacher's feature
attack (``ev.teacher_adv``, crafted once and kept in the store), the model's own white-box PGD
(crafted here on the measured images only, so an interactive redraw stays fast) and triggered."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import explain
from ..metrics import binomial_interval, bootstrap_interval
from ..train import predict
from ..widgets.explorer import explorer, headless
from .attention import label_maps, own_pgd
from .attention_figures import KINDS

TEACHER = "pretrained teacher"  # the zoo's source of the teacher-crafted attack (lib.studies.attention)
MAPS = {"gradcam": "Grad-CAM", "activation": "activation map"}


def kind_images(zoo: dict, ev, name: str, kind: str, at: torch.Tensor) -> torch.Tensor:
    """The images of input ``kind`` for model ``name`` at positions ``at`` of ``ev``."""
    if kind == "clean":
        return ev.x[at]
    if kind == "triggered":
        return ev.x_trig[at]
    if kind == "teacher_adv":
        if TEACHER not in zoo:
            raise ValueError(f"teacher_adv needs the zoo's {TEACHER!r}, the model the attack is crafted on")
        return ev.teacher_adv(zoo[TEACHER].model)[at]
    if kind == "own_pgd":  # crafted on these images alone (the attack's random start is drawn per batch)
        return own_pgd(zoo[name], ev, ev.x[at], ev.y[at])
    raise ValueError(f"unknown input kind {kind!r}; one of {list(KINDS)}")


def attention_maps(model, x: torch.Tensor, stage: str | None, method: str, pred=None) -> torch.Tensor:
    """``(N, H, W)`` maps in [0, 1]: :func:`lib.explain.gradcam` (``"gradcam"``, for the predicted
    class, ``pred`` when given) or :func:`lib.explain.activation_map` (``"activation"``) of ``stage``
    (None: the last)."""
    if method == "gradcam":
        return explain.gradcam(model, x, target=pred, stage=stage)
    if method == "activation":
        return explain.activation_map(model, x, stage=stage)
    raise ValueError(f"unknown map {method!r}; one of {list(MAPS)}")


def _mean_with_interval(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean of the non-NaN per-image values and its 95% percentile-bootstrap interval over images."""
    v = values[~torch.isnan(values)].numpy()
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    low, high = bootstrap_interval(v)
    return float(v.mean()), low, high


def _positions(ev, images, show: int) -> list[int]:
    """Positions in ``ev`` of the pictured images: ``images`` are test-set positions (``ev.indices``,
    the ``image`` column of the study's tables), None the first ``show``."""
    if images is None:
        return list(range(min(show, len(ev))))
    where = {int(i): k for k, i in enumerate(ev.indices.tolist())}
    absent = [int(i) for i in images if int(i) not in where]
    if absent:
        raise ValueError(f"images {absent[:5]} are not in the evaluation set (test-set positions, ev.indices)")
    return [where[int(i)] for i in images][:show]


def _measure(cam, ev, at, pred, to_model) -> dict:
    """Attention masses (object, trigger) with intervals, area shares and accuracy over ``at``
    (``to_model``: evaluation label -> the model's, None for a head over another task)."""
    out = {"n": len(at), "n_flat": int((cam.flatten(1).sum(1) == 0).sum())}
    for region, masks in (("object", ev.object[at]), ("trigger", ev.trigger[at])):
        m, lo, hi = _mean_with_interval(explain.attention_mass(cam, masks))
        out.update({f"{region}_mass": m, f"{region}_mass_low": lo, f"{region}_mass_high": hi,
                    f"{region}_area": float(explain.area_share(masks).mean())})
    if to_model is None:
        out.update(acc=math.nan, acc_low=math.nan, acc_high=math.nan)
    else:
        k = int((pred == to_model[ev.y[at]]).sum())
        low, high = binomial_interval(k, len(at))
        out.update(acc=k / len(at), acc_low=low, acc_high=high)
    return out


def attention_panel(zoo: dict, ev, *, model: str, kind: str, stage: str | None, method: str = "gradcam",
                    images=None, show: int = 6, n: int | None = None, crafted: dict | None = None):
    """``method``'s map of ``zoo[model]`` at ``stage`` on input ``kind``, drawn over ``show`` images
    (``images``: test-set positions, default the first; the adversarial kinds' maps over the clean
    image, as the authors draw them) with the object (white) and trigger (black) outlined, and beside
    them the mean attention mass on the object and on the trigger over the first ``n`` images of
    ``ev`` (None: all), each with its 95% percentile-bootstrap interval over images and its area share
    (the chance line). Returns ``(fig, stats)``: model, kind, stage, method, n, n_flat (all-zero maps,
    left out of the means), ``object_mass``/``trigger_mass`` (+ ``_low``, ``_high``, ``_area``) and
    ``acc`` with its Wilson interval (NaN for the pretrained teacher, whose head is over another task).
    ``crafted``: a dict keeping each model's own PGD images between calls (the explorer's), since
    crafting them is most of a redraw's time."""
    entry, size = zoo[model], min(len(ev), n or len(ev))
    pictured = _positions(ev, images, show)
    at = torch.tensor(list(range(size)) + [p for p in pictured if p >= size], dtype=torch.long)
    key = (model, kind, tuple(at.tolist()))
    x = crafted[key] if crafted is not None and key in crafted else kind_images(zoo, ev, model, kind, at)
    if crafted is not None and kind == "own_pgd":
        crafted[key] = x
    pred = predict(entry.model, (x, ev.y[at]))[0].argmax(1)
    cam = attention_maps(entry.model, x, stage, method, pred)
    to_model = label_maps(entry, ev.classes)[1]
    stage_name = stage or getattr(entry.model, "stages", ["last stage"])[-1]
    stats = {"model": model, "kind": kind, "stage": stage_name, "method": method,
             **_measure(cam[:size], ev, at[:size], pred[:size], to_model)}
    rows = [int((at == p).nonzero()[0]) for p in pictured]
    fig = _figure(ev, at, rows, x, cam, pred, to_model, kind, stats)
    return fig, stats


def _figure(ev, at, rows, x, cam, pred, to_model, kind, s):
    """The overlays (left) and the two masses with intervals and chance lines (right)."""
    k = len(rows)
    fig, axes = plt.subplots(1, k + 1, figsize=(1.7 * k + 3.6, 2.9), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * k + [2.2]})
    under = x if kind in ("clean", "triggered") else ev.x[at]  # adversarial maps over the clean image
    for j, r in enumerate(rows):
        ax = axes[0, j]
        ax.imshow(explain.overlay(under[r], cam[r]), interpolation="nearest")
        for mask, colour in ((ev.object[at[r]], "white"), (ev.trigger[at[r]], "black")):
            if mask.any() and not mask.all():  # a contour of a constant mask draws nothing and warns
                ax.contour(mask.float().numpy(), levels=[0.5], colors=colour, linewidths=0.7)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"#{int(ev.indices[at[r]])}", fontsize=7)
        if to_model is not None:  # the backdoor's target class named apart: on triggered inputs it is the attack
            ok, hit = bool(pred[r] == to_model[ev.y[at[r]]]), bool(pred[r] == to_model[ev.target])
            ax.set_xlabel("correct" if ok else "→ target class" if hit else "wrong", fontsize=7,
                          color="green" if ok else "red")
    _mass_axis(axes[0, k], s)
    acc = "" if math.isnan(s["acc"]) else (f"; accuracy {s['acc']:.0%} [{s['acc_low']:.0%}, "
                                            f"{s['acc_high']:.0%}] (Wilson)")
    first = f"the first {s['n']} of {len(ev)}" if s["n"] < len(ev) else f"all {s['n']}"
    drawn = "" if kind in ("clean", "triggered") else ", each map drawn over the clean image"
    fig.suptitle(f"{MAPS[s['method']]} of {s['model']} at {s['stage']} on {kind} inputs{acc}\nleft: {k} images "
                 f"(object outlined white, trigger black{drawn}); right: mean attention mass over {first} images, "
                 "95% percentile bootstrap over images", fontsize=8.5)
    fig.tight_layout()
    return fig


def _mass_axis(ax, s: dict) -> None:
    """Mean mass per region with its interval, the area share as the chance mark."""
    for y, region in enumerate(("object", "trigger")):
        m, lo, hi = (s[f"{region}_mass{e}"] for e in ("", "_low", "_high"))
        ax.plot([lo, hi], [y, y], color="tab:blue", lw=2.5, solid_capstyle="butt")
        ax.plot([m], [y], "o", color="tab:blue", label="mean mass, 95% CI" if y == 0 else None)
        ax.plot([s[f"{region}_area"]], [y], "|", color="black", ms=14, mew=1.5,
                label="area share (chance)" if y == 0 else None)
    ax.set(yticks=[0, 1], yticklabels=["object", "trigger"], xlim=(0, 1), ylim=(-0.6, 1.6),
           xlabel=f"attention mass (n = {s['n'] - s['n_flat']})")
    ax.legend(fontsize=6.5, loc="upper right")


def readout(s: dict) -> str:
    """The numbers the panel draws, as one line."""
    acc = "" if np.isnan(s["acc"]) else f"; accuracy {s['acc']:.1%} [{s['acc_low']:.1%}, {s['acc_high']:.1%}]"
    return (f"{s['model']}, {s['kind']}, {s['method']} at {s['stage']}, n={s['n']} images "
            f"({s['n_flat']} flat maps left out): mass on the object {s['object_mass']:.3f} "
            f"[{s['object_mass_low']:.3f}, {s['object_mass_high']:.3f}] (area {s['object_area']:.3f}), on the "
            f"trigger {s['trigger_mass']:.3f} [{s['trigger_mass_low']:.3f}, {s['trigger_mass_high']:.3f}] "
            f"(area {s['trigger_area']:.3f}){acc}")


def common_stages(zoo: dict) -> list[str]:
    """The feature stages every model of ``zoo`` has, in the first model's order."""
    stage_lists = [list(getattr(e.model, "stages", [])) for e in zoo.values()]
    return [s for s in stage_lists[0] if all(s in other for other in stage_lists)] if stage_lists else []


def attention_explorer(zoo: dict, ev, images=None, show: int = 6, *, model: str | None = None,
                       kind: str = "triggered", stage: str | None = None, method: str = "gradcam",
                       n: int | None = 100):
    """Dropdowns for the model, input kind, stage and map over :func:`attention_panel`, measured on
    the first ``n`` images (100: a redraw in about a second on a CPU at the smoke sizes; a model's
    own PGD takes longer the first time). Stage options: the stages every model has, and "last
    stage" (each model's own; ``stage=None``)."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    crafted: dict = {}  # each model's own PGD images, crafted at its first redraw
    kinds = [k for k in KINDS if k != "teacher_adv" or TEACHER in zoo]
    stages = [("last stage", "")] + [(s, s) for s in common_stages(zoo)]
    default_model = model or ("05 backdoored teacher" if "05 backdoored teacher" in zoo else next(iter(zoo)))
    return explorer(
        lambda model, kind, stage, method: attention_panel(zoo, ev, model=model, kind=kind, stage=stage or None,
                                                           method=method, images=images, show=show, n=n,
                                                           crafted=crafted),
        readout,
        model=W.Dropdown(options=list(zoo), value=default_model, description="model"),
        kind=W.Dropdown(options=kinds, value=kind, description="input"),
        stage=W.Dropdown(options=stages, value=stage or "", description="stage"),
        method=W.Dropdown(options=[(label, key) for key, label in MAPS.items()], value=method, description="map"))
