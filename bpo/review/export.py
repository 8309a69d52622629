"""Review items as a file a supervisor opens: one row per item, one column per field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bpo.exports import write_table
from bpo.review.service import list_items
from bpo.settings import Settings

BEFORE = ["id", "process", "record", "status"]
AFTER = ["decision", "reason", "decided_by", "decided_at"]


def export_items(settings: Settings, path: Path, *, status: str | None = None, process: str | None = None) -> int:
    """Write the selected items (every status when ``status`` is None) to ``path`` (.csv or .xlsx); return how many."""
    items = list_items(settings, status=status, process=process, limit=None)
    fields = list(dict.fromkeys(name for item in items for name in item.proposed))
    taken = set(BEFORE) | set(AFTER)
    header = BEFORE + [f"field:{f}" if f in taken else f for f in fields] + AFTER
    rows: list[list[Any]] = [
        [item.id, item.process, item.record_key, item.status, *(item.proposed.get(f) for f in fields),
         item.decision, item.reason, item.decided_by, item.decided_at]
        for item in items]
    return write_table(path, header, rows)
