"""Interactive explorers. Each widget is a thin ``ipywidgets`` shell over a plain function that
tests call directly (``attack_panel``), so what a reader sees is what the tests check."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import torch

from . import attacks
from .evaluate import transfer_scores
from .metrics import accuracy, attack_success_rate
from .stall import HEADLESS_ENV
from .train import model_device


def attack_panel(model, x: torch.Tensor, y: torch.Tensor, *, eps: float = 8 / 255, alpha: float = 2 / 255,
                 steps: int = 10, norm: str = "linf", classes=None, show: int = 8, magnify: float | None = None,
                 seed: int = 0):
    """Attack a batch with PGD and draw clean / adversarial / perturbation rows with predictions.

    ``steps=1`` with ``alpha=eps`` is FGSM (no random start for one step); ``steps=0`` or
    ``eps=0`` shows the clean batch. Returns ``(fig, stats)``
    where ``stats`` holds ``clean_acc``, ``adv_acc``, ``asr`` (share of clean-correct images made
    wrong), the largest perturbation norm and the settings. The perturbation row is magnified to
    fill [0, 1] (``magnify`` overrides) and the factor is printed in the row title.
    """
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    model.eval()
    if steps <= 0 or eps == 0:
        x_adv = x.clone()
    else:
        x_adv = attacks.pgd(model, x, y, eps, alpha, steps, norm=norm, random_start=steps > 1, seed=seed)
    with torch.no_grad():
        p_clean, p_adv = model(x).argmax(1), model(x_adv).argmax(1)
    delta = (x_adv - x).detach()
    dnorm = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    stats = {"eps": eps, "alpha": alpha, "steps": steps, "norm": norm,
             "clean_acc": accuracy(p_clean, y), "adv_acc": accuracy(p_adv, y),
             "asr": attack_success_rate(p_clean.cpu(), p_adv.cpu(), y.cpu()),
             "max_perturbation": dnorm.max().item(), "n": len(y)}
    k = min(show, len(y))
    largest = delta[:k].abs().max().item()
    mag = magnify or (0.5 / largest if largest > 0 else 1.0)  # nothing to magnify at eps 0 or 0 steps
    name = (lambda i: classes[i]) if classes is not None else str
    fig, axes = plt.subplots(3, k, figsize=(1.5 * k, 5.2), squeeze=False)
    short = lambda c: name(int(c)).replace("/", " ")[:18]
    for i in range(k):
        rows = [(x[i], p_clean[i]), (x_adv[i], p_adv[i]), ((delta[i] * mag + 0.5).clamp(0, 1), None)]
        for r, (img, pred) in enumerate(rows):
            ax = axes[r, i]
            ax.imshow(img.permute(1, 2, 0).float().cpu().numpy(), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if pred is not None:  # the prediction under each image: green when it is the true class
                ax.set_xlabel(f"pred: {short(pred)}", fontsize=6.5, color="green" if pred == y[i] else "red")
        axes[0, i].set_title(f"true: {short(y[i])}", fontsize=6.5)
    axes[0, 0].set_ylabel("clean")
    axes[1, 0].set_ylabel("adversarial")
    axes[2, 0].set_ylabel(f"δ × {mag:.0f}" if largest > 0 else "δ = 0")
    fig.suptitle(f"{norm} PGD-{steps}, eps={eps * 255:.1f}/255, step={alpha * 255:.2f}/255: "
                 f"accuracy {stats['clean_acc']:.0%} → {stats['adv_acc']:.0%} on {len(y)} images "
                 "(top: true class; under each image: the prediction, green when correct)", fontsize=9)
    fig.tight_layout()
    return fig, stats


def _explorer(draw, readout=None, **sliders):
    """ipywidgets sliders (updated on release) redrawing ``draw(**values) -> (fig, result)`` below
    them, with ``readout(result)`` (a line of text: the numbers the figure shows) under the figure.
    ``None`` and one printed line in a headless run (``WORKBOOK_HEADLESS=1``)."""
    import ipywidgets as W
    from IPython.display import display

    if os.environ.get(HEADLESS_ENV) == "1":
        # headless (papermill): no sliders, and no widget messages for the kernel to wedge on (ipykernel 7
        # lost an execute_reply after widget cells: lib.stall); the static figure beside it stands in
        print("explorer: open this notebook in JupyterLab to move its sliders (a headless run draws the figure above)")
        return None
    out = W.Output()

    def redraw(**values):
        with out:
            out.clear_output(wait=True)
            fig, result = draw(**values)[:2]
            display(fig)
            plt.close(fig)
            if readout is not None:
                print(readout(result))

    for slider in sliders.values():
        slider.continuous_update = False  # redraw on release, not at every step of a drag
        slider.style.description_width = "initial"  # labels such as "step ×1/255" whole, not cut
    box = W.VBox([W.interactive(redraw, **sliders), out])
    display(box)
    return box


def attack_explorer(model, x: torch.Tensor, y: torch.Tensor, classes=None, show: int = 8):
    """Sliders for L-inf eps, step size and steps over :func:`attack_panel`."""
    import ipywidgets as W

    return _explorer(
        lambda eps255, alpha255, steps: attack_panel(model, x, y, eps=eps255 / 255, alpha=alpha255 / 255,
                                                     steps=steps, classes=classes, show=show),
        lambda s: (f"accuracy {s['clean_acc']:.0%} clean, {s['adv_acc']:.0%} under PGD-{s['steps']} at eps "
                   f"{s['eps'] * 255:g}/255 (step {s['alpha'] * 255:g}/255) on {s['n']} images; attack success "
                   f"rate {s['asr']:.0%}"),
        eps255=W.FloatSlider(value=8, min=0, max=32, step=0.5, description="eps ×1/255"),
        alpha255=W.FloatSlider(value=2, min=0.25, max=16, step=0.25, description="step ×1/255"),
        steps=W.IntSlider(value=10, min=0, max=50, description="steps"))

def transfer_panel(teacher, students: dict, x: torch.Tensor, y: torch.Tensor, *, eps: float = 6 / 255,
                   steps: int = 20, alpha: float | None = None, classes=None, show: int = 6, seed: int = 0):
    """The feature attack (:func:`lib.attacks.feature_attack`) crafted on ``teacher`` and sent to
    every student: a bar per student (clean accuracy, accuracy on the crafted images, attack
    success rate) and a row of clean / crafted images with the first student's predictions.
    Returns ``(fig, table)``; ``table`` is a DataFrame with one row per student."""
    import pandas as pd

    device = model_device(teacher)
    x, y = x.to(device), y.to(device)
    alpha = eps / 10 if alpha is None else alpha
    if steps <= 0 or eps == 0:
        x_adv = x.clone()
    else:
        x_adv = attacks.feature_attack(teacher, x, eps, alpha, steps, seed=seed)
    rows, preds = [], {}
    for name, s in students.items():
        scores = transfer_scores(s, x.cpu(), y.cpu(), {"adv": x_adv.cpu()})
        rows.append({"method": name, "clean_acc": scores["clean_acc"], "adv_acc": scores["adv_acc"],
                     "asr": scores["adv_asr"]})
        with torch.no_grad():
            preds[name] = s.eval()(x_adv.to(model_device(s))).argmax(1).cpu()
    table = pd.DataFrame(rows)
    k = min(show, len(y))
    fig = plt.figure(figsize=(max(8, 1.3 * k + 4), 4.6))
    grid = fig.add_gridspec(2, k + 4)
    ax = fig.add_subplot(grid[:, :4])
    ax.barh(table["method"], table["asr"], color="tab:red")
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("attack success rate")
    first = next(iter(students))
    name = (lambda i: classes[i]) if classes is not None else str
    for i in range(k):
        for r, (img, lab) in enumerate(((x[i], int(y[i])), (x_adv[i], int(preds[first][i])))):
            a = fig.add_subplot(grid[r, 4 + i])
            a.imshow(img.permute(1, 2, 0).float().cpu().numpy(), interpolation="nearest")
            a.set_xticks([]), a.set_yticks([])
            a.set_title(name(lab).replace("/", "\n"), fontsize=7,
                        color="black" if r == 0 else ("green" if lab == int(y[i]) else "red"))
    fig.suptitle(f"feature attack on the teacher, eps={eps * 255:.1f}/255, {steps} steps; "
                 f"images: true class (top), {first} on the crafted image (bottom)", fontsize=9)
    fig.tight_layout()
    return fig, table


def transfer_explorer(teacher, students: dict, x: torch.Tensor, y: torch.Tensor, classes=None, show: int = 6):
    """Sliders for the feature attack's eps and steps over :func:`transfer_panel`."""
    import ipywidgets as W

    return _explorer(
        lambda eps255, steps: transfer_panel(teacher, students, x, y, eps=eps255 / 255, steps=steps,
                                             classes=classes, show=show),
        lambda t: "; ".join(f"{r.method}: accuracy {r.clean_acc:.0%} clean, {r.adv_acc:.0%} attacked"
                            for r in t.itertuples()) + f" ({len(y)} images)",
        eps255=W.FloatSlider(value=6, min=0, max=32, step=0.5, description="eps ×1/255"),
        steps=W.IntSlider(value=20, min=0, max=60, description="steps"))
