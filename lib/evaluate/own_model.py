"""Your own model, whatever ``lib.models`` knows: an exported program, TorchScript, or a factory.

RobustBench's most asked-for feature is evaluating one's own network (its issues #97, #115, #127,
#155, mostly about loading and normalisation). Three forms reach the same robustness report as a
``--arch``/``--weights`` checkpoint (:mod:`lib.evaluate.checkpoint`):

- ``model.pt2``: a ``torch.export`` program (``torch.export.save``), loaded with
  ``torch.export.load``; export it with a dynamic batch dimension, as the attacks run batches of
  any size. An exported module refuses ``.eval()``/``.train()`` (it is traced in one mode), so
  :class:`OwnModel` keeps it in the mode it was exported in: export it in eval mode.
- ``model.pt`` / ``.ts``: a TorchScript archive (``torch.jit.save``), loaded with ``torch.jit.load``;
  a plain state dict there is refused with the form it needs.
- ``package.module:function`` with a state dict (``--weights``): ``function()`` (or
  ``function(num_classes=N)`` when it takes that and ``--num-classes`` is given) builds the
  network, the weights are loaded strictly, nothing is pickled.

The statistics the network was trained with must be declared, as for a checkpoint without its own
(``--norm``, or ``--mean``/``--std``; ``--norm none`` when the network normalises inside): the
attacks then work in [0, 1] pixel space with :class:`lib.models.classifier.Normalize` in front.
"""
from __future__ import annotations

import importlib
import inspect
import zipfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..models.classifier import Normalize
from .checkpoint import NORM_PRESETS, CheckpointError, load_error, normalisation_statistics, read_state_dict

EXPORTED = (".pt2",)
SCRIPTED = (".pt", ".pth", ".ts", ".jit")


class OwnModel(nn.Module):
    """``net`` behind the declared normalisation. ``.eval()``/``.train()`` reach ``net`` unless it is
    an exported program, which stays in the mode it was exported in (see the module docstring)."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], exported: bool = False):
        super().__init__()
        self.normalize, self.net, self.exported = Normalize(mean, std), net, exported

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def train(self, mode: bool = True):
        self.training = mode
        if not self.exported:
            self.net.train(mode)
        return self


def is_factory(spec: str) -> bool:
    """``package.module:function`` (and no such file)."""
    module, sep, fn = str(spec).partition(":")
    return bool(sep and module and fn.isidentifier()) and not Path(spec).exists()


def _read_module(path: Path) -> tuple[nn.Module, bool, str]:
    """The network in ``path`` (exported or TorchScript), whether it is exported, and its form."""
    if not path.is_file():
        raise CheckpointError(f"--model {path}: no such file")
    suffix = path.suffix.lower()
    if suffix in EXPORTED:
        try:
            return torch.export.load(str(path)).module(), True, "torch.export program"
        except Exception as e:  # a damaged or foreign archive: one line naming the file
            raise load_error(path, e) from None
    if suffix not in SCRIPTED:
        raise CheckpointError(f"--model {path}: give a torch.export program (.pt2) or a TorchScript archive "
                              f"({', '.join(SCRIPTED)}); a state dict goes with --arch or --factory and --weights")
    if zipfile.is_zipfile(path) and not any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist()):
        raise CheckpointError(f"--model {path} is not a TorchScript archive (a state dict?): give it as --weights "
                              "with --arch NAME or --factory package.module:function")
    try:
        return torch.jit.load(str(path), map_location="cpu"), False, "TorchScript"
    except Exception as e:
        raise load_error(path, e) from None


def _build(factory: str, weights: str | Path | None, num_classes: int | None) -> nn.Module:
    """``factory``'s network holding ``weights`` (strictly)."""
    module_name, _, fn_name = factory.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"--factory {factory}: cannot import it ({type(e).__name__}: {e}); the module must be "
                              "importable from this folder or PYTHONPATH") from None
    # the head size where the factory takes one; either way the head is checked against it after a forward pass
    params = inspect.signature(fn).parameters  # torchvision's builders take it through **kwargs
    takes = num_classes is not None and ("num_classes" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()))
    net = fn(num_classes=num_classes) if takes else fn()
    if not isinstance(net, nn.Module):
        raise CheckpointError(f"--factory {factory} returned a {type(net).__name__}, not a torch.nn.Module")
    if weights is None:
        raise CheckpointError(f"--factory {factory} needs --weights (a .safetensors or .pt state dict)")
    path = Path(weights).expanduser()
    try:
        missing, unexpected = net.load_state_dict(read_state_dict(path), strict=False)
    except RuntimeError as e:  # shapes that differ: torch's own lines name them, the first is enough
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise CheckpointError(f"{path} does not fit --factory {factory}: {detail}") from None
    if missing or unexpected:
        raise CheckpointError(f"{path} does not fit --factory {factory}: missing {list(missing)[:5]}, unexpected "
                              f"{list(unexpected)[:5]}")
    return net


def load_own_model(model: str | Path | None = None, *, factory: str | None = None, weights: str | Path | None = None,
                   num_classes: int | None = None, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None, norm: str | None = None) -> tuple[OwnModel, dict]:
    """An :class:`OwnModel` from ``model`` (a ``.pt2`` or TorchScript file) or ``factory`` (with
    ``weights``), in eval mode, and its info (the keys of :func:`~lib.evaluate.checkpoint.load_checkpoint`'s;
    ``num_classes`` None until a forward pass tells, unless given). Raises :class:`CheckpointError`
    naming what is wrong."""
    if (model is None) == (factory is None):
        raise CheckpointError("give your model once: --model FILE (.pt2 or TorchScript) or --factory "
                              "package.module:function with --weights")
    if model is not None and weights is not None:
        raise CheckpointError("--model holds its weights; --weights goes with --arch or --factory")
    if factory is not None:
        if not is_factory(factory):
            raise CheckpointError(f"--factory {factory!r}: give it as package.module:function")
        net, exported, form, source = _build(factory, weights, num_classes), False, "factory", str(weights)
    else:
        source = str(Path(model).expanduser())
        net, exported, form = _read_module(Path(source))
    if norm is None and mean is None and std is None:
        raise CheckpointError(f"{source}: say which statistics the model was trained with: --norm "
                              f"{'|'.join(NORM_PRESETS)} or --mean R G B --std R G B ('--norm none' when it "
                              "normalises inside, on [0, 1] images)")
    mean, std, how = normalisation_statistics(Path(source), {}, mean, std, norm)
    wrapped = OwnModel(net, mean, std, exported=exported)
    info = {"arch": factory or f"{Path(source).name} ({form})", "weights": source, "layout": form,
            "num_classes": num_classes, "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std],
            "normalisation": how}
    return wrapped.eval(), info
