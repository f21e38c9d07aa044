"""Your own network in a study: a recipe entry ``yours`` read into a model the study evaluates
beside its own.

``yours`` is a table with the same forms as ``python -m lib.evaluate`` (:mod:`lib.evaluate.own_model`,
:mod:`lib.evaluate.checkpoint`), so a network a researcher evaluated from the shell runs here unchanged:

- ``{"model": "net.pt2"}`` or ``{"model": "net.pt"}``: a ``torch.export`` program or a TorchScript archive;
- ``{"factory": "package.module:function", "weights": "net.safetensors"}``: any ``nn.Module`` and a
  state dict (loaded strictly, nothing unpickled);
- ``{"arch": "resnet20", "weights": "net.th"}``: an architecture :mod:`lib.models` knows.

Each with the statistics it was trained with: ``"norm"`` (a preset, or ``"none"`` when the network
normalises inside) or ``"mean"``/``"std"``; a workbook checkpoint carries its own. The network takes
[0, 1] images at the study's size and answers in the study's classes, in the study's order: both are
checked on two images before anything runs, with one line naming what differs.

A study's own pretrained *teacher* (notebooks 02, 05 and 06) comes through
:func:`lib.evaluate.own_teacher.load_teacher`.
"""
from __future__ import annotations

import torch

from ..evaluate.checkpoint import CheckpointError, load_checkpoint
from ..evaluate.own_model import load_own_model
from ..evaluate.own_teacher import check_spec, describe


def load_yours(spec: dict, num_classes: int, size: int, key: str = "yours") -> tuple[torch.nn.Module, dict]:
    """The network of recipe entry ``spec`` (see the module docstring) in eval mode, checked to map a
    ``size``-pixel RGB images to ``num_classes`` logits, and its info (form, weights, normalisation).
    ``key`` names the notebook parameter in errors. Raises :class:`CheckpointError` (one line)."""
    check_spec(spec, key, "{'model': 'net.pt2', 'norm': 'none'}")
    stats = {k: spec.get(k) for k in ("mean", "std", "norm")}
    if spec.get("arch") and (spec.get("model") or spec.get("factory") or not spec.get("weights")):
        raise CheckpointError(f"{key}: 'arch' goes with 'weights' only (or give 'model', or 'factory' and 'weights')")
    try:  # the loaders' lines name the shell command's options (--norm is "norm" here): the entry named first
        if spec.get("arch"):
            model, info = load_checkpoint(spec["arch"], spec["weights"], num_classes=num_classes, **stats)
        else:
            model, info = load_own_model(spec.get("model"), factory=spec.get("factory"), weights=spec.get("weights"),
                                         num_classes=num_classes, **stats)
    except CheckpointError as e:
        raise CheckpointError(f"{key}: {e}") from None
    model.eval()
    with torch.no_grad():
        try:
            out = model(torch.rand(2, 3, size, size))
        except Exception as e:  # a network for other images: one line, not its stack
            raise CheckpointError(f"{key}: {describe(spec)} fails on a batch of two 3x{size}x{size} images, the "
                                  "study's size (a torch.export program needs a dynamic batch dimension) "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if out.ndim != 2 or out.shape[1] != num_classes:
        raise CheckpointError(f"{key}: {describe(spec)} gives outputs of shape {tuple(out.shape)} for two images; "
                              f"the study has {num_classes} classes")
    return model, {**info, "name": describe(spec)}
