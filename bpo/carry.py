"""Decisions carry over: a decision is about a record's content, not about the run that asked.

A record is identified across runs by its ``record_hash``: the process and the record's source
values (for records that share a natural key, all of them). When a run raises an item whose hash
was decided before, the decision is applied at once and audited as carried over; an item still open
in an ended run of the same batch is taken over by the new run instead of being asked twice. A
changed record has another hash and is asked again. An item closed by its timeout (``decided_by`` the
system) was decided by no one: it is asked again, and an earlier person's decision, if any, still holds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from bpo.db.models import AuditEvent, ReviewItem, Run

DECIDED = ("approved", "rejected")
SYSTEM = "system"  # who closed an item by its timeout: no one decided it
_COPIED = ("status", "decision", "reason", "decided_by", "decided_at")
_IN_CLAUSE = 500  # hashes per query: well under every database's bound-parameter limit


def record_hash(process: str, records: Iterable[dict[str, Any]]) -> str:
    """The identity of a record's content (or a group of records') within a process."""
    values = sorted(json.dumps(r, sort_keys=True, default=str) for r in records)
    return hashlib.sha256(json.dumps([process, values]).encode()).hexdigest()


@dataclass
class Carried:
    carried_over: int = 0  # decided before: the decision applied again
    taken_over: int = 0  # still open in an ended run of the batch: moved to this run
    sources: dict[str, int] = field(default_factory=dict)  # record_key -> the item whose decision it took


def _chunks(values: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _IN_CLAUSE):
        yield values[start:start + _IN_CLAUSE]


def carry_over(session: Session, *, flow_run_id: str, process: str, batch: str, items: list[dict[str, Any]]) -> Carried:
    """Apply earlier decisions to ``items`` (rows for ``add_items``, each with a ``record_hash``), in place.

    An item decided before gets that decision (status, values, reason, who and when) and is written
    already resolved; an item open in another run of the same batch (which has ended: a batch has one
    run at a time) is moved to this run, and dropped from ``items``. Both are audited.
    """
    done = Carried()
    hashes = list({i["record_hash"] for i in items if i.get("record_hash")})
    if not hashes:
        return done
    decided: dict[str, Any] = {}
    open_elsewhere: dict[str, Any] = {}
    for chunk in _chunks(hashes):
        rows = session.execute(
            select(ReviewItem.id, ReviewItem.record_hash, ReviewItem.flow_run_id, ReviewItem.decided_at,
                   *(getattr(ReviewItem, c) for c in _COPIED if c != "decided_at"))
            .where(ReviewItem.process == process, ReviewItem.record_hash.in_(chunk),
                   ReviewItem.flow_run_id != flow_run_id)
            .order_by(ReviewItem.id)).all()
        batch_runs = set(session.scalars(select(Run.flow_run_id).where(Run.batch == batch))) if rows else set()
        for r in rows:
            if r.status in DECIDED and r.decided_by != SYSTEM:
                decided[r.record_hash] = r  # the latest person's decision wins (ordered by id)
            elif r.status == "open" and r.flow_run_id in batch_runs:
                open_elsewhere.setdefault(r.record_hash, r)
    kept: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for item in items:
        h = item.get("record_hash")
        earlier = decided.get(h) if h else None
        if earlier is not None:
            item.update({c: getattr(earlier, c) for c in _COPIED})
            done.sources[item["record_key"]] = earlier.id
            done.carried_over += 1
            kept.append(item)
            continue
        waiting = open_elsewhere.pop(h, None) if h else None
        if waiting is not None:
            session.execute(update(ReviewItem).where(ReviewItem.id == waiting.id).values(
                flow_run_id=flow_run_id, step=item["step"], record_key=item["record_key"], source=item["source"],
                failed_checks=item["failed_checks"], proposed=item["proposed"]))
            events.append({"actor": "system", "action": "taken_over", "item_id": waiting.id,
                           "flow_run_id": flow_run_id, "detail": {"from_run": waiting.flow_run_id}})
            done.taken_over += 1
            continue
        kept.append(item)
    items[:] = kept
    if events:
        session.execute(insert(cast(Table, AuditEvent.__table__)), events)
    return done


def audit_carried(session: Session, flow_run_id: str, step: str, carried: dict[str, int]) -> None:
    """One audit event per item whose decision was carried over (``record_key`` -> the item it came from)."""
    if not carried:
        return
    ids = dict(session.execute(select(ReviewItem.record_key, ReviewItem.id).where(
        ReviewItem.flow_run_id == flow_run_id, ReviewItem.step == step,
        ReviewItem.record_key.in_(list(carried)))).tuples().all())
    session.execute(insert(cast(Table, AuditEvent.__table__)), [
        {"actor": "system", "action": "carried_over", "item_id": ids[key], "flow_run_id": flow_run_id,
         "detail": {"from_item": source}} for key, source in carried.items() if key in ids])
