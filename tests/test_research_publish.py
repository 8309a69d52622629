"""bpo.research.publish: the deliverable's four formats read back, inert and escaped; what changed between editions."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook

from bpo.research.brief import Brief
from bpo.research.model import Candidate, Citation
from bpo.research.publish import (
    Change,
    Changes,
    Decision,
    Fact,
    PublishError,
    changes,
    changes_csv,
    changes_markdown,
    edition_json,
    facts,
    pick,
    read_edition,
    render,
)
from bpo.research.reconcile import reconcile

WHEN = datetime(2026, 11, 30, 8, 15, tzinfo=UTC)
GENERATED = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def cite(source: str, where: str = "dl > dd:nth-of-type(2)", snippet: str = "Phone: +44 20 7946 0958",
         location: str | None = None) -> Citation:
    return Citation(source, location or f"https://{source}.test/acme", where, snippet, WHEN, "ab" * 32)


FACTS = [
    Fact("acme", "Acme Ltd", "phone", "+442079460958", 0.973, "chosen", (cite("registry"), cite("directory"))),
    Fact("acme", "Acme Ltd", "founded", "1998", 1.0, "picked", (cite("registry", "page 2 (x 72, y 540)", "Founded 1998",
                                                                     "s3://corpus/acme.pdf"),), "agent.ann"),
    Fact("acme", "Acme Ltd", "email", None, 0.0, "missing"),
    Fact("bolt", "Bolt & Sons", "phone", "+441632960001", 0.61, "low_confidence", (cite("directory"),)),
]
HOSTILE = [
    Fact("x1", "=cmd|' /C calc'!A0", "note", "=HYPERLINK(\"http://evil.test\",\"click\")", 0.9, "chosen",
         (cite("web", snippet="<script>alert('snippet')</script>", location="javascript:alert(1)"),)),
    Fact("x1", "=cmd|' /C calc'!A0", "phone", "+1 555 0100", 0.9, "chosen", (cite("web", where="@SUM(A1)"),)),
    Fact("x1", "=cmd|' /C calc'!A0", "count", "-2+3", 0.9, "chosen", (cite("web", where="\t=1"),)),
    Fact("x1", "=cmd|' /C calc'!A0", "html", "<script>alert(1)</script> a|b\nc", 0.9, "chosen", (cite("web"),)),
]


def test_the_four_formats_read_back_with_every_value_its_confidence_and_citations() -> None:
    files = render(FACTS, title="Suppliers, December", generated_at=GENERATED)
    assert sorted(files) == ["edition.json", "report.csv", "report.html", "report.md", "report.xlsx"]

    rows = list(csv.DictReader(io.StringIO(files["report.csv"].decode("utf-8-sig"))))
    # an E.164 number starts with "+": a spreadsheet would read it as a formula, so it is quoted too
    assert [(r["subject_id"], r["field"], r["value"], r["source"]) for r in rows] == [
        ("acme", "phone", "'+442079460958", "registry"), ("acme", "phone", "'+442079460958", "directory"),
        ("acme", "founded", "1998", "registry"), ("acme", "email", "", ""), ("bolt", "phone", "'+441632960001",
                                                                             "directory")]
    assert rows[0]["confidence"] == "0.973000" and rows[2]["agent"] == "agent.ann" and rows[3]["confidence"] == ""
    assert rows[2]["where"] == "page 2 (x 72, y 540)" and rows[2]["location"] == "s3://corpus/acme.pdf"
    assert rows[0]["retrieved_at"] == WHEN.isoformat() and rows[0]["snippet"] == "Phone: +44 20 7946 0958"

    book = load_workbook(io.BytesIO(files["report.xlsx"]))
    sheet = [[c.value for c in row] for row in book["Facts"].iter_rows()]
    assert sheet[0] == ["subject_id", "subject", "field", "value", "confidence", "status", "agent", "sources",
                        "citations"]
    assert [r[:6] for r in sheet[1:]] == [["acme", "Acme Ltd", "phone", "'+442079460958", 0.973, "chosen"],
                                          ["acme", "Acme Ltd", "founded", "1998", 1.0, "picked"],
                                          ["acme", "Acme Ltd", "email", None, None, "missing"],
                                          ["bolt", "Bolt & Sons", "phone", "'+441632960001", 0.61, "low_confidence"]]
    assert sheet[1][7] == "directory, registry" and "https://registry.test/acme" in sheet[1][8]
    citations = [[c.value for c in row] for row in book["Citations"].iter_rows(min_row=2)]
    dd = "dl > dd:nth-of-type(2)"
    assert [(r[0], r[1], r[3], r[5]) for r in citations] == [
        ("acme", "phone", "registry", dd), ("acme", "phone", "directory", dd),
        ("acme", "founded", "registry", "page 2 (x 72, y 540)"), ("bolt", "phone", "directory", dd)]

    page = files["report.html"].decode()
    assert "<h2>Acme Ltd <small>(acme)</small></h2>" in page and "Bolt &amp; Sons" in page
    assert '<a href="https://registry.test/acme" rel="noopener noreferrer">' in page and "97.3%" in page
    assert "s3://corpus/acme.pdf (page 2 (x 72, y 540))" in page and "picked by agent.ann" in page

    markdown = files["report.md"].decode()
    table = [line for line in markdown.splitlines() if line.startswith("| phone") or line.startswith("| founded")]
    assert len(table) == 3
    assert table[0].startswith("| phone | +442079460958 | 97.3% | chosen | [1] registry: https://registry.test/acme")
    assert "[2] directory: https://directory.test/acme" in table[0]
    assert "| founded | 1998 | 100.0% | picked by agent.ann |" in table[1]
    assert "| email |  |  | missing |  |" in markdown  # no confidence shown beside no value


def test_formula_like_cells_are_neutralized_in_csv_and_xlsx() -> None:
    files = render(HOSTILE, title="t", generated_at=GENERATED)

    rows = list(csv.DictReader(io.StringIO(files["report.csv"].decode("utf-8-sig"))))
    assert [r["value"] for r in rows[:3]] == ["'=HYPERLINK(\"http://evil.test\",\"click\")", "'+1 555 0100", "'-2+3"]
    assert rows[0]["subject"] == "'=cmd|' /C calc'!A0"
    assert rows[1]["where"] == "'@SUM(A1)" and rows[2]["where"] == "'\t=1"

    book = load_workbook(io.BytesIO(files["report.xlsx"]))
    cells = [c for sheet in book for row in sheet.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert not any(isinstance(c.value, str) and c.value.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)
    facts_rows = [[c.value for c in row] for row in book["Facts"].iter_rows(min_row=2)]
    assert [r[3] for r in facts_rows[:3]] == ["'=HYPERLINK(\"http://evil.test\",\"click\")", "'+1 555 0100", "'-2+3"]


def test_html_is_escaped_and_links_only_to_web_pages() -> None:
    page = render(HOSTILE, title="<b>t</b>", generated_at=GENERATED)["report.html"].decode()

    assert "<script>" not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;script&gt;alert(&#39;snippet&#39;)" in page
    assert 'href="javascript' not in page and "javascript:alert(1)" in page  # shown, not linked


def test_markdown_cells_escape_pipes_markup_and_line_breaks() -> None:
    markdown = render(HOSTILE, title="t", generated_at=GENERATED)["report.md"].decode()

    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    cells = [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]
    assert {len(c) for c in cells} == {5}  # no value added a column
    html_row = next(c for c in cells if c[0].strip() == "html")
    assert html_row[1].strip() == "&lt;script&gt;alert(1)&lt;/script&gt; a\\|b<br>c"
    assert "<script>" not in markdown
    assert "## =cmd\\|' /C calc'!A0 (x1)" in markdown


def test_facts_lay_the_agents_decisions_over_the_reconciliation() -> None:
    brief = Brief.model_validate({
        "name": "t", "subjects": [{"id": "acme", "name": "Acme Ltd"}, {"id": "bolt", "name": "Bolt"}],
        "fields": {"phone": {"type": "phone", "required": True}, "founded": {"type": "year"}},
        "sources": [{"name": n, "kind": "corpus", "path": "/tmp"} for n in ("registry", "directory")]})
    candidates = [Candidate("acme", "phone", v, "+442079460958", "table", cite(s))
                  for s, v in (("registry", "020 7946 0958"), ("directory", "+44 20 7946 0958"))]
    candidates += [Candidate("acme", "founded", "1998", "1998", "pdf_text", cite("registry", "page 2")),
                   Candidate("acme", "founded", "1999", "1999", "text", cite("directory", "p"))]
    result = reconcile(candidates, brief)
    own = cite("agent", "call note", "confirmed by phone", "https://bolt.test/contact")
    founded = result.result("acme", "founded")
    assert pick(founded, "1999", "agent.ann") == pick(founded, [g.key for g in founded.groups].index("1999"),
                                                       "agent.ann")
    decisions = {("acme", "founded"): pick(founded, "1999", "agent.ann"),
                 ("bolt", "phone"): Decision("agent.bo", "+441632960001", (own,), entered=True),
                 ("bolt", "founded"): Decision("agent.bo", None, ())}

    rows = facts(result, brief, decisions)

    assert [(f.subject_id, f.field, f.value, f.status, f.agent) for f in rows] == [
        ("acme", "phone", "+442079460958", "chosen", None), ("acme", "founded", "1999", "picked", "agent.ann"),
        ("bolt", "phone", "+441632960001", "entered", "agent.bo"), ("bolt", "founded", None, "not_found", "agent.bo")]
    assert [c.source for c in rows[0].citations] == ["directory", "registry"]
    assert rows[1].citations == (cite("directory", "p"),) and rows[2].citations == (own,)
    assert rows[0].confidence == result.result("acme", "phone").confidence and rows[1].confidence == 1.0
    with pytest.raises(PublishError, match="cites nothing"):
        facts(result, brief, {("bolt", "phone"): Decision("agent.bo", "+441632960001", ())})
    with pytest.raises(PublishError, match="no candidate value with that key"):
        pick(founded, "2001", "agent.ann")
    with pytest.raises(PublishError, match="no candidate value number 2"):
        pick(founded, 2, "agent.ann")


def test_changes_between_editions_are_exact_and_an_edition_reads_back() -> None:
    previous = [*FACTS, Fact("gone", "Gone plc", "phone", "+441632960999", 0.9, "chosen", (cite("web"),))]
    current = [
        FACTS[0],  # unchanged
        Fact("acme", "Acme Ltd", "founded", "1999", 0.95, "chosen", (cite("web"),)),  # changed
        Fact("acme", "Acme Ltd", "email", "info@acme.test", 0.9, "chosen", (cite("web"),)),  # added
        Fact("bolt", "Bolt & Sons", "phone", None, 0.0, "missing"),  # no source states it now
        Fact("new", "New Co", "phone", "+441632960123", 0.9, "chosen", (cite("web"),)),  # a new subject
    ]

    found = changes(read_edition(edition_json(previous)), current)

    assert found == Changes(
        changed=(Change("acme", "Acme Ltd", "founded", "changed", "1998", "1999"),),
        added=(Change("acme", "Acme Ltd", "email", "added", None, "info@acme.test"),
               Change("new", "New Co", "phone", "added", None, "+441632960123")),
        unsupported=(Change("bolt", "Bolt & Sons", "phone", "unsupported", "+441632960001", None),
                     Change("gone", "Gone plc", "phone", "unsupported", "+441632960999", None)))
    assert len(found) == 5 and len(changes(current, current)) == 0
    assert read_edition(edition_json(previous)) == previous
    assert "1 changed, 2 added, 2 no longer supported by any source." in changes_markdown(found, title="Suppliers")
    assert list(csv.reader(io.StringIO(changes_csv(found).decode("utf-8-sig"))))[1] == [
        "acme", "Acme Ltd", "founded", "changed", "1998", "1999"]
    with pytest.raises(PublishError, match="not an edition"):
        read_edition(b'{"not": "a list"}')
