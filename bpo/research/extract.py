"""Extract: candidate facts per subject and field from one gathered document, each with its citation.

``extract(document, raw, brief)`` (``extract_all`` for many) reads a document by its format (HTML,
PDF, plain text, CSV, or the JSON a SQL query is written as) into findings, attributes each to a
subject, and normalizes the values of each field in one batch with the platform's normalizers.

Which subject a value is about:
- a document fetched for one subject (``document.subject_id``) is about that subject; a table row
  there that names another subject is left out rather than credited to either;
- a corpus file is about the subject it names (by name or identifier) when it names exactly one,
  or, naming several, when its title (an HTML title or first heading, a PDF's or text's first
  line) names exactly one of them;
  a table row, a CSV record, or a structured item naming its own subject goes to that subject;
  nothing is credited where nothing, or more than one subject, matches — never a guess.

A document that cannot be read at all (a corrupt PDF, a malformed SQL result, an unknown format)
is an ``ExtractError`` with the reason (no values in it): ``extract`` raises it, ``extract_all``
lists it among the batch's failures and goes on. A failed or refused fetch has nothing to read
and gives no candidates. ``extract_all`` is the one to use on many documents: it normalizes every
field's values in one batch, where a normalizer call per document would cost far more than reading.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from bpo.research.brief import Brief, Subject
from bpo.research.extractors.common import ExtractError, Finding, Vocabulary, decode, snippet
from bpo.research.extractors.html import read_html
from bpo.research.extractors.pdf import read_pdf
from bpo.research.extractors.tabular import read_csv, read_sql
from bpo.research.model import Candidate, Citation, Document
from bpo.research.normalize import normalize_values

__all__ = ["ExtractError", "Extraction", "document_format", "extract", "extract_all"]

_FORMATS = {"text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf", "text/plain": "text",
            "text/csv": "csv", "application/csv": "csv", "application/json": "sql"}
_SUFFIXES = {".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf", ".txt": "text", ".text": "text",
             ".md": "text", ".csv": "csv"}
_MIN_IDENTIFIER = 3  # shorter identifiers ("1", "uk") occur in any text by chance
_WORDS = re.compile(r"[^\w]+")


def document_format(document: Document, raw: bytes) -> str:
    """html, pdf, text, csv or sql: by the content type, else the file name, else the first bytes."""
    kind = (document.content_type or "").split(";")[0].strip().lower()
    if document.location.startswith("sql:"):
        return "sql"
    if kind == "application/json":  # JSON is read only as gathering writes a query's result
        raise ExtractError("a JSON document that is not a SQL query's result is not read")
    if kind in _FORMATS:
        return _FORMATS[kind]
    suffix = PurePosixPath(urlsplit(document.location).path).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    head = raw[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "html"
    raise ExtractError(f"unknown document format (content type {kind or 'none'}, no known file suffix)")


def _read(document: Document, raw: bytes, vocab: Vocabulary) -> tuple[list[Finding], str, str]:
    """The findings, the text and the title (which names the subject of a page about one of several)."""
    kind = document_format(document, raw)
    if kind == "html":
        return read_html(raw, document.content_type, document.final_url or document.location, vocab)
    if kind == "pdf":
        return read_pdf(raw, vocab)
    text = decode(raw, document.content_type)
    if kind == "csv":
        return read_csv(text, vocab), text, ""
    if kind == "sql":
        return read_sql(text, vocab), "", ""
    lines = text.splitlines()
    findings = [Finding(field, value, "text", f"line {n}", snippet(line, value))
                for n, line in enumerate(lines, start=1) for field, value in vocab.labelled(line)]
    return findings, text, next((line for line in lines if line.strip()), "")


def _words(text: str) -> str:
    """Lower-case words separated by single spaces, padded, so a name is found only as whole words."""
    return f" {_WORDS.sub(' ', text.lower()).strip()} "


class _Subjects:
    """The brief's subjects, found by name or identifier in a text or a record (indexed once per brief)."""

    def __init__(self, subjects: Sequence[Subject]) -> None:
        self.terms = [(s, [_words(t) for t in {s.name, *s.identifiers.values()}
                           if len(t.strip()) >= _MIN_IDENTIFIER or t == s.name]) for s in subjects]
        self.by_term: dict[str, list[Subject]] = {}
        self.by_identifier: dict[tuple[str, str], list[Subject]] = {}
        for subject, terms in self.terms:
            for term in terms:
                self.by_term.setdefault(term, []).append(subject)
            for key, value in subject.identifiers.items():
                self.by_identifier.setdefault((key.lower(), _words(value)), []).append(subject)

    def named_in(self, text: str) -> list[Subject]:
        """Subjects named in a text; one whose name only ever occurs inside another's ("Acme" in
        "Acme Holdings") does not count."""
        words = _words(text)
        hits = [(s, [t for t in terms if t.strip() and t in words]) for s, terms in self.terms]
        hits = [(s, found) for s, found in hits if found]
        named = []
        for subject, found in hits:
            longer = [t for other, terms in hits if other is not subject for t in terms
                      if any(f in t and f != t for f in found)]
            alone = sum(words.count(f) for f in found) > sum(words.count(t) for t in longer)
            if not longer or alone:
                named.append(subject)
        return named

    def of_record(self, cells: Mapping[str, str] | Iterable[str]) -> Subject | None:
        """The one subject a record names: an identifier under its own column, else a cell that is a
        subject's name or identifier; None when none or several do."""
        if isinstance(cells, Mapping):
            keyed = {s.id: s for k, v in cells.items() for s in self.by_identifier.get((k.lower(), _words(v)), [])}
            if keyed:
                return next(iter(keyed.values())) if len(keyed) == 1 else None
            cells = cells.values()
        exact = {s.id: s for v in cells if v.strip() for s in self.by_term.get(_words(v), [])}
        return next(iter(exact.values())) if len(exact) == 1 else None


@dataclasses.dataclass(frozen=True)
class Extraction:
    """What a batch of documents gave: the candidates, and each unreadable document with its reason."""

    candidates: list[Candidate]
    failures: list[tuple[Document, str]]
    # each read document's plain text, by content hash: the excerpt a reviewer reads beside a candidate
    texts: dict[str, str] = dataclasses.field(default_factory=dict)


class _Reader:
    """Reads documents for one brief; its vocabulary and subject index are built once."""

    def __init__(self, brief: Brief) -> None:
        self.brief = brief
        self.vocab = Vocabulary(brief)
        self.subjects = _Subjects(brief.subjects)
        self.texts: dict[str, str] = {}

    def attributed(self, document: Document, raw: bytes) -> list[tuple[Finding, str]]:
        """The document's findings, each with the subject it is about (the rest left out)."""
        if document.status in ("failed", "refused"):
            return []
        findings, text, title = _read(document, raw, self.vocab)
        if document.content_hash and text:
            self.texts[document.content_hash] = text
        page_subject = document.subject_id
        if page_subject is None:
            named = self.subjects.named_in(f"{title}\n{text}")
            if len(named) > 1:  # a page about one company that mentions others: the one its title names
                named = [s for s in self.subjects.named_in(title) if s in named]
            page_subject = named[0].id if len(named) == 1 else None
        attributed = []
        for finding in findings:
            subject_id = self._subject_of(finding, document, page_subject)
            if subject_id is not None:
                attributed.append((finding, subject_id))
        return attributed

    def _subject_of(self, finding: Finding, document: Document, page_subject: str | None) -> str | None:
        if finding.row is None and not finding.item:
            return page_subject
        own = self.subjects.of_record(finding.row if finding.row is not None else finding.item)
        if document.subject_id is not None:
            return document.subject_id if own is None or own.id == document.subject_id else None
        if own is not None:
            return own.id
        # a table row or record naming no subject is about someone the brief does not cover; a structured
        # item that names no one the brief knows is still the page's own (a page's Organization JSON-LD)
        return page_subject if finding.row is None else None


def extract_all(documents: Iterable[tuple[Document, bytes]], brief: Brief) -> Extraction:
    """The candidates of many documents, normalized in one batch per field (a normalizer call costs
    milliseconds whatever its size); an unreadable document is listed with its reason and the rest go on."""
    reader = _Reader(brief)
    read: list[tuple[Document, Finding, str]] = []
    failures: list[tuple[Document, str]] = []
    for document, raw in documents:
        try:
            read += [(document, finding, subject_id) for finding, subject_id in reader.attributed(document, raw)]
        except ExtractError as exc:
            failures.append((document, str(exc)))
    normalized: dict[tuple[str, str], str | None] = {}
    for name, field in brief.fields.items():
        values = list(dict.fromkeys(finding.value for _, finding, _ in read if finding.field == name))
        normalized.update(zip([(name, v) for v in values], normalize_values(field, values), strict=True))
    candidates: dict[tuple[str, str, str, str, str, str], Candidate] = {}
    for document, finding, subject_id in read:
        location = document.final_url or document.location
        citation = Citation(source=document.source, location=location, where=finding.where,
                            snippet=finding.snippet, retrieved_at=document.retrieved_at,
                            content_hash=document.content_hash)
        # one element read twice (a JSON-LD name that is also its legalName) is one candidate
        key = (document.source, location, subject_id, finding.field, finding.value, finding.where)
        candidates.setdefault(key, Candidate(subject_id=subject_id, field=finding.field, value=finding.value,
                                             normalized=normalized[(finding.field, finding.value)],
                                             method=finding.method, citation=citation))
    return Extraction(list(candidates.values()), failures, reader.texts)


def extract(document: Document, raw: bytes, brief: Brief) -> list[Candidate]:
    """The candidate facts of one document, each cited (source, location, where, snippet, retrieval time).

    Raises ExtractError for a document that cannot be read; for many documents, ``extract_all``.
    """
    result = extract_all([(document, raw)], brief)
    if result.failures:
        raise ExtractError(result.failures[0][1])
    return result.candidates
