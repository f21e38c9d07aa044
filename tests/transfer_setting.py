"""The tiny transfer setting of tests/test_transfer.py and tests/test_transfer_seeds.py: bases A
and B are width-8 small CNNs trained for two epochs on two disjoint sets of synsigns classes; the
target task is B's classes (4 of them, so a head that kept A's 5 outputs would be caught)."""
from __future__ import annotations

import torch

from lib import data as D
from lib.models import build
from lib.train import fit

SOURCE = [0, 21, 42, 63, 84]
TARGET = [7, 30, 53, 96]
FAST = dict(batch_size=32, progress=False)


def _split(classes, split, per):
    return D.subset_classes(D.load_synsigns(split, n=len(classes) * per, classes=classes), classes)


def make_setting() -> dict:
    """``{"A", "B", "train", "test"}``: the two bases and the target task's data."""
    src = _split(SOURCE, "train", 40)
    tr, te = _split(TARGET, "train", 40), _split(TARGET, "test", 16)
    torch.manual_seed(0)
    base_a = build("small_cnn", len(SOURCE), width=8)
    fit(base_a, src, epochs=2, lr=0.1, **FAST)
    torch.manual_seed(1)
    base_b = build("small_cnn", len(TARGET), width=8)
    fit(base_b, tr, epochs=2, lr=0.1, **FAST)
    return {"A": base_a, "B": base_b, "train": tr, "test": te}
