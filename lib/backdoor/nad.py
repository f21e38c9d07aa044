"""NAD, Neural Attention Distillation (Li, Lyu, Koren, Lyu, Li & Ma 2021, "Neural Attention
Distillation: Erasing Backdoor Triggers from Deep Neural Networks", ICLR; authors' code
github.com/bboylyg/NAD): a purification that needs only a small clean set.

1. **Teacher**: a copy of the backdoored model fine-tuned (every layer, plain cross-entropy) on
   the defender's clean set. Fine-tuning alone weakens the backdoor only partly.
2. **Student**: another copy of the backdoored model trained on the same clean set with
   ``CE + sum_l beta_l * AT(F_l^student, F_l^teacher)`` (paper eq. 2-3), where the attention
   map of a feature map ``F`` of shape ``(C, H, W)`` is ``A = sum_c |F_c|^p`` (eq. 1, "attention
   operator"), flattened and L2-normalised (Zagoruyko & Komodakis 2017), and ``AT`` is the mean
   squared difference of the normalised maps (the authors' ``at.py``:
   ``F.mse_loss(am_s, am_t)``). The student is the purified model.

Defaults are the authors' code (``config.py``, ``main.py``, ``utils/util.py``; WRN-16-1 on
CIFAR-10 with 5% clean data): SGD momentum 0.9 with Nesterov, weight decay 1e-4, batch 64,
lr 0.1 for the first 2 epochs then 0.01 (``adjust_learning_rate``), 20 distillation epochs,
``p = 2``, teacher in eval mode and frozen. The teacher is fine-tuned "for 5~10 epochs" with the
same script and the betas at 0 (README), so the same optimiser and schedule, 10 epochs here.
Betas: the paper's 500, 1000, 1000 on the last three residual groups (``config.py`` ships 0, 0,
5000 instead); with ``betas=None`` the first value goes to the third-last stage of the model's
``stages`` and so on (small_cnn: conv2, conv3, conv4). Augmentation: the authors crop with
4-px padding and flip; here random 3-px shifts without flips (:func:`lib.train.random_translate`,
the workbook's recipe: traffic signs are not mirror-symmetric). How a test scales this to the
smoke budget (epochs, batch) is stated where it calls :func:`nad`.

Training goes through :func:`lib.train.fit`, whose ``loss(model, x, y)`` hook carries the AT
term; feature maps come from :meth:`lib.models.Classifier.features` (the same stage outputs that
DELTA, :mod:`lib.transfer.delta`, regularises). The input model is never modified.
"""
from __future__ import annotations

import copy
from typing import Mapping

import pandas as pd
import torch
import torch.nn.functional as F

from ..models import freeze, frozen_copy
from ..train import fit, random_translate

PAPER_BETAS = (500.0, 1000.0, 1000.0)  # the paper's betas for the last three groups of WRN-16-1


def attention_map(features: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """NAD's attention map (paper eq. 1, ``A = sum_c |F_c|^p``) of a batch of feature maps
    ``(N, C, H, W)``: flattened to ``(N, H*W)`` and L2-normalised per image, so that the map's
    scale (hence a sum or a mean over channels) does not matter, only where the energy lies.
    An all-zero map stays zero (``F.normalize``'s eps; the authors add 1e-6 to the norm)."""
    a = features.float().abs().pow(p).mean(1).flatten(1)
    return F.normalize(a, p=2, dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """The AT distillation loss of one layer (the authors' ``AT`` class): mean over images and
    positions of the squared difference of the normalised attention maps; the teacher's map is
    a constant (detached)."""
    return (attention_map(student, p) - attention_map(teacher.detach(), p)).pow(2).mean()


def default_betas(model, betas=PAPER_BETAS) -> dict[str, float]:
    """The paper's betas on the model's last ``len(betas)`` stages (earliest stage first)."""
    stages = list(model.stages)[-len(betas):]
    return dict(zip(stages, betas))


def nad_loss(teacher, betas: Mapping[str, float], p: float = 2.0):
    """A ``loss(model, x, y)`` for :func:`lib.train.fit`: ``CE + sum_l beta_l * AT_l`` (paper
    eq. 3) against the frozen ``teacher``; the history gains ``at`` (the weighted AT sum)."""
    stages = [s for s, b in betas.items() if b]

    def loss(model, x, y):
        feats = model.features(x, stages)
        logits = feats["logits"]
        at = torch.zeros((), device=logits.device)
        if stages:
            with torch.no_grad():
                t = teacher.features(x, stages, logits=False)
            for s in stages:
                at = at + betas[s] * at_loss(feats[s], t[s], p)
        return F.cross_entropy(logits.float(), y) + at, logits, {"at": at}

    return loss


def authors_fit_kw(epochs: int, lr: float = 0.1, batch_size: int = 64, weight_decay: float = 1e-4, seed: int = 0,
                   translate: int | None = 3, fit_kw: dict | None = None) -> dict:
    """:func:`lib.train.fit` arguments for the authors' recipe (``main.py``): SGD momentum 0.9
    (Nesterov), ``lr`` for 2 epochs then ``lr/10``, random ``translate``-px shifts. The same
    recipe with plain cross-entropy is the paper's teacher and the fine-tuning baseline."""
    kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=0.9, weight_decay=weight_decay,
              schedule=f"piecewise:{min(1.0, 2 / max(epochs, 1))}", seed=seed, progress=False,
              augment=random_translate(translate) if translate else None)
    kw.update(fit_kw or {})
    return kw


def _trainable_copy(model):
    m = copy.deepcopy(model)
    freeze(m, False)
    return m


def fine_tune_clean(model, clean_set, *, epochs: int = 10, lr: float = 0.1, batch_size: int = 64,
                    weight_decay: float = 1e-4, translate: int | None = 3, seed: int = 0,
                    **fit_kw) -> tuple[torch.nn.Module, pd.DataFrame]:
    """A copy of ``model`` fine-tuned (every layer, its own head kept, plain cross-entropy) on the
    defender's ``clean_set`` with the authors' recipe (:func:`authors_fit_kw`): NAD's teacher and
    the fine-tuning baseline of every purification. ``(model in eval mode, history)``."""
    tuned = _trainable_copy(model)
    hist = fit(tuned, clean_set, desc="fine-tune on clean set",
               **authors_fit_kw(epochs, lr, batch_size, weight_decay, seed, translate, fit_kw))
    return tuned.eval(), pd.DataFrame(hist)


def nad(model, clean_set, *, teacher_epochs: int = 10, epochs: int = 20, lr: float = 0.1,
        betas: Mapping[str, float] | None = None, p: float = 2.0, batch_size: int = 64,
        weight_decay: float = 1e-4, translate: int | None = 3, seed: int = 0,
        **fit_kw) -> tuple[torch.nn.Module, dict]:
    """Purify the backdoored ``model`` with NAD on ``clean_set`` (the defender's clean images);
    returns ``(student, info)``, the student in eval mode, ``model`` untouched.

    ``betas``: stage name -> weight of its AT term (``None``: :func:`default_betas`, the paper's
    500, 1000, 1000 on the last three stages; all zero: NAD reduces to fine-tuning the backdoored
    model for ``epochs``). ``teacher_epochs``: fine-tuning epochs of the teacher. The other
    defaults are the authors' (module docstring); ``fit_kw`` go to :func:`lib.train.fit` for both
    phases (``device``, ``amp``, ...). ``info``: ``teacher`` (the fine-tuned teacher, eval mode:
    also the plain fine-tuning baseline at ``teacher_epochs``), ``teacher_history``,
    ``history`` (with the epoch-mean ``at``), ``betas``, ``p``.
    """
    betas = default_betas(model) if betas is None else dict(betas)
    unknown = [s for s in betas if s not in model.blocks]
    if unknown:
        raise KeyError(f"betas name unknown stages {unknown}; blocks are {model.block_names}")
    teacher, t_hist = fine_tune_clean(model, clean_set, epochs=teacher_epochs, lr=lr, batch_size=batch_size,
                                      weight_decay=weight_decay, translate=translate, seed=seed, **fit_kw)
    student = _trainable_copy(model)
    frozen = frozen_copy(teacher, next(student.parameters()).device)
    hist = fit(student, clean_set, loss=nad_loss(frozen, betas, p), desc="NAD student",
               **authors_fit_kw(epochs, lr, batch_size, weight_decay, seed + 1, translate, fit_kw))
    info = {"teacher": teacher, "teacher_history": t_hist, "history": pd.DataFrame(hist),
            "betas": betas, "p": p}
    return student.eval(), info
