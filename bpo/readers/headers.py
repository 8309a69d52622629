"""Header matching: source headers to the spec's fields, exact keys first, then fuzzy (rapidfuzz)."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bpo.spec import ProcessSpec

# rapidfuzz's ratio is 0-100: a header key this close to a known key is a low-confidence match
FUZZY_CUTOFF = 85.0


@dataclass(frozen=True)
class Columns:
    """Header matching result by column position."""

    headers: list[str]
    mapped: dict[int, str]
    low_confidence: list[str]
    unmapped: list[int]


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


def match_columns(headers: Sequence[str], spec: ProcessSpec) -> Columns:
    """Map header positions to fields: exact keys first, then fuzzy matches (best score first)."""
    keys = _field_keys(spec)
    mapped: dict[int, str] = {}
    pending: list[int] = []
    for pos, header in enumerate(headers):
        field = keys.get(header_key(header))
        if field is None:
            pending.append(pos)
        elif field not in mapped.values():
            mapped[pos] = field
    known = list(keys)
    candidates: list[tuple[float, int, str]] = []
    for pos in pending:
        key = header_key(headers[pos])
        best = process.extractOne(key, known, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF) if key else None
        if best is not None:
            candidates.append((-best[1], pos, keys[best[0]]))
    low_confidence: list[str] = []
    for _, pos, field in sorted(candidates):
        if field not in mapped.values():
            mapped[pos] = field
            low_confidence.append(field)
    unmapped = [pos for pos in range(len(headers)) if pos not in mapped]
    return Columns(list(headers), mapped, low_confidence, unmapped)


def header_label(headers: Sequence[str], pos: int) -> str:
    """The header as reported; a blank header is named by its column number."""
    return headers[pos] if headers[pos].strip() else f"(column {pos + 1}, no header)"


def match_headers(headers: list[str], spec: ProcessSpec) -> tuple[dict[str, str], list[str], list[str]]:
    """Match source headers to spec fields: (header_map, low-confidence fields, unmapped headers)."""
    columns = match_columns(headers, spec)
    header_map = {headers[pos]: field for pos, field in columns.mapped.items()}
    return header_map, columns.low_confidence, [header_label(headers, pos) for pos in columns.unmapped]
