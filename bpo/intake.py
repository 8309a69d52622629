"""Intake: turn one batch file (CSV, XLSX, JSON, JSON Lines) into raw strings under canonical field names.

Pure functions over bytes: no Prefect, no storage. Values are never typed or evaluated here; the
normalizers downstream decide what a value means. A file that cannot be taken in raises
``UnreadableFile`` with a one-line reason; single rows that cannot be parsed come back as ``BadRow``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import difflib
import io
import json
import re
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd
from charset_normalizer import from_bytes
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from pydantic import BaseModel

from bpo.run import RunContext, batch_name, get_store, put_json, put_parquet
from bpo.settings import get_settings
from bpo.spec import ProcessSpec
from bpo.store import StoredObject

SUPPORTED_SUFFIXES = (".csv", ".xlsx", ".json", ".jsonl", ".ndjson")
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_KIND = {"csv": "CSV", "json": "JSON", "jsonl": "JSON Lines"}

RAW_LIMIT = 2_000
FUZZY_CUTOFF = 0.85
_DELIMITERS = ",;\t|"
_SAMPLE_BYTES = 64 * 1024
_GUESS_BYTES = 1024 * 1024
_CHUNK_BYTES = 1024 * 1024
# Extra columns the fast CSV path reads past the header, to catch rows with a few fields too many.
_SPARE_COLUMNS = 8

# C0 control bytes that never appear in real text files (tab, newlines, form feed, VT and Ctrl-Z do).
_CONTROL = re.compile(rb"[\x01-\x08\x0e-\x19\x1b-\x1f]")
_HIGH_RUN = re.compile(rb"[\x80-\xff]{3,}")
# cp1252 bytes that are letters, and symbols that never sit inside a word of Western European text;
# a symbol between two letters means the bytes are really another code page (cp1250's "ł" is cp1252's "³").
_CP1252_LETTER = rb"[A-Za-z\x83\x8a\x8c\x8e\x9a\x9c\x9e\x9f\xaa\xb5\xba\xc0-\xd6\xd8-\xf6\xf8-\xff]"
_CP1252_SYMBOL = rb"[\x80\x86-\x89\x98\xa2-\xa8\xac\xaf\xb1-\xb3\xb6\xb8\xb9\xbc-\xbe\xd7\xf7]"
_SYMBOL_IN_WORD = re.compile(_CP1252_LETTER + _CP1252_SYMBOL + _CP1252_LETTER)
_CP1252_LIKE = frozenset({"cp1252", "latin_1", "iso8859_15"})
_BLANK = re.compile(rb"(?:\xef\xbb\xbf)?\s*")

_UTF_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

# csv.field_size_limit is process-wide: hold this lock while it is lowered for one file.
_CSV_LIMIT_LOCK = threading.Lock()


class UnreadableFile(Exception):
    """The file cannot be taken in; .reason says why in one line a person understands."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BadRow:
    """A row that could not be parsed; the caller quarantines it."""

    row: int
    raw: str
    reason: str


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


@dataclass(frozen=True)
class _Columns:
    """Header matching result by column position."""

    headers: list[str]
    mapped: dict[int, str]
    low_confidence: list[str]
    unmapped: list[int]


# ---------------------------------------------------------------------------- headers


def header_key(text: str) -> str:
    """Case-, space- and punctuation-insensitive key: "E-mail Address" -> "emailaddress"."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _field_keys(spec: ProcessSpec) -> dict[str, str]:
    """Every header key the spec knows (field names and synonyms) -> field name."""
    keys: dict[str, str] = {}
    for field in spec.fields.values():
        for text in (field.name, *field.synonyms):
            key = header_key(text)
            if key:
                keys.setdefault(key, field.name)
    return keys


def _match_columns(headers: Sequence[str], spec: ProcessSpec) -> _Columns:
    """Map header positions to fields: exact keys first, then fuzzy matches (best ratio first)."""
    keys = _field_keys(spec)
    mapped: dict[int, str] = {}
    pending: list[int] = []
    for pos, header in enumerate(headers):
        field = keys.get(header_key(header))
        if field is None:
            pending.append(pos)
        elif field not in mapped.values():
            mapped[pos] = field
    candidates: list[tuple[float, int, str]] = []
    for pos in pending:
        key = header_key(headers[pos])
        close = difflib.get_close_matches(key, list(keys), n=1, cutoff=FUZZY_CUTOFF) if key else []
        if close:
            ratio = difflib.SequenceMatcher(None, key, close[0]).ratio()
            candidates.append((-ratio, pos, keys[close[0]]))
    low_confidence: list[str] = []
    for _, pos, field in sorted(candidates):
        if field not in mapped.values():
            mapped[pos] = field
            low_confidence.append(field)
    unmapped = [pos for pos in range(len(headers)) if pos not in mapped]
    return _Columns(list(headers), mapped, low_confidence, unmapped)


def _header_label(headers: Sequence[str], pos: int) -> str:
    """The header as reported; a blank header is named by its column number."""
    return headers[pos] if headers[pos].strip() else f"(column {pos + 1}, no header)"


def match_headers(headers: list[str], spec: ProcessSpec) -> tuple[dict[str, str], list[str], list[str]]:
    """Match source headers to spec fields: (header_map, low-confidence fields, unmapped headers)."""
    columns = _match_columns(headers, spec)
    header_map = {headers[pos]: field for pos, field in columns.mapped.items()}
    return header_map, columns.low_confidence, [_header_label(headers, pos) for pos in columns.unmapped]


def _require_mapped(columns: _Columns, spec: ProcessSpec) -> None:
    """Refuse a file whose headers name none of the spec's fields."""
    if columns.mapped:
        return
    named = [h for h in columns.headers if h.strip()]
    found = ", ".join(repr(h[:40]) for h in named[:8]) + (" …" if len(named) > 8 else "")
    fields = sorted(spec.fields.values(), key=lambda f: not f.required)
    expected = ", ".join(f.name for f in fields[:5]) + (" …" if len(fields) > 5 else "")
    found_text = f"found {found}" if named else "the header row is blank"
    raise UnreadableFile(f"no recognizable headers: {found_text}; expected e.g. {expected}")


# ---------------------------------------------------------------------------- results


def _clip(raw: str) -> str:
    """A row's raw text as kept on a BadRow."""
    return raw.rstrip("\r\n")[:RAW_LIMIT]


def _extra_fields(width: int) -> str:
    """The reason for a CSV row with more fields than its header."""
    return f"more fields than the header's {width} columns"


def _too_long(max_field_chars: int, row: int, hint: str = "") -> UnreadableFile:
    """The error for a field over the size limit."""
    return UnreadableFile(f"field longer than {max_field_chars} characters at row {row}{hint}")


def _result(
    name: str,
    fmt: str,
    encoding: str | None,
    columns: _Columns,
    values: dict[int, Sequence[str | None]],
    rows: Sequence[int],
    bad_rows: list[BadRow],
    spec: ProcessSpec,
) -> FileRead:
    """Assemble the FileRead: mapped columns in spec order, then _source_file and _source_row."""
    order = list(spec.fields)
    data: dict[str, pd.Series] = {}
    for pos, field in sorted(columns.mapped.items(), key=lambda item: order.index(item[1])):
        data[field] = pd.Series(values[pos], dtype=object)
    data["_source_file"] = pd.Series(np.full(len(rows), name, dtype=object), dtype=object)
    data["_source_row"] = pd.Series(np.asarray(rows, dtype=np.int64), dtype=np.int64)
    header_map = {columns.headers[pos]: field for pos, field in columns.mapped.items()}
    unmapped = [_header_label(columns.headers, pos) for pos in columns.unmapped]
    return FileRead(name, fmt, encoding, pd.DataFrame(data), header_map, columns.low_confidence, unmapped, bad_rows)


# ---------------------------------------------------------------------------- encodings


def _binary(kind: str) -> UnreadableFile:
    """The error for bytes that are not text."""
    return UnreadableFile(f"binary content, not a text {kind} file")


def _decodes(data: bytes, codec: str) -> bool:
    """Whether all of data decodes strictly, checked in chunks so no full copy of the text is made."""
    if codec in ("utf-8", "utf-8-sig", "cp1252") and data.isascii():
        return True
    decoder = codecs.getincrementaldecoder(codec)("strict")
    view = memoryview(data)
    try:
        for start in range(0, len(view), _CHUNK_BYTES):
            decoder.decode(view[start : start + _CHUNK_BYTES], final=False)
        decoder.decode(b"", final=True)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _western(data: bytes) -> bool:
    """Whether data reads as Western European text in cp1252 (short samples fool charset-normalizer)."""
    sample = data[:_GUESS_BYTES]
    if _HIGH_RUN.search(sample) or _SYMBOL_IN_WORD.search(sample):
        return False
    return _decodes(data, "cp1252")


def _guess_encoding(data: bytes, kind: str) -> str:
    """charset-normalizer's best guess, passing over cp1252 look-alikes: the bytes already failed as cp1252."""
    guesses = [match.encoding for match in from_bytes(data[:_GUESS_BYTES])]
    ranked = [g for g in guesses if g not in _CP1252_LIKE] + [g for g in guesses if g in _CP1252_LIKE]
    for encoding in ranked:
        if _decodes(data, encoding):
            return encoding
    raise _binary(kind)


def _text_plan(data: bytes, kind: str) -> tuple[str, str, bytes]:
    """Pick the text encoding: (encoding to report, codec to parse with, bytes to parse)."""
    for bom, encoding in _UTF_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as exc:
                raise _binary(kind) from exc
            utf8 = text.encode("utf-8")
            _check_text_bytes(utf8, kind)
            return encoding, "utf-8", utf8
    if b"\x00" in data:
        raise _binary(kind)
    if data.startswith(codecs.BOM_UTF8) and _decodes(data, "utf-8"):
        encoding = "utf-8-sig"
    elif _decodes(data, "utf-8"):
        encoding = "utf-8"
    elif _western(data):
        encoding = "cp1252"
    else:
        encoding = _guess_encoding(data, kind)
    _check_text_bytes(data, kind)
    return encoding, encoding, data


def _check_text_bytes(data: bytes, kind: str) -> None:
    """Refuse empty text and text full of control bytes."""
    if _BLANK.fullmatch(data):
        raise UnreadableFile("empty file: no header row and no records")
    sample = data[:_SAMPLE_BYTES]
    if b"\x00" in sample or len(_CONTROL.findall(sample)) > 2 + len(sample) // 100:
        raise _binary(kind)


def _text_sample(data: bytes, codec: str) -> str:
    """The first few KB of the file as text (a character cut at the end is left out)."""
    return codecs.getincrementaldecoder(codec)("replace").decode(data[:_SAMPLE_BYTES], final=False)


# ---------------------------------------------------------------------------- CSV


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
    scores = {d: (len(_match_columns(_first_record(sample, d), spec).mapped), d == sniffed, d == ",") for d in present}
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
    if not header or not _lines_are_short(data, max_field_chars):
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
        column = np.where(missing[:, pos], None, frame[pos].to_numpy(dtype=object)[1:])
        values[pos] = column if keep.all() else column[keep]
    bad_spans = {int(starts[i]): int(spans[i + 1]) for i in np.flatnonzero(extra)}
    raws = _line_texts(data, codec, bad_spans)
    bad_rows = [BadRow(first, _clip(raws[first]), _extra_fields(width)) for first in sorted(bad_spans)]
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


def _csv_records(data: bytes, codec: str, delimiter: str, max_field_chars: int) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, raw text, fields) of each record; call with _CSV_LIMIT_LOCK held."""
    lines = _Lines(io.TextIOWrapper(io.BytesIO(data), encoding=codec, errors="strict", newline=""))
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"')
    previous: tuple[int, str, list[str]] | None = None
    while True:
        start = lines.count + 1
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "field limit" in str(exc):
                hint = "; a quote opened there may never close" if len(lines.taken) > 1 else ""
                raise _too_long(max_field_chars, start, hint) from exc
            raise UnreadableFile(f"malformed CSV at row {start}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise _binary("CSV") from exc
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
) -> tuple[_Columns, dict[int, list[str | None]], list[int], list[BadRow]]:
    """Parse record by record with the csv module: exact line numbers, bad rows kept, sizes enforced."""
    columns: _Columns | None = None
    values: dict[int, list[str | None]] = {}
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    with _CSV_LIMIT_LOCK:
        previous_limit = csv.field_size_limit(max_field_chars)
        try:
            for start, raw, record in _csv_records(data, codec, delimiter, max_field_chars):
                if not any(record):
                    continue
                if columns is None:
                    columns = _match_columns(record, spec)
                    _require_mapped(columns, spec)
                    values = {pos: [] for pos in columns.mapped}
                    continue
                width = len(columns.headers)
                if len(record) > width and any(record[width:]):
                    bad_rows.append(BadRow(start, _clip(raw), _extra_fields(width)))
                    continue
                for pos, column in values.items():
                    column.append((record[pos] or None) if pos < len(record) else None)
                rows.append(start)
        finally:
            csv.field_size_limit(previous_limit)
    if columns is None:
        raise UnreadableFile("empty file: no header row and no records")
    return columns, values, rows, bad_rows


def _read_csv(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read a CSV file: pandas' C engine for regular files, the csv module for the odd ones."""
    encoding, codec, data = _text_plan(data, "CSV")
    sample = _text_sample(data, codec)
    delimiter = _choose_delimiter(sample, spec)
    header = _first_record(sample, delimiter)
    columns = _match_columns(header, spec)
    if header:
        _require_mapped(columns, spec)
    at_line_one = not sample.lstrip("\ufeff").startswith(("\r", "\n"))
    fast = _csv_fast(data, codec, delimiter, header, columns.mapped, max_field_chars) if at_line_one else None
    if fast is None:
        columns, slow_values, rows, bad_rows = _csv_slow(data, codec, delimiter, spec, max_field_chars)
        return _result(name, "csv", encoding, columns, slow_values, rows, bad_rows, spec)
    fast_values, fast_rows, fast_bad = fast
    return _result(name, "csv", encoding, columns, fast_values, fast_rows, fast_bad, spec)


# ---------------------------------------------------------------------------- XLSX


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


def _read_sheet(name: str, workbook: Any, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read the first worksheet: first non-empty row is the header, fully empty rows are skipped."""
    if not workbook.worksheets:
        raise UnreadableFile("not a readable XLSX workbook: it has no worksheet")
    sheet = workbook.worksheets[0]
    sheet.reset_dimensions()  # a stale <dimension> tag would otherwise hide rows
    columns: _Columns | None = None
    values: dict[int, list[str | None]] = {}
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    for rownum, cells in enumerate(sheet.iter_rows(values_only=True), start=1):
        texts = [_cell_text(v) for v in cells]
        if not any(texts):
            continue
        if any(len(t) > max_field_chars for t in texts if t):
            raise _too_long(max_field_chars, rownum)
        if columns is None:
            header = [t or "" for t in texts]
            while header and not header[-1].strip():
                header.pop()
            columns = _match_columns(header, spec)
            _require_mapped(columns, spec)
            values = {pos: [] for pos in columns.mapped}
            continue
        width = len(columns.headers)
        if any(texts[width:]):
            reason = f"values beyond the last header column ({get_column_letter(width)})"
            bad_rows.append(BadRow(rownum, _clip(_row_text(texts)), reason))
            continue
        for pos, column in values.items():
            column.append(texts[pos] if pos < len(texts) else None)
        rows.append(rownum)
    if columns is None:
        raise UnreadableFile("empty file: the first worksheet has no data")
    return _result(name, "xlsx", None, columns, values, rows, bad_rows, spec)


def _read_xlsx(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read an XLSX workbook with formulas kept as text (data_only=False), never evaluated."""
    refusal = _xlsx_refusal(data)
    if refusal:
        raise UnreadableFile(refusal)
    # openpyxl signals a damaged package with many exception types (zip, XML, KeyError for missing parts).
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception as exc:
        raise UnreadableFile(f"not a readable XLSX workbook: {_exc_text(exc)}") from exc
    try:
        return _read_sheet(name, workbook, spec, max_field_chars)
    except UnreadableFile:
        raise
    except Exception as exc:
        raise UnreadableFile(f"not a readable XLSX workbook: {_exc_text(exc)}") from exc
    finally:
        workbook.close()


def _exc_text(exc: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


# ---------------------------------------------------------------------------- JSON


class _Number(str):
    """A JSON number kept as its source text."""


def _plain(value: Any) -> Any:
    """A parsed JSON value with _Number turned back into numbers, for re-serializing nested values."""
    if isinstance(value, _Number):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str | None:
    """A JSON value as raw text: strings as-is, numbers as written, nested values as JSON."""
    if value is None:
        return None
    if isinstance(value, str):  # includes _Number, which keeps the number's source text
        return str(value) or None
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(_plain(value), ensure_ascii=False)


def _json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's message without a dangling "at" ("Unterminated string starting at")."""
    return exc.msg.removesuffix(" at")


def _loads(text: str) -> Any:
    """json.loads keeping numbers as their source text."""
    return json.loads(text, parse_int=_Number, parse_float=_Number)


def _json_array(doc: Any) -> list[Any]:
    """The records of a JSON document: a top-level array, or the one array inside a top-level object."""
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        arrays = [key for key, value in doc.items() if isinstance(value, list)]
        if len(arrays) == 1:
            return doc[arrays[0]]
        keys = ", ".join(repr(k) for k in (arrays or list(doc))[:5])
        what = f"several arrays ({keys})" if arrays else f"no array (keys: {keys or 'none'})"
        raise UnreadableFile(f"expected a JSON array of records or an object holding one; found an object with {what}")
    raise UnreadableFile(f"expected a JSON array of records; found a single {type(doc).__name__} value")


def _records_result(
    name: str,
    fmt: str,
    encoding: str,
    objects: list[dict[str, Any]],
    rows: list[int],
    bad_rows: list[BadRow],
    spec: ProcessSpec,
    max_field_chars: int,
) -> FileRead:
    """Build the FileRead for JSON objects: the keys seen (first-seen order) are the headers."""
    headers = list(dict.fromkeys(key for obj in objects for key in obj))
    columns = _match_columns(headers, spec)
    if headers:
        _require_mapped(columns, spec)
    values: dict[int, list[str | None]] = {}
    for pos in columns.mapped:
        key = headers[pos]
        column = [_json_text(obj.get(key)) for obj in objects]
        for text, row in zip(column, rows, strict=True):
            if text is not None and len(text) > max_field_chars:
                raise _too_long(max_field_chars, row)
        values[pos] = column
    return _result(name, fmt, encoding, columns, values, rows, bad_rows, spec)


def _read_json(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read a JSON file holding an array of objects (optionally wrapped in a one-array object)."""
    encoding, codec, data = _text_plan(data, "JSON")
    try:
        doc = _loads(data.decode(codec))
    except json.JSONDecodeError as exc:
        hint = " (one JSON value per line? name the file .jsonl)" if exc.msg == "Extra data" else ""
        raise UnreadableFile(
            f"not valid JSON (truncated or corrupt): {_json_error(exc)} at line {exc.lineno}, column {exc.colno}{hint}"
        ) from exc
    except RecursionError as exc:
        raise UnreadableFile("not valid JSON: nested too deeply") from exc
    objects: list[dict[str, Any]] = []
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    items = _json_array(doc)
    for index, item in enumerate(items, start=1):
        if isinstance(item, dict):
            objects.append(item)
            rows.append(index)
        else:
            bad_rows.append(BadRow(index, _clip(json.dumps(_plain(item), ensure_ascii=False)), "not a JSON object"))
    if items and not objects:
        raise UnreadableFile(f"expected an array of JSON objects; none of its {len(items)} items is an object")
    return _records_result(name, "json", encoding, objects, rows, bad_rows, spec, max_field_chars)


def _read_jsonl(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read JSON Lines: one object per line, blank lines skipped, bad lines kept as BadRow."""
    encoding, codec, data = _text_plan(data, "JSON Lines")
    objects: list[dict[str, Any]] = []
    rows: list[int] = []
    bad_rows: list[BadRow] = []
    # split on "\n" only: str.splitlines would also split on U+2028, which is legal inside JSON strings
    for lineno, line in enumerate(data.decode(codec).split("\n"), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            item = _loads(text)
        except json.JSONDecodeError as exc:
            bad_rows.append(BadRow(lineno, _clip(line), f"not valid JSON: {_json_error(exc)} at column {exc.colno}"))
            continue
        except RecursionError:
            bad_rows.append(BadRow(lineno, _clip(line), "not valid JSON: nested too deeply"))
            continue
        if isinstance(item, dict):
            objects.append(item)
            rows.append(lineno)
        else:
            bad_rows.append(BadRow(lineno, _clip(line), "not a JSON object"))
    if bad_rows and not objects:
        first = bad_rows[0]
        raise UnreadableFile(f"no line is a JSON object (line {first.row}: {first.reason})")
    return _records_result(name, "jsonl", encoding, objects, rows, bad_rows, spec, max_field_chars)


# ---------------------------------------------------------------------------- entry point

_READERS = {"csv": _read_csv, "xlsx": _read_xlsx, "json": _read_json, "jsonl": _read_jsonl}


def read_batch_file(name: str, data: bytes, spec: ProcessSpec, *, max_field_chars: int = 100_000) -> FileRead:
    """Read one batch file's bytes into raw string values under the spec's field names."""
    suffix = PurePath(name).suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        expected = ", ".join(SUPPORTED_SUFFIXES)
        what = f"unsupported file type {suffix!r}" if suffix else "file name has no extension"
        raise UnreadableFile(f"{what}; expected one of {expected}")
    if not data:
        raise UnreadableFile("empty file: 0 bytes")
    return _READERS[fmt](name, data, spec, max_field_chars)


# ---------------------------------------------------------------------------- the batch's files

class Source(BaseModel):
    """One file of a batch: a local path or an S3 key, and its name within the batch."""

    name: str
    path: str | None = None
    key: str | None = None


def list_inputs(run: RunContext) -> list[Source]:
    """The batch's files: a local folder's, or an S3 prefix's (in the artifacts bucket)."""
    store = get_store()
    if run.batch.startswith("s3://") or not Path(run.batch).exists():
        prefix = run.batch.removeprefix(f"s3://{store.bucket}/").rstrip("/") + "/"
        if run.batch.startswith("s3://") and not run.batch.startswith(f"s3://{store.bucket}/"):
            raise ValueError(f"batch {run.batch!r} is not in the artifacts bucket {store.bucket!r}")
        keys = store.list_keys(prefix)
        if not keys:
            raise FileNotFoundError(f"batch {run.batch!r} is neither a local folder nor an S3 prefix with files")
        return [Source(name=key[len(prefix):], key=key) for key in keys]
    folder = Path(run.batch)
    if not folder.is_dir():
        raise NotADirectoryError(f"batch {run.batch!r} is not a folder")
    return [Source(name=path.relative_to(folder).as_posix(), path=str(path))
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))]


def stage_input(run: RunContext, source: Source) -> tuple[bytes, StoredObject]:
    """Copy one input file into the run's ``raw/`` folder; returns its bytes and the stored copy."""
    store = get_store()
    data = Path(source.path).read_bytes() if source.path else store.get_bytes(str(source.key))
    return data, store.put_bytes(run.key("raw", source.name), data)


def quarantine(run: RunContext, name: str, data: bytes, reason: str) -> list[StoredObject]:
    """Put an unreadable file (or the rows of one) in ``quarantine/<process>/<batch>/`` beside its reason."""
    store = get_store()
    base = store.key("quarantine", run.process, batch_name(run.batch), name)
    note = {"file": name, "reason": reason, "flow_run_id": run.flow_run_id, "batch": run.batch,
            "at": dt.datetime.now(dt.UTC).isoformat()}
    return [store.put_bytes(base, data), put_json(store, base + ".reason.json", note)]


class FileTaken(BaseModel):
    """One input file after intake: its raw record parts, or why it was quarantined."""

    name: str
    staged: StoredObject  # the file as received, under the run's raw/
    records: int = 0
    parts: list[tuple[str, int]] = []  # (raw parquet key, rows)
    bad_rows: int = 0
    quarantined: str | None = None
    low_confidence: list[str] = []
    unmapped: list[str] = []
    objects: list[StoredObject] = []


def chunk_bounds(rows: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of ``rows`` records: ``size`` each, and a remainder under half a chunk
    joins the last one (a small tail chunk costs a task, a validation and a load of its own, and
    normalizes slower per record: fewer of its values repeat)."""
    starts = list(range(0, rows, size))
    if not starts:
        return []
    if len(starts) > 1 and rows - starts[-1] < size // 2:
        starts.pop()
    return list(zip(starts, [*starts[1:], rows], strict=True))


def take_in(run: RunContext, spec: ProcessSpec, source: Source) -> FileTaken:
    """Stage one input file, read it into raw-record parts; an unreadable file or row goes to quarantine."""
    store = get_store()
    name = source.name
    data, staged = stage_input(run, source)
    try:
        read = read_batch_file(name, data, spec)
    except UnreadableFile as exc:
        return FileTaken(name=name, quarantined=exc.reason, staged=staged,
                         objects=quarantine(run, name, data, exc.reason))
    objects: list[StoredObject] = []
    if read.bad_rows:
        lines = "\n".join(json.dumps({"row": b.row, "reason": b.reason, "raw": b.raw}) for b in read.bad_rows)
        objects += quarantine(run, f"{name}.bad-rows.jsonl", lines.encode(),
                              f"{len(read.bad_rows)} row(s) could not be parsed; see each line's reason")
    frame = read.frame.reset_index(drop=True)
    parts: list[tuple[str, int]] = []
    for i, (start, end) in enumerate(chunk_bounds(len(frame), get_settings().chunk_rows)):
        stored = put_parquet(store, run.key("records", "raw", f"{name}.part-{i:04d}.parquet"), frame.iloc[start:end])
        objects.append(stored)
        parts.append((stored.key, end - start))
    return FileTaken(name=name, records=len(frame), parts=parts, bad_rows=len(read.bad_rows), staged=staged,
                     low_confidence=read.low_confidence, unmapped=read.unmapped, objects=objects)
