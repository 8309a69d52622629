"""The review console and its API, in process (Starlette's TestClient), on a real SQLite ops database.

Sign-in, sessions, CSRF, API tokens, authorization by role and group, the queue's filters and
counts, claim/unclaim, live re-validation, resolve, bulk resolve, audit, and record values shown inert.
Runs are kept open (``keep_open``) so that no resolve here needs a Prefect server to resume a run.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from bpo import review, users
from bpo.console.app import create_app
from bpo.db.models import ReviewItem, Run, User
from bpo.db.session import session_scope, upgrade
from bpo.settings import Settings
from tests.test_review import events, item_id, keep_open, make_item, store

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'ops.db'}"
    upgrade(url)
    return Settings(ops_database_url=url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def person(settings: Settings, role: str = "agent", groups: list[str] | None = None) -> str:
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    users.add_user(settings, name, PASSWORD, role, groups)
    return name


def token_for(settings: Settings, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {users.issue_token(settings, name)[1]}"}


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form; the CSRF token of the session, read from the page as a browser would."""
    page = client.get("/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert login_csrf
    done = client.post("/login", data={"name": name, "password": password, "login_csrf": login_csrf[1]},
                       follow_redirects=False)
    assert done.status_code == 303, done.text
    queue = client.get("/")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', queue.text)
    assert csrf
    return csrf[1]


def open_items(settings: Settings, rows: list[int], **overrides: str) -> tuple[str, dict[int, int]]:
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(run_id, r, **overrides) for r in rows])
    keep_open(settings.ops_database_url or "", run_id)
    return run_id, {r: item_id(settings, run_id, r) for r in rows}


def test_sign_in_session_and_sign_out(client: TestClient, settings: Settings) -> None:
    name = person(settings)
    assert client.get("/", follow_redirects=False).headers["location"].startswith("/login")
    csrf = sign_in(client, name)
    assert name in client.get("/").text
    assert client.get("/api/me").json()["name"] == name
    assert client.post("/logout", follow_redirects=False).status_code == 403  # no CSRF token
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/api/me").status_code == 401  # the session has ended, the cookie is worth nothing


def test_a_wrong_password_is_refused_and_repeated_failures_are_slowed_down(
        client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    name = person(settings)
    page = client.get("/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
    statuses = []
    for _ in range(users.FREE_FAILURES + 1):
        response = client.post("/login", data={"name": name, "password": "not the password", "login_csrf": login_csrf})
        statuses.append(response.status_code)
        login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', response.text)[1]  # type: ignore[index]
    assert statuses == [401] * users.FREE_FAILURES + [429]
    assert "too many failed sign-ins" in response.text and int(response.headers["Retry-After"]) >= 1
    # the right password is refused too while the pause lasts, and the failures are logged without it
    refused = client.post("/login", data={"name": name, "password": PASSWORD, "login_csrf": login_csrf})
    assert refused.status_code == 429
    assert any("sign-in failed" in r.message and name in r.message for r in caplog.records)
    assert all("not the password" not in r.message for r in caplog.records)
    # a pause past its end lets the right password in
    later = datetime.now(UTC) + users.MAX_WAIT + timedelta(seconds=1)
    assert users.sign_in(settings, name, PASSWORD, now=later).name == name


def test_passwords_are_stored_as_argon2id_hashes(settings: Settings) -> None:
    name = person(settings)
    with session_scope(settings.ops_database_url or "") as s:
        stored = s.scalar(select(User.password_hash).where(User.name == name))
    assert stored and stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_sign_in_form_needs_its_own_csrf_cookie(client: TestClient, settings: Settings) -> None:
    name = person(settings)
    response = client.post("/login", data={"name": name, "password": PASSWORD, "login_csrf": "forged"})
    assert response.status_code == 403


def test_api_tokens_authenticate_and_can_be_revoked(client: TestClient, settings: Settings) -> None:
    name = person(settings)
    token_id, token = users.issue_token(settings, name, "cli")
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == name
    assert client.get("/api/me", headers={"Authorization": "Bearer bpo_wrong"}).status_code == 401
    assert client.get("/api/me").status_code == 401
    users.revoke_token(settings, token_id)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_queue_filters_counts_and_pages(client: TestClient, settings: Settings) -> None:
    agent = token_for(settings, person(settings))
    run_id, ids = open_items(settings, list(range(2, 9)))
    _, late = open_items(settings, [2])
    with session_scope(settings.ops_database_url or "") as s:
        s.execute(update(ReviewItem).where(ReviewItem.id == late[2])
                  .values(due_at=datetime.now(UTC) - timedelta(hours=1)))
    got = client.get("/api/items", params={"run": run_id, "per_page": 3}, headers=agent).json()
    assert got["total"] == 8  # seven and the one kept open
    assert [i["id"] for i in got["items"]] == [ids[2], ids[3], ids[4]]  # soonest due first
    second = client.get("/api/items", params={"run": run_id, "per_page": 3, "page": 2}, headers=agent).json()
    assert [i["id"] for i in second["items"]] == [ids[5], ids[6], ids[7]]
    newest = client.get("/api/items", params={"run": run_id, "sort": "-id", "per_page": 1}, headers=agent).json()
    assert newest["items"][0]["record_key"] == "f.csv:999"
    overdue = client.get("/api/items", params={"overdue": "true"}, headers=agent).json()
    assert late[2] in {i["id"] for i in overdue["items"]} and all(i["overdue"] for i in overdue["items"])
    assert got["counts"]["status"]["open"] >= 8 and got["counts"]["kind"] == {"record": 8}
    assert client.get("/api/items", params={"sort": "nonsense"}, headers=agent).status_code == 422


def test_items_of_an_ended_run_are_shown_as_such(client: TestClient, settings: Settings) -> None:
    agent = token_for(settings, person(settings))
    run_id, ids = open_items(settings, [2])
    with session_scope(settings.ops_database_url or "") as s:
        s.add(Run(flow_run_id=run_id, process="customer_onboarding", batch="b", status="crashed", s3_prefix="x"))
    row = client.get(f"/api/items/{ids[2]}", headers=agent).json()
    assert row["run_status"] == "crashed" and row["run_ended"] and row["status"] == "open"


def test_claim_is_needed_to_resolve_and_two_agents_never_hold_one_item(client: TestClient, settings: Settings) -> None:
    ann, bob = token_for(settings, person(settings)), token_for(settings, person(settings))
    _, ids = open_items(settings, [2])
    item = ids[2]
    refused = client.post(f"/api/items/{item}/resolve", json={"approve": False, "reason": "no"}, headers=ann)
    assert refused.status_code == 409 and "claim" in refused.json()["detail"]
    assert client.post(f"/api/items/{item}/claim", headers=ann).json()["assignee"].startswith("agent-")
    taken = client.post(f"/api/items/{item}/claim", headers=bob)
    assert taken.status_code == 409 and "claimed by" in taken.json()["detail"]
    stolen = client.post(f"/api/items/{item}/resolve", json={"approve": False, "reason": "x"}, headers=bob)
    assert stolen.status_code == 409
    assert client.post(f"/api/items/{item}/unclaim", headers=bob).status_code == 409
    assert client.post(f"/api/items/{item}/unclaim", headers=ann).json()["assignee"] is None
    assert client.post(f"/api/items/{item}/claim", headers=bob).status_code == 200


def test_check_shows_what_still_fails_and_resolve_takes_the_corrected_record(client: TestClient,
                                                                            settings: Settings) -> None:
    name = person(settings)
    agent = token_for(settings, name)
    _, ids = open_items(settings, [2], email="two-at-example.com")
    item = ids[2]
    still = client.post(f"/api/items/{item}/check", json={"set": {"email": "still wrong"}}, headers=agent).json()
    assert not still["passes"] and {f["field"] for f in still["failures"]} == {"email"}
    fixed = client.post(f"/api/items/{item}/check", json={"set": {"email": "Two@Example.com"}}, headers=agent).json()
    assert fixed["passes"] and fixed["accepted"]["email"] == "two@example.com"
    assert client.post(f"/api/items/{item}/check", json={"set": {"nope": "1"}}, headers=agent).status_code == 422
    client.post(f"/api/items/{item}/claim", headers=agent)
    failing = client.post(f"/api/items/{item}/resolve", json={"approve": True, "set": {"email": "x"}}, headers=agent)
    assert failing.status_code == 422 and failing.json()["detail"]["failures"][0]["field"] == "email"
    done = client.post(f"/api/items/{item}/resolve", json={"approve": True, "set": {"email": "Two@Example.com"}},
                       headers=agent).json()
    assert done["status"] == "approved" and done["open_left"] == 1 and not done["resumed"]
    assert review.get_item(settings, item).decision["email"] == "two@example.com"
    audit = client.get(f"/api/items/{item}/audit", headers=agent).json()
    assert [e["action"] for e in audit] == ["created", "claimed", "correction_refused", "approved"]
    assert all(e["actor"] == name for e in audit[1:])
    again = client.post(f"/api/items/{item}/resolve", json={"approve": False, "reason": "late"}, headers=agent)
    assert again.status_code == 409 and "already approved" in again.json()["detail"]


def test_a_page_form_needs_the_session_csrf_token(client: TestClient, settings: Settings) -> None:
    csrf = sign_in(client, person(settings))
    _, ids = open_items(settings, [2])
    assert client.post(f"/items/{ids[2]}/claim", follow_redirects=False).status_code == 403
    assert client.post(f"/items/{ids[2]}/claim", data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.post(f"/api/items/{ids[2]}/claim").status_code == 403  # the API on a session wants it too
    assert client.post(f"/items/{ids[2]}/claim", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert review.get_item(settings, ids[2]).assignee is not None


def test_an_agent_works_only_on_the_processes_of_its_groups(client: TestClient, settings: Settings,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpo.console import auth

    monkeypatch.setattr(auth, "groups_of", lambda process: frozenset({"onboarding"}))
    outsider = token_for(settings, person(settings, groups=["claims"]))
    member = token_for(settings, person(settings, groups=["onboarding"]))
    supervisor = token_for(settings, person(settings, "supervisor"))
    _, ids = open_items(settings, [2])
    assert client.get(f"/api/items/{ids[2]}", headers=outsider).status_code == 403
    assert client.post(f"/api/items/{ids[2]}/claim", headers=outsider).status_code == 403
    assert ids[2] not in {i["id"] for i in client.get("/api/items", headers=outsider).json()["items"]}
    assert client.get(f"/api/items/{ids[2]}", headers=member).status_code == 200
    assert client.get(f"/api/items/{ids[2]}", headers=supervisor).status_code == 200
    bulk = client.post("/api/items/bulk-resolve", json={"ids": [ids[2]], "approve": False, "reason": "r"},
                       headers=outsider).json()
    assert bulk["decided"] == {} and "not in a group" in bulk["refused"][str(ids[2])]


def test_the_queue_filters_by_group_and_priority_and_next_takes_the_most_urgent(
        client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpo.console import auth

    other = f"claims_{uuid.uuid4().hex[:6]}"
    monkeypatch.setattr(auth, "groups_of", lambda process: frozenset({"claims" if process == other else "kyc"}))
    supervisor = token_for(settings, person(settings, "supervisor"))
    run_id = str(uuid.uuid4())
    soon, urgent_later = make_item(run_id, 2, due_at=datetime.now(UTC) + timedelta(minutes=5)), make_item(run_id, 3)
    urgent_later.priority = 2
    store(settings.ops_database_url or "", [soon, urgent_later])
    store(settings.ops_database_url or "", [make_item(str(uuid.uuid4()), 4, process=other)])
    keep_open(settings.ops_database_url or "", run_id)
    urgent = item_id(settings, run_id, 3)

    page = client.get("/api/items", params={"priority": 2, "run": run_id}, headers=supervisor).json()
    assert [i["id"] for i in page["items"]] == [urgent] and page["items"][0]["priority"] == 2
    assert page["counts"]["priority"] == {"2": 1}
    ranked = client.get("/api/items", params={"sort": "priority", "run": run_id}, headers=supervisor).json()
    assert ranked["items"][0]["id"] == urgent, "the urgent one first, though the other is due sooner"
    by_group = client.get("/api/items", params={"group": "claims", "per_page": 500}, headers=supervisor).json()
    assert {i["process"] for i in by_group["items"]} == {other}
    assert client.get("/api/items", params={"group": "nobody"}, headers=supervisor).json()["total"] == 0
    got = review.claim_next(settings, person(settings), processes=frozenset({"customer_onboarding"}))
    assert got is not None and got.priority == max(
        i.priority for i in review.list_items(settings, process="customer_onboarding", limit=None))
    sign_in(client, person(settings, "supervisor"))
    assert client.get("/", params={"priority": "2"}).text.count('name="ids"') == \
        client.get("/api/items", params={"priority": 2}, headers=supervisor).json()["total"]


def test_supervisors_assign_and_see_users_agents_cannot(client: TestClient, settings: Settings) -> None:
    agent_name = person(settings)
    agent, supervisor = token_for(settings, agent_name), token_for(settings, person(settings, "supervisor"))
    _, ids = open_items(settings, [2])
    assert client.post(f"/api/items/{ids[2]}/assign", json={"assignee": agent_name}, headers=agent).status_code == 403
    assert client.get("/api/users", headers=agent).status_code == 403
    done = client.post(f"/api/items/{ids[2]}/assign", json={"assignee": agent_name}, headers=supervisor).json()
    assert done["assignee"] == agent_name
    assert client.post(f"/api/items/{ids[2]}/assign", json={"assignee": "nobody-here"},
                       headers=supervisor).status_code == 422
    assert agent_name in {u["name"] for u in client.get("/api/users", headers=supervisor).json()}
    assert [e.action for e in events(settings.ops_database_url or "", ids[2])] == ["created", "assigned"]

    # to a group: its least-loaded active member (the one above already holds an item)
    team = f"team-{uuid.uuid4().hex[:6]}"
    busy, idle = person(settings, groups=[team]), person(settings, groups=[team])
    _, more = open_items(settings, [3, 4])
    review.assign(settings, more[3], actor="sup", assignee=busy)
    done = client.post(f"/api/items/{more[4]}/assign", json={"group": team}, headers=supervisor).json()
    assert done["assignee"] == idle
    assert events(settings.ops_database_url or "", more[4])[-1].detail["group"] == team
    assert client.post(f"/api/items/{more[4]}/assign", json={"group": "no-such-team"},
                       headers=supervisor).status_code == 409
    assert client.post(f"/api/items/{more[4]}/assign", json={"group": team, "assignee": busy},
                       headers=supervisor).status_code == 409

    # the supervisor's form on the item page does the same; an agent's page has none
    sign_in(client, agent_name)
    assert 'id="assign"' not in client.get(f"/items/{more[4]}").text
    csrf = sign_in(client, person(settings, "supervisor"))
    page = client.get(f"/items/{more[4]}").text
    assert 'action="/items/' in page and 'id="assign"' in page and f'<option value="{team}">' in page
    went = client.post(f"/items/{more[4]}/assign", data={"csrf": csrf, "assignee": "", "group": ""},
                       follow_redirects=False)
    assert went.status_code == 303 and review.get_item(settings, more[4]).assignee is None


def test_bulk_resolve_approves_what_passes(client: TestClient, settings: Settings) -> None:
    agent = token_for(settings, person(settings))
    flagged = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(run_id, 2, failed_checks=flagged),
                                            make_item(run_id, 3, email="three-at-example.com")])
    keep_open(settings.ops_database_url or "", run_id)
    ids = [item_id(settings, run_id, r) for r in (2, 3)]
    done = client.post("/api/items/bulk-resolve", json={"ids": ids, "approve": True}, headers=agent).json()
    assert done["decided"] == {str(ids[0]): "approved"} and list(done["left_open"]) == [str(ids[1])]


def test_next_claims_the_soonest_due_open_item(client: TestClient, settings: Settings) -> None:
    sign_in(client, person(settings))
    with session_scope(settings.ops_database_url or "") as s:
        s.execute(update(ReviewItem).where(ReviewItem.status == "open").values(assignee="someone-else"))
    _, ids = open_items(settings, [2, 3])
    went = client.get("/next", follow_redirects=False)
    assert went.headers["location"] == f"/items/{ids[2]}"
    assert review.get_item(settings, ids[2]).assignee is not None


def test_record_values_with_markup_are_shown_inert(client: TestClient, settings: Settings) -> None:
    sign_in(client, person(settings))
    _, ids = open_items(settings, [2], first_name="<script>alert(1)</script>",
                        last_name='"><img src=x onerror=alert(1)>')
    page = client.get(f"/items/{ids[2]}").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    queue = client.get("/").text
    assert "<script>alert(1)</script>" not in queue
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]


def test_the_item_page_shows_the_source_beside_the_fields_and_the_failed_check_on_its_field(
        client: TestClient, settings: Settings) -> None:
    csrf = sign_in(client, person(settings))
    _, ids = open_items(settings, [2], email="two-at-example.com")
    page = client.get(f"/items/{ids[2]}").text
    assert "The item is read-only until you claim it" in page and 'readonly' in page
    row = re.search(r'<tr class="failing" data-field="email">(.*?)</tr>', page, re.S)
    assert row and "two-at-example.com" in row[1] and "does not have the expected format" in row[1]
    client.post(f"/items/{ids[2]}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{ids[2]}").text
    assert 'id="approve"' in page and "Unclaim" in page
    done = client.post(f"/items/{ids[2]}/resolve", data={"csrf": csrf, "action": "approve",
                                                         "field.email": "two@example.com"}, follow_redirects=False)
    assert done.status_code == 303 and "approved" in done.headers["location"]
    assert review.get_item(settings, ids[2]).decision["email"] == "two@example.com"


def test_the_openapi_document_covers_the_api(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in ("/api/items", "/api/items/{item_id}", "/api/items/{item_id}/claim", "/api/items/{item_id}/resolve",
                 "/api/items/bulk-resolve", "/api/items/{item_id}/audit", "/api/users", "/api/me"):
        assert path in paths
    assert not any(p.startswith("/items") or p == "/login" for p in paths)  # pages are not the API


def test_the_audit_exports_as_csv_with_formula_cells_made_inert(client: TestClient, settings: Settings) -> None:
    import csv
    import io

    name = "=HYPERLINK(x)-" + uuid.uuid4().hex[:6]
    users.add_user(settings, name, PASSWORD, "supervisor")
    headers = token_for(settings, name)
    run_id, ids = open_items(settings, [2])
    client.post(f"/api/items/{ids[2]}/claim", headers=headers)
    client.post(f"/api/items/{ids[2]}/resolve", json={"approve": False, "reason": "@SUM(A1)"}, headers=headers)
    got = client.get("/api/audit.csv", params={"item": ids[2]}, headers=headers)
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(got.text)))
    assert rows[0] == ["at", "actor", "action", "item_id", "flow_run_id", "detail"]
    assert [r[2] for r in rows[1:]] == ["created", "claimed", "rejected"]
    assert rows[2][1] == "'" + name  # shown as text, never run
    whole_run = client.get("/api/audit.csv", params={"run": run_id}, headers=headers)
    assert len(list(csv.reader(io.StringIO(whole_run.text)))) == 1 + 4  # both items' events
    assert client.get("/api/audit.csv", headers=headers).status_code == 422


def test_the_dashboard_counts_backlog_sla_straight_through_and_agent_rate(client: TestClient,
                                                                         settings: Settings) -> None:
    from bpo.console import dashboard

    name = person(settings, "supervisor")
    headers = token_for(settings, name)
    run_id, ids = open_items(settings, [2, 3])
    with session_scope(settings.ops_database_url or "") as s:
        s.add(Run(flow_run_id=str(uuid.uuid4()), process="customer_onboarding", batch="b", status="completed",
                  s3_prefix="x", counts={"records_in": 100, "straight_through": 90}))
        s.execute(update(ReviewItem).where(ReviewItem.id == ids[3])
                  .values(due_at=datetime.now(UTC) - timedelta(minutes=5)))  # decided after its due time
    for iid in (ids[2], ids[3]):
        client.post(f"/api/items/{iid}/claim", headers=headers)
        client.post(f"/api/items/{iid}/resolve", json={"approve": False, "reason": "test"}, headers=headers)
    figures = client.get("/api/dashboard", headers=headers).json()
    rate = figures["per_agent_hour"][name]
    assert rate["decisions"] == 2 and rate["hours"] in (1, 2) and rate["rate"] == 2 / rate["hours"]  # 2 if one hour
    sla = figures["sla"]["customer_onboarding"]
    assert sla["decided"] >= 2 and sla["on_time"] <= sla["decided"] - 1
    assert figures["straight_through"]["customer_onboarding"]["straight_through"] >= 90
    assert sum(figures["backlog"]["customer_onboarding"].values()) >= 1  # the item kept open
    svg = dashboard.bar_chart("<b>", [("<script>x</script>", 1.0)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg and svg.startswith("<svg")
    sign_in(client, name)
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.text.count("<svg") == 5  # accuracy from samples is the fifth


def test_a_message_is_shown_only_when_the_console_sent_it(client: TestClient, settings: Settings) -> None:
    csrf = sign_in(client, person(settings))
    forged = client.get("/", params={"msg": "Your account is locked: call 555-0100", "sig": "0" * 32})
    assert "Your account is locked" not in forged.text
    _, ids = open_items(settings, [2])
    client.post(f"/items/{ids[2]}/claim", data={"csrf": csrf})
    sent = client.post(f"/items/{ids[2]}/unclaim", data={"csrf": csrf})  # redirected, with the console's message
    assert f"item {ids[2]} is back in the queue" in sent.text


CHECK_WHILE_STARTING = """
import sys, uuid
from fastapi.testclient import TestClient
from bpo import users
from bpo.console.app import create_app
from bpo.db.session import upgrade
from bpo.settings import Settings
from tests.test_review import item_id, keep_open, make_item, store

assert "great_expectations" not in sys.modules
url = f"sqlite:///{sys.argv[1]}"
upgrade(url)
settings = Settings(ops_database_url=url)
users.add_user(settings, "early", "correct horse battery", "agent")
token = {"Authorization": "Bearer " + users.issue_token(settings, "early")[1]}
run_id = str(uuid.uuid4())
store(url, [make_item(run_id, 2, email="early-at-example.com")])
keep_open(url, run_id)
with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:  # its GX import starts now
    got = client.post(f"/api/items/{item_id(settings, run_id, 2)}/check", json={"set": {"email": "e@example.com"}},
                      headers=token)
    assert got.status_code == 200 and got.json()["passes"], got.text
print("ok")
"""


def test_a_check_while_the_console_still_imports_great_expectations_works(tmp_path: Path) -> None:
    """The console imports GX in a thread at start; a first check at once imports it too. Two threads
    importing GX at once used to find its modules half-initialized: the check failed with a server error."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", CHECK_WHILE_STARTING, str(tmp_path / "ops.db")],
                          capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
