"""XLSX reader: every worksheet with a header row (or the one the spec names), formulas kept as text."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from bpo.readers.common import (
    BadRow,
    FileRead,
    UnreadableFile,
    clip,
    exc_text,
    no_headers_reason,
    result,
    too_long,
)
from bpo.readers.headers import Columns, match_columns
from bpo.spec import ProcessSpec

# A large part inflating more than this many times over is a zip bomb, not a sheet (real sheets, their
# cells differing at least by reference, compress some 5-30×); parts under the floor pass whatever their ratio.
_MAX_RATIO = 200
_RATIO_FLOOR = 32 * 1024 * 1024

def _cell_text(value: Any) -> str | None:
    """An XLSX cell as raw text: formulas as their text, integral numbers without ".0", dates in ISO."""
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() and value.tzinfo is None else value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    text = getattr(value, "text", None)  # ArrayFormula and DataTableFormula carry the formula as .text
    return str(text if text is not None else value)


def _xlsx_refusal(data: bytes) -> str | None:
    """Why bytes cannot be an XLSX package, judged from their first bytes."""
    if not data:
        return "empty file: 0 bytes"
    if data.startswith(b"%PDF"):
        return "not a readable XLSX workbook: the file is a PDF"
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "not a readable XLSX workbook: it is a legacy .xls or a password-protected workbook"
    if not data.startswith(b"PK"):
        return "not a readable XLSX workbook: the file is not a zip package"
    return None


def _row_text(values: Sequence[str | None]) -> str:
    """A sheet row as one CSV line, for BadRow.raw."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(["" if v is None else v for v in values])
    return out.getvalue()


def _check_inflated_size(data: bytes, max_decompressed_bytes: int) -> None:
    """Refuse a package whose declared sizes inflate past the cap, before openpyxl inflates any of it.

    zipfile never hands out more than a member's declared size (and fails its CRC if the size lied),
    so the declared sizes bound what reading the workbook can cost.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            members = package.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        return  # not a readable zip: openpyxl says what is wrong with it
    total = sum(m.file_size for m in members)
    if total > max_decompressed_bytes:
        raise UnreadableFile(
            f"workbook refused: it inflates to {total:,} bytes, past the {max_decompressed_bytes:,}-byte cap "
            "(BPO_MAX_DECOMPRESSED_BYTES)"
        )
    for member in members:
        if member.file_size > _RATIO_FLOOR and member.file_size > _MAX_RATIO * max(member.compress_size, 1):
            raise UnreadableFile(
                f"workbook refused: its part {member.filename[:80]!r} inflates "
                f"{member.file_size // max(member.compress_size, 1):,}-fold (a zip bomb, not a sheet)"
            )


def _texts(sheet: Any) -> Iterator[tuple[int, list[str | None]]]:
    """(row number, cell texts) of each row of a sheet that holds a value."""
    sheet.reset_dimensions()  # a stale <dimension> tag would otherwise hide rows
    for rownum, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
        texts = [_cell_text(v) for v in cells]
        if any(texts):
            yield rownum, texts


class _NoHeader:
    """A sheet whose first row names no field: its other rows, each quarantined with the reason."""

    def __init__(self, title: str, bare: str, rows: list[BadRow]) -> None:
        self.bare = bare  # the reason without the sheet's name
        self.reason = f"sheet {title!r}: {bare}"
        self.rows = [BadRow(b.row, b.raw, b.reason or self.reason, b.source) for b in rows]


def _read_sheet(source: str, sheet: Any, spec: ProcessSpec, max_field_chars: int) -> FileRead | _NoHeader | None:
    """Read one worksheet: its first non-empty row is the header, fully empty rows are skipped.

    None for a sheet with no value at all."""
    columns: Columns | None = None
    values: dict[int, list[str | None]] = {}
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    for rownum, texts in _texts(sheet):
        if columns is None:
            header = [t or "" for t in texts]
            while header and not header[-1].strip():
                header.pop()
            columns = match_columns(header, spec)
            values = {pos: [] for pos in columns.mapped}
            continue
        if any(len(t) > max_field_chars for t in texts if t):
            bad_rows.append(BadRow(rownum, clip(_row_text(texts)), too_long(max_field_chars), source))
            continue
        width = len(columns.headers)
        if any(texts[width:]):
            reason = f"values beyond the last header column ({get_column_letter(width)})"
            bad_rows.append(BadRow(rownum, clip(_row_text(texts)), reason, source))
            continue
        if not columns.mapped:
            bad_rows.append(BadRow(rownum, clip(_row_text(texts)), "", source))
            continue
        for pos, column in values.items():
            column.append(texts[pos] if pos < len(texts) else None)
        rows.append(rownum)
    if columns is None:
        return None
    if not columns.mapped:
        return _NoHeader(sheet.title, no_headers_reason(columns, spec), bad_rows)
    return result(source, "xlsx", None, columns, values, rows, bad_rows, spec)


def _stacked(frames: list[pd.DataFrame], spec: ProcessSpec) -> pd.DataFrame:
    """The sheets' records one under the other, fields in spec order; a field a sheet lacks is None."""
    frame = pd.concat(frames, ignore_index=True)
    fields = [f for f in spec.fields if f in frame.columns]
    frame = frame[[*fields, "_source_file", "_source_row"]]
    return frame.assign(**{f: frame[f].astype(object).where(frame[f].notna(), None) for f in fields})


def _sheets(workbook: Any, spec: ProcessSpec) -> tuple[list[Any], list[str]]:
    """The worksheets to read, and a note for each one passed over because the spec names another."""
    wanted = spec.intake.sheet
    if wanted is None:
        return list(workbook.worksheets), []
    chosen = [s for s in workbook.worksheets if s.title == wanted]
    if not chosen:
        titles = ", ".join(repr(s.title) for s in workbook.worksheets[:8])
        records = sum(max(0, sum(1 for _ in _texts(s)) - 1) for s in workbook.worksheets)
        raise UnreadableFile(f"the spec names sheet {wanted!r}; the workbook has {titles or 'no sheet'}", records)
    notes = [f"sheet {s.title!r} not read: the spec names sheet {wanted!r}" for s in workbook.worksheets
             if s.title != wanted]
    return chosen, notes


def _read_book(name: str, workbook: Any, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Every chosen sheet with a header row; a sheet without one has its rows quarantined with why."""
    if not workbook.worksheets:
        raise UnreadableFile("not a readable XLSX workbook: it has no worksheet", records=0)
    sheets, notes = _sheets(workbook, spec)
    reads: list[FileRead] = []
    headless: list[_NoHeader] = []
    for sheet in sheets:
        read = _read_sheet(f"{name}#{sheet.title}", sheet, spec, max_field_chars)
        if read is None:
            notes.append(f"sheet {sheet.title!r} is empty")
        elif isinstance(read, _NoHeader):
            headless.append(read)
        else:
            reads.append(read)
    if not reads:
        if not headless:
            raise UnreadableFile("empty file: no worksheet has data", records=0)
        if len(sheets) == 1:
            reason = headless[0].bare
        else:
            reason = "; ".join(h.reason for h in headless[:3]) + (" …" if len(headless) > 3 else "")
        raise UnreadableFile(reason, records=sum(len(h.rows) for h in headless))
    frame = reads[0].frame if len(reads) == 1 else _stacked([r.frame for r in reads], spec)
    return FileRead(
        name=name, format="xlsx", encoding=None, frame=frame,
        header_map={k: v for r in reads for k, v in r.header_map.items()},
        low_confidence=list(dict.fromkeys(f for r in reads for f in r.low_confidence)),
        unmapped=list(dict.fromkeys(h for r in reads for h in r.unmapped)),
        bad_rows=[*(b for r in reads for b in r.bad_rows), *(b for h in headless for b in h.rows)],
        notes=notes,
    )


def read_xlsx(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int, max_decompressed_bytes: int) -> FileRead:
    """Read an XLSX workbook with formulas kept as text (data_only=False), never evaluated.

    Records carry their sheet in ``_source_file`` (``book.xlsx#Sheet2``), so row numbers stay unique."""
    refusal = _xlsx_refusal(data)
    if refusal:
        raise UnreadableFile(refusal)
    _check_inflated_size(data, max_decompressed_bytes)
    # openpyxl signals a damaged package with many exception types (zip, XML, KeyError for missing parts).
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:
        raise UnreadableFile(f"not a readable XLSX workbook: {exc_text(exc)}") from exc
    try:
        return _read_book(name, workbook, spec, max_field_chars)
    except UnreadableFile:
        raise
    except Exception as exc:
        raise UnreadableFile(f"not a readable XLSX workbook: {exc_text(exc)}") from exc
    finally:
        workbook.close()
