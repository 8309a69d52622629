"""Reconciliation: where every record of every file ended, and the run's manifest.

Every input record ends in exactly one place: loaded, rejected by a reviewer, superseded (another
record of the batch with the same natural key was kept in its place) or quarantined. A run whose
counts do not balance fails loudly, and so does one holding a file whose records could not be counted
(a damaged workbook quarantined whole, a link to a file outside the batch): it is never "balanced".
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
    notes: list[str] = []  # parts of the file holding no record that were passed over (an empty sheet)

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
    sampled: int = 0  # records that passed every check and were reviewed as quality samples
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

    def problem(self) -> str | None:
        """Why the reconciliation does not balance, in one message saying what to do; None when it does."""
        uncounted = [f"{f.file} ({f.reason})" for f in self.files if f.uncounted]
        off = [f.file for f in self.files if not f.uncounted and not f.balanced]
        problems = []
        if uncounted:
            problems.append(f"records of {len(uncounted)} file(s) quarantined whole could not be counted: "
                            f"{'; '.join(uncounted[:5])}; check them in the quarantine and re-run the batch")
        if off:
            problems.append(f"records in != loaded + rejected + superseded + quarantined for {off}")
        return "; ".join(problems) or None

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


def _of_file(counts: dict[str, int], file: FileTaken) -> int:
    """A per-source count summed over the file: a workbook's records carry their sheet ("book.xlsx#S2")."""
    return sum(counts.get(name, 0) for name in {file.name, *file.sources})


def reconcile(taken: list[FileTaken], routed: Routed, passed: Passed, decided: Decided) -> Reconciliation:
    """Where every record of every file of a data-entry batch ended."""
    files = [FileCount(
        file=f.name, status="quarantined" if f.quarantined else "read", reason=f.quarantined,
        records_in=f.records + f.bad_rows + f.held,
        loaded=_of_file(passed.loaded, f) + _of_file(decided.loaded, f),
        rejected=_of_file(decided.rejected, f),
        superseded=_of_file(routed.superseded, f) + _of_file(decided.superseded, f),
        quarantined=f.bad_rows + f.held, uncounted=f.uncounted, notes=f.notes) for f in taken]
    return Reconciliation.of(files, reviewed=routed.review, approved=decided.approved,
                             straight_through=routed.passed, sampled=routed.sampled,
                             carried_over=routed.carried_over)


def rejected_at_gate(taken: list[FileTaken], routed: Routed) -> Decided:
    """A batch whose gate was rejected: nothing is loaded, every record read is rejected."""
    rejected = {f.name: f.records - _of_file(routed.superseded, f) for f in taken if f.records}
    return Decided(loaded={}, rejected=rejected, superseded={}, approved=0, objects=[])
