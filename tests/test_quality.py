"""Expectation suites and validate_frame (bpo.quality) with Great Expectations, no mocks."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import bpo.quality as quality
from bpo.normalizers import normalize_frame
from bpo.quality import ROW, SuiteError, load_suite, validate_frame
from bpo.samples import make_records
from bpo.spec import ProcessSpec, load_spec, process_spec_paths

SUITE_FILES = sorted(quality.EXPECTATIONS_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def spec() -> ProcessSpec:
    return load_spec("customer_onboarding")


@pytest.fixture
def suites_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the suite loader at an empty folder for one test (BPO_PROCESS_DIRS)."""
    from bpo.settings import get_settings

    monkeypatch.setenv("BPO_PROCESS_DIRS", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    monkeypatch.delenv("BPO_PROCESS_DIRS")
    get_settings.cache_clear()


def clean_batch(spec: ProcessSpec, n: int = 12, seed: int = 11) -> pd.DataFrame:
    """A normalized batch without problems, as prepare_chunk leaves it: batch-wide ``_row`` numbers that
    are neither positions nor index labels (rows 40, 43, 46, ... on a shuffled index)."""
    raw = pd.DataFrame(make_records(n, seed=seed, review_fraction=0), dtype=object)
    result = normalize_frame(raw, spec)
    assert result.issues.empty, result.issues
    data = result.data.assign(**{ROW: [40 + 3 * i for i in range(n)]})
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return data.iloc[order].set_index(pd.Index([1000 - i for i in range(n)]))


def row_of(frame: pd.DataFrame, position: int) -> int:
    return int(frame[ROW].iloc[position])


def found(failures: pd.DataFrame) -> set[tuple[int, str, str]]:
    return {(int(r.row), r.field, r.check) for r in failures.itertuples()}


# ---------------------------------------------------------------------------------------------
# suites


def test_there_is_a_suite_for_every_spec() -> None:
    for path in process_spec_paths():
        assert (quality.EXPECTATIONS_DIR / f"{load_spec(path).suite}.json").is_file(), path


@pytest.mark.parametrize("path", SUITE_FILES, ids=[p.stem for p in SUITE_FILES])
def test_every_suite_loads_all_its_expectations(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    suite = load_suite(path.stem)
    assert suite.name == data["name"] == path.stem
    assert len(data["expectations"]) > 0
    assert len(suite.expectations) == len(data["expectations"])
    loaded = sorted((e.expectation_type, e.column) for e in suite.expectations)
    assert loaded == sorted((e["type"], e["kwargs"]["column"]) for e in data["expectations"])
    assert isinstance(suite.meta.get("grain"), str) and suite.meta["grain"].strip()


def test_suite_with_unknown_expectation_type_is_refused(suites_dir: Path) -> None:
    (suites_dir / "odd.json").write_text(json.dumps({"name": "odd", "meta": {"grain": "one row per thing"},
                                                     "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "a"}},
    ]}))
    with pytest.raises(SuiteError, match="expect_column_values_to_be_purple"):
        load_suite("odd")


def test_missing_suite_is_refused(suites_dir: Path) -> None:
    with pytest.raises(SuiteError, match="no expectation suite 'nowhere'"):
        load_suite("nowhere")


def test_malformed_suite_file_is_refused_with_suite_error(suites_dir: Path) -> None:
    (suites_dir / "broken.json").write_text('{"name": "broken", "expectations": [')
    with pytest.raises(SuiteError, match="broken"):
        load_suite("broken")


# ---------------------------------------------------------------------------------------------
# validate_frame


def test_clean_batch_validates(spec: ProcessSpec) -> None:
    checked = validate_frame(clean_batch(spec), spec)
    assert checked.success is True
    assert checked.failures.empty
    assert list(checked.failures.columns) == ["row", "field", "check", "reason"]
    assert checked.result["success"] is True
    assert len(checked.result["results"]) == len(load_suite(spec.suite).expectations)
    # the Data Docs page is a whole HTML document about this suite
    assert checked.html.lstrip().lower().startswith("<!doctype html") or "<html" in checked.html.lower()
    assert spec.suite in checked.html
    json.dumps(checked.result)  # JSON-ready, as it is stored


def test_docs_false_renders_no_html(spec: ProcessSpec) -> None:
    checked = validate_frame(clean_batch(spec, n=3), spec, docs=False)
    assert checked.success is True and checked.html == ""


def test_failures_map_to_rows_and_fields(spec: ProcessSpec) -> None:
    batch = clean_batch(spec)
    bad = batch.copy()
    col = bad.columns.get_loc
    bad.iloc[1, col("customer_id")] = bad.iloc[0, col("customer_id")]  # duplicate key: both rows
    bad.iloc[2, col("email")] = "ann@localhost"  # no dot in the domain
    bad.iloc[3, col("plan")] = "platinum"
    bad.iloc[4, col("date_of_birth")] = "1890-01-01"
    bad.iloc[5, col("signup_date")] = "2031-01-01"
    bad.iloc[6, col("opening_balance")] = Decimal("-5.00")
    bad.iloc[7, col("last_name")] = pd.NA
    bad.iloc[8, col("country")] = "ZZ"

    checked = validate_frame(bad, spec)

    assert checked.success is False
    assert found(checked.failures) == {
        (row_of(bad, 0), "customer_id", "expect_column_values_to_be_unique"),
        (row_of(bad, 1), "customer_id", "expect_column_values_to_be_unique"),
        (row_of(bad, 2), "email", "expect_column_values_to_match_regex"),
        (row_of(bad, 3), "plan", "expect_column_values_to_be_in_set"),
        (row_of(bad, 4), "date_of_birth", "expect_column_values_to_be_between"),
        (row_of(bad, 5), "signup_date", "expect_column_values_to_be_between"),
        (row_of(bad, 6), "opening_balance", "expect_column_values_to_be_between"),
        (row_of(bad, 7), "last_name", "expect_column_values_to_not_be_null"),
        (row_of(bad, 8), "country", "expect_column_values_to_be_in_set"),
    }
    assert len(checked.failures) == 9
    reasons = {(int(r.row), r.field): r.reason for r in checked.failures.itertuples()}
    assert reasons[(row_of(bad, 0), "customer_id")] == f"'{bad.iloc[0, col('customer_id')]}' appears more than once " \
                                                       "in this batch"
    assert reasons[(row_of(bad, 2), "email")] == "'ann@localhost' does not have the expected format"
    assert reasons[(row_of(bad, 3), "plan")] == "'platinum' is not one of basic, standard, premium"
    assert reasons[(row_of(bad, 4), "date_of_birth")] == "'1890-01-01' is outside 1900-01-01 .. 2015-12-31"
    assert "-5.00" in reasons[(row_of(bad, 6), "opening_balance")]
    assert reasons[(row_of(bad, 7), "last_name")] == "required value is missing"
    # the input frame is left as it was (dates stay ISO text)
    assert bad.iloc[4, col("date_of_birth")] == "1890-01-01"
    # only the failing rows are reported; the others of the same batch are not
    assert set(checked.failures["row"]) == {row_of(bad, i) for i in range(9)}


@pytest.mark.parametrize(("field", "value", "check"), [
    ("email", "no-at-sign.example.com", "expect_column_values_to_match_regex"),
    ("phone", "4155550100", "expect_column_values_to_match_regex"),
    ("customer_id", "C 1", "expect_column_values_to_match_regex"),
    ("signup_date", "1999-12-31", "expect_column_values_to_be_between"),
    ("opening_balance_currency", "XXX", "expect_column_values_to_be_in_set"),
    ("plan", None, "expect_column_values_to_not_be_null"),
    ("signup_date", None, "expect_column_values_to_not_be_null"),
])
def test_single_failure_on_one_row(spec: ProcessSpec, field: str, value: object, check: str) -> None:
    bad = clean_batch(spec, n=5, seed=23)
    bad.iloc[2, bad.columns.get_loc(field)] = pd.NA if value is None else value
    checked = validate_frame(bad, spec, docs=False)
    assert checked.success is False
    assert found(checked.failures) == {(row_of(bad, 2), field, check)}


def test_data_docs_show_a_failing_validation(spec: ProcessSpec) -> None:
    bad = clean_batch(spec, n=4)
    bad.iloc[0, bad.columns.get_loc("plan")] = "platinum"
    checked = validate_frame(bad, spec)
    assert checked.success is False
    assert spec.suite in checked.html
    assert "expect_column_values_to_be_in_set" in checked.html or "values must belong to this set" in checked.html


def test_data_docs_escape_values_from_client_files() -> None:
    from bpo.spec import load_spec

    spec = load_spec("customer_onboarding")
    frame = pd.DataFrame({ROW: [0, 1], "customer_id": ["C0000001", "<script>alert(1)</script>"],
                          "first_name": ["A", "B"], "last_name": ["A", "B"], "email": ["a@b.co", "c@d.co"],
                          "signup_date": ["2024-01-01", "2024-01-02"], "country": ["US", "US"],
                          "plan": ["basic", "basic"]})
    checked = validate_frame(frame, spec)
    assert "<script>alert(1)</script>" in set(checked.failures["reason"].str.extract(r"'(.*)'")[0])
    assert "<script>alert" not in checked.html
    assert "&lt;script&gt;alert" in checked.html


# ---------------------------------------------------------------------------------------------
# chunk by chunk, then the whole batch


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: p.stem)
def test_row_and_batch_scopes_split_a_suite_without_loss(path: Path) -> None:
    whole = load_suite(path.stem)
    row, batch = load_suite(path.stem, scope="row"), load_suite(path.stem, scope="batch")
    types = sorted(e.expectation_type for e in whole.expectations)
    assert sorted(e.expectation_type for e in [*row.expectations, *batch.expectations]) == types
    # uniqueness needs every record of the batch at once
    assert all("unique" not in e.expectation_type or "within_record" in e.expectation_type for e in row.expectations)


def test_an_expectation_type_not_known_to_be_row_local_is_checked_batch_wide(suites_dir: Path) -> None:
    (suites_dir / "s.json").write_text(json.dumps({"name": "s", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
        {"type": "expect_column_mean_to_be_between", "kwargs": {"column": "a", "min_value": 0, "max_value": 1}},
        {"type": "expect_column_values_to_be_increasing", "kwargs": {"column": "a"}}]}))
    assert [e.expectation_type for e in load_suite("s", scope="row").expectations] == [
        "expect_column_values_to_not_be_null"]
    assert {e.expectation_type for e in load_suite("s", scope="batch").expectations} == {
        "expect_column_mean_to_be_between", "expect_column_values_to_be_increasing"}


def test_chunks_then_batch_find_what_one_validation_of_the_whole_finds(spec: ProcessSpec) -> None:
    bad = clean_batch(spec, n=20)
    col = bad.columns.get_loc
    bad.iloc[15, col("customer_id")] = bad.iloc[2, col("customer_id")]  # the two records fall in different chunks
    bad.iloc[3, col("plan")] = "platinum"
    bad.iloc[12, col("email")] = "ann@localhost"
    bad.iloc[18, col("last_name")] = pd.NA
    whole = validate_frame(bad, spec, docs=False)

    chunks = [validate_frame(bad.iloc[:10], spec, docs=False, scope="row"),
              validate_frame(bad.iloc[10:], spec, docs=False, scope="row")]
    batch = validate_frame(bad[["customer_id", ROW]], spec, docs=False, scope="batch")

    assert found(pd.concat([c.failures for c in chunks] + [batch.failures])) == found(whole.failures)
    assert found(batch.failures) == {(row_of(bad, 2), "customer_id", "expect_column_values_to_be_unique"),
                                     (row_of(bad, 15), "customer_id", "expect_column_values_to_be_unique")}


def test_chunk_results_combine_into_one_verdict_per_expectation_and_one_data_docs_page() -> None:
    def checked(name: str, scope: str, success: bool, summary: dict[str, Any]) -> quality.Checked:
        return quality.Checked(name=name, scope=scope, success=success, failed_records=0 if success else 1,
                               failures="f", result=f"run/validation/{name}.result.json", summary=summary,
                               objects=[])

    def result(kind: str, column: str, elements: int, bad: list[str]) -> dict[str, object]:
        return {"expectation_config": {"type": kind, "kwargs": {"column": column}}, "success": not bad,
                "result": {"element_count": elements, "missing_count": 0, "unexpected_count": len(bad),
                           "partial_unexpected_list": bad,
                           "partial_unexpected_counts": [{"value": v, "count": bad.count(v)} for v in set(bad)]}}

    null, regex = "expect_column_values_to_not_be_null", "expect_column_values_to_match_regex"
    combined = quality.combine_results("suite", [
        checked("a", "row", False, {"results": [result(null, "x", 10, []),
                                                result(regex, "email", 10, ["<script>x</script>", "bad"])]}),
        checked("b", "row", False, {"results": [result(null, "x", 5, []), result(regex, "email", 5, ["bad"])]}),
        checked("batch", "batch", True, {"results": [result("expect_column_values_to_be_unique", "x", 15, [])]})])

    assert combined["success"] is False
    by_type = {r["expectation_config"]["type"]: r for r in combined["results"]}
    assert by_type[null]["success"] is True
    assert by_type[null]["result"]["element_count"] == 15
    assert by_type[null]["checked"] == "per chunk"
    merged = by_type[regex]["result"]
    assert by_type[regex]["success"] is False
    assert (merged["element_count"], merged["unexpected_count"]) == (15, 3)
    assert merged["unexpected_percent"] == pytest.approx(20.0)
    assert merged["partial_unexpected_list"] == ["<script>x</script>", "bad", "bad"]
    assert merged["partial_unexpected_counts"][0] == {"value": "bad", "count": 2}
    assert by_type["expect_column_values_to_be_unique"]["checked"] == "whole batch"
    assert combined["statistics"]["evaluated_expectations"] == 3
    assert combined["statistics"]["unsuccessful_expectations"] == 1
    assert [v["name"] for v in combined["validations"]] == ["a", "b", "batch"]
    json.dumps(combined)

    page = quality.render_docs(combined)
    assert "suite" in page and "email" in page
    assert "<script>x</script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page


def test_samples_of_failing_values_stop_at_twenty() -> None:
    many = {"expectation_config": {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "plan"}},
            "success": False, "result": {"element_count": 30, "unexpected_count": 30,
                                         "partial_unexpected_list": [f"v{i}" for i in range(20)],
                                         "partial_unexpected_counts": [{"value": f"v{i}", "count": 1}
                                                                       for i in range(20)]}}
    check = quality.Checked(name="a", scope="row", success=False, failed_records=30, failures="f", result="r",
                            summary={"results": [many]}, objects=[])
    combined = quality.combine_results("suite", [check, check])
    merged = combined["results"][0]["result"]
    assert len(merged["partial_unexpected_list"]) == 20
    assert len(merged["partial_unexpected_counts"]) == 20 and merged["partial_unexpected_counts"][0]["count"] == 2


# ---------------------------------------------------------------------------------------------
# mostly: the verdict is the whole batch's


def as_checked(name: str, scope: str, validation: quality.Validation) -> quality.Checked:
    """A validation as check_part or check_batch would hand it on (without storing it)."""
    return quality.Checked(name=name, scope=scope, success=validation.success,
                           failed_records=int(validation.failures["row"].nunique()), failures=f"{name}.parquet",
                           result=f"{name}.json", summary=validation.result, objects=[])


@pytest.fixture
def mostly_batch(spec: ProcessSpec, suites_dir: Path) -> tuple[ProcessSpec, pd.DataFrame]:
    """A suite asking that mostly 80% of emails look like emails, and 20 records of which 3 do not,
    all three in the first chunk of ten: that chunk fails alone (70%), the batch passes (85%)."""
    (suites_dir / "mostly.json").write_text(json.dumps({"name": "mostly", "meta": {"grain": "one row per record"},
                                                        "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "customer_id"}},
        {"type": "expect_column_values_to_match_regex",
         "kwargs": {"column": "email", "regex": "^[^@]+@[^@]+$", "mostly": 0.8}}]}))
    data = clean_batch(spec, n=20)
    for position in (1, 4, 7):
        data.iloc[position, data.columns.get_loc("email")] = "not an email"
    return spec.model_copy(update={"suite": "mostly"}), data


def test_mostly_summed_over_chunks_gives_the_whole_batch_verdict(mostly_batch) -> None:
    spec, data = mostly_batch
    whole = validate_frame(data, spec, docs=False)
    first, second = (validate_frame(data.iloc[:10], spec, docs=False), validate_frame(data.iloc[10:], spec, docs=False))
    assert whole.success is True and first.success is False and second.success is True

    combined = quality.combine_results("mostly", [as_checked("a", "row", first), as_checked("b", "row", second)])
    assert combined["success"] is whole.success
    by_type = {r["expectation_config"]["type"]: r for r in combined["results"]}
    regex = by_type["expect_column_values_to_match_regex"]
    assert regex["success"] is True
    assert regex["result"]["unexpected_percent"] == pytest.approx(15.0)


def test_mostly_below_the_threshold_over_the_batch_still_fails(mostly_batch) -> None:
    spec, data = mostly_batch
    data.iloc[12, data.columns.get_loc("email")] = "nope"
    data.iloc[15, data.columns.get_loc("email")] = "nope"  # 5 of 20: 75% < 80%
    chunks = [validate_frame(data.iloc[:10], spec, docs=False), validate_frame(data.iloc[10:], spec, docs=False)]
    combined = quality.combine_results("mostly", [as_checked(str(i), "row", c) for i, c in enumerate(chunks)])
    assert combined["success"] is validate_frame(data, spec, docs=False).success is False


def test_a_mostly_expectation_is_checked_over_the_whole_batch(mostly_batch) -> None:
    """Chunks, then the batch, flag the records and give the verdict one validation of the whole gives."""
    spec, data = mostly_batch
    whole = validate_frame(data, spec, docs=False)
    assert [e.expectation_type for e in load_suite("mostly", scope="batch").expectations] == [
        "expect_column_values_to_match_regex"]
    chunks = [validate_frame(data.iloc[:10], spec, docs=False, scope="row"),
              validate_frame(data.iloc[10:], spec, docs=False, scope="row")]
    batch = validate_frame(data[["email", ROW]], spec, docs=False, scope="batch")

    assert found(pd.concat([c.failures for c in chunks] + [batch.failures])) == found(whole.failures) == set()
    combined = quality.combine_results("mostly", [as_checked("a", "row", chunks[0]), as_checked("b", "row", chunks[1]),
                                                  as_checked("batch", "batch", batch)])
    assert combined["success"] is whole.success is True
