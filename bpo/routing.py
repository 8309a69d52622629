"""Routing: which records need a person (and why), written as review items; the rest pass straight through."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from bpo.db.session import session_scope
from bpo.pool import map_in_workers
from bpo.quality import BatchChecked
from bpo.review import add_items, json_safe
from bpo.run import Part, RunContext, get_store, put_parquet, read_parquet
from bpo.schema import CHECK_COLUMNS, ROW
from bpo.settings import get_settings
from bpo.spec import ProcessSpec

RECORDS_STEP = "records"


class Routed(BaseModel):
    passed: int
    review: int
    review_rows: str  # parquet of the _row numbers sent to review


def _proposed(row: dict[str, Any], raw: dict[str, Any], spec: ProcessSpec) -> dict[str, Any]:
    """Normalized values where there are some, the raw value where normalization gave none."""
    out: dict[str, Any] = {}
    for name, field in spec.fields.items():
        value = row.get(name)
        if field.type == "money" and isinstance(value, Decimal):
            value = f"{row.get(f'{name}_currency') or ''} {value}".strip()
        value = json_safe(value)
        if value is None:
            value = json_safe(raw.get(name))
        out[name] = None if value is None else str(value)
    return out


def review_checks(data: pd.DataFrame, issues: pd.DataFrame, failures: pd.DataFrame, duplicates: pd.DataFrame,
            fuzzy_columns: list[str], flagged: set[str]) -> pd.DataFrame:
    """Every reason one chunk's records need a person, one row per (record, field, check)."""
    # a low-confidence enum still has a value: it waits for a person only if the spec routes it;
    # an ambiguous date has none, so it always does
    issues = issues[(issues["check"] != "low_confidence_mapping") | ("low_confidence_mapping" in flagged)]
    failed = failures[failures["row"].isin(data[ROW])]
    # GX's "missing" on a value normalization could not read adds nothing to the reason already given
    explained = failed.set_index(["row", "field"]).index.isin(issues.set_index(["row", "field"]).index)
    frames = [issues, failed[~explained]]
    if "duplicate_key" in flagged:
        # a suite that checks uniqueness has said it already
        told = failed.loc[failed["check"].str.contains("unique"), "row"]
        frames.append(duplicates[duplicates["row"].isin(data[ROW]) & ~duplicates["row"].isin(told)])
    if "low_confidence_mapping" in flagged:
        for field in fuzzy_columns:
            hit = data.loc[data[field].notna(), ROW]
            frames.append(pd.DataFrame({"row": hit.to_numpy(), "field": field, "check": "low_confidence_mapping",
                                        "reason": f"the column for {field} was recognized only approximately"}))
    return pd.concat([f[CHECK_COLUMNS] for f in frames if not f.empty] or [pd.DataFrame(columns=CHECK_COLUMNS)],
                     ignore_index=True)


def _parquet(store: Any, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get_bytes(key)))


def _records(table: pa.Table) -> list[dict[str, Any]]:
    frame = table.to_pandas()
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def route_part(run: RunContext, spec: ProcessSpec, part: Part, failures_keys: list[str], duplicates_key: str,
               fuzzy_columns: list[str], due: datetime) -> list[int]:
    """Write one chunk's review items; returns the ``_row`` numbers they hold back.

    Items already written for the same records (a retried step) are not written again.
    """
    store = get_store()
    failures = pd.concat([read_parquet(store, k) for k in failures_keys], ignore_index=True)
    table = _parquet(store, part.normalized)
    data = table.select([ROW, *(f for f in fuzzy_columns if f in table.column_names)]).to_pandas()
    checks = review_checks(data, read_parquet(store, part.issues), failures, read_parquet(store, duplicates_key),
                           fuzzy_columns, set(spec.review.route))
    if checks.empty:
        return []
    # only the held records become Python values, in one pass (a Series per record would cost ~1 ms each)
    held = np.flatnonzero(data[ROW].isin(checks["row"]).to_numpy())
    rows = _records(table.take(held))
    raws = _records(_parquet(store, part.raw).take(held))
    checks = checks.sort_values("row", kind="stable")
    found = checks[["field", "check", "reason"]].astype(str).to_dict("records")
    row_numbers, starts = np.unique(checks["row"].to_numpy(), return_index=True)
    ends = [*starts[1:], len(found)]
    items = [{
        "flow_run_id": run.flow_run_id, "process": run.spec, "step": RECORDS_STEP, "kind": "record",
        "record_key": f"{src['_source_file']}:{int(src['_source_row'])}",
        "source": {"file": str(src["_source_file"]), "row": int(src["_source_row"]),
                   "values": {k: json_safe(v) for k, v in src.items() if not str(k).startswith("_")}},
        "failed_checks": found[start:end], "proposed": _proposed(row, src, spec), "due_at": due,
        "on_timeout": spec.review.on_timeout,
    } for row, src, start, end in zip(rows, raws, starts, ends, strict=True)]
    with session_scope(get_settings().ops_database_url) as s:
        add_items(s, items)
    return [int(r) for r in row_numbers]


def route_batch(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                low_confidence: dict[str, list[str]]) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through.

    The chunks are routed, and their items written, side by side (``bpo.pool``).
    """
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    routed = map_in_workers(route_part, [
        (run, spec, part, [chunk_failures, checked.batch_failures], checked.duplicates,
         low_confidence.get(part.file, []), due)
        for part, chunk_failures in zip(parts, checked.chunk_failures, strict=True)])
    review_rows = [r for rows in routed for r in rows]
    key = run.key("review", "rows.parquet")
    put_parquet(get_store(), key, pd.DataFrame({ROW: pd.Series(review_rows, dtype="int64")}))
    total = sum(p.rows for p in parts)
    return Routed(passed=total - len(review_rows), review=len(review_rows), review_rows=key)
