"""A tiny planted model for the backdoor defence tests (issue 31): a small CNN trained on six
synsigns classes with a BadNets square (4 px, bottom right) on 20% of its training images
relabelled to the target class 0, and a clean twin trained without poison.

Built once per test session (:func:`planted`, cached), in a few seconds on one CPU thread; the
tests of each detector and purification share it, so that "it flags the target class" and "it
lowers ASR" are asserted about the same model. The module also returns the poisoned training
set with the indices of the poisoned images (for the training-data detectors) and a small clean
set of the victim's own (for the purifications: BackdoorBench's 5% of the training data is 30
images here, so the fixture gives 60).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import pytest
import torch

from lib import data as D
from lib.backdoor import Trigger, backdoor_metrics, poison
from lib.models import build
from lib.train import fit

CLASSES = [3, 11, 27, 40, 51, 78]
TARGET = 0
RATE = 0.2
TRIGGER = Trigger.badnets(4)
FIT = dict(epochs=8, batch_size=32, lr=0.05, progress=False)


@dataclass(frozen=True)
class Planted:
    model: torch.nn.Module       # trained on `poisoned` (eval mode)
    clean_model: torch.nn.Module  # the same recipe on the clean training set
    train: object                # the clean training set (ImageSet)
    poisoned: object             # the attacker's training set (ImageSet, labels changed)
    poisoned_idx: torch.Tensor   # indices into `poisoned` of the images that carry the trigger
    clean_small: object          # the victim's own clean images (not in `train`)
    test: object                 # clean test images
    trigger: Trigger = TRIGGER
    target: int = TARGET


def _load(split: str, per_class: int, seed: int):
    ds = D.load_synsigns(split, n=len(CLASSES) * per_class, classes=CLASSES, seed=seed)
    return D.subset_classes(ds, CLASSES)


@functools.lru_cache(maxsize=1)
def planted() -> Planted:
    """Built on one torch thread whatever the caller's setting, so that every test module gets
    the same model (the first caller builds it; with two threads the weights differ slightly,
    and the measured margins of the defence tests are for this one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build()
    finally:
        torch.set_num_threads(threads)


def _build() -> Planted:
    torch.manual_seed(0)
    train = _load("train", 100, 0)
    clean_small = _load("val", 10, 0)
    test = _load("test", 40, 0)
    bad = poison(train, TRIGGER, RATE, TARGET, seed=0)
    idx = bad.info["poisoned"].nonzero().flatten()
    model = build("small_cnn", len(CLASSES), width=16, seed=0)
    fit(model, bad, **FIT)
    clean = build("small_cnn", len(CLASSES), width=16, seed=0)
    fit(clean, train, **FIT)
    return Planted(model.eval(), clean.eval(), train, bad, idx, clean_small, test)


if __name__ == "__main__":  # how strong the fixture is: python -m tests.backdoor_planted
    import time
    t0 = time.perf_counter()
    p = planted()
    print(f"built in {time.perf_counter() - t0:.1f}s")
    for name, m in (("planted", p.model), ("clean", p.clean_model)):
        r = backdoor_metrics(m, p.test, p.trigger, p.target)
        print(name, {k: round(r[k], 3) for k in ("clean_acc", "asr_bb", "ra")})


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module (conftest asks for 2, which oversubscribes the shared
    cores; the values the defence tests assert were measured on one). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")`` after importing it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clean_acc_and_asr(model) -> tuple[float, float]:
    """``(clean accuracy, BackdoorBench ASR)`` of ``model`` on the planted fixture's test set."""
    p = planted()
    r = backdoor_metrics(model.eval(), p.test, p.trigger, p.target)
    return r["clean_acc"], r["asr_bb"]
