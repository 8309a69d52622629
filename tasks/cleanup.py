"""Database-cleanup steps as tasks: retries, timeouts and persisted results around ``bpo.cleanup``.

Results are persisted (the stack's default), so a run resumed from suspension — which starts again
from the top — skips the snapshot, the match and the plan it already made.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from bpo.batches import release_batch
from bpo.cleanup import pipeline, report, source
from bpo.cleanup.pipeline import Matched, Planned
from bpo.cleanup.snapshot import Snapshot
from bpo.cleanup.source import Checked, Target
from bpo.cleanup.spec import CleanupSpec
from bpo.db.session import session_scope
from bpo.review import set_run_status
from bpo.run import RunContext, get_store
from bpo.settings import get_settings


@task(retries=1, retry_delay_seconds=2, timeout_seconds=120)
def check_table(target: Target, spec: CleanupSpec) -> Checked:
    """Refuse a table that does not fit the spec (no primary key, a missing column) before reading a row."""
    engine = source.connect(target)
    try:
        return source.check(engine, target, spec)
    finally:
        engine.dispose()


@task(retries=1, retry_delay_seconds=5, timeout_seconds=7200)
def take_snapshot(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec) -> Snapshot:
    """The whole table to S3 (Parquet, a content hash per row), standardized and profiled, chunk by chunk."""
    return pipeline.snapshot(run, target, checked, spec)


@task(retries=1, retry_delay_seconds=5, timeout_seconds=7200)
def match_rows(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec, snap: Snapshot,
               incremental: bool, retrain: bool) -> Matched:
    """Train the match model (or reuse the last run's) and score candidate pairs; the 'before' checks beside."""
    return pipeline.match(run, target, checked, spec, snap, incremental=incremental, retrain=retrain)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600)
def ask_review(run: RunContext, spec: CleanupSpec, snap: Snapshot, matched: Matched) -> int:
    """The uncertain pairs as ``pair`` review items, the changes that are more than a reformat as ``reformat`` ones."""
    return pipeline.ask_review(run, spec, snap, matched)


@task(retries=1, retry_delay_seconds=2, timeout_seconds=3600)
def plan_changes(run: RunContext, spec: CleanupSpec, checked: Checked, snap: Snapshot, matched: Matched) -> Planned:
    """Clusters (auto-merges and the pairs a person called the same), survivors, and the 'after' checks."""
    cluster_of, how = pipeline.final_clusters(run, spec, matched)
    return pipeline.plan_changes(run, spec, checked, snap, matched, cluster_of, how)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def ask_gate(run: RunContext, spec: CleanupSpec, snap: Snapshot, planned: Planned, report_key: str) -> int:
    """One gate for the whole change set (it touches more than the spec's gate_share of the rows)."""
    return pipeline.ask_gate(run, spec, snap, planned, report_key)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def gate_approved(run: RunContext) -> bool:
    return pipeline.gate_approved(run)


@task(retries=2, retry_delay_seconds=5, timeout_seconds=7200)
def apply_changes(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec, planned: Planned,
                  spec_path: str) -> dict[str, Any]:
    """Apply the change set once (logged first; each row's hash checked), re-pointing references."""
    return pipeline.apply_changes(run, target, checked, spec, planned, spec_path)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600)
def save_state(run: RunContext, target: Target, spec: CleanupSpec, snap: Snapshot, matched: Matched) -> None:
    """What the next incremental run compares the table with, and the model it reuses."""
    pipeline.save_state(run, target, spec, snap, matched)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=300)
def publish_report(run: RunContext, target: Target, spec: CleanupSpec, snap: Snapshot, matched: Matched,
                   planned: Planned, applied: dict[str, Any] | None, *, spec_path: str, dry_run: bool,
                   final: bool) -> dict[str, Any]:
    """The HTML report in S3 and the Prefect artifacts; with ``final``, the run is closed in the ops database."""
    store = get_store()
    clusters = pipeline.cluster_rows(store, planned)
    matching = {"model": "trained" if matched.trained else "reused", "candidate pairs": matched.candidates,
                "auto-merge pairs": matched.auto_pairs, "review pairs": matched.review_pairs,
                "values reformatted (safe)": snap.safe_proposals,
                "other changes proposed (a person accepts or keeps each)": snap.proposals - snap.safe_proposals,
                **({"new or changed rows": matched.new_rows} if matched.new_rows is not None else {})}
    html = report.render(table=target.table, run_id=run.flow_run_id, spec=spec.name, dry_run=dry_run,
                         before=planned.before, after=planned.after, problems=planned.problems,
                         counts=planned.counts, matching=matching, applied=applied, clusters=clusters,
                         checks_before=planned.checks_before, checks_after=planned.checks_after)
    report_obj = store.put_bytes(run.key("report.html"), html.encode(), "text/html; charset=utf-8")
    slug = spec.name.lower()
    create_markdown_artifact(key=f"{slug}-report", description="Cleanup report", markdown=report.markdown(
        table=target.table, dry_run=dry_run, before=planned.before, after=planned.after,
        counts=planned.counts, problems=planned.problems, report_uri=store.uri(report_obj.key)))
    create_table_artifact(key=f"{slug}-clusters", description="Merged clusters (survivor, merged rows, how)",
                          table=[{"survivor": s, "merged": m, "how": h} for s, m, h in clusters[:500]])
    create_link_artifact(key=f"{slug}-report-link", link=store.uri(report_obj.key), description="HTML report")
    summary = {"rows": snap.rows, "before": planned.before["shares"], "after": planned.after["shares"],
               "changes": planned.counts, "rows_touched": planned.rows_touched, "problems": planned.problems,
               "report": report_obj.key, "dry_run": dry_run, "checks_before": planned.checks_before,
               "checks_after": planned.checks_after, "pairs_for_review": matched.review_pairs,
               "changes_for_review": snap.proposals - snap.safe_proposals,
               "model": matching["model"], "flow_run_id": run.flow_run_id, "table": target.table,
               "cleanup_spec": spec_path, "plan": planned.plan_key, **(applied or {})}
    if final:
        url = get_settings().ops_database_url or ""
        with session_scope(url) as s:
            set_run_status(s, run.flow_run_id, "failed" if planned.problems else "completed", **{
                k: v for k, v in summary.items() if isinstance(v, int | float | str | bool) and k != "flow_run_id"})
        release_batch(url, flow_run_id=run.flow_run_id, process=run.spec, batch=run.batch)
    pipeline.clean_up_work(run) if final else None
    return summary
