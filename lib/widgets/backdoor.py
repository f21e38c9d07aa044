"""Notebook 05's explorer: the planted teacher's trigger resized and moved, its live attack success
rate, and the stored poison-rate sweep beside it."""
from __future__ import annotations

import textwrap
from dataclasses import replace

import matplotlib.pyplot as plt
import torch

from ..backdoor.metrics import backdoor_rates
from ..backdoor.triggers import WHERE, Trigger, apply_trigger
from ..train import predict
from .explorer import explorer, headless

N_LIVE = 300  # at most this many test images per redraw: a few hundred keep a redraw to about a second on a CPU


def own_size(trigger: Trigger, x: torch.Tensor) -> float:
    """``trigger``'s patch side as a fraction of the shorter side of images ``x`` (``(N, 3, H, W)``):
    the size slider's value that redraws the trigger as it is (BadNets' 3 px on 32 px: 3/32; the
    blended pattern: 1, the whole image)."""
    h, w = x.shape[-2:]
    return 1.0 if trigger.kind == "blend" else trigger.side(h, w) / min(h, w)


def resized(trigger: Trigger, size: float) -> Trigger:
    """``trigger`` of the same kind, colour and opacity with its side ``size`` (a fraction of the
    image side); the blended pattern is returned as it is, as it covers the whole image."""
    return trigger if trigger.kind == "blend" else replace(trigger, size=float(size))


def stored_rate(rates, rate: float | None = None) -> float:
    """The poison rate of the table ``rates`` (notebook 05's ``05_poison_rate``) nearest to ``rate``
    (``None``: the largest): a dry run keeps only the sweep's first rates, which may not hold the
    recipe's own."""
    stored = sorted(set(float(r) for r in rates["rate"]))
    return stored[-1] if rate is None else min(stored, key=lambda r: abs(r - rate))


def _predict(model, x: torch.Tensor) -> torch.Tensor:
    """Predicted labels of ``model`` on ``x`` (CPU), as :func:`lib.backdoor.backdoor_metrics` makes
    them (:func:`lib.train.predict`: eval mode, channels-last, bf16 on a GPU), so the live numbers at
    the recipe's trigger are the stored table's."""
    return predict(model, (x, torch.zeros(len(x), dtype=torch.long)))[0].argmax(1)


def _rate_rows(rates, rate: float) -> dict:
    """The stored rows of ``rates`` at ``rate``: ``{model: {"asr", "low", "high", "n"}}`` (BackdoorBench ASR)."""
    at = rates[(rates["rate"] - rate).abs() < 1e-9]
    if at.empty:
        raise ValueError(f"poison rate {rate} is not in the stored sweep ({sorted(set(rates['rate']))})")
    return {r.model: {"asr": r.asr_bb, "low": r.asr_bb_low, "high": r.asr_bb_high, "n": int(r.asr_bb_n)}
            for r in at.itertuples()}


def _draw_bars(ax, stats: dict) -> None:
    """Live clean accuracy and ASR as bars with their 95% Wilson intervals and n."""
    rows = [("clean accuracy", "clean_acc", "tab:blue"), ("ASR (target class\nexcluded)", "asr", "tab:red")]
    for i, (label, key, colour) in enumerate(rows):
        v, lo, hi = stats[key], stats[f"{key}_low"], stats[f"{key}_high"]
        if stats[f"{key}_n"] == 0:  # e.g. every image of the target class: no ASR to show
            ax.text(0.02, i, "n=0: no images to measure", va="center", fontsize=7.5)
            continue
        ax.barh(i, v, color=colour, alpha=0.8, xerr=[[v - lo], [hi - v]], capsize=4)
        ax.text(min(hi, 1) + 0.02, i, f"{v:.0%} [{lo:.0%}, {hi:.0%}]\nn={stats[f'{key}_n']}", va="center",
                fontsize=7.5)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_xlim(0, 1.45)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1], ["0", "25%", "50%", "75%", "100%"])
    ax.invert_yaxis()
    ax.set_title("live, this trigger on the planted teacher (95% Wilson)", fontsize=8.5)


def _draw_rates(ax, rates, rate: float, stats: dict) -> None:
    """The stored ASR-vs-poison-rate curves (one per model) with intervals, the chosen rate marked
    and the live ASR as a band for comparison."""
    for (model, g), mk in zip(rates.groupby("model", sort=False), "osD^v"):
        g = g.sort_values("rate")
        ax.errorbar(g["rate"] * 100, g["asr_bb"] * 100, yerr=[(g["asr_bb"] - g["asr_bb_low"]) * 100,
                                                             (g["asr_bb_high"] - g["asr_bb"]) * 100],
                    marker=mk, capsize=3, label=model)
    ax.axvline(rate * 100, color="k", ls=":", label=f"chosen rate {rate * 100:g}%")
    ax.axhspan(stats["asr_low"] * 100, stats["asr_high"] * 100, color="tab:red", alpha=0.15,
               label="live ASR (left), 95% interval")
    ticks = sorted(set(float(r) for r in rates["rate"]))
    ax.set(xscale="log", xlabel="poison rate (% of the teacher's training images)", ylabel="ASR (%)", ylim=(0, 102))
    ax.set_xticks([r * 100 for r in ticks], [f"{r * 100:g}" for r in ticks])
    ax.minorticks_off()
    ax.set_title(f"stored sweep at the recipe's trigger (n={int(rates['asr_bb_n'].max())} triggered images)",
                 fontsize=8.5)
    ax.legend(fontsize=6.5, loc="upper left")


def _short(name) -> str:
    """A class name in at most two short lines (synsigns' "circle/red-white/bar" split at its slashes)."""
    name = str(name) if " " in str(name) else str(name).replace("/", " ")
    return textwrap.fill(textwrap.shorten(name, 30, placeholder="…"), 15)


def _draw_images(fig, row, x_trig, pred, y, target: int, show: int, classes) -> int:
    """The first ``show`` triggered images of other classes than ``target`` side by side in ``row``
    (a subplot spec), titled with the prediction (red: the target). Returns how many were drawn."""
    idx = (y != target).nonzero().flatten()[:show]
    grid = row.subgridspec(1, max(len(idx), 1))
    name = (lambda i: _short(classes[i])) if classes is not None else str
    for j, i in enumerate(idx.tolist()):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(x_trig[i].permute(1, 2, 0).float().cpu().numpy(), interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        hit = int(pred[i]) == target
        ax.set_title(f"→ {name(int(pred[i]))}", fontsize=6.5, color="red" if hit else "black")
        ax.set_xlabel(f"true {name(int(y[i]))}", fontsize=6.5)
    return len(idx)


def trigger_panel(model, x: torch.Tensor, y: torch.Tensor, trigger: Trigger, *, size: float | None = None,
                  where: str, target: int, rates=None, rate: float | None = None, show: int = 6,
                  classes=None, seed: int = 0, clean_pred: torch.Tensor | None = None):
    """``trigger`` (its kind kept) resized to ``size`` (fraction of the image side; ``None``: its own
    size) and pasted at ``where`` (:data:`lib.backdoor.WHERE`; ``"random"``/``"corners"`` drawn from
    ``seed``) on the images ``x`` (float ``(N, 3, H, W)``, labels ``y``), and ``model`` (the planted
    teacher) predicting them: its clean accuracy and ASR (BackdoorBench's, target-class images
    excluded: :func:`lib.backdoor.backdoor_rates`), each with n and a 95% Wilson interval, and a row
    of ``show`` triggered images of other classes with the prediction (red: the target). With
    ``rates`` (notebook 05's stored poison-rate table) also its ASR-vs-rate curves with ``rate`` (one
    of its rates; ``None``: :func:`stored_rate`) marked: read from the table, nothing is trained.
    ``clean_pred``: ``model``'s labels on ``x`` if already known (they do not move with the trigger,
    so the explorer predicts them once).

    Returns ``(fig, stats)``: ``size`` (the fraction drawn), ``side_px``, ``where``, ``kind``,
    ``clean_acc``/``asr`` with ``_k``, ``_n``, ``_low``, ``_high``, and with ``rates`` ``rate`` and
    ``stored`` (``{model: {"asr", "low", "high", "n"}}`` at that rate)."""
    if where not in WHERE:
        raise ValueError(f"where must be one of {WHERE}, got {where!r}")
    x, y = x.float().cpu(), torch.as_tensor(y).long().cpu()
    t = trigger if size is None else resized(trigger, size)
    x_trig, _ = apply_trigger(x, t, where, seed=seed)
    clean = _predict(model, x) if clean_pred is None else torch.as_tensor(clean_pred).cpu()
    trig = _predict(model, x_trig)
    got = backdoor_rates(clean, trig, y, target)
    side = x.shape[-1] if t.kind == "blend" else t.side(*x.shape[-2:])
    stats = {"size": own_size(t, x), "side_px": side, "where": where, "kind": t.kind, "target": target}
    for key, name in (("clean_acc", "clean_acc"), ("asr", "asr_bb")):
        r = got[name]
        stats.update({key: r["value"], f"{key}_k": r["k"], f"{key}_n": r["n"], f"{key}_low": r["low"],
                      f"{key}_high": r["high"]})
    if rates is not None:
        stats["rate"] = stored_rate(rates) if rate is None else float(rate)
        stats["stored"] = _rate_rows(rates, stats["rate"])
    fig = plt.figure(figsize=(max(9.0, 1.5 * min(show, len(y))), 6.4), layout="constrained")
    grid = fig.add_gridspec(2, 2 if rates is not None else 1, height_ratios=[1.25, 1.5])
    _draw_images(fig, grid[0, :], x_trig, trig, y, target, show, classes)
    _draw_bars(fig.add_subplot(grid[1, 0]), stats)
    if rates is not None:
        _draw_rates(fig.add_subplot(grid[1, 1]), rates, stats["rate"], stats)
    what = ("blended pattern over the whole image: size and position have no effect" if t.kind == "blend"
            else f"{t.kind} trigger, {stats['size']:.2f} of the side ({side} px), {where.replace('_', ' ')}")
    fig.suptitle(f"{what}\nthe planted teacher on {len(y)} test images (at most {N_LIVE}, for a quick redraw); "
                 f"top: triggered images of other classes than the target {target};"
                 f"\ntitle: the teacher's prediction, red when it is the target (the backdoor fired)", fontsize=9)
    return fig, stats


def trigger_readout(s: dict) -> str:
    """The line under the explorer's figure: the numbers it drew."""
    what = ("blended pattern (the whole image)" if s["kind"] == "blend" else
            f"{s['kind']} trigger at {s['size']:.2f} of the side ({s['side_px']} px), {s['where']}")
    line = (f"{what}: ASR "
            f"{s['asr']:.0%} [{s['asr_low']:.0%}, {s['asr_high']:.0%}] (n={s['asr_n']} images not of the target "
            f"class), clean accuracy {s['clean_acc']:.0%} (n={s['clean_acc_n']})")
    if "stored" in s:
        line += f"; stored sweep at poison rate {s['rate'] * 100:g}%: " + ", ".join(
            f"{m} ASR {r['asr']:.0%} [{r['low']:.0%}, {r['high']:.0%}]" for m, r in s["stored"].items())
    return line


def trigger_explorer(model, x: torch.Tensor, y: torch.Tensor, trigger: Trigger, *, target: int, rates=None,
                     rate: float | None = None, where: str = "bottom_right", wheres=WHERE,
                     size: float | None = None, classes=None, show: int = 6, seed: int = 0):
    """A size slider (0.03 to 0.5 of the side; default ``trigger``'s own size; disabled for the
    blended pattern), a position menu over ``wheres`` and, with ``rates``, a poison-rate slider over
    the stored sweep (default the stored rate nearest ``rate``), over :func:`trigger_panel`."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    size = own_size(trigger, x) if size is None else size
    controls = {"size": W.FloatSlider(value=min(size, 0.5), min=min(0.03, size), max=0.5, step=0.01,
                                      readout_format=".2f", description="size (of side)",
                                      disabled=trigger.kind == "blend"),
                "where": W.Dropdown(options=list(wheres), value=where, description="where")}
    if rates is not None:
        stored = sorted(set(float(r) for r in rates["rate"]))
        controls["rate"] = W.SelectionSlider(options=[(f"{r * 100:g}%", r) for r in stored],
                                             value=stored_rate(rates, rate), description="poison rate")
    clean = {}  # the clean predictions, made at the first redraw (none in a headless run)

    def draw(size, where, rate=None):
        if "pred" not in clean:
            clean["pred"] = _predict(model, x.float().cpu())
        return trigger_panel(model, x, y, trigger, size=size, where=where, target=target, rates=rates, rate=rate,
                             show=show, classes=classes, seed=seed, clean_pred=clean["pred"])

    return explorer(draw, trigger_readout, **controls)
