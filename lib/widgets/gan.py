"""Notebook 07's explorer: latent optimisation (:func:`lib.gan.unrestricted_attack`) from fixed
codes at the reader's number of steps and pixel-term budget, watching GAN samples change class."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from ..attacks import attack_mode
from ..gan import from_pixels, to_pixels, unrestricted_attack
from ..metrics import binomial_interval, rate_interval
from ..train import model_device
from .explorer import explorer, headless

STUDY_EPS = 0.1  # the study's pixel term in the GAN's [-1, 1] units (0.05 in pixels) when no recipe is given


def _judge(aux, classifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's and the aux head's labels (on the CPU) of ``images`` in pixels [0, 1], both
    in eval mode (their modes restored afterwards)."""
    with attack_mode(aux), attack_mode(classifier), torch.no_grad():
        pred = classifier(images.to(model_device(classifier))).argmax(1).cpu()
        aux_pred = aux(from_pixels(images).to(model_device(aux))).argmax(1).cpu()
    return pred, aux_pred


def _latent_run(G, aux, classifier, y, z0, steps: int, pixel_eps: float, seed: int, attack: dict | None):
    """``(clean, images, samples, pred, aux_pred, trace)`` of ``steps`` latent steps from ``z0``
    (images in pixels; both networks' labels of ``images``; ``trace``: per step accuracy and aux
    agreement). The pixel term is ``pixel_eps`` in pixels, i.e. ``eps = 2 pixel_eps`` in the GAN's
    [-1, 1] units; 0 steps is the clean samples themselves (the attack itself needs 1 or more)."""
    if steps > 0:
        kw = {**(attack or {}), "eps": 2 * pixel_eps}
        r = unrestricted_attack(G, aux, classifier, y, steps, z0=z0, seed=seed, **kw)
        return r.clean, r.images, r.samples, r.pred, r.aux_pred, r.trace
    device = model_device(G)
    with attack_mode(G), torch.no_grad():
        clean = to_pixels(G(z0.to(device), y.to(device))).cpu()
    pred, aux_pred = _judge(aux, classifier, clean)
    trace = {"step": [0], "acc": [(pred == y).float().mean().item()],
             "aux_agree": [(aux_pred == y).float().mean().item()]}
    return clean, clean, clean, pred, aux_pred, trace


def _draw(y, rows, trace, stats, show: int, classes):
    """Two rows of ``show`` images (step 0 and the last step, the classifier's and the aux head's
    labels under each: green = the intended class y) and the per-step curves with Wilson bands."""
    import pandas as pd

    name = (lambda i: classes[int(i)].split("/")[0][:12]) if classes is not None else (lambda i: str(int(i)))
    n, k = stats["n"], show
    fig = plt.figure(figsize=(1.1 * k + 4.5, 4.6))
    # fixed margins rather than tight_layout, which the labels under the images make shrink them
    grid = fig.add_gridspec(2, k + 2, width_ratios=[1] * k + [0.6, 3.5], hspace=0.55, wspace=0.15, left=0.04,
                            right=0.98, top=0.8, bottom=0.14)
    for r, (label, images, pred, aux_pred) in enumerate(rows):
        for i in range(k):
            ax = fig.add_subplot(grid[r, i])
            ax.imshow(images[i].permute(1, 2, 0).float().numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            for j, (who, p) in enumerate((("clf", pred[i]), ("aux", aux_pred[i]))):
                ax.text(0.5, -0.06 - 0.2 * j, f"{who}: {name(p)}", transform=ax.transAxes, ha="center", va="top",
                        fontsize=6.5, color="green" if p == y[i] else "red")
            if r == 0:
                ax.set_title(f"y: {name(y[i])}", fontsize=7)
            if i == 0:
                ax.set_ylabel(label)
    ax = fig.add_subplot(grid[:, k + 1])
    trace = pd.DataFrame(trace)
    for col, text in (("acc", "classifier accuracy"), ("aux_agree", "aux head says y")):
        bands = [rate_interval(v, n) for v in trace[col]]
        line, = ax.plot(trace["step"], trace[col], label=text)
        ax.fill_between(trace["step"], [b[0] for b in bands], [b[1] for b in bands], color=line.get_color(),
                        alpha=0.2, lw=0)
        last, (low, high) = trace[col].iloc[-1], bands[-1]
        ax.errorbar(trace["step"].iloc[-1], last, yerr=[[last - low], [high - last]], fmt="o",
                    color=line.get_color(), capsize=3)
    ax.set(xlabel="latent step", ylabel=f"fraction of the {n} codes", ylim=(0, 1.02),
           title=f"n = {n} codes, 95% Wilson bands", xlim=(-0.5, max(1, stats["steps"]) + 0.5))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"latent optimisation of {n} fixed codes (few, to redraw fast), {stats['steps']} steps, pixel term "
                 f"≤ {stats['pixel_eps'] * 255:.2f}/255 (measured L-inf max {stats['linf_max']:.2f}/255)\nunder each "
                 "image: the classifier's label (clf) and the GAN's aux head's (aux), green = the intended class y",
                 fontsize=9)
    return fig


def latent_panel(G, aux, classifier, *, steps: int, pixel_eps: float, n: int = 40, show: int = 8, seed: int = 0,
                 classes=None, attack: dict | None = None):
    """Latent optimisation of ``n`` fixed codes (labels ``0, 1, ..., K-1, 0, ...``; starting codes
    and Langevin noise drawn from ``seed``, so every redraw starts from the same samples) against
    ``classifier`` for ``steps`` steps, with the pixel term bounded by ``pixel_eps`` (pixels [0, 1];
    0 = latent only). ``attack``: the study's other settings (:func:`lib.artifacts.gan.attack_kw`
    of the recipe; its ``eps`` is replaced by ``2 pixel_eps``, the GAN working in [-1, 1]).

    Draws the first ``show`` samples at step 0 and after ``steps``, and the accuracy and aux
    agreement per step with Wilson bands. Returns ``(fig, stats)``: ``stats`` holds the accuracy
    and aux agreement at step 0 and at the end (with Wilson intervals), the success rate, the
    measured L-inf of the pixel term (``|x~ - G(z, y)|`` per image, max and median in /255), n and
    the settings."""
    y = torch.arange(n) % G.num_classes
    z0 = G.sample_z(n, torch.Generator().manual_seed(seed), device="cpu")
    clean, images, samples, pred, aux_pred, trace = _latent_run(G, aux, classifier, y, z0, steps, pixel_eps, seed,
                                                                 attack)
    p0, a0 = _judge(aux, classifier, clean) if steps > 0 else (pred, aux_pred)
    linf = (images - samples).abs().flatten(1).amax(1) * 255
    k_acc, k_aux, k_ok = int((pred == y).sum()), int((aux_pred == y).sum()), int(((pred != y) & (aux_pred == y)).sum())
    stats = {"steps": steps, "pixel_eps": pixel_eps, "n": n, "seed": seed,
             "clean_acc": int((p0 == y).sum()) / n, "clean_aux_agree": int((a0 == y).sum()) / n,
             "acc": k_acc / n, "acc_interval": binomial_interval(k_acc, n),
             "aux_agree": k_aux / n, "aux_interval": binomial_interval(k_aux, n),
             "success": k_ok / n, "success_interval": binomial_interval(k_ok, n),
             "linf_max": float(linf.max()), "linf_median": float(linf.median()), "pred": pred, "aux_pred": aux_pred}
    rows = [("step 0", clean, p0, a0), (f"step {steps}", images, pred, aux_pred)]
    return _draw(y, rows, trace, stats, min(show, n), classes), stats


def latent_readout(s: dict) -> str:
    """The line under the explorer's figure: the numbers it draws."""
    pct = lambda iv: f"[{iv[0]:.0%}, {iv[1]:.0%}]"
    return (f"after {s['steps']} latent steps (pixel term ≤ {s['pixel_eps'] * 255:.2f}/255, measured L-inf max "
            f"{s['linf_max']:.2f}/255): classifier accuracy {s['clean_acc']:.0%} → {s['acc']:.0%} "
            f"{pct(s['acc_interval'])}, aux head agrees {s['clean_aux_agree']:.0%} → {s['aux_agree']:.0%} "
            f"{pct(s['aux_interval'])}, success {s['success']:.0%} {pct(s['success_interval'])} (n = {s['n']} codes)")


def latent_explorer(G, aux, classifier, *, max_steps: int, classes=None, n: int = 40, steps: int | None = None,
                    attack: dict | None = None, show: int = 8, seed: int = 0):
    """Sliders for the number of latent steps (0..``max_steps``, default ``steps`` or ``max_steps``)
    and the pixel term's budget (0..16 /255, default the recipe's: ``attack["eps"] / 2`` in pixels)
    over :func:`latent_panel`."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    eps255 = (attack or {}).get("eps", STUDY_EPS) / 2 * 255
    return explorer(
        lambda steps, pixel_eps255: latent_panel(G, aux, classifier, steps=steps, pixel_eps=pixel_eps255 / 255, n=n,
                                                 show=show, seed=seed, classes=classes, attack=attack),
        latent_readout,
        steps=W.IntSlider(value=max_steps if steps is None else min(steps, max_steps), min=0, max=max_steps,
                          description="latent steps"),
        pixel_eps255=W.FloatSlider(value=min(eps255, 16.0), min=0, max=16, step=0.25,
                                   description="pixel term ×1/255"))
