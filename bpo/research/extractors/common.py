"""What every format shares: the findings, the brief's vocabulary (labels and properties), labelled
text, and decoding a document's bytes to text.

A field is named in a source by its labels (table headers, definition terms, "Label: value"
lines, CSV/SQL columns) and its schema.org / OpenGraph properties: the brief's own, plus a
default per field type (a phone is ``telephone``, "Phone", "Tel"). A default is used only where
it cannot be confused: the field is the only one of its type, and no field claims it explicitly.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Iterator, Mapping

from bpo.readers.common import UnreadableFile
from bpo.readers.text import text_plan
from bpo.research.brief import Brief
from bpo.research.model import Method

SNIPPET_LENGTH = 300

_DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "phone": ("telephone", "og:phone_number"),
    "email": ("email", "og:email"),
    "url": ("url", "og:url"),
    "organisation": ("legalName", "name", "og:site_name"),
    "date": ("foundingDate",),
    "year": ("foundingDate",),
    "count": ("numberOfEmployees",),
}
_DEFAULT_LABELS: dict[str, tuple[str, ...]] = {
    "phone": ("phone", "telephone", "tel", "tel.", "phone number"),
    "email": ("email", "e-mail", "email address"),
    "url": ("website", "web site", "web", "url", "homepage"),
    "organisation": ("company", "company name", "legal name", "organisation", "organization"),
    "year": ("founded", "established", "year founded"),
    "count": ("employees", "number of employees", "staff"),
}

# The value of each type at the start of a label's text; text types take the rest of the line.
_VALUE_PATTERNS: dict[str, str] = {
    "phone": r"\+?\(?\d[\d ().\-/]{5,}\d",
    "email": r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+",
    "url": r"(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:)]",
    "year": r"(?:[A-Za-z]{3,9}\.? )?\d{4}(?!\d)",  # "1999", "March 1999"
    "count": r"\d{1,3}(?:,\d{3})+(?!\d)|\d+(?![\d.,]\d)",
    "date": (r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}"
             r"|\d{1,2}(?:st|nd|rd|th)? [A-Za-z]{3,9}\.?,? \d{4}|[A-Za-z]{3,9}\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}"),
    "money": r"(?:[A-Z]{3} ?|[$€£¥] ?)?\d[\d.,]*\d(?: ?[A-Z]{3}(?![A-Za-z]))?|(?:[A-Z]{3} ?|[$€£¥] ?)\d",
}
_TEXT_TYPES = ("text", "name", "organisation")
# what may stand between a label and a typed value: "Phone: …", "Founded in 1999", "Tel +44 …"
_SEPARATOR = r"\s*(?:[:=–—-]\s*|\s(?:in|on|since|is|was|at|of|are)\s+|\s)"
_COLON = re.compile(r"\s*[:=–—-]\s*")
_SPACES = re.compile(r"\s+")
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class ExtractError(ValueError):
    """A document that cannot be read at all (a corrupt PDF, a malformed SQL result, an unknown format):
    the reason, never a value from it.

    The caller records it against the document and goes on with the batch.
    """


@dataclasses.dataclass(frozen=True)
class Finding:
    """One value read from a document, before it is attributed to a subject and normalized.

    ``row`` holds the cells of the table row or record the value was read from (header -> cell),
    for subjects that are rows: the row names its own subject or, on a corpus file, no one.
    ``item`` holds the names and identifiers a structured item (JSON-LD, microdata …) gives itself.
    """

    field: str
    value: str
    method: Method
    where: str
    snippet: str
    row: Mapping[str, str] | None = None
    item: tuple[str, ...] = ()


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces, trimmed."""
    return _SPACES.sub(" ", text).strip()


def snippet(text: str, value: str = "") -> str:
    """The text around ``value``, whitespace collapsed, at most SNIPPET_LENGTH characters (… where cut)."""
    text = squash(text)
    if len(text) <= SNIPPET_LENGTH:
        return text
    at = max(text.find(squash(value)), 0) if value else 0
    start = max(0, min(at - SNIPPET_LENGTH // 3, len(text) - SNIPPET_LENGTH))
    cut = text[start:start + SNIPPET_LENGTH - 2]
    return ("…" if start else "") + cut + ("…" if start + len(cut) < len(text) else "")


def label_key(text: str) -> str:
    """How a label is compared: lower case, whitespace collapsed, no trailing colon."""
    return squash(text).lower().rstrip(":").strip()


class Vocabulary:
    """The brief's fields as sources name them: labels and schema.org / OpenGraph properties."""

    def __init__(self, brief: Brief) -> None:
        self.brief = brief
        self.labels: dict[str, str] = {}  # label key -> field
        self.properties: dict[str, list[str]] = {}  # field -> property paths ("address.addressLocality")
        by_type: dict[str, list[str]] = {}
        for name, field in brief.fields.items():
            by_type.setdefault(field.type, []).append(name)
            for label in field.names():
                self.labels.setdefault(label_key(label), name)
            self.properties[name] = list(field.properties)
        claimed = {p for props in self.properties.values() for p in props}
        for kind, names in by_type.items():
            if len(names) != 1:  # two phone fields: which one "telephone" means is the brief's to say
                continue
            self.properties[names[0]] += [p for p in _DEFAULT_PROPERTIES.get(kind, ()) if p not in claimed]
            for label in _DEFAULT_LABELS.get(kind, ()):
                self.labels.setdefault(label, names[0])
        alternatives = "|".join(re.escape(k) for k in sorted(self.labels, key=len, reverse=True))
        self._label_pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def field_of(self, label: str) -> str | None:
        """The field a label names, if any."""
        return self.labels.get(label_key(label))

    def mentions(self, text: str) -> bool:
        """Whether any label occurs in ``text`` (one scan, before reading it line by line)."""
        return self._label_pattern.search(text) is not None

    def labelled(self, line: str) -> Iterator[tuple[str, str]]:
        """(field, value) for each "Label: value" in one line of text.

        A typed value (phone, year …) is read from the label's text after a colon, a word such as
        "in", or a space; a text value needs a colon and runs to the next "Label:". A label word
        inside a value already read ("www.acme-web.com") is not a label.
        """
        read: list[tuple[int, int, str, bool, re.Match[str] | None]] = []  # start, end, field, colon, typed
        for hit in self._label_pattern.finditer(line):
            field = self.brief.fields[self.labels[label_key(hit.group())]]
            rest = line[hit.end():]
            colon = _COLON.match(rest) is not None
            typed = None
            if field.type not in _TEXT_TYPES:
                typed = re.match(_SEPARATOR + f"(?P<value>{_VALUE_PATTERNS[field.type]})", rest)
            if colon or typed:
                read.append((hit.start(), hit.end(), field.name, colon, typed))
        consumed = 0
        for i, (start, hit_end, name, _, typed) in enumerate(read):
            if start < consumed:
                continue
            if typed is not None:
                consumed = hit_end + typed.end()
                yield name, typed.group("value").strip()
            elif self.brief.fields[name].type in _TEXT_TYPES:
                end = next((s for s, _, _, c, _ in read[i + 1:] if c), len(line))
                separator = _COLON.match(line, hit_end)
                value = line[separator.end() if separator else hit_end:end].strip().rstrip(".,;|").strip()
                consumed = end
                if value:
                    yield name, value


def _codec(name: str | bytes | None) -> str | None:
    if isinstance(name, bytes):
        name = name.decode("ascii", "ignore")
    try:
        codec = codecs.lookup(name).name if name else None
    except LookupError:
        return None
    # as browsers do: a page declaring Latin-1 or ASCII is really written in cp1252 ("€" is 0x80)
    return "cp1252" if codec in ("latin-1", "iso8859-1", "ascii") else codec


def decode(raw: bytes, content_type: str | None) -> str:
    """The text of a page or file: by its BOM, the declared charset, a <meta charset>, else as the
    platform's readers read undeclared text (UTF-8, Western cp1252, a detected code page).

    A declared charset that cannot decode the bytes is not trusted; the last resort is cp1252 with
    replacement characters, so a document is never refused for its encoding.
    """
    for bom, bom_codec in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom):].decode(bom_codec, errors="replace")
    declared = re.search(r"charset=[\"']?([\w.:-]+)", content_type or "", re.IGNORECASE)
    meta = _META_CHARSET.search(raw[:4096])
    for name in (declared and declared.group(1), meta and meta.group(1)):
        text = _try_decode(raw, name)
        if text is not None:
            return text
    try:  # the platform's reading of undeclared text: UTF-8, Western cp1252, then a detected code page
        return raw.decode(text_plan(raw, "web page")[1])
    except UnreadableFile:  # empty, or bytes that are no text in any code page
        return raw.decode("cp1252", errors="replace")


def _try_decode(raw: bytes, name: str | bytes | None) -> str | None:
    codec = _codec(name)
    if codec is None:
        return None
    try:
        return raw.decode(codec)
    except UnicodeDecodeError:
        return None
