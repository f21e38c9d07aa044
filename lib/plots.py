"""Figures in one house style, saved to ``figures/`` as PNG (for the README) and SVG (for papers)."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from .paths import figures_dir

PALETTE = "colorblind"


def style() -> None:
    """The workbook's plotting style (seaborn whitegrid, colour-blind palette, readable sizes)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "figure.autolayout": False})


def save(fig: matplotlib.figure.Figure, name: str, formats=("png", "svg")) -> list[Path]:
    """Save ``fig`` as ``figures/<name>.<fmt>`` and return the paths."""
    out = []
    for fmt in formats:
        path = figures_dir() / f"{name}.{fmt}"
        fig.savefig(path, bbox_inches="tight")
        out.append(path)
    return out


def save_table(df: pd.DataFrame, name: str) -> Path:
    """Save a tidy table as ``figures/<name>.csv`` (and a Markdown copy for the README)."""
    path = figures_dir() / f"{name}.csv"
    df.to_csv(path, index=False)
    try:
        (figures_dir() / f"{name}.md").write_text(df.to_markdown(index=False) + "\n")
    except ImportError:  # tabulate is optional
        pass
    return path


def _hwc(img: torch.Tensor):
    img = img.detach().float().cpu()
    if img.dtype == torch.uint8 or img.max() > 1.5:
        img = img / 255
    return img.clamp(0, 1).permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor, titles=None, masks: torch.Tensor | None = None, ncols: int = 8,
               scale: float = 1.4, suptitle: str | None = None):
    """A grid of images (``(N,3,H,W)``, float in [0,1] or uint8) with optional titles and mask
    outlines (drawn as a contour, so the image itself stays visible)."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.12), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_hwc(images[i]), interpolation="nearest")
        if masks is not None:
            ax.contour(masks[i].float().cpu().numpy(), levels=[0.5], colors="yellow", linewidths=0.8)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7, fontweight="normal")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def training_curves(histories: dict[str, pd.DataFrame], metrics=("train_acc", "val_acc"), title: str | None = None):
    """Accuracy (or any metric column) per epoch for several runs, one line per run and metric."""
    rows = []
    for run, h in histories.items():
        for m in metrics:
            if m in h:
                rows += [{"run": run, "metric": m, "epoch": e, "value": v} for e, v in zip(h["epoch"], h[m])]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    sns.lineplot(df, x="epoch", y="value", hue="run", style="metric", marker="o", ax=ax)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
