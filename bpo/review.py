"""The review service: one mechanism for every kind of review item.

Flows write items and pause; agents list, claim and resolve them (CLI or console); a
correction is normalized and validated again before it is accepted; when the last open
item of a run's review step is resolved, the run is resumed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from bpo import runs
from bpo.db.models import AuditEvent, ReviewItem, Run
from bpo.db.session import session_scope
from bpo.normalize import normalize_frame
from bpo.quality import validate_frame
from bpo.schema import ROW
from bpo.settings import Settings
from bpo.spec import ProcessSpec, load_spec


class ReviewError(ValueError):
    """A review action that cannot be taken; the message says why."""


class CorrectionRefused(ReviewError):
    """A corrected record still fails; ``failures`` lists the checks, the item stays open."""

    def __init__(self, failures: list[dict[str, str]]) -> None:
        self.failures = failures
        lines = "; ".join(f"{f['field']}: {f['reason']} ({f['check']})" for f in failures)
        super().__init__(f"correction refused, the record still fails: {lines}")


@dataclass(frozen=True)
class Resolution:
    item_id: int
    status: str
    open_left: int  # open items left in the same run and step
    resumed: bool
    rerun: str | None = None  # the run has ended: nothing was resumed, this says how to re-run it


def json_safe(value: Any) -> Any:
    """Values as JSON can hold them: Decimal as text, NA as None."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def add_items(session: Session, items: Sequence[ReviewItem | dict[str, Any]]) -> int:
    """Insert items not already there (same run, step and record key), in bulk; return how many were new.

    An item is a ``ReviewItem`` or a plain row of its columns (cheaper by the ten thousand);
    columns left out take their defaults.
    """
    if not items:
        return 0
    columns = [c.key for c in ReviewItem.__table__.columns]
    rows = [i if isinstance(i, dict) else {k: v for k in columns if (v := getattr(i, k)) is not None} for i in items]
    run_id, step = rows[0]["flow_run_id"], rows[0]["step"]
    existing = set(session.scalars(select(ReviewItem.record_key).where(
        ReviewItem.flow_run_id == run_id, ReviewItem.step == step)))
    new = [r for r in rows if r["record_key"] not in existing]
    if not new:
        return 0
    by_shape: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in new:  # one executemany per shape of row
        by_shape.setdefault(frozenset(r), []).append(r)
    for rows_of_shape in by_shape.values():
        session.execute(insert(ReviewItem.__table__), rows_of_shape)
    ids = dict(session.execute(select(ReviewItem.record_key, ReviewItem.id).where(
        ReviewItem.flow_run_id == run_id, ReviewItem.step == step)).tuples().all())
    session.execute(insert(AuditEvent.__table__), [
        {"actor": "system", "action": "created", "item_id": ids[r["record_key"]], "flow_run_id": run_id,
         "detail": {"checks": [c["check"] for c in r["failed_checks"]]}} for r in new])
    return len(new)


def open_count(session: Session, flow_run_id: str, step: str) -> int:
    return int(session.scalar(select(func.count()).select_from(ReviewItem).where(
        ReviewItem.flow_run_id == flow_run_id, ReviewItem.step == step, ReviewItem.status == "open")) or 0)


def list_items(settings: Settings, *, status: str | None = "open", process: str | None = None,
               flow_run_id: str | None = None, queue: str | None = None, limit: int = 200) -> list[ReviewItem]:
    """Items in queue order: soonest due first."""
    with session_scope(settings.ops_database_url) as s:
        q = select(ReviewItem).order_by(ReviewItem.due_at, ReviewItem.id).limit(limit)
        if status:
            q = q.where(ReviewItem.status == status)
        if process:
            q = q.where(ReviewItem.process == process)
        if flow_run_id:
            q = q.where(ReviewItem.flow_run_id == flow_run_id)
        if queue:
            q = q.where(ReviewItem.queue == queue)
        return list(s.scalars(q))


def get_item(settings: Settings, item_id: int) -> ReviewItem:
    with session_scope(settings.ops_database_url) as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        return item


def claim(settings: Settings, item_id: int, actor: str) -> ReviewItem:
    """Assign an open item to ``actor``; an item claimed by someone else is refused."""
    with session_scope(settings.ops_database_url) as s:
        item = _open_item(s, item_id)
        if item.assignee and item.assignee != actor:
            raise ReviewError(f"item {item_id} is claimed by {item.assignee}")
        item.assignee = actor
        s.add(AuditEvent(actor=actor, action="claimed", item_id=item.id, flow_run_id=item.flow_run_id, detail={}))
        return item


def _open_item(s: Session, item_id: int) -> ReviewItem:
    item = s.get(ReviewItem, item_id, with_for_update=True)
    if item is None:
        raise ReviewError(f"no review item {item_id}")
    if item.status != "open":
        raise ReviewError(f"item {item_id} is already {item.status} (by {item.decided_by})")
    return item


def revalidate(spec: ProcessSpec, values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Normalize and validate one record as the flow would; return accepted values and failures."""
    raw = pd.DataFrame([{name: (None if values.get(name) is None else str(values.get(name)))
                         for name in spec.fields}], dtype=object)
    normalized = normalize_frame(raw, spec)
    data = normalized.data.assign(**{ROW: [0]})
    failures = [{"field": str(r.field), "check": str(r.check), "reason": str(r.reason)}
                for r in normalized.issues.itertuples()]
    checked = validate_frame(data, spec, docs=False)
    failures += [{"field": str(r.field), "check": str(r.check), "reason": str(r.reason)}
                 for r in checked.failures.itertuples()]
    accepted = {c: json_safe(v) for c, v in data.drop(columns=[ROW]).iloc[0].items() if not str(c).startswith("_")}
    return accepted, failures


def resolve(settings: Settings, item_id: int, *, approve: bool, actor: str, sets: dict[str, str] | None = None,
            reason: str | None = None) -> Resolution:
    """Approve (with optional corrections, re-validated) or reject (with a reason) one item."""
    sets = sets or {}
    if not actor.strip():
        raise ReviewError("say who resolves the item (--as NAME)")
    if not approve and not (reason and reason.strip()):
        raise ReviewError("a rejection needs a reason (--reason TEXT)")
    with session_scope(settings.ops_database_url) as s:
        item = _open_item(s, item_id)
        if item.assignee and item.assignee != actor:
            raise ReviewError(f"item {item_id} is claimed by {item.assignee}")
        spec = load_spec(item.process)
        unknown = sorted(set(sets) - set(spec.fields))
        if unknown:
            raise ReviewError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(spec.fields)}")
        now = datetime.now(UTC)
        if approve:
            values = {**item.proposed, **sets}
            accepted, failures = revalidate(spec, values)
            if failures:
                s.add(AuditEvent(actor=actor, action="correction_refused", item_id=item.id,
                                 flow_run_id=item.flow_run_id, detail={"set": sets, "failures": failures}))
                s.commit()
                raise CorrectionRefused(failures)
            item.status, item.decision = "approved", accepted
        else:
            item.status, item.reason = "rejected", reason
        item.decided_by, item.decided_at, item.assignee = actor, now, actor
        s.add(AuditEvent(actor=actor, action=item.status, item_id=item.id, flow_run_id=item.flow_run_id,
                         detail={"set": sets, "reason": reason}))
        run_id, step = item.flow_run_id, item.step
        left = open_count(s, run_id, step)
    resumed = resume_if_done(settings, run_id, step) if left == 0 else False
    rerun = runs.rerun_hint(settings, run_id) if left == 0 and not resumed else None
    return Resolution(item_id, "approved" if approve else "rejected", left, resumed, rerun)


def resume_if_done(settings: Settings, flow_run_id: str, step: str, *, settle_seconds: float = 10.0) -> bool:
    """Resume the run's paused review step when no item of it is open; True if it was resumed.

    A run still running may be about to pause (it counted open items a moment before the last one
    was resolved): it is given ``settle_seconds`` to get there, so that no run waits for nothing.
    """
    with session_scope(settings.ops_database_url) as s:
        if open_count(s, flow_run_id, step):
            return False
    if runs.ended(settings, flow_run_id):  # a dead run may still look paused to Prefect: resume nothing
        return False
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + settle_seconds
        while True:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:  # the run is gone (deleted, server reset): nothing waits to be resumed
                return False
            if run.state is not None and run.state.is_paused():
                break
            if run.state is None or not run.state.is_running() or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        # counted again now that the run waits: items written after the first count are seen
        with session_scope(settings.ops_database_url) as s:
            if open_count(s, flow_run_id, step):
                return False
            counts = dict(s.execute(select(ReviewItem.status, func.count()).where(
                ReviewItem.flow_run_id == flow_run_id, ReviewItem.step == step).group_by(ReviewItem.status)).all())
        client.resume_flow_run(UUID(flow_run_id), run_input={
            "approved": int(counts.get("approved", 0)), "rejected": int(counts.get("rejected", 0))})
    return True


def expire_overdue(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Apply each overdue item's declared timeout action: escalate to the supervisor queue, or reject."""
    now = now or datetime.now(UTC)
    done = {"escalated": 0, "rejected": 0, "resumed": 0}
    touched: set[tuple[str, str]] = set()
    with session_scope(settings.ops_database_url) as s:
        overdue = list(s.scalars(select(ReviewItem).where(ReviewItem.status == "open", ReviewItem.due_at < now)))
        for item in overdue:
            if item.on_timeout == "reject":
                item.status, item.reason, item.decided_by, item.decided_at = "rejected", "review timed out", \
                    "system", now
                done["rejected"] += 1
                touched.add((item.flow_run_id, item.step))
            elif item.queue != "supervisor":
                spec = load_spec(item.process)
                item.queue, item.assignee = "supervisor", None
                item.due_at = now + timedelta(hours=spec.review.due_hours)
                done["escalated"] += 1
            else:  # past its escalated due time too: the final action is to reject it
                item.status, item.reason, item.decided_by, item.decided_at = "rejected", \
                    "review timed out after escalation", "system", now
                done["rejected"] += 1
                touched.add((item.flow_run_id, item.step))
            s.add(AuditEvent(actor="system", action="timed_out", item_id=item.id, flow_run_id=item.flow_run_id,
                             detail={"action": "reject" if item.status == "rejected" else "escalate"}))
    for run_id, step in touched:
        done["resumed"] += int(resume_if_done(settings, run_id, step))
    return done


def set_run_status(session: Session, flow_run_id: str, status: str, **counts: Any) -> None:
    values: dict[str, Any] = {"status": status}
    if counts:
        values["counts"] = json.loads(json.dumps(counts, default=str))
    if status in ("completed", "failed"):
        values["finished_at"] = datetime.now(UTC)
    session.execute(update(Run).where(Run.flow_run_id == flow_run_id).values(**values))


__all__ = ["CorrectionRefused", "ReviewError", "Resolution", "add_items", "claim", "expire_overdue",
           "get_item", "list_items", "open_count", "resolve", "resume_if_done", "revalidate", "set_run_status"]
