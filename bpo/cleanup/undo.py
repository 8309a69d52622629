"""``bpo cleanup undo RUN_ID``: put back every row a cleanup run changed, exactly, with a report.

The run's table, spec and connection (its name in ``BPO_CONNECTIONS``, or a URL without a password)
are read from the ops database; ``database`` names another connection to the same table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bpo.cleanup import apply as applying
from bpo.cleanup import source
from bpo.cleanup.plan import from_parquet
from bpo.cleanup.source import CleanupRefused
from bpo.cleanup.spec import load_cleanup_spec
from bpo.db.models import Run
from bpo.db.session import session_scope
from bpo.run import get_store
from bpo.runs import ACTIVE, sweep_dead_runs
from bpo.settings import Settings, get_settings


@dataclass
class UndoReport:
    run: str
    table: str
    restored: int = 0
    verified: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "table": self.table, "restored": self.restored, "verified": self.verified,
                "refused": self.refused}


def undo_run(flow_run_id: str, database: str | None = None, settings: Settings | None = None) -> UndoReport:
    settings = settings or get_settings()
    sweep_dead_runs(settings, flow_run_ids=[flow_run_id])  # a run whose process was killed has ended
    with session_scope(settings.ops_database_url or "") as s:
        run = s.get(Run, flow_run_id)
        if run is None or "cleanup_spec" not in (run.counts or {}):
            raise CleanupRefused(f"no cleanup run {flow_run_id!r} in the ops database")
        if run.status in ACTIVE:  # it may still be applying: undone at once, a chunk could be logged twice
            raise CleanupRefused(f"cleanup run {flow_run_id!r} is still {run.status.replace('_', ' ')}: undo it "
                                 "once it has ended (`bpo runs list` shows its status); nothing was changed")
        label, table, spec_path = run.batch.rsplit("/", 1)[0], run.counts["table"], run.counts["cleanup_spec"]
        plan_key = run.counts.get("plan")
    spec = load_cleanup_spec(spec_path)
    target = source.resolve(database or label, table, settings)  # a connection name, or a URL with no password
    engine = source.connect(target)
    try:
        checked = source.check(engine, target, spec)
        plan = from_parquet(get_store().get_bytes(plan_key)) if plan_key else []  # the rows' bodies
        done = applying.undo(engine, target, checked, settings.ops_database_url or "", flow_run_id, plan)
    finally:
        engine.dispose()
    return UndoReport(run=flow_run_id, table=table, restored=done.restored, verified=done.verified,
                      refused=done.refused)
