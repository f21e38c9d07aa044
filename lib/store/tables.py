"""The text format of DataFrame results: one ``#`` JSON header line, then plain CSV.

CSV keeps results readable by anything (no pickles); the header line restores what CSV loses
(dtypes, the index, column labels) and carries a SHA-256 of the CSV body, so a truncated file
raises :class:`~lib.store.files.CorruptArtifactError` instead of loading as a shorter table.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from lib.store.files import CorruptArtifactError
from lib.store.keys import to_json

_CSV_MAGIC = "# workbook-store "


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
    return _CSV_MAGIC + json.dumps(header, ensure_ascii=True) + "\n" + body


def dataframe_from_text(text: str, path: Path):
    """Inverse of :func:`dataframe_text`; dtypes restored where pandas can."""
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
