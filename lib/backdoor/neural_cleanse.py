"""Neural Cleanse (Wang et al., "Neural Cleanse: Identifying and Mitigating Backdoor Attacks in
Neural Networks", IEEE S&P 2019): model-level backdoor detection from a small clean set.

For each class ``c``, :func:`reverse_engineer` looks for the smallest trigger that sends clean
images to ``c`` (the paper's Sec. IV-A, eq. 2-3): a mask ``m`` in ``[0,1]^{HxW}`` (shared by the
three colour channels) and a pattern ``p`` in ``[0,1]^{3xHxW}``, stamped as

    A(x, m, p) = (1 - m) * x + m * p,        minimise  CE(f(A(x, m, p)), c) + lambda * |m|_1,

both parametrised through tanh as in the authors' code (``m = tanh(w_m) / (2 - eps) + 0.5``,
the same for ``p``), so that Adam works on unconstrained variables. A backdoor's target class
needs a much smaller mask than the others; :func:`anomaly_index` scores each class's mask L1 norm
by the MAD rule (Sec. IV-C: consistency constant 1.4826, anomaly index
``|norm - median| / (1.4826 * MAD)``), and :func:`neural_cleanse` flags the classes whose norm is
below the median with anomaly index above 2 (the paper's threshold, ~95% confidence).

Defaults (the authors' ``visualizer.py`` / ``gtsrb_visualize_example.py``): Adam with lr 0.1 and
betas (0.5, 0.9); initial mask and pattern uniform at random; batch size 32; ``init_cost`` 1e-3;
``lambda`` multiplied by ``cost_multiplier`` = 1.5 after ``patience`` = 5 consecutive steps with
the attack success on the batches at or above ``attack_succ_threshold`` = 0.99 and divided by
1.5 ** 1.5 (the authors' ``cost_multiplier_down``, a larger step down than up) after 5 steps
below it; the kept trigger is the one with the smallest mask norm among steps whose success
reached the threshold (the last one if none did); early stop after 5 * patience steps without a
smaller norm once lambda has gone both up and down.

Smoke scaling: the authors run 1000 steps of ``NB_SAMPLE / BATCH_SIZE`` = 31 mini-batches on
1000 clean images of 32x32 GTSRB; here one step is one pass over the victim's clean set (60
images: 2 mini-batches of <= 32) and ``steps`` defaults to 100 (about 200 Adam updates per class
instead of ~31,000); patience and thresholds are kept, so lambda still has ~20 chances to move.
Like the authors, every clean image is used for every class, those of class ``c`` included.

Written here rather than taken from a library: IBM ART's ``NeuralCleanse`` defence is Keras-only
(``KerasNeuralCleanse``), so there is no PyTorch reference to cross-check against; the tests
check the behaviour instead (the planted target is flagged with the smallest mask, its mask sits
where the true trigger is, the clean twin is not flagged) and the MAD rule on a hand-computed case.
The model is never modified: it is put in eval mode (and restored), and gradients are taken with
:func:`torch.autograd.grad` with respect to the mask and pattern only, so no parameter's
``.grad`` is touched.
"""
from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

from ..train import as_channels_last, channels_last_while

EPS = 1e-7             # the authors' K.epsilon() in the tanh parametrisation
MAD_CONSISTENCY = 1.4826  # MAD -> standard deviation for normal data
THRESHOLD = 2.0        # the paper's anomaly-index threshold


# ----------------------------------------------------------------------------- helpers
def as_images(images) -> torch.Tensor:
    """Float images in [0, 1], ``(N, 3, H, W)``, from an :class:`lib.data.ImageSet` (uint8) or a
    tensor (uint8 is divided by 255, float is taken as is)."""
    x = getattr(images, "images", images)
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be an ImageSet or an (N,3,H,W) tensor, got {type(x).__name__}")
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def to_unit(w: torch.Tensor) -> torch.Tensor:
    """The authors' tanh parametrisation: an unconstrained tensor to (0, 1)."""
    return torch.tanh(w) / (2 - EPS) + 0.5


def from_unit(v: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`to_unit` (the authors' ``reset_state``), after clipping to [0, 1]."""
    return torch.atanh((v.clamp(0, 1) - 0.5) * (2 - EPS))


def stamp(x: torch.Tensor, mask: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``(1 - m) * x + m * p`` (the paper's eq. 2); ``mask`` ``(1, H, W)`` or ``(1, 1, H, W)``."""
    return (1 - mask) * x + mask * pattern


class CostSchedule:
    """The authors' lambda schedule and early stop (``visualizer.py``), updated once per step
    with the step's attack success and mean mask norm. ``best`` says whether this step's trigger
    is the new best (success >= threshold and a smaller norm); ``stop`` whether to stop."""

    def __init__(self, init_cost: float, multiplier: float, threshold: float, patience: int,
                 early_stop_patience: int, early_stop_threshold: float = 1.0):
        self.init_cost, self.cost = init_cost, init_cost
        self.up_by, self.down_by = multiplier, multiplier ** 1.5
        self.threshold, self.patience = threshold, patience
        self.es_patience, self.es_threshold = early_stop_patience, early_stop_threshold
        self.reg_best = self.es_reg_best = math.inf
        self.set_n = self.up_n = self.down_n = self.es_n = 0
        self.went_up = self.went_down = False

    def update(self, success: float, reg: float) -> tuple[bool, bool]:
        ok = success >= self.threshold
        best = ok and reg < self.reg_best
        if best:
            self.reg_best = reg
        if self.reg_best < math.inf:   # early stop only once a valid trigger is found
            self.es_n = self.es_n + 1 if self.reg_best >= self.es_threshold * self.es_reg_best else 0
        self.es_reg_best = min(self.reg_best, self.es_reg_best)
        stop = self.went_up and self.went_down and self.es_n >= self.es_patience
        self._recost(ok)
        return best, stop

    def _recost(self, ok: bool) -> None:
        if self.cost == 0 and ok:      # the authors' start from cost 0 (init_cost = 0 only)
            self.set_n += 1
            if self.set_n >= self.patience:
                self.cost, self.up_n, self.down_n, self.went_up, self.went_down = self.init_cost, 0, 0, False, False
        else:
            self.set_n = 0
        self.up_n, self.down_n = (self.up_n + 1, 0) if ok else (0, self.down_n + 1)
        if self.up_n >= self.patience:
            self.up_n, self.cost, self.went_up = 0, self.cost * self.up_by, True
        elif self.down_n >= self.patience:
            self.down_n, self.cost, self.went_down = 0, self.cost / self.down_by, True


# ----------------------------------------------------------------------------- one class
def _batches(n: int, batch_size: int, gen: torch.Generator):
    """Index batches of a reshuffled pass over ``n`` images, forever (the authors' generator)."""
    while True:
        order = torch.randperm(n, generator=gen)
        yield from (order[i:i + batch_size] for i in range(0, n, batch_size))


def _step(model, x, target, mask_w, pattern_w, opt, cost) -> tuple[float, float, int]:
    """One Adam update on a mini-batch; returns (correct count, mask L1, batch size)."""
    mask, pattern = to_unit(mask_w), to_unit(pattern_w)
    logits = model(stamp(x, mask, pattern))
    y = torch.full((len(x),), target, dtype=torch.long, device=x.device)
    reg = mask.abs().sum()
    loss = F.cross_entropy(logits, y) + cost * reg
    g_m, g_p = torch.autograd.grad(loss, [mask_w, pattern_w])   # no parameter .grad touched
    mask_w.grad, pattern_w.grad = g_m, g_p
    opt.step()
    return float((logits.argmax(1) == y).sum()), float(reg.detach()), len(x)


@torch.no_grad()
def success_rate(model, images, target: int, mask: torch.Tensor, pattern: torch.Tensor,
                 batch_size: int = 256) -> float:
    """The fraction of ``images`` that ``model`` puts in ``target`` once stamped (eval mode)."""
    x = as_images(images)
    dev = next(model.parameters()).device
    hits = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(dev)
        hits += int((model(stamp(xb, mask.to(dev), pattern.to(dev))).argmax(1) == target).sum())
    return hits / len(x)


def reverse_engineer(model, images, target: int, *, steps: int = 100, lr: float = 0.1, init_cost: float = 1e-3,
                     cost_multiplier: float = 1.5, attack_succ_threshold: float = 0.99, patience: int = 5,
                     early_stop_patience: int | None = None, batch_size: int = 32,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The smallest trigger sending ``images`` to ``target`` (the paper's Sec. IV-A).

    Returns ``(mask (1, H, W), pattern (3, H, W), success)``, both in [0, 1] on the CPU, with
    ``success`` the share of ``images`` sent to ``target`` by the kept trigger. ``steps``: passes
    over ``images`` in shuffled mini-batches of ``batch_size``; the lambda schedule and early stop
    (``early_stop_patience`` default ``5 * patience``) are :class:`CostSchedule`'s. ``seed`` draws
    the random initial mask and pattern and the batch order. The model is left as it was.
    """
    x = as_images(images)
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    _, _, h, w = x.shape
    mask_w = from_unit(torch.rand(1, 1, h, w, generator=gen)).to(dev).requires_grad_()
    pattern_w = from_unit(torch.rand(1, 3, h, w, generator=gen)).to(dev).requires_grad_()
    opt = torch.optim.Adam([mask_w, pattern_w], lr=lr, betas=(0.5, 0.9))
    sched = CostSchedule(init_cost, cost_multiplier, attack_succ_threshold, patience,
                         5 * patience if early_stop_patience is None else early_stop_patience)
    per_step = max(1, len(x) // batch_size)   # the authors' NB_SAMPLE // BATCH_SIZE mini-batches a step
    batches = _batches(len(x), batch_size, gen)
    try:
        with channels_last_while(model) as layout:  # 1.35x a step on the CPU, same arithmetic
            x = as_channels_last(x, layout)
            best = _search(model, x, target, mask_w, pattern_w, opt, sched, batches, steps, per_step, dev)
        mask, pattern = best or (to_unit(mask_w).detach(), to_unit(pattern_w).detach())
        mask, pattern = mask[0].cpu(), pattern[0].cpu()
        return mask, pattern, success_rate(model, x, target, mask, pattern)
    finally:
        model.train(was_training)


def _search(model, x, target, mask_w, pattern_w, opt, sched, batches, steps: int, per_step: int, dev):
    """The optimisation loop of :func:`reverse_engineer`: the best ``(mask, pattern)`` found (the
    smallest norm among steps at the success threshold), or ``None``."""
    best = None
    for _ in range(steps):
        runs = [_step(model, x[next(batches)].to(dev), target, mask_w, pattern_w, opt, sched.cost)
                for _ in range(per_step)]
        succ = sum(r[0] for r in runs) / sum(r[2] for r in runs)
        reg = sum(r[1] for r in runs) / len(runs)
        is_best, stop = sched.update(succ, reg)
        if is_best:
            best = (to_unit(mask_w).detach(), to_unit(pattern_w).detach())
        if stop:
            break
    return best


# ----------------------------------------------------------------------------- all classes
def anomaly_index(norms) -> torch.Tensor:
    """The MAD anomaly index of each value (the paper's Sec. IV-C):
    ``|norm - median| / (1.4826 * median(|norm - median|))``, with the median of an even count
    the mean of the middle two (``numpy.median``, as the authors' ``mad_outlier_detection.py``).
    A zero MAD gives 0 for values at the median and ``inf`` for the others."""
    v = torch.as_tensor(norms, dtype=torch.float64).flatten()
    med = torch.quantile(v, 0.5)
    dev = (v - med).abs()
    mad = MAD_CONSISTENCY * torch.quantile(dev, 0.5)
    if mad == 0:
        return torch.where(dev == 0, 0.0, math.inf).to(torch.float64)
    return dev / mad


def flag(norms, threshold: float = THRESHOLD) -> torch.Tensor:
    """Which classes Neural Cleanse flags: mask norm below the median and anomaly index above
    ``threshold`` (2 in the paper; only small-norm outliers can be backdoor targets)."""
    v = torch.as_tensor(norms, dtype=torch.float64).flatten()
    return (v < torch.quantile(v, 0.5)) & (anomaly_index(v) > threshold)


def neural_cleanse(model, images, num_classes: int, *, threshold: float = THRESHOLD, seed: int = 0, **kw) -> dict:
    """Neural Cleanse on ``model`` with the clean ``images``: :func:`reverse_engineer` for every
    class (``kw`` passed on; class ``c`` uses seed ``seed + c``), then the MAD rule.

    Returns a dict: ``table`` (a DataFrame indexed by class with ``mask_l1``, ``anomaly_index``,
    ``flagged``, ``success`` of the reversed trigger), ``flagged`` (the flagged classes, a list),
    ``masks`` ``(K, 1, H, W)`` and ``patterns`` ``(K, 3, H, W)`` (for drawing beside the true
    trigger).
    """
    found = [reverse_engineer(model, images, c, seed=seed + c, **kw) for c in range(num_classes)]
    masks = torch.stack([f[0] for f in found])
    norms = masks.flatten(1).abs().sum(1)
    flagged = flag(norms, threshold)
    table = pd.DataFrame({"mask_l1": norms.double().numpy(), "anomaly_index": anomaly_index(norms).numpy(),
                          "flagged": flagged.numpy(), "success": [f[2] for f in found]})
    table.index.name = "class"
    return {"table": table, "flagged": [int(c) for c in flagged.nonzero().flatten()], "masks": masks,
            "patterns": torch.stack([f[1] for f in found])}
