"""Figures in one house style, saved to ``figures/`` as PNG (for the README) and SVG (for papers)."""
from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
import torch

from .config import current

PALETTE = "colorblind"


def style() -> None:
    """The workbook's plotting style (seaborn whitegrid, colour-blind palette, readable sizes)."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold",
                      "figure.autolayout": False})


_N = re.compile(r"\bn\s*=\s*([\d,]+)|\(([\d,]+) (?:\w+ )?images\)|([\d,]+) (?:test |validation )?images")


def _titles(fig) -> str:
    parts = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    parts += titled if len(titled) <= 4 else []  # an image grid's per-image titles are not a caption
    text = "; ".join(p.replace("\n", " ") for p in parts if p)
    return text if len(text) <= 240 else text[:237] + "..."


def _n_from(text: str) -> str | None:
    found = [next(g for g in m.groups() if g) for m in _N.finditer(text)]
    return ", ".join(dict.fromkeys(found)) if found else None


def record(folder: Path, name: str, entry: dict, notebook: str | None = None) -> None:
    """Add ``entry`` to ``folder/index.json`` (what ``lib.workbook`` turns into a run's index.md), as an
    output of ``notebook`` (default: the one this process runs)."""
    index = folder / "index.json"
    # two kernels of one run (``--jobs 2``) add entries at once: read, add and replace under a lock
    with open(folder / ".index.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            items = json.loads(index.read_text()) if index.is_file() else {}
        except json.JSONDecodeError:
            items = {}
        items[name] = {**entry, "notebook": notebook or current().notebook}
        tmp = index.with_name(f".index.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(items, indent=1) + "\n")
        os.replace(tmp, index)


def save(fig: matplotlib.figure.Figure, name: str, formats=("png", "svg"), *, caption: str | None = None,
         n=None) -> list[Path]:
    """Save ``fig`` as ``figures/<name>.<fmt>`` and return the paths.

    ``caption`` (default: the figure's titles) and ``n`` (default: read from them, e.g.
    "n=200" or "(300 validation images)") go to the folder's ``index.json`` for the run's index."""
    out = []
    for fmt in formats:
        path = current().figures_dir() / f"{name}.{fmt}"
        fig.savefig(path, bbox_inches="tight")
        out.append(path)
    caption = caption or _titles(fig)
    record(current().figures_dir(), name, {"kind": "figure", "files": [p.name for p in out], "caption": caption,
                                  "n": str(n) if n is not None else _n_from(caption)})
    return out


def save_table(df: pd.DataFrame, name: str, *, caption: str | None = None, n=None, markdown: bool = True) -> Path:
    """Save a tidy table as ``<tables>/<name>.csv`` and, with ``markdown``, a Markdown copy for
    the README (off for long machine-readable tables, which nobody reads as Markdown);
    ``caption``/``n`` (default: the ``n`` column's values) go to the run's index."""
    folder = current().tables_dir()
    path = folder / f"{name}.csv"
    df.to_csv(path, index=False)
    files = [path.name]
    stale = folder / f"{name}.md"
    if not markdown and stale.exists():  # a copy left by an earlier run would no longer match the CSV
        stale.unlink()
    try:
        if markdown:
            stale.write_text(df.to_markdown(index=False) + "\n")
            files.append(f"{name}.md")
    except ImportError:  # tabulate is optional
        pass
    if n is None and "n" in df.columns and len(df):
        n = ", ".join(str(v) for v in dict.fromkeys(df["n"].dropna().astype(int).tolist()))
    record(folder, name, {"kind": "table", "files": files, "rows": len(df),
                           "caption": caption or f"{len(df)} rows: {', '.join(map(str, df.columns[:8]))}"
                                                 + (", ..." if len(df.columns) > 8 else ""),
                           "n": str(n) if n is not None else None})
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


def training_curves(histories: dict[str, pd.DataFrame], metrics=("train_acc", "val_acc"), title: str | None = None,
                    names: dict[str, str] | None = None):
    """Accuracy (or any metric column) per epoch for several runs, one line per run and metric.
    ``names`` renames metrics in the legend, e.g. ``{"val_acc": "test accuracy"}`` when ``fit``'s
    ``val`` was the test set (its history calls every evaluated set ``val``)."""
    names = names or {}
    rows = []
    for run, h in histories.items():
        for m in metrics:
            if m in h:
                rows += [{"run": run, "metric": names.get(m, m), "epoch": e, "value": v}
                         for e, v in zip(h["epoch"], h[m])]
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    sns.lineplot(df, x="epoch", y="value", hue="run", style="metric", marker="o", ax=ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


ANB_STYLE = {"AnB": ("tab:red", "o"), "AnB+": ("tab:red", "^"), "BnB": ("tab:blue", "o"),
             "BnB+": ("tab:blue", "^")}


def anb_figure(table: pd.DataFrame, base_b_acc: float | None = None, attacks=(), title: str | None = None):
    """Yosinski et al.'s block-transfer figure: test accuracy against the number ``n`` of copied
    blocks, one series per variant (AnB/AnB+ red, BnB/BnB+ blue; circles: copied blocks frozen,
    triangles: fine-tuned), base B as the reference at ``n = 0``. Each name in ``attacks``
    (a column ``<name>_acc`` of the :func:`lib.transfer.anb_sweep` table) adds a panel with the
    same series on those adversarial images."""
    panels = [("test_acc", "natural test images")] + [(f"{a}_acc", f"adversarial: {a}, crafted on base A")
                                                      for a in attacks]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), sharey=True, squeeze=False)
    for ax, (col, label) in zip(axes[0], panels):
        for variant, part in table.groupby("variant", sort=False):
            colour, marker = ANB_STYLE.get(variant, (None, "o"))
            part = part.sort_values("n")
            ax.plot(part["n"], part[col], marker=marker, color=colour, label=variant,
                    linestyle="-" if variant.startswith("A") else "--", alpha=0.9)
        if base_b_acc is not None and col == "test_acc":
            ax.scatter([0], [base_b_acc], color="black", marker="s", zorder=5, label="base B")
        ax.set_xlabel("n (blocks copied from the source base)")
        ax.set_title(label, fontsize=10)
        ax.set_xticks(sorted(set(table["n"]) | ({0} if base_b_acc is not None else set())))
    axes[0, 0].set_ylabel("top-1 accuracy on task B")
    axes[0, 0].legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def method_bars(table: pd.DataFrame, metrics: dict[str, str], title: str | None = None):
    """A grouped seaborn bar chart: one group per ``method`` (rows of ``table``), one bar per
    column in ``metrics`` (column -> legend label), values in [0, 1] written on the bars."""
    long = table.melt(id_vars="method", value_vars=list(metrics), var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(metrics)
    fig, ax = plt.subplots(figsize=(1.3 * len(table) + 2.5, 3.8))
    sns.barplot(long, x="method", y="value", hue="metric", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7, padding=1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("")
    ax.set_ylabel("rate")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=len(metrics))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
