"""The ``conflict`` kind: a row the cleanup was to change had changed in the database since its snapshot.

The cleanup's apply step left such a row as it is (nothing is overwritten); the item shows the row as
snapshotted, as it is now and as the cleanup proposed it, and a person acknowledges it with a reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from bpo.db.models import ReviewItem
from bpo.review.kinds import Display, Outcome, item_row, register
from bpo.review.pair import cell

VERSIONS = ("snapshot", "current", "proposed")


class ConflictDecision(BaseModel):
    """Acknowledge that the row was left as it is in the database, and say why that is right (or what follows)."""

    model_config = ConfigDict(extra="forbid")

    acknowledge: bool = True
    reason: str

    @field_validator("acknowledge")
    @classmethod
    def _acknowledged(cls, value: bool) -> bool:
        if not value:
            raise ValueError("a conflict is only acknowledged: the row stays as it is in the database; "
                             "to change it, run the cleanup again")
        return value

    @field_validator("reason")
    @classmethod
    def _says_why(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("acknowledging a conflict needs a reason (--reason TEXT)")
        return value.strip()


class ConflictSource(BaseModel):
    """What a conflict item holds (its ``source``)."""

    model_config = ConfigDict(extra="forbid")

    table: str
    key: str  # the table's primary key column
    row_key: str
    snapshot: dict[str, Any]
    current: dict[str, Any]
    proposed: dict[str, Any]

    @field_validator("snapshot", "current", "proposed")
    @classmethod
    def _cells(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {str(k): cell(v) for k, v in row.items()}


def conflict_item(*, flow_run_id: str, process: str, step: str, source: dict[str, Any], record_hash: str | None,
                  due_at: datetime, on_timeout: Literal["escalate", "reject"], priority: int = 0) -> dict[str, Any]:
    """The row of a conflict item for ``add_items``: ``source`` as ``ConflictSource`` reads it, keyed by its row."""
    checked = ConflictSource.model_validate(source)
    return item_row(ConflictKind.name, flow_run_id=flow_run_id, process=process, step=step,
                    record_key=checked.row_key, record_hash=record_hash, source=checked.model_dump(mode="json"),
                    proposed={}, due_at=due_at, on_timeout=on_timeout, priority=priority)


class ConflictKind:
    name: ClassVar[str] = "conflict"
    decision: ClassVar[type[BaseModel]] = ConflictDecision

    def display(self, item: ReviewItem) -> Display:
        source = item.source
        versions = [source.get(v) or {} for v in VERSIONS]
        columns = list(dict.fromkeys(c for version in versions for c in version))
        rows = [[column, *(_text(version.get(column)) for version in versions)] for column in columns]
        return Display(title=f"{source.get('table')} {source.get('key')}={source.get('row_key')}",
                       columns=["", *VERSIONS], rows=rows,
                       notes=["changed in the database since the snapshot: left as it is, not overwritten"],
                       summary="changed since the snapshot: acknowledge")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, ConflictDecision)
        return Outcome("approved", decision={"acknowledge": True}, reason=decision.reason,
                       audit={"acknowledge": True, "reason": decision.reason})


def _text(value: Any) -> str:
    return "" if value is None else str(value)


register(ConflictKind())
