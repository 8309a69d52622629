"""Tests for bpo.research.extract: every format's candidates, their normalized values and exact citations."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fpdf import FPDF

from bpo.research.brief import Brief, ResearchField
from bpo.research.extract import ExtractError, extract, extract_all
from bpo.research.model import Candidate, Document
from bpo.research.normalize import normalize_values

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def brief() -> Brief:
    return Brief.model_validate({
        "name": "suppliers",
        "subjects": [
            {"id": "acme", "name": "Acme Ltd", "identifiers": {"lei": "5493001KJTIIGC8Y1R12"}},
            {"id": "globex", "name": "Globex", "identifiers": {"lei": "5493007QAAAA00000001"}},
            {"id": "initech", "name": "Initech"},
        ],
        "fields": {
            "company": {"type": "organisation"},
            "phone": {"type": "phone", "country": "GB", "required": True},
            "email": {"type": "email"},
            "website": {"type": "url"},
            "founded": {"type": "year"},
            "employees": {"type": "count"},
            "city": {"type": "text", "labels": ["town"], "properties": ["address.addressLocality"]},
            "revenue": {"type": "money", "currency": "GBP", "labels": ["turnover"]},
        },
        "sources": [{"kind": "corpus", "name": "files", "path": "."}],
    })


def document(location: str, content_type: str | None, subject_id: str | None = None) -> Document:
    return Document(source="files", location=location, status="ok", retrieved_at=WHEN, subject_id=subject_id,
                    content_type=content_type, content_hash="ab" * 32)


def rows(candidates: list[Candidate]) -> list[tuple[str, str, str, str | None, str, str, str]]:
    """Each candidate as (subject, field, value, normalized, method, where, snippet), in document order."""
    return [(c.subject_id, c.field, c.value, c.normalized, c.method, c.citation.where, c.citation.snippet)
            for c in candidates]


PAGE = """<!DOCTYPE html>
<html><head>
<meta charset="windows-1252">
<title>Acme Ltd – supplier profile</title>
<meta property="og:url" content="https://acme.example/">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Organization",
 "legalName": "Acme Ltd",
 "telephone": "+44 20 7946 0000",
 "address": {"@type": "PostalAddress", "addressLocality": "Zürich"}}
</script>
<script>var contact = "Phone: +44 20 7946 9999"; document.write("<p>Email: fake@evil.example</p>");</script>
<style>.x:after { content: "Tel: +44 20 7946 8888" }</style>
</head><body>
<h1>Acme Ltd – café suppliers</h1>
<div itemscope itemtype="https://schema.org/Organization">
  <span itemprop="name">Acme Ltd</span> <a itemprop="email" href="mailto:Info@Acme.example">write to us</a>
</div>
<div vocab="https://schema.org/" typeof="Organization">
  <span property="name">Acme Ltd</span> since <span property="foundingDate">1999-04-01</span>
</div>
<table><tr><td>nav</td></tr></table>
<table>
  <tr><th>Employees</th><td>1,200</td></tr>
  <tr><th>Website</th><td>www.Acme.example</td></tr>
  <tr><th>Turnover:</th><td>£2,500,000</td></tr>
</table>
<dl><dt>E-mail</dt><dd>sales@acme.example</dd><dt>Town</dt><dd>Genève</dd></dl>
<p>Founded in 1998 by two engineers. Phone: 020 7946 0001</p>
<noscript>Phone: 020 7946 7777</noscript>
</body></html>
"""


def test_html_page_every_syntax_cited_by_css_path(brief: Brief):
    raw = PAGE.encode("cp1252")
    got = extract(document("/corpus/acme.html", "text/html"), raw, brief)
    assert rows(got) == [
        ("acme", "company", "Acme Ltd", "Acme Ltd", "jsonld", "html > head > script:nth-of-type(1)",
         '"legalName": "Acme Ltd",'),
        ("acme", "phone", "+44 20 7946 0000", "+442079460000", "jsonld", "html > head > script:nth-of-type(1)",
         '"telephone": "+44 20 7946 0000",'),
        ("acme", "city", "Zürich", "Zürich", "jsonld", "html > head > script:nth-of-type(1)",
         '"address": {"@type": "PostalAddress", "addressLocality": "Zürich"}}'),
        ("acme", "company", "Acme Ltd", "Acme Ltd", "microdata", "html > body > div:nth-of-type(1) > span",
         "Acme Ltd write to us"),
        ("acme", "email", "Info@Acme.example", "info@acme.example", "microdata",
         "html > body > div:nth-of-type(1) > a", "Acme Ltd write to us"),
        ("acme", "company", "Acme Ltd", "Acme Ltd", "rdfa", "html > body > div:nth-of-type(2) > span:nth-of-type(1)",
         "Acme Ltd since 1999-04-01"),
        ("acme", "founded", "1999-04-01", "1999", "rdfa", "html > body > div:nth-of-type(2) > span:nth-of-type(2)",
         "Acme Ltd since 1999-04-01"),
        ("acme", "website", "https://acme.example/", "https://acme.example/", "opengraph",
         "html > head > meta:nth-of-type(2)", "og:url: https://acme.example/"),
        ("acme", "employees", "1,200", "1200", "table", "html > body > table:nth-of-type(2) > tr:nth-of-type(1) > td",
         "Employees 1,200"),
        ("acme", "website", "www.Acme.example", "http://www.acme.example/", "table",
         "html > body > table:nth-of-type(2) > tr:nth-of-type(2) > td", "Website www.Acme.example"),
        ("acme", "revenue", "£2,500,000", "2500000.00 GBP", "table",
         "html > body > table:nth-of-type(2) > tr:nth-of-type(3) > td", "Turnover: £2,500,000"),
        ("acme", "email", "sales@acme.example", "sales@acme.example", "definition_list",
         "html > body > dl > dd:nth-of-type(1)", "E-mail sales@acme.example"),
        ("acme", "city", "Genève", "Genève", "definition_list", "html > body > dl > dd:nth-of-type(2)",
         "Town Genève"),
        ("acme", "founded", "1998", "1998", "text", "html > body > p",
         "Founded in 1998 by two engineers. Phone: 020 7946 0001"),
        ("acme", "phone", "020 7946 0001", "+442079460001", "text", "html > body > p",
         "Founded in 1998 by two engineers. Phone: 020 7946 0001"),
    ]
    citation = got[0].citation
    assert (citation.source, citation.location, citation.retrieved_at, citation.content_hash) == (
        "files", "/corpus/acme.html", WHEN, "ab" * 32)


# undeclared, declared wrongly (the bytes are no UTF-8), declared Latin-1 as browsers read it (cp1252)
@pytest.mark.parametrize("content_type", ["text/html", "text/html; charset=utf-8", "text/html; charset=ISO-8859-1"])
def test_html_not_utf8_decoded(brief: Brief, content_type: str):
    page = "<html><body><p>Company: Société Générale Café Ltd, Zürich €</p><p>Phone: 020 7946 0001</p></body></html>"
    doc = document("https://acme.example/about", content_type, subject_id="acme")
    got = extract(doc, page.encode("cp1252"), brief)
    assert [(c.field, c.value, c.citation.where) for c in got] == [
        ("company", "Société Générale Café Ltd, Zürich €", "html > body > p:nth-of-type(1)"),
        ("phone", "020 7946 0001", "html > body > p:nth-of-type(2)"),
    ]


TABLE_PAGE = """<html><head><title>Directory</title></head><body>
<table>
<tr><th>Company</th><th>LEI</th><th>Phone</th><th>Employees</th></tr>
<tr><td>Globex</td><td>5493007QAAAA00000001</td><td>+1 212 555 0100</td><td>50</td></tr>
<tr><td>Initech</td><td></td><td>+1 212 555 0199</td><td>many</td></tr>
<tr><td>Umbrella Corp</td><td></td><td>+1 212 555 0111</td><td>9</td></tr>
</table></body></html>"""


def test_html_header_row_table_rows_are_their_own_subjects(brief: Brief):
    got = extract(document("/corpus/directory.html", "text/html"), TABLE_PAGE.encode(), brief)
    where = "html > body > table > tr:nth-of-type({}) > td:nth-of-type({})"
    assert [(c.subject_id, c.field, c.value, c.normalized, c.method, c.citation.where) for c in got] == [
        ("globex", "company", "Globex", "Globex", "table", where.format(2, 1)),
        ("globex", "phone", "+1 212 555 0100", "+12125550100", "table", where.format(2, 3)),
        ("globex", "employees", "50", "50", "table", where.format(2, 4)),
        ("initech", "company", "Initech", "Initech", "table", where.format(3, 1)),
        ("initech", "phone", "+1 212 555 0199", "+12125550199", "table", where.format(3, 3)),
        ("initech", "employees", "many", None, "table", where.format(3, 4)),  # kept as weak evidence
    ]  # Umbrella Corp is no subject of the brief: its row is credited to no one
    assert got[1].citation.snippet == "Globex 5493007QAAAA00000001 +1 212 555 0100 50"
    # fetched for Initech: its own row, never another subject's
    for_initech = extract(document("https://dir.example/initech", "text/html", "initech"), TABLE_PAGE.encode(), brief)
    assert {c.subject_id for c in for_initech} == {"initech"}
    assert [c.value for c in for_initech if c.field == "phone"] == ["+1 212 555 0199", "+1 212 555 0111"]


def test_corpus_page_naming_no_subject_or_several_gives_nothing(brief: Brief):
    nobody = b"<html><body><p>Phone: 020 7946 0001</p></body></html>"
    assert extract(document("/corpus/x.html", "text/html"), nobody, brief) == []
    several = b"<html><body><p>Globex and Initech</p><p>Phone: 020 7946 0001</p></body></html>"
    assert extract(document("/corpus/y.html", "text/html"), several, brief) == []
    titled = b"<html><head><title>Initech</title></head><body><p>Unlike Globex,</p><p>Phone: 020 7946 0001</p>"
    assert [c.subject_id for c in extract(document("/corpus/z.html", "text/html"), titled, brief)] == ["initech"]


def report_pdf() -> bytes:
    pdf = FPDF(unit="pt", format="A4")
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.set_xy(72, 72)
    pdf.cell(text="Globex annual report")
    pdf.add_page()
    pdf.set_xy(72, 100)
    pdf.cell(text="Founded in 1999. Phone: 020 7946 0001")
    pdf.set_xy(72, 200)
    with pdf.table(width=300, col_widths=(150, 150), align="LEFT", line_height=20) as table:
        for label, value in (("Employees", "1,200"), ("Turnover", "GBP 3,000,000")):
            row = table.row()
            row.cell(label)
            row.cell(value)
    return bytes(pdf.output())


def test_pdf_text_and_table_with_page_and_position(brief: Brief):
    # text drawn at (72, 100) pt: "1999" starts after "Founded in " (Helvetica 12), the table's value
    # column at 72 + 150, its rows 20 pt apart from 200; the subject is named on page 1 only
    got = extract(document("/corpus/globex.pdf", "application/pdf"), report_pdf(), brief)
    assert rows(got) == [
        ("globex", "employees", "1,200", "1200", "pdf_table", "page 2 (x 222, y 200)", "Employees 1,200"),
        ("globex", "revenue", "GBP 3,000,000", "3000000.00 GBP", "pdf_table", "page 2 (x 222, y 220)",
         "Turnover GBP 3,000,000"),
        ("globex", "founded", "1999", "1999", "pdf_text", "page 2 (x 138, y 100)",
         "Founded in 1999. Phone: 020 7946 0001"),
        ("globex", "phone", "020 7946 0001", "+442079460001", "pdf_text", "page 2 (x 213, y 100)",
         "Founded in 1999. Phone: 020 7946 0001"),
    ]


@pytest.mark.parametrize("raw", [b"%PDF-1.7\n1 0 obj << /Type /Catalog", b"", b"not a pdf at all"])
def test_corrupt_pdf_raises_extract_error_with_its_reason(brief: Brief, raw: bytes):
    with pytest.raises(ExtractError, match=r"^not a readable PDF \(\w+\)$"):
        extract(document("/corpus/broken.pdf", "application/pdf"), raw, brief)


def test_batch_goes_on_past_an_unreadable_document(brief: Brief):
    broken = document("/corpus/broken.pdf", None)  # sniffed as a PDF by its first bytes
    good = document("/corpus/globex.pdf", "application/pdf")
    result = extract_all([(broken, report_pdf()[:400]), (good, report_pdf())], brief)
    assert result.failures == [(broken, "not a readable PDF (PdfminerException)")]
    assert [c.field for c in result.candidates] == ["employees", "revenue", "founded", "phone"]
    assert {c.citation.location for c in result.candidates} == {"/corpus/globex.pdf"}


def test_csv_rows_matched_to_subjects_by_identifier_column_or_name(brief: Brief):
    # rows numbered as a spreadsheet shows them: the header is row 1
    csv = ("LEI;Company;Phone;E-mail;Founded\n"
           "5493001KJTIIGC8Y1R12;ACME LIMITED;020 7946 0001;info@acme.example;1999\n"
           ";Initech;+1 212 555 0199;bad-address;c. 1987\n"
           ";Hooli;+1 650 555 0000;x@hooli.example;2004\n")
    got = extract(document("/corpus/list.csv", "text/csv"), csv.encode(), brief)
    assert rows(got) == [
        ("acme", "company", "ACME LIMITED", "ACME LIMITED", "csv", "row 2, column Company",
         "5493001KJTIIGC8Y1R12 ACME LIMITED 020 7946 0001 info@acme.example 1999"),
        ("acme", "phone", "020 7946 0001", "+442079460001", "csv", "row 2, column Phone",
         "5493001KJTIIGC8Y1R12 ACME LIMITED 020 7946 0001 info@acme.example 1999"),
        ("acme", "email", "info@acme.example", "info@acme.example", "csv", "row 2, column E-mail",
         "5493001KJTIIGC8Y1R12 ACME LIMITED 020 7946 0001 info@acme.example 1999"),
        ("acme", "founded", "1999", "1999", "csv", "row 2, column Founded",
         "5493001KJTIIGC8Y1R12 ACME LIMITED 020 7946 0001 info@acme.example 1999"),
        ("initech", "company", "Initech", "Initech", "csv", "row 3, column Company",
         "Initech +1 212 555 0199 bad-address c. 1987"),
        ("initech", "phone", "+1 212 555 0199", "+12125550199", "csv", "row 3, column Phone",
         "Initech +1 212 555 0199 bad-address c. 1987"),
        ("initech", "email", "bad-address", None, "csv", "row 3, column E-mail",
         "Initech +1 212 555 0199 bad-address c. 1987"),
        ("initech", "founded", "c. 1987", "1987", "csv", "row 3, column Founded",
         "Initech +1 212 555 0199 bad-address c. 1987"),
    ]


def test_sql_result_document_belongs_to_its_subject(brief: Brief):
    result = {"columns": ["telephone", "employees", "website", "notes"],
              "rows": [["+44 20 7946 0958", 250, "HTTPS://Globex.example/about", "Initech partner"]]}
    doc = Document(source="registry", location="sql:registry", status="ok", retrieved_at=WHEN, subject_id="globex",
                   content_type="application/json")
    got = extract(doc, json.dumps(result).encode(), brief)
    assert rows(got) == [
        ("globex", "phone", "+44 20 7946 0958", "+442079460958", "sql", "row 1, column telephone",
         "+44 20 7946 0958 250 HTTPS://Globex.example/about Initech partner"),
        ("globex", "employees", "250", "250", "sql", "row 1, column employees",
         "+44 20 7946 0958 250 HTTPS://Globex.example/about Initech partner"),
        ("globex", "website", "HTTPS://Globex.example/about", "https://globex.example/about", "sql",
         "row 1, column website", "+44 20 7946 0958 250 HTTPS://Globex.example/about Initech partner"),
    ]
    assert got[0].citation.location == "sql:registry"
    with pytest.raises(ExtractError, match=r'^a SQL result is \{"columns"'):
        extract(doc, b'{"rows": 3}', brief)


def test_plain_text_labelled_lines(brief: Brief):
    text = ("Initech\n\nTel +1 (212) 555-0199; e-mail: hello@initech.example\nTurnover: $1.5 USD\n"
            "Founded in March 1987\n")
    got = extract(document("/corpus/initech.txt", "text/plain"), text.encode(), brief)
    assert [(c.subject_id, c.field, c.value, c.normalized, c.method, c.citation.where) for c in got] == [
        ("initech", "phone", "+1 (212) 555-0199", "+12125550199", "text", "line 3"),
        ("initech", "email", "hello@initech.example", "hello@initech.example", "text", "line 3"),
        ("initech", "revenue", "$1.5 USD", "1.50 USD", "text", "line 4"),
        ("initech", "founded", "March 1987", "1987", "text", "line 5"),
    ]
    assert got[0].citation.snippet == "Tel +1 (212) 555-0199; e-mail: hello@initech.example"


def test_failed_fetch_gives_nothing_and_unknown_format_is_refused(brief: Brief):
    failed = Document(source="web", location="https://x.example/", status="failed", retrieved_at=WHEN,
                      error="timed out")
    assert extract(failed, b"", brief) == []
    with pytest.raises(ExtractError, match="unknown document format"):
        extract(document("/corpus/photo.jpg", "image/jpeg"), b"\xff\xd8\xff", brief)
    with pytest.raises(ExtractError, match="not a SQL query's result"):
        extract(document("https://api.example/acme", "application/json", "acme"), b'{"phone": "1"}', brief)


@pytest.mark.parametrize(("kind", "values", "expected"), [
    ("url", ["HTTPS://Acme.Example:443/a?b=1#top", "www.acme.example", "http://x.example:8080", "mailto:a@b.c",
             "acme dot com"],
     ["https://acme.example/a?b=1", "http://www.acme.example/", "http://x.example:8080/", None, None]),
    ("year", ["1999", "since 1987", "March 1999", "1999-04-01", "04/03/2001", "3 March 2004", "nineteen", "12345",
              "Acme 1999"],
     ["1999", "1987", "1999", "1999", "2001", "2004", None, None, None]),
])
def test_research_normalizers(kind: str, values: list[str], expected: list[str | None]):
    assert normalize_values(ResearchField(name="f", type=kind), values) == expected
