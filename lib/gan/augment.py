"""Training-set augmentation with generated images, as the CS236 study mixes them
(``trainers/classifier_trainer.py``): a ``fit`` loss that replaces ``adv_fraction`` of each batch
(a random subset; the study took the first half) by images made *for those images' labels*, and
weights their cross-entropy by ``adv_weight`` (λ = 0.3)::

    loss = (sum_clean CE + λ sum_generated CE) / (n_clean + λ n_generated)

the normalisation of :class:`lib.adversarial_training.LLFGSMMixLoss` (Kurakin et al. 2017), which
covers the study's FGSM arm. ``make(model, y)`` returns the images (pixels in [0, 1]): GAN samples
(:func:`gan_maker`) or unrestricted examples crafted against the model being trained
(:func:`unrestricted_maker`, the study's ``AugmentedTrainer``)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .latent import unrestricted_attack
from .quality import generate


class GeneratedMixLoss:
    """The mixing loss above; ``self.last`` holds the last batch's ``mask``, ``x``, ``n_adv``, ``n``."""

    def __init__(self, make: Callable[[nn.Module, Tensor], Tensor], adv_fraction: float = 0.5,
                 adv_weight: float = 0.3, name: str = "generated"):
        if not 0 <= adv_fraction <= 1:
            raise ValueError(f"adv_fraction must be in [0, 1], got {adv_fraction}")
        self.make, self.adv_fraction, self.adv_weight = make, float(adv_fraction), float(adv_weight)
        self.config = {"method": name, "adv_fraction": self.adv_fraction, "adv_weight": self.adv_weight}
        self.last: dict = {}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor):
        n = len(y)
        k = int(round(self.adv_fraction * n))
        mask = torch.zeros(n, dtype=torch.bool, device=x.device)
        mask[torch.randperm(n)[:k].to(x.device)] = True
        x_mix = x.detach().clone()
        if k:
            x_mix[mask] = self.make(model, y[mask]).to(x.device, x.dtype)
        logits = model(x_mix)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        w = torch.where(mask, torch.full_like(ce, self.adv_weight), torch.ones_like(ce))
        loss = (w * ce).sum() / ((n - k) + self.adv_weight * k)
        self.last = {"mask": mask, "x": x_mix, "n_adv": k, "n": n}
        return loss, logits


def gan_maker(G: nn.Module) -> Callable[[nn.Module, Tensor], Tensor]:
    """Fresh AC-GAN samples (z ~ N(0, I), global RNG) for the labels asked for."""

    def make(model: nn.Module, y: Tensor) -> Tensor:
        return generate(G, y.cpu(), seed=int(torch.randint(2**31 - 1, ())))

    return make


def unrestricted_maker(G: nn.Module, aux: nn.Module, steps: int, **attack_kw) -> Callable[[nn.Module, Tensor], Tensor]:
    """Unrestricted examples for the labels asked for, crafted against the model being trained
    (``steps`` latent-optimisation steps from fresh codes). Returns the final images with their
    pixel noise (the study returned the samples without it, which the classifier never attacked)."""

    def make(model: nn.Module, y: Tensor) -> Tensor:
        return unrestricted_attack(G, aux, model, y.cpu(), steps, seed=int(torch.randint(2**31 - 1, ())),
                                   **attack_kw).images

    return make
