"""The ``gate`` kind: a whole batch approved or rejected by a person before it goes on (e.g. before load)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator
from sqlalchemy.orm import Session

from bpo.db.models import ReviewItem
from bpo.review.kinds import Display, Outcome, item_row, register
from bpo.review.service import add_items

GATE_KEY = "gate"  # one gate per run and step


class GateDecision(BaseModel):
    """Let the batch through or stop it, and say why."""

    model_config = ConfigDict(extra="forbid")

    approve: bool
    reason: str

    @field_validator("reason")
    @classmethod
    def _says_why(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a gate decision needs a reason (--reason TEXT)")
        return value.strip()


class GateKind:
    name: ClassVar[str] = "gate"
    decision: ClassVar[type[BaseModel]] = GateDecision

    def display(self, item: ReviewItem) -> Display:
        summary = item.source.get("summary", {})
        rows = [[str(k), v if isinstance(v, str) else json.dumps(v, default=str)] for k, v in summary.items()]
        return Display(title=f"gate {item.step} of run {item.flow_run_id}", columns=["", "batch"], rows=rows,
                       summary="approve or reject the whole batch")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, GateDecision)
        status: Literal["approved", "rejected"] = "approved" if decision.approve else "rejected"
        return Outcome(status, decision={"approve": decision.approve}, reason=decision.reason,
                       audit={"reason": decision.reason})


def open_gate(session: Session, flow_run_id: str, process: str, step: str, summary: dict[str, Any],
              due_at: datetime, on_timeout: Literal["escalate", "reject"], *,
              priority: int = 0) -> int:
    """Ask a person to approve or reject the run's batch at ``step``; return how many gates were new (0 or 1).

    ``summary`` is what the person decides on (counts, files, where the report is), JSON-shaped.
    """
    return add_items(session, [item_row(GateKind.name, flow_run_id=flow_run_id, process=process, step=step,
                                        record_key=GATE_KEY, record_hash=None, source={"summary": summary},
                                        proposed={}, due_at=due_at, on_timeout=on_timeout, priority=priority)])


register(GateKind())
