"""Who a console or API request comes from, and what they may do.

A request is authenticated by an API token (``Authorization: Bearer bpo_…``, for the CLI and
scripts) or by the console's session cookie. A state-changing request on a session must carry the
session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``); a token request needs none
(no browser sends it on its own).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from functools import lru_cache

from fastapi import HTTPException, Request

from bpo import users
from bpo.process_review import review_of
from bpo.settings import Settings
from bpo.users import Person

COOKIE = "bpo_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Caller:
    person: Person
    csrf: str | None  # the session's CSRF token; None for an API token


def settings_of(request: Request) -> Settings:
    s: Settings = request.app.state.settings
    return s


def caller_or_none(request: Request) -> Caller | None:
    settings = settings_of(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        person = users.by_token(settings, header[7:].strip())
        return Caller(person, None) if person else None
    secret = request.cookies.get(COOKIE)
    if secret:
        found = users.by_session(settings, secret)
        if found:
            return Caller(found[0], found[1])
    return None


async def caller(request: Request) -> Caller:
    """The signed-in caller; 401 without one; 403 for a session request without its CSRF token."""
    who = caller_or_none(request)
    if who is None:
        raise HTTPException(401, "sign in, or send an API token (Authorization: Bearer …)",
                            headers={"WWW-Authenticate": "Bearer"})
    if who.csrf is not None and request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token")
        if sent is None and request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")):
            sent = str((await request.form()).get("csrf", ""))
        if not sent or not hmac.compare_digest(sent, who.csrf):
            raise HTTPException(403, "the request lacks this session's CSRF token; reload the page")
    return who


@lru_cache(maxsize=256)
def groups_of(process: str) -> frozenset[str] | None:
    """The groups a process names for its review; None when its spec cannot be read (nobody but supervisors)."""
    try:
        return frozenset(review_of(process).groups)
    except (FileNotFoundError, ValueError):
        return None


def may_work(person: Person, process: str) -> bool:
    """Supervisors and engineers work on every process; an agent on those open to one of their groups."""
    if person.supervises:
        return True
    groups = groups_of(process)
    return groups is not None and (not groups or bool(groups & person.groups))


def must_work(person: Person, process: str) -> None:
    if not may_work(person, process):
        raise HTTPException(403, f"{person.name} is not in a group that reviews {process}")


def must_supervise(person: Person) -> None:
    if not person.supervises:
        raise HTTPException(403, "only a supervisor or an engineer may do this")


def visible_processes(person: Person, processes: list[str]) -> frozenset[str] | None:
    """The processes whose items ``person`` sees: None for every one (supervisors)."""
    if person.supervises:
        return None
    return frozenset(p for p in processes if may_work(person, p))
