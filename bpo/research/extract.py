"""Extract: candidate facts per subject and field from one gathered document, each with its citation.

``extract(document, raw, brief)`` reads the document by its format (HTML, PDF, plain text, CSV, or
the JSON a SQL query is written as) into findings, attributes each to a subject, and normalizes
the values of each field in one batch with the platform's normalizers.

Which subject a value is about:
- a document fetched for one subject (``document.subject_id``) is about that subject; a table row
  there that names another subject is left out rather than credited to either;
- a corpus file is about the subject it names (by name or identifier) when it names exactly one,
  or, naming several, when its title (an HTML title or first heading, a PDF's or text's first
  line) names exactly one of them;
  a table row, a CSV record, or a structured item naming its own subject goes to that subject;
  nothing is credited where nothing, or more than one subject, matches — never a guess.

A document that cannot be read at all raises ``ExtractError`` with the reason (no values in it):
the caller records it against the document and goes on with the batch. A failed or refused
fetch has nothing to read and gives no candidates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from bpo.research.brief import Brief, Subject
from bpo.research.extractors.common import ExtractError, Finding, Vocabulary, snippet
from bpo.research.extractors.html import decode, read_html
from bpo.research.extractors.pdf import read_pdf
from bpo.research.extractors.tabular import read_csv, read_sql
from bpo.research.model import Candidate, Citation, Document
from bpo.research.normalize import normalize_values

__all__ = ["ExtractError", "document_format", "extract"]

_FORMATS = {"text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf", "text/plain": "text",
            "text/csv": "csv", "application/csv": "csv", "application/json": "sql"}
_SUFFIXES = {".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf", ".txt": "text", ".text": "text",
             ".md": "text", ".csv": "csv", ".json": "sql"}
_MIN_IDENTIFIER = 3  # shorter identifiers ("1", "uk") occur in any text by chance
_WORDS = re.compile(r"[^\w]+")


def document_format(document: Document, raw: bytes) -> str:
    """html, pdf, text, csv or sql: by the content type, else the file name, else the first bytes."""
    kind = (document.content_type or "").split(";")[0].strip().lower()
    if kind in _FORMATS:
        return _FORMATS[kind]
    if document.location.startswith("sql:"):
        return "sql"
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
    """The brief's subjects, found by name or identifier in a text or a record."""

    def __init__(self, subjects: Sequence[Subject]) -> None:
        self.subjects = subjects
        self.terms = [(s, [_words(t) for t in [s.name, *s.identifiers.values()]
                           if len(t.strip()) >= _MIN_IDENTIFIER or t == s.name]) for s in subjects]

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
        by_column = dict(cells) if isinstance(cells, Mapping) else {}
        values = {_words(v) for v in (cells.values() if isinstance(cells, Mapping) else cells) if v.strip()}
        keyed = [s for s in self.subjects if any(_words(by_column.get(k, "")) == _words(v)
                                                 for k, v in s.identifiers.items() if k in by_column)]
        if len(keyed) == 1:
            return keyed[0]
        if keyed:
            return None
        exact = [s for s, terms in self.terms if values & set(terms)]
        return exact[0] if len(exact) == 1 else None


def _subject_of(finding: Finding, document: Document, page_subject: str | None, subjects: _Subjects) -> str | None:
    if finding.row is None and not finding.item:
        return page_subject
    own = subjects.of_record(finding.row if finding.row is not None else finding.item)
    if document.subject_id is not None:
        return document.subject_id if own is None or own.id == document.subject_id else None
    if own is not None:
        return own.id
    # a table row or record naming no subject is about someone the brief does not cover; a structured
    # item that names no one the brief knows is still the page's own (a page's Organization JSON-LD)
    return page_subject if finding.row is None else None


def extract(document: Document, raw: bytes, brief: Brief) -> list[Candidate]:
    """The candidate facts of one document, each cited (source, location, where, snippet, retrieval time)."""
    if document.status in ("failed", "refused"):
        return []
    vocab = Vocabulary(brief)
    findings, text, title = _read(document, raw, vocab)
    subjects = _Subjects(brief.subjects)
    page_subject = document.subject_id
    if page_subject is None:
        named = subjects.named_in(f"{title}\n{text}")
        if len(named) > 1:  # a page about one company that mentions others: the one its title names
            named = [s for s in subjects.named_in(title) if s in named]
        page_subject = named[0].id if len(named) == 1 else None
    attributed: list[tuple[Finding, str]] = []
    for finding in findings:
        subject_id = _subject_of(finding, document, page_subject, subjects)
        if subject_id is not None:
            attributed.append((finding, subject_id))
    normalized: dict[int, str | None] = {}
    for name, field in brief.fields.items():
        positions = [i for i, (f, _) in enumerate(attributed) if f.field == name]
        values = normalize_values(field, [attributed[i][0].value for i in positions])
        normalized.update(zip(positions, values, strict=True))
    candidates: dict[tuple[str, str, str, str], Candidate] = {}
    for i, (finding, subject_id) in enumerate(attributed):
        citation = Citation(source=document.source, location=document.final_url or document.location,
                            where=finding.where, snippet=finding.snippet, retrieved_at=document.retrieved_at,
                            content_hash=document.content_hash)
        # one element read twice (a value in both a label/value row and its text) is one candidate
        key = (subject_id, finding.field, finding.value, finding.where)
        candidates.setdefault(key, Candidate(subject_id=subject_id, field=finding.field, value=finding.value,
                                             normalized=normalized[i], method=finding.method, citation=citation))
    return list(candidates.values())
