"""Craft once, measure many: adversarial images made on one source model and sent to others.

Transfer (black-box) attacks are evaluated the same way everywhere in the workbook: the
adversarial set is crafted *once* on the source (a public pretrained base, a teacher) over a
fixed set of test images, and every target model is scored on the very same images, so models
compare image for image and nothing is crafted twice. :func:`craft` makes the set
(:func:`craft_sets` several on the same images), :func:`transfer_scores` scores one model on it,
:func:`attack_table` does both for a dict of students (plus a white-box attack on each) on a
stratified subset (:func:`eval_images`).
``transfer_eval`` is the one-source, one-target case.

Both :mod:`lib.robustness` and :mod:`lib.evaluate`'s checkpoint reports build on this module; it
imports neither of them (they import it as ``lib.evaluate.crafted``), so no import circle runs
through it.
"""
from __future__ import annotations

from typing import Callable, Mapping

import pandas as pd
import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from ..attacks.core import module_device, saved_modes
from ..data import stratified_subset
from ..metrics import accuracy, attack_success_rate
from ..train import Batches, as_channels_last, channels_last_while, predict


def eval_images(data, n: int | None = None, seed: int = 0, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """``n`` images of ``data`` (all when None) with every class in proportion
    (:func:`lib.data.stratified_subset`, the same ones for a given ``seed``) as float [0, 1]
    tensors and their labels, on the CPU."""
    xs, ys = zip(*Batches(stratified_subset(data, n, seed), batch_size, torch.device("cpu")))
    return torch.cat(xs), torch.cat(ys)


def craft(source: nn.Module, data, attack: Callable, *, batch_size: int = 256,
          progress: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Adversarial versions of every image of ``data``, crafted on ``source`` with
    ``attack(source, x, y)``: returns ``(x, x_adv, y)`` on the CPU, in ``data``'s order, so
    one crafted set can be sent to many target models (``data``: an ``ImageSet``, an
    ``(images, labels)`` pair or a ``Dataset``)."""
    xs, advs, ys = [], [], []
    with saved_modes(source), channels_last_while(source) as cl:
        for x, y in tqdm(Batches(data, batch_size, module_device(source)), desc="craft",
                         disable=not progress, mininterval=1, leave=False):
            advs.append(attack(source, as_channels_last(x, cl), y).contiguous().cpu())
            xs.append(x.cpu())
            ys.append(y.cpu())
    return torch.cat(xs), torch.cat(advs), torch.cat(ys)



def craft_sets(source: nn.Module, x: Tensor, y: Tensor, attacks: Mapping[str, Callable], *,
               progress: bool = False) -> dict[str, Tensor]:
    """``{name: x_adv}``: each of ``attacks`` crafted on ``source`` over the same ``(x, y)`` with
    :func:`craft` (a dict of tensors, so :func:`lib.cache.cached` stores it as safetensors)."""
    return {name: craft(source, (x, y), attack, progress=progress)[1] for name, attack in attacks.items()}

def transfer_scores(model: nn.Module, x: Tensor, y: Tensor, crafted: Mapping[str, Tensor], *,
                    batch_size: int = 256) -> dict:
    """``clean_acc`` of ``model`` on ``x`` and, per crafted set ``name -> x_adv`` (same images),
    ``<name>_acc`` and ``<name>_asr`` (:func:`lib.metrics.attack_success_rate`: the share of the
    model's clean-correct images that the adversarial versions make wrong)."""
    clean_pred = predict(model, (x, y), batch_size=batch_size)[0].argmax(1)
    row = {"clean_acc": accuracy(clean_pred, y)}
    for name, x_adv in crafted.items():
        pred = predict(model, (x_adv, y), batch_size=batch_size)[0].argmax(1)
        row[f"{name}_acc"] = accuracy(pred, y)
        row[f"{name}_asr"] = attack_success_rate(clean_pred, pred, y)
    return row


def transfer_eval(source: nn.Module, target: nn.Module, data, attack: Callable, *, batch_size: int = 256,
                  progress: bool = False) -> dict:
    """Craft adversarial examples on ``source`` with ``attack(source, x, y)`` and evaluate them on
    ``target`` (a transfer, or black-box, attack; ``source is target`` is the white-box case).

    Returns ``{"clean_acc", "adv_acc", "asr", "n"}`` measured on the target, plus
    ``"source_clean_acc"`` and ``"source_adv_acc"`` (the white-box effect on the source). Both
    models are evaluated in eval mode and their modes restored.
    """
    x, x_adv, y = craft(source, data, attack, batch_size=batch_size, progress=progress)
    tgt = transfer_scores(target, x, y, {"adv": x_adv}, batch_size=batch_size)
    src = transfer_scores(source, x, y, {"adv": x_adv}, batch_size=batch_size)
    return {"clean_acc": tgt["clean_acc"], "adv_acc": tgt["adv_acc"], "asr": tgt["adv_asr"], "n": len(y),
            "source_clean_acc": src["clean_acc"], "source_adv_acc": src["adv_acc"]}


def attack_table(teacher: nn.Module, students: Mapping[str, nn.Module], test, *,
                 transfer_attacks: Mapping[str, Callable], whitebox: Callable | None = None,
                 n: int | None = None, seed: int = 0, batch_size: int = 256, progress: bool = True) -> pd.DataFrame:
    """Clean accuracy, transfer-attack success and white-box robustness of every student.

    Each attack of ``transfer_attacks`` (name -> ``attack(teacher, x, y)``, e.g.
    :func:`lib.attacks.feature_attack` bound with :func:`lib.attacks.attack_fn`) is crafted *once*
    on ``teacher`` over ``n`` test images (:func:`eval_images`: every class in proportion, the
    same images for a given ``seed``) and the same adversarial images are sent to every student.
    ``whitebox`` (``attack(student, x, y)``, e.g. PGD) attacks each student itself.

    One row per student: ``method``, ``clean_acc``; per transfer attack ``<name>_acc`` and
    ``<name>_asr``; ``whitebox_acc`` and ``whitebox_asr``; ``n``.
    """
    x, y = eval_images(test, n, seed, batch_size)
    crafted = {name: craft(teacher, (x, y), attack, batch_size=batch_size, progress=progress)[1]
               for name, attack in transfer_attacks.items()}
    rows = []
    for method, student in tqdm(students.items(), desc="students", disable=not progress, leave=False):
        own = {"whitebox": craft(student, (x, y), whitebox, batch_size=batch_size)[1]} if whitebox else {}
        rows.append({"method": method, **transfer_scores(student, x, y, {**crafted, **own}, batch_size=batch_size),
                     "n": len(y)})
    return pd.DataFrame(rows)
