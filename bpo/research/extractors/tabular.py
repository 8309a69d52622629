"""Tables, wherever they come from: HTML and PDF tables, CSV files, SQL result sets.

A table is read one of two ways. Label/value rows ("Phone | +44 …") give the value beside each
label. A header row whose cells name fields makes every other row one record: its values sit under
the headers, and the row's own cells (an identifier, a name) say which subject it is about.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Sequence

from bpo.research.extractors.common import ExtractError, Finding, Vocabulary, snippet, squash
from bpo.research.model import Method


@dataclasses.dataclass(frozen=True)
class Cell:
    text: str
    # where the cell is, or how to tell (an HTML cell's CSS path is worked out only for a value read)
    place: str | Callable[[], str]
    header: bool = False  # a <th>, or a header row the format itself declares (CSV, SQL)

    @property
    def where(self) -> str:
        return self.place if isinstance(self.place, str) else self.place()


def read_table(rows: Sequence[Sequence[Cell]], vocab: Vocabulary, method: Method) -> list[Finding]:
    """Findings from one table: label/value rows, or a header row over one record per row."""
    rows = [row for row in rows if any(c.text.strip() for c in row)]
    if not rows:
        return []
    first = rows[0]
    header_fields = [vocab.field_of(c.text) for c in first]
    label_rows = sum(1 for row in rows if len(row) >= 2 and vocab.field_of(row[0].text) and row[1].text.strip())
    declared = len(first) >= 2 and all(c.header for c in first)
    if declared or (not any(c.header for row in rows for c in row) and sum(map(bool, header_fields)) > label_rows):
        return _records(rows, vocab, method)
    findings = []
    for row in rows:
        if len(row) < 2:
            continue
        field = vocab.field_of(row[0].text)
        value = squash(row[1].text)
        if field and value:
            findings.append(Finding(field, value, method, row[1].where, snippet(" ".join(c.text for c in row), value)))
    return findings


def _records(rows: Sequence[Sequence[Cell]], vocab: Vocabulary, method: Method) -> list[Finding]:
    headers = [squash(c.text) for c in rows[0]]
    fields = [vocab.field_of(h) for h in headers]
    findings = []
    for row in rows[1:]:
        cells = {h: squash(c.text) for h, c in zip(headers, row, strict=False) if h}
        text = " ".join(c.text for c in row)
        for field, cell in zip(fields, row, strict=False):
            value = squash(cell.text)
            if field and value:
                findings.append(Finding(field, value, method, cell.where, snippet(text, value), row=cells))
    return findings


def _grid(header: Sequence[str], records: Sequence[Sequence[object]], first: int) -> list[list[Cell]]:
    """A declared header row over records, each cell placed "row N, column C", records numbered from ``first``."""
    head = [Cell(h, f"column {h}", header=True) for h in header]
    body = [[Cell("" if v is None else str(v), f"row {n}, column {h}") for h, v in zip(header, record, strict=False)]
            for n, record in enumerate(records, start=first)]
    return [head, *body]


def read_csv(text: str, vocab: Vocabulary) -> list[Finding]:
    """A CSV file: the first line names the columns, every other line is one record.

    "row N" is the row as a spreadsheet numbers it, the header being row 1, so the first record is row 2.
    """
    try:
        sample = text[:4096]
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel  # one column, or too little to tell: plain commas
    try:
        lines = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as exc:
        raise ExtractError(f"not a readable CSV file: {exc}") from None
    if not lines:
        return []
    return read_table(_grid(lines[0], lines[1:], first=2), vocab, "csv")


def read_sql(text: str, vocab: Vocabulary) -> list[Finding]:
    """A query's result as gathering writes it: ``{"columns": [...], "rows": [[...], ...]}``; "row N" is
    the result's Nth row."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ExtractError(f"a SQL result is JSON; this is not ({exc.__class__.__name__})") from None
    columns = data.get("columns") if isinstance(data, dict) else None
    records = data.get("rows") if isinstance(data, dict) else None
    if not (isinstance(columns, list) and isinstance(records, list) and all(isinstance(r, list) for r in records)):
        raise ExtractError('a SQL result is {"columns": [...], "rows": [[...], ...]}')
    return read_table(_grid([str(c) for c in columns], records, first=1), vocab, "sql")
