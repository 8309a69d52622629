"""The table's expectations: made from the column roles (and the spec's own suite file, if there is one).

Before: run in the client's database, as SQL, through GX's SQL data source — the "before" quality.
After: run on the projection (the snapshot with the change set applied), and held to the before:
the key stays unique and present, and no expectation may fail on more rows than it did before.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from bpo.cleanup import source
from bpo.cleanup.source import Checked, Target
from bpo.cleanup.spec import CleanupSpec
from bpo.quality import check_expectations

EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164 = r"^\+[1-9][0-9]{6,14}$"
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
COUNTRY = r"^[A-Z]{2}$"
_PATTERNS = {"email": EMAIL, "phone": E164, "date_of_birth": ISO_DATE, "country": COUNTRY}


def expectations(spec: CleanupSpec, text_columns: list[str]) -> list[dict[str, Any]]:
    """Key present and unique; each text column of a role with a canonical form holds that form."""
    out: list[dict[str, Any]] = [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": spec.key}},
        {"type": "expect_column_values_to_be_unique", "kwargs": {"column": spec.key}},
    ]
    for name, col in spec.columns.items():
        pattern = _PATTERNS.get(col.role)
        if pattern and name in text_columns:
            out.append({"type": "expect_column_values_to_match_regex", "kwargs": {"column": name, "regex": pattern}})
    return out


def before(target: Target, checked: Checked, spec: CleanupSpec) -> list[dict[str, Any]]:
    """The expectations run in the database on the live table (a SELECT of the key and the spec's columns)."""
    engine = source.connect(target)
    try:
        t = source.lightweight(target, target.table, [spec.key, *spec.columns])
        query = str(select(*t.columns).compile(engine, compile_kwargs={"literal_binds": True}))
    finally:
        engine.dispose()
    return check_expectations(expectations(spec, checked.text_columns), sql=(target.url, query))


def after(projection: pd.DataFrame, checked: Checked, spec: CleanupSpec) -> list[dict[str, Any]]:
    """The expectations run on the projection (text columns: the key and the spec's)."""
    return check_expectations(expectations(spec, checked.text_columns), frame=projection.astype(pd.StringDtype()))


def compare(before_results: list[dict[str, Any]], after_results: list[dict[str, Any]]) -> list[str]:
    """What the projection must satisfy: key checks pass, nothing fails on more rows than before."""
    problems = []
    for b, a in zip(before_results, after_results, strict=True):
        where = f"{a['type']} on {a['column']!r}"
        if a["column"] is not None and a["type"] in ("expect_column_values_to_not_be_null",
                                                     "expect_column_values_to_be_unique") and not a["success"]:
            problems.append(f"{where} fails on the cleaned table ({a['unexpected_count']} rows)")
        elif a["unexpected_count"] > b["unexpected_count"]:
            problems.append(f"{where} would fail on {a['unexpected_count']} rows, {b['unexpected_count']} before")
    return problems
