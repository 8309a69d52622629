"""bpo.exports: one neutralizer for every CSV and XLSX cell the product writes."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from bpo.exports import neutralize, write_table

DANGEROUS = ["=1+1", "+1415555", "-2+3", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("http://x","y")']
HARMLESS = ["Ann", "a=b", " =1", "1-2", "", "[/b]", "'quoted"]


@pytest.mark.parametrize("value", DANGEROUS)
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(value: str) -> None:
    assert neutralize(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_other_text_is_left_as_it_is(value: str) -> None:
    assert neutralize(value) == value


def test_csv_and_xlsx_hold_the_same_inert_cells(tmp_path: Path) -> None:
    when = datetime(2024, 3, 4, 12, 30, tzinfo=UTC)
    rows = [[1, "=1+1", {"email": "=cmd"}, Decimal("-12.50"), -3, None, when, "bell\x07"]]
    header = ["id", "text", "json", "money", "number", "none", "when", "control"]
    assert write_table(tmp_path / "t.csv", header, rows) == 1
    assert write_table(tmp_path / "t.xlsx", header, rows) == 1

    with (tmp_path / "t.csv").open(encoding="utf-8-sig", newline="") as f:
        csv_rows = list(csv.reader(f))
    assert csv_rows == [header, ["1", "'=1+1", '{"email": "=cmd"}', "-12.50", "-3", "", when.isoformat(),
                                 "bell\x07"]]

    sheet = load_workbook(tmp_path / "t.xlsx").active
    cells = [c for row in sheet.iter_rows(min_row=2) for c in row]
    assert [c.value for c in cells] == [1, "'=1+1", '{"email": "=cmd"}', "-12.50", -3, None,
                                        datetime(2024, 3, 4, 12, 30), "bell\\x07"]
    assert all(c.data_type != "f" for c in cells)


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx"):
        write_table(tmp_path / "t.ods", ["a"], [])
