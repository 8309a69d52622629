"""Review steps of a flow: route records that need a person, wait until they are resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.input import RunInput
from pydantic import BaseModel

from bpo.db.models import ReviewItem
from bpo.db.session import session_scope
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


def _proposed(row: pd.Series, raw: pd.Series, spec: ProcessSpec) -> dict[str, Any]:
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


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def route_records(run: RunContext, spec: ProcessSpec, parts: list[Part], failures_key: str,
                  low_confidence: dict[str, list[str]]) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through."""
    store = get_store()
    failures = read_parquet(store, failures_key)
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    flagged = set(spec.review.route)
    review_rows: list[int] = []
    items: list[ReviewItem] = []
    for part in parts:
        data = read_parquet(store, part.normalized)
        issues = read_parquet(store, part.issues)
        issues = issues[~issues["check"].isin(["ambiguous_date", "low_confidence_mapping"])
                        | issues["check"].isin(flagged)]
        failed = failures[failures["row"].isin(data[ROW])]
        # a value normalization could not read is already explained; GX's "missing" on it adds nothing
        explained = failed.set_index(["row", "field"]).index.isin(issues.set_index(["row", "field"]).index)
        checks = pd.concat([issues, failed[~explained]], ignore_index=True)
        for field in low_confidence.get(part.file, []):
            if "low_confidence_mapping" in flagged:
                hit = data.loc[data[field].notna(), ROW] if field in data else pd.Series([], dtype=int)
                checks = pd.concat([checks, pd.DataFrame({
                    "row": hit.to_numpy(), "field": field, "check": "low_confidence_mapping",
                    "reason": f"the column for {field} was recognized only approximately"})], ignore_index=True)
        if checks.empty:
            continue
        raw = read_parquet(store, part.raw).set_index(data.index)
        by_row = data.set_index(ROW)
        raw.index = data[ROW].to_numpy()
        for row_no, group in checks.groupby("row", sort=True):
            row, src = by_row.loc[row_no], raw.loc[row_no]
            items.append(ReviewItem(
                flow_run_id=run.flow_run_id, process=run.spec, step=RECORDS_STEP, kind="record",
                record_key=f"{src['_source_file']}:{int(src['_source_row'])}",
                source={"file": str(src["_source_file"]), "row": int(src["_source_row"]),
                        "values": {k: json_safe(v) for k, v in src.items() if not str(k).startswith("_")}},
                failed_checks=group[["field", "check", "reason"]].astype(str).to_dict("records"),
                proposed=_proposed(row, src, spec), due_at=due, on_timeout=spec.review.on_timeout))
            review_rows.append(int(row_no))
    with session_scope(get_settings().ops_database_url) as s:
        add_items(s, items)
    key = run.key("review", "rows.parquet")
    put_parquet(store, key, pd.DataFrame({ROW: pd.Series(review_rows, dtype="int64")}))
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
