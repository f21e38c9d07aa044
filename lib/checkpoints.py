"""Epoch checkpoints of :func:`lib.train.fit`, so that a run killed mid-training resumes.

:meth:`lib.store.Store.model` trains each model inside :func:`scope` (a folder under the store,
``checkpoints/<key>/``). Every ``fit`` call inside that scope gets its own file (``fit0.pt``,
``fit1.pt``, ... in call order: a method that trains in two phases has two) and saves, after each
epoch: the model's state dict, the optimiser's and scheduler's, the history so far, the RNG states
(torch, NumPy, Python) and the state of an ``on_epoch_end`` callback that has ``state_dict`` /
``load_state_dict`` (as :class:`lib.adversarial_training.RobustCheckpoint` has). Started again with
the same arguments, ``fit`` loads the file, skips the finished epochs and continues; on the CPU the
result is bit-identical to an uninterrupted run (``tests/test_checkpoints.py`` kills a process
mid-training to check). A ``fit`` whose ``on_epoch_end`` keeps state it cannot save (e.g. an SWA
average) does not checkpoint: it reruns from its first epoch. Once the model is saved to the store
the folder is deleted.

Files are written atomically (temporary file, then ``os.replace``) and read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only, never pickled code.
"""
from __future__ import annotations

import contextvars
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("fit_checkpoints", default=None)


class Scope:
    """The checkpoint folder of one store model; hands each ``fit`` call its own file."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.calls = 0
        self.resumed = 0  # the last finished epoch a fit resumed from (0: none)

    def next_fit(self) -> FitCheckpoint:
        path = self.folder / f"fit{self.calls}.pt"
        self.calls += 1
        return FitCheckpoint(path, self)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def scope(folder):
    """Checkpoint every ``fit`` called inside the block into ``folder``."""
    s = Scope(folder)
    token = _SCOPE.set(s)
    try:
        yield s
    finally:
        _SCOPE.reset(token)


def current_fit() -> FitCheckpoint | None:
    """The checkpoint file of the ``fit`` call now starting, or None outside a :func:`scope`."""
    s = _SCOPE.get()
    return s.next_fit() if s is not None else None


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": _numpy_state(), "python": _python_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), int(state["numpy"]["pos"]),
                         int(state["numpy"]["has_gauss"]), float(state["numpy"]["cached"])))
    version, internal, gauss = state["python"]["version"], state["python"]["state"], state["python"]["gauss"]
    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), None if gauss is None else float(gauss)))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state() -> dict:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _python_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


class FitCheckpoint:
    """One ``fit`` call's checkpoint file."""

    def __init__(self, path: Path, owner: Scope):
        self.path, self.owner = Path(path), owner

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # a file from another torch version or a broken disk: start over
            print(f"[checkpoint] ignoring unreadable {self.path} ({error}); training from the first epoch")
            return None

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def resumed_at(self, epoch: int) -> None:
        self.owner.resumed = max(self.owner.resumed, epoch)
