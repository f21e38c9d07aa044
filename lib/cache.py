"""Evaluations cached like models: ``cached(name, fn, *args, **kwargs)`` runs ``fn`` once per
distinct input and hands the stored result back afterwards (what makes a second ``make workbook``
fast: attack tables and robustness reports are most of a notebook's time once its models are stored).

The store key describes every argument by *what it is*, not by its Python identity: a model by
the hash of its weights and buffers (:func:`lib.models.model_fingerprint`), a dataset by its
images and labels (:func:`lib.data.data_fingerprint`), an attack from :func:`lib.attacks.attack_fn`
by its name and parameters (a :func:`~lib.attacks.with_own_labels` wrapper by the attack inside),
a frozen dataclass (e.g. :class:`lib.backdoor.Trigger`) by its class and fields, dicts and lists
element by element, numbers and strings as they are. ``progress`` arguments are
left out. An argument it cannot describe is an error (a key that missed it could return another
input's result). The code version is computed (:func:`lib.store.versions.module_version`) from
``fn``'s module and every ``lib`` module it imports, so an edit of anything ``fn`` can reach
recomputes it; ``code`` adds more (what the caller's own module does to the inputs).

Results are DataFrames (stored as CSV), a tuple of DataFrames (stored as one JSON document and
rebuilt, also on the first call, so both calls return the same thing) or JSON values.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from .attacks import AttackFn
from .data.datalike import data_fingerprint, tensor_pair
from .models import model_fingerprint
from .store import Store, code_version
from .store.versions import module_version

_SKIP = ("progress",)


def describe(obj: Any, where: str = "argument") -> Any:
    """A JSON description of ``obj`` for a store key (see the module docstring)."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, nn.Module):
        return {"model": model_fingerprint(obj)}
    if isinstance(obj, AttackFn):
        return {"attack": obj.name, "params": describe(obj.params, where)}
    if callable(obj) and isinstance(getattr(obj, "attack", None), AttackFn):
        return {"wrapper": getattr(obj, "__name__", "wrapped"), "of": describe(obj.attack, where)}
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {"tensor": hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16], "shape": list(t.shape),
                "dtype": str(t.dtype)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) and obj.__dataclass_params__.frozen:
        # frozen: the fields are all it is (a mutable one could change after keying)
        return {"dataclass": f"{type(obj).__module__}.{type(obj).__qualname__}",
                "fields": {f.name: describe(getattr(obj, f.name), f"{where}.{f.name}")
                           for f in dataclasses.fields(obj)}}
    if isinstance(obj, dict):
        return {str(k): describe(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [describe(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if tensor_pair(obj) is not None or hasattr(obj, "__getitem__") and hasattr(obj, "__len__"):
        return {"data": data_fingerprint(obj)}
    raise TypeError(f"cannot key {where} of type {type(obj).__name__} for the store; "
                    "call the function uncached or pass plain values")


def _pack(result):
    if isinstance(result, tuple) and all(isinstance(r, pd.DataFrame) for r in result):
        return {"frames": [r.to_dict(orient="split", index=False) for r in result]}
    return result


def _unpack(stored):
    if isinstance(stored, dict) and set(stored) == {"frames"}:
        return tuple(pd.DataFrame(f["data"], columns=f["columns"]) for f in stored["frames"])
    return stored


def cached(name: str, fn: Callable, *args, store: Store | None = None, code: tuple = (), **kwargs):
    """``fn(*args, **kwargs)``, computed once per distinct input and then read from the store;
    ``code``: more modules or functions whose edits must recompute it (beside what ``fn``'s
    module reaches)."""
    bound = inspect.signature(fn).bind(*args, **kwargs)
    key = {"function": f"{fn.__module__}.{fn.__qualname__}",
           "args": {k: describe(v, k) for k, v in bound.arguments.items() if k not in _SKIP}}
    module = inspect.getmodule(fn)
    key["code"] = module_version(module.__name__) if module is not None else code_version(fn)
    if code:
        key["extra_code"] = code_version(*code)
    stored = (store or Store()).result(name, key, lambda: _pack(fn(*args, **kwargs)))
    return _unpack(stored)
