"""Four-eyes: an approval whose values match a rule of the process's spec needs a second, different approver."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from bpo.review import ReviewError, claim, claim_next, get_item, resolve, resolve_many
from bpo.settings import Settings, get_settings
from bpo.spec import ApprovalRule
from tests.test_review import events, item_id, keep_open, make_item, store

PROCESS = "big_deposits"


@pytest.fixture
def settings(ops_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The shipped onboarding spec under another name, with a four-eyes rule on large opening deposits."""
    spec = yaml.safe_load(Path("flows/specs/customer_onboarding.yaml").read_text())
    spec["name"] = "big-deposits"
    spec["review"]["four_eyes"] = [{"field": "opening_balance", "op": ">=", "value": 10000}]
    (tmp_path / f"{PROCESS}.yaml").write_text(yaml.safe_dump(spec))
    (tmp_path / "customer_onboarding.json").write_text(Path("expectations/customer_onboarding.json").read_text())
    monkeypatch.setenv("BPO_PROCESS_DIRS", str(tmp_path))
    get_settings.cache_clear()
    yield Settings(ops_database_url=ops_db)
    get_settings.cache_clear()


def _item(settings: Settings, balance: str) -> tuple[str, int]:
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(run_id, 2, process=PROCESS, opening_balance=balance)])
    keep_open(settings.ops_database_url or "", run_id)
    return run_id, item_id(settings, run_id, 2)


def test_a_rule_match_needs_a_second_different_approver(settings: Settings) -> None:
    _, iid = _item(settings, "USD 12000.00")
    first = resolve(settings, iid, approve=True, actor="ann")
    assert first.status == "awaiting_second" and not first.resumed
    item = get_item(settings, iid)
    assert item.status == "open" and item.first_approval["by"] == "ann" and item.assignee is None
    assert item.queue == "second-approval"
    with pytest.raises(ReviewError, match="needs a second approver: ann gave the first approval"):
        resolve(settings, iid, approve=True, actor="ann")
    with pytest.raises(ReviewError, match="needs a second approver: ann gave the first approval"):
        claim(settings, iid, "ann")  # nor take it back to approve again
    assert get_item(settings, iid).assignee is None
    mine = claim_next(settings, "ann", processes=frozenset({PROCESS}))
    assert mine is None or mine.id != iid, "the next item for the first approver is never the one she approved"
    second = resolve(settings, iid, approve=True, actor="bob")
    assert second.status == "approved"
    item = get_item(settings, iid)
    assert (item.status, item.decided_by) == ("approved", "bob")
    trail = events(settings.ops_database_url or "", iid)
    assert [(e.action, e.actor) for e in trail] == [("created", "system"), ("first_approval", "ann"),
                                                    ("approved", "bob")]
    assert trail[-1].detail["first_approval_by"] == "ann"


def test_below_the_rule_one_approval_is_enough(settings: Settings) -> None:
    _, iid = _item(settings, "USD 9999.99")
    assert resolve(settings, iid, approve=True, actor="ann").status == "approved"


def test_a_second_approver_who_changes_the_values_gives_a_new_first_approval(settings: Settings) -> None:
    _, iid = _item(settings, "USD 12000.00")
    resolve(settings, iid, approve=True, actor="ann")
    changed = resolve(settings, iid, approve=True, actor="bob", sets={"opening_balance": "USD 15000.00"})
    assert changed.status == "awaiting_second"
    assert get_item(settings, iid).first_approval["by"] == "bob"
    with pytest.raises(ReviewError, match="bob gave the first approval"):
        resolve(settings, iid, approve=True, actor="bob")
    assert resolve(settings, iid, approve=True, actor="ann").status == "approved"  # ann did not approve 15,000


def test_the_second_approval_starts_from_the_first_approvers_corrections(settings: Settings) -> None:
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(run_id, 2, process=PROCESS, opening_balance="USD 12000.00",
                                                      email="ann-at-example.com")])
    keep_open(settings.ops_database_url or "", run_id)
    iid = item_id(settings, run_id, 2)
    assert resolve(settings, iid, approve=True, actor="ann", sets={"email": "ann@example.com"}).status \
        == "awaiting_second"
    # the proposed email still fails: approving "as it is" means as the first approver corrected it
    done = resolve(settings, iid, approve=True, actor="bob")
    item = get_item(settings, iid)
    assert done.status == "approved" and item.decision["email"] == "ann@example.com"
    assert [e.action for e in events(settings.ops_database_url or "", iid)][-2:] == ["first_approval", "approved"]


def test_a_rejection_needs_no_second_person(settings: Settings) -> None:
    _, iid = _item(settings, "USD 12000.00")
    resolve(settings, iid, approve=True, actor="ann")
    assert resolve(settings, iid, approve=False, reason="not the client's", actor="bob").status == "rejected"


def test_bulk_approve_gives_first_approvals_and_never_both(settings: Settings) -> None:
    _, iid = _item(settings, "USD 12000.00")
    assert resolve_many(settings, [iid], approve=True, actor="ann").decided == {iid: "awaiting_second"}
    again = resolve_many(settings, [iid], approve=True, actor="ann")
    assert again.decided == {} and "second approver" in again.refused[iid]
    assert resolve_many(settings, [iid], approve=True, actor="bob").decided == {iid: "approved"}


@pytest.mark.parametrize(("rule", "values", "expected"), [
    ({"field": "amount", "op": ">=", "value": 10000}, {"amount": "10000.00"}, True),
    ({"field": "amount", "op": ">=", "value": 10000}, {"amount": "9,999.99"}, False),
    ({"field": "amount", "op": ">", "value": "5"}, {"amount": 6}, True),
    ({"field": "amount", "op": "<", "value": 5}, {"amount": None}, False),
    ({"field": "country", "op": "in", "value": ["IR", "KP"]}, {"country": "KP"}, True),
    ({"field": "country", "op": "==", "value": "US"}, {"country": "GB"}, False),
    ({"field": "amount", "op": ">=", "value": 10}, {"amount": "lots"}, False),
])
def test_rules(rule: dict[str, object], values: dict[str, object], expected: bool) -> None:
    assert ApprovalRule.model_validate(rule).matches(values) is expected


def test_through_the_api_an_agent_cannot_give_both_approvals(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    from bpo import users
    from bpo.console.app import create_app

    _, iid = _item(settings, "USD 25000.00")
    names = [f"fe-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    ann, bob = ({"Authorization": "Bearer " + users.issue_token(settings, users.add_user(
        settings, n, "a long enough password", "agent").name)[1]} for n in names)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        client.post(f"/api/items/{iid}/claim", headers=ann)
        first = client.post(f"/api/items/{iid}/resolve", json={"approve": True}, headers=ann).json()
        assert first["status"] == "awaiting_second"
        assert client.get(f"/api/items/{iid}", headers=ann).json()["first_approval"]["by"] == names[0]
        refused = client.post(f"/api/items/{iid}/claim", headers=ann)
        assert refused.status_code == 409 and "second approver" in refused.json()["detail"]
        refused = client.post(f"/api/items/{iid}/resolve", json={"approve": True}, headers=ann)
        assert refused.status_code == 409
        client.post(f"/api/items/{iid}/claim", headers=bob)
        second = client.post(f"/api/items/{iid}/resolve", json={"approve": True}, headers=bob).json()
        assert second["status"] == "approved"


def test_a_second_approval_of_a_first_approval_replaced_meanwhile_is_refused(settings: Settings) -> None:
    from datetime import UTC, datetime

    from bpo.db.session import session_scope
    from bpo.review.kinds import Outcome
    from bpo.review.service import _decide

    _, iid = _item(settings, "USD 12000.00")
    resolve(settings, iid, approve=True, actor="ann")
    seen_by_carol = get_item(settings, iid)  # carol reads ann's first approval …
    resolve(settings, iid, approve=True, actor="bob", sets={"opening_balance": "USD 15000.00"})  # … bob replaces it
    with session_scope(settings.ops_database_url or "") as s, pytest.raises(ReviewError):
        _decide(s, seen_by_carol, "carol", Outcome("approved", decision=seen_by_carol.first_approval["decision"]),
                datetime.now(UTC))
    item = get_item(settings, iid)
    assert item.status == "open" and item.first_approval["by"] == "bob", "bob's 15,000 still waits for a second"
