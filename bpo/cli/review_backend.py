"""Where ``bpo review`` acts: the console's API with a token, or the ops database for an engineer's local use.

Both give the same JSON-ready dicts, so each command is written once: a queue line with what the
item holds (``item_stored``), an item as the console shows it (``item_detail``), a resolution and a
bulk resolution. Through the console every action is the token user's, under the console's rules
(groups, claims, four-eyes); the database path (``bpo.cli.review_db``) has the review service's
rules alone. This module imports neither the service nor the database: a command over the API
starts in a fraction of a second.
"""

from __future__ import annotations

from typing import Any, Protocol

from bpo.console_client import ConsoleClient, ConsoleRefused

Row = dict[str, Any]


class Refused(Exception):
    """An action the review service or the console refused, with why; ``failures`` when a correction still fails."""

    def __init__(self, message: str, failures: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class Backend(Protocol):
    """What a ``bpo review`` command asks of the place it acts on."""

    where: str  # said in a message: "the console at URL", "the ops database"

    def queue(self, *, status: str | None, process: str | None, run: str | None, queue: str | None,
              limit: int) -> tuple[list[Row], int]:
        """Up to ``limit`` items soonest due first (``status=None``: every status), and how many match."""
        ...

    def item(self, item_id: int) -> Row: ...

    def claim(self, item_id: int) -> Row: ...

    def unclaim(self, item_id: int) -> Row: ...

    def next(self) -> Row | None: ...

    def resolve(self, item_id: int, *, approve: bool | None, sets: dict[str, str], reason: str | None,
                decision: dict[str, Any] | None) -> Row: ...

    def open_ids(self, *, process: str | None, run: str | None) -> list[int]: ...

    def resolve_many(self, ids: list[int], *, approve: bool | None, reason: str | None,
                     decision: dict[str, Any] | None) -> Row: ...

    def close(self) -> None: ...


class ConsoleBackend:
    """The console's API as the token's user; its refusals (who holds an item, what still fails) as ``Refused``.

    A console that cannot be reached raises ``ConsoleUnreachable``: nothing falls back to the database,
    where the console's rules would not hold.
    """

    def __init__(self, client: ConsoleClient) -> None:
        self.client = client
        self.where = f"the console at {client.base_url}"

    def user(self) -> str:
        return str(self._ask(self.client.me)["name"])

    def _ask(self, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except ConsoleRefused as exc:
            raise Refused(str(exc), exc.failures) from None

    def queue(self, *, status: str | None, process: str | None, run: str | None, queue: str | None,
              limit: int) -> tuple[list[Row], int]:
        got = self._ask(self.client.items, status=status, process=process, run=run, queue=queue, per_page=limit,
                        full=True)
        return list(got["items"]), int(got["total"])

    def item(self, item_id: int) -> Row:
        found: Row = self._ask(self.client.item, item_id)
        return found

    def claim(self, item_id: int) -> Row:
        found: Row = self._ask(self.client.claim, item_id)
        return found

    def unclaim(self, item_id: int) -> Row:
        found: Row = self._ask(self.client.unclaim, item_id)
        return found

    def next(self) -> Row | None:
        found: Row | None = self._ask(self.client.next)
        return found

    def resolve(self, item_id: int, *, approve: bool | None, sets: dict[str, str], reason: str | None,
                decision: dict[str, Any] | None) -> Row:
        found: Row = self._ask(self.client.resolve, item_id, approve=approve, sets=sets, reason=reason,
                               decision=decision)
        return found

    def open_ids(self, *, process: str | None, run: str | None) -> list[int]:
        found: list[int] = self._ask(self.client.open_ids, process=process, run=run)
        return found

    def resolve_many(self, ids: list[int], *, approve: bool | None, reason: str | None,
                     decision: dict[str, Any] | None) -> Row:
        if decision is not None or approve is None:
            raise Refused("the console decides many items at once only by approving what passes or rejecting "
                          "with a reason; give a --decision one item at a time")
        if not ids:
            return {"decided": {}, "left_open": {}, "refused": {}, "resumed": []}
        found: Row = self._ask(self.client.bulk_resolve, ids, approve=approve, reason=reason)
        return found

    def close(self) -> None:
        self.client.close()
