"""Reading what a dataset's index files say, checked: the helpers behind :mod:`lib.data.readers`.

An index file (GTSRB's CSVs, CUB-200's ``images.txt``, the split lists of Stanford Dogs, Stanford-40
and MIT-67, Flowers-102's .mat files) is input like any other: it may be truncated, edited or
hostile. Every file name it gives goes through :func:`inside` (a relative path without ``..``, so
a reader never opens a file outside its dataset folder) and every label through :func:`int_label`
(an integer in the dataset's range); each failure is one :class:`MissingDataError` naming the index
file, the line (or entry) and the bad value, which ``load_real`` turns into
:class:`~lib.data.base.DatasetNotFoundError`. :func:`open_rgb` decodes an image file, turning
PIL's nameless errors for a truncated or corrupt file into
:class:`~lib.data.base.UnreadableImageError` naming it.
"""
from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .base import DataError, unreadable_image

__all__ = ["MissingDataError", "DECODE_ERRORS", "open_rgb", "locate_folder", "first_file", "inside",
           "numbered_lines", "text_lines", "id_table", "int_label", "check_files", "check_labels", "read_mat",
           "mat_values"]


class MissingDataError(DataError):
    """A missing or malformed file (``path``, ``problem``), raised by the readers; :func:`load_real`
    turns it into a :class:`DatasetNotFoundError`."""

    def __init__(self, path: Path, problem: str = ""):
        super().__init__(f"{path}: {problem}" if problem else str(path))
        self.path, self.problem = Path(path), problem


# what PIL raises for a truncated, corrupt or non-image file (UnidentifiedImageError is an OSError;
# some decoders raise SyntaxError, ValueError or struct.error; an oversized one DecompressionBombError)
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError)


def open_rgb(path) -> Image.Image:
    """The image at ``path`` decoded as RGB; a file PIL cannot decode raises
    :class:`~lib.data.base.UnreadableImageError` naming it (instead of PIL's error without a name,
    deep in a DataLoader traceback). Same pixels as torchvision's ``pil_loader``."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except DECODE_ERRORS as e:
        raise unreadable_image(path, e) from None


def locate_folder(root: Path, inner: str, required: Sequence[str] = ()) -> Path:
    """The dataset folder: ``root/inner`` (or ``root`` itself when it is named ``inner``),
    holding every path in ``required``."""
    base = root if not inner or root.name == inner else root / inner
    if not base.is_dir():
        raise MissingDataError(base, "folder not found")
    for r in required:
        if not (base / r).exists():
            raise MissingDataError(base / r, "required file or folder not found")
    return base


def first_file(*candidates: Path) -> Path:
    """The first of ``candidates`` that exists (the error names the first one)."""
    for c in candidates:
        if c.is_file():
            return c
    raise MissingDataError(candidates[0], "index file not found")


def inside(folder: Path, entry, index: Path, line: int | str) -> Path:
    """``folder / entry`` for the file that ``line`` (a line number, or words such as
    ``"file_list entry 3"``) of the index file ``index`` names. An empty or absolute ``entry``, or
    one with a ``..`` part, raises :class:`MissingDataError` naming the index, the line and the entry:
    an index file cannot make a reader open files outside its dataset folder. (The name is checked,
    not the target: symbolic links placed inside the folder are followed as before.)"""
    rel = Path(str(entry or ""))
    if not str(entry or "").strip() or rel.anchor or ".." in rel.parts:
        where = f"line {line}" if isinstance(line, int) else line
        raise MissingDataError(index, f"{where}: {entry!r} is not a file name inside {folder} (index entries "
                                      "must be relative paths; absolute paths and '..' are refused)")
    return folder / rel


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-empty lines of a text index file."""
    if not path.is_file():
        raise MissingDataError(path, "index file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeError) as e:
        raise MissingDataError(path, f"cannot be read as a text index ({e})") from None
    return [(n, s.strip()) for n, s in enumerate(text.splitlines(), 1) if s.strip()]


def text_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text index file."""
    return [s for _, s in numbered_lines(path)]


def id_table(path: Path) -> dict[str, tuple[int, str]]:
    """``<id> <value>`` lines (CUB's index files) as ``{id: (line number, value)}`` in file order;
    a line without a value or a repeated id raises :class:`MissingDataError` naming the line."""
    table: dict[str, tuple[int, str]] = {}
    for n, s in numbered_lines(path):
        parts = s.split(maxsplit=1)
        if len(parts) != 2 or parts[0] in table:
            problem = ("expected '<id> <value>'" if len(parts) != 2
                       else f"id {parts[0]} repeats line {table[parts[0]][0]}")
            raise MissingDataError(path, f"line {n}: {problem}, got {s!r}")
        table[parts[0]] = (n, parts[1])
    return table


def int_label(value, count: int, index: Path, line: int | str, what: str = "label", first: int = 0) -> int:
    """``value`` as an int label in ``first .. first + count - 1``; anything else (not an integer,
    out of range) raises :class:`MissingDataError` naming the index file, the line and the value."""
    try:  # text must spell an integer ("3", not "3.0"); numbers (.mat, pickles) must be whole
        v = int(value) if isinstance(value, str) else float(value)
        ok = math.isfinite(v) and v == int(v) and first <= int(v) < first + count
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        where = f"line {line}" if isinstance(line, int) else line
        raise MissingDataError(index, f"{where}: {what} {value!r} is not an integer in {first}..{first + count - 1}")
    return int(v)


def check_files(files: Sequence[Path], where: Path) -> None:
    """Every file of ``files`` exists (the error names the first missing one); none: ``where`` is empty."""
    if not files:
        raise MissingDataError(where, "no images found")
    for f in files:
        if not f.is_file():
            raise MissingDataError(f, "an image listed in the index is missing")


def check_labels(values, count: int, path: Path, key: str) -> None:
    """Every entry of the pickled list ``key`` of ``path`` is an integer label in ``0 .. count - 1``
    (a fast check on the array; the slow loop only finds and names the first bad entry)."""
    if not isinstance(values, (list, tuple, np.ndarray)):
        raise MissingDataError(path, f"{key!r} must be a list of integer labels, found {type(values).__name__}")
    y = np.asarray(values)
    if y.ndim == 1 and y.dtype.kind in "iu" and (y.size == 0 or (y.min() >= 0 and y.max() < count)):
        return
    for k, t in enumerate(values):
        int_label(t, count, path, f"{key}[{k}]")


def read_mat(path: Path, **kw) -> dict:
    """``scipy.io.loadmat(path)``; a file it cannot parse raises :class:`MissingDataError`."""
    from scipy.io import loadmat

    try:
        return loadmat(path, **kw)
    except Exception as e:  # scipy raises many kinds for a corrupt or foreign file
        raise MissingDataError(path, f"not a readable .mat file ({type(e).__name__}: {e})") from None


def mat_values(m: dict, key: str, path: Path) -> np.ndarray:
    """The numbers under ``key`` of a loaded .mat file, flattened."""
    v = np.ravel(m[key]) if key in m else None
    if v is None or v.dtype.kind not in "biuf":
        raise MissingDataError(path, f"the .mat file has no numeric array {key!r}")
    return v
