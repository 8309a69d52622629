"""Gates answered through a signed link: a named approver without an account approves or rejects a gate.

A link's token is ``<payload>.<signature>``: the payload (URL-safe base64 of JSON) names the link's
nonce, the item and the expiry; the signature is HMAC-SHA256 of the payload under the link key
(``BPO_LINK_SECRET``, else a random key made once into ``<home>/link.key``, so links outlive a
restart of the console). The ``gate_links`` row holds the link's state: whom it is for, who made it,
and when and from where it was used.

Opening a link only reads it (mail scanners fetch links before the person does); answering uses it
up by one conditional UPDATE, so of two answers at once one decides and the other is told the link
was used. The decision itself goes through the review service, like any agent's. A refusal is
logged and, once the link is known to be genuine, audited; the token is never written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError
from sqlalchemy import CursorResult, update

from bpo.db.models import AuditEvent, GateLink, ReviewItem
from bpo.db.session import session_scope
from bpo.review.gate import GateDecision, GateKind
from bpo.review.kinds import ReviewError
from bpo.review.service import Resolution, resolve
from bpo.settings import Settings

log = logging.getLogger("bpo.review.links")

MAX_HOURS = 24 * 30
MAX_APPROVER = 80  # the actor "<approver> (signed link)" fits the audit's 100 characters
MAX_TOKEN = 512
MAX_USER_AGENT = 200
VIA_LINK = " (signed link)"
_DOMAIN = b"bpo-gate-link:"  # a link signature cannot be replayed as any other signature made with the key

Why = Literal["invalid", "expired", "used", "decided", "held"]


class LinkRefused(ReviewError):
    """A link that cannot be used now; ``why`` says which way, the message says it to the person."""

    def __init__(self, why: Why, message: str, link: GateLink | None = None, item: ReviewItem | None = None) -> None:
        super().__init__(message)
        self.why = why
        self.link = link
        self.item = item


@dataclass(frozen=True)
class _Claims:
    nonce: str
    item_id: int
    expires_at: datetime


def issue_link(settings: Settings, item_id: int, *, approver: str, created_by: str, hours: float = 48,
               now: datetime | None = None) -> str:
    """A token through which ``approver`` answers the open gate ``item_id`` once, within ``hours``."""
    approver = check_approver(approver)
    if not created_by.strip():
        raise ReviewError("say who makes the link (--as NAME)")
    if not 0 < hours <= MAX_HOURS:
        raise ReviewError(f"a link lasts more than 0 and at most {MAX_HOURS} hours, not {hours:g}")
    key = _key(settings)  # a key that cannot be read is told before any link is stored
    now = now or datetime.now(UTC)
    expires = (now + timedelta(hours=hours)).replace(microsecond=0)
    nonce = secrets.token_urlsafe(24)
    with session_scope(_ops(settings)) as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        if item.kind != GateKind.name:
            raise ReviewError(f"item {item_id} is a {item.kind} item; only a gate can be answered through a link")
        if item.status != "open":
            raise ReviewError(f"item {item_id} is already {item.status} (by {item.decided_by})")
        s.add(GateLink(nonce=nonce, item_id=item_id, approver=approver, created_by=created_by, created_at=now,
                       expires_at=expires))
        s.add(AuditEvent(actor=created_by, action="link_issued", item_id=item_id, flow_run_id=item.flow_run_id,
                         detail={"approver": approver, "expires_at": expires.isoformat(), "link": _link_id(nonce)}))
    payload = _b64(json.dumps({"n": nonce, "i": item_id, "e": int(expires.timestamp())},
                              separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, payload)}"


def check_approver(name: str) -> str:
    """The approver's name as it goes into the audit, or a ReviewError saying what is wrong with it."""
    name = name.strip()
    if not name:
        raise ReviewError("name the approver the link is for (--approver NAME)")
    if len(name) > MAX_APPROVER:
        raise ReviewError(f"an approver's name has at most {MAX_APPROVER} characters")
    if not name.isprintable():
        raise ReviewError("an approver's name holds no control characters")
    return name


def expiry_of(token: str) -> datetime:
    """When a token made by ``issue_link`` expires (read from it, not verified)."""
    return _claims_of(token.partition(".")[0]).expires_at


def open_link(settings: Settings, token: str, *, address: str = "",
              now: datetime | None = None) -> tuple[GateLink, ReviewItem]:
    """The link and its gate, if the link may be used now; else LinkRefused saying why. Nothing is used up."""
    try:
        return _verify(settings, token, now or datetime.now(UTC))
    except LinkRefused as exc:
        _log_refusal(exc, address)
        raise


def answer_link(settings: Settings, token: str, *, approve: bool, reason: str, address: str, user_agent: str,
                now: datetime | None = None) -> Resolution:
    """Decide the link's gate as its approver: use the link up (once), then resolve the gate through the service.

    LinkRefused when the link cannot be used (audited once it is known to be genuine); ReviewError for
    a decision without a reason, which leaves the link as it was.
    """
    now = now or datetime.now(UTC)
    user_agent = user_agent[:MAX_USER_AGENT]
    try:
        link, item = _verify(settings, token, now)
    except LinkRefused as exc:
        _refused(settings, exc, address, user_agent)
        raise
    try:
        decision = GateDecision(approve=approve, reason=reason)
    except ValidationError:
        raise ReviewError("say why you approve or reject the gate: a reason is needed") from None
    actor = link.approver + VIA_LINK
    seen = {"approver": link.approver, "from": address, "user_agent": user_agent, "created_by": link.created_by,
            "link": _link_id(link.nonce)}
    with session_scope(_ops(settings)) as s:
        # first statement of its transaction, so SQLite takes the write lock before anything is read
        won = cast(CursorResult[Any], s.execute(
            update(GateLink).where(GateLink.nonce == link.nonce, GateLink.used_at.is_(None))
            .values(used_at=now, used_from=f"{address} {user_agent}".strip())
            .execution_options(synchronize_session=False))).rowcount == 1
        if won:
            s.add(AuditEvent(actor=actor, action="link_used", item_id=item.id, flow_run_id=item.flow_run_id,
                             detail=seen))
    if not won:  # the same link was answered a moment before
        try:
            _verify(settings, token, now)
            refusal = LinkRefused("used", "this link was already used", link, item)
        except LinkRefused as exc:
            refusal = exc
        _refused(settings, refusal, address, user_agent)
        raise refusal
    try:
        return resolve(settings, item.id, actor=actor, decision=decision.model_dump())
    except ReviewError as exc:
        # decided or claimed by someone else since the link was checked: nothing was decided through
        # the link, so it is given back as it was
        with session_scope(_ops(settings)) as s:
            s.execute(update(GateLink).where(GateLink.nonce == link.nonce).values(used_at=None, used_from=None))
        refusal = LinkRefused("decided", f"the gate was not decided through this link: {exc}", link, item)
        _refused(settings, refusal, address, user_agent)
        raise refusal from None


def _verify(settings: Settings, token: str, now: datetime) -> tuple[GateLink, ReviewItem]:
    claims = _claims(settings, token)
    with session_scope(_ops(settings)) as s:
        link = s.get(GateLink, claims.nonce)
        item = s.get(ReviewItem, claims.item_id)
    if link is None or item is None or link.item_id != item.id:
        raise _invalid()
    if link.used_at is not None:
        raise LinkRefused("used", f"this link was already used, on {_when(link.used_at)}", link, item)
    if item.status != "open":
        raise LinkRefused("decided", f"the gate is already {item.status} by {item.decided_by}", link, item)
    expires = min(claims.expires_at, _aware(link.expires_at))
    if now >= expires:
        raise LinkRefused("expired", f"this link expired on {_when(expires)}; ask whoever sent it for a new one",
                          link, item)
    if item.assignee:
        raise LinkRefused("held", f"the gate is being worked on by {item.assignee}; try the link again later",
                          link, item)
    return link, item


def _claims(settings: Settings, token: str) -> _Claims:
    payload, dot, signature = token.partition(".")
    if not dot or not payload or not signature or len(token) > MAX_TOKEN:
        raise _invalid()
    if not hmac.compare_digest(signature.encode(), _sign(_key(settings), payload).encode()):
        raise _invalid()
    return _claims_of(payload)


def _claims_of(payload: str) -> _Claims:
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return _Claims(str(claims["n"]), int(claims["i"]), datetime.fromtimestamp(int(claims["e"]), UTC))
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        raise _invalid() from None


def _invalid() -> LinkRefused:
    return LinkRefused("invalid", "this link is not valid: it may have been cut short or changed; "
                                  "copy the whole link from the message, or ask for a new one")


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, _DOMAIN + payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _key(settings: Settings) -> bytes:
    """The link key: BPO_LINK_SECRET, else the one in <home>/link.key, made (private, once) on first use."""
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value().strip().encode()
    path = settings.home / "link.key"
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".link.key.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(draft, path)  # whole or not at all, never over another: two consoles starting at once share one key
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise ReviewError(f"{path} can be read by others: make it private (chmod 600 {path})")
    key = path.read_text().strip()
    if len(key) < 32:
        raise ReviewError(f"{path} holds no usable key; remove it and a new one is made "
                          f"(links made before stop working)")
    return key.encode()


def _refused(settings: Settings, exc: LinkRefused, address: str, user_agent: str) -> None:
    """Log a refused answer; audit it on the gate when the link is genuine (a forged one names no item)."""
    _log_refusal(exc, address)
    if exc.link is None or exc.item is None:
        return
    with session_scope(_ops(settings)) as s:
        s.add(AuditEvent(actor=exc.link.approver + VIA_LINK, action="link_refused", item_id=exc.item.id,
                         flow_run_id=exc.item.flow_run_id,
                         detail={"approver": exc.link.approver, "why": exc.why, "from": address,
                                 "user_agent": user_agent[:MAX_USER_AGENT], "link": _link_id(exc.link.nonce)}))


def _log_refusal(exc: LinkRefused, address: str) -> None:
    level = logging.WARNING if exc.why == "invalid" else logging.INFO
    log.log(level, "gate link refused (%s): item=%s address=%s", exc.why, exc.item.id if exc.item else "-", address)


def _link_id(nonce: str) -> str:
    """Names a link in the audit without what makes it work (the nonce is half the token)."""
    return hashlib.sha256(nonce.encode()).hexdigest()[:12]


def _when(t: datetime) -> str:
    return f"{_aware(t):%Y-%m-%d %H:%M} UTC"


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _ops(settings: Settings) -> str:
    assert settings.ops_database_url, "Settings fills in the ops database URL"
    return settings.ops_database_url
