"""How good are the AC-GAN's samples, measured without Inception weights (none offline):
an independently trained classifier's accuracy on class-conditional samples per class (the
study reports 89% for its DenseNet on clean AC-GAN samples), the critic's auxiliary head's
accuracy on the same samples, and a per-class grid (rows = classes, columns = fixed codes)."""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn as nn
from torch import Tensor

from ..metrics import accuracy_with_interval
from .nets import check_labels, to_pixels


@torch.no_grad()
def generate(G: nn.Module, y: Tensor, *, seed: int = 0, z: Tensor | None = None, batch_size: int = 256) -> Tensor:
    """Samples ``G(z, y)`` as pixels in [0, 1] on the CPU (eval mode, mode restored), ``z`` drawn
    from N(0, I) with ``seed`` unless given."""
    y = check_labels(y, G.num_classes)
    z = torch.randn(len(y), G.z_dim, generator=torch.Generator().manual_seed(seed)) if z is None else z
    device = next(G.parameters()).device
    was = G.training
    G.eval()
    out = [to_pixels(G(z[i:i + batch_size].to(device), y[i:i + batch_size].to(device))).cpu()
           for i in range(0, len(y), batch_size)]
    G.train(was)
    return torch.cat(out)


def balanced_labels(num_classes: int, per_class: int) -> Tensor:
    """``0, 0, ..., 1, 1, ...``: ``per_class`` labels of each class."""
    return torch.arange(num_classes).repeat_interleave(per_class)


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def sample_quality(G: nn.Module, aux: nn.Module, classifier: nn.Module, per_class: int, *, seed: int = 0,
                   classes: list[str] | None = None) -> pd.DataFrame:
    """One row per class plus ``all``: ``per_class`` samples of the class, the independent
    ``classifier``'s accuracy on them (``clf_acc`` with its Wilson interval ``clf_low``/``clf_high``)
    and the aux head's (``aux_acc``, ``aux_low``, ``aux_high``), ``n``."""
    y = balanced_labels(G.num_classes, per_class)
    x = generate(G, y, seed=seed)
    pred_c = _predict(classifier, x)
    pred_a = _predict(aux, x * 2 - 1)
    rows = []
    names = classes or [str(k) for k in range(G.num_classes)]
    for k, name in [*enumerate(names), (None, "all")]:
        m = torch.ones_like(y, dtype=torch.bool) if k is None else y == k
        c, a = accuracy_with_interval(pred_c[m], y[m]), accuracy_with_interval(pred_a[m], y[m])
        rows.append({"class": name, "n": c["n"], "clf_acc": c["acc"], "clf_low": c["low"], "clf_high": c["high"],
                     "aux_acc": a["acc"], "aux_low": a["low"], "aux_high": a["high"]})
    return pd.DataFrame(rows)


def class_grid(G: nn.Module, columns: int = 8, seed: int = 0) -> Tensor:
    """Samples for a grid with one row per class and one column per fixed code ``z_j`` (the same
    codes in every row, so a column shows what the class label alone changes): ``(K * columns, 3, H, W)``."""
    z = torch.randn(columns, G.z_dim, generator=torch.Generator().manual_seed(seed))
    y = balanced_labels(G.num_classes, columns)
    return generate(G, y, z=z.repeat(G.num_classes, 1))
