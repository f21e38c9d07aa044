"""PackNet (Mallya & Lazebnik 2018, "PackNet: Adding multiple tasks to a single network by
iterative pruning", CVPR): train task k on the free weights, prune a fraction (0.6 here, as in
the CPG / CMAT scripts) of the task's own weights per layer by magnitude, retrain briefly with
the pruned weights held at zero; the pruned weights are free for the next task. No pick masks,
no growth: every later task uses all weights of the earlier ones.

The paper's CIFAR-100 schedule (CPG's ``PackNet_cifar100.sh``): 100 epochs (lr 1e-2, x0.1 at 50
and 80), prune 60 %, retrain 30 epochs (lr 1e-3, x0.1 at 25), SGD momentum 0.9, weight decay
4e-5, batch 32.
"""
from __future__ import annotations

from .network import TaskNet
from .ownership import TaskHooks, claim_free, prune_fraction
from .training import task_fit


def packnet_task(model: TaskNet, train, num_classes: int, *, prune: float = 0.6, epochs: int = 100,
                 retrain_epochs: int = 30, lr: float = 1e-2, retrain_lr: float = 1e-3,
                 adversarial: dict | None = None, seed: int = 0, **fit_kw) -> dict:
    """Learn one more task with PackNet; returns what happened (task id, claimed and pruned
    weights, training histories). Raises when no free weight is left (PackNet cannot grow)."""
    k = model.add_task(num_classes, seed=seed)
    claimed = claim_free(model, k)
    if claimed == 0:
        raise RuntimeError(f"task {k}: no free weights left; PackNet needs prune > 0 or a wider network")
    hist = task_fit(model, train, TaskHooks(model, k), epochs=epochs, lr=lr, adversarial=adversarial,
                    seed=seed, desc=f"packnet task {k}", **fit_kw)
    pruned = prune_fraction(model, k, prune)
    retrain = task_fit(model, train, TaskHooks(model, k), epochs=retrain_epochs, lr=retrain_lr,
                       adversarial=adversarial, seed=seed + 1, desc=f"packnet task {k} retrain",
                       **{**fit_kw, "schedule": None})  # a constant lr (one-cycle needs many steps)
    model.save_bn(k)
    return {"task": k, "claimed": claimed, "pruned": sum(pruned.values()), "kept": claimed - sum(pruned.values()),
            "history": hist.to_dict("records"), "retrain_history": retrain.to_dict("records")}
