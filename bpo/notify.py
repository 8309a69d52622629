"""Notifications: people told of new assignments and overdue items, by webhook or mail, never in the way.

An event writes one outbox row per target (``Notification``) in the transaction that caused it: an
assignment's, or the timeout sweep's. Delivery is apart from it (``deliver_due``: the console runs it
every few seconds, the ``review-timeouts`` flow after each sweep), so a slow or failing webhook never
holds up a decision. A failed delivery is retried with doubling waits, up to ``MAX_ATTEMPTS``, each
failure logged; every delivery takes a lease first, so two deliverers never send one message twice.

Targets: the process's ``review.notify`` (webhook and/or email), and the teams (``Team``) of the
groups concerned: for an assignment, the groups of the assignee that review the process; for an
overdue item, the process's review groups. A payload holds item ids, processes, steps, assignees and
due times — never a record's values, which are the client's data.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from bpo.db.models import Membership, Notification, ReviewItem, Team, User
from bpo.db.session import session_scope
from bpo.process_review import review_of
from bpo.settings import Settings

log = logging.getLogger("bpo.notify")

MAX_ATTEMPTS = 8
FIRST_WAIT = timedelta(seconds=30)
MAX_WAIT = timedelta(hours=1)
LEASE = timedelta(minutes=2)  # a delivery in progress; a deliverer that died gives it back after this
TIMEOUT = 10.0  # seconds, for a webhook's answer or a mail server's
LISTED = 100  # item ids a payload lists; the count says how many there were
CHUNK = 500  # ids bound in one IN (...)


@dataclass
class Delivered:
    sent: int = 0
    retrying: int = 0
    given_up: int = 0


def assigned(session: Session, item_ids: Sequence[int]) -> int:
    """Queue word of these items' assignment to whoever they are assigned to; return how many messages."""
    items = _items(session, item_ids)
    members: dict[str, set[str]] = {}
    for name, group in session.execute(select(User.name, Membership.group).join(
            Membership, Membership.user_id == User.id).where(User.name.in_({i.assignee for i in items if i.assignee}))):
        members.setdefault(name, set()).add(group)
    by_target: dict[tuple[str, str], list[ReviewItem]] = {}
    known: dict[tuple[str, str], set[tuple[str, str]]] = {}  # (process, assignee) -> targets, looked up once
    for item in items:
        if not item.assignee:
            continue
        if (item.process, item.assignee) not in known:
            groups = members.get(item.assignee, set())
            reviewing = _review_groups(item.process)
            known[item.process, item.assignee] = _targets(session, item.process,
                                                          groups & reviewing if reviewing else groups)
        for target in known[item.process, item.assignee]:
            by_target.setdefault(target, []).append(item)
    return _queue(session, "assigned", by_target)


def overdue(session: Session, item_ids: Sequence[int], action: str) -> int:
    """Queue word of items found past their due time, and what was done (``escalate`` or ``reject``)."""
    by_target: dict[tuple[str, str], list[ReviewItem]] = {}
    known: dict[str, set[tuple[str, str]]] = {}  # process -> targets, looked up once
    for item in _items(session, item_ids):
        if item.process not in known:
            known[item.process] = _targets(session, item.process, _review_groups(item.process))
        for target in known[item.process]:
            by_target.setdefault(target, []).append(item)
    return _queue(session, "overdue", by_target, action=action)


def _items(session: Session, item_ids: Sequence[int]) -> list[ReviewItem]:
    ids = sorted(set(item_ids))
    return [i for start in range(0, len(ids), CHUNK) for i in session.scalars(
        select(ReviewItem).where(ReviewItem.id.in_(ids[start:start + CHUNK])).order_by(ReviewItem.id))]


def _review_groups(process: str) -> set[str]:
    try:
        return set(review_of(process).groups)
    except (FileNotFoundError, ValueError):
        return set()


def _targets(session: Session, process: str, groups: set[str]) -> set[tuple[str, str]]:
    """(channel, target) pairs to tell: the process's own, and its groups' teams'."""
    found: set[tuple[str, str]] = set()
    try:
        own = review_of(process).notify
        found |= {("webhook", own.webhook)} if own.webhook else set()
        found |= {("email", own.email)} if own.email else set()
    except (FileNotFoundError, ValueError):
        pass
    if groups:
        for team in session.scalars(select(Team).where(Team.name.in_(sorted(groups)))):
            found |= {("webhook", team.webhook)} if team.webhook else set()
            found |= {("email", team.email)} if team.email else set()
    return found


def _queue(session: Session, event: str, by_target: dict[tuple[str, str], list[ReviewItem]], **extra: Any) -> int:
    for (channel, target), items in sorted(by_target.items()):
        session.add(Notification(event=event, channel=channel, target=target, payload={
            "event": event, **extra, "count": len(items),
            "items": [{"id": i.id, "process": i.process, "step": i.step, "kind": i.kind, "queue": i.queue,
                       "assignee": i.assignee, "due_at": i.due_at.isoformat(), "path": f"/items/{i.id}"}
                      for i in items[:LISTED]]}))
    return len(by_target)


def deliver_due(settings: Settings, *, now: datetime | None = None, limit: int = 50) -> Delivered:
    """Send the messages whose time has come; a failure is retried later, the last one given up and logged."""
    now = now or datetime.now(UTC)
    done = Delivered()
    with session_scope(settings.ops_database_url or "") as s:
        due = list(s.scalars(select(Notification.id).where(
            Notification.delivered_at.is_(None), Notification.failed_at.is_(None),
            Notification.next_attempt_at <= now).order_by(Notification.id).limit(limit)))
    for note_id in due:
        with session_scope(settings.ops_database_url or "") as s:
            leased = cast(CursorResult[Any], s.execute(update(Notification).where(
                Notification.id == note_id, Notification.delivered_at.is_(None), Notification.failed_at.is_(None),
                Notification.next_attempt_at <= now).values(next_attempt_at=now + LEASE))).rowcount == 1
            note = s.get(Notification, note_id) if leased else None
            if note is None:
                continue  # another deliverer has it
            event, channel, target, payload = note.event, note.channel, note.target, dict(note.payload)
            attempts = note.attempts + 1
        error = _send(settings, channel, target, event, payload)
        with session_scope(settings.ops_database_url or "") as s:
            values: dict[str, Any] = {"attempts": attempts, "last_error": error}
            if error is None:
                values["delivered_at"] = datetime.now(UTC)
                done.sent += 1
            elif attempts >= MAX_ATTEMPTS:
                values["failed_at"] = datetime.now(UTC)
                done.given_up += 1
                log.error("notification %d (%s to %s) given up after %d attempts: %s",
                          note_id, channel, where(target), attempts, error)
            else:
                values["next_attempt_at"] = datetime.now(UTC) + min(MAX_WAIT, FIRST_WAIT * 2 ** (attempts - 1))
                done.retrying += 1
                log.warning("notification %d (%s to %s) failed, attempt %d of %d, retried later: %s",
                            note_id, channel, where(target), attempts, MAX_ATTEMPTS, error)
            s.execute(update(Notification).where(Notification.id == note_id).values(**values))
    return done


def where(target: str) -> str:
    """A target as it may be logged: a webhook's scheme and host only (its path may hold a token)."""
    if "@" in target and "://" not in target:
        return target
    parts = urlsplit(target)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}"


def _send(settings: Settings, channel: str, target: str, event: str, payload: dict[str, Any]) -> str | None:
    """Deliver one message; None when it was taken, else why not (without the target's secret parts)."""
    try:
        if channel == "webhook":
            answer = httpx.post(target, json=payload, timeout=TIMEOUT, follow_redirects=False,
                                headers={"User-Agent": "nonvoice-bpo", "X-BPO-Event": event})
            return None if answer.is_success else f"HTTP {answer.status_code}"
        if channel == "email":
            _mail(settings, target, event, payload)
            return None
        return f"unknown channel {channel!r}"
    except (httpx.HTTPError, OSError, smtplib.SMTPException) as exc:
        return f"{type(exc).__name__}: {str(exc).replace(target, where(target))[:300]}"


def _mail(settings: Settings, to: str, event: str, payload: dict[str, Any]) -> None:
    if not settings.smtp_host:
        raise smtplib.SMTPException("no mail server: set BPO_SMTP_HOST (and BPO_SMTP_PORT)")
    message = EmailMessage()
    message["From"], message["To"] = settings.smtp_from, to
    what = {"assigned": "assigned", "overdue": f"overdue ({payload.get('action', '')})"}.get(event, event)
    message["Subject"] = f"[nonvoice-bpo] {payload['count']} review item(s) {what}"
    lines = [f"{payload['count']} review item(s) {what}:", ""]
    lines += [f"- item {i['id']}: {i['process']} / {i['step']} ({i['kind']}), assigned to {i['assignee'] or 'nobody'}, "
              f"due {i['due_at']} — {i['path']}" for i in payload["items"]]
    message.set_content("\n".join(lines))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user and settings.smtp_password:
            smtp.login(settings.smtp_user, settings.smtp_password.get_secret_value())
        smtp.send_message(message)
