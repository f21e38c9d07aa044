"""Read dataset pickles (CIFAR's python release) without running code from them.

A pickle is a program: every ``GLOBAL`` / ``STACK_GLOBAL`` opcode imports a name and ``REDUCE``
calls it, so ``pickle.load`` on a tampered ``data_batch_1`` runs whatever it names
(``os.system``, ``builtins.exec``, ...). Torchvision's CIFAR classes read the release with plain
``pickle.load``. Here :class:`RestrictedUnpickler` answers every import request from a fixed table
(:data:`ALLOWED`) and refuses anything else with :class:`UnsafePickleError`, which names the
``module.attr`` refused and the file. A file that is not a whole pickle (truncated, corrupt)
raises :class:`UnreadablePickleError`, naming the file and what failed. Both are
:class:`~lib.data.base.DataError` (what the command-line tools catch) with a one-line message.
Dicts, lists, tuples, str, bytes, ints, floats, booleans and None are pickle opcodes of their own
and need no import.

:data:`ALLOWED` is what numpy arrays need, and nothing more:

- ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``: how numpy < 2
  (the CIFAR-10 / CIFAR-100 release, written by Python 2's cPickle at protocol 2) pickles an array;
  ``numpy._core.multiarray._reconstruct`` is the same function under numpy 2's module name
  (copies re-pickled by a current numpy at protocols 2-4);
- ``numpy._core.numeric._frombuffer`` (and its numpy-1 name): how numpy >= 1.16 pickles an array at
  protocol 5 (a re-packed copy written by ``pickle.dump(..., protocol=5)``); it only reshapes a buffer;
- ``_codecs.encode``: how Python 3 stores ``bytes`` (e.g. an array's pixel bytes) in a protocol-2
  pickle, ``_codecs.encode(text, "latin1")``; allowed for the latin-1 codec only.

None of them executes code from the file: they build arrays and dtypes from data. The table maps
names to objects fixed here, so nothing is imported by name while loading. ``numpy.dtype`` answers
only plain numeric and string types (a structured or object dtype's ``__setstate__`` takes its
fields and flags from the file unchecked), and every array loaded is checked to hold no objects.

``encoding`` (passed to :class:`pickle.Unpickler`) decides what Python 2 ``str`` becomes:
``"latin1"`` (the default, as torchvision reads CIFAR) gives ``str`` keys (``"data"``,
``"labels"``); ``"bytes"`` gives the ``b"data"`` keys the CIFAR web page documents. numpy reads the
pixel buffer correctly either way.
"""
from __future__ import annotations

import io
import pickle
from os import PathLike
from pathlib import Path
from typing import IO, Any

import numpy as np

from .base import DataError

__all__ = ["load", "loads", "RestrictedUnpickler", "UnsafePickleError", "UnreadablePickleError", "ALLOWED"]

# The functions numpy's own pickles name, taken from numpy itself (whatever its version calls the
# module), so the table holds objects and nothing is imported by name at load time.
_reconstruct = np.empty(0).__reduce__()[0]
_frombuffer = np.empty(1).__reduce_ex__(5)[0]


class _Refused(pickle.UnpicklingError):
    """An allowed callable refused its arguments (``what`` was asked, ``why`` it is refused);
    :func:`load` re-raises it as an :class:`UnsafePickleError` naming the file."""

    def __init__(self, what: str, why: str):
        self.what, self.why = what, why
        super().__init__(f"{what}, {why}")


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3's protocol-2 pickler uses it for ``bytes``; latin-1 only."""
    if str(encoding).lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise _Refused(f"_codecs.encode(..., {encoding!r})", "which is allowed only with the latin1 codec")
    if not isinstance(text, str):
        raise _Refused(f"_codecs.encode of a {type(text).__name__}", "which expects a str")
    return text.encode("latin1")


def _plain_dtype(spec, align=False, copy=False) -> np.dtype:
    """``numpy.dtype`` for a plain scalar type string only (``'u1'``, ``'<i8'``, ``'S10'``, ...):
    no structured or object dtypes, whose ``__setstate__`` (pickle's BUILD) would take fields,
    item size and flags from the file unchecked and let a later array hold object pointers."""
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    dt = np.dtype(spec) if isinstance(spec, str) else None
    if dt is None or dt.kind not in "biufcSU" or dt.fields is not None or dt.hasobject:
        raise _Refused(f"numpy.dtype({spec!r})", "which is allowed only for plain numeric or string types")
    return np.dtype(dt, bool(align), bool(copy))


ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,   # numpy < 2 (the CIFAR release)
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,        # protocol 5, numpy < 2
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,       # protocol 5, numpy >= 2
    ("_codecs", "encode"): _latin1_encode,                     # bytes in Python 3 protocol-2 pickles
}


class UnsafePickleError(pickle.UnpicklingError, DataError):
    """A pickle asked for a global outside :data:`ALLOWED` (or an allowed one with arguments it
    refuses: ``why`` says which); nothing it names was imported or run."""

    def __init__(self, what: str, source: str, why: str = ""):
        self.what, self.source = what, source
        shown = what.replace("\r", "\\r").replace("\n", "\\n")  # STACK_GLOBAL names may hold line breaks
        why = why or ("which is not one of the numpy/builtin types a dataset pickle holds "
                      f"(allowed: {', '.join(f'{m}.{n}' for m, n in ALLOWED)})")
        super().__init__(
            f"refused to load {source}: the pickle asks for {shown}, {why}. "
            "The file may have been tampered with; get a fresh copy of the dataset.")


class UnreadablePickleError(pickle.UnpicklingError, DataError):
    """A file that is not a complete pickle (truncated, corrupt, not a pickle): ``source`` and
    ``reason`` (what the unpickler raised) in one line."""

    def __init__(self, source: str, reason: str):
        self.source, self.reason = source, " ".join(reason.split())
        super().__init__(f"cannot read {source}: {self.reason}; it is not a complete dataset pickle (truncated "
                         "or corrupt?): delete it and get a fresh copy of the dataset.")


class RestrictedUnpickler(pickle.Unpickler):
    """:class:`pickle.Unpickler` whose ``find_class`` only answers from :data:`ALLOWED`.

    ``source`` names the file in errors. Persistent ids (which ``pickle`` resolves through
    ``persistent_load``) are refused too.
    """

    def __init__(self, file: IO[bytes], *, source: str = "<stream>", encoding: str = "latin1"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}", self.source) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"persistent id {pid!r}", self.source)


def load(path_or_file: str | PathLike | IO[bytes], *, encoding: str = "latin1") -> Any:
    """The object in a pickle file (a path or an open binary file), read by :class:`RestrictedUnpickler`.

    Raises :class:`UnsafePickleError` (naming ``module.attr`` and the file) when the pickle names
    anything outside :data:`ALLOWED`, before anything it names is called, and
    :class:`UnreadablePickleError` when the file is not a complete pickle.
    """
    if isinstance(path_or_file, (str, PathLike)):
        path = Path(path_or_file)
        with open(path, "rb") as f:
            return _load(f, str(path), encoding)
    return _load(path_or_file, str(getattr(path_or_file, "name", "<stream>")), encoding)


def _load(file: IO[bytes], source: str, encoding: str) -> Any:
    """:class:`RestrictedUnpickler` on ``file``, its failures as the two errors named after ``source``."""
    try:
        obj = RestrictedUnpickler(file, source=source, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except _Refused as e:
        raise UnsafePickleError(e.what, source, e.why) from None
    except Exception as e:  # anything else a malformed byte stream makes the unpickler raise
        raise UnreadablePickleError(source, f"{type(e).__name__}: {e}") from None
    return _checked(obj, source)


def _checked(obj: Any, source: str) -> Any:
    """``obj`` after checking that every array in it (through dicts, lists and tuples) has a plain
    numeric or string dtype: an object array built from raw bytes would hold pointers the file chose."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, np.ndarray):
            if o.dtype.hasobject or o.dtype.fields is not None or o.dtype.kind not in "biufcSU":
                raise UnsafePickleError(f"an array of dtype {o.dtype!r}", source)
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return obj


def loads(data: bytes, *, encoding: str = "latin1", source: str = "<bytes>") -> Any:
    """:func:`load` for a pickle held in memory."""
    return _load(io.BytesIO(data), source, encoding)
