"""Review steps of a flow: route records that need a person, wait until they are resolved."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import get_run_logger, task
from prefect.input import RunInput
from pydantic import BaseModel

from bpo.db.session import session_scope
from bpo.pool import map_in_workers
from bpo.review import add_items, json_safe, open_count, set_run_status
from bpo.settings import get_settings
from bpo.spec import ProcessSpec
from tasks.artifacts import Part, RunContext, get_store, put_parquet, read_parquet
from tasks.quality import ROW

RECORDS_STEP = "records"


class ReviewDone(RunInput):
    """What the review service sends when it resumes a run."""

    approved: int
    rejected: int


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


CHECK_COLUMNS = ["row", "field", "check", "reason"]


def duplicate_keys(keys: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Records (by ``_row``) whose natural key appears more than once in the batch."""
    dup = keys[keys.duplicated(subset=key, keep=False) & keys[key].notna().all(axis=1)]
    if dup.empty:
        return pd.DataFrame(columns=CHECK_COLUMNS)
    shown = dup[key[0]].astype(str) if len(key) == 1 else dup[key].astype(str).agg(", ".join, axis=1)
    return pd.DataFrame({"row": dup[ROW].to_numpy(), "field": key[0], "check": "duplicate_key",
                         "reason": ("key " + shown + " appears more than once in this batch").to_numpy()},
                        columns=CHECK_COLUMNS)


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


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def route_records(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: dict[str, Any],
                  low_confidence: dict[str, list[str]]) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through.

    ``checked`` is what ``validate_batch`` returned. The chunks are routed, and their items written,
    side by side (``bpo.pool``); the run pauses only after all of them are written.
    """
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    routed = map_in_workers(route_part, [
        (run, spec, part, [chunk_failures, checked["batch_failures"]], checked["duplicates"],
         low_confidence.get(part.file, []), due)
        for part, chunk_failures in zip(parts, checked["chunk_failures"], strict=True)])
    review_rows = [r for rows in routed for r in rows]
    key = run.key("review", "rows.parquet")
    put_parquet(get_store(), key, pd.DataFrame({ROW: pd.Series(review_rows, dtype="int64")}))
    total = sum(p.rows for p in parts)
    return Routed(passed=total - len(review_rows), review=len(review_rows), review_rows=key)


def await_review(run: RunContext, spec: ProcessSpec, step: str = RECORDS_STEP) -> None:
    """Pause (local run) or suspend (deployment run) until every item of ``step`` is resolved."""
    from prefect.flow_runs import pause_flow_run, suspend_flow_run
    from prefect.runtime import deployment

    settings = get_settings()
    logger = get_run_logger()
    with session_scope(settings.ops_database_url) as s:
        waiting = open_count(s, run.flow_run_id, step)
        if waiting:
            set_run_status(s, run.flow_run_id, "waiting_review")
    if not waiting:
        return
    logger.info("waiting for review: %d items open (bpo review list)", waiting)
    # the due-time action (escalate or reject) is applied by `bpo review expire`; the pause
    # outlives it generously so an escalated item can still be decided
    timeout = int(max(spec.review.due_hours, 1) * 3600 * 4)
    if deployment.id:
        done = suspend_flow_run(wait_for_input=ReviewDone, timeout=timeout, key=f"review-{step}")
    else:
        done = pause_flow_run(wait_for_input=ReviewDone, timeout=timeout,
                              poll_interval=settings.review_poll_seconds, key=f"review-{step}")
    logger.info("review resolved: %s", done)
    with session_scope(settings.ops_database_url) as s:
        left = open_count(s, run.flow_run_id, step)
        set_run_status(s, run.flow_run_id, "running")
    if left:
        raise RuntimeError(f"resumed with {left} review items still open; resolve them and resume again")
