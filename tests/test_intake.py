"""Tests for bpo.readers and bpo.intake: every format, encoding, header rule and bad input, built in code."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
import zipfile
from collections.abc import Callable

import pandas as pd
import pytest
from openpyxl import Workbook

from bpo import intake
from bpo.readers import (
    SUPPORTED_SUFFIXES,
    BadRow,
    FileRead,
    UnreadableFile,
    count_records,
    header_key,
    match_headers,
    read_batch_file,
)
from bpo.readers import csv as csv_reader
from bpo.settings import get_settings
from bpo.spec import IntakeSpec, ProcessSpec, load_spec

HEADERS = ["Customer ID", "First Name", "Surname", "E-mail Address", "Phone", "Plan", "Notes"]
FIELDS = ["customer_id", "first_name", "last_name", "email", "phone", "plan"]
ROWS = [
    ["00123", "José", "Müller", "jose@example.com", "+44 20 7946 0958", "premium", "n1"],
    ["007", "Zoë", "Ñúñez", "=1+1", "-5", "@SUM(A1)", ""],
    ["42", "", "Brontë", "zoe@example.com", "", "basic", "n3"],
]
EXPECTED = [dict(zip(FIELDS, (v or None for v in row[:6]), strict=True)) for row in ROWS]


@pytest.fixture(scope="module")
def spec() -> ProcessSpec:
    return load_spec("customer_onboarding")


def csv_text(rows: list[list[str]], delimiter: str = ",") -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return out.getvalue()


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    """A one-sheet workbook storing every str as a string cell, even one starting with '='."""
    wb = Workbook()
    ws = wb.active
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is None or value == "":
                continue
            cell = ws.cell(row=r, column=c, value=value)
            if isinstance(value, str):
                cell.data_type = "s"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def with_intake(spec: ProcessSpec, **intake_options: str) -> ProcessSpec:
    return spec.model_copy(update={"intake": IntakeSpec(**intake_options)})


def records(rows: list[list[str]]) -> list[dict[str, str]]:
    return [dict(zip(HEADERS, row, strict=True)) for row in rows]


def build(fmt: str) -> tuple[str, bytes, list[int]]:
    """The ROWS table written in one format, with the _source_row each record should get."""
    if fmt == "csv":
        return "batch.csv", csv_text([HEADERS, *ROWS]).encode(), [2, 3, 4]
    if fmt == "xlsx":
        return "batch.xlsx", xlsx_bytes([HEADERS, *ROWS]), [2, 3, 4]
    if fmt == "json":
        return "batch.json", json.dumps(records(ROWS)).encode(), [1, 2, 3]
    if fmt == "json_wrapped":
        return "batch.json", json.dumps({"count": 3, "records": records(ROWS)}).encode(), [1, 2, 3]
    lines = [json.dumps(r, ensure_ascii=False) for r in records(ROWS)]
    return "batch.jsonl", "\n".join(lines).encode(), [1, 2, 3]


def values(read: FileRead) -> list[dict[str, str | None]]:
    return read.frame[[c for c in read.frame.columns if not c.startswith("_")]].to_dict("records")


def assert_raw_frame(read: FileRead) -> None:
    """Every field column is object dtype holding only str or None."""
    for column in read.frame.columns:
        if column == "_source_row":
            assert pd.api.types.is_integer_dtype(read.frame[column])
            continue
        assert read.frame[column].dtype == object
        assert all(v is None or isinstance(v, str) for v in read.frame[column])


def read_error(name: str, data: bytes, spec: ProcessSpec, **kwargs: int) -> UnreadableFile:
    with pytest.raises(UnreadableFile) as info:
        read_batch_file(name, data, spec, **kwargs)
    return info.value


def unreadable(name: str, data: bytes, spec: ProcessSpec, **kwargs: int) -> str:
    with pytest.raises(UnreadableFile) as info:
        read_batch_file(name, data, spec, **kwargs)
    assert str(info.value) == info.value.reason
    return info.value.reason


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("text", "key"),
    [("E-mail Address", "emailaddress"), ("EMAIL_ADDRESS", "emailaddress"), (" e mail  address ", "emailaddress"),
     ("Cust. ID", "custid"), ("Date of Birth (DOB)", "dateofbirthdob"), ("Nº Café", "nocafé")],
)
def test_header_key(text: str, key: str) -> None:
    assert header_key(text) == key


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("E-mail Address", "email"), ("EMAIL_ADDRESS", "email"), ("e mail address", "email"),
        ("Cust. ID", "customer_id"), ("customer_id", "customer_id"), ("ZIP", "postal_code"),
        ("Sign-Up Date", "signup_date"), ("D.O.B.", "date_of_birth"),
    ],
)
def test_exact_header_match(header: str, field: str, spec: ProcessSpec) -> None:
    assert match_headers([header], spec) == ({header: field}, [], [])


def test_fuzzy_header_is_low_confidence(spec: ProcessSpec) -> None:
    header_map, low, unmapped = match_headers(["Frist Name", "Emial Adress", "Notes"], spec)
    assert header_map == {"Frist Name": "first_name", "Emial Adress": "email"}
    assert sorted(low) == ["email", "first_name"]
    assert unmapped == ["Notes"]


def test_exact_header_beats_fuzzy_and_first_exact_wins(spec: ProcessSpec) -> None:
    header_map, low, unmapped = match_headers(["Frist Name", "First Name", "Email", "E-mail"], spec)
    assert header_map == {"First Name": "first_name", "Email": "email"}
    assert low == []
    assert unmapped == ["Frist Name", "E-mail"]


def test_unmapped_and_blank_headers_reported(spec: ProcessSpec) -> None:
    read = read_batch_file("a.csv", b"customer_id,,Favourite Colour,email\n1,x,red,a@b.c\n", spec)
    assert read.unmapped == ["(column 2, no header)", "Favourite Colour"]
    assert values(read) == [{"customer_id": "1", "email": "a@b.c"}]


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json", "jsonl"])
def test_no_recognizable_headers(fmt: str, spec: ProcessSpec) -> None:
    rows = [["foo", "bar"], ["1", "2"]]
    name, data = {
        "csv": ("a.csv", csv_text(rows).encode()),
        "xlsx": ("a.xlsx", xlsx_bytes(rows)),
        "json": ("a.json", json.dumps([{"foo": 1, "bar": 2}]).encode()),
        "jsonl": ("a.jsonl", b'{"foo": 1, "bar": 2}\n'),
    }[fmt]
    reason = unreadable(name, data, spec)
    assert reason.startswith("no recognizable headers: found 'foo', 'bar'; expected e.g. customer_id")


# ---------------------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json", "json_wrapped", "jsonl"])
def test_each_format_reads_raw_strings(fmt: str, spec: ProcessSpec) -> None:
    name, data, source_rows = build(fmt)
    if fmt == "json_wrapped":
        spec = with_intake(spec, json_records="records")
    read = read_batch_file(name, data, spec)
    assert read.format == {"json_wrapped": "json"}.get(fmt, fmt)
    assert list(read.frame.columns) == [
        "customer_id", "first_name", "last_name", "email", "phone", "plan", "_source_file", "_source_row"
    ]
    assert values(read) == EXPECTED
    assert read.frame["_source_row"].tolist() == source_rows
    assert read.frame["_source_file"].tolist() == [name + ("#Sheet" if fmt == "xlsx" else "")] * 3
    assert read.header_map == dict(zip(HEADERS[:6], FIELDS, strict=True))
    assert read.unmapped == ["Notes"]
    assert read.low_confidence == []
    assert read.bad_rows == []
    assert read.encoding == (None if fmt == "xlsx" else "utf-8")
    assert_raw_frame(read)


def test_suffix_is_case_insensitive_and_ndjson_is_jsonl(spec: ProcessSpec) -> None:
    assert read_batch_file("A.CSV", b"customer_id\n1\n", spec).format == "csv"
    assert read_batch_file("a.NDJSON", b'{"customer_id": "1"}\n', spec).format == "jsonl"
    assert SUPPORTED_SUFFIXES == (".csv", ".xlsx", ".json", ".jsonl", ".ndjson")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiters(delimiter: str, spec: ProcessSpec) -> None:
    rows = [HEADERS, *ROWS, ["9", "Ann; Marie", "O'Neil, Jr", "a|b@example.com", "1,5", "basic", ""]]
    read = read_batch_file("a.csv", csv_text(rows, delimiter).encode(), spec)
    assert values(read)[:3] == EXPECTED
    assert values(read)[3]["first_name"] == "Ann; Marie"
    assert values(read)[3]["last_name"] == "O'Neil, Jr"
    assert read.frame["_source_row"].tolist() == [2, 3, 4, 5]


def test_csv_keeps_leading_zeros_and_never_infers(spec: ProcessSpec) -> None:
    data = b"customer_id,opening_balance,plan,phone\n00123,1.50,NA,1e5\n000,0010,null,-0\n"
    read = read_batch_file("a.csv", data, spec)
    assert values(read) == [
        {"customer_id": "00123", "phone": "1e5", "plan": "NA", "opening_balance": "1.50"},
        {"customer_id": "000", "phone": "-0", "plan": "null", "opening_balance": "0010"},
    ]
    assert_raw_frame(read)


def test_csv_formula_like_cells_stay_literal(spec: ProcessSpec) -> None:
    data = b'customer_id,email,phone,plan\n1,=1+1,+44 20,-5\n2,@SUM(A1),"=HYPERLINK(""x"")",=cmd|\' /C calc\'!A0\n'
    read = read_batch_file("a.csv", data, spec)
    assert values(read) == [
        {"customer_id": "1", "email": "=1+1", "phone": "+44 20", "plan": "-5"},
        {"customer_id": "2", "email": "@SUM(A1)", "phone": '=HYPERLINK("x")', "plan": "=cmd|' /C calc'!A0"},
    ]


def test_csv_short_rows_blank_lines_crlf_and_multiline_fields(spec: ProcessSpec) -> None:
    data = b'customer_id,email,plan\r\n1,a@b.c\r\n\r\n2,"two\r\nlines",basic\r\n,,\r\n3,,premium\r\n'
    read = read_batch_file("a.csv", data, spec)
    assert values(read) == [
        {"customer_id": "1", "email": "a@b.c", "plan": None},
        {"customer_id": "2", "email": "two\r\nlines", "plan": "basic"},
        {"customer_id": "3", "email": None, "plan": "premium"},
    ]
    assert read.frame["_source_row"].tolist() == [2, 4, 7]


def test_csv_leading_blank_lines_before_header(spec: ProcessSpec) -> None:
    read = read_batch_file("a.csv", b"\n\ncustomer_id,email\n1,a@b.c\n", spec)
    assert values(read) == [{"customer_id": "1", "email": "a@b.c"}]
    assert read.frame["_source_row"].tolist() == [4]


def test_csv_extra_fields_become_bad_rows(spec: ProcessSpec) -> None:
    data = b'customer_id,email\n1,a@b.c\n2,b@c.d,surplus\n3,"multi\nline",x,y\n4,d@e.f,,\n5,e@f.g\n'
    read = read_batch_file("a.csv", data, spec)
    assert values(read) == [
        {"customer_id": "1", "email": "a@b.c"},
        {"customer_id": "4", "email": "d@e.f"},
        {"customer_id": "5", "email": "e@f.g"},
    ]
    assert read.frame["_source_row"].tolist() == [2, 6, 7]
    assert read.bad_rows == [
        BadRow(3, "2,b@c.d,surplus", "more fields than the header's 2 columns"),
        BadRow(4, '3,"multi\nline",x,y', "more fields than the header's 2 columns"),
    ]


def test_csv_bad_row_raw_is_truncated(spec: ProcessSpec) -> None:
    data = b"customer_id,email\n1,a," + b"z" * 5000 + b"\n"
    (bad,) = read_batch_file("a.csv", data, spec).bad_rows
    assert bad.row == 2
    assert len(bad.raw) == 2000
    assert bad.raw.startswith("1,a,zzz")


CSV_VARIANTS = {
    "plain": b"customer_id,email\n1,a@b.c\n2,b@c.d\n",
    "extra fields": b"customer_id,email\n1,a,b\n2,b,c,d,e,f,g,h,i,j,k,l,m\n3,c\n",
    "many extra fields": b"customer_id,email\n1," + b",".join([b"x"] * 30) + b"\n2,b\n",
    "multiline": b'customer_id,email\n"1\n1","a\n\nb"\n2,b\n\n\n3,"c"\n',
    "lone cr": b"customer_id,email\r1,a\r2,b\r",
    "lone cr in quotes": b'customer_id,email\r\n1,"a\rb"\r\n2,b\r\n',
    "unterminated quote": b'customer_id,email\n1,"a\n2,b\n',
    "long line": b"customer_id,email\n1," + b"y" * 150_000 + b"\n2,b\n",
    "blank and empty rows": b"customer_id,email,plan\n\n,,\n1,,\n,,x\n",
    "quotes": b'customer_id,email\n"1","a ""quoted"" b"\n"2",b\n',
    "semicolon": "customer_id;email\n1;José\n2;a,b\n".encode(),
    "bom": b"\xef\xbb\xbfcustomer_id,email\n1,a\n",
    "header only": b"customer_id,email\n",
}


@pytest.mark.parametrize("data", CSV_VARIANTS.values(), ids=CSV_VARIANTS.keys())
def test_csv_fast_and_careful_paths_agree(data: bytes, spec: ProcessSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    def read() -> FileRead | str:
        try:
            return read_batch_file("a.csv", data, spec, max_field_chars=200_000)
        except UnreadableFile as error:
            return error.reason

    fast = read()
    monkeypatch.setattr(csv_reader, "_csv_fast", lambda *args: None)
    careful = read()
    if isinstance(fast, str) or isinstance(careful, str):
        assert fast == careful
        return
    pd.testing.assert_frame_equal(fast.frame, careful.frame)
    assert fast.bad_rows == careful.bad_rows
    assert (fast.header_map, fast.unmapped, fast.encoding) == (careful.header_map, careful.unmapped, careful.encoding)
    assert_raw_frame(fast)


def test_csv_lone_cr_line_endings(spec: ProcessSpec) -> None:
    read = read_batch_file("a.csv", CSV_VARIANTS["lone cr"], spec)
    assert values(read) == [{"customer_id": "1", "email": "a"}, {"customer_id": "2", "email": "b"}]
    assert read.frame["_source_row"].tolist() == [2, 3]


def test_csv_large_file_takes_fast_path(spec: ProcessSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(11)
    plans = ["basic", "premium", "two\nlines", ""]
    rows = [[f"{i:06d}", f"user{i}@example.com", rnd.choice(plans)] for i in range(20_000)]
    text = csv_text([["customer_id", "email", "plan"], *rows]) + "x,y,z,surplus\n"
    data = text.encode()
    line = 2 + sum(r[2].count("\n") + 1 for r in rows[:-1])

    def careful_forbidden(*args: object) -> None:
        raise AssertionError("a regular file must not need the csv-module path")

    monkeypatch.setattr(csv_reader, "_csv_slow", careful_forbidden)
    read = read_batch_file("a.csv", data, spec)
    assert len(read.frame) == 20_000
    assert read.frame["customer_id"].iloc[-1] == "019999"
    assert read.frame["_source_row"].iloc[-1] == line
    assert read.frame["plan"].tolist() == [r[2] or None for r in rows]
    surplus_line = line + 1 + rows[-1][2].count("\n")
    assert read.bad_rows == [BadRow(surplus_line, "x,y,z,surplus", "more fields than the header's 3 columns")]


def xlsx_formula_book() -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.append(["Customer ID", "Opening Balance", "Phone", "DOB", "Signup Date", "Plan", "Email"])
    ws.append(["00123", 10, 12.0, dt.date(1980, 2, 29), dt.datetime(2024, 3, 4, 10, 30), True, "a@b.c"])
    ws.append([])
    ws.append([7, 12.5, "+44 20", None, dt.datetime(2024, 3, 5), "-5", None])
    ws.append(["8", "=SUM(B2:B4)", "=1+1", "@SUM(A1)", "2024-01-01", "basic", "x@y.z"])
    ws["C5"].data_type = "s"  # literal text that merely starts with "="
    assert ws["B5"].data_type == "f"  # a real formula, whose cached value would be a number
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_cells_become_raw_text(spec: ProcessSpec) -> None:
    read = read_batch_file("a.xlsx", xlsx_formula_book(), spec)
    assert values(read) == [
        {"customer_id": "00123", "email": "a@b.c", "phone": "12", "date_of_birth": "1980-02-29",
         "signup_date": "2024-03-04T10:30:00", "plan": "TRUE", "opening_balance": "10"},
        {"customer_id": "7", "email": None, "phone": "+44 20", "date_of_birth": None,
         "signup_date": "2024-03-05", "plan": "-5", "opening_balance": "12.5"},
        {"customer_id": "8", "email": "x@y.z", "phone": "=1+1", "date_of_birth": "@SUM(A1)",
         "signup_date": "2024-01-01", "plan": "basic", "opening_balance": "=SUM(B2:B4)"},
    ]
    assert read.frame["_source_row"].tolist() == [2, 4, 5]
    assert read.encoding is None
    assert_raw_frame(read)


def two_sheet_book(*, blank: bool = False, headless: bool = False) -> bytes:
    wb = Workbook()
    first = wb.active
    first.title = "Forms"
    first.append([None])
    first.append(["customer_id", "email", None])
    first.append(["1", "a@b.c"])
    first.append(["2", "b@c.d", None, "stray"])
    other = wb.create_sheet("Late forms")
    other.append(["customer_id"])
    other.append(["999"])
    if blank:
        wb.create_sheet("Blank")
    if headless:
        notes = wb.create_sheet("Notes")
        notes.append(["alpha", "beta"])
        notes.append(["1", "2"])
        notes.append(["3", "4"])
    wb.active = 1
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def test_xlsx_reads_every_sheet_and_reports_cells_beyond_header(spec: ProcessSpec) -> None:
    read = read_batch_file("a.xlsx", two_sheet_book(), spec)
    assert values(read) == [{"customer_id": "1", "email": "a@b.c"}, {"customer_id": "999", "email": None}]
    assert read.frame["_source_file"].tolist() == ["a.xlsx#Forms", "a.xlsx#Late forms"]
    assert read.frame["_source_row"].tolist() == [3, 2]
    assert read.bad_rows == [BadRow(4, "2,b@c.d,,stray", "values beyond the last header column (B)", "a.xlsx#Forms")]
    assert_raw_frame(read)


def test_xlsx_sheet_without_header_is_quarantined_and_empty_sheet_noted(spec: ProcessSpec) -> None:
    read = read_batch_file("a.xlsx", two_sheet_book(blank=True, headless=True), spec)
    assert read.frame["customer_id"].tolist() == ["1", "999"]
    headless = [b for b in read.bad_rows if b.source == "a.xlsx#Notes"]
    assert [(b.row, b.raw) for b in headless] == [(2, "1,2"), (3, "3,4")]
    assert all(b.reason.startswith("sheet 'Notes': no recognizable headers: found 'alpha', 'beta'") for b in headless)
    assert read.notes == ["sheet 'Blank' is empty"]


def test_xlsx_spec_names_the_sheet(spec: ProcessSpec) -> None:
    read = read_batch_file("a.xlsx", two_sheet_book(), with_intake(spec, sheet="Late forms"))
    assert values(read) == [{"customer_id": "999"}]
    assert read.notes == ["sheet 'Forms' not read: the spec names sheet 'Late forms'"]
    error = read_error("a.xlsx", two_sheet_book(), with_intake(spec, sheet="Missing"))
    assert error.reason == "the spec names sheet 'Missing'; the workbook has 'Forms', 'Late forms'"
    assert error.records == 3  # the rows under each sheet's first row


def test_xlsx_whose_sheets_name_no_field_counts_its_rows(spec: ProcessSpec) -> None:
    wb = Workbook()
    wb.active.append(["alpha"])
    wb.active.append(["1"])
    wb.create_sheet("Two").append(["beta"])
    buf = io.BytesIO()
    wb.save(buf)
    error = read_error("a.xlsx", buf.getvalue(), spec)
    assert error.reason.startswith("sheet 'Sheet': no recognizable headers: found 'alpha'")
    assert error.records == 1


def zip_bomb(inflated: int) -> bytes:
    """A real workbook whose sheet inflates to about ``inflated`` bytes of identical rows (some 340×)."""
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes([["customer_id"], ["1"]])))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for member in source.infolist():
            if member.filename != "xl/worksheets/sheet1.xml":
                zf.writestr(member, source.read(member))
        with zf.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as part:
            part.write(b'<?xml version="1.0" encoding="UTF-8"?>'
                       b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                       b'<row><c t="inlineStr"><is><t>customer_id</t></is></c></row>')
            rows = b'<row><c t="inlineStr"><is><t>1</t></is></c></row>' * (1 << 14)
            for _ in range(inflated // len(rows)):
                part.write(rows)
            part.write(b"</sheetData></worksheet>")
    return buf.getvalue()


def test_zip_bomb_workbook_is_refused_before_it_is_inflated(spec: ProcessSpec) -> None:
    bomb = zip_bomb(64 << 20)
    assert len(bomb) < 200_000
    reason = unreadable("bomb.xlsx", bomb, spec, max_decompressed_bytes=32 << 20)
    assert reason.startswith("workbook refused: it inflates to 6"), reason
    assert "bytes, past the 33,554,432-byte cap (BPO_MAX_DECOMPRESSED_BYTES)" in reason
    # under the cap, the ratio alone gives it away
    reason = unreadable("bomb.xlsx", bomb, spec)
    assert "-fold (a zip bomb, not a sheet)" in reason
    assert get_settings().max_decompressed_bytes == 500_000_000


def test_json_values_keep_their_text(spec: ProcessSpec) -> None:
    data = (
        b'[{"customer_id": 123, "opening_balance": 1.50, "plan": true, "email": null, "phone": "007",'
        b' "first_name": {"a": [1, 2.5]}, "last_name": ""}]'
    )
    read = read_batch_file("a.json", data, spec)
    assert values(read) == [
        {"customer_id": "123", "first_name": '{"a": [1, 2.5]}', "last_name": None, "email": None,
         "phone": "007", "plan": "true", "opening_balance": "1.50"}
    ]
    assert_raw_frame(read)


def test_json_keys_union_and_non_objects(spec: ProcessSpec) -> None:
    data = json.dumps({"data": [{"customer_id": "1"}, "oops", {"email": "b@c.d", "Notes": "n"}, [1]]}).encode()
    read = read_batch_file("a.json", data, with_intake(spec, json_records="data"))
    assert values(read) == [{"customer_id": "1", "email": None}, {"customer_id": None, "email": "b@c.d"}]
    assert read.frame["_source_row"].tolist() == [1, 3]
    assert read.unmapped == ["Notes"]
    assert read.bad_rows == [BadRow(2, '"oops"', "not a JSON object"), BadRow(4, "[1]", "not a JSON object")]


def test_jsonl_bad_lines_are_bad_rows(spec: ProcessSpec) -> None:
    data = (
        b'{"customer_id": "1"}\n\n{"customer_id": "2", oops}\r\n[1, 2]\n'
        b'{"customer_id": "3"}\n{"customer_id": "4", "em'
    )
    read = read_batch_file("a.jsonl", data, spec)
    assert values(read) == [{"customer_id": "1"}, {"customer_id": "3"}]
    assert read.frame["_source_row"].tolist() == [1, 5]
    assert [(b.row, b.raw) for b in read.bad_rows] == [
        (3, '{"customer_id": "2", oops}'), (4, "[1, 2]"), (6, '{"customer_id": "4", "em')
    ]
    assert "not valid JSON" in read.bad_rows[0].reason
    assert read.bad_rows[1].reason == "not a JSON object"
    assert "not valid JSON" in read.bad_rows[2].reason


@pytest.mark.parametrize(
    ("name", "data"),
    [("a.csv", b"customer_id,email\n"), ("a.json", b"[]"), ("a.json", b'{"records": []}'),
     ("a.xlsx", xlsx_bytes([["customer_id", "email"]]))],
)
def test_header_only_is_an_empty_frame(name: str, data: bytes, spec: ProcessSpec) -> None:
    if data.startswith(b"{"):
        spec = with_intake(spec, json_records="records")
    read = read_batch_file(name, data, spec)
    assert read.frame.empty
    assert {"_source_file", "_source_row"} <= set(read.frame.columns)
    assert read.bad_rows == []


# ---------------------------------------------------------------------------- encodings

WESTERN = {
    "utf-8": ["José", "Müller", "€ 12,50"],
    "utf-8-sig": ["José", "Müller", "€ 12,50"],
    "cp1252": ["José", "Müller", "€ 12,50 – “quoted”"],
    "latin-1": ["José", "Müller", "São Paulo ½ ±"],
    "utf-16": ["José", "Müller", "€ 12,50 – 東京"],
}
REPORTED = {"utf-8": {"utf-8"}, "utf-8-sig": {"utf-8-sig"}, "cp1252": {"cp1252"},
            "latin-1": {"cp1252", "latin_1", "iso8859_1"}, "utf-16": {"utf-16"}}


def encoded(fmt: str, rows: list[list[str]], encoding: str) -> tuple[str, bytes]:
    header = ["Customer ID", "First Name", "Last Name", "Notes"]
    if fmt == "csv":
        text, name = csv_text([header, *rows]), "a.csv"
    elif fmt == "json":
        text, name = json.dumps([dict(zip(header, r, strict=True)) for r in rows], ensure_ascii=False), "a.json"
    else:
        text = "\n".join(json.dumps(dict(zip(header, r, strict=True)), ensure_ascii=False) for r in rows)
        name = "a.jsonl"
    return name, text.encode(encoding)


def western_rows(words: list[str], count: int, seed: int) -> list[list[str]]:
    rnd = random.Random(seed)
    extra = ["Straße", "Ærøskøbing", "Ñandú", "crème brûlée", "Zoë", "Côte d'Ivoire", "Œuvre", "naïve"]
    rows = [[f"{i:05d}", words[0], words[1], words[2]] for i in range(min(count, 2))]
    for i in range(2, count):
        rows.append([f"{i:05d}", rnd.choice(words[:2] + extra), rnd.choice(extra), " ".join(rnd.sample(extra, 3))])
    return rows


@pytest.mark.parametrize("count", [2, 1000], ids=["short", "long"])
@pytest.mark.parametrize("encoding", list(WESTERN))
@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_text_encodings(fmt: str, encoding: str, count: int, spec: ProcessSpec) -> None:
    words = WESTERN[encoding]
    rows = western_rows(words, count, seed=count)
    if encoding == "latin-1":
        rows = [[c.replace("Œ", "OE") for c in r] for r in rows]
    name, data = encoded(fmt, rows, encoding)
    read = read_batch_file(name, data, spec)
    assert read.encoding in REPORTED[encoding]
    assert list(read.frame.columns)[:3] == ["customer_id", "first_name", "last_name"]  # BOM stripped
    assert read.frame["customer_id"].tolist() == [r[0] for r in rows]
    assert read.frame["first_name"].tolist() == [r[1] for r in rows]
    assert read.frame["last_name"].tolist() == [r[2] for r in rows]
    assert read.unmapped == ["Notes"]


def test_cyrillic_code_page_is_not_forced_to_cp1252(spec: ProcessSpec) -> None:
    rows = [["1", "Иван", "Петров"], ["2", "Мария", "Смирнова"], ["3", "Алексей", "Кузнецов"]] * 5
    data = csv_text([["customer_id", "first_name", "last_name"], *rows]).encode("cp1251")
    read = read_batch_file("a.csv", data, spec)
    assert read.encoding == "cp1251"
    assert read.frame["first_name"].tolist() == [r[1] for r in rows]


def test_central_european_code_page_is_not_forced_to_cp1252(spec: ProcessSpec) -> None:
    rows = [["1", "Łucja", "Wałbrzych"], ["2", "Paweł", "Michałowski"]]
    data = csv_text([["customer_id", "first_name", "last_name"], *rows]).encode("cp1250")
    read = read_batch_file("a.csv", data, spec)
    assert read.frame["last_name"].tolist() == ["Wałbrzych", "Michałowski"]


# ---------------------------------------------------------------------------- bad files


def big_field_csv(size: int) -> bytes:
    return b"customer_id,email,notes\n1,a@b.c,ok\n2,b@c.d," + b"x" * size + b"\n3,c@d.e,ok\n"


def truncated_xlsx() -> bytes:
    data = xlsx_bytes([HEADERS, *ROWS])
    return data[: len(data) // 2]


def random_binary() -> bytes:
    return random.Random(5).randbytes(4096)


BAD_FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "pdf suffix": ("scan.pdf", lambda: b"%PDF-1.7", "unsupported file type '.pdf'; expected one of .csv"),
    "no suffix": ("README", lambda: b"x", "no extension"),
    "csv 0 bytes": ("a.csv", lambda: b"", "empty file"),
    "csv whitespace": ("a.csv", lambda: b" \r\n\t\n", "empty file"),
    "csv bom only": ("a.csv", lambda: b"\xef\xbb\xbf\n", "empty file"),
    "csv utf-16 bom only": ("a.csv", lambda: b"\xff\xfe", "empty file"),
    "json whitespace": ("a.json", lambda: b"\n\n", "empty file"),
    "jsonl bom only": ("a.jsonl", lambda: b"\xef\xbb\xbf", "empty file"),
    "xlsx 0 bytes": ("a.xlsx", lambda: b"", "empty file"),
    "csv binary nul": ("a.csv", lambda: b"customer_id\n\x00\x01\x02\x03", "binary content, not a text CSV file"),
    "csv random bytes": ("a.csv", random_binary, "binary content, not a text CSV file"),
    "csv control bytes": ("a.csv", lambda: bytes(range(1, 32)) * 20, "binary content, not a text CSV file"),
    "json binary": ("a.json", random_binary, "binary content, not a text JSON file"),
    "jsonl png": ("a.jsonl", lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary content"),
    "csv is an xlsx": ("a.csv", lambda: xlsx_bytes([HEADERS]), "binary content"),
    "xlsx truncated": ("a.xlsx", truncated_xlsx, "not a readable XLSX workbook"),
    "xlsx is a pdf": (
        "a.xlsx", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj", "not a readable XLSX workbook: the file is a PDF"
    ),
    "xlsx is csv text": ("a.xlsx", lambda: b"customer_id\n1\n", "not a readable XLSX workbook"),
    "xlsx is legacy xls": ("a.xlsx", lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, "legacy .xls"),
    "xlsx zip without workbook": ("a.xlsx", lambda: zip_bytes({"hello.txt": b"hi"}), "not a readable XLSX workbook"),
    "xlsx no data": ("a.xlsx", lambda: xlsx_bytes([]), "empty file"),
    "json truncated": (
        "a.json",
        lambda: b'[{"customer_id": "1"},\n {"email": "a',
        "not valid JSON (truncated or corrupt): Unterminated string starting at line 2, column 12",
    ),
    "json lines in .json": ("a.json", lambda: b'{"customer_id": "1"}\n{"customer_id": "2"}\n', "name the file .jsonl"),
    "json scalar": ("a.json", lambda: b'"customer_id"', "expected a JSON array of records or an object"),
    "json object of arrays": ("a.json", lambda: b'{"a": [], "b": []}', "no recognizable headers: found 'a', 'b'"),
    "json array of numbers": ("a.json", lambda: b"[1, 2, 3]", "none of its 3 items is an object"),
    "jsonl no objects": ("a.jsonl", lambda: b"customer_id,email\n1,a@b.c\n", "no line is a JSON object"),
    "csv unterminated quote": (
        "a.csv", lambda: b'customer_id,email\n1,a@b.c\n2,"b@c.d\n3,c@d.e\n4,d@e.f\n', "unterminated quoted field"
    ),
    "csv truncated in quote": ("a.csv", lambda: b'customer_id,email\n1,a@b.c\n2,"b@c', "truncated"),
    "csv quote swallows big rest": (
        "a.csv",
        lambda: b'customer_id,email\n1,"a\n' + b"2,b@c.d\n" * 20_000,
        "field longer than 100000 characters at row 2",
    ),
}


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, content in members.items():
            zf.writestr(member, content)
    return buf.getvalue()


@pytest.mark.parametrize(("name", "make", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_files_are_unreadable(name: str, make: Callable[[], bytes], expected: str, spec: ProcessSpec) -> None:
    reason = unreadable(name, make(), spec)
    assert expected in reason
    assert "\n" not in reason


@pytest.mark.parametrize(("name", "data", "row"), [
    ("a.csv", big_field_csv(50_000_000), 3),
    ("a.json", b'[{"customer_id": "1"}, {"customer_id": "' + b"9" * 50_000_000 + b'"}, {"customer_id": "3"}]', 2),
    ("a.jsonl", b'{"customer_id": "1"}\n\n{"customer_id": "' + b"e" * 50_000_000 + b'"}\n{"customer_id": "3"}\n', 3),
    ("a.xlsx", xlsx_bytes([["customer_id"], ["1"], ["9" * 30_000], ["3"]]), 3),
], ids=["csv", "json", "jsonl", "xlsx"])
def test_an_over_long_field_quarantines_its_row_not_the_file(name: str, data: bytes, row: int,
                                                            spec: ProcessSpec) -> None:
    read = read_batch_file(name, data, spec, max_field_chars=20_000)
    assert read.frame["customer_id"].tolist() == ["1", "3"]
    assert [(b.row, b.reason) for b in read.bad_rows] == [(row, "field longer than 20000 characters")]
    assert len(read.bad_rows[0].raw) == 2_000


@pytest.mark.parametrize(("name", "data", "row"), [
    ("a.csv", b"customer_id,email\n1,a@b.c\n2,b\x00@c.d\n3,c@d.e\n", 3),
    ("a.json", b'[{"customer_id": "1"}, {"customer_id": "2\x00"}, {"customer_id": "3"}]', 2),
    ("a.jsonl", b'{"customer_id": "1"}\n{"customer_id": "2\x00"}\n{"customer_id": "3"}\n', 2),
], ids=["csv", "json", "jsonl"])
def test_a_stray_nul_byte_quarantines_its_row_not_the_file(name: str, data: bytes, row: int,
                                                          spec: ProcessSpec) -> None:
    read = read_batch_file(name, data, spec)
    assert read.frame["customer_id"].tolist() == ["1", "3"]
    assert [(b.row, b.reason) for b in read.bad_rows] == [(row, "stray NUL byte in the row")]


def test_field_limit_is_configurable_and_exact(spec: ProcessSpec) -> None:
    ok = read_batch_file("a.csv", b"customer_id,email\n1,012345678901\n", spec, max_field_chars=12)
    assert ok.frame["email"].tolist() == ["012345678901"]
    read = read_batch_file("a.csv", b"customer_id,email\n1,a\n2,0123456789012\n", spec, max_field_chars=12)
    assert read.bad_rows == [BadRow(3, "2,0123456789012", "field longer than 12 characters")]
    read = read_batch_file("a.json", b'[{"email": "a"}, {"email": "0123456789012"}]', spec, max_field_chars=12)
    assert [(b.row, b.reason) for b in read.bad_rows] == [(2, "field longer than 12 characters")]
    big = 200_000
    read = read_batch_file("a.csv", big_field_csv(big), spec, max_field_chars=big)
    assert read.frame["customer_id"].tolist() == ["1", "2", "3"]


def test_a_json_object_is_one_record_unless_the_spec_names_the_array(spec: ProcessSpec) -> None:
    read = read_batch_file("a.json", b'{"customer_id": "1", "records": [{"customer_id": "2"}]}', spec)
    assert values(read) == [{"customer_id": "1"}]
    assert read.unmapped == ["records"]
    nested = with_intake(spec, json_records="data.records")
    read = read_batch_file("a.json", b'{"data": {"records": [{"customer_id": "2"}]}}', nested)
    assert values(read) == [{"customer_id": "2"}]
    reason = unreadable("a.json", b'{"data": {"rows": []}}', nested)
    assert reason == "no 'records' under data for the spec's json_records 'data.records'; found keys 'rows'"
    reason = unreadable("a.json", b'{"data": {"records": {}}}', nested)
    assert reason == "the spec's json_records 'data.records' is a dict, not an array of records"


@pytest.mark.parametrize(("name", "data", "records"), [
    ("a.csv", b"alpha,beta\n1,2\n\n3,4\n", 2),  # lines minus the header, blank lines left out
    ("a.jsonl", b'{"a": 1}\n{"b": 2}\n', 2),
    ("a.csv", b"", 0),
    ("a.csv", random.Random(5).randbytes(4096), 0),  # binary: no record-shaped content
    ("a.txt", b"name\nAnn\n", 1),
    ("a.json", b'{"a": [1, ', None),  # a JSON document's records cannot be told from its lines
    ("a.xlsx", b"PK\x03\x04damaged", None),  # a package holds records nobody can count
    ("a.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64, None),
])
def test_records_of_a_file_quarantined_whole_are_counted_where_they_can_be(name: str, data: bytes,
                                                                          records: int | None) -> None:
    assert count_records(name, data) == records


def test_unreadable_reason_attribute() -> None:
    error = UnreadableFile("empty file")
    assert error.reason == "empty file"
    assert str(error) == "empty file"


# ---------------------------------------------------------------------------------------------
# chunks


@pytest.mark.parametrize(("rows", "size", "bounds"), [
    (0, 200, []),
    (1, 200, [(0, 1)]),
    (200, 200, [(0, 200)]),
    (250, 200, [(0, 250)]),  # a tail under half a chunk joins the last chunk
    (300, 200, [(0, 200), (200, 300)]),  # half a chunk or more is a chunk of its own
    (450, 200, [(0, 200), (200, 450)]),
    (1000, 200, [(0, 200), (200, 400), (400, 600), (600, 800), (800, 1000)]),
])
def test_chunk_bounds_cover_every_record_once(rows: int, size: int, bounds: list[tuple[int, int]]) -> None:
    assert intake.chunk_bounds(rows, size) == bounds
    covered = [i for start, end in bounds for i in range(start, end)]
    assert covered == list(range(rows))
