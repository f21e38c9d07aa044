"""Where a model looks, measured: Grad-CAM and activation maps against known image regions.

Two maps of the same feature stage (default the model's last one, which for ResNets is
torchvision's ``layer4``, the layer the Renofeation and ReMoS authors draw):

- :func:`gradcam` (Selvaraju et al. 2017, "Grad-CAM: Visual explanations from deep networks via
  gradient-based localization"): the stage's channels weighted by the spatial mean of the
  gradient of one class score, summed, ReLU. It is **class-specific**: it shows what speaks
  *for the class* (by default the predicted one). Computed by captum's ``LayerGradCam``.
- :func:`activation_map`: the authors' own map (``draw_attention.py``): the mean over channels of
  ``|activation|``. It is **class-agnostic**: it shows where the stage responds strongly, for or
  against any class, so a strong distractor shows in it even when the decision ignores it.

Both are upsampled bilinearly to the input size and min-max normalised per image to [0, 1].
An image batch gives the same maps as one image at a time (eval mode: BatchNorm uses its
running statistics; each image's gradient is its own).

Measured against a region (a boolean mask: the object, a trigger patch), per image:

- :func:`attention_mass`: the share of the map's total mass inside the region, the
  "energy-based pointing game" of Wang et al. 2020 ("Score-CAM: Score-weighted visual
  explanations for convolutional neural networks", CVPR-W, Sec. 5.1.2). A map that ignores the
  region's content puts :func:`area_share` of its mass there, so the area share is the chance line.
- :func:`pointing_hit`: whether the map's maximum lies in the region (the pointing game of Zhang
  et al. 2016, "Top-down neural attention by excitation backprop"; their 15-pixel tolerance at
  224 px is the ``tolerance`` argument, 0 by default).
- :func:`attention_scores`: both, with the area share, for several regions in one table.

:func:`overlay` draws a map over the clean image as the authors do (colour map, alpha).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attacks.core import attack_mode, prepare_batch
from .models import Classifier


# ------------------------------------------------------------------------------------- stages
def _stage(model: nn.Module, stage: str | None) -> tuple[str, nn.Module]:
    """``(name, module)`` of the feature stage: a block of a :class:`Classifier` (default its last
    stage) or, for any other module, a submodule name such as ``"layer4"``."""
    if isinstance(model, Classifier):
        name = model.stages[-1] if stage is None else stage
        if name not in model.blocks:
            raise ValueError(f"model ({model.arch}) has no stage {name!r}; its stages are {model.stages} "
                             f"(any block works: {model.block_names})")
        return name, model.blocks[name]
    if stage is None:
        raise ValueError(f"a {type(model).__name__} has no default stage: pass stage= the name of a submodule, "
                         f"one of {[n for n, _ in model.named_children()]}")
    try:
        return stage, model.get_submodule(stage)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule {stage!r}; its children are "
                         f"{[n for n, _ in model.named_children()]}") from None


def _images(model: nn.Module, x: Tensor) -> Tensor:
    if not torch.is_tensor(x) or x.ndim != 4:
        raise ValueError(f"expected a batch of images (N, C, H, W), got {getattr(x, 'shape', type(x))}")
    return prepare_batch(model, x)  # float, in [0, 1], on the model's device


def _normalize_upsampled(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 1, h, w) -> (N, H, W): bilinear upsampling (half-pixel centres, as OpenCV's and PIL's
    resize), then per-image min-max to [0, 1]; a flat map becomes all zeros."""
    up = F.interpolate(maps.float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = up.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp_min(torch.finfo(up.dtype).tiny)
    out = (up - low[:, None, None]) / span[:, None, None]
    return torch.where((high > low)[:, None, None], out, torch.zeros_like(out))


def _targets(target, n: int, num_classes: int | None, device) -> Tensor | None:
    if target is None:
        return None
    t = torch.as_tensor(target, device=device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be one class or one per image; got {t.numel()} for {n} images")
    if num_classes is not None and n and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"target classes must lie in 0..{num_classes - 1}; got {t.min().item()}..{t.max().item()}")
    return t


# --------------------------------------------------------------------------------------- maps
def gradcam(model: nn.Module, x: Tensor, target=None, stage: str | None = None, *,
            batch_size: int = 256) -> Tensor:
    """Grad-CAM of ``model`` on images ``x`` at feature stage ``stage``.

    Args:
        model: a :class:`lib.models.Classifier` (or any module returning logits).
        x: float images ``(N, 3, H, W)`` in [0, 1] (the model normalises inside itself).
        target: the class whose score is explained: ``None`` (each image's predicted class), one
            class for all images, or one per image.
        stage: a block name of the model (default its last stage, e.g. ``layer4_1``, the output
            of torchvision's ``layer4``); for a plain module, a submodule name.
        batch_size: images per forward/backward pass (the maps do not depend on it).

    Returns:
        ``(N, H, W)`` float maps in [0, 1] on the CPU: captum's ``LayerGradCam`` with
        ``relu_attributions=True``, upsampled bilinearly to ``H x W`` and min-max normalised per
        image (an all-zero map, where nothing speaks for the class, stays zero).

    The model runs in eval mode with its parameters' ``requires_grad`` off; its modes, flags and
    parameters are restored untouched and no ``.grad`` is left behind.
    """
    from captum.attr import LayerGradCam

    _, layer = _stage(model, stage)
    x = _images(model, x)
    num_classes = getattr(model, "num_classes", None)
    targets = _targets(target, len(x), num_classes, x.device)
    out = []
    with attack_mode(model):
        explainer = LayerGradCam(model, layer)
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            if targets is None:
                with torch.no_grad():
                    tb = model(xb).argmax(1)
            else:
                tb = targets[i:i + batch_size]
            cam = explainer.attribute(xb, target=tb, relu_attributions=True).detach()
            out.append(_normalize_upsampled(cam, x.shape[-2:]).cpu())
    return torch.cat(out) if out else torch.zeros(0, *x.shape[-2:])


def activation_map(model: nn.Module, x: Tensor, stage: str | None = None, *, batch_size: int = 256) -> Tensor:
    """The authors' attention map: the mean over channels of ``|activation|`` of ``stage``
    (default the model's last stage), upsampled bilinearly to the input size and min-max
    normalised per image, ``(N, H, W)`` in [0, 1] on the CPU.

    ``draw_attention.py`` normalises the 7x7 map first and resizes the uint8 image with PIL's
    antialiasing filter; here the order and the bilinear filter are :func:`gradcam`'s, so the two
    maps differ only in how the channels are weighted. Eval mode, modes restored."""
    _, layer = _stage(model, stage)
    x = _images(model, x)
    out, caught = [], []
    hook = layer.register_forward_hook(lambda _m, _i, o: caught.append(o))
    try:
        with attack_mode(model), torch.no_grad():
            for i in range(0, len(x), batch_size):
                caught.clear()
                model(x[i:i + batch_size])
                a = caught[-1].abs().mean(1, keepdim=True)
                out.append(_normalize_upsampled(a, x.shape[-2:]).cpu())
    finally:
        hook.remove()
    return torch.cat(out) if out else torch.zeros(0, *x.shape[-2:])


# ------------------------------------------------------------------------------- measurements
def _maps(cam: Tensor) -> Tensor:
    cam = torch.as_tensor(cam)
    if cam.ndim == 4 and cam.shape[1] == 1:
        cam = cam[:, 0]
    if cam.ndim == 2:
        cam = cam[None]
    if cam.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or (N, 1, H, W), got {tuple(cam.shape)}")
    cam = cam.detach().float().cpu()
    if cam.numel() and cam.min() < 0:
        raise ValueError("attention needs non-negative maps (gradcam and activation_map give them); "
                         f"got a minimum of {cam.min().item():.3g}: apply a ReLU first")
    return cam


def _region(mask: Tensor, cam: Tensor) -> Tensor:
    """``mask`` as bool ``(N, H, W)`` matching ``cam``: one mask per image, or one for all."""
    m = torch.as_tensor(mask).detach().cpu()
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[-2:] != cam.shape[-2:]:
        raise ValueError(f"mask of shape {tuple(torch.as_tensor(mask).shape)} does not match maps of shape "
                         f"{tuple(cam.shape)}: it needs the maps' height and width {tuple(cam.shape[-2:])} "
                         "(resize the mask, or compute the maps on images of the mask's size)")
    if m.shape[0] not in (1, cam.shape[0]):
        raise ValueError(f"{m.shape[0]} masks for {cam.shape[0]} maps: give one mask per map, or one for all")
    return m.bool().expand_as(cam)


def area_share(mask: Tensor) -> Tensor:
    """Per image, the share of the image that the region covers, ``(N,)``: the attention mass of
    a map that ignores the region (the chance line of :func:`attention_mass`)."""
    m = torch.as_tensor(mask).detach().cpu()
    m = m[:, 0] if m.ndim == 4 and m.shape[1] == 1 else (m[None] if m.ndim == 2 else m)
    return m.float().flatten(1).mean(1)


def attention_mass(cam: Tensor, mask: Tensor) -> Tensor:
    """Per image, the share of the map's total mass inside the region: ``sum(cam * mask) /
    sum(cam)``, ``(N,)`` in [0, 1] (Wang et al. 2020's energy-based pointing game). ``NaN`` for an
    all-zero map (nothing to share). ``cam``: ``(N, H, W)`` non-negative maps; ``mask``: bool
    regions of the same size, one per map or one for all."""
    cam = _maps(cam)
    m = _region(mask, cam)
    total = cam.flatten(1).sum(1)
    inside = (cam * m).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(torch.finfo(cam.dtype).tiny), torch.nan)


def _within(m: Tensor, tolerance: float) -> Tensor:
    """``m`` grown by every pixel within Euclidean distance ``tolerance`` (pixels) of it."""
    r = int(tolerance)
    if r < 1:
        return m
    grid = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= tolerance ** 2).float()[None, None]
    return F.conv2d(m.float()[:, None], disk, padding=r)[:, 0] > 0


def pointing_hit(cam: Tensor, mask: Tensor, tolerance: float = 0.0) -> Tensor:
    """Per image, whether the map's maximum lies in the region, bool ``(N,)``. ``tolerance``:
    also a hit within that many pixels of it (Zhang et al.'s pointing game: 15 px at 224 px, for
    maps coarser than the region). Where several pixels share the maximum (bilinear upsampling
    makes plateaus at the borders), one of them counts; a flat map (no maximum to point at, e.g.
    all zeros) never hits."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    cam = _maps(cam)
    m = _within(_region(mask, cam), tolerance)
    flat = cam.flatten(1)
    top, low = flat.max(1).values, flat.min(1).values
    inside = torch.where(m, cam, torch.full_like(cam, -1.0)).flatten(1).max(1).values
    return (inside >= top) & (top > low)


def attention_scores(cam: Tensor, regions: Mapping[str, Tensor], tolerance: float = 0.0) -> pd.DataFrame:
    """One row per map: for each named region (e.g. ``{"object": masks, "trigger": patch}``),
    ``<name>_mass`` (:func:`attention_mass`), ``<name>_hit`` (:func:`pointing_hit` with
    ``tolerance`` pixels) and ``<name>_area`` (:func:`area_share`, the chance line beside them)."""
    cam = _maps(cam)
    cols: dict[str, np.ndarray] = {}
    for name, mask in regions.items():
        m = _region(mask, cam)
        cols[f"{name}_mass"] = attention_mass(cam, m).numpy()
        cols[f"{name}_hit"] = pointing_hit(cam, m, tolerance).numpy()
        cols[f"{name}_area"] = area_share(m).numpy()
    return pd.DataFrame(cols)


# -------------------------------------------------------------------------------------- figure
def overlay(image: Tensor, cam: Tensor, cmap: str = "bwr", alpha: float = 0.6) -> np.ndarray:
    """The authors' picture: ``cam`` in colour map ``cmap`` blended with weight ``alpha`` over the
    clean ``image`` (``draw_attention.py``: ``'bwr'`` at 0.6 for adversarial inputs, ``'hsv'`` at
    0.4 for triggered ones). ``image``: ``(3, H, W)`` (float in [0, 1] or uint8) or a batch;
    ``cam``: ``(H, W)`` in [0, 1] or a batch. Returns RGB ``(H, W, 3)`` (or ``(N, H, W, 3)``)
    floats in [0, 1] for ``imshow``."""
    import matplotlib

    img = torch.as_tensor(image).detach().cpu()
    img = img.float() / 255 if img.dtype == torch.uint8 else img.float()
    c = torch.as_tensor(cam).detach().float().cpu()
    single = img.ndim == 3
    img, c = (img[None], c[None]) if single else (img, c)
    if img.ndim != 4 or img.shape[1] != 3 or c.shape != (img.shape[0], *img.shape[-2:]):
        raise ValueError(f"overlay needs images (N, 3, H, W) and maps (N, H, W) of the same size; got "
                         f"{tuple(torch.as_tensor(image).shape)} and {tuple(torch.as_tensor(cam).shape)}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colours = matplotlib.colormaps[cmap](c.clamp(0, 1).numpy())[..., :3]
    out = ((1 - alpha) * img.clamp(0, 1).permute(0, 2, 3, 1).numpy() + alpha * colours).clip(0, 1)
    return out[0] if single else out


__all__ = ["gradcam", "activation_map", "attention_mass", "pointing_hit", "area_share", "attention_scores",
           "overlay"]
