"""The artifact cache: trained models and computed results, keyed by name + config hash.

A notebook asks the store for what it needs and computes it only when absent::

    store = Store()
    net, meta = store.model("base-cnn", config, build=lambda: make_cnn(**config),
                            train=lambda net: fit(net, data, **config), code=(fit, make_cnn))
    table = store.result("pgd-sweep", config, compute=lambda: sweep(net, data))

Layout under the root (``lib.paths.store_dir()`` unless given)::

    models/<name>-<hash>.safetensors     weights + one JSON ``meta`` + the config, one file
    results/<name>-<hash>.json           dicts, lists, scalars
    results/<name>-<hash>.csv            pandas DataFrames (first line: a ``#`` JSON header)
    results/<name>-<hash>.safetensors    dicts of tensors (crafted images), checksummed

Guarantees:

* **Keys.** ``<name>-<hash>`` where the hash is the first 12 hex digits of the SHA-256 of the
  config as sorted-key JSON. Change any config value and the key changes; the key does not
  see code changes by itself, so either bump a ``version`` entry in the config when the code
  that trains an artifact changes meaningfully, or pass ``code=`` to :meth:`Store.model` /
  :meth:`Store.result`, which adds ``"code": code_version(...)`` (a hash of that code without
  its docstrings, comments and formatting) to the config used for the key.
* **Atomic writes.** Every artifact is written to a temporary file in the same folder,
  flushed and fsynced, then renamed over the final name with ``os.replace``. A final file is
  only ever created by that rename, so a run killed mid-write leaves the previous artifact
  (or nothing) in place, never a half-written file under a name the store trusts. Leftover
  temporary files (``.<final>.<host>.<pid>.<tag>.tmp``) are never read and are removed by the
  next write into the same folder once their writer is gone.
* **No pickles.** Weights and tensor results are safetensors; other results are JSON or CSV.
* **Integrity.** Each artifact carries a SHA-256 of its content and one of its header (config,
  meta, dtypes: ``__meta_sha256__`` / ``meta_sha256``), both checked on load, and its header must
  name the key it is stored under; a truncated, corrupted or edited file, or one without a
  checksum, raises :class:`CorruptArtifactError` naming the file and how to rebuild it instead of
  returning garbage. Files written before the header checksum existed are still read: their content
  checksum and key fields (name, hash, config, format) are checked, their ``meta``/``saved_at``
  (and a CSV's column dtypes) only once ``python -m lib.store seal`` has added the header checksum.
* **Writable first.** A model is trained and a result computed only once the folder it goes to
  is known to be writable (:class:`StoreNotWritableError` otherwise), so no work is lost to a
  read-only store.

The package: this file holds :class:`Store` (keys, models, results, listing); ``keys`` the
config hashing and :func:`code_version`; ``files`` atomic writes, safetensors weights and
:class:`CorruptArtifactError`; ``tables`` the DataFrame text format. Every public name (and
``HOST`` and ``os``, which tests read and patch) is importable from ``lib.store``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os  # noqa: F401  (re-exported: tests patch ``lib.store.os.replace``, the global ``os`` module)
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from lib import config, distributed
from lib.paths import store_dir
from lib.store.files import (
    FORMAT,
    HOST,  # noqa: F401  (re-exported for tests)
    CorruptArtifactError,
    StoreNotWritableError,
    atomic_write,
    check_writable,
    clean_stale_temps,
    json_result,
    load_state,
    load_weights,
    read_tensors,
    rebuild_hint,
    save_tensors,
    save_weights,
    text_writer,
)
from lib.store.keys import HASH_LENGTH, canonical_json, code_version, config_hash, json_digest, to_json
from lib.store.tables import CSV_KEYS, dataframe_from_text, dataframe_text

__all__ = [
    "CorruptArtifactError",
    "Store",
    "StoreNotWritableError",
    "clean_stale_temps",
    "code_version",
    "config_hash",
    "load_weights",
    "save_weights",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
# the header entries each kind of stored file has (besides checksums): anything else is an edit
HEADER = ("format", "name", "hash", "config", "saved_at")
MODEL_KEYS = frozenset(HEADER + ("meta", "__format__", "__sha256__", "__aliases__"))
TENSOR_KEYS = frozenset(HEADER + ("__format__", "__sha256__", "__aliases__"))


# Seconds of store work (training a model, computing a result) finished inside the work now
# running, one entry per level: a result whose computation trains a model logs its own seconds
# without the model's, so a run's profile (:func:`lib.runs.time_profile`) counts each second once.
_NESTED: list[float] = []


class _Timed:
    """Times one piece of store work: ``seconds`` (wall) and ``own`` (without nested store work)."""

    def __enter__(self):
        _NESTED.append(0.0)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.own = self.seconds - _NESTED.pop()
        if _NESTED:
            _NESTED[-1] += self.seconds
        return False


def _log(action: str, kind: str, key: str, path: Path, timed: _Timed | None = None) -> None:
    """Append one line to the current run's store log (:func:`lib.config.current`; no-op outside a
    workbook run and on ranks > 0); work that was done (``timed``) adds its ``seconds`` and
    ``own_seconds``."""
    run = config.current()
    log = run.store_log
    if not log or not distributed.is_main():
        return
    line = {"action": action, "kind": kind, "key": key, "path": str(Path(path).resolve()), "notebook": run.notebook,
            "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if timed is not None:
        line.update(seconds=round(timed.seconds, 2), own_seconds=round(timed.own, 2))
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def run_log() -> list[dict]:
    """The current run's store log (empty outside a workbook run)."""
    log = config.current().store_log
    if not log or not Path(log).is_file():
        return []
    return [json.loads(line) for line in Path(log).read_text(encoding="utf-8").splitlines() if line.strip()]


def _must_redo(key: str) -> bool:
    """True when this run asked to retrain everything and ``key`` was not made earlier in the run
    (notebook 02 then reuses the base that notebook 01 retrained a minute ago)."""
    if not config.current().retrain:
        return False
    return not any(e["key"] == key and e["action"] in ("trained", "computed") for e in run_log())


def _with_code(config: dict, code) -> dict:
    """``config`` plus ``"code": code_version(...)`` of ``code`` (a new dict), or ``config``
    itself when ``code`` is None. ``code`` is a tuple/list of modules, classes and functions,
    one such object, or a string tag."""
    if code is None:
        return config
    if "code" in config:
        raise ValueError("config already has a 'code' entry; drop it or do not pass code=")
    objects = tuple(code) if isinstance(code, (tuple, list)) else (code,)
    return {**config, "code": code_version(*objects)}



def _string_header(header: dict) -> dict[str, str]:
    """The store header as safetensors metadata (str -> str; non-strings as canonical JSON)."""
    return {k: v if isinstance(v, str) else canonical_json(v) for k, v in header.items()}


def check_header(path: Path, header: dict, name: str, config: dict, keys) -> None:
    """Refuse a stored file whose header is not the one the store wrote for ``(name, config)``.

    ``header`` must have exactly ``keys`` (plus an optional header checksum) and its format,
    name, hash and config must be those of the key the file is read under. This is what covers
    the header of a file written before header checksums existed (its content checksum covers
    the rest), and what catches a file copied or renamed under another key.
    """
    extra = set(header) - set(keys) - {"__meta_sha256__", "meta_sha256"}
    missing = set(keys) - set(header)
    if extra or missing:
        problem = f"unexpected header entries {sorted(extra)}" if extra else f"missing header entries {sorted(missing)}"
    else:
        stored = header["config"] if isinstance(header["config"], str) else canonical_json(header["config"])
        expected = {"format": FORMAT, "name": name, "hash": config_hash(config),
                    "config": canonical_json(to_json(config)), "__format__": FORMAT}
        wrong = [k for k, v in expected.items() if k in header and (stored if k == "config" else header[k]) != v]
        if not wrong:
            return
        problem = f"header entries {wrong} do not match its key {name}-{config_hash(config)}"
    raise CorruptArtifactError(f"{path}: {problem} (edited or corrupted after writing); {rebuild_hint(path)}")


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
            "config": to_json(config),
            "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }

    # models

    def has_model(self, name: str, config: dict) -> bool:
        return self.model_path(name, config).is_file()

    def save_model(self, name: str, config: dict, model: nn.Module, meta: dict | None = None) -> Path:
        """Store the weights with ``meta`` and the config in one safetensors file (one rename)."""
        header = self._header(name, config)
        metadata = _string_header(header)
        # meta keeps its key order (no sort_keys): a table built from it, such as notebook 07's GAN
        # history, then has the same columns whether the model was trained now or loaded
        metadata["meta"] = json.dumps(to_json(meta or {}, strict=False))
        return save_weights(model, self.model_path(name, config), metadata)

    def load_model(self, name: str, config: dict, model: nn.Module) -> dict:
        """Load the stored weights into ``model`` in place and return the stored meta; logged as
        loaded (a later run reuses a notebook only while every file it loaded is unchanged: lib.reuse)."""
        meta = self._read_model(name, config, model)
        _log("loaded", "model", self.key(name, config), self.model_path(name, config))
        return meta

    def _read_model(self, name: str, config: dict, model: nn.Module) -> dict:
        path = self.model_path(name, config)
        if not path.is_file():
            raise KeyError(f"no model {self.key(name, config)!r} in {self.models_dir}")
        tensors, metadata = read_tensors(path, require_checksum=True)
        check_header(path, metadata, name, config, MODEL_KEYS)
        try:
            meta = json.loads(metadata["meta"])
        except json.JSONDecodeError as error:
            raise CorruptArtifactError(f"{path} holds unreadable meta ({error}); {rebuild_hint(path)}") from error
        load_state(model, tensors, path)
        return meta

    def model(
        self,
        name: str,
        config: dict,
        build: Callable[[], nn.Module],
        train: Callable[[nn.Module], dict | None],
        *,
        retrain: bool = False,
        code=None,
    ) -> tuple[nn.Module, dict]:
        """The model for ``(name, config)``: loaded if stored, else built, trained and saved.

        ``build()`` makes the untrained model; ``train(model)`` trains it in place and may
        return a JSON-able meta dict (history, accuracy, ...). ``train_seconds`` is added to
        the meta unless ``train`` set it. The returned meta has ``cached`` True when loaded.

        ``code`` (optional): the code that makes the model, as a tuple/list of modules, classes
        or functions (or one of them, or a string tag). The key is then that of
        ``{**config, "code": code_version(*code)}`` (``config`` itself is not changed), so an
        edit of that code retrains while an edit of its docstrings or comments does not; the
        stored header's config shows the ``code`` entry. ``config`` must not have a ``code``
        key of its own then. To reach the same artifact with ``has_model``/``load_model``,
        pass them that extended config.
        """
        config = _with_code(config, code)
        key = self.key(name, config)
        net = build()
        retrain = retrain or _must_redo(key)
        main = distributed.is_main()
        distributed.barrier()  # under torchrun: every rank decides on the same files
        if not retrain and self.has_model(name, config):
            meta = self.load_model(name, config, net)  # logs the load
            if main:
                print(f"[store] loaded model {key} from {self.models_dir}")
            return net, {**meta, "cached": True}
        if main:  # fail now, not after training, when the model could not be saved
            check_writable(self.models_dir, f"model {key}")
            check_writable(self.root / "checkpoints", f"the epoch checkpoints of {key}")
        from lib import checkpoints  # epoch checkpoints of the fit calls inside train(): a killed run resumes

        if retrain and main:
            checkpoints.Scope(self.root / "checkpoints" / key).clear()  # start over, not from an old epoch
        with _Timed() as timed, checkpoints.scope(self.root / "checkpoints" / key) as ck:
            meta = dict(train(net) or {})
            if ck.resumed:
                meta.setdefault("resumed_from_epoch", ck.resumed)
        seconds = timed.seconds
        meta.pop("cached", None)
        meta.setdefault("train_seconds", round(seconds, 3))
        meta = to_json(meta, strict=False)
        if not main:  # under torchrun every rank trained (fit is collective); rank 0 writes, the others load
            distributed.barrier()
            return net, {**self._read_model(name, config, net), "cached": False}
        path = self.save_model(name, config, net, meta)
        ck.clear()
        print(f"[store] trained model {key} in {seconds:.1f}s, saved to {path}")
        _log("trained", "model", key, path, timed)
        distributed.barrier()
        return net, {**meta, "cached": False}

    # results

    def _result_paths(self, name: str, config: dict) -> list[Path]:
        key = self.key(name, config)
        return [self.results_dir / f"{key}.{ext}" for ext in ("json", "csv", "safetensors")]

    def _result_path(self, name: str, config: dict) -> Path | None:
        """The newest stored file for this result, or None."""
        found = [p for p in self._result_paths(name, config) if p.is_file()]
        return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None

    def has_result(self, name: str, config: dict) -> bool:
        return self._result_path(name, config) is not None

    def save_result(self, name: str, config: dict, obj) -> Path:
        """Store ``obj``: a DataFrame as CSV (dtypes kept in a header line), a non-empty dict of
        tensors as safetensors (on the CPU, back as such), anything JSON-able (dict, list, numbers,
        strings; tuples become lists) as JSON. One atomic file."""
        import pandas as pd
        import torch

        header = self._header(name, config)
        json_path, csv_path, tensor_path = self._result_paths(name, config)
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            path = tensor_path
            save_tensors(obj, path, _string_header(header))
        else:
            if isinstance(obj, pd.DataFrame):
                path, text = csv_path, dataframe_text(obj, header)
            else:
                value = to_json(obj, strict=True)
                document = {**header, "sha256": json_digest(value), "value": value}
                document["meta_sha256"] = json_digest(document)
                path, text = json_path, json.dumps(document, indent=1, ensure_ascii=False) + "\n"
            atomic_write(path, text_writer(text))
        for other in (json_path, csv_path, tensor_path):
            if other != path:
                other.unlink(missing_ok=True)
        return path

    def load_result(self, name: str, config: dict):
        """The stored result (DataFrame, dict of tensors or JSON value); KeyError if absent."""
        path = self._result_path(name, config)
        if path is None:
            raise KeyError(f"no result {self.key(name, config)!r} in {self.results_dir}")
        if path.suffix == ".safetensors":
            tensors, metadata = read_tensors(path, require_checksum=True)
            check_header(path, metadata, name, config, TENSOR_KEYS)
            return tensors
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise CorruptArtifactError(f"{path} is not UTF-8 text; {rebuild_hint(path)}") from error
        if path.suffix == ".csv":
            frame, header = dataframe_from_text(text, path)
            check_header(path, header, name, config, HEADER + CSV_KEYS)
            return frame
        document, _ = json_result(path, text)
        check_header(path, document, name, config, HEADER + ("sha256", "value"))
        return document["value"]

    def result(
        self,
        name: str,
        config: dict,
        compute: Callable[[], Any],
        *,
        recompute: bool = False,
        code=None,
    ):
        """The result for ``(name, config)``: loaded if stored, else computed and saved.

        Always returns the stored form (what a later cached call returns), so the first run
        and every rerun see the same types.

        ``code`` (optional): as for :meth:`model`; the key is that of ``{**config, "code":
        code_version(*code)}``, so editing the code that computes the result recomputes it.
        """
        config = _with_code(config, code)
        key = self.key(name, config)
        main = distributed.is_main()
        distributed.barrier()  # under torchrun: every rank decides on the same files
        if not recompute and not _must_redo(key) and self.has_result(name, config):
            if main:
                print(f"[store] loaded result {key} from {self.results_dir}")
            _log("loaded", "result", key, self._result_path(name, config))
            return self.load_result(name, config)
        if main:  # fail now, not after computing, when the result could not be saved
            check_writable(self.results_dir, f"result {key}")
        with _Timed() as timed:
            value = compute()  # on every rank: a computation may itself be collective (a fit inside)
        if main:
            try:
                path = self.save_result(name, config, value)
            except OSError as error:  # a full disk, or permissions the check above could not see
                print(f"[store] WARNING: computed result {key} but could not save it to {self.results_dir} "
                      f"({error}); returning it unsaved", file=sys.stderr)
                distributed.barrier()
                return value
            print(f"[store] computed result {key} in {timed.seconds:.1f}s, saved to {path}")
            _log("computed", "result", key, path, timed)
        distributed.barrier()  # rank 0 wrote; the others read the stored form
        return self.load_result(name, config)

    # listing

    def entries(self):
        """One row per stored artifact: name, hash, kind (model/result), format, bytes, modified, path."""
        import pandas as pd

        rows = []
        for kind, folder, suffixes in (
            ("model", self.models_dir, (".safetensors",)),
            ("result", self.results_dir, (".json", ".csv", ".safetensors")),
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
