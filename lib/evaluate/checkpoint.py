"""Load a user's checkpoint into :func:`lib.models.build` without unpickling code.

A checkpoint is read as tensors only: ``.safetensors`` with safetensors, anything else (``.pt``,
``.pth``, ``.th``, ``.bin``, ``.ckpt``) with ``torch.load(weights_only=True)``, which refuses
pickled objects (a whole model saved with ``torch.save(model)``); that refusal becomes a
:class:`CheckpointError` saying to save ``model.state_dict()`` instead. Wrappers
``{"state_dict": ...}`` / ``{"model": ...}`` / ``{"model_state_dict": ...}`` / ``{"net": ...}``
and DataParallel's ``module.`` prefix are undone.

Two layouts load: a workbook :class:`~lib.models.Classifier` state dict (``normalize.*``,
``blocks.*``, ``head.*``), which carries its normalisation, and the architecture's own layout
(:func:`lib.models.raw_net`: torchvision's keys, the CIFAR-ResNet checkpoint keys, Wong/Rice's
PreActResNet, TRADES's WideResNet), which does not: then the mean and std the model was trained
with must be given (``mean``/``std``, or a preset of :data:`NORM_PRESETS`), or
:class:`CheckpointError` says so. Keys and shapes are compared before loading; a mismatch names
the missing, unexpected and mis-shaped keys and, when one of :data:`lib.models.ARCHS` fits the
checkpoint exactly, suggests it.
"""
from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .. import models as M

__all__ = ["CheckpointError", "NORM_PRESETS", "read_state_dict", "load_checkpoint", "guess_arch"]

# Per-channel statistics of [0, 1] training images; cifar10/cifar100 as in Wong et al.'s and Rice et
# al.'s code (the training set's mean and std), imagenet as torchvision's; none: the model reads [0, 1].
NORM_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": (tuple(M.IMAGENET_MEAN), tuple(M.IMAGENET_STD)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
_SUFFIXES = (".safetensors", ".pt", ".pth", ".th", ".bin", ".ckpt")
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
_NOT_WEIGHTS = ("_extra_state", "heads.", "masks.", "normalize.")  # compared apart from the architecture


class CheckpointError(ValueError):
    """The checkpoint cannot be loaded as asked; the message says what did not match and the fix."""


def load_error(path: Path, e: Exception) -> CheckpointError:
    """What to tell the user when ``torch.load(weights_only=True)`` refused ``path``: a pickled
    object (the global torch refused, named, and how to save weights instead) or a file that is
    no torch checkpoint at all (corrupt, truncated, empty: the loader's own complaint)."""
    # torch's message is a paragraph ending in a link; what matters is the refused global it names
    # ("... unsupported GLOBAL posix.system ...") or, without one, the line that says what failed
    refused = re.search(r"GLOBAL:? ([\w.<>]+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
    if refused:
        return CheckpointError(
            f"{path} holds pickled Python objects, not only tensors: torch.load(weights_only=True) refused the "
            f"global {refused.group(1)}. It is probably a whole model (or an object beside the weights) saved "
            "with torch.save; this workbook never unpickles code. Save the weights instead: "
            "torch.save(model.state_dict(), 'weights.pt') or "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors').")
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    why = next((ln for ln in lines if ln.startswith("Unsupported")), lines[-1] if lines else "the file ended early")
    return CheckpointError(f"{path} is not a torch checkpoint torch.load can read: the file is corrupt or not a "
                           f"torch.save file ({type(e).__name__}: {why[:300]})")


# --------------------------------------------------------------------------------------------
def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint file (see the module docstring), on the CPU."""
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in _SUFFIXES)
        raise CheckpointError(f"--weights {path} is a folder, not a checkpoint file"
                              + (f"; it holds {', '.join(inside[:3])}: give one, e.g. --weights {path / inside[0]}"
                                 if inside else ""))
    if not path.is_file():
        raise FileNotFoundError(f"--weights {path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise load_error(path, e) from None
    for key in _WRAPPERS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)")
    other = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if other:
        raise CheckpointError(f"{path}: entries {other[:5]} are not tensors; expected a state dict "
                              f"(or one under a key of {list(_WRAPPERS)})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file (tied names restored). A file the store wrote (its header
    has the store's ``__sha256__``) is read with :func:`lib.store.files.load_tensors`, which verifies
    its checksums, so a flipped byte is refused here as the store refuses it."""
    from safetensors import safe_open

    from ..store.files import CorruptArtifactError, load_tensors

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if "__sha256__" not in meta:
                state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from None
    if "__sha256__" in meta:
        try:
            return load_tensors(path)
        except CorruptArtifactError as e:
            why = str(e).split("; ")[0]  # the store's fix (delete and recompute) is not the user's
            raise CheckpointError(f"{why}: lib.store's integrity check refused it; use an intact copy of the "
                                  "checkpoint (copy or export it again)") from None
    try:
        aliases = json.loads(meta.get("__aliases__", "{}"))
        for alias, kept in aliases.items():  # tied tensors saved once
            if kept in state:
                state[alias] = state[kept]
    except (ValueError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable __aliases__ in its header ({e})") from None
    return state


def _is_wrapped(state: Mapping[str, Tensor]) -> bool:
    return any(k.startswith(("blocks.", "head.", "normalize.")) for k in state)


def _shapes(state: Mapping[str, Tensor]) -> dict[str, tuple]:
    """Key -> shape of the architecture's weights (BatchNorm's ``num_batches_tracked`` left out:
    checkpoints from before PyTorch 0.4.1 lack it and ``load_state_dict`` fills it in)."""
    return {k: tuple(v.shape) for k, v in state.items()
            if not k.startswith(_NOT_WEIGHTS) and not k.endswith("num_batches_tracked")}


def _expected_shapes(arch: str, num_classes: int, wrapped: bool, arch_kw: Mapping) -> dict[str, tuple]:
    """Key -> shape of ``arch``'s state dict in that layout, built on the meta device (no memory);
    options ``build`` refuses (``--arch-option width=4`` for a ResNet) raise :class:`CheckpointError`."""
    try:
        with torch.device("meta"):
            net = M.build(arch, num_classes, **arch_kw) if wrapped else M.raw_net(arch, num_classes)
            sd = net.state_dict()
    except (TypeError, ValueError) as e:
        options = " ".join(f"--arch-option {k}={v}" for k, v in arch_kw.items()) or "no --arch-option"
        raise CheckpointError(f"--arch {arch} cannot be built with {options} ({e})") from None
    return _shapes(sd)


def _remap_raw(arch: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    state = M.remap_densenet_keys(state) if arch == "densenet121" else dict(state)
    return M.remap_wrn_keys(state) if arch.startswith("wrn") else state


def _head_classes(arch: str, state: Mapping[str, Tensor], wrapped: bool) -> int | None:
    key = "head.fc.weight" if wrapped else (M.raw_head_key(arch) if arch != "small_cnn" else None)
    return int(state[key].shape[0]) if key in state and state[key].ndim == 2 else None


def guess_arch(state: Mapping[str, Tensor]) -> str | None:
    """The first of :data:`lib.models.ARCHS` whose state dict (workbook or own layout) has exactly
    these keys and shapes, as the command-line words that select it (``resnet20``; ``small_cnn
    --arch-option width=8`` for a small CNN of another width), or None."""
    shapes = _shapes(state)
    wrapped = _is_wrapped(state)
    for arch in M.ARCHS:
        if not wrapped and arch == "small_cnn":
            continue
        n = _head_classes(arch, state, wrapped)
        if n is None:
            continue
        kw = {}
        if arch == "small_cnn" and "blocks.conv1.conv.weight" in state:
            kw = {"width": int(state["blocks.conv1.conv.weight"].shape[0])}
        try:
            want = _expected_shapes(arch, n, wrapped, kw)
        except Exception:  # an architecture that cannot be built with this head
            continue
        if want == (_shapes(_remap_raw(arch, state)) if not wrapped else shapes):
            return arch + "".join(f" --arch-option {k}={v}" for k, v in kw.items() if v != 32)
    return None


def _mismatch(arch: str, path: Path, got: Mapping[str, tuple], want: Mapping[str, tuple], layout: str,
              state: Mapping[str, Tensor]) -> CheckpointError | None:
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = [f"{k}: checkpoint {list(got[k])} vs {arch} {list(want[k])}" for k in want
              if k in got and got[k] != want[k]]
    if not (missing or unexpected or shapes):
        return None

    def part(title, items):  # one line: the command line prints this message as its one error line
        more = ", ..." if len(items) > 8 else ""
        return f"; {title} ({len(items)}): " + ", ".join(items[:8]) + more if items else ""

    guess = guess_arch(state)
    hint = (f". It looks like --arch {guess}." if guess and guess != arch else
            ". No architecture of lib.models.ARCHS matches it exactly (check --arch and --arch-option).")
    return CheckpointError(f"{path} does not fit --arch {arch} ({layout} layout)"
                           + part("missing keys", missing) + part("unexpected keys", unexpected)
                           + part("shape mismatches", shapes) + hint)


def normalisation_statistics(path: Path, state, mean, std, norm) -> tuple[list[float], list[float], str]:
    """The Normalize statistics: the checkpoint's own, else the user's (preset or mean/std)."""
    if norm is not None:
        if norm not in NORM_PRESETS:
            raise CheckpointError(f"unknown normalisation preset {norm!r}; choose from {sorted(NORM_PRESETS)}")
        if mean is not None or std is not None:
            raise CheckpointError("give either a normalisation preset (--norm) or --mean/--std, not both")
        mean, std = NORM_PRESETS[norm]
    if (mean is None) != (std is None):
        raise CheckpointError("give both --mean and --std (three numbers each), or a preset --norm")
    user = None if mean is None else ([float(v) for v in mean], [float(v) for v in std])
    if user and (len(user[0]) != 3 or len(user[1]) != 3 or not all(math.isfinite(v) for v in user[0] + user[1])
                 or min(user[1]) <= 0):
        raise CheckpointError(f"--mean and --std need three finite numbers each (std > 0), got {user[0]} and {user[1]}")
    if "normalize.mean" in state and "normalize.std" in state:
        own = (state["normalize.mean"].flatten().tolist(), state["normalize.std"].flatten().tolist())
        if user and not (torch.allclose(torch.tensor(user[0]), torch.tensor(own[0]), atol=1e-4)
                         and torch.allclose(torch.tensor(user[1]), torch.tensor(own[1]), atol=1e-4)):
            raise CheckpointError(
                f"{path} carries its own normalisation (mean {[round(v, 4) for v in own[0]]}, std "
                f"{[round(v, 4) for v in own[1]]}), which disagrees with the one given ({user[0]}, {user[1]}); "
                "drop --norm/--mean/--std to use the checkpoint's")
        return own[0], own[1], "inside the checkpoint"
    if user is None:
        raise CheckpointError(
            f"{path} has no normalisation inside (no normalize.mean / normalize.std): say which statistics the "
            f"model was trained with, --norm {'|'.join(NORM_PRESETS)} or --mean R G B --std R G B (on [0, 1] "
            "images; 'none' if the model reads [0, 1] images as they are)")
    return user[0], user[1], f"given ({norm})" if norm else "given (--mean/--std)"


def head_mismatch(source, head: int, num_classes: int | None) -> str | None:
    """The line that says a model's ``head`` (its outputs) differs from the ``num_classes`` asked for
    (None: nothing asked, no mismatch); the head is never cut or grown to fit."""
    if num_classes is None or int(num_classes) == head:
        return None
    return (f"{source} has a {head}-class head but {num_classes} classes were asked for "
            "(--num-classes, or the data's classes); the head is evaluated as it is")


def load_checkpoint(arch: str, weights: str | Path, *, num_classes: int | None = None,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    norm: str | None = None, arch_kw: Mapping | None = None) -> tuple[M.Classifier, dict]:
    """``lib.models.build(arch, ...)`` holding the weights of ``weights``, in eval mode.

    ``num_classes`` (None: the checkpoint's head) must equal the head's outputs. ``mean``/``std``
    or ``norm`` (a key of :data:`NORM_PRESETS`) are required when the checkpoint has no
    ``normalize.*`` buffers and must agree with them when it has. ``arch_kw`` goes to ``build``
    (e.g. ``{"width": 16}`` for ``small_cnn``). Returns ``(model, info)`` with ``info`` =
    ``{"arch", "weights", "layout", "num_classes", "mean", "std", "normalisation"}``. Raises
    :class:`CheckpointError` naming what did not match.
    """
    arch = arch.lower()
    if not M.known_arch(arch):
        raise CheckpointError(f"unknown --arch {arch!r}; choose from {', '.join(M.ARCHS)} (or any wrn<depth>_<widen>)")
    path = Path(weights).expanduser()
    state = read_state_dict(path)
    arch_kw = dict(arch_kw or {})
    wrapped = _is_wrapped(state) or arch == "small_cnn"
    if not wrapped:
        state = _remap_raw(arch, state)
    layout = "workbook Classifier" if wrapped else f"{arch}'s own"
    head = _head_classes(arch, state, wrapped)
    if head is None:
        err = _mismatch(arch, path, _shapes(state), _expected_shapes(arch, num_classes or 10, wrapped, arch_kw),
                        layout, state)
        raise err or CheckpointError(f"{path}: no classifier head found")
    if head_mismatch(path, head, num_classes):
        raise CheckpointError(head_mismatch(path, head, num_classes))
    err = _mismatch(arch, path, _shapes(state), _expected_shapes(arch, head, wrapped, arch_kw), layout, state)
    if err:
        raise err
    mean, std, how = normalisation_statistics(path, state, mean, std, norm)
    if wrapped:
        model = M.build(arch, head, mean=mean, std=std, seed=0, **arch_kw)
        model.load_state_dict({**state, "normalize.mean": torch.tensor(mean).view(1, -1, 1, 1),
                               "normalize.std": torch.tensor(std).view(1, -1, 1, 1)}, strict=True)
    else:
        net = M.raw_net(arch, head)
        net.load_state_dict(state, strict=True)
        model = M.wrap_raw(net, arch, mean, std)
        model.build_args = {"arch": arch, "num_classes": head, "mean": list(mean), "std": list(std)}
    info = {"arch": arch, "weights": str(path), "layout": layout, "num_classes": head,
            "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std], "normalisation": how}
    return model.eval(), info
