"""Decisions carry over by content; one run per batch — against a real SQLite ops database, no Prefect."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bpo.batches import BatchBusy, hold_batch, release_batch
from bpo.carry import audit_carried, carry_over, record_hash
from bpo.db.models import AuditEvent, ReviewItem, Run
from bpo.db.session import session_scope, upgrade
from bpo.review import add_items


@pytest.fixture
def ops(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/ops.db"
    upgrade(url)
    return url


def _run(url: str, batch: str, status: str = "running") -> str:
    run_id = str(uuid.uuid4())
    with session_scope(url) as s:
        s.add(Run(flow_run_id=run_id, process="p", batch=batch, status=status, s3_prefix="x"))
    return run_id


def _item(run_id: str, key: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"flow_run_id": run_id, "process": "p", "step": "records", "kind": "record", "record_key": key,
            "record_hash": record_hash("p", [values]), "source": {"file": "f.csv", "row": 2, "values": values},
            "failed_checks": [{"field": "email", "check": "normalize_email", "reason": "bad"}],
            "proposed": values, "due_at": datetime.now(UTC) + timedelta(hours=1), "on_timeout": "reject"}


def test_the_hash_is_about_content_not_order_or_run() -> None:
    a, b = {"id": "1", "email": "x"}, {"id": "2", "email": "y"}
    assert record_hash("p", [a, b]) == record_hash("p", [b, a])
    assert record_hash("p", [a]) != record_hash("p", [{"id": "1", "email": "x2"}])
    assert record_hash("p", [a]) != record_hash("q", [a])


def test_a_decided_record_is_not_asked_again_and_the_audit_says_so(ops: str) -> None:
    first, second = _run(ops, "b1", "completed"), _run(ops, "b1")
    with session_scope(ops) as s:
        add_items(s, [_item(first, "f.csv:2", {"email": "x"})])
        item = s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == first)).one()
        item.status, item.reason, item.decided_by = "rejected", "fake", "alice"
    items = [_item(second, "f.csv:2", {"email": "x"}), _item(second, "f.csv:3", {"email": "changed"})]
    with session_scope(ops) as s:
        carried = carry_over(s, flow_run_id=second, process="p", batch="b1", items=items)
        add_items(s, items)
        audit_carried(s, second, "records", carried.sources)
    assert carried.carried_over == 1 and carried.taken_over == 0
    with session_scope(ops) as s:
        got = {i.record_key: i for i in s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == second))}
        events = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "carried_over")))
    assert (got["f.csv:2"].status, got["f.csv:2"].reason, got["f.csv:2"].decided_by) == ("rejected", "fake", "alice")
    assert got["f.csv:3"].status == "open", "a changed record is asked again"
    assert [e.item_id for e in events] == [got["f.csv:2"].id]


def test_an_item_closed_by_its_timeout_is_asked_again_and_a_persons_earlier_decision_holds(ops: str) -> None:
    first, second, third = _run(ops, "b3", "completed"), _run(ops, "b3", "completed"), _run(ops, "b3")
    with session_scope(ops) as s:
        add_items(s, [_item(first, "f.csv:2", {"email": "x"}), _item(first, "f.csv:3", {"email": "y"})])
        by_key = {i.record_key: i for i in s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == first))}
        by_key["f.csv:2"].status, by_key["f.csv:2"].decided_by = "approved", "alice"
        by_key["f.csv:3"].status, by_key["f.csv:3"].decided_by = "rejected", "system"  # as expire_overdue leaves it
        add_items(s, [_item(second, "f.csv:2", {"email": "x"})])  # asked again later, and timed out that time
        again = s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == second)).one()
        again.status, again.reason, again.decided_by = "rejected", "review timed out", "system"
    items = [_item(third, "f.csv:2", {"email": "x"}), _item(third, "f.csv:3", {"email": "y"})]
    with session_scope(ops) as s:
        carried = carry_over(s, flow_run_id=third, process="p", batch="b3", items=items)
    assert carried.carried_over == 1
    got = {i["record_key"]: i for i in items}
    assert (got["f.csv:2"]["status"], got["f.csv:2"]["decided_by"]) == ("approved", "alice")
    assert got["f.csv:3"].get("status", "open") == "open", "no one decided it: it is asked again"


def test_an_item_open_in_an_ended_run_of_the_batch_is_taken_over_not_copied(ops: str) -> None:
    dead, other_batch, new = _run(ops, "b2", "crashed"), _run(ops, "elsewhere"), _run(ops, "b2")
    with session_scope(ops) as s:
        add_items(s, [_item(dead, "f.csv:2", {"email": "x"})])
        add_items(s, [_item(other_batch, "f.csv:2", {"email": "x"})])
    items = [_item(new, "f.csv:2", {"email": "x"})]
    with session_scope(ops) as s:
        carried = carry_over(s, flow_run_id=new, process="p", batch="b2", items=items)
        add_items(s, items)
    assert carried.taken_over == 1 and items == []
    with session_scope(ops) as s:
        by_run = {r: s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == r)).all()
                  for r in (dead, other_batch, new)}
    assert len(by_run[new]) == 1 and by_run[dead] == [], "one item, now the new run's"
    assert len(by_run[other_batch]) == 1, "another batch's open item is left alone"


def test_one_run_per_batch_even_when_many_start_at_once(ops: str) -> None:
    runs = [str(uuid.uuid4()) for _ in range(8)]
    results: dict[str, str] = {}
    barrier = threading.Barrier(len(runs))

    def start(run_id: str) -> None:
        barrier.wait()
        try:
            hold_batch(ops, flow_run_id=run_id, process="p", batch="b3", is_live=lambda _: True)
            results[run_id] = "held"
        except BatchBusy as exc:
            results[run_id] = str(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [r for r, v in results.items() if v == "held"]
    assert len(winners) == 1 and len(results) == len(runs)
    assert all(winners[0] in v for r, v in results.items() if r != winners[0]), "the refusal names the holder"
    # the same run again (resumed from suspension) keeps it; once it ends, the next run takes over
    assert hold_batch(ops, flow_run_id=winners[0], process="p", batch="b3", is_live=lambda _: True) is None
    later = str(uuid.uuid4())
    assert hold_batch(ops, flow_run_id=later, process="p", batch="b3", is_live=lambda _: False) == winners[0]
    release_batch(ops, flow_run_id=later, process="p", batch="b3")
    assert hold_batch(ops, flow_run_id=str(uuid.uuid4()), process="p", batch="b3", is_live=lambda _: True) is None
