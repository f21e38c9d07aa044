"""CPG: compacting, picking and growing (Hung et al. 2019, "Compacting, Picking and Growing for
Unforgetting Continual Learning", NeurIPS; code ``ivclab/CPG``), and CMAT = CPG with PGD
adversarial training as its training step (``rmp918/continual_adversarial_learning``).

For task k (:func:`cpg_task`):

1. **Pick and train.** Free weights become k's. A real-valued mask over the weights of tasks
   < k (init 0.01) is binarised at 5e-3 with a straight-through estimator
   (:func:`~lib.continual.network.binarize_ste`) and multiplies them in the forward pass, so the
   task chooses which earlier weights to reuse; the mask is trained with Adam (lr 5e-4) stepped
   in ``fit``'s ``after_step`` hook, the task's weights with ``fit``'s SGD; earlier weights stay
   bit-identical (:class:`~lib.continual.ownership.TaskHooks`).
2. **Grow** when the accuracy goal (an independently trained model's accuracy, as in CPG) is
   not met, or when no free weight is left: undo the task, widen every layer
   (:meth:`~lib.continual.network.TaskNet.grow`) and train it again, while the width stays
   within ``max_width`` (CPG's cap on the whole network).
3. **Compact**: gradual pruning of the task's weights through increasing target sparsities,
   each a short run whose sparsity follows Zhu & Gupta's cubic ramp from the previous target
   (pick mask frozen); keep the largest sparsity whose validation accuracy still reaches the
   goal (CPG's ``choose_appropriate_pruning_ratio_for_next_task``, ``allow_acc_loss 0``).
4. **Retrain** (k > 1): a fresh pick mask and the remaining weights, kept only if validation
   accuracy improves (``choose_retrain_or_not``).

The paper's schedule (CPG's ``CPG_cifar100_scratch_mul_1.5.sh``): 100 epochs of training (SGD
lr 1e-2, x0.1 at 50 and 80, mask lr 5e-4, x0.2 at 50, 0 at 70); targets 0.1, 0.2, ..., 0.9, 0.95
of 20 epochs each (lr 1e-3, a pruning step every 10 iterations over the first 4 epochs); 30
retrain epochs (lr 1e-3, mask lr 1e-4, early stop after 5); growth by +0.5 of the parameter
count (channels x sqrt) up to 1.5 (channels x 1.22). The smoke recipe shortens every phase
(:mod:`lib.studies.continual`). CMAT validates on adversarial accuracy, so with
``adversarial`` the goal and every comparison with it are adversarial accuracies under
``val_attack``.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .network import TaskNet
from .ownership import TaskHooks, claim_free, cubic_sparsity
from .training import task_fit, val_accuracy

PICK_INIT = 0.01  # CPG main L262-268


def attach_pick(model: TaskNet, task: int, init: float = PICK_INIT) -> list[nn.Parameter]:
    """A fresh real-valued pick mask on every shared layer that holds weights of tasks < ``task``;
    returns the mask parameters (empty for task 1)."""
    out = []
    for name, conv in model.shared_layers().items():
        own = model.owners(name).to(conv.weight.device)
        pickable = (own >= 1) & (own < task)
        if pickable.any():
            conv.pick = nn.Parameter(torch.full_like(conv.weight, init))
            conv.pickable = pickable
            out.append(conv.pick)
        else:
            conv.pick, conv.pickable = None, None
    return out


def store_pick(model: TaskNet, task: int) -> None:
    """Save the live pick masks, binarised, as task ``task``'s picks (the live masks stay)."""
    for name, conv in model.shared_layers().items():
        if conv.pick is not None:
            model.set_pick(task, name, (conv.pick.detach() > conv.threshold) & conv.pickable)


def detach_pick(model: TaskNet, task: int) -> None:
    """Store the binarised picks (:func:`store_pick`) and remove the live masks."""
    store_pick(model, task)
    for conv in model.shared_layers().values():
        conv.pick, conv.pickable = None, None


class MaskStep:
    """Adam on the pick masks, stepped once per batch from ``fit``'s ``after_step`` (CPG trains
    the masks with Adam and the weights with SGD; ``fit`` has one optimiser, so the masks' step
    is a hook). ``lr = 0`` or no masks: does nothing."""

    def __init__(self, masks: list[nn.Parameter], lr: float):
        self.masks = masks
        self.opt = torch.optim.Adam(masks, lr=lr) if masks and lr > 0 else None

    def __call__(self, model) -> None:
        if self.opt is not None:
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)


def _evaluate(model: TaskNet, task: int, val, val_attack) -> float:
    store_pick(model, task)
    model.save_bn(task)
    return val_accuracy(model.task_model(task), val, val_attack)


def _snapshot(model: TaskNet) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ramp(steps: int, s0: float, s1: float, frequency: int, ramp: float) -> Callable[[int], float | None]:
    """Pruning schedule of one compaction run: every ``frequency`` steps over the first ``ramp``
    share of its ``steps``, the cubic sparsity from ``s0`` to ``s1``; ``s1`` at the end of the ramp."""
    n = max(1, round(ramp * steps))

    def at(step: int) -> float | None:
        if step > n or (step % frequency and step != n):
            return None
        return cubic_sparsity(step, n, s0, s1)

    return at


def cpg_task(model: TaskNet, train, val, num_classes: int, *, goal: float, epochs: int = 100, lr: float = 1e-2,
             lr_mask: float = 5e-4, sparsities=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
             prune_epochs: int = 20, prune_lr: float = 1e-3, prune_frequency: int = 10, prune_ramp: float = 0.2,
             retrain_epochs: int = 30, retrain_lr: float = 1e-3, retrain_lr_mask: float = 1e-4,
             grow_factor: float = 1.5 ** 0.5, max_width: float = 1.5 ** 0.5, adversarial: dict | None = None,
             val_attack: Callable | None = None, allow_acc_loss: float = 0.0, seed: int = 0, progress: bool = True,
             **fit_kw) -> dict:
    """Learn one more task with CPG (CMAT with ``adversarial``); see the module docstring.
    ``goal``: the accuracy to reach on ``val`` (under ``val_attack`` when given), less
    ``allow_acc_loss`` (CPG's option of that name, 0 in its scripts). Returns what
    happened: task id, grows, width, the chosen sparsity, accuracies per phase, histories."""
    kw = dict(progress=progress, **fit_kw)
    target = goal - allow_acc_loss
    short = {**kw, "schedule": None}  # the pruning and retraining runs: a constant lr
    before = _snapshot(model)
    grows, log = 0, {"phases": []}

    def can_grow() -> bool:  # CPG's width cap is on the whole network, over all tasks
        return model.width * grow_factor <= max_width * (1 + 1e-9)

    while True:
        k = model.add_task(num_classes, seed=seed)
        claimed = claim_free(model, k)
        if claimed == 0 and can_grow():  # no capacity left: grow before training
            _undo(model, k, before)
            model.grow(grow_factor)
            before, grows = _snapshot(model), grows + 1
            continue
        masks = attach_pick(model, k)
        hooks = TaskHooks(model, k, extra=[MaskStep(masks, lr_mask)])
        hist = task_fit(model, train, hooks, epochs=epochs, lr=lr, adversarial=adversarial, seed=seed,
                        desc=f"cpg task {k}", **kw)
        acc = _evaluate(model, k, val, val_attack)
        log["phases"].append({"phase": "train", "width": model.width, "sparsity": 0.0, "val_acc": acc})
        if acc >= target or not can_grow():
            break
        _undo(model, k, before)
        model.grow(grow_factor)
        before, grows = _snapshot(model), grows + 1
    log["history"] = hist.to_dict("records")

    # compact: gradual pruning, keep the largest sparsity that still reaches the goal
    for m in masks:
        m.requires_grad_(False)  # CPG zeroes the mask gradient while pruning
    best = (0.0, _snapshot(model), acc)
    s_prev = 0.0
    steps_per_epoch = max(1, len(train) // fit_kw.get("batch_size", 128))
    for s in sparsities:
        if best[2] < target:
            break  # the unpruned task already misses its goal: nothing to compact
        ramp = _ramp(prune_epochs * steps_per_epoch, s_prev, s, prune_frequency, prune_ramp)
        task_fit(model, train, TaskHooks(model, k, prune=ramp), epochs=prune_epochs, lr=prune_lr,
                 adversarial=adversarial, seed=seed + 1, desc=f"cpg task {k} prune {s:.2f}", **short)
        acc_s = _evaluate(model, k, val, val_attack)
        log["phases"].append({"phase": "prune", "width": model.width, "sparsity": s, "val_acc": acc_s})
        if acc_s < target:
            break
        best, s_prev = (s, _snapshot(model), acc_s), s
    model.load_state_dict(best[1])
    chosen, acc = best[0], best[2]

    detach_pick(model, k)  # the picks of the chosen checkpoint, binarised, into the task state

    # retrain a fresh pick mask and the remaining weights (pruned ones held at zero); keep if better
    if k > 1 and retrain_epochs > 0:
        kept = _snapshot(model)
        masks = attach_pick(model, k)
        task_fit(model, train, TaskHooks(model, k, extra=[MaskStep(masks, retrain_lr_mask)]), epochs=retrain_epochs,
                 lr=retrain_lr, adversarial=adversarial, seed=seed + 2, desc=f"cpg task {k} retrain", **short)
        acc_r = _evaluate(model, k, val, val_attack)
        log["phases"].append({"phase": "retrain", "width": model.width, "sparsity": chosen, "val_acc": acc_r})
        if acc_r > acc:
            acc = acc_r
            detach_pick(model, k)
        else:
            for conv in model.shared_layers().values():
                conv.pick, conv.pickable = None, None
            model.load_state_dict(kept)
    model.save_bn(k)
    return {"task": k, "goal": goal, "grows": grows, "width": model.width, "channels": model.channels,
            "sparsity": chosen, "val_acc": acc, "claimed": claimed, **log}


def _undo(model: TaskNet, task: int, before: dict) -> None:
    """Forget the task being learnt: drop its head, live masks and task state, restore ``before``."""
    for conv in model.shared_layers().values():
        conv.pick, conv.pickable = None, None
    del model.heads[f"task{task}"]
    model.active_head = None
    for key in [k for k in model.task_state._buffers if k.startswith(f"t{task}__")]:
        del model.task_state._buffers[key]
    model.load_state_dict(copy.copy(before))
