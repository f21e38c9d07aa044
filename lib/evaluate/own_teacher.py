"""Your own pretrained network as a study's teacher (notebooks 02, 05 and 06): :func:`load_teacher`.

The forms are those of ``python -m lib.evaluate`` (:mod:`lib.evaluate.own_model`,
:mod:`lib.evaluate.checkpoint`) less the traced ones: a teacher is fine-tuned, regularised towards
and cut into blocks, which needs its modules, so a ``torch.export`` program or a TorchScript archive
is refused with the forms to give instead.
"""
from __future__ import annotations

from pathlib import Path

from ..models import AdoptError, Classifier, adopt
from .checkpoint import CheckpointError, load_checkpoint, read_state_dict
from .own_model import load_own_model

FORMS = {"model", "factory", "arch", "weights", "norm", "mean", "std"}


def describe(spec: dict) -> str:
    """A short name for the network of ``spec``, for tables and titles: its file's name and form, its
    factory, or its architecture and weights file."""
    if spec.get("model"):
        form = "torch.export program" if str(spec["model"]).lower().endswith(".pt2") else "TorchScript"
        return f"{Path(str(spec['model'])).name} ({form})"
    return str(spec.get("factory") or f"{spec.get('arch')} ({Path(str(spec.get('weights'))).name})")


def check_spec(spec, key: str, example: str) -> None:
    """The checks every ``yours``-style recipe entry gets first: a non-empty table (else one line with
    ``example``, a table of the form the caller wants) whose entries are all among :data:`FORMS`."""
    if not isinstance(spec, dict) or not spec:
        raise CheckpointError(f"{key}: give a table such as {example}, got {spec!r}")
    unknown = set(spec) - FORMS
    if unknown:
        raise CheckpointError(f"{key}: unknown entries {sorted(unknown)}; it takes {', '.join(sorted(FORMS))}")


def load_teacher(spec: dict, size: int, key: str = "teacher") -> tuple[Classifier, dict]:
    """Your own pretrained network as a study's teacher: recipe entry ``spec`` in the forms
    ``{"arch", "weights"}`` (an architecture :mod:`lib.models` knows) or ``{"factory", "weights"}``
    (any network whose ``forward`` runs its direct children in order and ends in its Linear
    classifier, adopted by :func:`lib.models.adopt`, which checks its logits against the network's
    own), with ``norm`` or ``mean``/``std`` (as for ``python -m lib.evaluate``). A teacher is fine-tuned and cut
    into blocks, so an exported program or TorchScript archive (traced code, no modules to take
    apart) is refused, naming the forms to give. Returns ``(model, info)`` in eval mode; raises
    :class:`CheckpointError` (one line, starting with ``key``)."""
    check_spec(spec, key, "{'factory': 'mynets:resnet', 'weights': 'net.safetensors', 'norm': 'imagenet'}")
    if spec.get("model"):
        raise CheckpointError(f"{key}: a teacher is fine-tuned and cut into blocks, which a torch.export program or "
                              "TorchScript archive does not allow; give {'factory': 'package.module:function', "
                              "'weights': FILE} or {'arch': NAME, 'weights': FILE}")
    if not spec.get("weights") or bool(spec.get("arch")) == bool(spec.get("factory")):
        raise CheckpointError(f"{key}: give 'weights' with either 'arch' (a lib.models architecture) or 'factory' "
                              "(package.module:function)")
    stats = {k: spec.get(k) for k in ("mean", "std", "norm")}
    try:
        if spec.get("arch"):
            model, info = load_checkpoint(spec["arch"], spec["weights"], **stats)
        else:
            wrapped, info = load_own_model(factory=spec["factory"], weights=spec["weights"],
                                           num_classes=_head_size(spec["weights"]), **stats)
            model = adopt(wrapped.net, mean=info["mean"], std=info["std"], size=size, name=spec["factory"])
            info["layout"] = "adopted: its children as blocks, its last Linear as head.fc"
    except (CheckpointError, AdoptError) as e:
        raise CheckpointError(f"{key}: {e}") from None
    return model.eval(), {**info, "name": describe(spec), "stages": list(model.stages)}


def _head_size(weights) -> int | None:
    """The outputs of the last matrix in the state dict ``weights`` (a classifier's, where the network
    ends in one): what a factory taking ``num_classes`` is built with, so the weights fit its head."""
    mats = [v for v in read_state_dict(Path(weights).expanduser()).values() if getattr(v, "ndim", 0) == 2]
    return int(mats[-1].shape[0]) if mats else None
