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
                   RA, untargeted ASR, each with n and a Wilson interval; a defence's effect
                   (:func:`defence_effect`: drops with intervals, DER)
=================  ===============  =============================================================

Detectors and purifications (notebook 08), one per file, imported by name
(``from lib.backdoor import anp``):

==========================  ========================================================================
``neural_cleanse.py``       Neural Cleanse (Wang et al. 2019): reversed triggers, MAD anomaly index
``strip.py``                STRIP (Gao et al. 2019): entropy of blended inputs, ROC and AUC
``activation_clustering``   Activation Clustering (Chen et al. 2018), training-data detector
``spectral_signatures.py``  Spectral Signatures (Tran et al. 2018), training-data detector
``detection.py``            the representations both read; precision/recall of flagged images
``nad.py``                  NAD (Li et al. 2021) and the clean-set fine-tuning baseline
``anp.py``                  ANP (Wu & Wang 2021): BatchNorm neuron masks under perturbation
``ibau.py``                 I-BAU (Zeng et al. 2022): implicit-hypergradient unlearning
``ft_sam.py``               FT-SAM (Zhu et al. 2023): fine-tuning with adaptive SAM
==========================  ========================================================================
"""
from .methods import HoldFixed, divmag, fine_pruning, mag, plant
from .metrics import METRICS, backdoor_metrics, backdoor_rates, defence_effect, der, flat
from .poisoning import PoisonedImages, check_target, flip_labels, poison, triggered
from .pruning import (channel_activity, channel_masks, conv_weights, divmag_scores, last_conv, magnitude_masks,
                      magnitude_prune, smallest, zero_weights)
from .triggers import WHERE, Trigger, apply_trigger

__all__ = ["Trigger", "apply_trigger", "WHERE", "PoisonedImages", "poison", "triggered", "flip_labels", "check_target",
           "plant", "mag",
           "divmag", "fine_pruning", "HoldFixed", "backdoor_metrics", "backdoor_rates", "flat", "METRICS", "der",
           "defence_effect",
           "conv_weights", "smallest", "magnitude_masks", "magnitude_prune", "zero_weights", "divmag_scores",
           "last_conv", "channel_activity", "channel_masks"]
