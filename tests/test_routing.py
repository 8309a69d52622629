"""Routing: which records wait for a person, and with which reasons (pure logic, no services)."""

from __future__ import annotations

import pandas as pd

from bpo.quality import duplicate_keys
from bpo.routing import review_checks
from bpo.schema import CHECK_COLUMNS, ROW


def frame(rows: list[tuple[int, str, str]]) -> pd.DataFrame:
    return pd.DataFrame([(r, f, c, f"{c} on {f}") for r, f, c in rows], columns=CHECK_COLUMNS)


DATA = pd.DataFrame({ROW: [10, 11, 12, 13], "plan": ["basic", "premium", None, "basic"],
                     "email": ["a@x.io", None, "c@x.io", "d@x.io"]})
NONE = frame([])


def checks_of(result: pd.DataFrame) -> set[tuple[int, str, str]]:
    return {(int(r.row), r.field, r.check) for r in result.itertuples()}


def test_an_ambiguous_date_always_waits_a_low_confidence_enum_only_when_routed() -> None:
    issues = frame([(10, "signup_date", "ambiguous_date"), (11, "plan", "low_confidence_mapping")])
    routed = review_checks(DATA, issues, NONE, NONE, [], {"low_confidence_mapping"})
    assert checks_of(routed) == {(10, "signup_date", "ambiguous_date"), (11, "plan", "low_confidence_mapping")}
    unrouted = review_checks(DATA, issues, NONE, NONE, [], set())
    assert checks_of(unrouted) == {(10, "signup_date", "ambiguous_date")}


def test_gx_missing_on_an_unreadable_value_is_not_repeated_but_other_failures_stay() -> None:
    issues = frame([(11, "email", "normalize_email")])
    failures = frame([(11, "email", "expect_column_values_to_not_be_null"),
                      (12, "plan", "expect_column_values_to_not_be_null"),
                      (99, "plan", "expect_column_values_to_not_be_null")])  # another chunk's record
    result = review_checks(DATA, issues, failures, NONE, [], set())
    assert checks_of(result) == {(11, "email", "normalize_email"), (12, "plan", "expect_column_values_to_not_be_null")}


def test_duplicate_keys_are_found_batch_wide_and_not_repeated_after_the_suite_said_so() -> None:
    keys = pd.DataFrame({ROW: [10, 11, 12, 13, 14], "customer_id": ["A", "B", "A", None, None]})
    dups = duplicate_keys(keys, ["customer_id"])
    assert sorted(dups["row"]) == [10, 12], "missing keys are the suite's to report, not duplicates"
    assert "key A appears more than once" in dups["reason"].iloc[0]
    told = frame([(10, "customer_id", "expect_column_values_to_be_unique")])
    result = review_checks(DATA, NONE, told, dups, [], {"duplicate_key"})
    assert checks_of(result) == {(10, "customer_id", "expect_column_values_to_be_unique"),
                                 (12, "customer_id", "duplicate_key")}
    assert checks_of(review_checks(DATA, NONE, NONE, dups, [], set())) == set()
    assert duplicate_keys(keys.iloc[:2], ["customer_id"]).empty


def test_a_fuzzily_matched_column_flags_each_record_that_has_a_value_in_it() -> None:
    result = review_checks(DATA, NONE, NONE, NONE, ["email"], {"low_confidence_mapping"})
    assert checks_of(result) == {(10, "email", "low_confidence_mapping"), (12, "email", "low_confidence_mapping"),
                                 (13, "email", "low_confidence_mapping")}
