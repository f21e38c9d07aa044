"""Continual learning without forgetting, clean and adversarial: PackNet, CPG and CMAT over a
sequence of tasks (task-incremental: the task id is known at test time).

=====================  ============================================  ===================================
``network``            :class:`TaskNet` (VGG-style body, owners,      CPG's ``custom_vgg``
                       per-task heads / BN / pick masks, growth),
                       :func:`task_vgg`
``ownership``          owners, :func:`guard` (bit-identical earlier   PackNet / CPG masks
                       weights through ``fit``), magnitude pruning,
                       Zhu & Gupta's cubic schedule, parameter use
``packnet``            :func:`packnet_task`                           Mallya & Lazebnik 2018
``cpg``                :func:`cpg_task` (compact, pick, grow);         Hung et al. 2019; CMAT
                       CMAT = ``cpg_task(adversarial=...)``
``baselines``          :func:`independent_task`, :func:`finetune_task`
``sequence``           :func:`learn_sequence`: accuracy matrix and
                       prediction digests after every task
=====================  ============================================  ===================================

Every training step is :func:`lib.train.fit` (``after_backward`` masks gradients, ``after_step``
restores earlier tasks' weights and steps CPG's mask optimiser); adversarial variants add
:func:`lib.adversarial_training.pgd_at` as its batch hook. Evaluation runs on
:meth:`TaskNet.task_model`, a plain model per task, so every attack and metric of the workbook
applies unchanged.
"""
from __future__ import annotations

from .baselines import finetune_task, independent_task
from .cpg import MaskStep, attach_pick, cpg_task, detach_pick, store_pick
from .network import VGG16, VGG16_FC, SharedConv2d, TaskNet, binarize_ste, task_vgg
from .ownership import (TaskHooks, claim_free, cubic_sparsity, guard, parameter_use, prune_fraction,
                        prune_to_sparsity)
from .packnet import packnet_task
from .sequence import METHODS, learn_sequence, predictions_digest, task_predictions
from .training import task_fit, val_accuracy

__all__ = ["TaskNet", "SharedConv2d", "task_vgg", "binarize_ste", "VGG16", "VGG16_FC", "claim_free", "guard",
           "prune_fraction", "prune_to_sparsity", "cubic_sparsity", "parameter_use", "TaskHooks", "packnet_task",
           "cpg_task", "attach_pick", "store_pick", "detach_pick", "MaskStep", "independent_task", "finetune_task",
           "learn_sequence", "METHODS", "predictions_digest", "task_predictions", "task_fit", "val_accuracy"]
