"""Kinds of review item: what differs between a corrected record, a gate, a pair or a candidate answer.

The service stores, queues, claims, times out, audits and resumes every item the same way; for
everything that depends on what the item *is*, it asks the handler registered under the item's
``kind``: how the item is shown, what a decision holds, and how a decision is checked.
A new kind is a class with these three and a ``register`` call; the service does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, Protocol

from pydantic import BaseModel

from bpo.db.models import ReviewItem


class ReviewError(ValueError):
    """A review action that cannot be taken; the message says why."""


class InvalidDecision(ReviewError):
    """A decision that is not of the item's kind (a field missing, unknown or out of range); the message says which."""


class CorrectionRefused(ReviewError):
    """A decision that fails its kind's checks; ``failures`` lists them, the item stays open."""

    def __init__(self, failures: list[dict[str, str]]) -> None:
        self.failures = failures
        lines = "; ".join(f"{f['field']}: {f['reason']} ({f['check']})" for f in failures)
        super().__init__(f"correction refused, the record still fails: {lines}")


@dataclass(frozen=True)
class Display:
    """An item as a person reads it (CLI, console): a title, a table of rows and notes under it.

    Every string may hold client data; whoever renders it shows it literally.
    """

    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    summary: str = ""  # one line for a queue listing


@dataclass(frozen=True)
class Outcome:
    """A checked decision, as the service writes it.

    ``escalated`` is an answer that decides nothing (a pair's "not sure"): the service sends the item to
    the supervisor queue, still open (``escalate``), with ``reason``.
    """

    status: Literal["approved", "rejected", "escalated"]
    decision: dict[str, Any] | None = None  # the accepted values, stored on the item
    reason: str | None = None
    audit: dict[str, Any] = field(default_factory=dict)  # what the agent asked for, kept in the audit trail
    changed: bool = False  # the agent changed what automation proposed (what a quality sample measures)


class Kind(Protocol):
    """The handler of one kind of review item."""

    name: ClassVar[str]
    decision: ClassVar[type[BaseModel]]  # what a decision holds; validated from what the agent sends

    def display(self, item: ReviewItem) -> Display: ...

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        """Return the decision as it is accepted, or raise CorrectionRefused/ReviewError saying why not."""
        ...


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make ``kind`` the handler of items whose ``kind`` column is ``kind.name``."""
    _KINDS[kind.name] = kind
    return kind


def item_row(kind: str, *, flow_run_id: str, process: str, step: str, record_key: str, record_hash: str | None,
             source: dict[str, Any], proposed: dict[str, Any], due_at: datetime,
             on_timeout: Literal["escalate", "reject"], priority: int = 0) -> dict[str, Any]:
    """The row of an item of ``kind`` for ``add_items``, as each kind's builder fills it in (``source`` as stored,
    JSON-shaped). Only a record item has failed checks to show."""
    return {"flow_run_id": flow_run_id, "process": process, "step": step, "kind": kind, "record_key": record_key,
            "record_hash": record_hash, "source": source, "failed_checks": [], "proposed": proposed,
            "due_at": due_at, "on_timeout": on_timeout, "priority": priority}


def kind_of(item: ReviewItem) -> Kind:
    try:
        return _KINDS[item.kind]
    except KeyError:
        raise ReviewError(f"item {item.id} is of kind {item.kind!r}, which has no handler here; "
                          f"kinds are {', '.join(sorted(_KINDS))}") from None


def registered() -> list[str]:
    return sorted(_KINDS)
