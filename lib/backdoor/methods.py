"""The backdoor study's ways to make a model, each ``(pretrained, train, ...) -> (model, history)``
on top of notebook 02's :func:`lib.transfer.fine_tune` (never modifying ``pretrained``):

=================  ==============================================================================
``plant``          the attacker: fine-tune on a poisoned set, conv weights below the global
                   ``update_ratio`` magnitude quantile held bit-identical (the authors'
                   ``backdoor_update_ratio``)
``mag``            zero the globally smallest ``ratio`` of conv weights, then fine-tune all
                   (the authors' ``WeightPruner`` with ``--train_all``: pruned weights may regrow)
``divmag``         trial fine-tune, score ``|dw| / |w|``, zero the smallest ``fraction``, fine-tune
                   (the authors' ``GlobalDatasetGradOptimDivMagIter``)
``fine_pruning``   Liu et al. 2018: remove the last stage's channels least active on the clean
                   training data, then fine-tune with them kept removed
=================  ==============================================================================

Re-training and Renofeation are :func:`lib.transfer.retrain` / :func:`lib.transfer.renofeation`.
"""
from __future__ import annotations

import copy

import pandas as pd
import torch

from ..models import Classifier, freeze
from ..train import FixedWeights, fit
from ..transfer import fine_tune
from .pruning import (channel_activity, channel_masks, conv_weights, divmag_scores, magnitude_masks,
                      magnitude_prune, smallest, zero_weights)


class HoldFixed:
    """:class:`lib.train.FixedWeights` for a model that does not exist yet (the copy that
    :func:`lib.transfer.fine_tune` makes): built on the first ``after_backward`` call, before
    any optimiser step, so the values it keeps are the copy's starting values. Parameter names
    are those of the pretrained model, which the copy shares."""

    def __init__(self, masks: dict[str, torch.Tensor]):
        self.masks, self.fixed = masks, None

    def after_backward(self, model) -> None:
        if self.fixed is None:
            self.fixed = FixedWeights(model, self.masks)
        self.fixed.after_backward(model)

    def after_step(self, model) -> None:
        self.fixed.after_step(model)

    def hooks(self) -> dict:
        return {"after_backward": self.after_backward, "after_step": self.after_step}


def _no_hooks(kw: dict, method: str) -> None:
    if "after_backward" in kw or "after_step" in kw:
        raise TypeError(f"{method} sets after_backward/after_step itself; do not pass them")


def plant(pretrained: Classifier, poisoned, *, update_ratio: float = 0.0, **ft_kw) -> tuple[Classifier, pd.DataFrame]:
    """The attacker's teacher: :func:`fine_tune` of ``pretrained`` on ``poisoned`` (a
    :func:`lib.backdoor.poison` set) with the globally smallest ``update_ratio`` of conv weights
    by ``|w|`` (one threshold over all conv layers) held bit-identical (zero gradient, values
    restored after every step: weight decay and momentum cannot move them either, unlike the
    authors' gradient masking, which let SGD's weight decay shrink them). BatchNorm and the
    head always train. ``history.attrs["fixed"]``: how many weights were held."""
    if not 0 <= update_ratio < 1:
        raise ValueError(f"update_ratio must be in [0, 1), got {update_ratio}")
    _no_hooks(ft_kw, "plant")
    ft_kw.setdefault("desc", f"plant (update ratio {update_ratio:g})")
    masks = magnitude_masks(pretrained, update_ratio)
    n_fixed = int(sum(int(m.sum()) for m in masks.values()))
    hold = HoldFixed(masks) if n_fixed else None
    model, hist = fine_tune(pretrained, poisoned, **(hold.hooks() if hold else {}), **ft_kw)
    hist.attrs["fixed"] = n_fixed
    return model, hist


def mag(pretrained: Classifier, train, *, ratio: float, **ft_kw) -> tuple[Classifier, pd.DataFrame]:
    """``mag``: a copy of ``pretrained`` with the globally smallest ``ratio`` of conv weights
    set to 0 (:func:`magnitude_prune`), then :func:`fine_tune` of every weight (the pruned
    ones may regrow, the authors' ``--train_all``). ``history.attrs["zeroed"]``."""
    start = copy.deepcopy(pretrained)
    masks = magnitude_prune(start, ratio)
    ft_kw.setdefault("desc", f"mag {ratio:g}")
    model, hist = fine_tune(start, train, **ft_kw)
    hist.attrs["zeroed"] = int(sum(int(m.sum()) for m in masks.values()))
    return model, hist


def divmag(pretrained: Classifier, train, *, fraction: float = 0.05, trial_kw: dict, low_bound: float = 0.0,
           **ft_kw) -> tuple[Classifier, pd.DataFrame]:
    """``divmag``: (1) a trial :func:`fine_tune` of ``pretrained`` on ``train`` with
    ``trial_kw`` (the authors: 3,000 iterations, lr 5e-3, momentum 0.9, no weight decay);
    (2) every conv weight scored by :func:`divmag_scores` ``|w_trial - w| / max(|w|, low_bound)``;
    (3) from the *original* weights, the ``fraction`` (authors: 5%) with the smallest score, one
    global threshold, set to 0; (4) :func:`fine_tune` of every weight with ``ft_kw``. Weights
    the target task barely moves relative to their size are where a task-irrelevant backdoor can
    live. History: both runs (``stage`` ``"trial"`` / ``"fine_tune"``); ``attrs["zeroed"]``."""
    trial_kw = {"desc": "divmag trial", "progress": ft_kw.get("progress", True), **trial_kw}
    trial, h1 = fine_tune(pretrained, train, **trial_kw)
    before = {k: p.detach() for k, p in conv_weights(pretrained).items()}
    after = {k: p.detach() for k, p in conv_weights(trial).items()}
    masks = smallest(divmag_scores(before, after, low_bound), fraction)
    start = copy.deepcopy(pretrained)
    zeroed = zero_weights(start, masks)
    ft_kw.setdefault("desc", f"divmag {fraction:g}")
    model, h2 = fine_tune(start, train, **ft_kw)
    hist = pd.concat([h1.assign(stage="trial"), h2.assign(stage="fine_tune")], ignore_index=True)
    hist.attrs["zeroed"] = zeroed
    return model, hist


def fine_pruning(pretrained: Classifier, train, *, ratio: float, keep_head: bool = False,
                 **ft_kw) -> tuple[Classifier, pd.DataFrame]:
    """Fine-pruning (Liu, Dolan-Gavitt & Garg 2018, "Fine-Pruning: Defending Against Backdooring
    Attacks on Deep Neural Networks", RAID): rank the output channels of the last stage's last
    conv by their mean activation on the clean ``train`` images (:func:`channel_activity`),
    remove the ``int(ratio * channels)`` least active (filters and their BatchNorm scale/shift
    set to 0: the channel outputs 0), then :func:`fine_tune` with them held at 0. A fixed
    ratio, not Liu et al.'s "prune until validation accuracy drops by 4%": in transfer the
    teacher's head does not score the student's task, so that stopping rule has nothing to read.
    ``history.attrs["pruned"]``: the removed channel ids. ``keep_head=True``: the purification of
    a model on its own task (Liu et al.'s setting, notebook 08): the pruned copy keeps its head and
    is trained by :func:`lib.train.fit` with ``ft_kw`` instead of :func:`fine_tune`'s new head."""
    if not 0 <= ratio < 1:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    _no_hooks(ft_kw, "fine_pruning")
    start = copy.deepcopy(pretrained)
    act = channel_activity(start, train)
    pruned = torch.sort(act, stable=True).indices[:int(ratio * len(act))].tolist()
    masks = channel_masks(start, pruned)
    zero_weights(start, masks)
    ft_kw.setdefault("desc", f"fine-pruning {ratio:g}")
    hooks = HoldFixed(masks).hooks() if pruned else {}
    if keep_head:
        freeze(start, False)
        model, hist = start, pd.DataFrame(fit(start, train, **hooks, **ft_kw))
    else:
        model, hist = fine_tune(start, train, **hooks, **ft_kw)
    hist.attrs["pruned"] = sorted(pruned)
    return model, hist
