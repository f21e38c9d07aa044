"""Evasion attacks; every one takes [0, 1] images and budgets in pixel units (conventions in
:mod:`lib.attacks.core`).

=================  ===========================================  ==================================
``fgsm``           one signed step (``gradient_sign``)           Goodfellow et al. 2015
``ll_fgsm``        step toward the least-likely class            Kurakin et al. 2017
``pgd``            L-inf / L2 PGD, random start (``projected``)  Madry et al. 2018
``apgd``           APGD-CE / APGD-DLR / APGD-T (``auto_pgd``)    Croce & Hein 2020
``square``         gradient-free random search (``square``)      Andriushchenko et al. 2020
``feature_attack`` PGD on penultimate features                   Renofeation evaluation
``dlr_loss``       Difference-of-Logits-Ratio loss (``core``)     Croce & Hein 2020
=================  ===========================================  ==================================

This module holds the one name -> attack factory (:func:`attack_fn`), :func:`with_own_labels`
and :func:`as_batch_hook`. Crafting once and evaluating many models is :mod:`lib.evaluate`;
AutoAttack-style ensembles are :mod:`lib.robustness`; success rates are :mod:`lib.metrics`.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from . import core
from .auto_pgd import apgd
from .core import LOSSES, NORMS, attack_mode, dlr_loss, prepare_batch
from .feature_space import feature_attack, feature_attack_loss
from .gradient_sign import fgsm, ll_fgsm
from .projected import pgd
from .square import square

ATTACKS = ("fgsm", "ll_fgsm", "pgd", "apgd", "apgd_t", "square", "feature")


def with_own_labels(attack: Callable) -> Callable[[nn.Module, Tensor, Tensor | None], Tensor]:
    """``attack(model, x, y)`` run with the model's own clean predictions as labels, ``y`` ignored.

    For a source model whose classes are not the data's (a pretrained teacher's head over its
    source task, attacked with images of the target task): untargeted PGD then pushes each image
    away from whatever the teacher sees in it."""

    def own(model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        with attack_mode(model):
            x0 = prepare_batch(model, x)
            with torch.no_grad():
                pred = model(x0).float().argmax(1)
        return attack(model, x0, pred)

    own.attack = attack
    own.__name__ = f"{getattr(attack, 'name', getattr(attack, '__name__', 'attack'))}_own_labels"
    return own


_FUNCTIONS = {"fgsm": fgsm, "ll_fgsm": ll_fgsm, "pgd": pgd, "apgd": apgd, "square": square, "feature": feature_attack,
              "apgd_t": functools.partial(apgd, loss="dlr", targeted=True)}


_LABEL_FREE = ("ll_fgsm", "feature")  # attacks that take no labels: called as fn(model, x, ...)


class AttackFn:
    """An attack with its parameters bound: ``attack(model, x, y) -> x_adv`` (see :func:`attack_fn`).
    ``name`` and ``params`` label results; ``repr`` reads like the call that made it."""

    def __init__(self, name: str, params: dict):
        self.name, self.params = name, dict(params)
        self._fn = _FUNCTIONS[name]

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.name in _LABEL_FREE:  # the least-likely class / the feature target replaces the label
            return self._fn(model, x, **self.params)
        return self._fn(model, x, y, **self.params)

    def __repr__(self) -> str:
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else repr(v)
        return f"{self.name}({', '.join(f'{k}={fmt(v)}' for k, v in self.params.items())})"


def attack_fn(name: str, **params) -> AttackFn:
    """An attack by name with its parameters bound, called as ``attack(model, x, y)``.

    Names: ``fgsm``, ``ll_fgsm`` (ignores ``y``), ``pgd``, ``apgd``, ``apgd_t`` (:func:`apgd` with
    ``loss="dlr", targeted=True``), ``square`` (:func:`square`, gradient-free), ``feature``
    (:func:`feature_attack`, ignores ``y``).
    E.g. ``attack_fn("pgd", eps=8/255, alpha=2/255, steps=10)``, ``attack_fn("square", eps=8/255, queries=5000)``.
    Missing or unknown parameters raise TypeError here, not at the first call.
    """
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown attack {name!r}; choose from {ATTACKS}")
    fn = _FUNCTIONS[name]
    placeholders = (None, None) if name in _LABEL_FREE else (None, None, None)
    try:
        inspect.signature(fn).bind(*placeholders, **params)
    except TypeError as err:
        raise TypeError(f"attack_fn({name!r}, ...): {err}") from None
    return AttackFn(name, params)


def as_batch_hook(attack: Callable) -> Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``attack(model, x, y) -> x_adv`` as a ``batch_hook(model, x, y) -> (x_adv, y)`` for
    :func:`lib.train.fit` (adversarial training) and :func:`lib.train.predict` (robust accuracy)."""

    def hook(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return attack(model, x, y), y

    hook.attack = attack
    return hook


__all__ = ["fgsm", "ll_fgsm", "pgd", "apgd", "square", "feature_attack", "feature_attack_loss", "dlr_loss",
           "with_own_labels", "attack_fn", "as_batch_hook", "attack_mode", "AttackFn", "NORMS", "LOSSES", "ATTACKS",
           "core"]
