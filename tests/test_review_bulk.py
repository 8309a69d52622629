"""Bulk resolve in the service: approve every selected item that now passes, reject a selection with one reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from bpo.review import audit_of, get_item, resolve, resolve_many
from bpo.settings import Settings
from tests.test_review import events, item_id, keep_open, make_item, store

FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def run_id() -> str:
    return str(uuid.uuid4())


def test_approve_passing_approves_what_passes_and_leaves_the_rest_open_with_why(settings: Settings,
                                                                               run_id: str) -> None:
    url = settings.ops_database_url
    # 2-4 were held for a flag and pass every check as proposed; 5 and 6 still fail; 7 is decided already
    store(url, [*(make_item(run_id, r, failed_checks=FLAGGED, email=f"Agent.{r}@Example.COM") for r in (2, 3, 4)),
                make_item(run_id, 5, email="five-at-example.com"), make_item(run_id, 6, signup_date="03/04/2024"),
                make_item(run_id, 7, failed_checks=FLAGGED)])
    keep_open(url, run_id)
    ids = {r: item_id(settings, run_id, r) for r in (2, 3, 4, 5, 6, 7)}
    resolve(settings, ids[7], approve=True, actor="ann")

    done = resolve_many(settings, [*ids.values(), 987654321], approve=True, actor="bob", batch_size=2)

    assert done.decided == {ids[2]: "approved", ids[3]: "approved", ids[4]: "approved"}
    assert set(done.left_open) == {ids[5], ids[6]}
    assert {f["field"] for f in done.left_open[ids[5]]} == {"email"}
    assert ("signup_date", "ambiguous_date") in {(f["field"], f["check"]) for f in done.left_open[ids[6]]}
    assert "already approved (by ann)" in done.refused[ids[7]]
    assert "no review item 987654321" in done.refused[987654321]
    assert done.resumed == []  # keep_open: the run still has an open item
    for r in (2, 3, 4):
        item = get_item(settings, ids[r])
        assert (item.status, item.decided_by) == ("approved", "bob")
        assert item.decision["email"] == f"agent.{r}@example.com"  # normalized as a single approval would
        assert [e.action for e in events(url, ids[r])] == ["created", "approved"]
    for r in (5, 6):
        assert get_item(settings, ids[r]).status == "open"
        assert [e.action for e in events(url, ids[r])] == ["created", "correction_refused"]
    assert get_item(settings, ids[7]).decided_by == "ann"


def test_reject_a_selection_with_one_reason(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, r) for r in (2, 3, 4)])
    keep_open(url, run_id)
    ids = [item_id(settings, run_id, r) for r in (2, 3, 4)]

    refused = resolve_many(settings, ids, approve=False, actor="bob")
    assert refused.decided == {} and all("needs a reason" in why for why in refused.refused.values())

    done = resolve_many(settings, ids, approve=False, reason="the client withdrew this batch", actor="bob")
    assert done.decided == dict.fromkeys(ids, "rejected") and not done.left_open and not done.refused
    for iid in ids:
        item = get_item(settings, iid)
        assert (item.status, item.reason, item.decided_by) == ("rejected", "the client withdrew this batch", "bob")
        assert events(url, iid)[-1].detail == {"set": {}, "reason": "the client withdrew this batch"}


@pytest.mark.slow
def test_bulk_resolve_resumes_the_paused_run_once_after_its_last_item(prefect_api: str, settings: Settings) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Paused, Running

    @flow(name="awaits-bulk-review")
    def awaits_review() -> None:
        return None

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(awaits_review, state=Running())
        client.set_flow_run_state(run.id, Paused(timeout_seconds=3600), force=True)
        run_id = str(run.id)
        later = datetime.now(UTC) + timedelta(days=1)
        store(settings.ops_database_url, [make_item(run_id, r, failed_checks=FLAGGED, due_at=later) for r in (2, 3)]
              + [make_item(run_id, r, email="nope", due_at=later) for r in (4, 5)])
        ids = [item_id(settings, run_id, r) for r in (2, 3, 4, 5)]

        first = resolve_many(settings, ids, approve=True, actor="bob", batch_size=1)
        assert sorted(first.decided) == ids[:2] and sorted(first.left_open) == ids[2:]
        assert first.resumed == [] and client.read_flow_run(run.id).state.is_paused()

        last = resolve_many(settings, ids[2:], approve=False, reason="not a customer", actor="bob", batch_size=1)
        assert sorted(last.decided) == ids[2:]
        assert last.resumed == [run_id]
        assert not client.read_flow_run(run.id).state.is_paused()
        names = [s.name for s in sorted(client.read_flow_run_states(run.id), key=lambda s: s.timestamp)]
    assert names.count("Paused") == 1 and len(names) - names.index("Paused") == 2, names
    resumed = [e for e in audit_of(settings, flow_run_id=run_id) if e.action == "resumed"]
    assert len(resumed) == 1 and resumed[0].detail == {"step": "records", "approved": 2, "rejected": 2}, \
        "the resume is in the run's audit"
