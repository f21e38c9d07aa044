"""Model builders: every model takes [0, 1] images and carries its own ``Normalize`` layer.

Every model is a :class:`Classifier` (:mod:`lib.models.classifier`)::

    x in [0,1] -> normalize -> blocks[0] -> blocks[1] -> ... -> blocks[-1] -> head -> logits

:func:`build` makes any architecture of :data:`ARCHS` (:mod:`lib.models.archs`; the adversarial-training
literature's PreActResNet-18 and Wide ResNets in :mod:`lib.models.robust_archs`), randomly
initialised (seeded) or from a checkpoint, and records its arguments in ``model.build_args`` so
that :func:`fresh_like` (here too) can make a new one of the same kind. :mod:`lib.models.copies`
holds the other helpers that derive one model from another (target copies, frozen teachers,
fingerprints, parameter distances).

Pretrained ImageNet weights for the torchvision architectures are read from the local torch hub
cache only (``$TORCH_HOME/hub/checkpoints``); nothing here downloads. A missing file raises
:class:`PretrainedWeightsMissing`, whose message names the file to place and where to get it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .adopted import ADOPTED, AdoptError, adopt, fresh_like_adopted
from .archs import (ARCHS, CIFAR_RESNETS, HEAD_KEY, RAW_HEAD_KEYS, TORCHVISION_ARCHS, TV_WEIGHTS, CifarBasicBlock,
                    CifarResNet, ShortcutA, pretrained_path, remap_densenet_keys, small_cnn, torchvision_net,
                    torchvision_weights, wrap_cifar_resnet, wrap_torchvision)
from .classifier import (IMAGENET_MEAN, IMAGENET_STD, Classifier, Head, Normalize, count_parameters, freeze,
                         is_frozen, train_mode)
from .copies import copy_for_target, derived_seed, frozen_copy, model_fingerprint, param_distance, seeded
from .robust_archs import (ROBUST_ARCHS, PreActBlock, PreActResNet, WideBlock, WideResNet, is_robust_arch,
                           remap_wrn_keys, robust_net, wrap_robust)

__all__ = ["adopt", "AdoptError", "ARCHS",
           "CIFAR_RESNETS", "TORCHVISION_ARCHS", "IMAGENET_MEAN", "IMAGENET_STD", "Classifier", "Head",
           "Normalize", "PretrainedWeightsMissing", "build", "load_cifar_resnet20", "count_parameters", "freeze",
           "is_frozen", "train_mode", "small_cnn", "CifarResNet", "CifarBasicBlock", "ShortcutA",
           "pretrained_path", "torchvision_weights", "remap_densenet_keys", "fresh_like", "copy_for_target",
           "frozen_copy", "model_fingerprint", "param_distance", "seeded", "derived_seed", "TV_WEIGHTS",
           "ROBUST_ARCHS", "PreActResNet", "PreActBlock", "WideResNet", "WideBlock", "is_robust_arch", "robust_net",
           "wrap_robust", "remap_wrn_keys", "known_arch", "raw_net", "wrap_raw", "raw_head_key"]


class PretrainedWeightsMissing(FileNotFoundError):
    """Pretrained weights are not in the local cache; the message says what to put where."""


# --------------------------------------------------------------------------------------------
# Loading state dicts
# --------------------------------------------------------------------------------------------
def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``; unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and
    strips the ``module.`` prefix that DataParallel checkpoints carry."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper_key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper_key), Mapping):
            obj = obj[wrapper_key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _safetensors_head_classes(path: Path) -> int | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_slice(HEAD_KEY).get_shape()[0] if HEAD_KEY in f.keys() else None


def _is_wrapped(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("blocks.", "head.", "normalize.")) for k in state)


def known_arch(arch: str) -> bool:
    """Whether :func:`build` makes ``arch``: a name of :data:`ARCHS` or any ``wrn<depth>_<widen>``."""
    return arch in ARCHS or is_robust_arch(arch)


def raw_head_key(arch: str) -> str:
    """The last Linear's weight in ``arch``'s own (unwrapped) state dict."""
    return "fc.weight" if is_robust_arch(arch) and arch.startswith("wrn") else RAW_HEAD_KEYS[arch]


def raw_net(arch: str, num_classes: int):
    """``arch``'s unwrapped network, whose state-dict keys are those of its reference code (the CIFAR
    ResNet checkpoint layout, torchvision, Wong/Rice's PreActResNet, TRADES's WideResNet)."""
    if arch in CIFAR_RESNETS:
        return CifarResNet(int(arch[len("resnet"):]), num_classes)
    if is_robust_arch(arch):
        return robust_net(arch, num_classes)
    if arch in TORCHVISION_ARCHS:
        return torchvision_net(arch, num_classes)
    raise ValueError(f"{arch} has no unwrapped layout (its checkpoints are Classifier state dicts)")


def wrap_raw(net, arch: str, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Classifier:
    """:func:`raw_net`'s network as a :class:`Classifier` (sharing its modules) with ``Normalize(mean, std)``."""
    if arch in CIFAR_RESNETS:
        return wrap_cifar_resnet(net, arch, mean, std)
    if is_robust_arch(arch):
        return wrap_robust(net, arch, mean, std)
    return wrap_torchvision(net, arch, mean, std)


def build(arch: str, num_classes: int, pretrained: bool | str | Path = False, *,
          weights: str = "IMAGENET1K_V1", mean: Sequence[float] = IMAGENET_MEAN,
          std: Sequence[float] = IMAGENET_STD, seed: int | None = None, **kw) -> Classifier:
    """Build ``arch`` (one of :data:`ARCHS`) as a :class:`Classifier` with ``num_classes`` outputs.

    ``seed``: draw the random initial weights from ``torch.manual_seed(seed)`` inside a forked
    RNG (the global RNG is left as it was); None uses the global RNG as it stands, so the weights
    then depend on whatever the process drew before.

    ``pretrained``:
      * ``False``: random initialisation.
      * ``True`` (torchvision archs only): ImageNet weights ``weights`` (a torchvision Weights tag,
        default ``IMAGENET1K_V1``) from the local hub cache, see :func:`pretrained_path`; raises
        :class:`PretrainedWeightsMissing` when the file is absent. Never downloads.
      * a path: a ``.safetensors`` file saved from a :class:`Classifier` (loaded with
        ``lib.store.load_weights``), or a torch file read with ``weights_only=True`` holding either
        a :class:`Classifier` state dict or the architecture's own layout (torchvision keys; the
        ``conv1/bn1/layerK/linear`` CIFAR-ResNet keys; optional ``state_dict`` wrapper and
        ``module.`` prefixes).
    Loading is strict (a wrapped checkpoint saved before frozen flags were part of the state
    loads as unfrozen). The checkpoint's head is kept when it has ``num_classes`` outputs and
    replaced by a fresh Linear otherwise. ``mean``/``std`` set the Normalize layer (a wrapped
    checkpoint's own buffers win). Extra ``kw`` go to :func:`small_cnn` (``width``, ``pools``, ...).
    """
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(arch, num_classes, pretrained, weights=weights, mean=mean, std=std, **kw)
    arch = arch.lower()
    if not known_arch(arch):
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS} (or any wrn<depth>_<widen>)")
    if kw and arch != "small_cnn":
        raise TypeError(f"unexpected options for {arch}: {sorted(kw)}")

    path: Path | None = None
    if pretrained is True:
        if arch not in TORCHVISION_ARCHS:
            raise ValueError(f"{arch} has no ImageNet weights; pass the path of a checkpoint instead")
        path = pretrained_path(arch, weights)
        if not path.is_file():
            url = torchvision_weights(arch, weights).url
            raise PretrainedWeightsMissing(
                f"Pretrained {arch} weights ({weights}) are not in the local torch cache.\n"
                f"Place the file at: {path}\n"
                f"On a machine with internet access, download it from: {url}\n"
                f"(e.g. `curl -L -o {path.name} {url}`), then copy it to the path above. "
                f"Set TORCH_HOME to use another cache directory.")
    elif pretrained:
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file at {path}")

    raw_state = wrapped_state = None
    head_classes = num_classes  # how many outputs the checkpoint's head has
    if path is not None and path.suffix == ".safetensors":
        head_classes = _safetensors_head_classes(path) or num_classes
    elif path is not None:
        state = _read_state_dict(path)
        if _is_wrapped(state) or arch == "small_cnn":
            wrapped_state = state
            if HEAD_KEY in state:
                head_classes = state[HEAD_KEY].shape[0]
        else:
            raw_state = remap_densenet_keys(state) if arch == "densenet121" else state
            raw_state = remap_wrn_keys(raw_state) if arch.startswith("wrn") else raw_state
            key = raw_head_key(arch)
            if key not in raw_state:
                raise KeyError(f"{path} is not a {arch} state dict (no {key!r})")
            head_classes = raw_state[key].shape[0]

    if arch == "small_cnn":
        model = small_cnn(head_classes, mean=mean, std=std, **kw)
    else:
        net = raw_net(arch, head_classes)
        if raw_state is not None:
            net.load_state_dict(raw_state, strict=True)
        model = wrap_raw(net, arch, mean, std)

    if wrapped_state is not None:
        model.load_state_dict(wrapped_state, strict=True)
    elif path is not None and path.suffix == ".safetensors":
        from lib.store import load_weights  # lazy: lib.store imports heavier things

        load_weights(model, path, strict=True)
    if model.num_classes != num_classes:
        model.reset_head(num_classes)
    # what fresh_like needs to make another of the same kind (never the weights' source)
    model.build_args = {"arch": arch, "num_classes": num_classes, "mean": [float(v) for v in mean],
                        "std": [float(v) for v in std], **kw}
    return model


def fresh_like(template: Classifier, num_classes: int | None = None, seed: int = 0) -> Classifier:
    """A randomly initialised model of ``template``'s kind (its ``build_args``: builder, width,
    ...; its ``Normalize`` statistics) with ``num_classes`` outputs, unfrozen, on ``template``'s
    device. The builder's own initialisation, seeded from ``derived_seed(seed, "fresh_like")``."""
    if template.build_args is None:
        raise ValueError(f"{template.arch} model was not made by lib.models.build; it has no build_args to copy")
    if template.build_args.get("arch") == ADOPTED:  # a network from outside lib.models (lib.models.adopted)
        return fresh_like_adopted(template, num_classes, seed).to(next(template.parameters()).device)
    args = dict(template.build_args)
    args["num_classes"] = template.num_classes if num_classes is None else num_classes
    args["mean"] = template.normalize.mean.flatten().tolist()
    args["std"] = template.normalize.std.flatten().tolist()
    model = build(seed=derived_seed(seed, "fresh_like"), **args)
    freeze(model, False)
    return model.to(next(template.parameters()).device)


def load_cifar_resnet20(path: str | Path, num_classes: int = 10) -> Classifier:
    """The shared CIFAR-10 ResNet-20 (``{"state_dict": {"module.conv1.weight", ...}}``), loaded
    with strict keys; trained on ImageNet-normalised [0,1] inputs, which is the default here.
    With ``num_classes != 10`` the CIFAR-10 head is replaced by a fresh one."""
    return build("resnet20", num_classes, pretrained=path)
