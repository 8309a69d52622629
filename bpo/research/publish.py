"""Publish: the research deliverable as Markdown, HTML, XLSX and CSV bytes, and what changed since the last edition.

The input is a list of ``Fact`` rows — one per subject and field, each with its citations and
confidence — built from a reconciliation with the agents' decisions laid over it (``facts``): a
value an agent picked carries the citations of the candidates it picked, a value an agent entered
carries the agent's own citation. Every format escapes what it must: HTML through Jinja2's
autoescape, Markdown table cells with ``|``, markup and line breaks escaped, CSV and XLSX cells
that a spreadsheet would run as formulas prefixed with ``'`` (``bpo.exports.neutralize``), XLSX
text written as strings, never as formulas. An edition is also kept as JSON (``edition_json``) so
that the next one can say what changed (``changes``).

Pure: bytes in memory, no Prefect, no S3.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from jinja2 import Environment, select_autoescape
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES, ILLEGAL_CHARACTERS_RE
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from bpo.exports import neutralize
from bpo.research.brief import Brief
from bpo.research.model import Citation, as_dict
from bpo.research.reconcile import FieldResult, Reconciliation

FactStatus = Literal["chosen", "conflict", "low_confidence", "missing", "picked", "entered", "not_found"]
ChangeKind = Literal["changed", "added", "unsupported"]


class PublishError(ValueError):
    """A deliverable that cannot be made from what was given."""


@dataclasses.dataclass(frozen=True)
class Fact:
    """One published value: a subject's field, how sure it is, and where it was read."""

    subject_id: str
    subject: str  # the subject's name
    field: str
    value: str | None
    confidence: float  # 0..1: the reconciliation's; 1.0 once an agent decided it
    status: FactStatus  # picked / entered / not_found: an agent's decision; else the reconciliation's status
    citations: tuple[Citation, ...] = ()
    agent: str | None = None  # who picked or entered it


@dataclasses.dataclass(frozen=True)
class Decision:
    """An agent's answer for one field: a candidate value picked, a value entered, or none to be found.

    ``value`` None: the agent confirms the value cannot be found (``citations`` may then be empty).
    """

    agent: str
    value: str | None
    citations: tuple[Citation, ...]
    entered: bool = False


def pick(result: FieldResult, choice: int | str, agent: str) -> Decision:
    """The decision that picks one of ``result``'s value groups — by its index (best first) or its key.

    The value is the group's; its citations are those of every candidate in the group.
    """
    for index, group in enumerate(result.groups):
        if choice == index if isinstance(choice, int) else choice == group.key:
            return Decision(agent=agent, value=group.value, citations=unique(c.citation for c in group.candidates))
    raise PublishError(f"field {result.field!r} of subject {result.subject_id!r} has no candidate value "
                       f"{'number ' + str(choice) if isinstance(choice, int) else 'with that key'} "
                       f"(it has {len(result.groups)})")


def unique(citations: Iterable[Citation]) -> tuple[Citation, ...]:
    """Citations without repeats of the same place (one page read by two methods), in order."""
    seen: dict[tuple[str, str, str], Citation] = {}
    for c in citations:
        seen.setdefault((c.source, c.location, c.where), c)
    return tuple(seen.values())


def facts(reconciliation: Reconciliation, brief: Brief,
          decisions: Mapping[tuple[str, str], Decision] | None = None) -> list[Fact]:
    """The deliverable's rows, subjects and fields in the brief's order; a decision replaces the reconciled value."""
    decisions = decisions or {}
    results = {(r.subject_id, r.field): r for r in reconciliation.results}
    rows = []
    for subject in brief.subjects:
        for field in brief.fields:
            decision = decisions.get((subject.id, field))
            if decision is not None:
                if decision.value is not None and not decision.citations:
                    raise PublishError(f"the decision on field {field!r} of subject {subject.id!r} cites nothing: "
                                       "every published value needs a citation")
                status: FactStatus = ("not_found" if decision.value is None else
                                      "entered" if decision.entered else "picked")
                rows.append(Fact(subject.id, subject.name, field, decision.value, 1.0, status, decision.citations,
                                 decision.agent))
                continue
            result = results.get((subject.id, field))
            if result is None:
                raise PublishError(f"the reconciliation has no result for field {field!r} of subject "
                                   f"{subject.id!r}: was it made from another brief?")
            cited = result.groups[0].candidates if result.groups else ()
            rows.append(Fact(subject.id, subject.name, field, result.value, result.confidence, result.status,
                             unique(c.citation for c in cited)))
    return rows


# ---- the four formats


def _percent(fact: Fact) -> str:
    return "" if fact.value is None else f"{fact.confidence:.1%}"


def _cite(c: Citation) -> str:
    return f"{c.source}: {c.location} ({c.where}), retrieved {c.retrieved_at.isoformat()}"


def _link(location: str) -> str | None:
    """A location as a link target only when it is an http(s) URL: never javascript: or data: from a source."""
    return location if urlsplit(location).scheme in ("http", "https") else None


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")


def md_cell(text: str) -> str:
    """Text as one Markdown table cell: markup and pipes escaped, HTML inert, line breaks as <br>."""
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return "<br>".join(escaped.splitlines()) if escaped else ""


def to_markdown(rows: Sequence[Fact], *, title: str, generated_at: datetime) -> bytes:
    """The deliverable as Markdown: a table per subject, each value with its confidence and numbered citations."""
    lines = [f"# {md_cell(title)}", "",
             f"Compiled {generated_at.isoformat()}. Confidence: how likely the value is right, learned from how "
             "well the sources agree across all subjects; picked / entered: decided by the agent named.", ""]
    for (subject_id, subject), facts_of in _by_subject(rows):
        lines += [f"## {md_cell(subject)} ({md_cell(subject_id)})", "",
                  "| Field | Value | Confidence | Status | Citations |", "|---|---|---:|---|---|"]
        for f in facts_of:
            cites = "<br>".join(f"[{n}] {md_cell(_cite(c))} — “{md_cell(' '.join(c.snippet.split()))}”"
                                for n, c in enumerate(f.citations, 1))
            status = f.status + (f" by {f.agent}" if f.agent else "")
            lines.append(f"| {md_cell(f.field)} | {md_cell(f.value or '')} | {_percent(f)} | "
                         f"{md_cell(status)} | {cites} |")
        lines.append("")
    return "\n".join(lines).encode("utf-8")


_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_HTML = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:80rem}table{border-collapse:collapse;margin:1rem 0;
width:100%}td,th{border:1px solid #ccc;padding:.3rem .6rem;vertical-align:top;text-align:left}td.num{text-align:right}
.conflict,.low_confidence,.missing{color:#a00}ol{margin:0;padding-left:1.2rem}q{color:#555}</style></head><body>
<h1>{{ title }}</h1>
<p>Compiled {{ generated_at }}. Confidence: how likely the value is right, learned from how well the sources agree
across all subjects; picked / entered: decided by the agent named.</p>
{% for subject_id, subject, rows in subjects %}
<section><h2>{{ subject }} <small>({{ subject_id }})</small></h2>
<table><thead><tr><th>Field</th><th>Value</th><th>Confidence</th><th>Status</th><th>Citations</th></tr></thead><tbody>
{% for f in rows %}<tr><td>{{ f.field }}</td><td>{{ f.value if f.value is not none else "" }}</td>
<td class="num">{{ percent(f) }}</td>
<td class="{{ f.status }}">{{ f.status }}{% if f.agent %} by {{ f.agent }}{% endif %}</td>
<td>{% if f.citations %}<ol>{% for c in f.citations %}<li>{{ c.source }}:
{% if link(c.location) %}<a href="{{ link(c.location) }}" rel="noopener noreferrer">{{ c.location }}</a>
{% else %}{{ c.location }}{% endif %} ({{ c.where }}), retrieved {{ c.retrieved_at.isoformat() }}
<br><q>{{ c.snippet }}</q></li>{% endfor %}</ol>{% endif %}</td></tr>
{% endfor %}</tbody></table></section>
{% endfor %}
</body></html>
""")


def to_html(rows: Sequence[Fact], *, title: str, generated_at: datetime) -> bytes:
    """The deliverable as one HTML page, every value from a source escaped."""
    subjects = [(subject_id, subject, list(f)) for (subject_id, subject), f in _by_subject(rows)]
    return _HTML.render(title=title, generated_at=generated_at.isoformat(), subjects=subjects, percent=_percent,
                        link=_link).encode("utf-8")


FACT_COLUMNS = ("subject_id", "subject", "field", "value", "confidence", "status", "agent", "sources", "citations")
CITATION_COLUMNS = ("subject_id", "field", "value", "source", "location", "where", "snippet", "retrieved_at",
                    "content_hash")
CSV_COLUMNS = ("subject_id", "subject", "field", "value", "confidence", "status", "agent", "source", "location",
               "where", "snippet", "retrieved_at")


def _citation_row(f: Fact, c: Citation) -> list[str]:
    return [f.subject_id, f.field, f.value or "", c.source, c.location, c.where, c.snippet,
            c.retrieved_at.isoformat(), c.content_hash or ""]


def to_csv(rows: Sequence[Fact]) -> bytes:
    """The deliverable as CSV, one row per value and citation (a value without one: one row, citation empty)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for f in rows:
        confidence = "" if f.value is None else f"{f.confidence:.6f}"
        head = [f.subject_id, f.subject, f.field, f.value or "", confidence, f.status, f.agent or ""]
        for c in f.citations or (None,):
            tail = [c.source, c.location, c.where, c.snippet, c.retrieved_at.isoformat()] if c else [""] * 5
            writer.writerow([neutralize(v) for v in head + tail])
    return out.getvalue().encode("utf-8-sig")  # the BOM: spreadsheet programs then read it as UTF-8


def _text_cell(sheet: WriteOnlyWorksheet, text: str) -> WriteOnlyCell | str:
    # control characters XML cannot hold are written as visible escapes, not dropped
    value = ILLEGAL_CHARACTERS_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", neutralize(text))
    if not value.startswith("=") and value not in ERROR_CODES:
        return value  # openpyxl types a plain string as a string: a third faster than a cell object per value
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"  # a string, whatever it looks like: never a formula, never an error value
    return cell


def to_xlsx(rows: Sequence[Fact]) -> bytes:
    """The deliverable as a workbook: a Facts sheet (one row per value) and a Citations sheet (one per citation)."""
    book = Workbook(write_only=True)
    facts_sheet = book.create_sheet("Facts")
    facts_sheet.append([_text_cell(facts_sheet, c) for c in FACT_COLUMNS])
    cites_sheet = book.create_sheet("Citations")
    cites_sheet.append([_text_cell(cites_sheet, c) for c in CITATION_COLUMNS])
    for f in rows:
        confidence = WriteOnlyCell(facts_sheet, value=None if f.value is None else round(f.confidence, 6))
        confidence.number_format = "0.0%"
        text = [f.subject_id, f.subject, f.field, f.value or ""]
        rest = [f.status, f.agent or "", ", ".join(sorted({c.source for c in f.citations})),
                "\n".join(_cite(c) for c in f.citations)]
        facts_sheet.append([*(_text_cell(facts_sheet, v) for v in text), confidence,
                            *(_text_cell(facts_sheet, v) for v in rest)])
        for c in f.citations:
            cites_sheet.append([_text_cell(cites_sheet, v) for v in _citation_row(f, c)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def render(rows: Sequence[Fact], *, title: str, generated_at: datetime) -> dict[str, bytes]:
    """Every file of an edition by name: the four formats and the edition's JSON (for the next ``changes``)."""
    return {"report.md": to_markdown(rows, title=title, generated_at=generated_at),
            "report.html": to_html(rows, title=title, generated_at=generated_at),
            "report.xlsx": to_xlsx(rows), "report.csv": to_csv(rows), "edition.json": edition_json(rows)}


def _by_subject(rows: Sequence[Fact]) -> list[tuple[tuple[str, str], list[Fact]]]:
    """Facts by subject, subjects in their first appearance's order (the brief's)."""
    grouped: dict[tuple[str, str], list[Fact]] = {}
    for f in rows:
        grouped.setdefault((f.subject_id, f.subject), []).append(f)
    return list(grouped.items())


# ---- editions and what changed between two


def edition_json(rows: Sequence[Fact]) -> bytes:
    """An edition as JSON, to be read back by ``read_edition`` when the next edition is compared with it."""
    return json.dumps([as_dict(f) for f in rows], default=_iso, ensure_ascii=False,
                      sort_keys=True).encode("utf-8")


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} into an edition")


def read_edition(data: bytes) -> list[Fact]:
    """The facts of an edition written by ``edition_json``."""
    try:
        rows = json.loads(data)
        return [Fact(**{**row, "citations": tuple(
            Citation(**{**c, "retrieved_at": datetime.fromisoformat(c["retrieved_at"])}) for c in row["citations"])})
            for row in rows]
    except (ValueError, TypeError, KeyError) as exc:
        raise PublishError(f"not an edition written by this version ({type(exc).__name__})") from None


@dataclasses.dataclass(frozen=True)
class Change:
    subject_id: str
    subject: str
    field: str
    kind: ChangeKind
    before: str | None
    after: str | None


@dataclasses.dataclass(frozen=True)
class Changes:
    """What differs between two editions, each list sorted by subject and field."""

    changed: tuple[Change, ...]  # a value in both, not the same
    added: tuple[Change, ...]  # a value now, none before
    unsupported: tuple[Change, ...]  # a value before that no source states now

    def __len__(self) -> int:
        return len(self.changed) + len(self.added) + len(self.unsupported)

    def all(self) -> tuple[Change, ...]:
        return self.changed + self.added + self.unsupported


def changes(previous: Iterable[Fact], current: Iterable[Fact]) -> Changes:
    """Fields changed, added and no longer supported by any source between the ``previous`` and ``current`` edition."""
    before = {(f.subject_id, f.field): f for f in previous}
    after = {(f.subject_id, f.field): f for f in current}
    found: dict[ChangeKind, list[Change]] = {"changed": [], "added": [], "unsupported": []}
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        old_value = old.value if old else None
        new_value = new.value if new else None
        if old_value == new_value:
            continue
        kind: ChangeKind = "added" if old_value is None else "unsupported" if new_value is None else "changed"
        subject = (after.get(key) or before[key]).subject
        found[kind].append(Change(key[0], subject, key[1], kind, old_value, new_value))
    return Changes(tuple(found["changed"]), tuple(found["added"]), tuple(found["unsupported"]))


def changes_markdown(found: Changes, *, title: str) -> str:
    """What changed, for a Prefect markdown artifact and the weekly notice."""
    lines = [f"# {md_cell(title)}: what changed", "",
             f"{len(found.changed)} changed, {len(found.added)} added, {len(found.unsupported)} no longer supported "
             "by any source.", ""]
    if found:
        lines += ["| Subject | Field | Change | Before | Now |", "|---|---|---|---|---|"]
        lines += [f"| {md_cell(c.subject)} | {md_cell(c.field)} | {c.kind} | {md_cell(c.before or '')} | "
                  f"{md_cell(c.after or '')} |" for c in found.all()]
    return "\n".join(lines)


def changes_csv(found: Changes) -> bytes:
    """What changed as CSV, every cell neutralized."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(("subject_id", "subject", "field", "change", "before", "now"))
    for c in found.all():
        writer.writerow([neutralize(v) for v in (c.subject_id, c.subject, c.field, c.kind, c.before or "",
                                                 c.after or "")])
    return out.getvalue().encode("utf-8-sig")

