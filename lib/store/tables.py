"""The text format of DataFrame results: one ``#`` JSON header line, then plain CSV.

CSV keeps results readable by anything (no pickles); the header line restores what CSV loses
(dtypes, the index, column labels) and carries a SHA-256 of the CSV body and one of the header
itself (``meta_sha256``, absent from files written before issue 33), so a truncated or edited file
raises :class:`~lib.store.files.CorruptArtifactError` instead of loading as another table.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from lib.store.files import CorruptArtifactError, rebuild_hint
from lib.store.keys import json_digest, to_json

CSV_MAGIC = "# workbook-store "
# what the header line holds besides the store's own entries (format, name, hash, config, saved_at)
CSV_KEYS = ("columns", "dtypes", "index_levels", "index_names", "rows", "sha256")


def dataframe_text(df, header: dict) -> str:
    """A DataFrame as one ``#`` JSON header line (dtypes, index, checksum) + plain CSV."""
    import pandas as pd

    if isinstance(df.columns, pd.MultiIndex):
        raise ValueError("save_result: flatten MultiIndex columns before storing a DataFrame")
    default_index = (
        isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1
        and df.index.name is None
    )
    index_names = None if default_index else [to_json(n) for n in df.index.names]
    flat = df if default_index else df.reset_index()
    body = flat.to_csv(index=False, lineterminator="\n")
    header = {
        **header,
        "columns": to_json(list(flat.columns)),
        "dtypes": [str(t) for t in flat.dtypes],
        "index_levels": 0 if default_index else df.index.nlevels,
        "index_names": index_names,
        "rows": len(flat),
        "sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
    }
    header["meta_sha256"] = json_digest(header)
    return CSV_MAGIC + json.dumps(header, ensure_ascii=True) + "\n" + body


def dataframe_from_text(text: str, path: Path):
    """Inverse of :func:`dataframe_text`: ``(frame, header)``, dtypes restored where pandas can.
    Checks the body's checksum and the header's (where the file has one); the caller checks that
    the header's name and config are those of the key."""
    first, _, body = text.partition("\n")
    try:
        header = json.loads(first[len(CSV_MAGIC):]) if first.startswith(CSV_MAGIC) else None
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or not set(CSV_KEYS) <= set(header):
        raise CorruptArtifactError(f"{path} has no readable store header; {rebuild_hint(path)}")
    sealed = header.pop("meta_sha256", None)
    if hashlib.sha256(body.encode("utf-8")).hexdigest() != header["sha256"]:
        raise CorruptArtifactError(f"{path} fails its checksum (truncated?); {rebuild_hint(path)}")
    if sealed is not None and json_digest(header) != sealed:
        raise CorruptArtifactError(f"{path} fails its header checksum (edited?); {rebuild_hint(path)}")
    try:
        frame = _frame(body, header)
    except (KeyError, TypeError, ValueError, IndexError) as error:  # a header that does not fit the body
        raise CorruptArtifactError(f"{path} has a header that does not fit its table ({error!r}); "
                                   f"{rebuild_hint(path)}") from error
    if len(frame) != header["rows"]:
        raise CorruptArtifactError(f"{path} holds {len(frame)} rows, its header says {header['rows']}; "
                                   f"{rebuild_hint(path)}")
    return frame, header


def _frame(body: str, header: dict):
    """The DataFrame of a CSV ``body`` with the dtypes, labels and index its ``header`` records."""
    import pandas as pd

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
