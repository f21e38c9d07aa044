"""``python -m lib.store seal``: give store files written before header checksums existed one.

Files the store writes now carry a checksum of their content and one of their header (the
config, a model's ``meta``, a table's dtypes: ``__meta_sha256__`` / ``meta_sha256``). Files
written by earlier code carry only the first. A read still checks their header's name, hash,
format and config against the key they are read under, but an edit of their ``meta``,
``saved_at`` or a table's column types would go unseen. :func:`seal_file` verifies such a file as
a read does (content checksum; header entries, name, hash and config against the file's name)
and then adds the header checksum, keeping the file's modification time (``clean --older-than``
goes by it). A file that fails is reported and left as it is. Trust on first use: an edit made
before sealing cannot be told from the original.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import safetensors.torch

from lib.store import HEADER, MODEL_KEYS, TENSOR_KEYS
from lib.store.files import (
    META_SHA,
    FORMAT,
    CorruptArtifactError,
    digest_metadata,
    json_result,
    read_safetensors,
    atomic_write,
    read_tensors,
    rebuild_hint,
    text_writer,
)
from lib.store.keys import asks_auto_amp, canonical_json, config_hash, json_digest
from lib.store.tables import CSV_MAGIC, CSV_KEYS, dataframe_from_text

MAX_WORLD = 1024  # the largest torchrun world size whose keys seal recognises


def _check_key(path: Path, header: dict, keys) -> None:
    """Refuse ``header`` unless it has exactly ``keys`` and names the key in ``path``'s file name
    (the config hashing to it, for a single process or a ``torchrun`` world of up to MAX_WORLD,
    trained in either precision where it asks for ``"amp": "auto"``)."""
    name, _, digest = path.stem.rpartition("-")
    extra = set(header) ^ set(keys)
    config = header.get("config")
    try:
        config = json.loads(config) if isinstance(config, str) else config
        text_ok = not isinstance(header.get("config"), str) or header["config"] == canonical_json(config)
        both = (False, True) if asks_auto_amp(config) else (False,)
        hashes = text_ok and any(config_hash(config, w, bf16) == digest for w in range(1, MAX_WORLD + 1)
                                 for bf16 in both)
    except (json.JSONDecodeError, TypeError):
        hashes = False
    if extra or not hashes or (header["name"], header["hash"], header["format"]) != (name, digest, FORMAT) \
            or header.get("__format__", FORMAT) != FORMAT:
        why = f"unexpected or missing header entries {sorted(extra)}" if extra else "its header does not match its name"
        raise CorruptArtifactError(f"{path}: {why}; {rebuild_hint(path)}")


def _safetensors(path: Path) -> tuple[bool, Callable[[Path], None]]:
    """Whether ``path`` is sealed, and a writer of it sealed (tensors kept byte for byte)."""
    _, metadata = read_tensors(path, require_checksum=True)
    sealed = metadata.pop(META_SHA, None) is not None
    _check_key(path, metadata, MODEL_KEYS if path.parent.name == "models" else TENSOR_KEYS)
    raw, metadata = read_safetensors(path)  # as stored: tied names once
    metadata[META_SHA] = digest_metadata(metadata)
    return sealed, lambda temp: safetensors.torch.save_file(raw, str(temp), metadata=metadata)


def _json(path: Path) -> tuple[bool, Callable[[Path], None]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorruptArtifactError(f"{path} is not UTF-8 text; {rebuild_hint(path)}") from error
    document, sealed = json_result(path, text)
    _check_key(path, document, HEADER + ("sha256", "value"))
    document["meta_sha256"] = json_digest(document)
    return sealed, text_writer(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


def _csv(path: Path) -> tuple[bool, Callable[[Path], None]]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorruptArtifactError(f"{path} is not UTF-8 text; {rebuild_hint(path)}") from error
    _, header = dataframe_from_text(text, path)  # checks the body and a header checksum
    sealed = "meta_sha256" in json.loads(text.partition("\n")[0][len(CSV_MAGIC):])
    _check_key(path, header, HEADER + CSV_KEYS)
    header["meta_sha256"] = json_digest(header)
    first = CSV_MAGIC + json.dumps(header, ensure_ascii=True)
    return sealed, text_writer(first + "\n" + text.partition("\n")[2])


def seal_file(path, dry_run: bool = False) -> bool:
    """Verify the store file ``path``; add its header checksum unless it has one (or ``dry_run``).
    True when the file lacked one. Raises :class:`CorruptArtifactError` for a file that fails."""
    path = Path(path)
    sealed, write = {".safetensors": _safetensors, ".json": _json, ".csv": _csv}[path.suffix](path)
    if sealed or dry_run:
        return not sealed
    stat = path.stat()
    atomic_write(path, write)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return True
