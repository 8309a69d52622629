"""JSON and JSON Lines readers: values keep their source text (numbers as written, nested values as JSON).

A JSON document is an array of records, or one object that is one record; a spec's
``intake.json_records`` names the dotted path of the record array inside an object instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bpo.readers.common import (
    NUL_BYTE,
    BadRow,
    FileRead,
    UnreadableFile,
    clip,
    require_mapped,
    result,
    too_long,
)
from bpo.readers.headers import match_columns
from bpo.readers.text import text_plan
from bpo.spec import ProcessSpec


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
    """json.loads keeping numbers as their source text; control characters inside strings are let
    through (strict=False) so that a stray NUL costs its record, not the file."""
    return json.loads(text, parse_int=_Number, parse_float=_Number, strict=False)


def _json_records(doc: Any, path: str | None) -> list[Any]:
    """The records of a JSON document: a top-level array, a top-level object (one record), or the
    array at the spec's dotted ``path``."""
    if path is None:
        if isinstance(doc, list):
            return doc
        if isinstance(doc, dict):
            return [doc]
        raise UnreadableFile(
            f"expected a JSON array of records or an object; found a single {type(doc).__name__} value", records=0
        )
    node = doc
    for step, key in enumerate(path.split(".")):
        if not isinstance(node, dict) or key not in node:
            where = ".".join(path.split(".")[:step]) or "the top level"
            found = f"keys {', '.join(repr(k) for k in list(node)[:5])}" if isinstance(node, dict) else \
                f"a {type(node).__name__}"
            raise UnreadableFile(f"no {key!r} under {where} for the spec's json_records {path!r}; found {found}")
        node = node[key]
    if not isinstance(node, list):
        raise UnreadableFile(f"the spec's json_records {path!r} is a {type(node).__name__}, not an array of records")
    return node


def _records_result(
    name: str,
    fmt: str,
    encoding: str,
    objects: list[dict[str, Any]],
    rows: list[int],
    bad_rows: list[BadRow],
    raw_of: Callable[[int], str],
    spec: ProcessSpec,
    max_field_chars: int,
) -> FileRead:
    """Build the FileRead for JSON objects: the keys seen (first-seen order) are the headers.

    An object holding an over-long value or a NUL character is quarantined as a bad row."""
    headers = list(dict.fromkeys(key for obj in objects for key in obj))
    columns = match_columns(headers, spec)
    if headers:
        require_mapped(columns, spec, len(objects) + len(bad_rows))
    texts = [[_json_text(obj.get(headers[pos])) for pos in columns.mapped] for obj in objects]
    keep: list[int] = []
    for index, (row_texts, row) in enumerate(zip(texts, rows, strict=True)):
        present = [t for t in row_texts if t is not None]
        if any(len(t) > max_field_chars for t in present):
            bad_rows.append(BadRow(row, clip(raw_of(index)), too_long(max_field_chars)))
        elif any("\x00" in t for t in present):
            bad_rows.append(BadRow(row, clip(raw_of(index)), NUL_BYTE))
        else:
            keep.append(index)
    bad_rows.sort(key=lambda b: b.row)
    values = {pos: [texts[i][n] for i in keep] for n, pos in enumerate(columns.mapped)}
    return result(name, fmt, encoding, columns, values, [rows[i] for i in keep], bad_rows, spec)


def read_json(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read a JSON file: an array of objects, one object, or the array the spec's json_records names."""
    encoding, codec, data = text_plan(data, "JSON")
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
    items = _json_records(doc, spec.intake.json_records)
    for index, item in enumerate(items, start=1):
        if isinstance(item, dict):
            objects.append(item)
            rows.append(index)
        else:
            bad_rows.append(BadRow(index, clip(_dumps(item)), "not a JSON object"))
    if items and not objects:
        raise UnreadableFile(f"expected an array of JSON objects; none of its {len(items)} items is an object",
                             records=len(items))
    return _records_result(name, "json", encoding, objects, rows, bad_rows, lambda i: _dumps(objects[i]), spec,
                           max_field_chars)


def _dumps(value: Any) -> str:
    """A parsed JSON value as JSON text again, for a bad row's raw."""
    return json.dumps(_plain(value), ensure_ascii=False)


def read_jsonl(name: str, data: bytes, spec: ProcessSpec, max_field_chars: int) -> FileRead:
    """Read JSON Lines: one object per line, blank lines skipped, bad lines kept as BadRow."""
    encoding, codec, data = text_plan(data, "JSON Lines")
    objects: list[dict[str, Any]] = []
    rows: list[int] = []
    lines: list[str] = []
    bad_rows: list[BadRow] = []
    # split on "\n" only: str.splitlines would also split on U+2028, which is legal inside JSON strings
    for lineno, line in enumerate(data.decode(codec).split("\n"), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            item = _loads(text)
        except json.JSONDecodeError as exc:
            bad_rows.append(BadRow(lineno, clip(line), f"not valid JSON: {_json_error(exc)} at column {exc.colno}"))
            continue
        except RecursionError:
            bad_rows.append(BadRow(lineno, clip(line), "not valid JSON: nested too deeply"))
            continue
        if isinstance(item, dict):
            objects.append(item)
            rows.append(lineno)
            lines.append(line)
        else:
            bad_rows.append(BadRow(lineno, clip(line), "not a JSON object"))
    if bad_rows and not objects:
        first = bad_rows[0]
        raise UnreadableFile(f"no line is a JSON object (line {first.row}: {first.reason})", records=len(bad_rows))
    return _records_result(name, "jsonl", encoding, objects, rows, bad_rows, lines.__getitem__, spec,
                           max_field_chars)
