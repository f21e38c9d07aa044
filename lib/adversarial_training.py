"""Adversarial training: every defence is the one :func:`lib.train.fit` loop with a hook.

A defence is either a ``batch_hook`` (the attack replaces the clean batch before the update) or a
``loss`` (the objective itself needs clean and adversarial forward passes); model selection and
catastrophic-overfitting checks are an ``on_epoch_end`` callback (:class:`RobustCheckpoint`).
:func:`adversarial_train` puts the three together. There is no second training loop.

| method | plugs in | defaults here (at eps = 8/255) | the paper's setting |
|---|---|---|---|
| ``pgd_at`` | hook | L-inf PGD, 7 steps of ``alpha = eps / 4`` (2/255), uniform random start | Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks", ICLR (CIFAR-10: 8/255, 7 steps of 2/255, random start) |
| ``fgsm_rs`` | hook | uniform start in the eps-ball, one signed step of ``alpha = 1.25 eps`` (10/255), project, clamp; stop when val PGD accuracy drops > 0.2 below its best | Wong, Rice & Kolter 2020, "Fast is better than free: revisiting adversarial training", ICLR (CIFAR-10: 8/255, alpha 10/255, cyclic lr, 15 epochs; stop when PGD accuracy on a training batch drops by > 0.2: catastrophic overfitting) |
| ``trades`` | loss | ``beta = 6``; 7 steps of ``alpha = eps / 4`` maximising the KL from ``x + 0.001 N(0, 1)``, eval mode | Zhang et al. 2019, "Theoretically principled trade-off between robustness and accuracy", ICML (CIFAR-10: eps 0.031, 10 steps of 0.007, 1/lambda = beta = 6) |
| ``ll_fgsm_mix`` | loss | half of each batch replaced by least-likely-class FGSM, eps per image ~ N(0, eps_max / 2) truncated to [0, eps_max], ``eps_max = 2 eps`` (16/255), lambda = 0.3 | Kurakin, Goodfellow & Bengio 2017, "Adversarial machine learning at scale", ICLR (ImageNet: eps ~ TN(0, 8) on [0, 16] (/255), 16 of 32 images, lambda = 0.3) |
| ``standard`` | -- | cross-entropy on clean images | the baseline |
| selection | callback | PGD-10 (``alpha = 2.5 eps / 10``, seeded start) on ``val_n = 256`` val images (stratified by class) after each epoch; the best epoch's weights restored | Rice, Wong & Kolter 2020, "Overfitting in adversarially robust deep learning", ICML (PGD-10 on held-out data, keep the best checkpoint) |

Step sizes default to the paper's *ratio* to eps (``None`` = the rule in the table), so the
defaults reproduce the papers at eps = 8/255 and scale with any other budget. Epochs, learning
rate and schedule are :func:`lib.train.fit`'s (one-cycle, the shape of Wong et al.'s cyclic
schedule); the papers' 100-200 epoch CIFAR runs are out of reach of the smoke profile.

Conventions (the same for every method, so they compare fairly): adversarial examples are
crafted in eval mode (the ``lib.attacks`` convention and TRADES' code; Madry's and Wong's public
code craft them in training mode, with BatchNorm on batch statistics), and the update runs in
train mode (``fit`` calls ``train_mode`` after the hook; the losses restore every submodule's
mode), so BatchNorm statistics are learnt on the batches actually trained on. TRADES' KL is
``KL(p(x) || p(x_adv))`` as the authors' code computes it (``KLDivLoss(log p(x_adv), p(x))``),
with gradients flowing through both terms.
"""
from __future__ import annotations

import copy
import inspect
import math
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import as_batch_hook, attack_fn, attack_mode, ll_fgsm
from .attacks.projected import pgd_loop
from .data import labels_of, stratified_subset
from .metrics import accuracy
from .train import Batches, fit, model_device, predict

__all__ = ["pgd_at", "fgsm_rs", "trades", "TradesLoss", "ll_fgsm_mix", "LLFGSMMixLoss", "RobustCheckpoint",
           "adversarial_train", "pgd_val_attack", "METHODS", "ll_fgsm_per_image"]


# ----------------------------------------------------------------------------- batch hooks
def pgd_at(eps: float = 8 / 255, alpha: float | None = None, steps: int = 7, norm: str = "linf") -> Callable:
    """PGD adversarial training (Madry et al. 2018) as a ``fit`` batch hook: each training batch
    is replaced by PGD examples (random start, ``steps`` steps of ``alpha``, default ``eps / 4``
    = 2/255 at 8/255) with the true labels."""
    alpha = eps / 4 if alpha is None else alpha
    hook = as_batch_hook(attack_fn("pgd", eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=True))
    hook.config = {"method": "pgd_at", "eps": eps, "alpha": alpha, "steps": steps, "norm": norm}
    return hook


def fgsm_rs(eps: float = 8 / 255, alpha: float | None = None) -> Callable:
    """FGSM with a random start (Wong, Rice & Kolter 2020, "fast is better than free") as a
    batch hook: ``delta ~ U[-eps, eps]`` (clamped so ``x + delta`` is an image), one signed
    gradient step of ``alpha`` (default ``1.25 eps`` = 10/255 at 8/255), projection onto the
    eps-ball, clamp to [0, 1]. That is exactly one-step L-inf PGD with a uniform random start."""
    alpha = 1.25 * eps if alpha is None else alpha
    hook = as_batch_hook(attack_fn("pgd", eps=eps, alpha=alpha, steps=1, norm="linf", random_start=True))
    hook.config = {"method": "fgsm_rs", "eps": eps, "alpha": alpha}
    return hook


# ----------------------------------------------------------------------------- losses
class TradesLoss:
    """The TRADES objective (Zhang et al. 2019) as a ``fit`` loss ``(model, x, y) -> (loss, logits)``::

        CE(f(x), y) + beta * KL(p(x) || p(x_adv)),   x_adv = argmax_{||x' - x||_inf <= eps} KL(p(x) || p(x'))

    The inner maximisation follows the authors' code: start at ``x + 0.001 N(0, 1)``, ``steps``
    signed-gradient steps of ``alpha`` on the summed KL, projection and clamping after each, the
    model in eval mode; then every submodule's mode is restored (train mode inside ``fit``,
    frozen modules in eval) for the clean and adversarial forward passes of the update (separate passes, as in the paper's code,
    so each has its own BatchNorm batch statistics). The last batch's two terms are kept in
    ``self.last``.
    """

    def __init__(self, beta: float = 6.0, eps: float = 8 / 255, alpha: float | None = None, steps: int = 7):
        self.beta, self.eps, self.steps = float(beta), float(eps), int(steps)
        self.alpha = eps / 4 if alpha is None else float(alpha)
        self.config = {"method": "trades", "beta": self.beta, "eps": self.eps, "alpha": self.alpha, "steps": self.steps}
        self.last: dict = {}

    def perturb(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The inner maximisation: ``x_adv`` in the eps-ball and [0, 1], through the PGD loop of
        :mod:`lib.attacks` (eval mode, every submodule's mode restored, no parameter ``.grad``)."""
        with attack_mode(model):
            x0 = x.detach()
            with torch.no_grad():
                p_clean = F.softmax(model(x0).float(), dim=1)

            def kl(z):  # per-sample KL(p(x) || p(x')), summed over classes
                return F.kl_div(F.log_softmax(z.float(), dim=1), p_clean, reduction="none").sum(1)

            start = (x0 + 0.001 * torch.randn_like(x0)).clamp(0, 1)
            return pgd_loop(model, x0, kl, self.eps, self.alpha, self.steps, "linf", random_start=False,
                            seed=None, start=start)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        x_adv = self.perturb(model, x)
        logits = model(x)
        logits_adv = model(x_adv)
        natural = F.cross_entropy(logits, y)
        robust = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits.float(), dim=1),
                          reduction="batchmean")
        self.last = {"natural": natural.detach(), "robust": robust.detach()}
        return natural + self.beta * robust, logits


def trades(beta: float = 6.0, eps: float = 8 / 255, alpha: float | None = None, steps: int = 7) -> TradesLoss:
    """TRADES loss for ``fit(loss=...)``; see :class:`TradesLoss` (``alpha`` default ``eps / 4``)."""
    return TradesLoss(beta=beta, eps=eps, alpha=alpha, steps=steps)


def ll_fgsm_per_image(model: nn.Module, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Least-likely-class FGSM with one budget per image (``eps``: shape ``(N,)``, values in [0, 1]).

    ``lib.attacks.ll_fgsm`` takes one float ``eps``. Its result at ``eps = 1`` reveals the step's
    sign exactly wherever the step can move the pixel: ``clip(x + sign(g))`` is 1 where
    ``sign(g) = +1`` and ``x < 1``, 0 where ``sign(g) = -1`` and ``x > 0``, and ``x`` elsewhere
    (where any step of that sign is clipped away, or ``g = 0``). So ``d = sign(ll_fgsm(x, 1) - x)``
    gives ``clip(x + e * d) = clip(x + e * sign(g))`` for every ``e`` in [0, 1]: the library's
    attack (eval mode, modes restored, no parameter gradients) with per-image budgets, in one
    gradient evaluation.
    """
    direction = (ll_fgsm(model, x, 1.0).to(x.dtype) - x.detach()).sign()
    e = eps.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (x.detach() + e * direction).clamp(0, 1)


class LLFGSMMixLoss:
    """Kurakin, Goodfellow & Bengio 2017 ("Adversarial machine learning at scale", Algorithm 1)
    as a ``fit`` loss: in each batch of ``m`` images, ``k = round(adv_fraction * m)`` images (a
    random subset) are replaced by least-likely-class FGSM ("step l.l.") examples crafted on the
    current model, each with its own ``eps`` drawn from a normal ``N(0, eps_max / 2)`` truncated to
    ``[0, eps_max]``; one forward pass on the mixed batch and::

        loss = (sum_clean CE + adv_weight * sum_adv CE) / ((m - k) + adv_weight * k)

    with the true labels for both. ``self.last`` holds the last batch: ``mask`` (which images are
    adversarial), ``eps`` (per adversarial image), ``x`` (the mixed batch), ``n_adv``, ``n``.
    """

    def __init__(self, eps_max: float = 16 / 255, adv_fraction: float = 0.5, adv_weight: float = 0.3):
        if not 0 <= adv_fraction <= 1:
            raise ValueError(f"adv_fraction must be in [0, 1], got {adv_fraction}")
        self.eps_max, self.adv_fraction, self.adv_weight = float(eps_max), float(adv_fraction), float(adv_weight)
        self.config = {"method": "ll_fgsm_mix", "eps_max": self.eps_max, "adv_fraction": self.adv_fraction,
                       "adv_weight": self.adv_weight}
        self.last: dict = {}

    def sample_eps(self, k: int, device) -> torch.Tensor:
        """``k`` budgets from ``N(0, eps_max/2)`` truncated to ``[0, eps_max]`` (the paper's TN(0, 8) on [0, 16])."""
        e = torch.empty(k)
        if k:
            nn.init.trunc_normal_(e, mean=0.0, std=self.eps_max / 2, a=0.0, b=self.eps_max)
        return e.to(device)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
        n = len(y)
        k = int(round(self.adv_fraction * n))
        idx = torch.randperm(n)[:k].to(x.device)
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        mask[idx] = True
        eps = self.sample_eps(k, x.device)
        x_mix = x.detach().clone()
        if k:
            x_mix[mask] = ll_fgsm_per_image(model, x[mask], eps)
        logits = model(x_mix)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        w = torch.where(mask, torch.full_like(ce, self.adv_weight), torch.ones_like(ce))
        loss = (w * ce).sum() / ((n - k) + self.adv_weight * k)
        self.last = {"mask": mask, "eps": eps, "x": x_mix, "n_adv": k, "n": n}
        return loss, logits


def ll_fgsm_mix(eps_max: float = 16 / 255, adv_fraction: float = 0.5, adv_weight: float = 0.3) -> LLFGSMMixLoss:
    """Kurakin et al. 2017 adversarial augmentation for ``fit(loss=...)``; see :class:`LLFGSMMixLoss`."""
    return LLFGSMMixLoss(eps_max=eps_max, adv_fraction=adv_fraction, adv_weight=adv_weight)


# ----------------------------------------------------------------------------- checkpoint callback
def pgd_val_attack(eps: float = 8 / 255, steps: int = 10, norm: str = "linf", seed: int = 0) -> Callable:
    """PGD-``steps`` with ``alpha = 2.5 eps / steps`` and a seeded random start: the per-epoch
    robust-validation attack (Rice et al. 2020 use PGD-10)."""
    return attack_fn("pgd", eps=eps, alpha=2.5 * eps / steps, steps=steps, norm=norm, random_start=True, seed=seed)


class RobustCheckpoint:
    """``on_epoch_end`` callback for :func:`lib.train.fit`: robust validation, best checkpoint,
    catastrophic-overfitting stop.

    Each epoch it measures accuracy under ``attack`` (an ``attack_fn``) on ``n`` images
    of ``val`` (the same images every epoch), writes it to the history row as
    ``row["val_robust_acc"]`` and keeps a CPU copy of the state dict (parameters and BatchNorm
    buffers) of the best epoch so far; :meth:`restore` loads it back (robust overfitting: Rice,
    Wong & Kolter 2020). Best = highest robust accuracy; a tie goes to the higher clean
    ``val_acc`` (if the row has one), then to the earlier epoch.

    ``early_stop_drop``: stop training (return ``True``) once robust accuracy falls more than this
    below the best so far: catastrophic overfitting of FGSM training (Wong et al. 2020, who stop on
    a drop of 0.2). :meth:`update` does the bookkeeping given a measured accuracy, so the logic can
    be tested on a made-up sequence.
    """

    key = "val_robust_acc"

    def __init__(self, val, attack: Callable, n: int | None = 512, *, early_stop_drop: float | None = None,
                 batch_size: int = 256):
        self.val = stratified_subset(val, n)
        self.attack, self.n, self.early_stop_drop, self.batch_size = attack, n, early_stop_drop, batch_size
        self.best_acc = -math.inf
        self.best_clean = -math.inf
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None
        self.accs: list[tuple[int, float]] = []
        self._batches = None

    def measure(self, model: nn.Module) -> float:
        """Accuracy under the attack on the fixed validation images (model mode restored)."""
        device = model_device(model)
        if self._batches is None or self._batches.device != device:
            self._batches = Batches(self.val, self.batch_size, device)
        logits, y = predict(model, self._batches, batch_hook=as_batch_hook(self.attack))
        return accuracy(logits, y)

    def update(self, epoch: int, row: dict, model: nn.Module, acc: float) -> bool:
        """Record ``acc`` for ``epoch``; snapshot the model if it is the best; ``True`` = stop."""
        row[self.key] = acc
        self.accs.append((epoch, acc))
        clean = row.get("val_acc", -math.inf)
        clean = -math.inf if clean is None or (isinstance(clean, float) and math.isnan(clean)) else clean
        if acc > self.best_acc or (acc == self.best_acc and clean > self.best_clean):
            self.best_acc, self.best_clean, self.best_epoch = acc, clean, epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if self.early_stop_drop is not None and acc < self.best_acc - self.early_stop_drop:
            self.stopped_epoch = epoch
            return True
        return False

    def __call__(self, epoch: int, row: dict, model: nn.Module) -> bool:
        return self.update(epoch, row, model, self.measure(model))

    def state_dict(self) -> dict:
        """What :mod:`lib.checkpoints` saves so that a resumed training selects as an uninterrupted one."""
        return {"best_acc": self.best_acc, "best_clean": self.best_clean, "best_epoch": self.best_epoch,
                "best_state": self.best_state, "stopped_epoch": self.stopped_epoch,
                "accs": [list(a) for a in self.accs]}

    def load_state_dict(self, state: dict) -> None:
        self.best_acc, self.best_clean, self.best_epoch = state["best_acc"], state["best_clean"], state["best_epoch"]
        self.best_state, self.stopped_epoch = state["best_state"], state["stopped_epoch"]
        self.accs = [(int(e), float(a)) for e, a in state["accs"]]

    def restore(self, model: nn.Module) -> nn.Module:
        """Load the best epoch's weights and buffers into ``model`` (bit-identical)."""
        if self.best_state is None:
            raise RuntimeError("no checkpoint yet: the callback has not run")
        model.load_state_dict(self.best_state)
        return model


# ----------------------------------------------------------------------------- the recipe
METHODS: dict[str, Callable | None] = {"pgd_at": pgd_at, "fgsm_rs": fgsm_rs, "trades": trades,
                                       "ll_fgsm_mix": ll_fgsm_mix, "standard": None}
_HOOKS = ("pgd_at", "fgsm_rs")


def adversarial_train(model: nn.Module, train, val, method: str = "pgd_at", *, eps: float = 8 / 255,
                      epochs: int = 10, select: str = "best_robust", val_attack: Callable | None = None,
                      val_n: int | None = 256, early_stop_drop: float | None | str = "auto", progress: bool = True,
                      track_robust: bool | None = None, keep_last: dict | None = None, **kw) -> pd.DataFrame:
    """Train ``model`` in place with ``method`` through :func:`lib.train.fit`; return the history.

    ``method``: ``"pgd_at"`` | ``"fgsm_rs"`` (batch hooks), ``"trades"`` | ``"ll_fgsm_mix"``
    (losses) or ``"standard"``; defaults and references in the module docstring's table. Keyword
    arguments that the method's builder takes (``alpha``, ``steps``, ``norm``, ``beta``,
    ``eps_max``, ``adv_fraction``, ``adv_weight``) go to it; the rest (``lr``, ``batch_size``,
    ``augment``, ``seed``, ...) go to ``fit``. ``eps`` is the training budget (for
    ``ll_fgsm_mix``, ``eps_max`` defaults to ``2 * eps``: the paper's 16/255 at 8/255) and the
    budget of the validation attack.

    Each epoch a :class:`RobustCheckpoint` measures ``val_attack`` (default PGD-10 at ``eps``, see
    :func:`pgd_val_attack`) on ``val_n`` images of ``val`` (stratified by class); ``early_stop_drop`` (``"auto"``:
    0.2 for ``fgsm_rs``, None (off) otherwise) stops on catastrophic overfitting. ``select="best_robust"``
    restores the epoch with the best robust validation accuracy (Rice et al. 2020), ``"last"``
    keeps the final weights. ``track_robust`` (default: only when selection or early stopping
    needs it) measures the robust validation accuracy each epoch anyway (it costs a PGD-10 pass
    over ``val_n`` images per epoch). ``keep_last``: a dict that receives the last epoch's state
    dict (CPU, under ``"state"``) before the selected epoch's weights are restored (Rice et al.
    report both). The history has ``val_robust_acc`` (when measured), ``method`` and a boolean
    ``selected`` column marking the epoch whose weights the model now holds (``history.attrs``
    holds ``selected_epoch``, ``stopped_epoch``, ``early_stop_drop``, ``eps``, the method's
    ``config`` and ``val_n``). For the batch-hook methods (PGD-AT, FGSM-RS) the training accuracy
    is measured on the adversarial batches and named ``train_adv_acc``; for ``ll_fgsm_mix`` on
    the half-adversarial batches, ``train_mixed_acc``; TRADES and standard training report clean
    ``train_acc``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if select not in ("best_robust", "last"):
        raise ValueError(f"select must be 'best_robust' or 'last', got {select!r}")
    builder = METHODS[method]
    method_kw = {}
    if builder is not None:
        names = set(inspect.signature(builder).parameters)
        method_kw = {k: kw.pop(k) for k in list(kw) if k in names}
        if "eps" in names:
            method_kw["eps"] = eps
        if method == "ll_fgsm_mix":
            method_kw.setdefault("eps_max", 2 * eps)
    fit_kw = dict(kw)
    user_cb = fit_kw.pop("on_epoch_end", None)
    if builder is not None:
        fit_kw["batch_hook" if method in _HOOKS else "loss"] = builder(**method_kw)
    if early_stop_drop == "auto":
        early_stop_drop = 0.2 if method == "fgsm_rs" else None

    if track_robust is None:
        track_robust = select == "best_robust" or early_stop_drop is not None
    ckpt = None
    if val is not None and track_robust:
        ckpt = RobustCheckpoint(val, val_attack or pgd_val_attack(eps), n=val_n, early_stop_drop=early_stop_drop)
    elif select == "best_robust":
        raise ValueError("select='best_robust' needs validation data (val) and track_robust")

    def on_epoch_end(epoch, row, m):
        stop = bool(ckpt(epoch, row, m)) if ckpt is not None else False
        if user_cb is not None:
            stop = bool(user_cb(epoch, row, m)) or stop
        return stop

    if user_cb is None or hasattr(user_cb, "state_dict"):  # resumable (lib.checkpoints) when its parts are
        on_epoch_end.state_dict = lambda: {"robust": ckpt.state_dict() if ckpt is not None else {},
                                           "user": user_cb.state_dict() if user_cb is not None else {}}

        def _load(state):
            if ckpt is not None:
                ckpt.load_state_dict(state["robust"])
            if user_cb is not None:
                user_cb.load_state_dict(state["user"])
        on_epoch_end.load_state_dict = _load

    hist = fit(model, train, val=val, epochs=epochs, on_epoch_end=on_epoch_end, progress=progress,
               desc=fit_kw.pop("desc", method), **fit_kw)
    if keep_last is not None:
        keep_last["state"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        keep_last["epoch"] = int(hist["epoch"].iloc[-1])
    if select == "best_robust":
        ckpt.restore(model)
        chosen = ckpt.best_epoch
    else:
        chosen = int(hist["epoch"].iloc[-1])
    model.eval()
    hist["method"] = method
    hist["selected"] = hist["epoch"] == chosen
    if method in _HOOKS or method == "ll_fgsm_mix":
        hist = hist.rename(columns={"train_acc": "train_adv_acc" if method in _HOOKS else "train_mixed_acc"})
    cfg = getattr(fit_kw.get("batch_hook") or fit_kw.get("loss"), "config", {"method": method})
    hist.attrs.update(selected_epoch=chosen, stopped_epoch=ckpt.stopped_epoch if ckpt else None,
                      early_stop_drop=early_stop_drop, config=copy.deepcopy(cfg), eps=eps,
                      val_n=len(labels_of(ckpt.val)) if ckpt is not None else 0)
    return hist
