"""What the console and the API show of an item: plain JSON-ready dicts, the same for both."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bpo.db.models import AuditEvent, ReviewItem
from bpo.review import kind_of
from bpo.review.values import json_safe

ENDED = {"failed", "crashed", "cancelled"}


def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo else t.replace(tzinfo=UTC)


def item_row(item: ReviewItem, run_status: str | None, *, now: datetime | None = None) -> dict[str, Any]:
    """An item as a queue line: where it stands, and whether its run has ended without it."""
    now = now or datetime.now(UTC)
    due = _aware(item.due_at)
    try:
        summary = kind_of(item).display(item).summary
    except Exception:  # an item of a kind this installation does not know is still listed  # noqa: BLE001
        summary = ""
    return {
        "id": item.id, "process": item.process, "step": item.step, "kind": item.kind, "record_key": item.record_key,
        "status": item.status, "queue": item.queue, "assignee": item.assignee, "priority": item.priority,
        "due_at": due.isoformat() if due else None, "overdue": bool(item.status == "open" and due and due < now),
        "on_timeout": item.on_timeout, "flow_run_id": item.flow_run_id, "run_status": run_status,
        "run_ended": run_status in ENDED, "summary": summary,
        "decided_by": item.decided_by, "created_at": item.created_at.isoformat() if item.created_at else None,
    }


def item_stored(item: ReviewItem, run_status: str | None) -> dict[str, Any]:
    """A queue line with what the item holds as stored: its source, failed checks, proposed values, decision."""
    decided = _aware(item.decided_at)
    return {**item_row(item, run_status), "source": item.source, "failed_checks": item.failed_checks,
            "proposed": item.proposed, "decision": item.decision, "reason": item.reason,
            "decided_at": decided.isoformat() if decided else None}


def item_detail(item: ReviewItem, run_status: str | None) -> dict[str, Any]:
    """Everything an agent needs to decide: the source beside the fields, each failed check on its field."""
    display = kind_of(item).display(item)
    checks: dict[str, list[dict[str, str]]] = {}
    for c in item.failed_checks:
        checks.setdefault(str(c.get("field", "")), []).append({"check": str(c.get("check", "")),
                                                              "reason": str(c.get("reason", ""))})
    source = item.source or {}
    raw = source.get("values") or {}
    # four-eyes: the second approver is shown the values the first approved, to approve as they are
    first_set = (item.first_approval or {}).get("set") or {} if item.status == "open" else {}
    fields = [{"name": name, "raw": json_safe(raw.get(name)), "proposed": json_safe(first_set.get(name, value)),
               "checks": checks.get(name, [])} for name, value in (item.proposed or {}).items()]
    return {**item_row(item, run_status), "source": {k: json_safe(v) for k, v in source.items() if k != "values"},
            "raw": {k: json_safe(v) for k, v in raw.items()}, "fields": fields,
            "checks": [{"field": f, **c} for f, cs in checks.items() for c in cs],
            "decision": item.decision, "reason": item.reason, "first_approval": item.first_approval,
            "display": {"title": display.title, "columns": display.columns, "rows": display.rows,
                        "notes": display.notes}}


def audit_row(e: AuditEvent) -> dict[str, Any]:
    at = _aware(e.at)
    return {"id": e.id, "at": at.isoformat() if at else None, "actor": e.actor, "action": e.action,
            "item_id": e.item_id, "flow_run_id": e.flow_run_id, "detail": e.detail}
