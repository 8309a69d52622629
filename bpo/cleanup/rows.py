"""Rows of a client table as the cleanup keeps them: an exact, typed JSON encoding and a content hash.

A value is read as the database driver gives it (no SQLAlchemy type processing, so a SQLite column
holding a mix of types, or a string in a DATE column, reads as it is) and encoded to JSON without
losing its type: a date stays a date, a Decimal keeps its digits, bytes their bytes. The hash of a
row is the SHA-256 of that encoding, so a row read again — to apply a change, or to undo one — is
recognised as unchanged exactly when every value is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson

_TAGS = ("$date", "$datetime", "$time", "$timedelta", "$decimal", "$bytes", "$float", "$uuid")
_PLAIN = frozenset({type(None), bool, int, str})  # values that are their own encoding
_TEXT = frozenset({type(None), str})  # values that are their own text
# the canonical text is this encoder's (what every hash was taken of); orjson writes the same text, about three times
# as fast, for every value but a float (its shortest form differs: 1e-07 is "1e-7"), where this one is used
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_SORTED = orjson.OPT_SORT_KEYS
# orjson reads an integer beyond 64 bits as a float: a text with a run of 19 digits or more is read by json
_LONG_DIGITS = re.compile(r"\d{19}")


def encode_value(value: Any) -> Any:
    """A JSON-safe value that ``decode_value`` turns back into exactly ``value``."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    raise TypeError(f"a value of type {type(value).__name__} cannot be kept exactly; the cleanup refuses the column")


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, raw), = value.items()
    if tag == "$datetime":
        return datetime.fromisoformat(raw)
    if tag == "$date":
        return date.fromisoformat(raw)
    if tag == "$time":
        return time.fromisoformat(raw)
    if tag == "$timedelta":
        return timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2])
    if tag == "$decimal":
        return Decimal(raw)
    if tag == "$bytes":
        return base64.b64decode(raw)
    if tag == "$float":
        return float(raw)
    if tag == "$uuid":
        return UUID(raw)
    raise ValueError(f"unknown value tag {tag!r}")


def encode_row(columns: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    return {c: encode_value(v) for c, v in zip(columns, values, strict=True)}


def encode_column(values: Sequence[Any]) -> list[Any]:
    """``encode_value`` of every value of one column: a column of text, integers and NULLs is kept as it is."""
    if set(map(type, values)) <= _PLAIN:
        return list(values)
    return [encode_value(v) for v in values]


def encode_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[list[list[Any]], list[str]]:
    """Rows encoded column by column: (each column's encoded values, each row's canonical text)."""
    by_column = [encode_column(values) for values in zip(*rows, strict=True)] if rows else [[] for _ in columns]
    encoded = (dict(zip(columns, values, strict=True)) for values in zip(*by_column, strict=True))
    if any(float in set(map(type, values)) for values in by_column):
        return by_column, [_CANONICAL.encode(row) for row in encoded]
    return by_column, [_fast(row) for row in encoded]


def _fast(encoded: Any) -> str:
    """The canonical text of a value holding no float (``canonical``)."""
    try:
        return orjson.dumps(encoded, option=_SORTED).decode()
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, or a lone surrogate: as json writes it
        return _CANONICAL.encode(encoded)


def text_hash(text: str) -> str:
    """The content hash of a row's canonical text."""
    return hashlib.sha256(text.encode()).hexdigest()


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {c: decode_value(v) for c, v in row.items()}


def canonical(encoded: Any) -> str:
    """The canonical text of an encoded value, row or key: sorted keys, no spaces, non-ASCII as it is.

    An encoded value is flat (a tag's own value is text or integers), so a float can only be at the top: a row's
    or a key's values, or the value itself."""
    if type(encoded) is float or (isinstance(encoded, dict) and float in set(map(type, encoded.values()))) or (
            isinstance(encoded, list) and float in set(map(type, encoded))):
        return _CANONICAL.encode(encoded)
    return _fast(encoded)


def parse(text: str) -> Any:
    """A canonical text read back (``json.loads``, only faster)."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def row_hash(encoded: Mapping[str, Any]) -> str:
    """The content hash of an encoded row (every column, by name)."""
    return text_hash(canonical(encoded))


def encode_key(value: Any) -> str:
    """A primary-key value as one string: the name of the row in the change log, in S3 and in Splink."""
    return key_text(encode_value(value))


def key_text(encoded: Any) -> str:
    """The key string of an already encoded value (a referencing column's, say): the same as ``encode_key``'s."""
    return canonical(encoded)


def key_from_row(encoded: Mapping[str, Any], columns: Sequence[str]) -> str:
    """The key of an encoded row, one column or several (a list)."""
    values = [encoded[c] for c in columns]
    return canonical(values[0] if len(values) == 1 else values)


def decode_key(text: str) -> Any:
    """The key value(s): one value, or a list for a key of several columns."""
    value = parse(text)
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return decode_value(value)


def as_text(value: Any) -> str | None:
    """A value as the standardizers and the match model see it: text, or None."""
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return None  # binary is not compared
    return str(value)


def text_column(values: Sequence[Any]) -> list[str | None]:
    """``as_text`` of every value of one column: a column of text and NULLs is kept as it is."""
    if set(map(type, values)) <= _TEXT:
        return list(values)
    return [as_text(v) for v in values]
