"""PDF documents through pdfplumber: tables, then the labelled text outside them, each with page and position.

A position is ``page 3 (x 72, y 540)``, in points from the page's top-left corner (pdfplumber's
``x0`` and ``top``): the value's first character in a text line, a table cell's top-left corner.
"""

from __future__ import annotations

import io
from typing import Any

import pdfplumber

from bpo.research.extractors.common import ExtractError, Finding, Vocabulary, snippet, squash
from bpo.research.extractors.tabular import Cell, read_table

MAX_PAGES = 500  # a document longer than this is read up to here: research sources are reports, not archives


def _where(page: int, x: float, y: float) -> str:
    return f"page {page} (x {round(x)}, y {round(y)})"


def _inside(line: dict[str, Any], boxes: list[tuple[float, float, float, float]]) -> bool:
    x = (line["x0"] + line["x1"]) / 2
    y = (line["top"] + line["bottom"]) / 2
    return any(x0 <= x <= x1 and top <= y <= bottom for x0, top, x1, bottom in boxes)


def _value_position(line: dict[str, Any], value: str) -> tuple[float, float]:
    """Where ``value`` starts in a text line: its first character's x0 and top (the line's where not found)."""
    text = line["text"]
    at = text.find(value)
    glyphs = [c for c in line.get("chars", []) if c["text"].strip()]
    if at < 0 or not glyphs:
        return line["x0"], line["top"]
    index = sum(1 for ch in text[:at] if ch.strip())
    char = glyphs[min(index, len(glyphs) - 1)]
    return char["x0"], char["top"]


def _page(number: int, page: Any, vocab: Vocabulary) -> tuple[list[Finding], str]:
    findings: list[Finding] = []
    tables = page.find_tables()
    for table in tables:
        rows = []
        for row, texts in zip(table.rows, table.extract(), strict=False):
            rows.append([Cell(text or "", _where(number, box[0], box[1]) if box else _where(number, *row.bbox[:2]))
                         for box, text in zip(row.cells, texts, strict=False)])
        findings += read_table(rows, vocab, "pdf_table")
    boxes = [t.bbox for t in tables]
    lines = page.extract_text_lines(return_chars=True)
    for line in lines:
        if _inside(line, boxes):
            continue
        for field, value in vocab.labelled(line["text"]):
            x, y = _value_position(line, value)
            findings.append(Finding(field, value, "pdf_text", _where(number, x, y), snippet(line["text"], value)))
    return findings, "\n".join(squash(line["text"]) for line in lines)


def read_pdf(raw: bytes, vocab: Vocabulary) -> tuple[list[Finding], str, str]:
    """Every finding in a PDF, its text and its title (the first line); a file pdfplumber cannot read
    raises ExtractError."""
    findings: list[Finding] = []
    texts: list[str] = []
    try:
        with pdfplumber.open(io.BytesIO(raw)) as pdf:
            for number, page in enumerate(pdf.pages[:MAX_PAGES], start=1):
                got, text = _page(number, page, vocab)
                findings += got
                texts.append(text)
    except ExtractError:
        raise
    except Exception as exc:  # pdfminer raises many unrelated types for a damaged file; all mean the same here
        raise ExtractError(f"not a readable PDF ({exc.__class__.__name__})") from None
    text = "\n".join(texts)
    return findings, text, text.split("\n", 1)[0]
