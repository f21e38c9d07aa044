"""Weight ownership: which task owns each shared weight, how training is kept off the weights of
earlier tasks, and magnitude pruning that frees a task's weights for later tasks.

Owners are integer tensors (0 = free, k = task k) stored with a :class:`~lib.continual.network.TaskNet`.
While task k trains, only weights with owner k change: :func:`guard` builds the
:class:`lib.train.FixedWeights` that zeroes every other weight's gradient after ``backward`` and
writes its value back after the optimiser step (so neither momentum nor weight decay can move
it), which holds the weights of tasks < k bit-identical and pruned (free) weights at zero.

Pruning is per layer by magnitude (Han et al. 2015, as PackNet and CPG do): PackNet removes a
fraction of the task's own weights (:func:`prune_fraction`); CPG's gradual pruning targets a
sparsity of the weights that are free or the task's (:func:`prune_to_sparsity`, the threshold of
CPG's ``utils/prune.py`` computed over owners in {0, k}) on Zhu & Gupta's cubic schedule
(:func:`cubic_sparsity`). Pruned weights are set to zero and become free.
"""
from __future__ import annotations

import pandas as pd
import torch

from ..train import FixedWeights
from .network import TaskNet


def claim_free(model: TaskNet, task: int) -> int:
    """Give every free weight (owner 0) to ``task``; returns how many were claimed. Freed weights
    keep their value (zero after pruning; a fresh initialisation after growth), as in CPG."""
    n = 0
    for name in model.shared_layers():
        own = model.owners(name)
        free = own == 0
        n += int(free.sum())
        model.set_owners(name, torch.where(free, torch.full_like(own, task), own))
    return n


def guard(model: TaskNet, task: int) -> FixedWeights:
    """The ``fit`` hooks that keep every shared weight not owned by ``task`` at its current value:
    pass ``after_backward=g.after_backward, after_step=g.after_step``. Build a new one whenever
    owners change (after pruning): the values are captured when it is made."""
    return FixedWeights(model, {name: model.owners(name) != task for name in model.shared_layers()})


def _prune_smallest(model: TaskNet, name: str, task: int, count: int) -> int:
    """Zero and free the ``count`` smallest-magnitude weights of ``task`` in layer ``name``."""
    if count <= 0:
        return 0
    w = model.get_parameter(name)
    own = model.owners(name)
    idx = (own.flatten() == task).nonzero().flatten()
    count = min(count, len(idx))
    mags = w.detach().flatten()[idx].abs()
    drop = idx[torch.argsort(mags, stable=True)[:count]]
    dropped = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
    dropped[drop.to(w.device)] = True
    with torch.no_grad():
        w.masked_fill_(dropped.view(w.shape), 0)  # by logical index: any memory layout
    own = own.clone().flatten()
    own[drop.to(own.device)] = 0
    model.set_owners(name, own.view_as(w))
    return count


def prune_fraction(model: TaskNet, task: int, fraction: float) -> dict[str, int]:
    """PackNet's one-shot prune: in every shared layer, remove ``round(fraction * n)`` of the ``n``
    weights owned by ``task`` (smallest magnitude first). Returns the count per layer."""
    if not 0 <= fraction < 1:
        raise ValueError(f"prune fraction must be in [0, 1), got {fraction}")
    out = {}
    for name in model.shared_layers():
        n = int((model.owners(name) == task).sum())
        out[name] = _prune_smallest(model, name, task, round(fraction * n))
    return out


def prune_to_sparsity(model: TaskNet, task: int, sparsity: float) -> dict[str, int]:
    """CPG's pruning step: in every shared layer, among the weights that are free or owned by
    ``task`` (``n`` of them, ``f`` free), free the smallest of the task's weights until
    ``round(sparsity * n)`` are free (never un-prunes). Returns how many were removed per layer."""
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    out = {}
    for name in model.shared_layers():
        own = model.owners(name)
        pool, free = int(((own == task) | (own == 0)).sum()), int((own == 0).sum())
        out[name] = _prune_smallest(model, name, task, round(sparsity * pool) - free)
    return out


def cubic_sparsity(step: int, n_steps: int, s_initial: float, s_final: float) -> float:
    """Zhu & Gupta 2017 ("To prune, or not to prune"): ``s_f + (s_i - s_f) (1 - t / n)^3`` at
    pruning step ``t`` of ``n`` (clamped to ``[0, n]``)."""
    p = min(max(step / max(n_steps, 1), 0.0), 1.0)
    return s_final + (s_initial - s_final) * (1 - p) ** 3


def parameter_use(model: TaskNet) -> pd.DataFrame:
    """Per task: shared weights it owns, shared weights it uses (owned by tasks 1..k and, with
    pick masks, picked), its BN and head parameters; plus the free weights of the body."""
    rows = []
    total = sum(model.get_parameter(n).numel() for n in model.shared_layers())
    bn = sum(2 * bn.num_features for bn in model.bn_layers().values())  # weight + bias per task
    for k in range(1, model.num_tasks + 1):
        owned = sum(int((model.owners(n) == k).sum()) for n in model.shared_layers())
        used = sum(int(model.task_keep(k, n).sum()) for n in model.shared_layers())
        head = sum(p.numel() for p in model.heads[f"task{k}"].parameters())
        rows.append({"task": k, "owned": owned, "used": used, "bn_params": bn, "head_params": head,
                     "body_size": total})
    out = pd.DataFrame(rows)
    out.attrs["free"] = sum(int((model.owners(n) == 0).sum()) for n in model.shared_layers())
    return out



class TaskHooks:
    """The ``fit`` hooks of one training run of task ``task``: the ownership :func:`guard`, then
    optional extra ``after_step`` callbacks (CPG's mask optimiser) and an optional pruning
    schedule ``prune(step) -> sparsity or None`` (CPG's gradual pruning), after which the guard
    is rebuilt so the newly pruned weights are held at zero from then on.

    Pass ``after_backward=h.after_backward, after_step=h.after_step`` to :func:`lib.train.fit`.
    """

    def __init__(self, model: TaskNet, task: int, extra=(), prune=None):
        self.model, self.task, self.extra, self.prune = model, task, list(extra), prune
        self.guard = guard(model, task)
        self.steps = 0

    def after_backward(self, model) -> None:
        self.guard.after_backward(model)

    def after_step(self, model) -> None:
        self.guard.after_step(model)
        for fn in self.extra:
            fn(model)
        self.steps += 1
        if self.prune is not None:
            s = self.prune(self.steps)
            if s is not None:
                prune_to_sparsity(model, self.task, s)
                self.guard = guard(model, self.task)

    def fit_kw(self) -> dict:
        return {"after_backward": self.after_backward, "after_step": self.after_step}
