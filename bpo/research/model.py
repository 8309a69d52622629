"""What flows between the research steps: a gathered document, a citation, a candidate fact.

Plain frozen dataclasses: they cross task boundaries and are written to S3 as JSON
(``as_dict``); no Prefect, no I/O here.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

DocumentStatus = Literal["ok", "not_modified", "failed", "refused"]
Method = Literal["jsonld", "microdata", "rdfa", "opengraph", "table", "definition_list", "text",
                 "pdf_text", "pdf_table", "csv", "sql", "agent"]


@dataclasses.dataclass(frozen=True)
class Document:
    """One fetched source document: where it came from and where its raw bytes are kept.

    ``subject_id`` is set when the document was fetched for one subject (a web page template, a SQL
    query); a corpus file may concern any subject and leaves it None. A failed or refused fetch is a
    Document too, with its ``error``: nothing about a source is dropped silently.
    """

    source: str  # the brief's source name
    location: str  # URL, file path or s3:// URI, or "sql:<source>" for a query
    status: DocumentStatus
    retrieved_at: datetime
    subject_id: str | None = None
    # as the server sent it, parameters kept ("text/html; charset=iso-8859-2"); a file's by its suffix
    content_type: str | None = None
    content_hash: str | None = None  # sha256 hex of the raw bytes
    key: str | None = None  # S3 key of the raw bytes (the run's prefix, then raw/<content_hash>)
    size: int = 0
    error: str | None = None  # why it failed or was refused (never a secret, never record values)
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None  # after redirects


@dataclasses.dataclass(frozen=True)
class Citation:
    """Where a candidate value was read: enough for a reviewer, or the client, to find it again."""

    source: str  # the brief's source name
    location: str  # the document's URL, file or query
    where: str  # inside it: a CSS path, "page 3 (x 72, y 540)", "row 12", "column phone"
    snippet: str  # the text around the value, as it stands in the source (at most ~300 characters)
    retrieved_at: datetime
    content_hash: str | None = None  # the document's raw bytes


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One value for one field of one subject, as one source states it."""

    subject_id: str
    field: str
    value: str  # as read
    normalized: str | None  # the platform normalizer's canonical value; None when it could not be normalized
    method: Method
    citation: Citation


_FIELDS: dict[type, tuple[str, ...]] = {}


def _names(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
    return names


def as_dict(obj: Any) -> dict[str, Any]:
    """A dataclass of this module as plain dicts and lists, for JSON: what ``dataclasses.asdict`` gives,
    without its deep copy of every value (the values here are immutable), several times faster."""
    return {name: _plain(getattr(obj, name)) for name in _names(type(obj))}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | datetime):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_dict(value)
    return value
