"""What every reader shares: the error for a file that cannot be read, bad rows, the read result."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpo.readers.headers import Columns, header_label
from bpo.spec import ProcessSpec

RAW_LIMIT = 2_000


class UnreadableFile(Exception):
    """The file cannot be taken in; .reason says why in one line a person understands.

    .records is how many records the file holds when the reader could tell (a workbook whose sheets
    name no field still has rows); None leaves the counting to ``bpo.readers.count_records``.
    """

    def __init__(self, reason: str, records: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.records = records


@dataclass(frozen=True)
class BadRow:
    """A row that could not be parsed; the caller quarantines it. ``source`` names a workbook's sheet."""

    row: int
    raw: str
    reason: str
    source: str | None = None


@dataclass(frozen=True)
class FileRead:
    """One file taken in: raw string values under canonical field names, plus what was left out."""

    name: str
    format: str
    encoding: str | None
    frame: pd.DataFrame
    header_map: dict[str, str]
    low_confidence: list[str]
    unmapped: list[str]
    bad_rows: list[BadRow]
    # parts of the file that hold no records and were passed over, each with why (an empty sheet)
    notes: list[str] = field(default_factory=list)


def clip(raw: str) -> str:
    """A row's raw text as kept on a BadRow."""
    return raw.rstrip("\r\n")[:RAW_LIMIT]


def extra_fields(width: int) -> str:
    """The reason for a CSV row with more fields than its header."""
    return f"more fields than the header's {width} columns"


def too_long(max_field_chars: int) -> str:
    """The reason for a row holding a field over the size limit."""
    return f"field longer than {max_field_chars} characters"


NUL_BYTE = "stray NUL byte in the row"


def require_mapped(columns: Columns, spec: ProcessSpec, records: int | None = None) -> None:
    """Refuse a file whose headers name none of the spec's fields."""
    if columns.mapped:
        return
    raise UnreadableFile(no_headers_reason(columns, spec), records)


def no_headers_reason(columns: Columns, spec: ProcessSpec) -> str:
    """Why a header row names no field: what it holds and what the spec expects."""
    named = [h for h in columns.headers if h.strip()]
    found = ", ".join(repr(h[:40]) for h in named[:8]) + (" …" if len(named) > 8 else "")
    fields = sorted(spec.fields.values(), key=lambda f: not f.required)
    expected = ", ".join(f.name for f in fields[:5]) + (" …" if len(fields) > 5 else "")
    found_text = f"found {found}" if named else "the header row is blank"
    return f"no recognizable headers: {found_text}; expected e.g. {expected}"


def result(
    name: str,
    fmt: str,
    encoding: str | None,
    columns: Columns,
    values: Mapping[int, Sequence[str | None] | np.ndarray],
    rows: Sequence[int] | np.ndarray,
    bad_rows: list[BadRow],
    spec: ProcessSpec,
) -> FileRead:
    """Assemble the FileRead: mapped columns in spec order, then _source_file and _source_row."""
    order = list(spec.fields)
    data: dict[str, pd.Series] = {}
    for pos, field_name in sorted(columns.mapped.items(), key=lambda item: order.index(item[1])):
        data[field_name] = pd.Series(values[pos], dtype=object)
    data["_source_file"] = pd.Series(np.full(len(rows), name, dtype=object), dtype=object)
    data["_source_row"] = pd.Series(np.asarray(rows, dtype=np.int64), dtype=np.int64)
    header_map = {columns.headers[pos]: f for pos, f in columns.mapped.items()}
    unmapped = [header_label(columns.headers, pos) for pos in columns.unmapped]
    return FileRead(name, fmt, encoding, pd.DataFrame(data), header_map, columns.low_confidence, unmapped, bad_rows)


def exc_text(exc: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
