"""The two baselines of the study: one independent model per task (CPG's accuracy goals) and
sequential fine-tuning of one shared body (every weight and the BatchNorm trained on every task
in turn; each task keeps its own head), which shows the forgetting that the ownership masks
prevent."""
from __future__ import annotations

from .network import TaskNet
from .ownership import claim_free
from .training import task_fit


def independent_task(model: TaskNet, train, num_classes: int, *, epochs: int, lr: float,
                     adversarial: dict | None = None, seed: int = 0, **fit_kw) -> dict:
    """Train a fresh single-task ``model`` (all weights its own) on one task."""
    if model.num_tasks:
        raise ValueError("independent_task needs a fresh model (one model per task)")
    k = model.add_task(num_classes, seed=seed)
    claim_free(model, k)
    hist = task_fit(model, train, None, epochs=epochs, lr=lr, adversarial=adversarial, seed=seed,
                    desc="independent", **fit_kw)
    model.save_bn(k)
    return {"task": k, "history": hist.to_dict("records")}


def finetune_task(model: TaskNet, train, num_classes: int, *, epochs: int, lr: float,
                  adversarial: dict | None = None, seed: int = 0, **fit_kw) -> dict:
    """Sequential fine-tuning: a new head, then every weight of the shared body trains on the new
    task. All weights belong to task 1, so every task's view is the current body; the BN is
    shared too (saved as every task's)."""
    k = model.add_task(num_classes, seed=seed)
    claim_free(model, 1)
    hist = task_fit(model, train, None, epochs=epochs, lr=lr, adversarial=adversarial, seed=seed,
                    desc=f"finetune task {k}", **fit_kw)
    for j in range(1, k + 1):
        model.save_bn(j)
    return {"task": k, "history": hist.to_dict("records")}
