"""Files the store trusts: atomic writes and checksummed safetensors weights.

Every artifact reaches its final name only through :func:`atomic_write` (temp file in the same
folder, fsync, ``os.replace``), so a final file is never half-written; temp files left by killed
writers are recognised by their name and removed by :func:`clean_stale_temps`. Weights are
plain safetensors files (no pickles) whose header carries a SHA-256 of the tensors and one of the
rest of the header (``__meta_sha256__``; files written before it existed carry only the first, see
:mod:`lib.store.seal`), checked on every read; anything unreadable or edited raises
:class:`CorruptArtifactError` naming the file and how to rebuild it. :func:`check_writable` lets the
store refuse work whose result it could not keep, before the work starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shlex
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from lib.store.keys import canonical_json, json_digest

FORMAT = "workbook-store/1"
STALE_TEMP_SECONDS = 6 * 3600  # a temp file this old is stale whoever wrote it
META_SHA = "__meta_sha256__"  # SHA-256 of every other metadata entry (files written since issue 33)
_RESERVED = ("__format__", "__sha256__", "__aliases__", META_SHA)  # our keys in safetensors metadata
WRITABLE_FIX = "set WORKBOOK_STORE (or --root) to a writable folder, or fix the folder's permissions"


class CorruptArtifactError(RuntimeError):
    """A stored file exists but cannot be trusted (truncated, corrupted, edited or not ours)."""


class StoreNotWritableError(PermissionError):
    """The store cannot create files where an artifact would go (raised before computing it)."""


def rebuild_hint(path) -> str:
    """The fix for a store file that cannot be trusted: delete it; the next run that needs it
    recomputes it (``python -m lib.workbook --fresh`` recomputes everything)."""
    return f"delete it to recompute it on the next run: rm {shlex.quote(str(path))}"


def check_writable(folder, what: str) -> None:
    """Raise :class:`StoreNotWritableError` unless files can be created in ``folder`` (made on
    demand if absent): called before training or computing ``what``, so an unwritable store fails
    at once instead of after the work, whose value would then be lost."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:  # the nearest existing ancestor is the one mkdir needs
        probe = probe.parent
    if not probe.is_dir():
        problem = f"{probe} is not a folder"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe} is not writable"
    else:
        return
    raise StoreNotWritableError(f"cannot store {what} in {folder}: {problem}; {WRITABLE_FIX}")


def store_problem() -> str | None:
    """Why the store (:func:`lib.paths.store_dir`) cannot be written, or ``None``: checked by a
    run before its first notebook, which would otherwise fail after its work."""
    from ..paths import store_dir
    try:
        check_writable(store_dir(), "this run's models and results")
    except OSError as err:  # StoreNotWritableError says what to do; store_dir() cannot make the folder
        hint = "" if "WORKBOOK_STORE" in str(err) else "; set WORKBOOK_STORE to a writable folder"
        return f"{err.strerror and f'{err.filename}: {err.strerror}' or err}{hint}"
    return None


# ----------------------------------------------------------------------------- atomic writes

# this machine's name as it appears in temp-file names (see _is_stale_temp)
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TEMP = re.compile(r"^\.(?P<final>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.(?P<tag>[0-9a-f]+)\.tmp$")
_IN_FLIGHT: set[Path] = set()  # temp files this process is writing right now


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale_temp(path: Path) -> bool:
    """Whether ``path`` is a temp file of ours whose writer can no longer finish it."""
    match = _TEMP.match(path.name)
    if not match:
        return False
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_TEMP_SECONDS:
        return True
    if match["host"] != HOST:  # another machine on a shared disk: only age can tell
        return False
    pid = int(match["pid"])
    if pid == os.getpid():
        return path not in _IN_FLIGHT
    return not _pid_alive(pid)


def clean_stale_temps(folder: Path) -> list[Path]:
    """Delete temp files in ``folder`` left by writers that died; returns what was removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if _is_stale_temp(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable (POSIX); silently skipped where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(final: Path, write: Callable[[Path], None]) -> Path:
    """Create ``final`` by ``write(temp)`` in the same folder, fsync, then ``os.replace``.

    If anything fails (or the process is interrupted) before the rename, ``final`` is untouched
    and the temp file is removed; if the process is killed, the temp file is left behind under
    a name no reader trusts and the next write into the folder removes it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final.parent)
    temp = final.parent / f".{final.name}.{HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    _IN_FLIGHT.add(temp)
    try:
        write(temp)
        with open(temp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)  # looked up at call time: tests simulate a failed rename
    except BaseException:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass  # the next write cleans it up
        raise
    finally:
        _IN_FLIGHT.discard(temp)
    _fsync_dir(final.parent)
    return final


def text_writer(text: str) -> Callable[[Path], None]:
    """A ``write(path)`` for :func:`atomic_write` that writes ``text`` as UTF-8 (newlines kept as given)."""
    def write(path: Path) -> None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return write


# ----------------------------------------------------------------------------- weights


def _tensors_for_saving(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """CPU, contiguous tensors safetensors accepts, plus ``{alias: kept_name}`` for tied ones.

    A name that is the very same view of the same storage as an earlier one (tied weights) is
    stored once and recorded as an alias; other tensors that share memory are cloned.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    views: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach()
        if tensor.numel():
            view = (
                tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(),
                tuple(tensor.shape), tuple(tensor.stride()), tensor.dtype,
            )
            if view in views:
                aliases[name] = views[view]
                continue
            views[view] = name
        tensor = tensor.to("cpu").contiguous()
        if tensor.numel():
            if tensor.untyped_storage().data_ptr() in storages:
                tensor = tensor.clone()
            storages.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
    return tensors, aliases


def _digest_tensors(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(canonical_json([name, str(tensor.dtype), list(tensor.shape)]).encode())
        if tensor.numel():
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_weights(model: nn.Module, path, metadata: dict[str, str] | None = None) -> Path:
    """Write ``model.state_dict()`` (parameters and buffers) to ``path`` as safetensors, atomically.

    Tied tensors are stored once (as ``safetensors.torch.save_model`` does) and non-contiguous
    ones packed. ``metadata`` (str -> str) goes into the file header together with a checksum.
    """
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; got {key!r}: {type(value).__name__}")
        if key in _RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved by the store")
    return save_tensors(model.state_dict(), path, metadata)


def save_tensors(named: Mapping[str, torch.Tensor], path, metadata: dict[str, str] | None = None) -> Path:
    """Write named tensors to ``path`` as checksummed safetensors, atomically (what
    :func:`save_weights` writes for a state dict; tensor results use it directly)."""
    tensors, aliases = _tensors_for_saving(named)
    header = {
        **dict(metadata or {}),
        "__format__": FORMAT,
        "__sha256__": _digest_tensors(tensors),
        "__aliases__": canonical_json(aliases),
    }
    header[META_SHA] = digest_metadata(header)
    # Looked up at call time so tests can simulate a crash inside the serialiser.
    return atomic_write(
        Path(path), lambda temp: safetensors.torch.save_file(tensors, str(temp), metadata=header)
    )


def json_result(path: Path, text: str) -> tuple[dict, bool]:
    """The document of the stored JSON result ``path`` (its ``text``), checked: JSON holding
    ``value`` and ``sha256``, the value's checksum and, when present, the header checksum
    ``meta_sha256`` (removed from the document returned); and whether it carried one. Anything
    else is a :class:`CorruptArtifactError` with the rebuild hint. Read by ``Store.load_result``
    and ``python -m lib.store seal``."""
    try:
        document = json.loads(text)
        value, expected = document["value"], document["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CorruptArtifactError(f"{path} is not a readable store result ({error!r}); {rebuild_hint(path)}") \
            from error
    sealed = document.pop("meta_sha256", None)
    if json_digest(value) != expected or (sealed is not None and json_digest(document) != sealed):
        raise CorruptArtifactError(f"{path} fails its checksum; {rebuild_hint(path)}")
    return document, sealed is not None


def digest_metadata(metadata: Mapping[str, str]) -> str:
    """SHA-256 over every metadata entry but ``__meta_sha256__`` itself (config, meta, the tensor
    checksum, ...): with the tensor checksum it covers every byte that decides what a read returns."""
    return json_digest({k: v for k, v in metadata.items() if k != META_SHA})


def load_tensors(path, require_checksum: bool = True) -> dict[str, torch.Tensor]:
    """The named tensors :func:`save_tensors` wrote (checksums verified, tied names restored)."""
    return read_tensors(Path(path), require_checksum)[0]


def read_tensors(path, require_checksum: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on CPU, tied names restored) and the whole header metadata of ``path``, verified.

    Both checksums are checked where present; ``require_checksum`` (what the store asks for its own
    files) also refuses a file whose header has no tensor checksum, which the store never writes.
    """
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    expected = metadata.get("__sha256__")
    if expected is None and require_checksum:
        raise CorruptArtifactError(
            f"{path} has no checksum in its header (not written by the store, or edited), so it "
            f"cannot be trusted; {rebuild_hint(path)}"
        )
    if expected is not None and _digest_tensors(tensors) != expected:
        raise CorruptArtifactError(
            f"{path} fails its checksum (the weights were corrupted after writing); {rebuild_hint(path)}"
        )
    if META_SHA in metadata and digest_metadata(metadata) != metadata[META_SHA]:
        raise CorruptArtifactError(
            f"{path} fails its metadata checksum (its header was edited or corrupted after writing); "
            f"{rebuild_hint(path)}"
        )
    _restore_aliases(tensors, metadata.get("__aliases__", "{}"), path)
    return tensors, metadata


def _restore_aliases(tensors: dict[str, torch.Tensor], aliases: str, path: Path) -> None:
    """Add the tied names :func:`save_tensors` stored once (``{alias: kept}`` JSON) to ``tensors``."""
    try:
        for alias, kept in json.loads(aliases).items():
            tensors[alias] = tensors[kept]
    except (json.JSONDecodeError, AttributeError, TypeError, KeyError) as error:
        raise CorruptArtifactError(
            f"{path} has unreadable tied-weight names in its header ({error!r}); {rebuild_hint(path)}"
        ) from error


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on CPU) and header metadata of ``path``, unverified (see :func:`read_tensors`)."""
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise CorruptArtifactError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: {error}); "
            f"it was probably truncated or corrupted - {rebuild_hint(path)}"
        ) from error
    return tensors, metadata


def load_state(model: nn.Module, tensors: Mapping[str, torch.Tensor], path, strict: bool = True) -> None:
    """``model.load_state_dict(tensors)`` whose error names the file the tensors came from."""
    try:
        model.load_state_dict(tensors, strict=strict)
    except RuntimeError as error:
        raise RuntimeError(f"cannot load {path} into {type(model).__name__}: {error}") from error


def load_weights(model: nn.Module, path, strict: bool = True, *, require_checksum: bool = False) -> dict[str, str]:
    """Load weights from ``path`` into ``model`` in place; return the file's user metadata.

    Tensors are read on the CPU and copied by ``load_state_dict`` onto whatever device the
    model's parameters are on. Raises :class:`CorruptArtifactError` for an unreadable file or one
    that fails its checksums. A plain safetensors file (no store checksum: a user's checkpoint) is
    loaded as it is unless ``require_checksum``; the store's own reads require it.
    """
    path = Path(path)
    tensors, metadata = read_tensors(path, require_checksum)
    load_state(model, tensors, path, strict)
    return {k: v for k, v in metadata.items() if k not in _RESERVED}
