"""Files the product writes for people to open (CSV, XLSX), with every cell made inert.

Client data ends up in these cells. A spreadsheet runs a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula (and tab or CR can smuggle one in), so such text is written with a
leading ``'``: shown as text, never evaluated (OWASP "CSV injection"). One neutralizer for both
formats, so the two cannot drift apart.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMATS = (".csv", ".xlsx")


def neutralize(text: str) -> str:
    """``text`` as a spreadsheet shows it but never runs it."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def cell(value: Any) -> str | int | float | bool | datetime | None:
    """One value as a cell: numbers and times as themselves, everything else as neutralized text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        return value
    if isinstance(value, Decimal):
        return str(value)  # a number's own digits, never a formula
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False, default=str)
    return neutralize(str(value))


def write_table(path: Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write a header and rows to ``path`` as CSV or XLSX (by its suffix); return the number of rows."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot export to {path.name}: the file must end in {' or '.join(FORMATS)}")
    header = [cell(c) for c in columns]
    count = 0
    if suffix == ".csv":
        # utf-8 with a BOM: the encoding spreadsheet programs recognize on opening
        with path.open("w", newline="", encoding="utf-8-sig") as f:
            return write_csv(f, columns, rows)
    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    sheet.append(header)
    for row in rows:
        sheet.append([_xlsx(v) for v in map(cell, row)])
        count += 1
    book.save(path)
    return count


def write_csv(f: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """A header and rows as CSV into ``f``, every cell neutralized; return the number of rows."""
    writer = csv.writer(f)
    writer.writerow([cell(c) for c in columns])
    count = 0
    for row in rows:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, datetime) else v for v in map(cell, row)])
        count += 1
    return count


def _xlsx(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)  # Excel has no time zones: UTC, as the column says
    if isinstance(value, str):
        # control characters XML cannot hold are written as visible escapes, not dropped
        return ILLEGAL_CHARACTERS_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return value
