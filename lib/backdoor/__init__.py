"""Backdoors and poisoning through transfer learning (notebook 05; the Renofeation authors'
backdoor pipeline, ReMoS, ICSE 2022).

=================  ===============  =============================================================
``triggers.py``    :class:`Trigger`, :func:`apply_trigger` (image + pixel mask)
``poisoning.py``   :func:`poison` (all-to-one, BadNets), :func:`triggered`, :func:`flip_labels`
``pruning.py``     global magnitude selection (masked planting, ``mag``), divmag's score,
                   fine-pruning's channel activity and channel masks
``methods.py``     :func:`plant`, :func:`mag`, :func:`divmag`, :func:`fine_pruning` over
                   :func:`lib.transfer.fine_tune`
``metrics.py``     :func:`backdoor_metrics`: clean accuracy, ASR (authors' and BackdoorBench's),
                   RA, untargeted ASR, each with n and a Wilson interval
=================  ===============  =============================================================
"""
from .methods import HoldFixed, divmag, fine_pruning, mag, plant
from .metrics import METRICS, backdoor_metrics, backdoor_rates, flat
from .poisoning import PoisonedImages, check_target, flip_labels, poison, triggered
from .pruning import (channel_activity, channel_masks, conv_weights, divmag_scores, last_conv, magnitude_masks,
                      magnitude_prune, smallest, zero_weights)
from .triggers import WHERE, Trigger, apply_trigger

__all__ = ["Trigger", "apply_trigger", "WHERE", "PoisonedImages", "poison", "triggered", "flip_labels", "check_target",
           "plant", "mag",
           "divmag", "fine_pruning", "HoldFixed", "backdoor_metrics", "backdoor_rates", "flat", "METRICS",
           "conv_weights", "smallest", "magnitude_masks", "magnitude_prune", "zero_weights", "divmag_scores",
           "last_conv", "channel_activity", "channel_masks"]
