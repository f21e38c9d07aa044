"""Transfer methods of notebook 02: block transfer (AnB) and six ways to fine-tune a pretrained base.

Every method takes a pretrained :class:`~lib.models.Classifier`, the target training data and
returns ``(model, history)``; all of them train through the one :func:`lib.train.fit` loop
(a ``loss`` override for the regularisers, ``on_epoch_end`` for per-epoch bookkeeping and SWA).
None of them modifies the pretrained model: they work on deep copies, and a teacher (the
pretrained model for DELTA and Renofeation) is a frozen deep copy in eval mode.

Block transfer (Yosinski, Clune, Bengio, Lipson 2014, "How transferable are features in deep
neural networks?", NeurIPS):

* :func:`anb` - ``AnB``: the first ``n`` blocks of base A copied and frozen, the rest of the
  network re-initialised and trained on task B; ``AnB+`` (``plus=True``): the same, every layer
  trained. ``BnB``/``BnB+`` are the controls with base B as the source (``anb(base_b, ...)``).
* :func:`anb_model` (one cached variant), :func:`anb_sweep` (the table over variants and ``n``),
  both through the store so re-runs are free.

**What a block is.** A block is one entry of the model's ordered ``model.blocks``
(:mod:`lib.models`); the normalisation layer (no weights) is not one and the head (pool + Linear)
is never copied - it is always new, as in Yosinski et al. where layers n+1..8 including the
classifier are re-initialised. Per architecture (``N`` = number of blocks, ``n`` runs 0..N):

=================  ===  =============================================================
small_cnn           4   ``conv1..conv4``: [max-pool] conv3x3-BN-ReLU units
resnet20/32/56     10/16/28  ``stem`` (conv-BN-ReLU) + one block per residual block
resnet18/50/101    9/17/34   ``stem`` (conv7x7-BN-ReLU-maxpool) + one per residual block
mobilenet_v2       19   ``f0..f18``: the entries of torchvision's ``features``
densenet121         8   ``stem``, ``denseblock1-3``, ``transition1-3``, ``denseblock4`` (+norm5)
=================  ===  =============================================================

``n = 0`` is training from scratch; ``n = N`` copies the whole body and trains only a new head
(AnB at ``n = N`` is a linear probe of base A).

**Frozen BatchNorm.** Copied blocks are frozen with :func:`lib.train.freeze`: their parameters
get ``requires_grad=False`` *and* the blocks stay in eval mode while ``fit`` trains the rest, so
their BatchNorm layers normalise with base A's running statistics and never update them - a
frozen block stays bit-identical (weights and running statistics). In ``AnB+`` the copied
blocks' BatchNorm layers train normally (batch statistics, running statistics updated).

Fine-tuning methods (the Renofeation study: Chin, Zhang, Marculescu 2021, "Renofeation: A simple
transfer learning method for improved adversarial robustness", CVPR Workshops; official code
github.com/enyac-group/Renofeation):

=================  =========================================================================
fine_tune          copy, new head, every layer trained
linear_probe       body frozen (eval-mode BN), only the new head trained
l2_sp              Li, Grandvalet, Davoine 2018 (ICML): ``alpha/2 ||w_body - w0||^2 +
                   beta/2 ||w_head||^2`` instead of weight decay
delta              Li et al. 2019 (ICLR) DELTA: attention-weighted feature-map distance to
                   the pretrained model at the stages + ``beta/2 ||w_head||^2``
retrain            random initialisation, same architecture
renofeation        re-initialised student + noisy feature distillation (1x1 adapters,
                   Dropout2d after each stage) + CE, then SWA and a BatchNorm recompute
=================  =========================================================================

Defaults are sized for the smoke profile (``small_cnn`` width 32 on 32-px synsigns, 50 classes x
50 images). Measured on one free core of the 2-core CPU: linear probe 12 s, L2-SP 28 s,
fine-tune 33 s, AnB 12-34 s (depending on ``n`` and ``plus``), re-train 51 s, DELTA 54 s (with
its attention estimate), Renofeation 95 s at 10 + 4 epochs (about 80 s at the 16 + 4 defaults on
two cores); two cores are faster. :data:`SMOKE_DEFAULTS` lists
them; :data:`PAPER_DEFAULTS` and each docstring give the seed papers' settings for the full
profile.
"""
from __future__ import annotations

import copy
import hashlib
import math
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

from .attacks import attack_success_rate, craft
from .data.base import ImageSet
from .defenses import first_n
from .models import Classifier, build
from .store import Store
from .train import Batches, evaluate, fit, freeze, pick_device, predict, random_translate

__all__ = [
    "ANB_VARIANTS", "PAPER_DEFAULTS", "SMOKE_DEFAULTS", "TRANSFER_METHODS", "NoisyStudent",
    "anb", "anb_model", "anb_sweep", "attack_table", "copy_for_target", "data_fingerprint", "delta",
    "delta_channel_attention", "delta_penalty", "fine_tune", "fresh_like", "l2_sp",
    "l2_sp_penalty", "linear_probe", "model_fingerprint", "param_distance", "renofeation",
    "retrain", "study", "first_images", "full_kw", "transfer_model", "headline_check", "headline_paragraph",
    "SEED_HEADLINE", "FULL_TARGETS", "FULL_ARCHS",
]

ANB_VARIANTS = ("AnB", "AnB+", "BnB", "BnB+")
VERSION = 1  # bump when the training code behind cached AnB models changes meaningfully

# Smoke-profile defaults (small_cnn width 32, 32 px, 2,500 training images, 2 CPU cores).
SMOKE_DEFAULTS = {
    "anb": {"epochs": 8, "lr": 0.1},
    "fine_tune": {"epochs": 8, "lr": 0.02},
    "linear_probe": {"epochs": 8, "lr": 0.1},
    "l2_sp": {"epochs": 8, "lr": 0.02, "alpha": 0.01, "beta": 0.01},
    "delta": {"epochs": 8, "lr": 0.01, "batch_size": 64, "alpha": 0.01, "beta": 0.01,
              "attention_epochs": 3, "attention_batches": 4},
    "retrain": {"epochs": 12, "lr": 0.1},
    "renofeation": {"epochs_distill": 16, "epochs_swa": 4, "lr": 0.2, "swa_lr": 0.1,
                    "feat_weight": 5.0, "dropout": 0.1, "beta": 0.01},
}

# What the seed papers / official code used (full profile: ImageNet ResNet-18 etc. at 224 px).
PAPER_DEFAULTS = {
    "anb": {"source": "Yosinski et al. 2014 (Caffe ImageNet AlexNet, n=1..7 of 8 layers)",
            "lr": 0.01, "note": "same schedule as the base networks; AnB+ fine-tunes all layers at that lr"},
    "fine_tune": {"source": "Renofeation train.py as run by scripts/DELTA.sh (pretrained start; "
                            "the repository has no separate fine-tuning script)", "iterations": 30000,
                  "batch_size": 64, "lr": "5e-3..1e-2", "schedule": "cosine", "momentum": "0..0.9",
                  "weight_decay": "0..1e-4", "beta_head_l2": 0.01},
    "linear_probe": {"source": "no script in the seed's repository; fine-tuning's budget assumed",
                     "iterations": 30000, "batch_size": 64, "lr": 0.01, "schedule": "cosine"},
    "l2_sp": {"source": "Li et al. 2018, as run by the DELTA authors' code (--reg_type l2_sp)",
              "alpha": 0.01, "beta": 0.01, "lr": 0.01, "batch_size": 64, "momentum": 0.9,
              "iterations": 9000, "schedule": "step: lr x0.1 after 2/3", "weight_decay": 0.0,
              "note": "the L2-SP paper cross-validates alpha and beta"},
    "delta": {"source": "Li et al. 2019, the authors' code (--reg_type att_fea_map); attention "
                        "estimate as in tllib's delta.py", "alpha": 0.01, "beta": 0.01, "lr": 0.01,
              "batch_size": 64, "momentum": 0.9, "iterations": 9000,
              "schedule": "step: lr x0.1 after 2/3", "weight_decay": 0.0, "attention_epochs": 10,
              "attention_batch_size": 32, "attention_batches": 10, "temperature": 5.0},
    "retrain": {"source": "Renofeation scripts/Re-training.sh", "iterations": 90000, "batch_size": 64,
                "lr": 0.01, "weight_decay": 5e-3, "momentum": 0.9, "schedule": "cosine",
                "beta_head_l2": 0.01},
    "renofeation": {"source": "Renofeation scripts/Renofeation.sh", "distill_iterations": 90000,
                    "swa_iterations": 30000, "batch_size": 64, "lr": 0.01, "swa_lr": 0.005,
                    "schedule": "cosine (stage 1), constant (stage 2)", "weight_decay": 5e-3,
                    "momentum": 0.9, "feat_weight": "5 (1 for CUB-200)", "dropout": 0.1,
                    "beta_head_l2": 0.01, "swa_freq_iterations": 500, "swa_start": 0},
}


# ============================================================================================
# helpers
# ============================================================================================
def num_classes_of(data) -> int:
    """Number of classes of a training set (``ImageSet.num_classes``, a dataset's ``classes``,
    or ``max(label) + 1`` of an ``(images, labels)`` pair)."""
    if isinstance(data, ImageSet):
        return data.num_classes
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], torch.Tensor):
        return int(data[1].max()) + 1
    for attr in ("num_classes", "classes"):
        v = getattr(data, attr, None)
        if isinstance(v, int):
            return v
        if v is not None:
            return len(v)
    raise TypeError(f"cannot tell the number of classes of a {type(data).__name__}")


def _augment(train, translate, fit_kw: dict) -> dict:
    """``fit_kw`` with the default augmentation: random shifts of ``translate`` px (the bases'
    recipe) for in-memory tensor data; none for file-backed datasets (their transforms augment).
    An ``augment`` in ``fit_kw`` always wins."""
    kw = dict(fit_kw)
    if "augment" not in kw:
        if translate == "auto":
            translate = 3 if isinstance(train, (ImageSet, tuple, list)) else None
        kw["augment"] = random_translate(translate) if translate else None
    return kw


def _derived_seed(seed: int, purpose: str) -> int:
    """A seed for ``purpose`` derived from ``seed`` (so that re-initialising with ``seed=0`` does
    not reproduce a base that was itself built right after ``torch.manual_seed(0)``)."""
    digest = hashlib.sha256(f"lib.transfer:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class _Seeded:
    """Seeds torch's CPU RNG with a seed derived from ``(seed, purpose)`` and restores the global
    RNG state afterwards."""

    def __init__(self, seed: int, purpose: str = "init"):
        self.seed = _derived_seed(seed, purpose)

    def __enter__(self):
        self._ctx = torch.random.fork_rng(devices=[])
        self._ctx.__enter__()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _small_cnn_kw(model: Classifier) -> dict:
    b = model.blocks
    drop = model.head.dropout
    return {"width": b["conv1"].conv.out_channels,
            "pools": sum(hasattr(blk, "pool") for blk in b.values()),
            "dropout": drop.p if isinstance(drop, nn.Dropout) else 0.0,
            "in_channels": b["conv1"].conv.in_channels}


def fresh_like(template: Classifier, num_classes: int | None = None, seed: int = 0) -> Classifier:
    """A randomly initialised model of ``template``'s architecture (same builder, same width,
    same ``Normalize`` statistics) with ``num_classes`` outputs, on ``template``'s device.

    The builder's own initialisation is used (``lib.models.build``), seeded from ``seed`` (a
    derived seed, so ``seed=0`` does not replay ``torch.manual_seed(0)``) without disturbing the
    global RNG. Architectures the builder cannot reproduce (a shape
    mismatch) fall back to a deep copy with every module's ``reset_parameters()``.
    """
    num_classes = template.num_classes if num_classes is None else num_classes
    mean = template.normalize.mean.flatten().tolist()
    std = template.normalize.std.flatten().tolist()
    device = next(template.parameters()).device
    model = None
    with _Seeded(seed, "fresh_like"):
        try:
            kw = _small_cnn_kw(template) if template.arch == "small_cnn" else {}
            model = build(template.arch, num_classes, mean=mean, std=std, **kw)
        except (ValueError, TypeError, KeyError, AttributeError):
            model = None
        ref = {k: v.shape for k, v in template.state_dict().items() if not k.startswith("head.fc.")}
        if model is None or {k: v.shape for k, v in model.state_dict().items()
                             if not k.startswith("head.fc.")} != ref:
            model = copy.deepcopy(template)
            for m in model.modules():
                if m is not model and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.reset_running_stats()
            model.reset_head(num_classes)
    freeze(model, False)
    return model.to(device)


def copy_for_target(pretrained: Classifier, num_classes: int, seed: int = 0) -> Classifier:
    """A deep copy of ``pretrained`` (unfrozen) with a fresh, seeded head of ``num_classes``."""
    model = copy.deepcopy(pretrained)
    freeze(model, False)
    with _Seeded(seed, "head"):
        model.reset_head(num_classes)
    return model


def _teacher(pretrained: Classifier, device) -> Classifier:
    """A frozen eval-mode copy of ``pretrained`` on ``device`` (no grads, BN statistics fixed)."""
    t = copy.deepcopy(pretrained).to(device)
    freeze(t, True)
    return t.eval()


def _stage_outputs(model: Classifier, x: torch.Tensor, stages: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the blocks named ``stages``; stops after the last one (no head)."""
    wanted = set(stages)
    out = {}
    h = model.normalize(x)
    for name, block in model.blocks.items():
        h = block(h)
        if name in wanted:
            out[name] = h
            if len(out) == len(wanted):
                break
    return out


def _head_params(model: Classifier) -> list[nn.Parameter]:
    return list(model.head.parameters())


def _body_named_params(model: Classifier) -> dict[str, nn.Parameter]:
    return {k: p for k, p in model.named_parameters() if not k.startswith("head.")}


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's state dict: names, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(data) -> str:
    """SHA-256 (16 hex digits) of a training set's content: images and labels for an
    ``ImageSet`` or an ``(images, labels)`` pair; for file-backed datasets (not hashed image by
    image) the type, ``name``/``root`` and length."""
    h = hashlib.sha256()
    if isinstance(data, ImageSet):
        data = (data.images, data.labels)
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        for t in data:
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:
        desc = f"{type(data).__module__}.{type(data).__name__}|{getattr(data, 'name', '')}|" \
               f"{getattr(data, 'root', '')}|{len(data)}"
        h.update(desc.encode())
    return h.hexdigest()[:16]


def param_distance(model: Classifier, reference: Classifier, body_only: bool = True) -> float:
    """Euclidean distance ``||w - w_ref||`` over the shared parameters (the body by default)."""
    ref = dict(reference.named_parameters())
    tot = 0.0
    for k, p in model.named_parameters():
        if (body_only and k.startswith("head.")) or k not in ref or ref[k].shape != p.shape:
            continue
        tot += float((p.detach().float() - ref[k].detach().to(p.device).float()).pow(2).sum())
    return math.sqrt(tot)


class _EpochLog:
    """Per-epoch means of quantities a ``loss`` closure reports batch by batch (kept as tensors
    until the epoch ends: no device syncs per batch), merged into ``fit``'s history after."""

    def __init__(self):
        self.rows: list[dict] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, **values):
        for k, v in values.items():
            v = v.detach().float() if isinstance(v, torch.Tensor) else torch.tensor(float(v))
            self._sums[k] = self._sums[k] + v if k in self._sums else v
            self._counts[k] = self._counts.get(k, 0) + 1

    def close(self, **extra):
        row = {k: float(s) / self._counts[k] for k, s in self._sums.items()}
        row.update(extra)
        self.rows.append(row)
        self._sums, self._counts = {}, {}

    def merge(self, hist: pd.DataFrame) -> pd.DataFrame:
        hist = hist.copy()
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        for k in keys:
            hist[k] = [r.get(k, float("nan")) for r in self.rows[:len(hist)]]
        return hist


def _chain(log: _EpochLog, user: Callable | None, extra: Callable[[nn.Module], dict] | None = None):
    def on_epoch_end(epoch, row, model):
        log.close(**(extra(model) if extra else {}))
        return user(epoch, row, model) if user is not None else None
    return on_epoch_end


def _sq(params) -> torch.Tensor:
    return sum(p.float().pow(2).sum() for p in params)


# ============================================================================================
# Block transfer (AnB)
# ============================================================================================
def anb(base_a: Classifier, base_b_template_or_num_classes: Classifier | int, n: int, train, *,
        plus: bool = False, epochs: int = SMOKE_DEFAULTS["anb"]["epochs"],
        lr: float = SMOKE_DEFAULTS["anb"]["lr"], seed: int = 0, translate="auto",
        **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Yosinski et al. (2014) block transfer: copy ``blocks[:n]`` of ``base_a`` into a fresh model
    of the same architecture, re-initialise the rest (and always the head), train on ``train``.

    ``base_b_template_or_num_classes``: the target base (its class count is used; for BnB pass
    base B as both source and template) or the number of target classes; it must agree with
    the classes of ``train``. ``n`` in ``0..len(base_a.blocks)`` (see the module docstring for
    what a block is per architecture). ``plus=False`` (AnB): the copied blocks are frozen with
    :func:`lib.train.freeze` - no gradients, eval-mode BatchNorm, so they stay bit-identical
    including running statistics; the returned model keeps them frozen (``freeze(model, False)``
    to undo). ``plus=True`` (AnB+): every layer trains.

    Yosinski et al. trained AnB/AnB+ with the base networks' own schedule (ImageNet AlexNet,
    lr 0.01); the smoke defaults are the bases' recipe shortened: ``epochs=8``, ``lr=0.1``
    (one-cycle), batch 128, weight decay 5e-4, random shifts of 3 px. ``seed`` seeds the
    re-initialisation and ``fit``. Extra ``fit_kw`` go to :func:`lib.train.fit`.
    Returns ``(model, history)``.
    """
    model = _anb_build(base_a, base_b_template_or_num_classes, n, train, plus=plus, seed=seed)
    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", f"{'AnB+' if plus else 'AnB'} n={n}")
    hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)
    return model, hist


def _anb_build(source: Classifier, target, n: int, train, *, plus: bool, seed: int) -> Classifier:
    k = target if isinstance(target, int) else target.num_classes
    if isinstance(target, Classifier) and target.arch != source.arch:
        raise ValueError(f"source is {source.arch} but the target template is {target.arch}")
    if train is not None:
        kt = num_classes_of(train)
        if kt != k:
            raise ValueError(f"the target has {k} classes but the training data has {kt}")
    names = source.block_names
    if not 0 <= n <= len(names):
        raise ValueError(f"n must be in 0..{len(names)} (blocks of {source.arch}: {names}), got {n}")
    model = fresh_like(source, k, seed=seed)
    for name in names[:n]:
        model.blocks[name].load_state_dict(source.blocks[name].state_dict())
        if not plus:
            freeze(model.blocks[name])
    model.normalize.load_state_dict(source.normalize.state_dict())
    return model


def _variant(variant: str) -> tuple[str, bool]:
    if variant not in ANB_VARIANTS:
        raise ValueError(f"variant must be one of {ANB_VARIANTS}, got {variant!r}")
    return variant[0], variant.endswith("+")


_UNKEYED = {"progress", "desc", "device", "val"}  # fit options that do not change the weights


def _fit_config(fit_kw: dict, cache_tag: str | None) -> dict:
    cfg = {}
    for k, v in sorted(fit_kw.items()):
        if k in _UNKEYED:
            continue
        if callable(v):
            if cache_tag is None:
                raise TypeError(
                    f"{k}= is a function, which cannot be part of a cache key; pass cache_tag='...' "
                    f"naming it (and change the tag whenever the function changes)")
            v = f"callable:{cache_tag}"
        cfg[k] = v
    return cfg


def anb_model(base_a: Classifier, base_b: Classifier, train, variant: str, n: int, *,
              epochs: int = SMOKE_DEFAULTS["anb"]["epochs"], lr: float = SMOKE_DEFAULTS["anb"]["lr"],
              seed: int = 0, translate="auto", store: Store | None = None, progress: bool = True,
              cache_tag: str | None = None, retrain: bool = False,
              **fit_kw) -> tuple[Classifier, dict]:
    """One AnB variant (``"AnB"``, ``"AnB+"``, ``"BnB"``, ``"BnB+"``) at ``n``, trained once and
    then loaded from the store (``Store().model``). Returns ``(model, meta)``; ``meta`` holds the
    per-epoch ``history`` (records), ``cached`` and the store ``key``.

    The key hashes the variant, ``n``, the source base's weights (:func:`model_fingerprint`),
    the target class count, the training data (:func:`data_fingerprint`), ``epochs``, ``lr``,
    ``seed``, ``translate`` and the other fit options (functions only with a ``cache_tag``). At
    ``n = 0`` nothing is copied, so all four variants share one model (trained from scratch).
    """
    src_letter, plus = _variant(variant)
    source = base_a if src_letter == "A" else base_b
    store = store or Store()
    k = base_b.num_classes
    cfg = {"version": VERSION, "method": "anb", "n": n, "plus": plus if n else None,
           "source": model_fingerprint(source) if n else None, "arch": source.arch,
           "num_classes": k, "train": data_fingerprint(train), "epochs": epochs, "lr": lr,
           "seed": seed, "translate": translate, "fit": _fit_config(fit_kw, cache_tag)}
    if n == 0:
        # the architecture must still be pinned when no weights are copied
        cfg["template"] = {name: tuple(v.shape) for name, v in source.state_dict().items()
                           if not name.startswith("head.fc.")}
    name = "anb_scratch" if n == 0 else f"anb_{variant.replace('+', '_plus')}"

    def build_fn():
        return _anb_build(source, k, n, train, plus=plus, seed=seed)

    def train_fn(model):
        kw = _augment(train, translate, fit_kw)
        kw.setdefault("desc", f"{variant} n={n}")
        hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, progress=progress, **kw)
        return {"variant": variant, "n": n, "history": hist.to_dict("records")}

    model, meta = store.model(name, cfg, build_fn, train_fn, retrain=retrain)  # frozen by build_fn
    meta["key"] = store.key(name, cfg)
    return model, meta


def anb_sweep(base_a: Classifier, base_b: Classifier, train, test, *, ns: Sequence[int] | None = None,
              epochs: int = SMOKE_DEFAULTS["anb"]["epochs"], variants: Sequence[str] = ANB_VARIANTS,
              progress: bool = True, store: Store | None = None,
              transfer_attacks: Mapping[str, Callable] | None = None, attack_n: int | None = None,
              **fit_kw) -> pd.DataFrame:
    """The AnB table: one row per ``variant`` x ``n`` (``ns`` default ``1..N``, N = number of
    blocks) with the clean ``test_acc`` of each model on ``test``.

    Columns: ``variant``, ``n``, ``source`` (A/B), ``frozen`` (copied blocks frozen), ``block``
    (the last copied block), ``test_acc``, ``train_acc`` and ``train_loss`` (last epoch),
    ``epochs``, ``train_seconds``, ``model_key`` (the store key of the model; its meta holds the
    history: ``anb_model(...)`` with the same arguments returns model and history from the store)
    and ``cached`` (True when the row came from the store without any training).
    Every row is itself a store result keyed by the model's config plus the test data, so a
    second call with the same arguments trains and evaluates nothing. ``fit_kw`` as in
    :func:`anb_model` (``lr``, ``seed``, ``translate``, ``cache_tag``, fit options).

    ``transfer_attacks`` (name -> ``attack(base_a, x, y)``): adversarial test sets crafted *once*
    on base A over the first ``attack_n`` test images (all by default) and evaluated on every
    transferred model, adding a column ``<name>_acc`` per attack (accuracy on the crafted images)
    and ``attack_n``. Base A's head is over the source classes, so an attack that needs labels
    should take base A's own predictions (:func:`lib.attacks.with_own_labels`).
    """
    store = store or Store()
    names = base_a.block_names
    if base_b.block_names != names or base_b.arch != base_a.arch:
        raise ValueError("base A and base B must have the same architecture")
    ns = list(range(1, len(names) + 1)) if ns is None else [int(n) for n in ns]
    prints = {"base_a": model_fingerprint(base_a), "base_b": model_fingerprint(base_b),
              "train": data_fingerprint(train), "test": data_fingerprint(test)}
    fit_cfg = _fit_config({k: v for k, v in fit_kw.items() if k != "cache_tag"}, fit_kw.get("cache_tag"))
    crafted = {}
    for name, attack in (transfer_attacks or {}).items():
        _, x_adv, y = craft(base_a, first_n(test, attack_n), attack, progress=progress)
        crafted[name] = (x_adv, y)
    rows = []
    for variant in variants:
        src_letter, plus = _variant(variant)
        for n in ns:
            trained = {"flag": False, "model": None}

            def compute(variant=variant, n=n):
                model, meta = anb_model(base_a, base_b, train, variant, n, epochs=epochs, store=store,
                                        progress=progress, **fit_kw)
                trained["flag"], trained["model"] = not meta.get("cached", False), model
                last = meta["history"][-1] if meta.get("history") else {}
                return {"model_key": meta["key"], "test_acc": evaluate(model, test)["acc"],
                        "train_acc": last.get("train_acc"), "train_loss": last.get("train_loss"),
                        "train_seconds": meta.get("train_seconds")}

            cfg = {"version": VERSION, "method": "anb_eval", "variant": variant, "n": n, **prints,
                   "epochs": epochs, "fit": fit_cfg}
            res = store.result("anb_eval", cfg, compute)
            row = {"variant": variant, "n": n, "source": src_letter, "frozen": not plus and n > 0,
                   "block": names[n - 1] if n else "", **res, "epochs": epochs, "cached": not trained["flag"]}
            if crafted:
                model = trained["model"] or anb_model(base_a, base_b, train, variant, n, epochs=epochs,
                                                      store=store, progress=progress, **fit_kw)[0]
                for name, (x_adv, y) in crafted.items():
                    row[f"{name}_acc"] = _accuracy_and_pred(model, x_adv, y)[0]
                row["attack_n"] = len(y)
            rows.append(row)
    cols = ["variant", "n", "source", "frozen", "block", "test_acc", "train_acc", "train_loss",
            "epochs", "train_seconds", "model_key", "cached"]
    cols += [f"{name}_acc" for name in crafted] + (["attack_n"] if crafted else [])
    return pd.DataFrame(rows)[cols]


# ============================================================================================
# Fine-tuning methods
# ============================================================================================
def fine_tune(pretrained: Classifier, train, *, epochs: int = SMOKE_DEFAULTS["fine_tune"]["epochs"],
              lr: float = SMOKE_DEFAULTS["fine_tune"]["lr"], seed: int = 0, translate="auto",
              **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Standard fine-tuning: a copy of ``pretrained`` with a new head, every layer trained.

    Smoke defaults: ``epochs=8``, ``lr=0.02`` (one-cycle SGD, momentum 0.9, weight decay 5e-4,
    batch 128, 3-px shifts). Full profile: Renofeation's training script from a pretrained start
    (as run for its DELTA baseline, scripts/DELTA.sh; the repository has no separate fine-tuning
    script): 30,000 iterations at batch 64, SGD lr 5e-3..1e-2 with cosine decay, weight decay
    0..1e-4, plus a ``beta/2 ||w||^2`` (beta=0.01) penalty on the last layer (not added here).
    """
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "fine-tune")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)


def linear_probe(pretrained: Classifier, train, *, epochs: int = SMOKE_DEFAULTS["linear_probe"]["epochs"],
                 lr: float = SMOKE_DEFAULTS["linear_probe"]["lr"], seed: int = 0, translate="auto",
                 **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Linear probe: the body of ``pretrained`` frozen (:func:`lib.train.freeze`: no gradients,
    eval-mode BatchNorm, bit-identical afterwards), only a new head trained.

    Smoke defaults: ``epochs=8``, ``lr=0.1``. Full profile: the seed's repository has no
    linear-probe script; fine-tuning's budget (30,000 iterations at batch 64, cosine decay) is a
    reasonable start. The returned model keeps its body frozen (``freeze(model, False)`` to undo).
    """
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    freeze(model.blocks)
    freeze(model.normalize)
    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "linear probe")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)


def l2_sp_penalty(model: Classifier, reference: Mapping[str, torch.Tensor], alpha: float,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The L2-SP penalty (Li, Grandvalet, Davoine 2018):
    ``alpha/2 * sum_body ||w - w0||^2 + beta/2 * sum_head ||w||^2``.

    ``reference``: parameter name -> pretrained value for the body (every parameter outside
    ``head``, BatchNorm scales and shifts included); the head (new, no pretrained value) gets
    plain L2. Returns ``(penalty, body_sq, head_sq)`` with the two unscaled squared norms.
    """
    body_sq = sum((p.float() - reference[k].float()).pow(2).sum()
                  for k, p in _body_named_params(model).items() if k in reference)
    head_sq = _sq(_head_params(model))
    body_sq = body_sq if isinstance(body_sq, torch.Tensor) else torch.zeros((), device=head_sq.device)
    return 0.5 * alpha * body_sq + 0.5 * beta * head_sq, body_sq, head_sq


def l2_sp(pretrained: Classifier, train, *, alpha: float = SMOKE_DEFAULTS["l2_sp"]["alpha"],
          beta: float = SMOKE_DEFAULTS["l2_sp"]["beta"], epochs: int = SMOKE_DEFAULTS["l2_sp"]["epochs"],
          lr: float = SMOKE_DEFAULTS["l2_sp"]["lr"], seed: int = 0, translate="auto",
          **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """L2-SP fine-tuning (Li, Grandvalet, Davoine 2018, "Explicit inductive bias for transfer
    learning with convolutional networks", ICML): cross-entropy plus
    ``alpha/2 ||w_body - w0_body||^2 + beta/2 ||w_head||^2`` (:func:`l2_sp_penalty`), the
    penalty replacing weight decay (SGD ``weight_decay=0`` for every parameter; passing a
    non-zero ``weight_decay`` is an error).

    Defaults ``alpha = beta = 0.01`` (as in the DELTA authors' code, which runs L2-SP with SGD lr
    0.01, batch 64, 9,000 iterations, lr x0.1 after two thirds; the L2-SP paper cross-validates
    both); smoke ``epochs=8``, ``lr=0.02``. The history gains ``l2sp_body`` (epoch
    mean of ``||w_body - w0||^2``), ``head_sq`` and ``dist_to_pretrained`` (``||w_body - w0||`` at
    the end of each epoch).
    """
    if fit_kw.get("weight_decay", 0.0):
        raise ValueError("l2_sp replaces weight decay by its own penalty; leave weight_decay at 0")
    fit_kw["weight_decay"] = 0.0
    model = copy_for_target(pretrained, num_classes_of(train), seed)
    device = pick_device(fit_kw.get("device"))
    model.to(device)
    reference = {k: p.detach().clone() for k, p in _body_named_params(model).items()}
    log = _EpochLog()

    def loss(m, x, y):
        logits = m(x)
        ce = F.cross_entropy(logits, y)
        reg, body_sq, head_sq = l2_sp_penalty(m, reference, alpha, beta)
        log.add(l2sp_body=body_sq, head_sq=head_sq)
        return ce + reg, logits

    def extra(m):
        return {"dist_to_pretrained": math.sqrt(sum(
            float((p.detach().float() - reference[k].float()).pow(2).sum())
            for k, p in _body_named_params(m).items()))}

    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "L2-SP")
    kw["on_epoch_end"] = _chain(log, kw.get("on_epoch_end"), extra)
    hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, loss=loss, **kw)
    return model, log.merge(hist)


# --------------------------------------------------------------------------------------- DELTA
@torch.no_grad()
def _channel_loss_increase(model: Classifier, x, y, stage: str, budget: int = 1 << 24) -> torch.Tensor:
    """Per channel ``c`` of ``stage``'s output: the CE increase of ``model`` when channel ``c`` is
    zeroed (the channel's filter removed), for one batch; channels are ablated in chunks."""
    names = model.block_names
    i = names.index(stage)
    h = model.normalize(x)
    for name in names[:i + 1]:
        h = model.blocks[name](h)

    def rest(f):
        for name in names[i + 1:]:
            f = model.blocks[name](f)
        return model.head(f)

    base = F.cross_entropy(rest(h).float(), y)
    b, c = h.shape[:2]
    per = max(1, budget // max(1, h.numel()))
    out = torch.empty(c, device=h.device)
    for c0 in range(0, c, per):
        cs = torch.arange(c0, min(c, c0 + per), device=h.device)
        k = len(cs)
        hk = h.unsqueeze(0).repeat(k, 1, 1, 1, 1)
        hk[torch.arange(k, device=h.device), :, cs] = 0
        logits = rest(hk.flatten(0, 1)).float()
        losses = F.cross_entropy(logits, y.repeat(k), reduction="none").view(k, b).mean(1)
        out[cs] = losses - base
    return out


def delta_channel_attention(pretrained: Classifier, train, *, stages: Sequence[str] | None = None,
                            epochs: int = SMOKE_DEFAULTS["delta"]["attention_epochs"], lr: float = 0.1,
                            batches: int = SMOKE_DEFAULTS["delta"]["attention_batches"],
                            attention_batch_size: int = 32, temperature: float = 5.0, seed: int = 0,
                            progress: bool = False, **fit_kw) -> dict[str, torch.Tensor]:
    """DELTA's supervised channel attention (Li et al. 2019; procedure of tllib's implementation):

    1. train a new head on the frozen pretrained body (:func:`linear_probe`, ``epochs``);
    2. for ``batches`` training batches of ``attention_batch_size``, measure for every channel
       ``c`` of every stage the loss increase when ``c`` is removed, averaged over batches;
    3. per stage, standardise the increases (z-score) and take ``softmax(z / temperature)``.

    Returns ``{stage: weights}`` (CPU tensors summing to 1 over the stage's channels). DELTA
    removes a channel by zeroing its conv filter; here the stage's output channel is zeroed,
    which is the same for a stage ending in that conv and the natural analogue for stages ending
    in BatchNorm/ReLU, a residual addition or a concatenation.
    tllib's defaults: 10 head epochs, batch 32, 10 batches, temperature 5 (the authors' training
    script applies the same z-score and ``softmax(./5)`` to precomputed weights). Cost: one
    forward of the rest of the network per channel and batch (channels are ablated in chunks of
    about 16M activations).
    """
    stages = list(pretrained.stages if stages is None else stages)
    kw = {"desc": "DELTA attention head", **fit_kw}
    probe, _ = linear_probe(pretrained, train, epochs=epochs, lr=lr, seed=seed, progress=progress, **kw)
    probe.eval()
    device = next(probe.parameters()).device
    loader = Batches(train, attention_batch_size, device, shuffle=True, seed=seed + 1)
    sums = {s: None for s in stages}
    seen = 0
    for x, y in loader:
        if seen >= batches:
            break
        for s in stages:
            d = _channel_loss_increase(probe, x, y, s)
            sums[s] = d if sums[s] is None else sums[s] + d
        seen += 1
    out = {}
    for s in stages:
        d = sums[s] / max(seen, 1)
        sd = d.std()
        z = (d - d.mean()) / sd if float(sd) > 0 else torch.zeros_like(d)
        out[s] = torch.softmax(z / temperature, 0).cpu()
    return out


def delta_penalty(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor],
                  attention: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """DELTA's feature-map term (the authors' code): over stages ``j``, images ``i`` and channels
    ``c`` of ``C`` (``H x W`` maps), ``1/2 * sum_{j,i,c} C * a_jc * ||FM_jc(x_i) - FM0_jc(x_i)||^2 / (H W)``.

    ``attention[j]``: channel weights summing to 1 (:func:`delta_channel_attention`); ``None``
    means uniform ``1/C``, i.e. the unweighted feature-map L2 (per-pixel mean over space). The
    sum runs over the batch, as in the original code (so the effective strength grows with it).
    """
    total = 0.0
    for s, fs in student.items():
        ft = teacher[s].detach()
        b, c, hgt, wid = fs.shape
        dist = (fs.float() - ft.float()).pow(2).flatten(2).sum(2)  # (B, C)
        if attention is None:
            w = torch.full((c,), 1.0 / c, device=fs.device)
        else:
            w = attention[s].to(fs.device)
        total = total + 0.5 * (c * w * dist / (hgt * wid)).sum()
    return total


def delta(pretrained: Classifier, train, *, alpha: float = SMOKE_DEFAULTS["delta"]["alpha"],
          beta: float = SMOKE_DEFAULTS["delta"]["beta"], epochs: int = SMOKE_DEFAULTS["delta"]["epochs"],
          lr: float = SMOKE_DEFAULTS["delta"]["lr"], attention: bool | Mapping[str, torch.Tensor] = True,
          stages: Sequence[str] | None = None,
          attention_epochs: int = SMOKE_DEFAULTS["delta"]["attention_epochs"],
          attention_batches: int = SMOKE_DEFAULTS["delta"]["attention_batches"],
          teacher_bn: str = "eval", seed: int = 0, translate="auto",
          **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """DELTA (Li, Xiong, Wang, Huan, Liu, Xu, Chen, Liu, Dou 2019, "DELTA: DEep Learning Transfer
    using feature map with attention for convolutional networks", ICLR): fine-tuning with
    ``CE + alpha * Omega'(FM) + beta/2 ||w_head||^2``, where ``Omega'`` (:func:`delta_penalty`) is
    the attention-weighted squared distance between the student's and the frozen pretrained
    model's feature maps at ``stages`` (default the model's stages: the last block of each
    resolution), summed over the batch as in the authors' code. The student runs in train mode,
    the teacher (a frozen copy, no grads) in eval mode as in the authors' code
    (``teacher_bn="eval"``); ``teacher_bn="batch"`` lets the teacher's BatchNorm layers use batch
    statistics instead, so that the distance is exactly 0 at the first step (the authors hook the
    last conv of each stage, *before* its BatchNorm, where the mode matters less; our stages are
    block outputs, after BatchNorm).

    ``attention=True``: the paper's supervised channel attention (:func:`delta_channel_attention`:
    a head trained on the frozen body for ``attention_epochs``, channel-removal loss increases over
    ``attention_batches`` batches of 32, ``softmax(z/5)``); ``False``: uniform weights, i.e. the
    unweighted feature-map L2; or a precomputed ``{stage: weights}``.

    Paper / authors' code defaults: ``alpha = beta = 0.01``, SGD lr 0.01, momentum 0.9, batch 64,
    9,000 iterations with the lr divided by 10 after two thirds, no weight decay; attention
    (tllib's implementation): 10 head epochs, 10 batches of 32, temperature 5. Smoke defaults:
    ``alpha = beta = 0.01``, ``epochs=8``, ``lr=0.01``, ``batch_size=64`` (the penalty is a sum
    over the batch: at batch 128 and lr 0.02 it diverged in the first epoch on the smoke
    setting), 3 attention epochs, 4 attention batches; weight decay stays at ``fit``'s default
    5e-4 unless given (pass ``weight_decay=0`` to match the paper). The history gains
    ``feat_reg`` (epoch mean of ``Omega'``) and ``head_sq``; the model's ``delta_attention``
    attribute holds the weights used.
    """
    stages = list(pretrained.stages if stages is None else stages)
    device = pick_device(fit_kw.get("device"))
    if attention is True and alpha == 0:
        att = None  # no feature term: skip the (costly) attention estimate
    elif attention is True:
        att = delta_channel_attention(
            pretrained, train, stages=stages, epochs=attention_epochs, batches=attention_batches,
            seed=seed, **{k: v for k, v in fit_kw.items() if k in ("device", "amp", "batch_size")})
    elif attention is False or attention is None:
        att = None
    else:
        att = {s: torch.as_tensor(attention[s]).float() for s in stages}
    model = copy_for_target(pretrained, num_classes_of(train), seed).to(device)
    teacher = _teacher(pretrained, device)
    if teacher_bn == "batch":
        for m in teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
    elif teacher_bn != "eval":
        raise ValueError(f"teacher_bn must be 'batch' or 'eval', got {teacher_bn!r}")
    att_dev = None if att is None else {s: w.to(device) for s, w in att.items()}
    log = _EpochLog()

    def loss(m, x, y):
        feats = m.features(x, stages)
        logits = feats["logits"]
        with torch.no_grad():
            t = _stage_outputs(teacher, x, stages)
        reg = delta_penalty({s: feats[s] for s in stages}, t, att_dev)
        head_sq = _sq(_head_params(m))
        log.add(feat_reg=reg, head_sq=head_sq)
        return F.cross_entropy(logits, y) + alpha * reg + 0.5 * beta * head_sq, logits

    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "DELTA")
    kw.setdefault("batch_size", SMOKE_DEFAULTS["delta"]["batch_size"])
    kw["on_epoch_end"] = _chain(log, kw.get("on_epoch_end"))
    hist = fit(model, train, epochs=epochs, lr=lr, seed=seed, loss=loss, **kw)
    model.delta_attention = att
    return model, log.merge(hist)


# ------------------------------------------------------------------------------------- retrain
def retrain(arch_or_template: Classifier | str, train, *, epochs: int = SMOKE_DEFAULTS["retrain"]["epochs"],
            lr: float = SMOKE_DEFAULTS["retrain"]["lr"], seed: int = 0, translate="auto",
            **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Re-training from random initialisation with the pretrained model's architecture (a
    :class:`Classifier` template: same builder, width and normalisation; or an arch name for
    :func:`lib.models.build`). Nothing is taken from the template's weights.

    Smoke defaults: the bases' recipe (``epochs=12``, ``lr=0.1``). Renofeation's re-training
    baseline: 90,000 iterations at batch 64, lr 0.01 cosine, weight decay 5e-3, momentum 0.9.
    """
    k = num_classes_of(train)
    if isinstance(arch_or_template, str):
        model = build(arch_or_template, k, seed=_derived_seed(seed, "fresh_like"))
    else:
        model = fresh_like(arch_or_template, k, seed=seed)
    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "re-train")
    return model, fit(model, train, epochs=epochs, lr=lr, seed=seed, **kw)


# --------------------------------------------------------------------------------- renofeation
class NoisyStudent(nn.Module):
    """A :class:`Classifier` with spatial dropout (``nn.Dropout2d(p)``) after each of ``stages`` and
    a trainable 1x1 conv adapter (no bias, student -> teacher channels) per stage, as in
    Renofeation's official code (``record_act_with_1x1`` / ``dim_matching``).

    ``forward(x)`` gives logits (dropout active in train mode only); :meth:`forward_features`
    also returns the stage outputs *before* dropout, passed through the adapters (what is
    matched to the teacher). Only ``model`` is kept after training.
    """

    def __init__(self, model: Classifier, stages: Sequence[str], p: float = 0.1,
                 teacher_channels: Mapping[str, int] | None = None,
                 student_channels: Mapping[str, int] | None = None):
        super().__init__()
        self.model = model
        self.stages = list(stages)
        self.dropout = nn.ModuleDict({s: nn.Dropout2d(p) for s in self.stages})
        self.adapters = nn.ModuleDict()
        if teacher_channels is not None:
            dev = next(model.parameters()).device
            for s in self.stages:
                self.adapters[s] = nn.Conv2d(student_channels[s], teacher_channels[s], 1, bias=False,
                                             device=dev)

    def forward_features(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        m = self.model
        feats = {}
        h = m.normalize(x)
        for name, block in m.blocks.items():
            h = block(h)
            if name in self.dropout:
                feats[name] = self.adapters[name](h) if name in self.adapters else h
                h = self.dropout[name](h)
        return feats, m.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[1]


def _stage_channels(model: Classifier, x: torch.Tensor, stages) -> dict[str, int]:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = _stage_outputs(model, x, stages)
    model.train(was)
    return {s: out[s].shape[1] for s in stages}


def _probe_input(train, device) -> torch.Tensor:
    if isinstance(train, ImageSet):
        return train.float_images(slice(0, 2)).to(device)
    if isinstance(train, (tuple, list)):
        x = train[0][:2]
        return (x.float() / 255 if x.dtype == torch.uint8 else x.float()).to(device)
    return train[0][0][None].float().to(device)


def renofeation(pretrained: Classifier, train, *,
                epochs_distill: int = SMOKE_DEFAULTS["renofeation"]["epochs_distill"],
                epochs_swa: int = SMOKE_DEFAULTS["renofeation"]["epochs_swa"],
                lr: float = SMOKE_DEFAULTS["renofeation"]["lr"],
                feat_weight: float = SMOKE_DEFAULTS["renofeation"]["feat_weight"],
                dropout: float = SMOKE_DEFAULTS["renofeation"]["dropout"],
                swa_lr: float = SMOKE_DEFAULTS["renofeation"]["swa_lr"],
                beta: float = SMOKE_DEFAULTS["renofeation"]["beta"], swa_every: int = 1,
                stages: Sequence[str] | None = None, seed: int = 0, translate="auto",
                on_swa_update: Callable[[int, Classifier], None] | None = None,
                **fit_kw) -> tuple[Classifier, pd.DataFrame]:
    """Renofeation (Chin, Zhang, Marculescu 2021): re-training with noisy feature distillation.

    Stage 1 (``epochs_distill`` at ``lr``): a randomly initialised student of the pretrained
    architecture (:func:`fresh_like`) wrapped as a :class:`NoisyStudent` - ``Dropout2d(dropout)``
    after every stage, a trainable 1x1 conv adapter per stage - minimises
    ``CE + feat_weight * sum_stages MSE(adapter(F_s), F0_s) + beta/2 ||w_head||^2`` where ``F0``
    are the frozen pretrained teacher's (eval mode, no grads) stage outputs and ``F_s`` the
    student's before dropout (MSE: mean over all elements, summed over stages, as in the code).

    Stage 2 (``epochs_swa`` at the constant ``swa_lr``): the same objective, continued from stage
    1 (adapters included, new optimiser), with stochastic weight averaging
    (``torch.optim.swa_utils.AveragedModel``): after every ``swa_every``-th epoch the student's
    parameters join the running average (``on_swa_update(k, student)`` is called right after the
    k-th). Finally ``update_bn`` recomputes every BatchNorm's statistics of the averaged model
    with one pass over the (un-augmented) training data in train mode, spatial dropout active as
    in the official code. The returned model is that average (a plain :class:`Classifier`,
    dropout and adapters dropped).

    Official settings (scripts/Renofeation.sh, ResNet-18): stage 1 90,000 iterations at batch 64,
    lr 0.01 cosine, weight decay 5e-3, momentum 0.9, feat_weight 5 (1 on CUB-200), dropout 0.1,
    beta 0.01, all four stages; stage 2 30,000 iterations at constant lr 5e-3, averaging every
    500 iterations from the start. Smoke defaults: ``epochs_distill=16``, ``epochs_swa=4``,
    ``lr=0.2`` (one-cycle), ``swa_lr=0.1``, ``feat_weight=5``, ``dropout=0.1``, ``beta=0.01``,
    averaging every epoch. (The small CNN with 10% channel dropout after all four blocks learns
    slowly: on the smoke setting lr 0.1 gave 55% test accuracy, lr 0.2 65-69% after 10 + 4
    epochs. At 10 + 4 epochs the student was also still close to the teacher: its feature-attack
    success was 0.27 against fine-tuning's 0.49 with one base A; at 16 + 4 it is 0.17 at 79%
    clean accuracy. The seed gives Renofeation 4x fine-tuning's iterations; 20 vs 8 epochs here.)
    Other ``fit_kw``
    apply to both stages, except ``schedule`` (stage 2 is always at a constant lr); a user
    ``on_epoch_end`` receives the :class:`NoisyStudent` wrapper as its model.

    The history has one row per epoch of both stages (``stage``: ``"distill"``/``"swa"``,
    ``stage_epoch``, and ``epoch`` counting on), with ``feat_loss`` (epoch mean of the
    unweighted distillation sum), ``ce`` and ``head_sq``; ``attrs["swa_updates"]`` counts the
    averaged snapshots.
    """
    stages = list(pretrained.stages if stages is None else stages)
    device = pick_device(fit_kw.get("device"))
    k = num_classes_of(train)
    teacher = _teacher(pretrained, device)
    student_model = fresh_like(pretrained, k, seed=seed).to(device)
    x0 = _probe_input(train, device)
    student = NoisyStudent(student_model, stages, dropout,
                           teacher_channels=_stage_channels(teacher, x0, stages),
                           student_channels=_stage_channels(student_model, x0, stages))
    with _Seeded(seed, "adapters"):
        for a in student.adapters.values():
            a.reset_parameters()
    log = _EpochLog()

    def loss(s, x, y):
        feats, logits = s.forward_features(x)
        with torch.no_grad():
            t = _stage_outputs(teacher, x, stages)
        feat = sum(F.mse_loss(feats[n].float(), t[n].float()) for n in stages)
        ce = F.cross_entropy(logits, y)
        head_sq = _sq(_head_params(s.model))
        log.add(feat_loss=feat, ce=ce, head_sq=head_sq)
        return ce + feat_weight * feat + 0.5 * beta * head_sq, logits

    user_cb = fit_kw.pop("on_epoch_end", None)
    kw = _augment(train, translate, fit_kw)
    kw.setdefault("desc", "Renofeation distill")
    kw["on_epoch_end"] = _chain(log, user_cb)
    h1 = fit(student, train, epochs=epochs_distill, lr=lr, seed=seed, loss=loss, **kw)
    h1 = log.merge(h1).assign(stage="distill")

    # stage 2: SWA at a constant learning rate
    log.rows = []
    swa = AveragedModel(student.model)
    updates = {"n": 0}

    def swa_epoch_end(epoch, row, s):
        log.close()
        if epoch % swa_every == 0:
            swa.update_parameters(s.model)
            updates["n"] += 1
            if on_swa_update is not None:
                on_swa_update(updates["n"], s.model)
        return user_cb(epoch, row, s) if user_cb is not None else None

    kw2 = dict(kw, on_epoch_end=swa_epoch_end, schedule=None, desc="Renofeation SWA")  # constant lr
    h2 = fit(student, train, epochs=epochs_swa, lr=swa_lr, seed=seed + 1, loss=loss, **kw2)
    h2 = log.merge(h2).assign(stage="swa")
    if updates["n"] == 0:  # fewer epochs than swa_every: average the final weights
        swa.update_parameters(student.model)
        updates["n"] = 1
        if on_swa_update is not None:
            on_swa_update(1, student.model)

    model = swa.module
    bn_pass = NoisyStudent(model, stages, dropout)
    update_bn(Batches(train, kw.get("batch_size", 128), device), bn_pass)
    model.eval()
    hist = pd.concat([h1, h2], ignore_index=True)
    hist.insert(0, "stage_epoch", hist["epoch"])
    hist["epoch"] = np.arange(1, len(hist) + 1)
    hist.attrs["swa_updates"] = updates["n"]
    return model, hist


TRANSFER_METHODS: dict[str, Callable[..., tuple[Classifier, pd.DataFrame]]] = {
    "fine_tune": fine_tune,
    "linear_probe": linear_probe,
    "l2_sp": l2_sp,
    "delta": delta,
    "retrain": retrain,
    "renofeation": renofeation,
}


# ============================================================================================
# Cached students and the transfer-attack table
# ============================================================================================
def transfer_model(method: str, pretrained: Classifier, train, *, seed: int = 0, store: Store | None = None,
                   progress: bool = True, retrain: bool = False, cache_tag: str | None = None,
                   **kw) -> tuple[Classifier, dict]:
    """``TRANSFER_METHODS[method](pretrained, train, **kw)``, trained once and then loaded from the
    store. Returns ``(model, meta)``; ``meta`` holds the per-epoch ``history`` (records),
    ``cached`` and the store ``key``.

    The key hashes the method, the pretrained weights (:func:`model_fingerprint`; for ``retrain``
    only the architecture matters, but the template is pinned the same way), the training data
    (:func:`data_fingerprint`) and every keyword (functions only with a ``cache_tag``), so a
    change of any of them trains a new model.
    """
    if method not in TRANSFER_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(TRANSFER_METHODS)}")
    store = store or Store()
    k = num_classes_of(train)
    cfg = {"version": VERSION, "method": method, "pretrained": model_fingerprint(pretrained),
           "arch": pretrained.arch, "num_classes": k, "train": data_fingerprint(train),
           "seed": seed, "kw": _fit_config(kw, cache_tag)}

    def build_fn():
        return fresh_like(pretrained, k)

    def train_fn(model):
        trained, hist = TRANSFER_METHODS[method](pretrained, train, seed=seed, progress=progress, **kw)
        model.load_state_dict(trained.state_dict())
        if method == "linear_probe":
            freeze(model.blocks)
            freeze(model.normalize)
        return {"method": method, "history": hist.to_dict("records")}

    model, meta = store.model(f"transfer_{method}", cfg, build_fn, train_fn, retrain=retrain)
    meta["key"] = store.key(f"transfer_{method}", cfg)
    return model.eval(), meta


def first_images(data, n: int | None = None, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images of ``data`` (all when None) as float [0, 1] tensors and their labels,
    on the CPU."""
    xs, ys = zip(*Batches(first_n(data, n), batch_size, torch.device("cpu")))
    return torch.cat(xs), torch.cat(ys)


def _accuracy_and_pred(model: Classifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256):
    logits, _ = predict(model, (x, y), batch_size=batch_size)
    pred = logits.argmax(1)
    return (pred == y).float().mean().item(), pred


def attack_table(teacher: Classifier, students: Mapping[str, Classifier], test, *,
                 transfer_attacks: Mapping[str, Callable], whitebox: Callable | None = None,
                 n: int | None = None, batch_size: int = 256, progress: bool = True) -> pd.DataFrame:
    """Clean accuracy, transfer-attack success and white-box robustness of every student.

    Each attack of ``transfer_attacks`` (name -> ``attack(teacher, x, y)``, e.g.
    :func:`lib.attacks.feature_attack` bound with :func:`lib.attacks.attack_fn`) is crafted *once*
    on ``teacher`` over the first ``n`` test images (:func:`lib.attacks.craft`) and the same
    adversarial images are sent to every student. ``whitebox`` (``attack(student, x, y)``, e.g.
    PGD) attacks each student itself.

    One row per student: ``method``, ``clean_acc``; per transfer attack ``<name>_acc`` (accuracy
    on the transferred images) and ``<name>_asr`` (attack success rate: the share of the
    student's clean-correct images that the adversarial versions make wrong,
    :func:`lib.attacks.attack_success_rate`, as in the seed's evaluation); ``whitebox_acc`` and
    ``whitebox_asr``; ``n``.
    """
    from tqdm.auto import tqdm

    x, y = first_images(test, n, batch_size)
    crafted = {name: craft(teacher, (x, y), attack, batch_size=batch_size, progress=progress)[1]
               for name, attack in transfer_attacks.items()}
    rows = []
    for method, student in tqdm(students.items(), desc="students", disable=not progress, leave=False):
        clean_acc, clean_pred = _accuracy_and_pred(student, x, y, batch_size)
        row = {"method": method, "clean_acc": clean_acc}
        for name, x_adv in crafted.items():
            acc, pred = _accuracy_and_pred(student, x_adv, y, batch_size)
            row[f"{name}_acc"] = acc
            row[f"{name}_asr"] = attack_success_rate(clean_pred, pred, y)
        if whitebox is not None:
            _, x_wb, _ = craft(student, (x, y), whitebox, batch_size=batch_size)
            acc, pred = _accuracy_and_pred(student, x_wb, y, batch_size)
            row["whitebox_acc"] = acc
            row["whitebox_asr"] = attack_success_rate(clean_pred, pred, y)
        row["n"] = len(y)
        rows.append(row)
    return pd.DataFrame(rows)


# ============================================================================================
# The study of notebook 02: teacher, base B and target data per profile
# ============================================================================================
FULL_TARGETS = ("cub200", "flowers102", "stanford_dogs", "stanford40", "mit67", "gtsrb")
FULL_ARCHS = ("resnet18", "resnet50", "resnet101", "mobilenet_v2")


def study(profile: str = "smoke", *, arch: str = "resnet18", dataset: str = "cub200",
          anb_dataset: str | None = None, root=None, anb_root=None, store: Store | None = None,
          progress: bool = True, base_b_kw: dict | None = None) -> dict:
    """Teacher, base B and target data of notebook 02 for a profile.

    ``smoke``: the bases of notebook 01 (from the store, trained if absent): the teacher is base
    A (source half of the synsigns classes); the target task is the *other* half (disjoint
    classes, as in Yosinski et al. and as ImageNet -> CUB-200 in the Renofeation study), which
    also serves the AnB sweep, with base B as its reference.

    ``full``: the teacher is torchvision's ImageNet ``arch`` (local weights, or
    :class:`lib.models.PretrainedWeightsMissing`); the fine-tuning target is the real
    ``dataset`` (one of :data:`FULL_TARGETS`, its shipped layout under ``data/`` or ``root``) at
    224 px with training augmentation; the AnB target is ``anb_dataset`` (default ImageNet-R,
    200 classes, its seeded 80/20 split) whose base B is ``arch`` re-trained from scratch on it
    (:func:`transfer_model` ``"retrain"``, cached; ``base_b_kw`` its options).

    Returns ``{"teacher", "train", "test", "base_b", "base_b_acc", "anb_train", "anb_test",
    "target"}`` (``target``: one sentence naming the target task).
    """
    from .bases import base_model, half_data, imagenet_base, recipe
    from .data.real import load_real

    store = store or Store()
    if profile == "smoke":
        cfg = recipe()
        teacher, _ = base_model("A", store, progress=progress)
        base_b, meta_b = base_model("B", store, progress=progress)
        train, test = half_data("B", cfg)
        return {"teacher": teacher.eval(), "train": train, "test": test, "base_b": base_b.eval(),
                "base_b_acc": meta_b["test_acc"], "anb_train": train, "anb_test": test,
                "target": f"synsigns half B: {train.num_classes} classes disjoint from base A's "
                          f"{teacher.num_classes}, {len(train)} train / {len(test)} test images at {train.size} px"}
    if profile != "full":
        raise ValueError(f"profile must be 'smoke' or 'full', got {profile!r}")
    if dataset not in FULL_TARGETS:
        raise ValueError(f"dataset must be one of {FULL_TARGETS}, got {dataset!r}")
    teacher = imagenet_base(arch).eval()
    train = load_real(dataset, "train", root=root, size=224, train_augment=True)
    test = load_real(dataset, "test", root=root, size=224)
    anb_dataset = anb_dataset or "imagenet_r"
    kw = {"label_space": "imagenet_r"} if anb_dataset == "imagenet_r" else {}
    anb_train = load_real(anb_dataset, "train", root=anb_root, size=224, train_augment=True, **kw)
    anb_test = load_real(anb_dataset, "test", root=anb_root, size=224, **kw)
    base_b, _ = transfer_model("retrain", teacher, anb_train, store=store, progress=progress, **(base_b_kw or {}))
    return {"teacher": teacher, "train": train, "test": test, "base_b": base_b,
            "base_b_acc": evaluate(base_b, anb_test)["acc"], "anb_train": anb_train, "anb_test": anb_test,
            "target": f"{dataset} ({len(train.classes)} classes, {len(train)} train / {len(test)} test "
                      f"images at 224 px) from ImageNet {arch}; AnB on {anb_dataset}"}


def full_kw(method: str, n_train: int) -> dict:
    """Keyword arguments for ``method`` at the seed's settings (:data:`PAPER_DEFAULTS`), its
    iteration budgets turned into epochs over ``n_train`` images (the full profile of notebook 02).
    The step schedules of L2-SP/DELTA are approximated by cosine decay; ranges take their upper
    end for the learning rate and momentum."""
    p = PAPER_DEFAULTS[method]
    epochs = lambda it, bs=64: max(1, round(it * bs / n_train))
    if method in ("fine_tune", "linear_probe"):
        return {"epochs": epochs(p["iterations"]), "lr": 0.01, "batch_size": 64, "schedule": "cosine",
                "momentum": 0.9, "weight_decay": 1e-4 if method == "fine_tune" else 0.0}
    if method in ("l2_sp", "delta"):
        kw = {"epochs": epochs(p["iterations"]), "lr": p["lr"], "batch_size": 64, "schedule": "cosine",
              "momentum": p["momentum"], "weight_decay": 0.0, "alpha": p["alpha"], "beta": p["beta"]}
        if method == "delta":
            kw.update(attention_epochs=p["attention_epochs"], attention_batches=p["attention_batches"])
        return kw
    if method == "retrain":
        return {"epochs": epochs(p["iterations"]), "lr": p["lr"], "batch_size": 64, "schedule": "cosine",
                "momentum": p["momentum"], "weight_decay": p["weight_decay"]}
    if method == "renofeation":
        return {"epochs_distill": epochs(p["distill_iterations"]), "epochs_swa": epochs(p["swa_iterations"]),
                "lr": p["lr"], "swa_lr": p["swa_lr"], "batch_size": 64, "schedule": "cosine",
                "momentum": p["momentum"], "weight_decay": p["weight_decay"], "feat_weight": 5.0,
                "dropout": p["dropout"], "beta": p["beta_head_l2"],
                "swa_every": max(1, round(p["swa_freq_iterations"] * 64 / n_train))}
    raise ValueError(f"unknown method {method!r}")


# The Renofeation paper's headline (ResNet-18 from ImageNet, task-agnostic feature attack).
SEED_HEADLINE = {"fine_tune": 0.743, "renofeation": 0.069}


def headline_check(table: pd.DataFrame, *, asr_ratio: float = 0.5, asr_gap: float = 0.10,
                   clean_margin: float = 0.10, column: str = "feature_asr",
                   methods: Sequence[str] = ("retrain", "renofeation"), reference: str = "fine_tune") -> pd.DataFrame:
    """The seed's claim on an :func:`attack_table`: each of ``methods`` has a transfer-attack
    success rate (``column``) at most ``asr_ratio`` times the ``reference``'s (fine-tuning) and at
    least ``asr_gap`` below it, at clean accuracy no more than ``clean_margin`` below the
    reference's. One row per method with the numbers and ``passed``."""
    r = table.set_index("method")
    ref = r.loc[reference]
    rows = []
    for m in methods:
        s = r.loc[m]
        rows.append({"method": m, column: s[column], f"{reference}_asr": ref[column],
                     "ratio": s[column] / ref[column] if ref[column] > 0 else float("nan"),
                     "gap": ref[column] - s[column], "clean_acc": s["clean_acc"],
                     f"{reference}_clean": ref["clean_acc"],
                     "passed": bool(s[column] <= asr_ratio * ref[column] and ref[column] - s[column] >= asr_gap
                                    and s["clean_acc"] >= ref["clean_acc"] - clean_margin)})
    return pd.DataFrame(rows)


def headline_paragraph(table: pd.DataFrame, target: str, note: str = "") -> str:
    """A Markdown paragraph comparing an :func:`attack_table` with the seed's headline
    (:data:`SEED_HEADLINE`); ``note`` is inserted after the numbers (e.g. why absolute rates
    differ in a small setting)."""
    r = table.set_index("method")
    pct = lambda m, c="feature_asr": f"{r.loc[m, c]:.1%}" if m in r.index else "n/a"
    ft, rn = SEED_HEADLINE["fine_tune"], SEED_HEADLINE["renofeation"]
    text = (f"The seed reports, for ImageNet ResNet-18 fine-tuned to its target datasets, a feature-attack "
            f"success rate of **{ft:.1%}** for fine-tuning against **{rn:.1%}** for Renofeation (about "
            f"{ft / rn:.0f}x lower) at similar clean accuracy. Here ({target}) fine-tuning is attacked with "
            f"success **{pct('fine_tune')}**, re-training **{pct('retrain')}** and Renofeation "
            f"**{pct('renofeation')}**")
    if {"fine_tune", "renofeation"} <= set(r.index) and r.loc["renofeation", "feature_asr"] > 0:
        text += f" ({r.loc['fine_tune', 'feature_asr'] / r.loc['renofeation', 'feature_asr']:.1f}x lower)"
    text += (f", at clean accuracies of {pct('fine_tune', 'clean_acc')}, {pct('retrain', 'clean_acc')} and "
             f"{pct('renofeation', 'clean_acc')}. ")
    if note:
        text += note.strip() + " "
    kept = [m for m in ("linear_probe", "l2_sp", "delta") if m in r.index]
    if kept:
        text += ("Methods that keep the teacher's weights or stay close to them inherit its weakness ("
                 + ", ".join(f"{m.replace('_', ' ')} {pct(m)}" for m in kept) + "). ")
    if "whitebox_acc" in r:
        text += (f"White-box PGD against each student leaves {r['whitebox_acc'].min():.1%} to "
                 f"{r['whitebox_acc'].max():.1%} accuracy: **low transfer-attack success is not robustness**; "
                 f"it means that the public teacher is no longer a good surrogate for attacking the student.")
    return text
