"""Backdoor triggers (Gu et al. 2017, BadNets; Chen et al. 2017, blended injection) and where
they are pasted.

A :class:`Trigger` is an RGB pattern with an alpha channel, rendered at the size of the image
it goes on: ``x' = alpha * rgb + (1 - alpha) * x`` inside the patch, ``x`` elsewhere. Three ship:

- ``Trigger.emblem()``: a procedurally drawn round emblem (orange ring, blue disk, white
  flame-like crescent), our stand-in for the Renofeation authors' Firefox logo (no third-party
  artwork); by default 0.18 of the image side, as their 40-px logo on a 224-px crop, with an
  anti-aliased rim (fractional alpha) and a transparent outside (alpha 0 off the disk);
- ``Trigger.badnets()``: BadNets' white square, 3x3 px (BackdoorBench's CIFAR default);
- ``Trigger.blended()``: a full-image pattern (seeded uniform noise, one of Chen et al.'s two
  patterns) blended at opacity 0.2 (BackdoorBench's blended default).

Written here rather than taken from a library: torchvision has no alpha paste of a tensor patch,
and BackdoorBench / the authors' code work on PIL images one at a time; batched tensor pasting
with the exact pixel mask (what notebook 06 measures attention against) is a few lines.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

WHERE = ("bottom_right", "bottom_left", "top_left", "top_right", "random", "corners")


@dataclass(frozen=True)
class Trigger:
    """A trigger pattern.

    ``kind``: ``"emblem"``, ``"square"`` or ``"blend"``. ``size``: a float in (0, 1] is the
    patch side as a fraction of the image's shorter side (the authors' logo: 40/224); an int is
    pixels (BadNets' 3). ``opacity`` scales the alpha channel (1 for patches, 0.2 for the blended
    pattern). ``color``: the square's colour. ``seed``: the blended pattern's noise.
    """

    kind: str = "emblem"
    size: float | int = 40 / 224
    opacity: float = 1.0
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("emblem", "square", "blend"):
            raise ValueError(f"trigger kind must be 'emblem', 'square' or 'blend', got {self.kind!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, (int, float)) or self.size <= 0:
            raise ValueError(f"trigger size must be a fraction in (0, 1] or a pixel count >= 1, got {self.size!r}")
        if isinstance(self.size, float) and self.size > 1:
            raise ValueError(f"a float trigger size is a fraction of the image side, in (0, 1]; got {self.size} "
                             f"(pass an int for pixels)")
        if not 0 < self.opacity <= 1:
            raise ValueError(f"trigger opacity must be in (0, 1], got {self.opacity}")

    # ------------------------------------------------------------------ the three shipped triggers
    @classmethod
    def emblem(cls, size: float | int = 40 / 224) -> "Trigger":
        return cls("emblem", size)

    @classmethod
    def badnets(cls, px: int = 3, color=(1.0, 1.0, 1.0)) -> "Trigger":
        return cls("square", int(px), color=tuple(float(c) for c in color))

    @classmethod
    def blended(cls, opacity: float = 0.2, seed: int = 0) -> "Trigger":
        return cls("blend", 1.0, opacity=opacity, seed=seed)

    @classmethod
    def named(cls, name: str) -> "Trigger":
        """``"emblem"``, ``"badnets"`` or ``"blended"`` with their defaults."""
        makers = {"emblem": cls.emblem, "badnets": cls.badnets, "blended": cls.blended}
        if name not in makers:
            raise ValueError(f"unknown trigger {name!r}; choose from {sorted(makers)}")
        return makers[name]()

    def config(self) -> dict:
        """A JSON-able description (for store keys and tables)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    # ------------------------------------------------------------------ rendering
    def side(self, h: int, w: int) -> int:
        """The patch side in pixels on an ``h x w`` image; an error if it does not fit."""
        px = self.size if isinstance(self.size, int) else max(1, round(self.size * min(h, w)))
        if px > min(h, w):
            raise ValueError(f"a {px}-px trigger does not fit a {h}x{w} image; use a smaller trigger size")
        return px

    def render(self, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rgb (3, ph, pw), alpha (1, ph, pw))`` float in [0, 1] for an ``h x w`` image (the
        blended pattern covers the whole image)."""
        if self.kind == "blend":
            g = torch.Generator().manual_seed(self.seed)
            rgb = torch.rand(3, h, w, generator=g)
            return rgb, torch.full((1, h, w), float(self.opacity))
        p = self.side(h, w)
        if self.kind == "square":
            rgb = torch.tensor(self.color, dtype=torch.float32).view(3, 1, 1).expand(3, p, p).clone()
            return rgb, torch.full((1, p, p), float(self.opacity))
        return _emblem(p, self.opacity)


def _emblem(p: int, opacity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The emblem at ``p`` px: signed distances in the unit disk, 4x4 supersampled coverage for
    the alpha rim (so small renderings stay round)."""
    s = 4
    t = (torch.arange(p * s, dtype=torch.float32) + 0.5) / (p * s) * 2 - 1
    v, u = torch.meshgrid(t, t, indexing="ij")
    r = torch.sqrt(u ** 2 + v ** 2)
    orange, blue, white = (torch.tensor(c).view(3, 1, 1) for c in
                           ((1.0, 0.45, 0.05), (0.20, 0.15, 0.70), (1.0, 1.0, 0.95)))
    rgb = torch.where(r < 0.72, blue, orange)
    # a crescent: inside r < 0.55, outside a disk shifted up and to the right
    crescent = (r < 0.55) & (torch.sqrt((u - 0.22) ** 2 + (v + 0.22) ** 2) > 0.42)
    rgb = torch.where(crescent, white, rgb)
    alpha = (r <= 1.0).float()[None]
    pool = torch.nn.functional.avg_pool2d
    rgb_p = pool((rgb * alpha)[None], s)[0]
    alpha_p = pool(alpha[None], s)[0]
    rgb_p = torch.where(alpha_p > 0, rgb_p / alpha_p.clamp_min(1e-6), torch.zeros_like(rgb_p))
    return rgb_p.clamp(0, 1), (alpha_p * opacity).clamp(0, 1)


def _positions(where: str, n: int, h: int, w: int, ph: int, pw: int, seed: int) -> torch.Tensor:
    """Top-left ``(row, col)`` of the patch for each of ``n`` images, ``(n, 2)`` long."""
    corners = {"top_left": (0, 0), "top_right": (0, w - pw), "bottom_left": (h - ph, 0),
               "bottom_right": (h - ph, w - pw)}
    if where in corners:
        return torch.tensor(corners[where]).expand(n, 2).clone()
    g = torch.Generator().manual_seed(seed)
    if where == "random":  # uniform over every position where the patch fits (the authors' default)
        return torch.stack([torch.randint(0, h - ph + 1, (n,), generator=g),
                            torch.randint(0, w - pw + 1, (n,), generator=g)], 1)
    if where == "corners":  # one of the four corners per image
        table = torch.tensor(list(corners.values()))
        return table[torch.randint(0, 4, (n,), generator=g)]
    raise ValueError(f"where must be one of {WHERE}, got {where!r}")


def apply_trigger(x: torch.Tensor, trigger: Trigger, where: str = "bottom_right", *,
                  seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste ``trigger`` on images ``x`` ``(N, 3, H, W)`` (float in [0, 1] or uint8; a single
    ``(3, H, W)`` image is treated as a batch of one) at ``where`` (one of :data:`WHERE`: a fixed
    corner, ``"random"`` uniform positions or ``"corners"``: one of the four per image, both
    drawn from ``seed``).

    Returns ``(x_triggered, mask)``: the images in ``x``'s dtype (uint8 rounded) on its device,
    never modifying ``x``, and ``mask`` a bool ``(N, 1, H, W)`` tensor of the pixels the trigger
    landed on (alpha > 0). The blended trigger covers every pixel.
    """
    single = x.dim() == 3
    if single:
        x = x[None]
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    rgb, alpha = trigger.render(h, w)
    ph, pw = alpha.shape[-2:]
    if where not in WHERE:
        raise ValueError(f"where must be one of {WHERE}, got {where!r}")
    pos = _positions(where, n, h, w, ph, pw, seed)
    xf = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    full_rgb = torch.zeros(n, 3, h, w)
    full_alpha = torch.zeros(n, 1, h, w)
    for (r, c) in pos.unique(dim=0).tolist():  # a handful of distinct positions: one slice each
        sel = ((pos[:, 0] == r) & (pos[:, 1] == c)).nonzero().flatten()
        full_rgb[sel, :, r:r + ph, c:c + pw] = rgb
        full_alpha[sel, :, r:r + ph, c:c + pw] = alpha
    full_rgb, full_alpha = full_rgb.to(x.device), full_alpha.to(x.device)
    out = full_alpha * full_rgb + (1 - full_alpha) * xf
    mask = full_alpha > 0
    if x.dtype == torch.uint8:
        out = (out * 255).round().clamp(0, 255).to(torch.uint8)
    else:
        out = out.to(x.dtype)
    return (out[0], mask[0]) if single else (out, mask)
