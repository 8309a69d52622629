"""Users of the console and the API: roles, groups, passwords, API tokens, sessions, refused sign-ins.

Passwords are hashed with argon2id (memory-hard, ``argon2-cffi``); tokens and session secrets are
random, shown once, and stored only as their sha256. Repeated failed sign-ins of one name are
slowed down: after ``FREE_FAILURES`` within ``FAILURE_WINDOW`` each further try must wait, doubling
up to ``MAX_WAIT``; every refusal is logged (the name tried and the address, never the password).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import ValidationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bpo.db.models import ApiToken, Membership, SignInFailure, Team, User, WebSession
from bpo.db.session import session_scope
from bpo.settings import Settings
from bpo.spec import NotifySpec

log = logging.getLogger("bpo.users")

ROLES = ("agent", "supervisor", "engineer")
TOKEN_PREFIX = "bpo_"
SESSION_HOURS = 12
FREE_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
MAX_WAIT = timedelta(minutes=5)
MIN_PASSWORD = 10
TOKEN_USE_GRANULARITY = timedelta(minutes=1)  # how precisely a token's last use is kept

_hasher = PasswordHasher()
# verified against when the name is unknown, so a wrong name takes as long as a wrong password
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user, token or password request that cannot be done; the message says why."""


class SignInRefused(UserError):
    """Wrong name or password, or too many failures: ``retry_after`` seconds to wait, if any."""

    def __init__(self, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Person:
    """Who is acting: what a request is authorized by."""

    id: int
    name: str
    role: str
    groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "engineer")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _ops(settings: Settings) -> str:
    assert settings.ops_database_url, "Settings fills in the ops database URL"
    return settings.ops_database_url


def _person(s: Session, user: User) -> Person:
    groups = s.scalars(select(Membership.group).where(Membership.user_id == user.id))
    return Person(user.id, user.name, user.role, frozenset(groups))


def add_user(settings: Settings, name: str, password: str, role: str, groups: list[str] | None = None) -> Person:
    """Create a user; refuse an unknown role, a taken name or a short password."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise UserError("a user name is 1-100 characters without spaces")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    try:
        with session_scope(_ops(settings)) as s:
            user = User(name=name, role=role, password_hash=_hasher.hash(password))
            s.add(user)
            s.flush()
            for group in dict.fromkeys(g.strip() for g in groups or [] if g.strip()):
                s.add(Membership(user_id=user.id, group=group))
            s.flush()
            return _person(s, user)
    except IntegrityError:
        raise UserError(f"user {name!r} exists already") from None


def set_groups(settings: Settings, name: str, groups: list[str]) -> Person:
    with session_scope(_ops(settings)) as s:
        user = _user(s, name)
        s.execute(delete(Membership).where(Membership.user_id == user.id))
        for group in dict.fromkeys(g.strip() for g in groups if g.strip()):
            s.add(Membership(user_id=user.id, group=group))
        s.flush()
        return _person(s, user)


def set_team(settings: Settings, group: str, *, webhook: str | None, email: str | None) -> Team:
    """Say where a group (team) is told of its new assignments and overdue items; None clears a target."""
    if not group.strip():
        raise UserError("name the group")
    try:
        target = NotifySpec(webhook=webhook or None, email=email or None)
    except ValidationError as exc:
        raise UserError("; ".join(str(e["msg"]).removeprefix("Value error, ")
                                  for e in exc.errors(include_input=False))) from None
    with session_scope(_ops(settings)) as s:
        team = s.get(Team, group) or Team(name=group)
        team.webhook, team.email = target.webhook, target.email
        s.add(team)
        return team


def list_teams(settings: Settings) -> list[Team]:
    with session_scope(_ops(settings)) as s:
        return list(s.scalars(select(Team).order_by(Team.name)))


def list_users(settings: Settings) -> list[Person]:
    with session_scope(_ops(settings)) as s:
        return [_person(s, u) for u in s.scalars(select(User).where(User.active.is_(True)).order_by(User.name))]


def get_person(settings: Settings, name: str) -> Person:
    with session_scope(_ops(settings)) as s:
        return _person(s, _user(s, name))


def _user(s: Session, name: str) -> User:
    user = s.scalar(select(User).where(User.name == name, User.active.is_(True)))
    if user is None:
        raise UserError(f"no user {name!r}")
    return user


def sign_in(settings: Settings, name: str, password: str, address: str = "", *,
            now: datetime | None = None) -> Person:
    """The user if ``password`` is theirs; else ``SignInRefused`` (logged, counted, slowed down)."""
    now = now or datetime.now(UTC)
    with session_scope(_ops(settings)) as s:
        wait = _wait(s, name, now)
        if wait:
            log.warning("sign-in refused (too many failures): name=%r address=%s", name[:100], address)
            raise SignInRefused(f"too many failed sign-ins; try again in {wait} s", retry_after=wait)
        user = s.scalar(select(User).where(User.name == name, User.active.is_(True)))
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
            ok = user is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or user is None:
            s.add(SignInFailure(name=name[:100], address=address[:64], at=now))
            s.commit()  # the failure counts, though the sign-in raises
            log.warning("sign-in failed: name=%r address=%s", name[:100], address)
            raise SignInRefused("wrong name or password")
        s.execute(delete(SignInFailure).where(SignInFailure.name == name))
        if _hasher.check_needs_rehash(user.password_hash):
            user.password_hash = _hasher.hash(password)
        return _person(s, user)


def _wait(s: Session, name: str, now: datetime) -> int:
    """Seconds the next try of ``name`` must wait: none for the first few failures, then doubling."""
    since = now - FAILURE_WINDOW
    failures = s.scalar(select(func.count()).select_from(SignInFailure).where(
        SignInFailure.name == name, SignInFailure.at >= since)) or 0
    if failures < FREE_FAILURES:
        return 0
    last = s.scalar(select(func.max(SignInFailure.at)).where(SignInFailure.name == name))
    assert last is not None
    if last.tzinfo is None:  # SQLite gives naive datetimes back
        last = last.replace(tzinfo=UTC)
    pause = min(timedelta(seconds=2 ** (failures - FREE_FAILURES + 1)), MAX_WAIT)  # 2 s, 4 s, 8 s …
    left = (last + pause - now).total_seconds()
    return max(0, int(left + 0.999))


def issue_token(settings: Settings, name: str, label: str = "") -> tuple[int, str]:
    """A new API token for ``name``: (its id, the token). The token is not kept; show it once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with session_scope(_ops(settings)) as s:
        user = _user(s, name)
        row = ApiToken(user_id=user.id, digest=_digest(token), label=label[:100])
        s.add(row)
        s.flush()
        return row.id, token


def revoke_token(settings: Settings, token_id: int) -> None:
    with session_scope(_ops(settings)) as s:
        done = s.execute(update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
                         .values(revoked_at=datetime.now(UTC)))
        if not getattr(done, "rowcount", 0):
            raise UserError(f"no live token {token_id}")


def list_tokens(settings: Settings, name: str) -> list[ApiToken]:
    with session_scope(_ops(settings)) as s:
        user = _user(s, name)
        return list(s.scalars(select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.id)))


def by_token(settings: Settings, token: str) -> Person | None:
    """The user a live API token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with session_scope(_ops(settings)) as s:
        row = s.scalar(select(ApiToken).where(ApiToken.digest == _digest(token), ApiToken.revoked_at.is_(None)))
        if row is None:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        now = datetime.now(UTC)
        last = row.last_used_at.replace(tzinfo=UTC) if row.last_used_at and not row.last_used_at.tzinfo \
            else row.last_used_at
        if last is None or now - last > TOKEN_USE_GRANULARITY:  # not a write on every request
            row.last_used_at = now
        return _person(s, user)


def start_session(settings: Settings, person: Person, *, hours: int = SESSION_HOURS) -> tuple[str, str]:
    """A new console session: (the cookie's secret, its CSRF token)."""
    secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with session_scope(_ops(settings)) as s:
        s.add(WebSession(digest=_digest(secret), user_id=person.id, csrf=csrf,
                         expires_at=datetime.now(UTC) + timedelta(hours=hours)))
    return secret, csrf


def by_session(settings: Settings, secret: str) -> tuple[Person, str] | None:
    """The user and CSRF token of a live session, or None (unknown, ended or expired)."""
    now = datetime.now(UTC)
    with session_scope(_ops(settings)) as s:
        row = s.get(WebSession, _digest(secret))
        if row is None or row.ended_at is not None:
            return None
        expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if expires <= now:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.active:
            return None
        return _person(s, user), row.csrf


def end_session(settings: Settings, secret: str) -> None:
    with session_scope(_ops(settings)) as s:
        s.execute(update(WebSession).where(WebSession.digest == _digest(secret), WebSession.ended_at.is_(None))
                  .values(ended_at=datetime.now(UTC)))
