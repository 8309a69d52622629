"""Readers: turn one batch file (CSV, XLSX, JSON, JSON Lines) into raw strings under canonical field names.

Pure functions over bytes: no Prefect, no storage; one module per format. Values are never typed or
evaluated here; the normalizers downstream decide what a value means. A file that cannot be taken in
raises ``UnreadableFile`` with a one-line reason; single rows that cannot be parsed (a row with too many
fields, an over-long field, a stray NUL byte) come back as ``BadRow``.

How many records a file quarantined whole held (``count_records``), so the reconciliation stays honest:
a reader that could tell says so on the error; otherwise an empty file, or bytes that are not text (and
not an Office package), hold none; a text file holds its non-blank lines minus the header (JSON Lines:
every non-blank line; a CSV field holding newlines is counted once per line); a JSON document or a zip /
legacy Office package that cannot be read holds records nobody can count: None.
"""

from __future__ import annotations

from pathlib import PurePath

from bpo.readers.common import BadRow, FileRead, UnreadableFile
from bpo.readers.csv import read_csv
from bpo.readers.headers import header_key, match_headers
from bpo.readers.json import read_json, read_jsonl
from bpo.readers.text import text_plan
from bpo.readers.xlsx import read_xlsx
from bpo.spec import ProcessSpec

__all__ = ["SUPPORTED_SUFFIXES", "BadRow", "FileRead", "UnreadableFile", "count_records", "header_key",
           "match_headers", "read_batch_file"]

SUPPORTED_SUFFIXES = (".csv", ".xlsx", ".json", ".jsonl", ".ndjson")
_FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_FIELD_CHARS = 100_000
MAX_DECOMPRESSED_BYTES = 500_000_000
# zip (XLSX, ODS, DOCX) and legacy OLE (XLS, password-protected XLSX) packages
_PACKAGES = (b"PK", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def read_batch_file(
    name: str,
    data: bytes,
    spec: ProcessSpec,
    *,
    max_field_chars: int = MAX_FIELD_CHARS,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> FileRead:
    """Read one batch file's bytes into raw string values under the spec's field names."""
    suffix = PurePath(name).suffix.lower()
    fmt = _FORMATS.get(suffix)
    if fmt is None:
        expected = ", ".join(SUPPORTED_SUFFIXES)
        what = f"unsupported file type {suffix!r}" if suffix else "file name has no extension"
        raise UnreadableFile(f"{what}; expected one of {expected}")
    if not data:
        raise UnreadableFile("empty file: 0 bytes", records=0)
    if fmt == "csv":
        return read_csv(name, data, spec, max_field_chars)
    if fmt == "xlsx":
        return read_xlsx(name, data, spec, max_field_chars, max_decompressed_bytes)
    if fmt == "json":
        return read_json(name, data, spec, max_field_chars)
    return read_jsonl(name, data, spec, max_field_chars)


def count_records(name: str, data: bytes) -> int | None:
    """How many records a file quarantined whole held, or None when it holds records nobody can count."""
    if data.startswith(_PACKAGES):
        return None
    try:
        _, _, text = text_plan(data, "text")
    except UnreadableFile as exc:
        return exc.records  # empty or binary: 0
    suffix = PurePath(name).suffix.lower()
    if suffix == ".json":
        return None
    lines = sum(1 for line in text.split(b"\n") if line.strip())
    return lines if _FORMATS.get(suffix) == "jsonl" else max(0, lines - 1)
