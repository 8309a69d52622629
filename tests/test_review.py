"""The review service (bpo.review) against a migrated SQLite ops database; Prefect only where a run is resumed.

Every test works on its own flow run id (uuid4), so tests never see each other's items. A resolution that
leaves no open item of its run and step makes the service ask the Prefect API to resume the run; the fast
tests therefore keep one extra item of the same run and step open (``keep_open``), so no resume is tried.
"""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bpo.db.models import AuditEvent, ReviewItem
from bpo.db.session import session_scope
from bpo.review import (
    CorrectionRefused,
    ReviewError,
    add_items,
    claim,
    expire_overdue,
    get_item,
    list_items,
    resolve,
    resume_if_done,
)
from bpo.settings import Settings
from bpo.spec import load_spec

PROCESS = "customer_onboarding"
SPEC = load_spec(PROCESS)
FIRST = ["ann", "BOB", "Chloé", "dmitri", "Eve"]
LAST = ["lee", "O'NEIL", "garcía", "Khan", "SMITH"]


# ---------------------------------------------------------------------------------------------
# factories


def proposed_values(rng: random.Random, **overrides: str) -> dict[str, str]:
    """A record as route_records proposes it: text for every field of the spec, valid unless overridden."""
    first, last = rng.choice(FIRST), rng.choice(LAST)
    values = {
        "customer_id": f"C{rng.randint(1, 9_999_999):07d}",
        "first_name": first,
        "last_name": last,
        "email": f"{first.replace('é', 'e').title()}.{rng.randint(1, 999)}@Example.COM",
        "phone": f"+1415555{rng.randint(0, 9999):04d}",
        "date_of_birth": f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-{rng.randint(13, 28)}",
        "signup_date": f"2023-1{rng.randint(0, 2)}-{rng.randint(13, 28)}",
        "country": "US",
        "postal_code": f"{rng.randint(10000, 99999)}",
        "plan": rng.choice(["basic", "standard", "premium"]),
        "opening_balance": f"USD {rng.randint(0, 999)}.{rng.randint(0, 99):02d}",
    }
    assert set(values) == set(SPEC.fields)
    values.update(overrides)
    return values


def make_item(run_id: str, row: int, *, seed: int = 0, step: str = "records", process: str = PROCESS,
              due_at: datetime | None = None, on_timeout: str = "escalate", queue: str = "default",
              failed_checks: list[dict[str, str]] | None = None, **overrides: str) -> ReviewItem:
    """One record review item of ``run_id``, keyed ``f.csv:<row>``."""
    rng = random.Random(seed * 1000 + row)
    values = proposed_values(rng, **overrides)
    return ReviewItem(
        flow_run_id=run_id, process=process, step=step, kind="record", record_key=f"f.csv:{row}",
        source={"file": "f.csv", "row": row, "values": dict(values)},
        failed_checks=failed_checks or [{"field": "email", "check": "expect_column_values_to_match_regex",
                                         "reason": "does not have the expected format"}],
        proposed=values, queue=queue,
        due_at=due_at or datetime.now(UTC) + timedelta(days=2, minutes=row),
        on_timeout=on_timeout,
    )


def store(url: str, items: list[ReviewItem]) -> int:
    with session_scope(url) as s:
        return add_items(s, items)


def keep_open(url: str, run_id: str, step: str = "records") -> None:
    """One more item of the run and step that stays open, so resolving the others never resumes the run."""
    store(url, [make_item(run_id, 999, step=step, due_at=datetime(2100, 1, 1, tzinfo=UTC))])


def events(url: str, item_id: int) -> list[AuditEvent]:
    with session_scope(url) as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.item_id == item_id).order_by(AuditEvent.id)))


def item_id(settings: Settings, run_id: str, row: int) -> int:
    found = [i for i in list_items(settings, status=None, flow_run_id=run_id) if i.record_key == f"f.csv:{row}"]
    assert len(found) == 1, found
    return found[0].id


def aware(value: datetime) -> datetime:
    """SQLite hands DateTime(timezone=True) back naive (in UTC as written); compare as aware."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def run_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------------------------------------
# add and list


def test_add_items_is_idempotent_and_audits_creation(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    assert store(url, [make_item(run_id, 2), make_item(run_id, 3)]) == 2
    # the same run, step and record keys again (a retried task): nothing new, one new key is added
    assert store(url, [make_item(run_id, 2), make_item(run_id, 3), make_item(run_id, 4)]) == 1
    assert store(url, [make_item(run_id, 2)]) == 0
    # the same record key in another step of the run is another item
    assert store(url, [make_item(run_id, 2, step="pairs")]) == 1

    items = list_items(settings, status=None, flow_run_id=run_id)
    assert sorted((i.step, i.record_key) for i in items) == [
        ("pairs", "f.csv:2"), ("records", "f.csv:2"), ("records", "f.csv:3"), ("records", "f.csv:4")]
    for item in items:
        created = [e for e in events(url, item.id) if e.action == "created"]
        assert len(created) == 1
        assert created[0].actor == "system" and created[0].flow_run_id == run_id
        assert created[0].detail == {"checks": ["expect_column_values_to_match_regex"]}
        assert item.status == "open" and item.queue == "default" and item.assignee is None


def test_list_items_filters_and_orders_by_due_time(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    base = datetime.now(UTC) + timedelta(days=5)
    # inserted out of due order: ids and due times disagree
    store(url, [make_item(run_id, 2, due_at=base + timedelta(hours=3)),
                make_item(run_id, 3, due_at=base + timedelta(hours=1)),
                make_item(run_id, 4, due_at=base + timedelta(hours=2)),
                make_item(run_id, 5, due_at=base + timedelta(hours=4), queue="supervisor")])
    other_run = str(uuid.uuid4())
    store(url, [make_item(other_run, 2, due_at=base, process="invoice_entry")])
    keep_open(url, run_id)  # due in 2100: last in due order

    def keys(**filters: Any) -> list[str]:
        return [i.record_key for i in list_items(settings, **filters)]

    assert keys(flow_run_id=run_id) == ["f.csv:3", "f.csv:4", "f.csv:2", "f.csv:5", "f.csv:999"]
    assert keys(flow_run_id=run_id, queue="supervisor") == ["f.csv:5"]
    assert keys(flow_run_id=run_id, queue="default") == ["f.csv:3", "f.csv:4", "f.csv:2", "f.csv:999"]
    assert keys(flow_run_id=other_run) == ["f.csv:2"]
    assert [i.flow_run_id for i in list_items(settings, process="invoice_entry")] == [other_run]
    assert keys(flow_run_id=run_id, process="invoice_entry") == []
    assert keys(flow_run_id=run_id, limit=2) == ["f.csv:3", "f.csv:4"]

    # resolving one takes it out of the open list, into the approved one; status=None lists every status
    resolve(settings, item_id(settings, run_id, 4), approve=True, actor="ann")
    assert keys(flow_run_id=run_id) == ["f.csv:3", "f.csv:2", "f.csv:5", "f.csv:999"]
    assert keys(flow_run_id=run_id, status="approved") == ["f.csv:4"]
    assert keys(flow_run_id=run_id, status="rejected") == []
    assert keys(flow_run_id=run_id, status=None) == ["f.csv:3", "f.csv:4", "f.csv:2", "f.csv:5", "f.csv:999"]
    # the whole open queue is in due order too
    dues = [aware(i.due_at) for i in list_items(settings, limit=10_000)]
    assert dues == sorted(dues)


def test_get_item_unknown_id_is_refused(settings: Settings) -> None:
    with pytest.raises(ReviewError, match="no review item 987654321"):
        get_item(settings, 987654321)


# ---------------------------------------------------------------------------------------------
# claim and resolve


def test_item_claimed_by_one_agent_cannot_be_resolved_or_claimed_by_another(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2)])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)

    assert claim(settings, iid, "alice").assignee == "alice"
    assert claim(settings, iid, "alice").assignee == "alice"  # claiming one's own item again is fine
    with pytest.raises(ReviewError, match="claimed by alice"):
        resolve(settings, iid, approve=True, actor="bob")
    with pytest.raises(ReviewError, match="claimed by alice"):
        resolve(settings, iid, approve=False, actor="bob", reason="looks wrong")
    with pytest.raises(ReviewError, match="claimed by alice"):
        claim(settings, iid, "bob")
    item = get_item(settings, iid)
    assert (item.status, item.assignee, item.decided_by) == ("open", "alice", None)

    done = resolve(settings, iid, approve=True, actor="alice")
    assert (done.status, done.open_left, done.resumed) == ("approved", 1, False)
    assert [e.action for e in events(url, iid)] == ["created", "claimed", "claimed", "approved"]
    assert {e.actor for e in events(url, iid)[1:]} == {"alice"}


def test_reject_needs_a_reason_and_an_actor(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2)])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)

    for reason in (None, "", "   "):
        with pytest.raises(ReviewError, match="reason"):
            resolve(settings, iid, approve=False, actor="ann", reason=reason)
    with pytest.raises(ReviewError, match="who resolves"):
        resolve(settings, iid, approve=False, actor="  ", reason="duplicate customer")
    assert get_item(settings, iid).status == "open"
    assert [e.action for e in events(url, iid)] == ["created"]

    done = resolve(settings, iid, approve=False, actor="ann", reason="duplicate customer")
    assert (done.status, done.open_left, done.resumed) == ("rejected", 1, False)
    item = get_item(settings, iid)
    assert (item.status, item.reason, item.decided_by, item.decision) == ("rejected", "duplicate customer", "ann", None)
    assert item.decided_at is not None
    assert events(url, iid)[-1].detail == {"set": {}, "reason": "duplicate customer"}


def test_correction_that_still_fails_is_refused_and_item_stays_open(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2, email="ann-at-example.com")])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)

    with pytest.raises(CorrectionRefused) as refused:
        resolve(settings, iid, approve=True, actor="ann", sets={"email": "ann@localhost"})
    failed = {(f["field"], f["check"]) for f in refused.value.failures}
    assert ("email", "normalize_email") in failed
    assert {f for f, _ in failed} == {"email"}
    assert "email" in str(refused.value) and "normalize_email" in str(refused.value)

    item = get_item(settings, iid)
    assert (item.status, item.decision, item.decided_by) == ("open", None, None)
    refusals = [e for e in events(url, iid) if e.action == "correction_refused"]
    assert len(refusals) == 1
    assert refusals[0].actor == "ann"
    assert refusals[0].detail["set"] == {"email": "ann@localhost"}
    assert {(f["field"], f["check"]) for f in refusals[0].detail["failures"]} == failed

    # a correction that passes is accepted after the refusal
    assert resolve(settings, iid, approve=True, actor="ann", sets={"email": "Ann@Example.com"}).status == "approved"
    assert get_item(settings, iid).decision["email"] == "ann@example.com"


def test_ambiguous_date_needs_a_correction_and_decision_is_normalized(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2, signup_date="03/04/2024", email="Ann.Lee@Example.COM",
                          opening_balance="USD 12.50", first_name="ann", plan="pro", country="usa",
                          failed_checks=[{"field": "signup_date", "check": "ambiguous_date",
                                          "reason": "ambiguous day/month"}])])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)

    with pytest.raises(CorrectionRefused) as refused:
        resolve(settings, iid, approve=True, actor="ann")
    assert ("signup_date", "ambiguous_date") in {(f["field"], f["check"]) for f in refused.value.failures}
    assert get_item(settings, iid).status == "open"

    done = resolve(settings, iid, approve=True, actor="ann", sets={"signup_date": "2024-03-04"})
    assert (done.status, done.open_left, done.resumed) == ("approved", 1, False)
    item = get_item(settings, iid)
    assert item.status == "approved" and item.decided_by == "ann"
    decision = item.decision
    assert decision["signup_date"] == "2024-03-04"
    assert decision["email"] == "ann.lee@example.com"
    assert decision["opening_balance"] == "12.50"
    assert decision["opening_balance_currency"] == "USD"
    assert decision["first_name"] == "Ann"
    assert decision["plan"] == "premium"
    assert decision["country"] == "US"
    assert set(decision) == set(SPEC.fields) | {"opening_balance_currency"}
    # the proposal itself is left as it was; the sets are in the audit trail
    assert item.proposed["signup_date"] == "03/04/2024"
    assert events(url, iid)[-1].detail == {"set": {"signup_date": "2024-03-04"},
                                           "before": {"signup_date": "03/04/2024"},
                                           "reason": None}, "an edit is audited before and after"


def test_unknown_field_in_sets_is_refused(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2)])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)

    with pytest.raises(ReviewError, match="unknown field.*favourite_colour") as refused:
        resolve(settings, iid, approve=True, actor="ann", sets={"favourite_colour": "red", "email": "a@b.co"})
    assert not isinstance(refused.value, CorrectionRefused)
    assert get_item(settings, iid).status == "open"
    assert [e.action for e in events(url, iid)] == ["created"]


def test_resolving_a_resolved_item_is_refused(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2), make_item(run_id, 3)])
    keep_open(url, run_id)
    approved, rejected = item_id(settings, run_id, 2), item_id(settings, run_id, 3)
    resolve(settings, approved, approve=True, actor="ann")
    resolve(settings, rejected, approve=False, actor="bob", reason="test record")

    with pytest.raises(ReviewError, match="already approved.*ann"):
        resolve(settings, approved, approve=False, actor="ann", reason="changed my mind")
    with pytest.raises(ReviewError, match="already rejected.*bob"):
        resolve(settings, rejected, approve=True, actor="bob")
    with pytest.raises(ReviewError, match="already approved"):
        claim(settings, approved, "carol")
    assert get_item(settings, approved).status == "approved"
    assert get_item(settings, rejected).reason == "test record"


@pytest.mark.slow
def test_last_item_of_a_run_that_is_not_paused_does_not_resume(stack: dict[str, str], settings: Settings) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    @flow(name="bpo-review-test-trivial")
    def trivial() -> int:
        return 1

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(trivial, state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=1)))
    run_id = str(run.id)
    store(settings.ops_database_url, [make_item(run_id, 2), make_item(run_id, 3)])

    first = resolve(settings, item_id(settings, run_id, 2), approve=True, actor="ann")
    assert (first.open_left, first.resumed) == (1, False)
    last = resolve(settings, item_id(settings, run_id, 3), approve=False, actor="ann", reason="not ours")
    assert (last.status, last.open_left, last.resumed) == ("rejected", 0, False)

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run.id).state
    assert state is not None and state.is_scheduled() and not state.is_paused()


# ---------------------------------------------------------------------------------------------
# timeouts
#
# expire_overdue acts on every overdue open item in the ops database. These tests use due times in the
# distant past and pass a matching ``now``, so only their own items are overdue for the call.


def test_expire_overdue_escalates_and_rejects(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    now = datetime(2001, 6, 1, 12, 0, tzinfo=UTC)
    store(url, [make_item(run_id, 2, due_at=now - timedelta(hours=2), on_timeout="escalate"),
                make_item(run_id, 3, due_at=now - timedelta(hours=1), on_timeout="reject"),
                make_item(run_id, 4, due_at=now + timedelta(hours=1), on_timeout="reject")])  # not yet due
    # run 3 is rejected: were it the run's last open item, the run would be resumed through the Prefect API.
    # keep_open leaves another item of the same run and step open (due in 2100), so no resume is attempted.
    keep_open(url, run_id)
    escalate, reject, later = (item_id(settings, run_id, r) for r in (2, 3, 4))
    claim(settings, escalate, "alice")

    assert expire_overdue(settings, now=now) == {"escalated": 1, "rejected": 1, "resumed": 0}

    item = get_item(settings, escalate)
    assert (item.status, item.queue, item.assignee) == ("open", "supervisor", None)
    assert aware(item.due_at) == now + timedelta(hours=SPEC.review.due_hours)
    assert aware(item.due_at) > now
    item = get_item(settings, reject)
    assert (item.status, item.reason, item.decided_by) == ("rejected", "review timed out", "system")
    assert aware(item.decided_at) == now
    item = get_item(settings, later)
    assert (item.status, item.queue) == ("open", "default")
    for iid, action in ((escalate, "escalate"), (reject, "reject")):
        timed_out = [e for e in events(url, iid) if e.action == "timed_out"]
        assert len(timed_out) == 1 and timed_out[0].detail == {"action": action}
    assert [i.record_key for i in list_items(settings, flow_run_id=run_id, queue="supervisor")] == ["f.csv:2"]

    # an escalated item, overdue again in the supervisor queue, is not escalated twice
    assert expire_overdue(settings, now=now + timedelta(days=2))["escalated"] == 0
    assert get_item(settings, escalate).queue == "supervisor"


@pytest.mark.slow
def test_expire_overdue_rejects_last_item_of_a_run_prefect_does_not_know(stack: dict[str, str],
                                                                         settings: Settings, run_id: str) -> None:
    # The run id is a random uuid that the (real) Prefect server has never seen. Rejecting the run's only
    # item makes the service look the run up to resume it; a run that is not there is not paused: nothing
    # to resume, and the timeout must still be applied and reported.
    url = settings.ops_database_url
    now = datetime(2002, 6, 1, 12, 0, tzinfo=UTC)
    store(url, [make_item(run_id, 2, due_at=now - timedelta(minutes=5), on_timeout="reject")])
    iid = item_id(settings, run_id, 2)

    try:
        done = expire_overdue(settings, now=now)
    finally:
        item = get_item(settings, iid)
        assert (item.status, item.reason) == ("rejected", "review timed out")
    assert done == {"escalated": 0, "rejected": 1, "resumed": 0}


# ---------------------------------------------------------------------------------------------
# resume


@pytest.mark.slow
def test_a_run_is_not_resumed_while_items_written_just_before_its_pause_are_open(
        prefect_api: str, settings: Settings) -> None:
    """Items are written chunk by chunk: a count of none open, taken before the last chunk's items
    arrived, must not resume the run once it pauses."""
    import threading

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Paused, Running

    @flow(name="awaits-review")
    def awaits_review() -> None:
        return None

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(awaits_review, state=Running())
        outcome: dict[str, bool] = {}
        waiting = threading.Thread(target=lambda: outcome.setdefault(
            "resumed", resume_if_done(settings, str(run.id), "records", settle_seconds=15)))
        waiting.start()  # nothing open yet: it waits for the run to pause
        time.sleep(1.0)
        store(settings.ops_database_url, [make_item(str(run.id), 1)])
        client.set_flow_run_state(run.id, Paused(), force=True)
        waiting.join(30)
        assert outcome == {"resumed": False}
        assert client.read_flow_run(run.id).state.is_paused()

        # once that item is resolved, the run is resumed
        resolved = resolve(settings, item_id(settings, str(run.id), 1), approve=False, reason="test", actor="t")
        assert resolved.resumed is True
        assert not client.read_flow_run(run.id).state.is_paused()
