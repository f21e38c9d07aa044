"""Notebook 02's explorer: the feature attack crafted on the teacher and sent to every student."""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import attacks
from ..evaluate.crafted import transfer_scores
from ..train import model_device
from .explorer import explorer, headless


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
    if headless():  # before any widget exists: creating one opens a comm to the front end
        return None
    import ipywidgets as W

    return explorer(
        lambda eps255, steps: transfer_panel(teacher, students, x, y, eps=eps255 / 255, steps=steps,
                                             classes=classes, show=show),
        lambda t: "; ".join(f"{r.method}: accuracy {r.clean_acc:.0%} clean, {r.adv_acc:.0%} attacked"
                            for r in t.itertuples()) + f" ({len(y)} images)",
        eps255=W.FloatSlider(value=6, min=0, max=32, step=0.5, description="eps ×1/255"),
        steps=W.IntSlider(value=20, min=0, max=60, description="steps"))
