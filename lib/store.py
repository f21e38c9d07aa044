"""The artifact cache: trained models and computed results, keyed by name + config hash.

A notebook asks the store for what it needs and computes it only when absent::

    store = Store()
    net, meta = store.model("base-cnn", config, build=lambda: make_cnn(**config),
                            train=lambda net: fit(net, data, **config))
    table = store.result("pgd-sweep", config, compute=lambda: sweep(net, data))

Layout under the root (``lib.paths.store_dir()`` unless given)::

    models/<name>-<hash>.safetensors     weights + one JSON ``meta`` + the config, one file
    results/<name>-<hash>.json           dicts, lists, scalars
    results/<name>-<hash>.csv            pandas DataFrames (first line: a ``#`` JSON header)

Guarantees:

* **Keys.** ``<name>-<hash>`` where the hash is the first 12 hex digits of the SHA-256 of the
  config as sorted-key JSON. Change any config value and the key changes; the key does not
  see code changes, so bump a ``version`` entry in the config when the code that trains an
  artifact changes meaningfully.
* **Atomic writes.** Every artifact is written to a temporary file in the same folder,
  flushed and fsynced, then renamed over the final name with ``os.replace``. A final file is
  only ever created by that rename, so a run killed mid-write leaves the previous artifact
  (or nothing) in place, never a half-written file under a name the store trusts. Leftover
  temporary files (``.<final>.<host>.<pid>.<tag>.tmp``) are never read and are removed by the
  next write into the same folder once their writer is gone.
* **No pickles.** Weights are safetensors; results are JSON or CSV.
* **Integrity.** Each artifact carries a SHA-256 of its content, checked on load; a truncated
  or corrupted file raises :class:`CorruptArtifactError` naming the file instead of returning
  garbage.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import hashlib
import io
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from lib.paths import store_dir

__all__ = [
    "CorruptArtifactError",
    "Store",
    "config_hash",
    "load_weights",
    "save_weights",
]

FORMAT = "workbook-store/1"
HASH_LENGTH = 12
STALE_TEMP_SECONDS = 6 * 3600  # a temp file this old is stale whoever wrote it
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_RESERVED = ("__format__", "__sha256__", "__aliases__")  # our keys in safetensors metadata
_CSV_MAGIC = "# workbook-store "


class CorruptArtifactError(RuntimeError):
    """A stored file exists but cannot be trusted (truncated, corrupted or not ours)."""


# ----------------------------------------------------------------------------- config hashing


def _to_json(obj: Any, strict: bool = True, where: str = "$") -> Any:
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
            key = k if isinstance(k, str) else json.dumps(_to_json(k, strict, where), sort_keys=True)
            out[key] = _to_json(v, strict, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_to_json(v, strict, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_to_json(v, strict, f"{where}{{}}") for v in obj]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return _to_json(obj.value, strict, where)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _to_json(dataclasses.asdict(obj), strict, where)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu()
        return _to_json(obj.item() if obj.dim() == 0 else obj.tolist(), strict, where)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # scalars and arrays
        return _to_json(obj.tolist(), strict, where)
    if strict:
        raise TypeError(
            f"{where}: cannot store a {type(obj).__name__} as JSON; "
            "use numbers, strings, lists, dicts (or paths, tuples, numpy/torch scalars)"
        )
    return repr(obj)


def _canonical_json(obj: Any) -> str:
    """Compact, sorted-key JSON text: equal values give equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: dict) -> str:
    """First 12 hex digits of the SHA-256 of ``config`` as sorted-key JSON.

    Stable across key order, tuples vs lists, ``Path`` vs ``str`` and numpy/torch scalars vs
    Python numbers; sensitive to every value (``1`` and ``1.0`` and ``True`` differ).
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, not {type(config).__name__}")
    text = _canonical_json(_to_json(config, strict=True))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_LENGTH]


# ----------------------------------------------------------------------------- atomic writes

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
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
    if match["host"] != _HOST:  # another machine on a shared disk: only age can tell
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


def _atomic_write(final: Path, write: Callable[[Path], None]) -> Path:
    """Create ``final`` by ``write(temp)`` in the same folder, fsync, then ``os.replace``.

    If anything fails (or the process is interrupted) before the rename, ``final`` is untouched
    and the temp file is removed; if the process is killed, the temp file is left behind under
    a name no reader trusts and the next write into the folder removes it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(final.parent)
    temp = final.parent / f".{final.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    _IN_FLIGHT.add(temp)
    try:
        write(temp)
        with open(temp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
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


def _write_text(text: str) -> Callable[[Path], None]:
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
        digest.update(_canonical_json([name, str(tensor.dtype), list(tensor.shape)]).encode())
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
    tensors, aliases = _tensors_for_saving(model.state_dict())
    header = {
        **metadata,
        "__format__": FORMAT,
        "__sha256__": _digest_tensors(tensors),
        "__aliases__": _canonical_json(aliases),
    }
    # Looked up at call time so tests can simulate a crash inside the serialiser.
    return _atomic_write(
        Path(path), lambda temp: safetensors.torch.save_file(tensors, str(temp), metadata=header)
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on CPU) and header metadata of ``path``; checksum verified when present."""
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # safetensors raises its own error types for bad headers
        raise CorruptArtifactError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: {error}); "
            "it was probably truncated or corrupted - delete it to recompute"
        ) from error
    expected = metadata.get("__sha256__")
    if expected is not None and _digest_tensors(tensors) != expected:
        raise CorruptArtifactError(
            f"{path} fails its checksum (the weights were corrupted after writing); "
            "delete it to recompute"
        )
    return tensors, metadata


def load_weights(model: nn.Module, path, strict: bool = True) -> dict[str, str]:
    """Load weights from ``path`` into ``model`` in place; return the file's user metadata.

    Tensors are read on the CPU and copied by ``load_state_dict`` onto whatever device the
    model's parameters are on. Raises :class:`CorruptArtifactError` for an unreadable file.
    """
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    aliases = json.loads(metadata.get("__aliases__", "{}"))
    for alias, kept in aliases.items():
        if kept in tensors:
            tensors[alias] = tensors[kept]
    try:
        model.load_state_dict(tensors, strict=strict)
    except RuntimeError as error:
        raise RuntimeError(f"cannot load {path} into {type(model).__name__}: {error}") from error
    return {k: v for k, v in metadata.items() if k not in _RESERVED}


# ----------------------------------------------------------------------------- results


def _json_digest(value: Any) -> str:
    return hashlib.sha256(_canonical_json(value).encode("utf-8")).hexdigest()


def _dataframe_text(df, header: dict) -> str:
    """A DataFrame as one ``#`` JSON header line (dtypes, index, checksum) + plain CSV."""
    import pandas as pd

    if isinstance(df.columns, pd.MultiIndex):
        raise ValueError("save_result: flatten MultiIndex columns before storing a DataFrame")
    default_index = (
        isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
        and df.index.name is None
    )
    index_names = None if default_index else [_to_json(n) for n in df.index.names]
    flat = df if default_index else df.reset_index()
    body = flat.to_csv(index=False, lineterminator="\n")
    header = {
        **header,
        "columns": _to_json(list(flat.columns)),
        "dtypes": [str(t) for t in flat.dtypes],
        "index_levels": 0 if default_index else df.index.nlevels,
        "index_names": index_names,
        "rows": len(flat),
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
    }
    return _CSV_MAGIC + json.dumps(header, ensure_ascii=True) + "\n" + body


def _dataframe_from_text(text: str, path: Path):
    """Inverse of :func:`_dataframe_text`; dtypes restored where pandas can."""
    import pandas as pd

    first, _, body = text.partition("\n")
    try:
        header = json.loads(first[len(_CSV_MAGIC):]) if first.startswith(_CSV_MAGIC) else None
    except json.JSONDecodeError:
        header = None
    if header is None:
        raise CorruptArtifactError(f"{path} has no readable store header; delete it to recompute")
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != header.get("sha256"):
        raise CorruptArtifactError(f"{path} fails its checksum (truncated?); delete it to recompute")
    columns, dtypes = header["columns"], header["dtypes"]
    as_text = {str(c): str for c, t in zip(columns, dtypes) if t in ("object", "str", "string")}
    # pandas >= 3 parses floats exactly by default (and deprecates the option); 2.x needs it
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    df = pd.read_csv(io.StringIO(body), dtype=as_text, keep_default_na=False, na_values=[""], **exact)
    for i, dtype in enumerate(dtypes):
        col = df.iloc[:, i]
        try:
            if dtype.startswith("datetime64"):
                col = pd.to_datetime(col)
            elif dtype.startswith("timedelta64"):
                col = pd.to_timedelta(col)
            df.isetitem(i, col.astype(dtype))
        except (TypeError, ValueError):
            pass  # keep what read_csv inferred
    df.columns = columns
    if header["index_levels"]:
        df = df.set_index(columns[: header["index_levels"]])
        df.index.names = header["index_names"]
    return df


# ----------------------------------------------------------------------------- the store


class Store:
    """The artifact cache rooted at ``root`` (default ``lib.paths.store_dir()``)."""

    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else store_dir()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def results_dir(self) -> Path:
        return self.root / "results"

    # keys and paths

    def key(self, name: str, config: dict) -> str:
        """``<name>-<config_hash(config)>``; ``name`` may use letters, digits, ``_ . -``."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(
                f"artifact name {name!r} must match [A-Za-z0-9_.-]+ and not start with '.' or '-'"
            )
        return f"{name}-{config_hash(config)}"

    def model_path(self, name: str, config: dict) -> Path:
        return self.models_dir / f"{self.key(name, config)}.safetensors"

    def _header(self, name: str, config: dict) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": name,
            "hash": config_hash(config),
            "config": _to_json(config),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    # models

    def has_model(self, name: str, config: dict) -> bool:
        return self.model_path(name, config).is_file()

    def save_model(self, name: str, config: dict, model: nn.Module, meta: dict | None = None) -> Path:
        """Store the weights with ``meta`` and the config in one safetensors file (one rename)."""
        header = self._header(name, config)
        metadata = {k: v if isinstance(v, str) else _canonical_json(v) for k, v in header.items()}
        metadata["meta"] = json.dumps(_to_json(meta or {}, strict=False), sort_keys=True)
        return save_weights(model, self.model_path(name, config), metadata)

    def load_model(self, name: str, config: dict, model: nn.Module) -> dict:
        """Load the stored weights into ``model`` in place and return the stored meta."""
        path = self.model_path(name, config)
        if not path.is_file():
            raise KeyError(f"no model {self.key(name, config)!r} in {self.models_dir}")
        metadata = load_weights(model, path)
        if metadata.get("hash", config_hash(config)) != config_hash(config):
            raise CorruptArtifactError(
                f"{path} was saved for config hash {metadata['hash']}, not {config_hash(config)}"
            )
        try:
            return json.loads(metadata.get("meta", "{}"))
        except json.JSONDecodeError as error:
            raise CorruptArtifactError(f"{path} holds unreadable meta: {error}") from error

    def model(
        self,
        name: str,
        config: dict,
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], dict | None],
        *,
        retrain: bool = False,
    ) -> tuple[nn.Module, dict]:
        """The model for ``(name, config)``: loaded if stored, else built, trained and saved.

        ``build()`` makes the untrained model; ``train(model)`` trains it in place and may
        return a JSON-able meta dict (history, accuracy, ...). ``train_seconds`` is added to
        the meta unless ``train`` set it. The returned meta has ``cached`` True when loaded.
        """
        key = self.key(name, config)
        net = build()
        if not retrain and self.has_model(name, config):
            meta = self.load_model(name, config, net)
            print(f"[store] loaded model {key} from {self.models_dir}")
            return net, {**meta, "cached": True}
        start = time.perf_counter()
        meta = dict(train(net) or {})
        seconds = time.perf_counter() - start
        meta.pop("cached", None)
        meta.setdefault("train_seconds", round(seconds, 3))
        meta = _to_json(meta, strict=False)
        path = self.save_model(name, config, net, meta)
        print(f"[store] trained model {key} in {seconds:.1f}s, saved to {path}")
        return net, {**meta, "cached": False}

    # results

    def _result_paths(self, name: str, config: dict) -> list[Path]:
        key = self.key(name, config)
        return [self.results_dir / f"{key}.{ext}" for ext in ("json", "csv")]

    def _result_path(self, name: str, config: dict) -> Path | None:
        """The newest stored file for this result, or None."""
        found = [p for p in self._result_paths(name, config) if p.is_file()]
        return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None

    def has_result(self, name: str, config: dict) -> bool:
        return self._result_path(name, config) is not None

    def save_result(self, name: str, config: dict, obj) -> Path:
        """Store ``obj``: a DataFrame as CSV (dtypes kept in a header line), anything JSON-able
        (dict, list, numbers, strings; tuples become lists) as JSON. One atomic file."""
        import pandas as pd

        header = self._header(name, config)
        json_path, csv_path = self._result_paths(name, config)
        if isinstance(obj, pd.DataFrame):
            path, text = csv_path, _dataframe_text(obj, header)
        else:
            value = _to_json(obj, strict=True)
            document = {**header, "sha256": _json_digest(value), "value": value}
            path, text = json_path, json.dumps(document, indent=1, ensure_ascii=False) + "\n"
        _atomic_write(path, _write_text(text))
        for other in (json_path, csv_path):
            if other != path:
                other.unlink(missing_ok=True)
        return path

    def load_result(self, name: str, config: dict):
        """The stored result (DataFrame or JSON value); KeyError if absent."""
        path = self._result_path(name, config)
        if path is None:
            raise KeyError(f"no result {self.key(name, config)!r} in {self.results_dir}")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorruptArtifactError(f"{path} is not UTF-8 text; delete it to recompute") from error
        if path.suffix == ".csv":
            return _dataframe_from_text(text, path)
        try:
            document = json.loads(text)
            value, expected = document["value"], document["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CorruptArtifactError(
                f"{path} is not a readable store result ({error}); delete it to recompute"
            ) from error
        if _json_digest(value) != expected:
            raise CorruptArtifactError(f"{path} fails its checksum; delete it to recompute")
        return value

    def result(self, name: str, config: dict, compute: Callable[[], Any], *, recompute: bool = False):
        """The result for ``(name, config)``: loaded if stored, else computed and saved.

        Always returns the stored form (what a later cached call returns), so the first run
        and every rerun see the same types.
        """
        key = self.key(name, config)
        if not recompute and self.has_result(name, config):
            print(f"[store] loaded result {key} from {self.results_dir}")
            return self.load_result(name, config)
        start = time.perf_counter()
        path = self.save_result(name, config, compute())
        print(f"[store] computed result {key} in {time.perf_counter() - start:.1f}s, saved to {path}")
        return self.load_result(name, config)

    # listing

    def entries(self):
        """One row per stored artifact: name, hash, kind (model/result), format, bytes, modified, path."""
        import pandas as pd

        rows = []
        for kind, folder, suffixes in (
            ("model", self.models_dir, (".safetensors",)),
            ("result", self.results_dir, (".json", ".csv")),
        ):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.startswith(".") or path.suffix not in suffixes or not path.is_file():
                    continue
                name, _, digest = path.stem.rpartition("-")
                if not name or not re.fullmatch(f"[0-9a-f]{{{HASH_LENGTH}}}", digest):
                    continue
                stat = path.stat()
                rows.append({
                    "name": name, "hash": digest, "kind": kind, "format": path.suffix[1:],
                    "bytes": stat.st_size, "modified": pd.Timestamp(stat.st_mtime, unit="s"),
                    "path": str(path),
                })
        columns = ["name", "hash", "kind", "format", "bytes", "modified", "path"]
        table = pd.DataFrame(rows, columns=columns)
        return table.sort_values(["kind", "name", "modified"], ignore_index=True)
