"""``synsigns``: the embedded, procedurally generated default dataset.

What it is: traffic-sign-like objects rendered on textured backgrounds. A class is one
combination of **shape** (5), **colour scheme** (border/fill, 5) and **glyph** (4): 100 classes, like
CIFAR-100, so it splits into 20 continual tasks of 5 or two disjoint halves of 50 for AnB
source/target transfer. Every image varies in position, scale, rotation,
colour jitter, lighting gradient, blur, sensor noise and background texture, and comes with a
pixel-exact object mask (the shape's silhouette), so attention can be *measured* on the object.

What it is not: natural images. Classes differ by a few crisp factors (shape, colour, glyph), so
features learned here are simpler than ImageNet features, and colour alone separates classes
into five groups. Effects shown on it are checked on real images (CIFAR-10 / GTSRB subsets)
before they are claimed.

Generation is vectorised in torch over chunks of images: each chunk is drawn from its own
generator seeded by ``(seed, chunk index)``, so image ``i`` is the same whatever ``n`` is, and
10,000 images at 32 px take a few seconds on one core (``benchmarks/bench_synsigns.py``).
The renderer is written here because no library renders parametric, masked sign images; it is
signed-distance rendering: each pixel is mapped into the sign's own frame and tested against
the shape's edges.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from itertools import product

import torch
import torch.nn.functional as F

from .base import ImageSet

SHAPES = ("circle", "triangle", "square", "diamond", "octagon")
# (border, fill, glyph) RGB in [0,1]
SCHEMES = {
    "red-white": ((0.80, 0.08, 0.10), (0.95, 0.95, 0.92), (0.10, 0.10, 0.12)),
    "blue-white": ((0.95, 0.95, 0.95), (0.10, 0.30, 0.75), (0.96, 0.96, 0.96)),
    "yellow-black": ((0.10, 0.10, 0.10), (0.95, 0.80, 0.10), (0.08, 0.08, 0.08)),
    "green-white": ((0.95, 0.95, 0.95), (0.10, 0.55, 0.25), (0.96, 0.96, 0.96)),
    "orange-blue": ((0.95, 0.50, 0.08), (0.15, 0.20, 0.55), (0.98, 0.60, 0.15)),
}
GLYPHS = ("bar", "cross", "dot", "arrow")
CLASSES = [f"{s}/{c}/{g}" for s, c, g in product(SHAPES, SCHEMES, GLYPHS)]
NUM_CLASSES = len(CLASSES)
CHUNK = 256  # images per chunk at 32 px; fewer at larger sizes (same pixels per chunk)
_SPLIT_SEEDS = {"train": 0, "val": 1, "test": 2}


def class_factors(label: int) -> tuple[str, str, str]:
    """``(shape, scheme, glyph)`` of a class label."""
    return tuple(CLASSES[label].split("/"))  # type: ignore[return-value]


def _polygon_sdf(u, v, sides: int, phase: float):
    """Distance-like field of a regular polygon of circumradius 1 (negative inside)."""
    k = torch.arange(sides, dtype=u.dtype)
    ang = phase + 2 * math.pi * k / sides
    # edge normals; apothem = cos(pi/n)
    d = u[..., None] * torch.cos(ang) + v[..., None] * torch.sin(ang)
    return d.amax(-1) / math.cos(math.pi / sides) - 1.0


def _shape_sdf(shape: str, u, v):
    if shape == "circle":
        return torch.sqrt(u * u + v * v) - 1.0
    if shape == "triangle":  # apex up (image v grows downwards)
        return _polygon_sdf(u, v, 3, math.pi / 2)
    if shape == "square":
        return _polygon_sdf(u, v, 4, math.pi / 4) * 0.85
    if shape == "diamond":
        return _polygon_sdf(u, v, 4, 0.0)
    if shape == "octagon":
        return _polygon_sdf(u, v, 8, math.pi / 8)
    raise ValueError(shape)


def _glyph(glyph: str, u, v):
    """Soft coverage in [0,1] of the glyph, drawn in the sign frame (sign radius 1)."""
    def box(cu, cv, hu, hv):
        return ((u - cu).abs() < hu) & ((v - cv).abs() < hv)

    if glyph == "bar":
        m = box(0, 0, 0.42, 0.11)
    elif glyph == "cross":
        m = box(0, 0, 0.42, 0.1) | box(0, 0, 0.1, 0.42)
    elif glyph == "dot":
        m = (u * u + v * v) < 0.2 ** 2
    elif glyph == "arrow":  # shaft plus head pointing right
        m = box(-0.12, 0, 0.26, 0.08) | ((u > 0.08) & (u < 0.42) & (v.abs() < (0.42 - u) * 0.9))
    else:
        raise ValueError(glyph)
    return m.to(u.dtype)


def _smooth_noise(g, b, c, size, cells):
    z = torch.rand(b, c, cells, cells, generator=g)
    return F.interpolate(z, size=(size, size), mode="bicubic", align_corners=False)


def _background(g, b, size):
    """Textured backgrounds: smooth colour field + mid-frequency texture + stripes or blobs."""
    base = torch.rand(b, 3, 1, 1, generator=g) * 0.7 + 0.15
    low = _smooth_noise(g, b, 3, size, 3) - 0.5
    mid = _smooth_noise(g, b, 1, size, 8) - 0.5
    bg = base + 0.45 * low + 0.35 * mid * torch.rand(b, 1, 1, 1, generator=g)
    # stripes at a random angle and frequency for a share of images (fences, buildings)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    th = torch.rand(b, 1, 1, generator=g) * math.pi
    freq = 3 + torch.rand(b, 1, 1, generator=g) * 6
    stripes = torch.sin((xs * torch.cos(th) + ys * torch.sin(th)) * freq * math.pi)
    on = (torch.rand(b, 1, 1, generator=g) < 0.4).float()
    bg = bg + (0.12 * stripes * on)[:, None]
    return bg


def _gaussian_blur(x, sigma):
    """Per-image separable Gaussian blur (``sigma`` in pixels, shape (B,)), as one grouped conv."""
    b, c, h, w = x.shape
    radius = max(1, int(math.ceil(2 * float(sigma.max()))))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def _render_chunk(g, labels, size, *, background=True, return_background=False):
    b = len(labels)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    # pose: radius as a fraction of the half-width, centre kept inside the frame
    r = 0.42 + 0.38 * torch.rand(b, generator=g)
    cx = (torch.rand(b, generator=g) * 2 - 1) * (0.95 - r)
    cy = (torch.rand(b, generator=g) * 2 - 1) * (0.95 - r)
    rot = (torch.rand(b, generator=g) * 2 - 1) * math.radians(20)
    squash = 1 + (torch.rand(b, generator=g) * 2 - 1) * 0.12  # mild perspective
    dx = (xs[None] - cx[:, None, None]) / r[:, None, None]
    dy = (ys[None] - cy[:, None, None]) / r[:, None, None]
    cr, sr = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    u = (cr * dx + sr * dy) * squash[:, None, None]
    v = -sr * dx + cr * dy

    sdf = torch.empty(b, size, size)
    glyph = torch.empty(b, size, size)
    border_c, fill_c, glyph_c = (torch.empty(b, 3) for _ in range(3))
    lab = torch.as_tensor(labels)
    for k, (shape, scheme, gname) in enumerate(map(class_factors, range(NUM_CLASSES))):
        idx = (lab == k).nonzero().flatten()
        if len(idx) == 0:
            continue
        sdf[idx] = _shape_sdf(shape, u[idx], v[idx])
        # glyph sits a little lower inside triangles so it stays inside the fill
        off = 0.18 if shape == "triangle" else 0.0
        glyph[idx] = _glyph(gname, u[idx], v[idx] - off)
        bc, fc, gc = SCHEMES[scheme]
        border_c[idx], fill_c[idx], glyph_c[idx] = torch.tensor(bc), torch.tensor(fc), torch.tensor(gc)

    # colour jitter per image (paint fading, white balance)
    jit = lambda c: (c * (0.8 + 0.35 * torch.rand(b, 1, generator=g))
                     + 0.08 * torch.randn(b, 3, generator=g)).clamp(0, 1)
    border_c, fill_c, glyph_c = jit(border_c), jit(fill_c), jit(glyph_c)

    px = 2.0 / (size * r)  # one pixel in sign units, for anti-aliasing
    aa = lambda d: torch.sigmoid(-d / px[:, None, None] * 1.7)
    inside = aa(sdf)
    fill_area = aa(sdf + 0.22)
    sign = border_c[:, :, None, None] * (1 - fill_area[:, None]) + fill_c[:, :, None, None] * fill_area[:, None]
    gl = (glyph * fill_area)[:, None]
    sign = sign * (1 - gl) + glyph_c[:, :, None, None] * gl

    bg = _background(g, b, size) if background else torch.full((b, 3, size, size), 0.5)
    img = bg * (1 - inside[:, None]) + sign * inside[:, None]
    # lighting: global gain plus a linear gradient across the frame
    gain = 0.65 + 0.6 * torch.rand(b, 1, 1, 1, generator=g)
    ga = torch.rand(b, generator=g) * 2 * math.pi
    grad = 1 + 0.25 * (torch.cos(ga)[:, None, None] * xs + torch.sin(ga)[:, None, None] * ys)[:, None]
    light = gain * grad
    img = img * light
    sigma = 0.15 + torch.rand(b, generator=g) * (0.9 * size / 32)
    img = _gaussian_blur(img, sigma)
    img = img + 0.03 * torch.randn(img.shape, generator=g)
    img = img.clamp(0, 1)
    mask = sdf < 0
    out = {"images": img, "masks": mask, "center": torch.stack([cx, cy], 1), "radius": r}
    if return_background:
        out["background"] = _gaussian_blur((bg * light), sigma).clamp(0, 1)
    return out


def _labels_for(seed: int, start: int, count: int, num_classes: int) -> torch.Tensor:
    """Balanced labels: every block of ``num_classes`` consecutive images holds each class once."""
    out = []
    first, last = start // num_classes, (start + count - 1) // num_classes
    for blk in range(first, last + 1):
        g = torch.Generator().manual_seed(hash_seed(seed, "labels", blk))
        out.append(torch.randperm(num_classes, generator=g))
    lab = torch.cat(out)
    off = start - first * num_classes
    return lab[off:off + count]


def hash_seed(*parts) -> int:
    """A 63-bit seed from any hashable parts, stable across runs and platforms."""
    import hashlib
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def _chunk(size: int) -> int:
    return max(4, int(CHUNK * (32 / size) ** 2))


# rendered sets by their arguments, newest last, up to _MEMO_BYTES (a notebook asks for the same
# splits many times: notebook 04's cached run spent 17 of its 38 s rendering them again)
_MEMO: OrderedDict = OrderedDict()
_MEMO_BYTES = 512 * 2**20


def _copy(ds: ImageSet) -> ImageSet:
    info = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in ds.info.items()}
    return ImageSet(ds.images.clone(), ds.labels.clone(), list(ds.classes), ds.masks.clone(), name=ds.name, info=info)


def _nbytes(ds: ImageSet) -> int:
    tensors = [ds.images, ds.labels, ds.masks, *(v for v in ds.info.values() if isinstance(v, torch.Tensor))]
    return sum(t.numel() * t.element_size() for t in tensors)


def generate(n: int, size: int = 32, seed: int = 0, *, classes=None, background: bool = True,
             return_background: bool = False, progress: bool = False) -> ImageSet:
    """Generate ``n`` images of ``size`` px (32 to 224) deterministically from ``seed``.

    ``classes``: optional list of class labels to draw from (labels keep their global ids; use
    :func:`lib.data.splits.subset_classes` to relabel). Image ``i`` depends only on ``seed``,
    ``i`` and ``size`` (and ``classes``), never on ``n``. Returns an :class:`ImageSet` with masks;
    ``info`` holds each image's sign centre and radius (in [-1,1] frame units), and the
    background-only images when ``return_background`` (for tests of mask alignment).

    A set asked for again in the same process is a copy of the one rendered first (the renderer
    is deterministic, and a copy keeps a caller's in-place edits out of the next caller's set);
    the memo keeps the most recent sets up to 512 MiB (none over 128 MiB).
    """
    key = (n, size, seed, None if classes is None else tuple(int(c) for c in classes), background, return_background)
    if key in _MEMO:
        _MEMO.move_to_end(key)
        return _copy(_MEMO[key])
    ds = _render(n, size, seed, classes=classes, background=background, return_background=return_background,
                 progress=progress)
    if _nbytes(ds) <= _MEMO_BYTES // 4:  # a large set (224 px) is rendered again rather than held twice
        _MEMO[key] = _copy(ds)
        while sum(_nbytes(d) for d in _MEMO.values()) > _MEMO_BYTES:
            _MEMO.popitem(last=False)
    return ds


def _render(n: int, size: int, seed: int, *, classes, background: bool, return_background: bool,
            progress: bool) -> ImageSet:
    if not 16 <= size <= 512:
        raise ValueError(f"size must be in 16..512 (32..224 is the supported range), got {size}")
    pool = torch.arange(NUM_CLASSES) if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    centers, radii, bgs = torch.empty(n, 2), torch.empty(n), []
    from tqdm.auto import tqdm

    with torch.no_grad():
        chunk = _chunk(size)
        for c0 in tqdm(range(0, n, chunk), desc="synsigns", disable=not progress, mininterval=1):
            cnt = min(chunk, n - c0)
            g = torch.Generator().manual_seed(hash_seed(seed, size, "chunk", c0 // chunk))
            labels = pool[_labels_for(seed, c0, cnt, len(pool))]
            # draw the whole chunk so that a partial last chunk matches a full one
            if cnt < chunk:
                labels = torch.cat([labels, pool[_labels_for(seed, c0 + cnt, chunk - cnt, len(pool))]])
            out = _render_chunk(g, labels, size, background=background, return_background=return_background)
            images[c0:c0 + cnt] = (out["images"][:cnt] * 255).round().to(torch.uint8)
            masks[c0:c0 + cnt] = out["masks"][:cnt]
            centers[c0:c0 + cnt], radii[c0:c0 + cnt] = out["center"][:cnt], out["radius"][:cnt]
            if return_background:
                bgs.append((out["background"][:cnt] * 255).round().to(torch.uint8))
    labels = pool[_labels_for(seed, 0, n, len(pool))] if n else torch.empty(0, dtype=torch.long)
    info = {"seed": seed, "center": centers, "radius": radii}
    if return_background:
        info["background"] = torch.cat(bgs) if bgs else images[:0]
    return ImageSet(images, labels, list(CLASSES), masks, name="synsigns", info=info)


def load_synsigns(split: str = "train", n: int | None = None, size: int = 32, seed: int = 0,
                  classes=None, progress: bool = False) -> ImageSet:
    """The embedded default split: ``train``/``val``/``test`` are disjoint draws (different seeds).

    ``n`` defaults to 50 per class for train and 20 per class for val/test.
    """
    if split not in _SPLIT_SEEDS:
        raise ValueError(f"synsigns split must be one of {list(_SPLIT_SEEDS)}, got {split!r}")
    k = NUM_CLASSES if classes is None else len(list(classes))
    n = n if n is not None else k * (50 if split == "train" else 20)
    return generate(n, size, seed=hash_seed(seed, split), classes=classes, progress=progress)


def mask_alignment(n: int = 64, size: int = 32, seed: int = 0, tolerance_px: int = 1, threshold: int = 40) -> float:
    """Share of the pixels that the sign changes (rendered image vs. the same image without the
    sign, more than ``threshold``/255 in some channel) that lie inside the object mask or within
    ``tolerance_px`` of it (the lens blur spreads edges by about a pixel). 1.0 = perfectly aligned."""
    ds = generate(n, size, seed=seed, return_background=True)
    changed = (ds.images.float() - ds.info["background"].float()).abs().amax(1) > threshold
    k = 2 * tolerance_px + 1
    near = F.max_pool2d(ds.masks.float()[:, None], k, 1, tolerance_px)[:, 0] > 0
    return (changed & near).sum().item() / max(1, changed.sum().item())
