"""The ``pair`` kind: are two rows of a client table the same real entity? (a table cleanup's uncertain match)

The item holds both rows as standardized, the match model's probability and its explanation (the
waterfall of match weights, column by column) and the rest of the cluster the pair would join. The
agent answers same (approved), different (rejected: the cleanup keeps the two apart in later runs,
reading these decisions) or not sure, which decides nothing and sends the item to the supervisor.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bpo.db.models import ReviewItem
from bpo.review.kinds import Display, Outcome, item_row, register
from bpo.review.values import json_safe

Verdict = Literal["same", "different", "not_sure"]


class PairDecision(BaseModel):
    """Same entity, different entities, or not sure (the supervisor decides); a reason is optional."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    reason: str = ""

    @field_validator("reason")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return value.strip()


class WaterfallStep(BaseModel):
    """One comparison's contribution to the match weight: the level its values fell in, and its log2 Bayes factor."""

    model_config = ConfigDict(extra="allow")  # the model's own further figures (a term-frequency part) are kept

    column: str
    comparison: str = ""
    level: str = ""
    log2_bf: float


class Waterfall(BaseModel):
    """The model's explanation of a pair: the prior weight, each comparison's step, the final weight."""

    prior_weight: float
    steps: list[WaterfallStep] = Field(default_factory=list)
    match_weight: float
    match_probability: float = Field(ge=0.0, le=1.0)


class ClusterMember(BaseModel):
    key: str
    row: dict[str, Any]

    @field_validator("row")
    @classmethod
    def _cells(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {str(k): cell(v) for k, v in row.items()}


class PairSource(BaseModel):
    """What a pair item holds (its ``source``); rows' values are made JSON-safe when the item is built."""

    model_config = ConfigDict(extra="forbid")

    table: str
    key: str  # the table's primary key column
    left_key: str
    right_key: str
    left: dict[str, Any]
    right: dict[str, Any]
    match_probability: float = Field(ge=0.0, le=1.0)
    match_weight: float
    waterfall: Waterfall | None = None
    cluster: list[ClusterMember] = Field(default_factory=list)

    @field_validator("left", "right")
    @classmethod
    def _cells(cls, row: dict[str, Any]) -> dict[str, Any]:
        return {str(k): cell(v) for k, v in row.items()}

    @field_validator("match_weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("the match weight is a finite number")
        return value


def cell(value: Any) -> Any:
    """A row's value as the item's JSON holds it: numbers, text, booleans and None as they are, dates as ISO text."""
    value = json_safe(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def pair_item(*, flow_run_id: str, process: str, step: str, source: dict[str, Any], record_hash: str | None,
              due_at: datetime, on_timeout: Literal["escalate", "reject"], priority: int = 0) -> dict[str, Any]:
    """The row of a pair item for ``add_items``: ``source`` as ``PairSource`` reads it, keyed ``left|right``.

    ``process`` is the cleanup spec's name, whose ``review`` section gives the groups and due time.
    """
    checked = PairSource.model_validate(source)
    return item_row(PairKind.name, flow_run_id=flow_run_id, process=process, step=step,
                    record_key=f"{checked.left_key}|{checked.right_key}", record_hash=record_hash,
                    source=checked.model_dump(mode="json"), proposed={"verdict": "same"}, due_at=due_at,
                    on_timeout=on_timeout, priority=priority)


def columns_of(source: dict[str, Any]) -> list[str]:
    """The columns of both rows, in the left row's order then the right's own."""
    return list(dict.fromkeys([*(source.get("left") or {}), *(source.get("right") or {})]))


class PairKind:
    name: ClassVar[str] = "pair"
    decision: ClassVar[type[BaseModel]] = PairDecision

    def display(self, item: ReviewItem) -> Display:
        source = item.source
        left, right = source.get("left") or {}, source.get("right") or {}
        rows = [[column, _text(left.get(column)), _text(right.get(column)),
                 "=" if values_agree(left.get(column), right.get(column)) else "≠"]
                for column in columns_of(source)]
        probability = float(source.get("match_probability") or 0.0)
        others = [str(m.get("key")) for m in source.get("cluster") or []
                  if str(m.get("key")) not in (source.get("left_key"), source.get("right_key"))]
        notes = [f"match weight {float(source.get('match_weight') or 0.0):.2f}, probability {probability:.2f}"]
        if others:
            notes.append(f"the cluster also holds {source.get('key')} {', '.join(others)}")
        return Display(title=f"{source.get('table')} {source.get('left_key')} ~ {source.get('right_key')}",
                       columns=["", str(source.get("left_key")), str(source.get("right_key")), ""], rows=rows,
                       notes=notes, summary=f"same entity? p={probability:.2f}")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, PairDecision)
        audit = {"verdict": decision.verdict, "reason": decision.reason}
        reason = decision.reason or None
        if decision.verdict == "same":
            return Outcome("approved", decision={"verdict": "same"}, reason=reason, audit=audit)
        if decision.verdict == "different":
            return Outcome("rejected", decision={"verdict": "different"}, reason=reason, audit=audit)
        return Outcome("escalated", reason=decision.reason, audit=audit)


def values_agree(left: Any, right: Any) -> bool:
    """Whether two values agree as a reviewer reads them (text compared trimmed and case-folded)."""
    if isinstance(left, str) and isinstance(right, str):
        return left.strip().casefold() == right.strip().casefold()
    return bool(left == right)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


register(PairKind())
