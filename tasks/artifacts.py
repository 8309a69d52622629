"""Run bookkeeping as tasks: open the run, list its inputs, publish manifest and artifacts, clear the inbox."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from bpo import intake
from bpo import run as runs
from bpo.batches import BatchBusy, release_batch
from bpo.db.session import session_scope
from bpo.intake import Source
from bpo.reconcile import Reconciliation, write_manifest
from bpo.review import set_run_status
from bpo.run import RunContext, get_store
from bpo.settings import get_settings
from bpo.store import StoredObject


def _not_busy(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed open, except when another run holds the batch: that will not pass in seconds."""
    return not isinstance(state.result(raise_on_failure=False), BatchBusy)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60, retry_condition_fn=_not_busy)
def open_run(flow_run_id: str, process: str, spec: str, batch: str) -> RunContext:
    """Record the run in the ops database (once) and fix its S3 prefix."""
    return runs.open_run(flow_run_id, process, spec, batch)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600)
def list_inputs(run: RunContext) -> list[Source]:
    """The batch's files: a local folder's, or an S3 prefix's (in the artifacts bucket)."""
    return intake.list_inputs(run)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=300)
def publish_run(run: RunContext, objects: list[StoredObject], reconciliation: Reconciliation) -> dict[str, Any]:
    """Write ``manifest.json`` with the reconciliation, the Prefect artifacts, and close the run."""
    store = get_store()
    manifest = write_manifest(run, objects, reconciliation)
    totals, balanced = reconciliation.totals, reconciliation.balanced
    straight = reconciliation.straight_through_rate
    slug = run.process.lower()
    create_markdown_artifact(key=f"{slug}-summary", description="Run summary", markdown="\n".join([
        f"# {run.process}: batch `{run.batch}`",
        "",
        "| records in | loaded | rejected | superseded | quarantined | reviewed | straight-through |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {totals.records_in} | {totals.loaded} | {totals.rejected} | {totals.superseded} | {totals.quarantined} | "
        f"{totals.reviewed} | {straight:.1%} |",
        "",
        f"Reconciliation: {'balanced' if balanced else '**NOT balanced**'}. Artifacts: `{store.uri(run.prefix)}/`",
    ]))
    create_table_artifact(key=f"{slug}-files", table=[f.model_dump() for f in reconciliation.files],
                          description="Reconciliation per file")
    create_link_artifact(key=f"{slug}-manifest", link=manifest, description="Manifest of every object the run wrote")
    url = get_settings().ops_database_url or ""
    with session_scope(url) as s:
        set_run_status(s, run.flow_run_id, "completed" if balanced else "failed", **totals.model_dump())
    release_batch(url, flow_run_id=run.flow_run_id, process=run.spec, batch=run.batch)
    if not balanced:
        raise RuntimeError(f"reconciliation failed: {reconciliation.problem()}; see {manifest}")
    return {"manifest": manifest, "straight_through_rate": round(straight, 4), **totals.model_dump()}


@task(retries=2, retry_delay_seconds=2, timeout_seconds=300)
def clear_inbox(run: RunContext) -> int:
    """Remove a finished batch from the inbox (its files are kept under the run's ``raw/``)."""
    return runs.clear_inbox(run)
