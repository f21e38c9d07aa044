"""Notebook 03's explorer: PGD on a batch at the reader's eps, step size and steps."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import attacks
from ..metrics import accuracy, attack_success_rate
from ..train import model_device
from .explorer import explorer, headless


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


def attack_explorer(model, x: torch.Tensor, y: torch.Tensor, classes=None, show: int = 8):
    """Sliders for L-inf eps, step size and steps over :func:`attack_panel`."""
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    return explorer(
        lambda eps255, alpha255, steps: attack_panel(model, x, y, eps=eps255 / 255, alpha=alpha255 / 255,
                                                     steps=steps, classes=classes, show=show),
        lambda s: (f"accuracy {s['clean_acc']:.0%} clean, {s['adv_acc']:.0%} under PGD-{s['steps']} at eps "
                   f"{s['eps'] * 255:g}/255 (step {s['alpha'] * 255:g}/255) on {s['n']} images; attack success "
                   f"rate {s['asr']:.0%}"),
        eps255=W.FloatSlider(value=8, min=0, max=32, step=0.5, description="eps ×1/255"),
        alpha255=W.FloatSlider(value=2, min=0.25, max=16, step=0.25, description="step ×1/255"),
        steps=W.IntSlider(value=10, min=0, max=50, description="steps"))
