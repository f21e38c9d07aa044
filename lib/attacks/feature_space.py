"""The feature attack of the Renofeation evaluation: PGD on a pretrained model's penultimate
features, ``feature_attack`` and its loss ``feature_attack_loss``."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from .core import attack_mode, check_attack_args, prepare_batch
from .projected import pgd_loop


# --------------------------------------------------------------------------------------------
# Feature-space attack on a pretrained layer
# --------------------------------------------------------------------------------------------
def feature_attack_loss(features: Tensor, neuron: int = 0, target: float = 1000.0,
                        rest_weight: float = 0.1) -> Tensor:
    """Per-sample distance of a feature vector ``(N, D)`` from the attack's target ``t``, with
    ``t[neuron] = target`` and every other entry 0:
    ``(f[neuron] - target)^2 + rest_weight * mean_{j != neuron} f[j]^2`` (float32, shape ``(N,)``).

    This is the task-agnostic objective of the Renofeation evaluation (its ``myloss``, after
    Rezaei & Liu 2020): the attacker knows only the pretrained feature extractor, not the
    student's head or task, and drives the penultimate features to an extreme, unnatural point.
    :func:`feature_attack` minimises it.
    """
    f = features.float().flatten(1)
    if not 0 <= neuron < f.shape[1]:
        raise ValueError(f"neuron {neuron} is outside the {f.shape[1]} features")
    rest = torch.cat([f[:, :neuron], f[:, neuron + 1:]], dim=1)
    far = (f[:, neuron] - target) ** 2
    return far + rest_weight * rest.pow(2).mean(1) if rest.shape[1] else far


def feature_attack(model: nn.Module, x: Tensor, eps: float, alpha: float, steps: int, *, neuron: int = 0,
                   target: float = 1000.0, rest_weight: float = 0.1, norm: str = "linf",
                   random_start: bool = True, seed: int | None = None, features: Callable | None = None,
                   zero_shortcut: bool = False) -> Tensor:
    """PGD in pixel space on a pretrained model's *features* (no labels, no head needed).

    Each step goes down :func:`feature_attack_loss` of ``features(x)`` - by default the
    penultimate vector (``model.penultimate``, the pooled features ``head.fc`` reads) - pushing
    feature ``neuron`` toward ``target`` and the rest toward zero, with the projections,
    clamping, random start and eval-mode handling of :func:`pgd`. It is the transfer attack of
    the Renofeation study: crafted on the pretrained model alone and sent to every student
    fine-tuned from it, whatever its task.

    The seed evaluation (Renofeation ``eval_robustness.py``, advertorch ``LinfPGDAttack``) uses
    ``neuron=0``, ``target=1000``, ``rest_weight=0.1``, 40 steps of 0.01 within eps 0.1 with a
    random start - in the ImageNet-*normalised* input space, i.e. about 5.7/255 (eps) and
    0.57/255 (step) in pixels; pass pixel units here (``eps=0.1 * 0.226``, ``alpha=0.01 * 0.226``
    reproduce it). ``target=1000`` lies far beyond any natural activation, so the objective is in
    effect "maximise one neuron while keeping the others small".
    ``features``: any ``x -> (N, ...)`` callable of the model to attack instead of the
    penultimate layer (e.g. ``lambda x: model.features(x, ["conv3"])["conv3"]``).
    """
    check_attack_args(eps, norm)
    if features is None and not hasattr(model, "penultimate"):
        raise TypeError(f"{type(model).__name__} has no penultimate(); pass features=...")
    with attack_mode(model):
        x0 = prepare_batch(model, x)
        objective = lambda f: -feature_attack_loss(f, neuron, target, rest_weight)
        return pgd_loop(features or model.penultimate, x0, objective, eps, alpha, steps, norm, random_start, seed,
                        zero_shortcut=zero_shortcut)
