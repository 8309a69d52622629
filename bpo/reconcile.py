"""Reconciliation: where every record of every file ended, and the run's manifest.

Every input record ends in exactly one place: loaded, rejected by a reviewer, superseded (another
record of the batch with the same natural key was kept in its place) or quarantined. A run whose
counts do not balance fails loudly.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel

from bpo.intake import FileTaken
from bpo.routing import Routed
from bpo.run import RunContext, get_store, put_json
from bpo.store import StoredObject
from bpo.target import Decided, Passed


class FileCount(BaseModel):
    """One input file's records: how many came in and where each ended."""

    file: str
    status: str  # read | quarantined
    reason: str | None = None
    records_in: int
    loaded: int = 0
    rejected: int = 0
    superseded: int = 0
    quarantined: int = 0
    uncounted: bool = False  # a file quarantined whole whose records could not be counted

    @property
    def balanced(self) -> bool:
        return not self.uncounted and self.records_in == self.loaded + self.rejected + self.superseded \
            + self.quarantined


class Totals(BaseModel):
    files: int = 0
    files_quarantined: int = 0
    records_in: int = 0
    loaded: int = 0
    rejected: int = 0
    superseded: int = 0
    quarantined: int = 0
    reviewed: int = 0
    approved: int = 0
    straight_through: int = 0
    carried_over: int = 0  # decisions applied from an earlier run of the same content


class Reconciliation(BaseModel):
    files: list[FileCount]
    totals: Totals

    @property
    def balanced(self) -> bool:
        return all(f.balanced for f in self.files)

    @property
    def straight_through_rate(self) -> float:
        return self.totals.straight_through / self.totals.records_in if self.totals.records_in else 0.0

    @classmethod
    def of(cls, files: list[FileCount], **counts: int) -> Reconciliation:
        totals = Totals(files=len(files), files_quarantined=sum(f.status == "quarantined" for f in files),
                        **{k: sum(getattr(f, k) for f in files)
                           for k in ("records_in", "loaded", "rejected", "superseded", "quarantined")},
                        **counts)
        return cls(files=files, totals=totals)


def write_manifest(run: RunContext, objects: list[StoredObject], reconciliation: Reconciliation) -> str:
    """``manifest.json``: every object the run wrote (key, size, sha256) and the reconciliation; its URI."""
    store = get_store()
    manifest = {
        "flow_run_id": run.flow_run_id, "process": run.process, "batch": run.batch,
        "prefix": store.uri(run.prefix), "written_at": datetime.now(UTC).isoformat(),
        "objects": [o.__dict__ for o in objects],
        "reconciliation": {"balanced": reconciliation.balanced, **reconciliation.model_dump()},
    }
    put_json(store, run.key("manifest.json"), manifest)
    return store.uri(run.key("manifest.json"))


def reconcile(taken: list[FileTaken], routed: Routed, passed: Passed, decided: Decided) -> Reconciliation:
    """Where every record of every file of a data-entry batch ended."""
    files = [FileCount(
        file=f.name, status="quarantined" if f.quarantined else "read", reason=f.quarantined,
        records_in=f.records + f.bad_rows,
        loaded=passed.loaded.get(f.name, 0) + decided.loaded.get(f.name, 0),
        rejected=decided.rejected.get(f.name, 0),
        superseded=routed.superseded.get(f.name, 0) + decided.superseded.get(f.name, 0),
        quarantined=f.bad_rows) for f in taken]
    return Reconciliation.of(files, reviewed=routed.review, approved=decided.approved,
                             straight_through=routed.passed, carried_over=routed.carried_over)
