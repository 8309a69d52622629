"""Notifications: assignments (least-loaded or by a supervisor) and overdue items told by webhook and mail.

Real delivery on loopback: an HTTP server in a thread (``http.server``) and an SMTP server
(``aiosmtpd``); a real SQLite ops database. Time is moved by passing ``now`` to the deliverer, so a
retry's wait is exercised without waiting it.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bpo import notify, review, users
from bpo.db.models import AuditEvent, Notification, ReviewItem, User
from bpo.db.session import session_scope, upgrade
from bpo.processes import SHIPPED_DIRS
from bpo.settings import Settings, get_settings
from bpo.stack import free_port
from tests.test_review import make_item, store

PASSWORD = "correct horse battery"
PROCESS = "notified_onboarding"


class Hook(ThreadingHTTPServer):
    """A webhook receiver: answers ``fail_first`` requests with 500, then 204; keeps every body it got."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first, self.bodies, self.lock = fail_first, list[dict[str, Any]](), threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hook.lock:
                    failing = hook.fail_first > 0
                    hook.fail_first -= 1
                    if not failing:
                        hook.bodies.append({"event": self.headers["X-BPO-Event"], **body})
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/secret-token-123"


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    yield server
    server.shutdown()


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """An ops database, and a process whose spec assigns to the least-loaded agent of group ``kyc``."""
    spec = yaml.safe_load((SHIPPED_DIRS[0] / "customer_onboarding.yaml").read_text())
    spec["name"] = PROCESS
    spec["review"].update({"groups": ["kyc"], "assign": "least_loaded"})
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / f"{PROCESS}.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("BPO_PROCESS_DIRS", ":".join(map(str, [tmp_path / "specs", *SHIPPED_DIRS])))
    get_settings.cache_clear()  # the process's settings are read once: read them again with the new folder
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    upgrade(url)
    yield Settings(ops_database_url=url)
    monkeypatch.undo()
    get_settings.cache_clear()


def _items(settings: Settings, rows: range, **kw: Any) -> list[int]:
    run_id = str(uuid.uuid4())
    with session_scope(settings.ops_database_url or "") as s:
        review.add_items(s, [make_item(run_id, r, process=PROCESS, **kw) for r in rows], assign_among=["kyc"])
        return list(s.scalars(select(ReviewItem.id).where(ReviewItem.flow_run_id == run_id).order_by(ReviewItem.id)))


def _assignees(settings: Settings, ids: list[int]) -> dict[int, str | None]:
    with session_scope(settings.ops_database_url or "") as s:
        return dict(s.execute(select(ReviewItem.id, ReviewItem.assignee).where(ReviewItem.id.in_(ids))).tuples().all())


def test_new_items_go_to_the_least_loaded_active_member_and_each_assignment_is_audited(settings: Settings) -> None:
    for name in ("ana", "ben", "cy"):
        users.add_user(settings, name, PASSWORD, "agent", ["kyc"])
    users.add_user(settings, "dora", PASSWORD, "agent", ["payments"])  # not of the process's group
    first = _items(settings, range(2, 5))
    assert sorted(set(_assignees(settings, first).values())) == ["ana", "ben", "cy"], "one each, spread"
    extra = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(extra, 1, process=PROCESS)])  # not assigned by rule
    with session_scope(settings.ops_database_url or "") as s:
        extra_id = s.scalars(select(ReviewItem.id).where(ReviewItem.flow_run_id == extra)).one()
    review.claim(settings, extra_id, "ana")  # ana holds one more, by hand

    second = _items(settings, range(10, 16))
    got = _assignees(settings, second)
    assert set(got.values()) <= {"ana", "ben", "cy"}, "only active members of the group, and every item"
    held = list(_assignees(settings, [*first, *second, extra_id]).values())
    loads = {m: held.count(m) for m in ("ana", "ben", "cy")}
    assert loads == {"ana": 4, "ben": 3, "cy": 3}, loads
    users.add_user(settings, "eve", PASSWORD, "agent", ["kyc"])
    with session_scope(settings.ops_database_url or "") as s:
        s.get(User, users.get_person(settings, "eve").id).active = False  # type: ignore[union-attr]
    assert "eve" not in _assignees(settings, _items(settings, range(20, 23))).values(), "inactive: never assigned"
    with session_scope(settings.ops_database_url or "") as s:
        audited = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "assigned",
                                                          AuditEvent.item_id.in_(second))))
    assert len(audited) == len(second) and all(e.detail["rule"] == "least_loaded" for e in audited)
    assert all(e.flow_run_id for e in audited)


def test_an_assignment_is_told_to_the_team_by_webhook_later_without_record_values(
        settings: Settings, hook: Hook) -> None:
    users.add_user(settings, "ana", PASSWORD, "agent", ["kyc"])
    users.set_team(settings, "kyc", webhook=hook.url, email=None)
    ids = _items(settings, range(2, 5), first_name="Zelda<script>")
    assert hook.bodies == [], "nothing is sent in the assignment's own transaction"

    done = notify.deliver_due(settings)
    assert (done.sent, done.retrying) == (1, 0)
    (body,) = hook.bodies
    assert body["event"] == "assigned" and body["count"] == 3
    assert sorted(i["id"] for i in body["items"]) == ids and {i["assignee"] for i in body["items"]} == {"ana"}
    assert "Zelda" not in json.dumps(body), "a notification never carries the client's record values"
    assert notify.deliver_due(settings).sent == 0, "delivered once"


def test_a_failing_webhook_is_retried_with_backoff_and_given_up_after_the_last_attempt(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    users.add_user(settings, "ana", PASSWORD, "agent", ["kyc"])
    flaky = Hook(fail_first=2)
    try:
        users.set_team(settings, "kyc", webhook=flaky.url, email=None)
        _items(settings, range(2, 3))
        now = datetime.now(UTC)
        with caplog.at_level(logging.WARNING, logger="bpo.notify"):
            assert notify.deliver_due(settings, now=now).retrying == 1
            assert notify.deliver_due(settings, now=now).retrying == 0, "not before its wait is over"
            assert notify.deliver_due(settings, now=now + timedelta(seconds=31)).retrying == 1
            assert notify.deliver_due(settings, now=now + timedelta(minutes=3)).sent == 1
        assert len(flaky.bodies) == 1
        assert "HTTP 500" in caplog.text and "secret-token-123" not in caplog.text, "a webhook's path is a secret"
    finally:
        flaky.shutdown()

    # a target that never answers is given up after MAX_ATTEMPTS, logged as an error
    users.set_team(settings, "kyc", webhook="http://127.0.0.1:9/hooks/x", email=None)
    _items(settings, range(5, 6))
    later = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="bpo.notify"):
        for _ in range(notify.MAX_ATTEMPTS):
            later += notify.MAX_WAIT + timedelta(seconds=1)
            notify.deliver_due(settings, now=later)
    with session_scope(settings.ops_database_url or "") as s:
        dead = s.scalars(select(Notification).where(Notification.target.like("%:9/%"))).one()
    assert dead.failed_at is not None and dead.attempts == notify.MAX_ATTEMPTS and dead.delivered_at is None
    assert "given up" in caplog.text


def test_two_deliverers_at_once_send_each_message_once(settings: Settings, hook: Hook) -> None:
    users.add_user(settings, "ana", PASSWORD, "agent", ["kyc"])
    users.set_team(settings, "kyc", webhook=hook.url, email=None)
    for rows in (range(2, 4), range(4, 6), range(6, 8), range(8, 10)):
        _items(settings, rows)  # four assignments, four messages
    threads = [threading.Thread(target=notify.deliver_due, args=(settings,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(hook.bodies) == 4


def test_overdue_items_are_told_by_mail_and_webhook_with_what_was_done(settings: Settings, hook: Hook) -> None:
    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
            received.append(envelope)
            return "250 OK"

    port = free_port()
    smtp = Controller(Inbox(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        users.set_team(settings, "kyc", webhook=hook.url, email="kyc-leads@example.com")
        ids = _items(settings, range(2, 4), due_at=datetime.now(UTC) - timedelta(hours=1))
        assert review.expire_overdue(settings)["escalated"] == 2
        mailing = settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port})
        assert notify.deliver_due(mailing).sent == 2
    finally:
        smtp.stop()
    (body,) = hook.bodies
    assert body["event"] == "overdue" and body["action"] == "escalate" and sorted(i["id"] for i in body["items"]) == ids
    (mail,) = received
    assert mail.rcpt_tos == ["kyc-leads@example.com"]
    text = mail.content.decode()
    assert "2 review item(s) overdue (escalate)" in text and f"/items/{ids[0]}" in text


def test_a_mail_target_without_a_mail_server_fails_clearly_and_is_retried(settings: Settings) -> None:
    users.add_user(settings, "ana", PASSWORD, "agent", ["kyc"])
    users.set_team(settings, "kyc", webhook=None, email="kyc-leads@example.com")
    _items(settings, range(2, 3))
    assert notify.deliver_due(settings).retrying == 1
    with session_scope(settings.ops_database_url or "") as s:
        note = s.scalars(select(Notification)).one()
    assert "BPO_SMTP_HOST" in (note.last_error or "")


def test_a_team_target_is_checked_when_it_is_set(settings: Settings) -> None:
    with pytest.raises(users.UserError, match="http"):
        users.set_team(settings, "kyc", webhook="ftp://example.com/x", email=None)
    with pytest.raises(users.UserError, match="address"):
        users.set_team(settings, "kyc", webhook=None, email="not an address")
