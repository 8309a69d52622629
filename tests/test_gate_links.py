"""Gates answered through a signed link by a named approver without an account, in process on a SQLite ops DB.

Each gate's run keeps one more item open in the gate's step (``keep_open``), so that deciding the
gate never needs a Prefect server to resume the run.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import select

from bpo import review, users
from bpo.console.app import create_app
from bpo.db.models import AuditEvent, GateLink, ReviewItem
from bpo.db.session import session_scope, upgrade
from bpo.review import links
from bpo.settings import Settings
from tests.cli import bpo
from tests.test_review import keep_open, make_item, store

PASSWORD = "correct horse battery"
STEP = "approve-load"
APPROVER = "Ann Approver"


@pytest.fixture(scope="module")
def ops_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('links') / 'ops.db'}"
    upgrade(url)
    return url


@pytest.fixture
def settings(ops_url: str, tmp_path: Path) -> Settings:
    """The ops database of the module, and a console home (where the link key is made) of the test's own."""
    return Settings(home=tmp_path / "home", ops_database_url=ops_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def gate(settings: Settings, summary: dict[str, Any] | None = None) -> int:
    """An open gate of a new run (with one more item of its step kept open); its id."""
    url = settings.ops_database_url or ""
    run_id = str(uuid.uuid4())
    with session_scope(url) as s:
        review.open_gate(s, run_id, "data_entry", STEP, summary or {"records": 120, "rejected": 3},
                         datetime.now(UTC) + timedelta(days=1), "escalate")
    keep_open(url, run_id, step=STEP)
    with session_scope(url) as s:
        found = s.scalar(select(ReviewItem.id).where(ReviewItem.flow_run_id == run_id, ReviewItem.kind == "gate"))
    assert found is not None
    return found


@pytest.fixture(scope="module")
def boss(ops_url: str) -> tuple[str, dict[str, str]]:
    """A supervisor and the API token header they send."""
    s = Settings(ops_database_url=ops_url)
    name = f"sup-{uuid.uuid4().hex[:6]}"
    users.add_user(s, name, PASSWORD, "supervisor")
    return name, {"Authorization": f"Bearer {users.issue_token(s, name)[1]}"}


def path_of(token: str) -> str:
    return f"/gate/{token}"


def item(settings: Settings, item_id: int) -> ReviewItem:
    return review.get_item(settings, item_id)


def audit(settings: Settings, item_id: int) -> list[AuditEvent]:
    return review.audit_of(settings, item_id=item_id)


def link_row(settings: Settings, item_id: int) -> GateLink:
    with session_scope(settings.ops_database_url or "") as s:
        found = s.scalar(select(GateLink).where(GateLink.item_id == item_id))
    assert found is not None
    return found


def test_a_supervisor_links_a_gate_and_the_named_approver_approves_it_from_an_address(
        client: TestClient, settings: Settings, boss: tuple[str, dict[str, str]]) -> None:
    gate_id = gate(settings)
    boss_name, token_header = boss
    made = client.post(f"/api/items/{gate_id}/link", json={"approver": APPROVER, "hours": 24}, headers=token_header)
    assert made.status_code == 200, made.text
    url = made.json()["url"]
    assert url.startswith("http://127.0.0.1/gate/")
    expires = datetime.fromisoformat(made.json()["expires_at"])
    assert timedelta(hours=23) < expires - datetime.now(UTC) <= timedelta(hours=24)
    path = url.removeprefix("http://127.0.0.1")

    # what a mail scanner or the approver's first look does: the page, twice, and nothing is used up
    for _ in range(2):
        page = client.get(path)
        assert page.status_code == 200
        assert APPROVER in page.text and "records" in page.text and "120" in page.text
        assert 'name="reason"' in page.text and "required" in page.text
    assert link_row(settings, gate_id).used_at is None and item(settings, gate_id).status == "open"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer" and "set-cookie" not in page.headers

    client.cookies.clear()  # no session is needed, only the link
    done = client.post(path, data={"action": "approve", "reason": "counts match the delivery note"},
                       headers={"User-Agent": "Mailer/1.0 " + "x" * 500})
    assert done.status_code == 200 and "Gate approved" in done.text
    decided = item(settings, gate_id)
    assert (decided.status, decided.decided_by, decided.reason) == (
        "approved", f"{APPROVER} (signed link)", "counts match the delivery note")
    used = link_row(settings, gate_id)
    assert used.used_at is not None and used.used_from and used.used_from.startswith("testclient Mailer/1.0")
    events = {e.action: e for e in audit(settings, gate_id)}
    assert events["link_issued"].actor == boss_name and events["link_issued"].detail["approver"] == APPROVER
    seen = events["link_used"].detail
    assert events["link_used"].actor == f"{APPROVER} (signed link)"
    assert (seen["approver"], seen["from"], seen["created_by"]) == (APPROVER, "testclient", boss_name)
    assert seen["user_agent"].startswith("Mailer/1.0") and len(seen["user_agent"]) == links.MAX_USER_AGENT
    assert events["approved"].actor == f"{APPROVER} (signed link)"
    assert all(path.rsplit("/", 1)[1] not in json.dumps(e.detail) for e in events.values())  # no token in the audit


def test_a_decision_needs_a_reason_and_an_incomplete_one_leaves_the_link_usable(
        client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings)
    path = path_of(links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup"))
    for form in ({"action": "reject", "reason": "   "}, {"action": "reject"}, {"reason": "no action"}):
        refused = client.post(path, data=form)
        assert refused.status_code == 422, form
        assert "reason" in refused.text or "approve or reject" in refused.text
    assert link_row(settings, gate_id).used_at is None and item(settings, gate_id).status == "open"
    done = client.post(path, data={"action": "reject", "reason": "totals are off by 3"})
    assert done.status_code == 200 and "Gate rejected" in done.text
    assert (item(settings, gate_id).status, item(settings, gate_id).reason) == ("rejected", "totals are off by 3")


def test_a_used_link_is_refused_saying_when_and_the_refusal_is_audited(
        client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings)
    path = path_of(links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup"))
    assert client.post(path, data={"action": "approve", "reason": "ok"}).status_code == 200
    for again in (client.get(path), client.post(path, data={"action": "reject", "reason": "changed my mind"})):
        assert again.status_code == 410
        assert re.search(r"already used, on \d{4}-\d\d-\d\d \d\d:\d\d UTC", again.text)
    assert item(settings, gate_id).status == "approved"
    refusals = [e for e in audit(settings, gate_id) if e.action == "link_refused"]
    assert len(refusals) == 1 and refusals[0].detail["why"] == "used"  # the POST; a look (GET) is not audited


def test_an_expired_link_is_refused(client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings)
    token = links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup", hours=1,
                             now=datetime.now(UTC) - timedelta(hours=2))
    for response in (client.get(path_of(token)), client.post(path_of(token), data={"action": "approve",
                                                                                     "reason": "late"})):
        assert response.status_code == 410 and "this link expired on" in response.text
    assert item(settings, gate_id).status == "open" and link_row(settings, gate_id).used_at is None


def test_a_changed_cut_or_foreign_link_is_not_valid_and_the_token_is_never_logged(
        client: TestClient, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    gate_id, other_gate = gate(settings), gate(settings)
    token = links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup")
    payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    moved = base64.urlsafe_b64encode(json.dumps({**claims, "i": other_gate}).encode()).rstrip(b"=").decode()
    later = base64.urlsafe_b64encode(json.dumps({**claims, "e": claims["e"] + 86_400}).encode()).rstrip(b"=").decode()
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    elsewhere = Settings(home=tmp_path / "another-console", ops_database_url=settings.ops_database_url)
    foreign = links.issue_link(elsewhere, gate_id, approver=APPROVER, created_by="sup")  # another console's key
    caplog.set_level(logging.INFO, logger="bpo.review.links")
    for bad in (f"{payload}.{flipped}", f"{moved}.{signature}", f"{later}.{signature}", token[:-5], payload,
                "not-a-token", foreign):
        for response in (client.get(path_of(bad)), client.post(path_of(bad), data={"action": "approve",
                                                                                    "reason": "ok"})):
            assert response.status_code == 404 and "this link is not valid" in response.text, bad
    assert item(settings, gate_id).status == "open" and item(settings, other_gate).status == "open"
    assert not [e for e in audit(settings, other_gate) if e.action.startswith("link_used")]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "gate link refused (invalid)" in logged and signature not in logged and payload not in logged
    assert client.post(path_of(token), data={"action": "approve", "reason": "ok"}).status_code == 200  # the real one


def test_only_an_open_gate_can_be_linked_and_a_link_to_a_gate_decided_since_is_refused(
        client: TestClient, settings: Settings, boss: tuple[str, dict[str, str]]) -> None:
    _, token_header = boss
    url = settings.ops_database_url or ""
    run_id = str(uuid.uuid4())
    store(url, [make_item(run_id, 1)])
    record_id = review.list_items(settings, flow_run_id=run_id)[0].id
    refused = client.post(f"/api/items/{record_id}/link", json={"approver": APPROVER}, headers=token_header)
    assert refused.status_code == 422 and "only a gate" in refused.json()["detail"]
    with pytest.raises(review.ReviewError, match="only a gate"):
        links.issue_link(settings, record_id, approver=APPROVER, created_by="sup")
    for hours in (0, -1, links.MAX_HOURS + 1):
        assert client.post(f"/api/items/{gate(settings)}/link", json={"approver": APPROVER, "hours": hours},
                           headers=token_header).status_code == 422
    with pytest.raises(review.ReviewError, match="at most 720 hours"):
        links.issue_link(settings, gate(settings), approver=APPROVER, created_by="sup", hours=0)

    gate_id = gate(settings)
    path = path_of(links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup"))
    review.resolve(settings, gate_id, actor="bob", approve=False, reason="stopped by the client")
    response = client.get(path)
    assert response.status_code == 409 and "the gate is already rejected by bob" in response.text
    assert client.post(path, data={"action": "approve", "reason": "ok"}).status_code == 409
    assert item(settings, gate_id).decided_by == "bob"
    assert client.post(f"/api/items/{gate_id}/link", json={"approver": APPROVER},
                       headers=token_header).status_code == 409
    agent = f"agent-{uuid.uuid4().hex[:6]}"
    users.add_user(settings, agent, PASSWORD, "agent")
    as_agent = {"Authorization": f"Bearer {users.issue_token(settings, agent)[1]}"}
    assert client.post(f"/api/items/{gate(settings)}/link", json={"approver": APPROVER},
                       headers=as_agent).status_code == 403


def test_two_answers_of_one_link_at_once_give_exactly_one_decision(client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings)
    path = path_of(links.issue_link(settings, gate_id, approver=APPROVER, created_by="sup"))
    start = threading.Barrier(2)
    statuses: dict[str, int] = {}

    def answer(action: str) -> None:
        start.wait()
        statuses[action] = client.post(path, data={"action": action, "reason": f"{action} it"}).status_code

    threads = [threading.Thread(target=answer, args=(a,)) for a in ("approve", "reject")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(statuses.values()) == [200, 410]
    winner = next(a for a, code in statuses.items() if code == 200)
    actions = [e.action for e in audit(settings, gate_id)]
    assert actions.count("link_used") == 1 and actions.count("approved") + actions.count("rejected") == 1
    assert item(settings, gate_id).status == {"approve": "approved", "reject": "rejected"}[winner]


def test_a_link_outlives_a_console_restart_and_its_key_is_private(
        client: TestClient, settings: Settings, boss: tuple[str, dict[str, str]]) -> None:
    gate_id = gate(settings)
    _, token_header = boss
    url = client.post(f"/api/items/{gate_id}/link", json={"approver": APPROVER},
                      headers=token_header).json()["url"]
    key = settings.home / "link.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    restarted = Settings(home=settings.home, ops_database_url=settings.ops_database_url)
    with TestClient(create_app(restarted), base_url="http://127.0.0.1") as again:
        path = url.removeprefix("http://127.0.0.1")
        assert again.get(path).status_code == 200
        assert again.post(path, data={"action": "approve", "reason": "ok"}).status_code == 200
    assert item(settings, gate_id).status == "approved"
    os.chmod(key, 0o644)
    with pytest.raises(review.ReviewError, match="can be read by others"):
        links.issue_link(settings, gate(settings), approver=APPROVER, created_by="sup")


def test_bpo_link_secret_signs_links_when_set_and_a_weak_one_is_refused(settings: Settings) -> None:
    secret = "s" * 16 + uuid.uuid4().hex
    signed = Settings(home=settings.home, ops_database_url=settings.ops_database_url, link_secret=secret)
    token = links.issue_link(signed, gate(settings), approver=APPROVER, created_by="sup")
    assert links.open_link(signed, token)[0].approver == APPROVER
    assert not (settings.home / "link.key").exists()
    with pytest.raises(links.LinkRefused, match="not valid"):
        links.open_link(settings, token)  # the file key is another key
    for weak in ("changeme", "short"):
        with pytest.raises(ValidationError, match="BPO_LINK_SECRET"):
            Settings(link_secret=weak)


def test_the_gate_summary_and_the_approver_are_shown_inert(client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings, {"<script>alert(1)</script>": "<img src=x onerror=alert(2)>", "note": {"a": "</td>"}})
    path = path_of(links.issue_link(settings, gate_id, approver="<b>Eve</b>", created_by="sup"))
    page = client.get(path)
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img" not in page.text and "<b>Eve" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "&lt;b&gt;Eve&lt;/b&gt;" in page.text


def test_bpo_review_link_prints_a_working_url(client: TestClient, settings: Settings) -> None:
    gate_id = gate(settings)
    env = {"BPO_HOME": str(settings.home), "BPO_OPS_DATABASE_URL": settings.ops_database_url or ""}
    done = bpo("review", "link", str(gate_id), "--approver", APPROVER, "--hours", "2",
               "--console-url", "https://review.example/", "--as", "sup", env=env)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert url.startswith("https://review.example/gate/") and "works once" in done.stderr
    assert client.get(url.removeprefix("https://review.example")).status_code == 200  # same home, same key
