"""CSV reader: pandas' C engine for regular files, the csv module for the odd ones, row by row."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd

from bpo.readers.common import (
    NUL_BYTE,
    BadRow,
    FileRead,
    UnreadableFile,
    clip,
    extra_fields,
    require_mapped,
    result,
    too_long,
)
from bpo.readers.headers import Columns, match_columns
from bpo.readers.text import binary, text_plan, text_sample
from bpo.spec import ProcessSpec

_DELIMITERS = ",;\t|"
# Extra columns the fast CSV path reads past the header, to catch rows with a few fields too many.
_SPARE_COLUMNS = 8

# csv.field_size_limit is process-wide: hold this lock while it is lowered for one file.
_CSV_LIMIT_LOCK = threading.Lock()


def _first_record(sample: str, delimiter: str) -> list[str]:
    """The first non-blank record of the sample: the header."""
    try:
        for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
            if any(record):
                return record
    except csv.Error:
        pass
    return []


def _sniffed(sample: str) -> str | None:
    """csv.Sniffer's delimiter for the sample, if it has one."""
    try:
        return csv.Sniffer().sniff(sample[:8192], delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return None


def _choose_delimiter(sample: str, spec: ProcessSpec) -> str:
    """The delimiter under which the header names the most fields (the sniffer breaks ties)."""
    first_line = sample.lstrip("\ufeff\r\n").split("\n", 1)[0]
    present = [d for d in _DELIMITERS if d in first_line]
    if len(present) <= 1:
        return present[0] if present else ","
    sniffed = _sniffed(sample)
    scores = {d: (len(match_columns(_first_record(sample, d), spec).mapped), d == sniffed, d == ",") for d in present}
    return max(present, key=lambda d: scores[d])


def _lines_are_short(data: bytes, max_field_chars: int) -> bool:
    """Whether every line is shorter than max_field_chars bytes (no aligned newline-free block of half that)."""
    block = max(1, max_field_chars // 2)
    if len(data) < block:
        return True
    return all(data.find(b"\n", start, start + block) != -1 for start in range(0, len(data) - block + 1, block))


def _pandas_csv(data: bytes, codec: str, delimiter: str, columns: int) -> pd.DataFrame | None:
    """Every record (header included) as object columns 0..columns-1, NaN for empty; None if pandas refuses."""
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=delimiter,
            header=None,
            names=list(range(columns)),
            index_col=False,
            dtype=object,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            quotechar='"',
            engine="c",
            encoding=codec,
            encoding_errors="strict",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return None


def _record_spans(frame: pd.DataFrame, data: bytes, max_field_chars: int) -> np.ndarray | None:
    """Physical lines each parsed record spans; None when they do not add up to the file's lines."""
    if data.count(b"\r") != data.count(b"\r\n"):
        return None  # a lone CR ends a line for the csv module but not in this count
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    spans = np.ones(len(frame), dtype=np.int64)
    if len(frame) == lines:
        return spans
    # Quoted fields holding newlines: a record spans one line plus the newlines inside its fields.
    for column in frame.columns:
        cells = frame[column]
        if cells.notna().any():
            spans += cells.str.count("\n").fillna(0).to_numpy(dtype=np.int64)
    if int(spans.sum()) != lines:
        return None
    multiline = frame.loc[spans > 1]
    for column in multiline.columns:
        if multiline[column].str.len().max() > max_field_chars:
            return None
    return spans


def _line_texts(data: bytes, codec: str, spans: dict[int, int]) -> dict[int, str]:
    """The raw text of the records starting at the given lines ({first line: lines spanned})."""
    texts: dict[int, str] = {}
    pos, line = 0, 1
    for first in sorted(spans):
        while line < first:
            pos = data.find(b"\n", pos) + 1
            line += 1
        end = pos
        for _ in range(spans[first]):
            found = data.find(b"\n", end)
            end = len(data) if found == -1 else found + 1
        texts[first] = data[pos:end].decode(codec, errors="replace")
        pos, line = end, first + spans[first]
    return texts


def _csv_fast(
    data: bytes, codec: str, delimiter: str, header: list[str], mapped: dict[int, str], max_field_chars: int
) -> tuple[dict[int, np.ndarray], np.ndarray, list[BadRow]] | None:
    """Parse with pandas' C engine; None when the file is irregular and the careful path must decide."""
    if not header or b"\x00" in data or not _lines_are_short(data, max_field_chars):
        return None
    width = len(header)
    # The header row is read as data and spare columns are named, so a row with extra fields fills the
    # spares (or fails) instead of being silently cut or turned into an index.
    frame = _pandas_csv(data, codec, delimiter, width + _SPARE_COLUMNS)
    if frame is None or ["" if pd.isna(v) else v for v in frame.iloc[0, :width]] != header:
        return None
    spans = _record_spans(frame, data, max_field_chars)
    if spans is None:
        return None
    starts = (np.cumsum(spans) - spans + 1)[1:]
    missing = frame.iloc[1:, :width].isna().to_numpy()
    extra = frame.iloc[1:, width:].notna().to_numpy().any(axis=1)
    keep = ~(missing.all(axis=1) | extra)
    values: dict[int, np.ndarray] = {}
    for pos in mapped:
        column = np.asarray(np.where(missing[:, pos], None, frame[pos].to_numpy(dtype=object)[1:]), dtype=object)
        values[pos] = column if keep.all() else column[keep]
    bad_spans = {int(starts[i]): int(spans[i + 1]) for i in np.flatnonzero(extra)}
    raws = _line_texts(data, codec, bad_spans)
    bad_rows = [BadRow(first, clip(raws[first]), extra_fields(width)) for first in sorted(bad_spans)]
    return values, starts[keep], bad_rows


class _Lines:
    """Iterator over a text stream's lines that remembers the lines the current record used."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self._stream = stream
        self.count = 0
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._stream.readline()
        if not line:
            raise StopIteration
        self.count += 1
        self.taken.append(line)
        return line

    def take(self) -> str:
        """The raw text of the record just read."""
        raw = "".join(self.taken)
        self.taken.clear()
        return raw


def _unterminated(raw: str, delimiter: str) -> bool:
    """Whether a record ends inside a quoted field (the file was cut or a quote never closes)."""
    if '"' not in raw:
        return False
    try:
        for _ in csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_records(
    data: bytes, codec: str, delimiter: str, max_field_chars: int
) -> Iterator[tuple[int, str, list[str] | None]]:
    """(first line number, raw text, fields) of each record, fields None for a one-line record holding
    a field over the limit; call with _CSV_LIMIT_LOCK held."""
    lines = _Lines(io.TextIOWrapper(io.BytesIO(data), encoding=codec, errors="strict", newline=""))
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"')
    previous: tuple[int, str, list[str] | None] | None = None
    while True:
        start = lines.count + 1
        record: list[str] | None
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field limit" in str(exc) and len(lines.taken) > 1:
                # a quote opened there may never close: the rows after it cannot be told apart
                raise UnreadableFile(
                    f"{too_long(max_field_chars)} at row {start}; a quote opened there may never close"
                ) from exc
            if "field limit" in str(exc):
                # the reader dropped the rest of that one line and starts afresh on the next
                record = None
            else:
                raise UnreadableFile(f"malformed CSV at row {start}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise binary("CSV") from exc
        if previous is not None:
            yield previous
        previous = (start, lines.take(), record)
    if previous is not None:
        if _unterminated(previous[1], delimiter):
            raise UnreadableFile(
                f"unterminated quoted field starting at row {previous[0]}: the file looks truncated or corrupt"
            )
        yield previous


def _csv_slow(
    data: bytes, codec: str, delimiter: str, spec: ProcessSpec, max_field_chars: int
) -> tuple[Columns, dict[int, list[str | None]], list[int], list[BadRow]]:
    """Parse record by record with the csv module: exact line numbers, bad rows kept, sizes enforced."""
    columns: Columns | None = None
    values: dict[int, list[str | None]] = {}
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    with _CSV_LIMIT_LOCK:
        previous_limit = csv.field_size_limit(max_field_chars)
        try:
            for start, raw, record in _csv_records(data, codec, delimiter, max_field_chars):
                if record is None:
                    bad_rows.append(BadRow(start, clip(raw), too_long(max_field_chars)))
                    continue
                if not any(record):
                    continue
                if columns is None:
                    columns = match_columns(record, spec)
                    require_mapped(columns, spec)
                    values = {pos: [] for pos in columns.mapped}
                    continue
                width = len(columns.headers)
                if "\x00" in raw:
                    bad_rows.append(BadRow(start, clip(raw), NUL_BYTE))
                    continue
                if len(record) > width and any(record[width:]):
                    bad_rows.append(BadRow(start, clip(raw), extra_fields(width)))
                    continue
                for pos, column in values.items():
                    column.append((record[pos] or None) if pos < len(record) else None)
                rows.append(start)
        finally:
            csv.field_size_limit(previous_limit)
    if columns is None:
        raise UnreadableFile("empty file: no header row and no records", records=0)
    return columns, values, rows, bad_rows


def read_csv(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read a CSV file: pandas' C engine for regular files, the csv module for the odd ones."""
    encoding, codec, data = text_plan(data, "CSV")
    sample = text_sample(data, codec)
    delimiter = _choose_delimiter(sample, spec)
    header = _first_record(sample, delimiter)
    columns = match_columns(header, spec)
    if header:
        require_mapped(columns, spec)
    at_line_one = not sample.lstrip("\ufeff").startswith(("\r", "\n"))
    fast = _csv_fast(data, codec, delimiter, header, columns.mapped, max_field_chars) if at_line_one else None
    if fast is None:
        columns, slow_values, rows, bad_rows = _csv_slow(data, codec, delimiter, spec, max_field_chars)
        return result(name, "csv", encoding, columns, slow_values, rows, bad_rows, spec)
    fast_values, fast_rows, fast_bad = fast
    return result(name, "csv", encoding, columns, fast_values, fast_rows, fast_bad, spec)


