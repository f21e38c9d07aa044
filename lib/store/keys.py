"""Store keys: config hashing and code versions.

An artifact's key is ``<name>-<hash>``; the hash comes from the config alone (and, under a
multi-process launch, the world size: see :func:`config_hash`). This module holds
what turns a config into that hash (:func:`config_hash`, over the config made plain JSON by
:func:`to_json`) and :func:`code_version`, a short hash of *code* that a caller puts into the
config (``Store.model(..., code=...)``) so that editing the code that made an artifact changes
its key, while editing docstrings, comments or formatting does not.
"""
from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import enum
import functools
import hashlib
import inspect
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import torch

from .. import distributed

HASH_LENGTH = 12


# ----------------------------------------------------------------------------- config hashing


def to_json(obj: Any, strict: bool = True, where: str = "$") -> Any:
    """Turn ``obj`` into plain JSON types (dict with str keys, list, str, int, float, bool, None).

    Tuples and sets become lists (sets sorted), paths become strings, numpy / torch scalars
    and arrays become Python numbers and lists, enums their value, dataclasses dicts, dates
    ISO strings. Anything else raises ``TypeError`` when ``strict`` (its ``repr`` could carry a
    memory address and make a hash unstable), or becomes its ``repr`` otherwise.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            key = k if isinstance(k, str) else json.dumps(to_json(k, strict, where), sort_keys=True)
            out[key] = to_json(v, strict, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(v, strict, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [to_json(v, strict, f"{where}{{}}") for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return to_json(obj.value, strict, where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_json(dataclasses.asdict(obj), strict, where)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        return to_json(obj.item() if obj.dim() == 0 else obj.tolist(), strict, where)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # scalars and arrays
        return to_json(obj.tolist(), strict, where)
    if strict:
        raise TypeError(
            f"{where}: cannot store a {type(obj).__name__} as JSON; "
            "use numbers, strings, lists, dicts (or paths, tuples, numpy/torch scalars)"
        )
    return repr(obj)


def canonical_json(obj: Any) -> str:
    """Compact, sorted-key JSON text: equal values give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def json_digest(value: Any) -> str:
    """Full SHA-256 of a JSON value's canonical text (the checksum of a stored JSON result)."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def auto_amp_devices(obj: Any) -> list:
    """The device of each training a config asks to pick its precision from the machine: for every
    mapping at any depth with ``"amp": "auto"``, its ``"device"`` entry (``None``: ``fit``'s
    default, CUDA when present). Read from the config's JSON form (:func:`to_json`)."""
    if isinstance(obj, Mapping):
        here = [obj.get("device")] if obj.get("amp") == "auto" else []
        return here + [d for v in obj.values() for d in auto_amp_devices(v)]
    if isinstance(obj, list):
        return [d for v in obj for d in auto_amp_devices(v)]
    return []


def asks_auto_amp(obj: Any) -> bool:
    """Whether a config holds an ``"amp": "auto"`` training (:func:`auto_amp_devices`)."""
    return bool(auto_amp_devices(to_json(obj, strict=False)))


def auto_amp_is_bf16(device=None) -> bool:
    """Whether ``fit(amp="auto", device=device)`` trains in bf16 in this process: the rule of
    :func:`lib.train.resolve_precision` itself (bf16 on CUDA, and on a CPU that runs it natively)."""
    from ..train import pick_device, resolve_precision

    return resolve_precision(pick_device(device), "auto", None)[0]


def config_hash(config: dict, world: int | None = None, bf16: bool | None = None) -> str:
    """First 12 hex digits of the SHA-256 of ``config`` as sorted-key JSON.

    Stable across key order, tuples vs lists, ``Path`` vs ``str`` and numpy/torch scalars vs
    Python numbers; sensitive to every value (``1`` and ``1.0`` and ``True`` differ).
    Under a multi-process launch (``torchrun``, :func:`lib.distributed.world_size` > 1) the world
    size joins the config: training on N processes shards each batch and keeps rank 0's BatchNorm
    statistics, so its models (and every result computed from them) are not a single process's,
    and the two must not share a key. Single-process keys are unchanged. ``world`` (default: this
    launch's) gives the key another launch would have used (``python -m lib.store seal`` checks
    files written under ``torchrun`` with it).
    Likewise a config that asks for ``"amp": "auto"`` (:func:`auto_amp_devices`) where that trains in
    bf16 (:func:`auto_amp_is_bf16` on its device; ``bf16`` overrides) gets a marker: the same recipe trains in fp32
    on an AVX2-only CPU and in bf16 on one with AVX-512 BF16 or AMX, other models that must not share
    a key. Keys that resolve to fp32 are unchanged.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, not {type(config).__name__}")
    world = distributed.world_size() if world is None else world
    if world > 1:
        config = {**config, "__world_size__": world}
    plain = to_json(config, strict=True)
    devices = auto_amp_devices(plain)
    if devices and (any(map(auto_amp_is_bf16, devices)) if bf16 is None else bf16):
        plain = {**plain, "__auto_amp_bf16__": True}
    text = canonical_json(plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


# ----------------------------------------------------------------------------- code versions

_WITH_DOCSTRING = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Drop the docstring (a first statement that is a string constant) of every module,
    class and function in ``tree``, in place."""
    for node in ast.walk(tree):
        if isinstance(node, _WITH_DOCSTRING) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:]
    return tree


def _code_text(obj: Any) -> list[str]:
    """``["ast", dump]`` of ``obj``'s source without docstrings, or ``["source", text]`` when
    the source is not a whole statement (a lambda inside a call) and cannot be parsed."""
    try:
        source = inspect.getsource(obj)
    except TypeError as error:
        raise TypeError(
            f"code_version: cannot read the code of {obj!r} ({type(obj).__name__}); "
            "pass modules, classes or functions, or a string tag"
        ) from error
    except OSError as error:
        raise OSError(f"code_version: no source file for {obj!r}: {error}") from error
    return _dump(source)


@functools.lru_cache(maxsize=4096)
def _dump(source: str) -> list[str]:
    """:func:`_code_text` of one source text, memoised on the text itself (the same text always
    gives the same dump, so an edited file is parsed again): every store call hashes its code, and
    parsing whole modules was a third of a cached notebook 02's AnB cell."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # Methods and nested functions come indented: parse them as the body of a block
        # rather than dedenting the text (which would also rewrite multi-line strings).
        try:
            block = ast.parse("if 1:\n" + source)
        except SyntaxError:
            return ["source", source]
        tree = ast.Module(body=block.body[0].body, type_ignores=[])
    return ["ast", ast.dump(_strip_docstrings(tree))]


def code_version(*objects: Any) -> str:
    """12 hex digits of SHA-256 over the code of ``objects`` (modules, classes, functions).

    What for: a store key sees only the config, so a cached model survives any edit of the code
    that trained it. Put ``code_version(fit, make_cnn)`` into the config (``Store.model(...,
    code=(fit, make_cnn))`` does it for you) and an edit of that code gives a new key, so the
    model is retrained, while the old artifact stays on disk under its old key.

    How: each object's source (``inspect.getsource``) is parsed with ``ast``, every docstring is
    removed (module, class and function docstrings: a first statement that is a string
    constant), and the tree is dumped with ``ast.dump`` (no line numbers or columns). So
    comments, blank lines, formatting and docstrings do not change the version; any change of
    code does, including string literals that are not docstrings and the names of things.
    A string argument is hashed as it is, as a manual tag (``code_version("v2")``). Objects
    are hashed in the order given, and what the hash covers is only the given objects' own
    source: a helper they call is not included unless passed too. A lambda written inside a
    larger expression cannot be parsed alone; its raw source lines are hashed instead, so
    there formatting counts too.

    Caveat: ``ast.dump`` output may differ between Python versions (new node fields, changed
    defaults), so upgrading Python can change every code version once and retrain what is
    keyed on it, once.
    """
    parts = [["tag", obj] if isinstance(obj, str) else _code_text(obj) for obj in objects]
    return hashlib.sha256(canonical_json(parts).encode("utf-8")).hexdigest()[:HASH_LENGTH]
