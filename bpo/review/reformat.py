"""The ``reformat`` kind: a value change the cleanup proposes that is more than a reformat, for a person to accept.

Standardizing marks a proposal safe when it only rewrites the same value (case, spacing, E.164, ISO
dates); those apply on their own. The others change what the value says — a phone's extension dropped,
letters of a vanity number read as digits — and wait for a person: one item per row, with the row's
proposed changes column by column. Approved, the changes apply with the run's change set (and are undone
with it); rejected, the row keeps its values. The decision carries over to later runs of the cleanup
while the row and its proposals stay the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bpo.db.models import ReviewItem
from bpo.review.kinds import Display, Outcome, item_row, register
from bpo.review.pair import cell


class ReformatDecision(BaseModel):
    """Accept the proposed values (approve) or keep the row as it is (reject); a reason is optional."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str = ""

    @field_validator("reason", mode="before")
    @classmethod
    def _trimmed(cls, value: object) -> object:
        return "" if value is None else value.strip() if isinstance(value, str) else value


class Proposed(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str
    old: str
    new: str


class ReformatSource(BaseModel):
    """What a reformat item holds (its ``source``): the row as read and its proposed changes."""

    model_config = ConfigDict(extra="forbid")

    table: str
    key: str  # the table's primary key column
    row_key: str
    row: dict[str, Any]
    changes: list[Proposed] = Field(min_length=1)

    @field_validator("row")
    @classmethod
    def _cells(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {str(k): cell(v) for k, v in row.items()}


def reformat_item(*, flow_run_id: str, process: str, step: str, source: dict[str, Any], record_hash: str | None,
                  due_at: datetime, on_timeout: Literal["escalate", "reject"], priority: int = 0) -> dict[str, Any]:
    """The row of a reformat item for ``add_items``: ``source`` as ``ReformatSource`` reads it, keyed by its row."""
    checked = ReformatSource.model_validate(source)
    return item_row(ReformatKind.name, flow_run_id=flow_run_id, process=process, step=step,
                    record_key=checked.row_key, record_hash=record_hash, source=checked.model_dump(mode="json"),
                    proposed={c.column: c.new for c in checked.changes}, due_at=due_at, on_timeout=on_timeout,
                    priority=priority)


class ReformatKind:
    name: ClassVar[str] = "reformat"
    decision: ClassVar[type[BaseModel]] = ReformatDecision

    def display(self, item: ReviewItem) -> Display:
        source = item.source
        proposed = {c["column"]: c["new"] for c in source.get("changes") or []}
        row = source.get("row") or {}
        rows = [[column, _text(value), proposed.get(column, ""), "→" if column in proposed else ""]
                for column, value in row.items()]
        rows += [[column, "", new, "→"] for column, new in proposed.items() if column not in row]
        return Display(title=f"{source.get('table')} {source.get('key')}={source.get('row_key')}",
                       columns=["", "now", "proposed", ""], rows=rows,
                       notes=["more than a reformat: approve to write the proposed values, reject to keep the row"],
                       summary=f"change {', '.join(proposed)}?")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, ReformatDecision)
        status: Literal["approved", "rejected"] = "approved" if decision.approve else "rejected"
        return Outcome(status, decision={"approve": decision.approve}, reason=decision.reason or None,
                       audit={"approve": decision.approve, "reason": decision.reason})


def _text(value: Any) -> str:
    return "" if value is None else str(value)


register(ReformatKind())
