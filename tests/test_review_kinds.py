"""Kinds of review item: record and gate as delivered, and a third kind registered here, in the test.

The third kind is the proof that the service knows no kind: it is stored, listed, claimed, checked,
refused, decided and audited through the same functions as a record, and no line of bpo/review
names it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

import pytest
from pydantic import BaseModel, ConfigDict

from bpo.db.models import ReviewItem
from bpo.db.session import session_scope
from bpo.review import (
    CorrectionRefused,
    Display,
    Outcome,
    ReviewError,
    add_items,
    claim,
    get_item,
    kind_of,
    list_items,
    open_gate,
    register,
    registered,
    resolve,
    resolve_many,
)
from bpo.settings import Settings
from tests.test_review import events, keep_open, make_item, store

LATER = datetime(2100, 1, 1, tzinfo=UTC)


class PairAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: Literal["same", "different", "not_sure"]
    keep: Literal["left", "right"] | None = None


class PairKind:
    """Two records that may be one customer; 'same' must say which record is kept."""

    name: ClassVar[str] = "pair_in_test"
    decision: ClassVar[type[BaseModel]] = PairAnswer

    def display(self, item: ReviewItem) -> Display:
        left, right = item.source["left"], item.source["right"]
        return Display(title=item.record_key, columns=["field", "left", "right"],
                       rows=[[k, str(left.get(k, "")), str(right.get(k, ""))] for k in left], summary="same customer?")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, PairAnswer)
        if decision.answer == "same" and decision.keep is None:
            raise CorrectionRefused([{"field": "keep", "check": "pair_keep", "reason": "say which record is kept"}])
        status: Literal["approved", "rejected"] = "rejected" if decision.answer == "different" else "approved"
        return Outcome(status, decision=decision.model_dump(), audit=decision.model_dump())


register(PairKind())


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def run_id() -> str:
    return str(uuid.uuid4())


def pair_item(run_id: str, n: int) -> dict[str, Any]:
    return {"flow_run_id": run_id, "process": "customer_cleanup", "step": "pairs", "kind": PairKind.name,
            "record_key": f"c{n}~c{n + 1}", "source": {"left": {"name": "Ann Lee"}, "right": {"name": "Anne Lee"}},
            "failed_checks": [], "proposed": {}, "due_at": LATER, "on_timeout": "reject"}


def test_a_kind_registered_outside_the_service_is_stored_claimed_checked_and_decided(settings: Settings,
                                                                                      run_id: str) -> None:
    url = settings.ops_database_url
    assert PairKind.name in registered() and {"record", "gate"} <= set(registered())
    with session_scope(url) as s:
        assert add_items(s, [pair_item(run_id, 1), pair_item(run_id, 3), pair_item(run_id, 5)]) == 3
    first, second, third = (i.id for i in list_items(settings, flow_run_id=run_id))

    assert claim(settings, first, "ann").assignee == "ann"
    with pytest.raises(ReviewError, match="claimed by ann"):
        resolve(settings, first, actor="bob", decision={"answer": "different"})
    # a decision the kind does not take is refused by its model, naming the field, not the value
    with pytest.raises(ReviewError, match="not a pair_in_test decision: answer") as bad:
        resolve(settings, first, actor="ann", decision={"answer": "maybe"})
    assert "maybe" not in str(bad.value)
    # the kind's own check refuses, the service audits the refusal and keeps the item open
    with pytest.raises(CorrectionRefused, match="say which record is kept"):
        resolve(settings, first, actor="ann", decision={"answer": "same"})
    assert get_item(settings, first).status == "open"

    done = resolve(settings, first, actor="ann", decision={"answer": "same", "keep": "left"})
    assert (done.status, done.open_left, done.resumed) == ("approved", 2, False)
    item = get_item(settings, first)
    assert (item.decision, item.decided_by) == ({"answer": "same", "keep": "left"}, "ann")
    assert [e.action for e in events(url, first)] == ["created", "claimed", "correction_refused", "approved"]
    with pytest.raises(ReviewError, match=r"already approved \(by ann\)"):
        resolve(settings, first, actor="bob", decision={"answer": "different"})

    # bulk resolve takes the kind's decision too; the last item resumes nothing here (keep one open)
    done_many = resolve_many(settings, [second, first], actor="bob", decision={"answer": "different"})
    assert done_many.decided == {second: "rejected"}
    assert "already approved (by ann)" in done_many.refused[first]
    assert get_item(settings, third).status == "open"


def test_an_item_of_a_kind_with_no_handler_is_refused_with_its_kind(settings: Settings, run_id: str) -> None:
    store(settings.ops_database_url, [make_item(run_id, 2)])
    keep_open(settings.ops_database_url, run_id)
    (item,) = [i for i in list_items(settings, flow_run_id=run_id) if i.record_key == "f.csv:2"]
    with session_scope(settings.ops_database_url) as s:
        s.get(ReviewItem, item.id).kind = "candidates_unknown"  # type: ignore[union-attr]
    with pytest.raises(ReviewError, match="kind 'candidates_unknown', which has no handler"):
        resolve(settings, item.id, approve=True, actor="ann")
    assert get_item(settings, item.id).status == "open"


def test_a_gate_is_opened_once_and_decided_with_a_reason(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    summary = {"records": 120, "passed": 118, "held": 2, "report": "s3://bucket/runs/x/report.html"}
    with session_scope(url) as s:
        assert open_gate(s, run_id, "customer_onboarding", "before-load", summary, LATER, "reject") == 1
        assert open_gate(s, run_id, "customer_onboarding", "before-load", summary, LATER, "reject") == 0  # a retry
    keep_open(url, run_id, step="before-load")
    (gate,) = [i for i in list_items(settings, flow_run_id=run_id) if i.kind == "gate"]
    assert gate.source == {"summary": summary}

    for refused in ({"approve": True}, {"approve": True, "reason": "  "}):
        with pytest.raises(ReviewError, match="reason"):
            resolve(settings, gate.id, actor="sam", **refused)  # type: ignore[arg-type]
    with pytest.raises(ReviewError, match="set"):
        resolve(settings, gate.id, approve=True, actor="sam", sets={"x": "1"}, reason="fine")
    assert [e.action for e in events(url, gate.id)] == ["created"]

    done = resolve(settings, gate.id, approve=False, actor="sam", reason="two files missing from the batch")
    assert (done.status, done.open_left) == ("rejected", 1)
    item = get_item(settings, gate.id)
    assert (item.status, item.decision, item.reason, item.decided_by) == (
        "rejected", {"approve": False}, "two files missing from the batch", "sam")
    assert events(url, gate.id)[-1].detail == {"reason": "two files missing from the batch"}


def test_record_and_gate_show_through_their_kind(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2, email="not-an-email")])
    with session_scope(url) as s:
        open_gate(s, run_id, "customer_onboarding", "gate", {"records": 3}, datetime.now(UTC) + timedelta(days=1),
                  "escalate")
    record, gate = sorted(list_items(settings, flow_run_id=run_id), key=lambda i: i.kind != "record")
    shown = kind_of(record).display(record)
    assert shown.columns == ["field", "source", "proposed", ""]
    assert ["email", "not-an-email", "not-an-email", "✗"] in shown.rows
    assert shown.summary == "email:match_regex"
    assert kind_of(gate).display(gate).rows == [["records", "3"]]


@pytest.mark.parametrize("sets", [
    {},
    {"email": "fixed@example.com"},
    {"email": "still-broken"},
    {"date_of_birth": "1850-01-01", "first_name": "Ann"},  # out of the suite's range
    {"opening_balance": "USD 2000000.00"},  # above the suite's maximum
    {"opening_balance": "XYZ 10"},
    {"plan": "platinum", "signup_date": "2031-02-01"},
    {"country": "CA"},  # the postal code no longer fits its country
    {"customer_id": ""},
])
def test_a_correction_rechecked_on_its_fields_gets_the_verdict_of_the_whole_suite(sets: dict[str, str]) -> None:
    """Only the expectations on the fields a correction changes (and those that failed) run again: the
    others passed on values that have not changed. The verdict is the whole suite's, field by field."""
    from bpo.review.record import fields_to_recheck, revalidate
    from bpo.spec import load_spec
    from tests.test_review import make_item

    spec = load_spec("customer_onboarding")
    item = make_item(str(uuid.uuid4()), 2, seed=4)  # its email check failed in the flow
    values = {**item.proposed, **sets}
    whole = revalidate(spec, values)
    rechecked = revalidate(spec, values, recheck=fields_to_recheck(item, spec, sets))
    assert rechecked == whole
