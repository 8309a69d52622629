"""Database cleanup: a client table standardized, de-duplicated and applied reversibly.

Inputs: a SQLAlchemy URL (or a connection named in ``BPO_CONNECTIONS``), a table, and a cleanup spec
(``flows/specs/*_cleanup.yaml``: the key, each column's role, survivorship, thresholds, the tables that
reference this one, how merged rows leave). Outputs: the table cleaned in place (safe reformats and
merges, referencing rows re-pointed to the survivor), the change log in the ops database and S3 (``bpo
cleanup undo RUN_ID`` reverses it exactly), the snapshot, model, pairs, report and figures under the
run's S3 prefix. Uncertain pairs, and proposed changes that are more than a reformat, wait for a person;
a change set touching more than the spec's share of rows waits for one gate. Schedule: the
``database-cleanup`` deployment runs nightly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from bpo.cleanup.pipeline import GATE_STEP, REVIEW_STEP, needs_gate
from bpo.cleanup.source import CleanupRefused, resolve
from bpo.cleanup.spec import load_cleanup_spec
from bpo.pool import warm_up_in_background
from bpo.settings import get_settings
from tasks import runs as run_hooks
from tasks.artifacts import open_run
from tasks.cleanup import (
    apply_changes,
    ask_gate,
    ask_review,
    check_table,
    gate_approved,
    match_rows,
    plan_changes,
    publish_report,
    save_state,
    take_snapshot,
)
from tasks.review import await_review


def _run_name() -> str:
    params = flow_run.get_parameters()
    return f"cleanup-{params.get('table') or 'table'}"


@flow(name="database-cleanup", flow_run_name=_run_name, on_failure=[run_hooks.on_failure],
      on_crashed=[run_hooks.on_crashed], on_cancellation=[run_hooks.on_cancellation])
def database_cleanup(database: str, table: str | None = None, spec: str = "customers_cleanup",
                     dry_run: bool = False, incremental: bool = False, retrain: bool = False) -> dict[str, Any]:
    """Check → snapshot → standardize → match → review (pairs, unsafe changes) → plan → validate after → gate → apply
    → report."""
    # the worker imports what standardizing needs while the table is checked; Great Expectations only for the
    # 'before' checks, which run beside the match
    warm_up_in_background(preload=["pandas", "pyarrow.parquet", "boto3", "bpo.cleanup.snapshot"])
    cspec = load_cleanup_spec(spec)
    spec_path = str(Path(spec).resolve()) if Path(spec).suffix in (".yaml", ".yml") else spec
    name = table or cspec.table
    if not name:
        raise CleanupRefused(f"no table given, and the spec {cspec.name!r} names none")
    target = resolve(database, name, get_settings())
    checked = check_table(target, cspec)
    run = open_run(str(flow_run.get_id()), cspec.name, cspec.name, f"{target.label}/{target.table}")
    snap = take_snapshot(run, target, checked, cspec)
    matched = match_rows(run, target, checked, cspec, snap, incremental, retrain)
    if not dry_run:
        ask_review(run, cspec, snap, matched)
        # the uncertain pairs (same, different, or not sure: a supervisor) and the changes that are more than a
        # reformat (accept or keep the row)
        await_review(run, REVIEW_STEP)
    planned = plan_changes(run, cspec, checked, snap, matched)
    if dry_run or planned.problems:  # a dry run, or a projection failing its checks, changes nothing
        return publish_report(run, target, cspec, snap, matched, planned, None, spec_path=spec_path,
                              dry_run=dry_run, final=True)
    if needs_gate(cspec, snap, planned):
        draft = publish_report(run, target, cspec, snap, matched, planned, None, spec_path=spec_path, dry_run=False,
                               final=False)
        ask_gate(run, cspec, snap, planned, draft["report"])
        await_review(run, GATE_STEP)
        if not gate_approved(run):
            return publish_report(run, target, cspec, snap, matched, planned, {"gate": "rejected"},
                                  spec_path=spec_path, dry_run=False, final=True)
    applied = apply_changes(run, target, checked, cspec, planned, spec_path)
    save_state(run, target, cspec, snap, matched)
    return publish_report(run, target, cspec, snap, matched, planned, applied, spec_path=spec_path, dry_run=False,
                          final=True)
