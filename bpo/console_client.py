"""A client of the review console's JSON API (``/api/``): what ``bpo review`` and scripts call with a token.

Every request carries an API token (``Authorization: Bearer bpo_…``, from ``bpo users token NAME``) and
a timeout. A refusal comes back as ``ConsoleRefused`` with the console's own words (who holds an item,
which fields still fail); a console that does not answer as ``ConsoleUnreachable``. It imports neither
FastAPI nor the review service: a terminal agent's command starts in a fraction of a second.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpx

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
BULK_CHUNK = 1000  # ids per bulk request: each answers well within the timeout
PAGE = 500  # the most items the API gives per page


class ConsoleError(Exception):
    """The console could not do what was asked; the message says why."""


class ConsoleUnreachable(ConsoleError):
    """Nothing answers at the console's address (not started, wrong port or host)."""


class ConsoleRefused(ConsoleError):
    """The console answered with a refusal (4xx): ``status``, its message, and for a correction that
    still fails, ``failures`` (field, check, reason) of each check."""

    def __init__(self, status: int, message: str, failures: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.failures = failures or []


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _detail(response: httpx.Response) -> tuple[str, list[dict[str, str]]]:
    """The message and failures of an error answer, as FastAPI shapes them (a string, an object, a list)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return detail, []
    if isinstance(detail, dict):
        failures = [{k: str(v) for k, v in f.items()} for f in detail.get("failures") or [] if isinstance(f, dict)]
        return str(detail.get("message") or ""), failures
    if isinstance(detail, list):  # request validation: where and what, never the input (it may hold client values)
        parts = []
        for e in detail:
            if isinstance(e, dict):
                where = ".".join(str(p) for p in (e.get("loc") or [])[1:])
                parts.append(f"{where}: {e.get('msg', '')}" if where else str(e.get("msg", "")))
        return "; ".join(parts), []
    return f"{response.status_code} {response.reason_phrase}", []


class ConsoleClient:
    """The console's API at ``base_url`` (``http://127.0.0.1:8700``), as the owner of ``token``."""

    def __init__(self, base_url: str, token: str, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConsoleError(f"the console URL must be http(s)://HOST[:PORT], not {base_url!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            # a token is a password: it crosses a network only encrypted
            raise ConsoleError(f"the console URL {base_url} sends the token unencrypted to another host; use https")
        if not token.strip():
            raise ConsoleError("no API token given")
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token.strip()}", "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, *, params: dict[str, Any] | None = None,
              body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, "/api" + path, params=params, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ConsoleUnreachable(f"the console at {self.base_url} cannot be reached ({exc})") from None
        except httpx.TimeoutException:
            raise ConsoleError(f"the console at {self.base_url} did not answer {method} {path} in time; "
                               "what was asked may have been done: look before trying again") from None
        except httpx.HTTPError as exc:
            raise ConsoleError(f"the console at {self.base_url} failed to answer: {exc}") from None
        if response.status_code == 401:
            raise ConsoleRefused(401, f"the console at {self.base_url} does not accept this API token "
                                      "(unknown or revoked); `bpo users token NAME` issues a new one")
        if response.status_code >= 400:
            message, failures = _detail(response)
            if response.status_code >= 500:
                raise ConsoleError(f"the console at {self.base_url} failed ({response.status_code}) on "
                                   f"{method} {path}: {message}")
            raise ConsoleRefused(response.status_code, message, failures)
        try:
            return response.json()
        except ValueError:
            raise ConsoleError(f"the console at {self.base_url} answered {method} {path} with no JSON; "
                               "is that address the review console?") from None

    def me(self) -> dict[str, Any]:
        """The token's user: name, role, groups."""
        found: dict[str, Any] = self._call("GET", "/me")
        return found

    def items(self, *, status: str | None = "open", process: str | None = None, run: str | None = None,
              queue: str | None = None, sort: str = "due", page: int = 1, per_page: int = 50,
              full: bool = False) -> dict[str, Any]:
        """One page of the queue the user may see (``status=None``: every status): items, total, page."""
        params: dict[str, Any] = {"status": status or "", "sort": sort, "page": page, "per_page": per_page,
                                  "counts": "false"}
        for name, value in (("process", process), ("run", run), ("queue", queue)):
            if value:
                params[name] = value
        if full:
            params["full"] = "true"
        found: dict[str, Any] = self._call("GET", "/items", params=params)
        return found

    def open_ids(self, *, process: str | None = None, run: str | None = None) -> list[int]:
        """The ids of every open item the user may see (narrowed to a process or run), in id order."""
        ids: list[int] = []
        page = 1  # paged in id order: an item decided meanwhile does not shift the ones not yet read
        while True:
            got = self.items(process=process, run=run, page=page, per_page=PAGE, sort="id")
            ids.extend(int(i["id"]) for i in got["items"])
            if not got["items"] or len(ids) >= int(got["total"]):
                return list(dict.fromkeys(ids))
            page += 1

    def item(self, item_id: int) -> dict[str, Any]:
        """An item with the source beside its fields and each failed check on its field."""
        found: dict[str, Any] = self._call("GET", f"/items/{int(item_id)}")
        return found

    def claim(self, item_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", f"/items/{int(item_id)}/claim")
        return found

    def unclaim(self, item_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self._call("POST", f"/items/{int(item_id)}/unclaim")
        return found

    def next(self) -> dict[str, Any] | None:
        """Claim the next item for the user (one they hold, else the soonest due free one); None when none waits."""
        found: dict[str, Any] | None = self._call("POST", "/next").get("item")
        return found

    def resolve(self, item_id: int, *, approve: bool | None = None, sets: dict[str, str] | None = None,
                reason: str | None = None, keep: str | None = None,
                decision: dict[str, Any] | None = None) -> dict[str, Any]:
        """Decide an item the user holds: item_id, status, open_left, resumed, rerun."""
        body: dict[str, Any] = {"decision": decision} if decision is not None else {
            "approve": approve, "set": sets or {}, "reason": reason, "keep": keep}
        found: dict[str, Any] = self._call("POST", f"/items/{int(item_id)}/resolve", body=body)
        return found

    def bulk_resolve(self, ids: Iterable[int], *, approve: bool, reason: str | None = None) -> dict[str, Any]:
        """Approve what passes of ``ids`` (or reject them all with ``reason``), in requests of ``BULK_CHUNK``."""
        done: dict[str, Any] = {"decided": {}, "left_open": {}, "refused": {}, "resumed": []}
        wanted = list(dict.fromkeys(int(i) for i in ids))
        for start in range(0, len(wanted), BULK_CHUNK):
            got = self._call("POST", "/items/bulk-resolve", body={
                "ids": wanted[start:start + BULK_CHUNK], "approve": approve, "reason": reason})
            for key in ("decided", "left_open", "refused"):
                done[key].update(got[key])
            done["resumed"].extend(r for r in got["resumed"] if r not in done["resumed"])
        return done

    def audit(self, item_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", f"/items/{int(item_id)}/audit")
        return found
