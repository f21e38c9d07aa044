"""Models made from other models: copies for a new target task, frozen teachers; and the
fingerprints and distances that compare them (fresh re-initialisations, which need
:func:`lib.models.build`, are :func:`lib.models.fresh_like`).

Every random draw here is seeded from ``(seed, purpose)`` inside a forked RNG, so making a copy
never disturbs the caller's random stream and ``seed=0`` does not replay ``torch.manual_seed(0)``
(which may be exactly what built the template).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math

import torch
from torch import nn

from .classifier import Classifier, freeze


def derived_seed(seed: int, purpose: str) -> int:
    """A seed for ``purpose`` derived from ``seed`` (SHA-256 of both)."""
    # the "lib.transfer" prefix is historical: it keeps the initialisations of cached models
    digest = hashlib.sha256(f"lib.transfer:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextlib.contextmanager
def seeded(seed: int, purpose: str = "init"):
    """Seed torch's CPU RNG with :func:`derived_seed` and restore the global state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, purpose))
        yield


def copy_for_target(pretrained: Classifier, num_classes: int, seed: int = 0) -> Classifier:
    """A deep copy of ``pretrained`` (unfrozen) with a fresh, seeded head of ``num_classes``."""
    model = copy.deepcopy(pretrained)
    freeze(model, False)
    with seeded(seed, "head"):
        model.reset_head(num_classes)
    return model


def frozen_copy(model: Classifier, device=None) -> Classifier:
    """A frozen eval-mode copy (no grads, BatchNorm statistics fixed): a teacher to distil from."""
    t = copy.deepcopy(model).to(device or next(model.parameters()).device)
    freeze(t, True)
    return t.eval()


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's state dict: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        if k.endswith("_extra_state"):
            continue  # frozen flags: how a model trains, not what it computes
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def param_distance(model: Classifier, reference: Classifier, body_only: bool = True) -> float:
    """Euclidean distance ``||w - w_ref||`` over the shared parameters (the body by default)."""
    ref = dict(reference.named_parameters())
    tot = 0.0
    for k, p in model.named_parameters():
        if (body_only and k.startswith(("head.", "heads."))) or k not in ref or ref[k].shape != p.shape:
            continue
        tot += float((p.detach().float() - ref[k].detach().to(p.device).float()).pow(2).sum())
    return math.sqrt(tot)
