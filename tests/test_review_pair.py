"""A cleanup's review items in process: ``pair`` (same entity?), ``conflict`` (changed since the snapshot) and
``reformat`` (a proposed change that is more than a reformat).

Built with ``pair_item``/``conflict_item`` and ``add_items`` as the cleanup flow writes them, shown by the
API and the item page (both rows, agreeing and differing columns marked in text, the waterfall as
SVG, the cluster, values inert), answered same/different through the API, the page's form and the
CLI; "not sure" sends the item to the supervisor queue, open. Runs are kept open (``keep_open``) so
that no answer here needs a Prefect server to resume a run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from bpo import review
from bpo.cli import app
from bpo.console.app import create_app
from bpo.db.session import session_scope
from bpo.settings import Settings
from tests.test_console import person, sign_in, token_for
from tests.test_review import aware, events, keep_open

PROCESS = "customers-cleanup"  # the shipped cleanup spec: its review section names no group, any agent may answer
STEP = "pairs"
LATER = datetime(2100, 1, 1, tzinfo=UTC)
STEPS = [{"column": "first_name", "comparison": "first_name", "level": "Jaro-Winkler >0.9", "log2_bf": 4.2,
          "tf_log2_bf": 0.3},
         {"column": "email", "comparison": "email", "level": "exact match", "log2_bf": 8.1},
         {"column": "city", "comparison": "city", "level": "all other", "log2_bf": -1.5},
         {"column": "date_of_birth", "comparison": "date_of_birth", "level": "exact match", "log2_bf": 2.0}]


def pair_source(left_key: str = "17", right_key: str = "42") -> dict[str, Any]:
    left = {"first_name": "Ann", "last_name": "<script>alert(1)</script>", "email": "ann@example.com",
            "city": "Springfield", "date_of_birth": date(1980, 4, 3), "balance": Decimal("10.50"), "phone": None}
    right = {**left, "first_name": "Anne", "city": "Shelbyville"}
    return {"table": "customers", "key": "customer_id", "left_key": left_key, "right_key": right_key,
            "left": left, "right": right, "match_probability": 0.93, "match_weight": 3.7,
            "waterfall": {"prior_weight": -9.1, "steps": STEPS, "match_weight": 3.7, "match_probability": 0.93},
            "cluster": [{"key": left_key, "row": left}, {"key": right_key, "row": right},
                        {"key": "99", "row": {**left, "first_name": "Annie"}}]}


def add_pair(settings: Settings, run_id: str, left_key: str = "17", right_key: str = "42") -> int:
    row = review.pair_item(flow_run_id=run_id, process=PROCESS, step=STEP, source=pair_source(left_key, right_key),
                           record_hash="h" * 64, due_at=LATER, on_timeout="escalate")
    with session_scope(settings.ops_database_url or "") as s:
        assert review.add_items(s, [row]) == 1
    found = [i for i in review.list_items(settings, flow_run_id=run_id) if i.record_key == f"{left_key}|{right_key}"]
    return found[0].id


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def run_id(settings: Settings) -> str:
    run = str(uuid.uuid4())
    keep_open(settings.ops_database_url or "", run, step=STEP)
    return run


def test_a_pair_item_is_built_stored_and_shown_side_by_side(client: TestClient, settings: Settings,
                                                            run_id: str) -> None:
    iid = add_pair(settings, run_id)
    item = review.get_item(settings, iid)
    assert (item.kind, item.record_key, item.proposed, item.failed_checks) == ("pair", "17|42", {"verdict": "same"}, [])
    # the rows as JSON holds them: a date as ISO text, a Decimal as text, a missing value as null
    assert item.source["left"]["date_of_birth"] == "1980-04-03" and item.source["left"]["balance"] == "10.50"
    assert item.source["left"]["phone"] is None and [m["key"] for m in item.source["cluster"]] == ["17", "42", "99"]
    assert item.source["waterfall"]["steps"][0]["tf_log2_bf"] == 0.3  # the model's own further figures are kept
    with pytest.raises(ValidationError, match="right_key"):
        review.pair_item(flow_run_id=run_id, process=PROCESS, step=STEP,
                         source={k: v for k, v in pair_source().items() if k != "right_key"},
                         record_hash=None, due_at=LATER, on_timeout="escalate")

    agent = token_for(settings, person(settings))
    shown = client.get(f"/api/items/{iid}", headers=agent).json()
    assert shown["summary"] == "same entity? p=0.93" and shown["display"]["columns"][:3] == ["", "17", "42"]
    assert ["first_name", "Ann", "Anne", "≠"] in shown["display"]["rows"]
    assert ["email", "ann@example.com", "ann@example.com", "="] in shown["display"]["rows"]

    sign_in(client, person(settings))
    page = client.get(f"/items/{iid}").text
    first = re.search(r'<tr class="(\w+)" data-column="first_name">(.*?)</tr>', page, re.S)
    email = re.search(r'<tr class="(\w+)" data-column="email">(.*?)</tr>', page, re.S)
    assert first and email
    assert first[1] == "differ" and "Ann<" in first[2] and "Anne<" in first[2] and "≠ differs" in first[2]
    assert email[1] == "agree" and "= agrees" in email[2]
    # the waterfall: one bar per step, besides the prior's and the final weight's, each labelled
    svg = re.search(r"<svg[^>]*class=\"waterfall\".*?</svg>", page, re.S)
    assert svg
    assert len(re.findall(r'<rect[^>]*class="wf-bar wf-(?:up|down) wf-step"', svg[0])) == len(STEPS)
    assert len(re.findall(r'class="wf-bar wf-down wf-step"', svg[0])) == 1  # the city's step goes down
    assert "wf-prior" in svg[0] and "wf-final" in svg[0] and "Jaro-Winkler &gt;0.9" in svg[0] and "-1.50" in svg[0]
    # the cluster's other member, and a value with markup shown as text, never run
    assert re.search(r'<th scope="row">99</th>(.*?)</tr>', page, re.S)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert 'id="same"' not in page  # read-only until claimed


def test_same_through_the_api_and_different_through_the_form(client: TestClient, settings: Settings,
                                                               run_id: str) -> None:
    agent = token_for(settings, person(settings))
    same, different = add_pair(settings, run_id, "1", "2"), add_pair(settings, run_id, "3", "4")
    assert client.post(f"/api/items/{same}/claim", headers=agent).status_code == 200
    done = client.post(f"/api/items/{same}/resolve", json={"decision": {"verdict": "same"}}, headers=agent).json()
    assert done["status"] == "approved" and not done["resumed"]
    item = review.get_item(settings, same)
    assert (item.status, item.decision) == ("approved", {"verdict": "same"})

    name = person(settings)
    csrf = sign_in(client, name)
    client.post(f"/items/{different}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{different}").text
    assert 'id="same"' in page and 'id="different"' in page and 'id="not-sure"' in page
    answered = client.post(f"/items/{different}/resolve", data={"csrf": csrf, "action": "different",
                                                                 "reason": "two sisters"}, follow_redirects=False)
    assert answered.status_code == 303
    assert f"item {different} rejected" in client.get(answered.headers["location"]).text
    item = review.get_item(settings, different)
    assert (item.status, item.decision, item.reason, item.decided_by) == (
        "rejected", {"verdict": "different"}, "two sisters", name)
    assert [e.action for e in events(settings.ops_database_url or "", different)] == ["created", "claimed", "rejected"]
    # a form without the session's CSRF token is refused
    assert client.post(f"/items/{same}/resolve", data={"action": "same"}, follow_redirects=False).status_code == 403


def test_not_sure_sends_the_pair_to_the_supervisor_queue_and_leaves_it_open(client: TestClient, settings: Settings,
                                                                           run_id: str) -> None:
    name = person(settings)
    agent, boss = token_for(settings, name), token_for(settings, person(settings, "supervisor"))
    iid = add_pair(settings, run_id)
    client.post(f"/api/items/{iid}/claim", headers=agent)
    before = datetime.now(UTC)
    done = client.post(f"/api/items/{iid}/resolve", headers=agent,
                       json={"decision": {"verdict": "not_sure", "reason": "same address, other birth year"}}).json()
    assert done["status"] == "escalated" and done["open_left"] == 2  # this one and the run's kept-open item
    item = review.get_item(settings, iid)
    assert (item.status, item.queue, item.assignee, item.decision) == ("open", "supervisor", None, None)
    assert before + timedelta(hours=23) < aware(item.due_at) < before + timedelta(hours=25)  # the spec's 24 h
    escalated = events(settings.ops_database_url or "", iid)[-1]
    assert (escalated.action, escalated.actor) == ("escalated", name)
    assert escalated.detail["reason"] == "same address, other birth year"
    assert escalated.detail["from_queue"] == "default"
    # the agent cannot take it back from the supervisor's queue by answering again
    again = client.post(f"/api/items/{iid}/resolve", json={"decision": {"verdict": "same"}}, headers=agent)
    assert again.status_code == 409 and "claim" in again.json()["detail"]
    # a supervisor who is not sure either has no one to send it to; they decide it
    client.post(f"/api/items/{iid}/claim", headers=boss)
    higher = client.post(f"/api/items/{iid}/resolve", json={"decision": {"verdict": "not_sure"}}, headers=boss)
    assert higher.status_code == 409 and "already in the supervisor queue" in higher.json()["detail"]
    decided = client.post(f"/api/items/{iid}/resolve", json={"decision": {"verdict": "same"}}, headers=boss).json()
    assert decided["status"] == "approved"


def test_an_answer_that_is_not_a_pair_answer_is_refused_with_why(client: TestClient, settings: Settings,
                                                                run_id: str) -> None:
    agent = token_for(settings, person(settings))
    iid = add_pair(settings, run_id)
    client.post(f"/api/items/{iid}/claim", headers=agent)
    bad = client.post(f"/api/items/{iid}/resolve", json={"decision": {"verdict": "maybe"}}, headers=agent)
    assert bad.status_code == 422
    assert "not a pair decision: verdict" in bad.json()["detail"] and "maybe" not in bad.json()["detail"]
    approve = client.post(f"/api/items/{iid}/resolve", json={"approve": True}, headers=agent)
    assert approve.status_code == 422 and "verdict: Field required" in approve.json()["detail"]
    csrf = sign_in(client, person(settings))
    other = add_pair(settings, run_id, "5", "6")
    client.post(f"/items/{other}/claim", data={"csrf": csrf})
    refused = client.post(f"/items/{other}/resolve", data={"csrf": csrf, "action": "approve"})
    assert "choose same or different or not_sure" in refused.text
    assert review.get_item(settings, iid).status == review.get_item(settings, other).status == "open"


def test_a_conflict_shows_three_versions_and_is_acknowledged_with_a_reason(client: TestClient, settings: Settings,
                                                                           run_id: str) -> None:
    row = review.conflict_item(
        flow_run_id=run_id, process=PROCESS, step=STEP, record_hash=None, due_at=LATER, on_timeout="escalate",
        source={"table": "customers", "key": "customer_id", "row_key": "17",
                "snapshot": {"email": "ann@example.com", "city": "Springfield"},
                "current": {"email": "ann@new.example.com", "city": "Springfield"},
                "proposed": {"email": "ann@example.com", "city": "SPRINGFIELD"}})
    with session_scope(settings.ops_database_url or "") as s:
        assert review.add_items(s, [row]) == 1
    iid = next(i.id for i in review.list_items(settings, flow_run_id=run_id) if i.kind == "conflict")
    csrf = sign_in(client, person(settings))
    client.post(f"/items/{iid}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{iid}").text
    email = re.search(r'<tr class="(\w+)" data-column="email">(.*?)</tr>', page, re.S)
    city = re.search(r'<tr class="(\w+)" data-column="city">(.*?)</tr>', page, re.S)
    assert email and city and email[1] == "differ" and "≠ changed" in email[2] and "ann@new.example.com" in email[2]
    assert city[1] == "agree" and "SPRINGFIELD" in city[2] and 'id="acknowledge"' in page

    unexplained = client.post(f"/items/{iid}/resolve", data={"csrf": csrf, "action": "acknowledge", "reason": " "})
    assert "acknowledging a conflict needs a reason" in unexplained.text
    assert review.get_item(settings, iid).status == "open"
    client.post(f"/items/{iid}/resolve", data={"csrf": csrf, "action": "acknowledge", "reason": "the client moved"})
    item = review.get_item(settings, iid)
    assert (item.status, item.decision, item.reason) == ("approved", {"acknowledge": True}, "the client moved")


def test_a_pair_is_answered_from_the_cli(settings: Settings, run_id: str) -> None:
    cli = CliRunner()  # in process, on the ops database (no BPO_TOKEN)
    first, second = add_pair(settings, run_id, "7", "8"), add_pair(settings, run_id, "9", "10")
    wrong = cli.invoke(app, ["review", "resolve", str(first), "--verdict", "maybe", "--as", "bob"])
    assert wrong.exit_code == 2 and "--verdict is one of same, different, not_sure" in wrong.output
    done = cli.invoke(app, ["review", "resolve", str(first), "--verdict", "different", "--reason", "other people",
                            "--as", "bob"])
    assert done.exit_code == 0, done.output
    assert f"item {first} rejected" in done.output
    item = review.get_item(settings, first)
    assert (item.decision, item.reason, item.decided_by) == ({"verdict": "different"}, "other people", "bob")
    unsure = cli.invoke(app, ["review", "resolve", str(second), "--verdict", "not_sure", "--as", "bob"])
    assert unsure.exit_code == 0 and "sent to the supervisor queue" in unsure.output
    assert review.get_item(settings, second).queue == "supervisor"


def test_a_reformat_is_shown_as_now_and_proposed_and_accepted_or_kept_from_the_page_and_the_cli(
        client: TestClient, settings: Settings, run_id: str) -> None:
    def add(key: str) -> int:
        row = review.reformat_item(
            flow_run_id=run_id, process=PROCESS, step=STEP, record_hash=None, due_at=LATER, on_timeout="escalate",
            source={"table": "customers", "key": "customer_id", "row_key": key,
                    "row": {"first_name": "<b>Ann</b>", "phone": "1-800-FLOWERS"},
                    "changes": [{"column": "phone", "old": "1-800-FLOWERS", "new": "+18003569377"}]})
        with session_scope(settings.ops_database_url or "") as s:
            assert review.add_items(s, [row]) == 1
        return next(i.id for i in review.list_items(settings, flow_run_id=run_id) if i.record_key == key)

    with pytest.raises(ValidationError):  # a reformat item proposes something
        review.reformat_item(flow_run_id=run_id, process=PROCESS, step=STEP, record_hash=None, due_at=LATER,
                             on_timeout="escalate", source={"table": "t", "key": "k", "row_key": "1", "row": {},
                                                            "changes": []})
    first, second = add("17"), add("18")
    csrf = sign_in(client, person(settings))
    client.post(f"/items/{first}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{first}").text
    assert "&lt;b&gt;Ann&lt;/b&gt;" in page and "<b>Ann</b>" not in page  # client data is inert
    phone = re.search(r"<tr><td>phone</td>(.*?)</tr>", page, re.S)
    assert phone and "1-800-FLOWERS" in phone[1] and "+18003569377" in phone[1] and 'id="approve"' in page
    client.post(f"/items/{first}/resolve", data={"csrf": csrf, "action": "approve", "reason": ""})
    item = review.get_item(settings, first)
    assert (item.status, item.decision) == ("approved", {"approve": True})

    done = CliRunner().invoke(app, ["review", "resolve", str(second), "--reject", "--reason", "keeps the extension",
                                    "--as", "bob"])
    assert done.exit_code == 0, done.output
    item = review.get_item(settings, second)
    assert (item.status, item.decision, item.reason) == ("rejected", {"approve": False}, "keeps the extension")
