"""The AC-GAN's networks: Gulrajani et al. 2017's CIFAR ResNet generator and critic, with
class-conditional BatchNorm in the generator and an auxiliary classifier head on the critic
(Odena et al. 2017), as the CS236 study builds them (``models/resnet_gan.py``).

Ranges: the generator's output and the critic's input are in [-1, 1] (the GAN's own range, a
tanh output); :func:`to_pixels` / :func:`from_pixels` convert to and from the [0, 1] pixels every
classifier of the workbook takes. The blocks are written here because torch/torchvision ship no
GAN blocks; conditional BatchNorm is ``BatchNorm2d(affine=False)`` plus one (gamma, beta) pair
per class looked up from an ``Embedding`` (de Vries et al. 2017; Miyato & Koyama 2018).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def to_pixels(x: Tensor) -> Tensor:
    """GAN range [-1, 1] -> pixels [0, 1]."""
    return (x + 1) / 2


def from_pixels(x: Tensor) -> Tensor:
    """Pixels [0, 1] -> GAN range [-1, 1]."""
    return x * 2 - 1


def check_labels(y: Tensor, num_classes: int) -> Tensor:
    """``y`` as a long tensor, or a ValueError naming the valid range."""
    y = torch.as_tensor(y).long()
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"class indices must be in 0..{num_classes - 1} (the generator has {num_classes} classes), "
                         f"got values in {int(y.min())}..{int(y.max())}")
    return y


def init_weights(net: nn.Module) -> nn.Module:
    """Glorot-uniform weights (gain sqrt 2 for convolutions, which feed ReLUs) and zero biases, the
    initialisation of the public WGAN-GP/SN-GAN ResNets; PyTorch's default (uniform with a = sqrt 5)
    starts these normalisation-free residual critics with tiny signals and measurably slower learning."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, math.sqrt(2) if isinstance(m, nn.Conv2d) else 1.0)
            nn.init.zeros_(m.bias)
    return net


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without its own affine part, then ``gamma[y] * x + beta[y]`` with one pair per class
    (initialised to 1 and 0, so at the start it is plain BatchNorm for every class)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.gamma(y)[:, :, None, None] * self.bn(x) + self.beta(y)[:, :, None, None]


class GenBlock(nn.Module):
    """Up-sampling residual block: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up-conv1."""

    def __init__(self, cin: int, cout: int, num_classes: int):
        super().__init__()
        self.bn1, self.bn2 = ConditionalBatchNorm2d(cin, num_classes), ConditionalBatchNorm2d(cout, num_classes)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class Generator(nn.Module):
    """``G(z, y)``: z (``z_dim``) -> linear to ``width x 4 x 4`` -> ``log2(size / 4)`` up-sampling
    residual blocks with class-conditional BatchNorm -> BN-ReLU-conv3 -> tanh, an image in [-1, 1]
    of ``size`` px (32 for CIFAR: three blocks, as the study)."""

    def __init__(self, num_classes: int, z_dim: int = 128, width: int = 128, size: int = 32):
        super().__init__()
        blocks = size.bit_length() - 3
        if size < 8 or size != 4 * 2 ** blocks:
            raise ValueError(f"size must be 4 * 2**k with k >= 1 (8, 16, 32, 64, ...), got {size}")
        self.num_classes, self.z_dim, self.width, self.size = num_classes, z_dim, width, size
        self.linear = nn.Linear(z_dim, width * 16)
        self.blocks = nn.ModuleList(GenBlock(width, width, num_classes) for _ in range(blocks))
        self.bn = nn.BatchNorm2d(width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        init_weights(self)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        y = check_labels(y, self.num_classes).to(z.device)
        if z.dim() != 2 or z.shape[1] != self.z_dim or len(z) != len(y):
            raise ValueError(f"z must be (N, {self.z_dim}) with N = len(y) = {len(y)}, got {tuple(z.shape)}")
        h = self.linear(z).view(len(z), self.width, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.out(F.relu(self.bn(h))))

    def sample_z(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """``n`` latent codes from N(0, I) (the study's prior)."""
        device = device or next(self.parameters()).device
        return torch.randn(n, self.z_dim, generator=generator, device="cpu").to(device)


class _DisBlock(nn.Module):
    """Critic residual block without normalisation: (ReLU)-conv3-ReLU-conv3-(mean-pool), with a 1x1
    conv (+ pool) shortcut when the shape changes. ``first``: the study's "optimised" first block
    (no leading ReLU on the image, pool after the shortcut's conv as in Gulrajani's code)."""

    def __init__(self, cin: int, cout: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, padding=1), nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if (down or cin != cout) else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        if self.down:
            h = F.avg_pool2d(h, 2)
        s = x
        if self.shortcut is not None:
            s = F.avg_pool2d(x, 2) if self.down and self.first else x
            s = self.shortcut(s)
            if self.down and not self.first:
                s = F.avg_pool2d(s, 2)
        return h + s


class Critic(nn.Module):
    """The WGAN critic with an auxiliary classifier: optimised first block (down), a down block,
    two plain blocks, ReLU, global mean; ``forward(x)`` returns ``(score (N,), aux logits (N, K))``,
    the aux head being dropout 0.5 then linear (as the study). No normalisation anywhere (the
    gradient penalty is per sample)."""

    def __init__(self, num_classes: int, width: int = 128, dropout: float = 0.5):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.blocks = nn.Sequential(_DisBlock(3, width, down=True, first=True), _DisBlock(width, width, down=True),
                                    _DisBlock(width, width, down=False), _DisBlock(width, width, down=False))
        self.critic = nn.Linear(width, 1)
        self.dropout = nn.Dropout(dropout)
        self.aux = nn.Linear(width, num_classes)
        init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        return F.relu(self.blocks(x)).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        return self.critic(h).squeeze(1), self.aux(self.dropout(h))


class AuxClassifier(nn.Module):
    """The critic's auxiliary classifier as a module of its own: ``aux(x)`` = class logits of an
    image ``x`` in [-1, 1] (shares the critic's weights; in eval mode dropout is off)."""

    def __init__(self, critic: Critic):
        super().__init__()
        self.critic = critic
        self.num_classes = critic.num_classes

    def forward(self, x: Tensor) -> Tensor:
        return self.critic(x)[1]
