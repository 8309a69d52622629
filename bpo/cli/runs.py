"""``bpo run``: run a process once against the stack, with a progress bar per stage."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import typer
from rich.table import Table

from bpo.cli.common import err, fail, out, run_app, runs_app, settings

STAGES = {"check_table": "check", "take_snapshot": "snapshot + standardize", "match_rows": "match",
          "ask_review": "review", "plan_changes": "plan + validate", "ask_gate": "gate",
          "apply_changes": "apply", "save_state": "save state", "publish_report": "report",
          "open_run": "open", "list_inputs": "list inputs", "take_in_file": "intake",
          "prepare_chunk": "normalize + validate", "validate_batch": "validate batch", "route_records": "route",
          "load_passed": "load", "load_decisions": "load decisions", "publish_run": "publish",
          "gather_sources": "gather", "extract_facts": "extract", "ask_candidates": "reconcile + review",
          "compile_facts": "compile + validate", "gate_status": "gate", "publish": "publish"}


@run_app.command("data-entry")
def run_data_entry(
    batch: str = typer.Argument(..., help="A folder, or an S3 prefix such as inbox/data-entry/<batch>/."),
    process: str = typer.Option("customer_onboarding", "--process", "-p", help="The process spec to apply."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the data-entry flow once on a batch; waits while review items are open."""
    from bpo.db.session import upgrade
    from bpo.pool import start_validator
    from bpo.spec import load_spec

    s = settings()
    try:
        load_spec(process)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    local = Path(batch)
    if not local.exists() and not batch.startswith(("s3://", "inbox/", s.s3_prefix + "/")):
        fail(f"batch {batch!r} is not a folder or an S3 prefix")
    if local.exists():
        batch = str(local.resolve())
    elif not batch.startswith("s3://") and not batch.startswith(s.s3_prefix + "/"):
        batch = f"{s.s3_prefix}/{batch}"
    start_validator(batch)  # a small batch's validation worker imports GX while this process imports Prefect
    upgrade(s.ops_database_url or "")
    result = run_flow_with_progress("data-entry", {"batch": batch, "process": process}, quiet=as_json)
    if as_json:
        out.print_json(json.dumps(result, default=str))
    _exit_without_teardown()


def _exit_without_teardown() -> None:
    """End the process now that the run is over and reported.

    The interpreter's own teardown, freeing the flow's libraries (Prefect, GX, pandas) object by
    object, takes longer than a small batch's whole run. The worker processes are ended first (idle
    now; multiprocessing's exit handler would wait for them forever), then the exit handlers run
    (Prefect's log and event workers drain, logging flushes), then the output streams are flushed.
    """
    import atexit

    from bpo.pool import end_workers

    end_workers()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_flow_with_progress(deployment: str, parameters: dict[str, Any], *, quiet: bool = False,
                           summary: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a deployment's flow in this process; show a progress bar per stage from the Prefect API while it runs.

    The flow is loaded from the entrypoint ``prefect.yaml`` declares for ``deployment``, as a worker would.
    """
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow
    from prefect.states import State

    from bpo.pool import warm_up_in_background
    from bpo.processes import load_flow

    flow = load_flow(deployment)
    warm_up_in_background(parameters.get("batch"))  # the worker processes start while the flow run is created
    s = settings()
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(flow, parameters=parameters)
    url = f"{s.prefect_ui_url}/runs/flow-run/{flow_run.id}"
    if not quiet:
        out.print(f"flow run [bold]{flow_run.name}[/bold]: {url}")
    # the flow runs in the main thread (Prefect's task timeouts need it); progress is watched beside it
    finished = threading.Event()
    watcher = threading.Thread(target=_watch, args=(flow_run.id, finished), kwargs={"quiet": quiet}, daemon=True)
    watcher.start()
    try:
        # a sync flow with return_type="state" returns its State; the stub gives the union of every case
        state = cast("State[Any]", run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state"))
    finally:
        finished.set()
        watcher.join(timeout=5)
    if not state.is_completed():
        fail(f"{_ended_message(str(flow_run.id), state)} — the run's log: {url}")
    result = state.result()
    if not quiet:
        (summary or print_summary)(result)
    return {"flow_run_id": str(flow_run.id), "url": url, **result}


def _ended_message(flow_run_id: str, state: Any) -> str:
    """The run's one short message, as its state hook wrote it to the ops database (or made from its state)."""
    from bpo import runs
    from bpo.db.models import Run
    from bpo.db.session import session_scope

    with session_scope(settings().ops_database_url or "") as s:
        row = s.get(Run, flow_run_id)
        if row is not None and row.message:
            return f"run {row.status}: {row.message}"
    try:
        exc = state.result(raise_on_failure=False)
    except BaseException as e:  # the result itself could not be read
        exc = e
    if isinstance(exc, BaseException):
        return f"run {state.type.value.lower()}: {runs.explain_failure(exc, settings())}"
    return f"run {state.type.value.lower()}"


def _watch(flow_run_id: Any, finished: threading.Event, *, quiet: bool) -> None:
    from prefect.client.orchestration import get_client
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bpo.db.session import session_scope
    from bpo.review import open_count

    s = settings()
    announced_pause = False
    draw = not quiet and sys.stderr.isatty()
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=not draw, transient=False) as progress:
        bars: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            while not finished.is_set():
                if draw:  # else (--json, or no terminal) only a pause is announced: the task runs are not read
                    _draw(client, flow_run_id, progress, bars)
                fr = client.read_flow_run(flow_run_id)
                if fr.state and fr.state.is_paused() and not announced_pause:
                    with session_scope(s.ops_database_url or "") as sess:
                        waiting = open_count(sess, str(flow_run_id), None)  # records, pairs, a gate …
                    msg = (f"waiting for review: {waiting} items open — resolve them with `bpo review list` / "
                           f"`bpo review resolve ID`; the run resumes when the last one is resolved")
                    if quiet:
                        err.print(msg)
                    else:
                        progress.console.print(f"[yellow]{msg}[/yellow]")
                    announced_pause = True
                elif fr.state and not fr.state.is_paused():
                    announced_pause = False
                finished.wait(timeout=0.5 if draw else 1.0)


def _draw(client: Any, flow_run_id: Any, progress: Any, bars: dict[str, Any]) -> None:
    """One bar per stage: how many of its task runs have ended, of how many so far."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    counts: dict[str, list[int]] = {}
    for tr in runs:
        task_name = tr.name.rsplit("-", 1)[0]  # task runs are named "<task>-<suffix>"
        stage = STAGES.get(task_name, task_name)
        done_total = counts.setdefault(stage, [0, 0])
        done_total[1] += 1
        done_total[0] += int(bool(tr.state and tr.state.is_final()))
    order = list(STAGES.values())
    for stage in sorted(counts, key=lambda st: order.index(st) if st in order else len(order)):
        done, total = counts[stage]
        if stage not in bars:
            bars[stage] = progress.add_task(stage, total=total)
        progress.update(bars[stage], completed=done, total=total)


def print_summary(result: dict[str, Any]) -> None:
    table = Table("records in", "loaded", "rejected", "quarantined", "reviewed", "straight-through",
                  "files quarantined")
    table.add_row(*(str(result.get(k)) for k in ("records_in", "loaded", "rejected", "quarantined", "reviewed")),
                  f"{result.get('straight_through_rate', 0):.1%}", str(result.get("files_quarantined")))
    out.print(table)
    out.print(f"manifest: {result.get('manifest')}")


@runs_app.command("list")
def runs_list(
    status: str | None = typer.Option(None, help="running, waiting_review, completed, failed, crashed, cancelled"),
    process: str | None = typer.Option(None, help="Only this process."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Runs, newest first, with how they ended and their counts; runs whose process died are marked first."""
    from dataclasses import asdict

    from bpo.db.session import upgrade
    from bpo.runs import list_runs

    upgrade(settings().ops_database_url or "")
    rows = list_runs(settings(), status=status, process=process)
    if as_json:
        out.print_json(json.dumps([asdict(r) for r in rows], default=str))
        return
    table = Table("run", "process", "batch", "status", "started (UTC)", "in", "loaded", "rejected", "open items",
                  "message")
    for r in rows:
        table.add_row(r.flow_run_id, r.process, r.batch, r.status, f"{r.started_at:%Y-%m-%d %H:%M}",
                      *("" if v is None else str(v) for v in (r.records_in, r.loaded, r.rejected)),
                      str(r.open_items), r.message or "")
    out.print(table, markup=False)
    out.print(f"{len(rows)} run(s)")


@runs_app.command("retry")
def runs_retry(
    run_id: str = typer.Argument(..., help="The flow run id of a failed, crashed or cancelled run."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run an ended run's batch again (same process and batch); its review items and decisions are taken over."""
    from bpo.db.session import upgrade
    from bpo.runs import RunError, retry_target

    upgrade(settings().ops_database_url or "")
    try:
        run = retry_target(settings(), run_id)
    except RunError as exc:
        fail(str(exc))
    result = run_flow_with_progress("data-entry", {"batch": run.batch, "process": run.process.replace("-", "_")},
                                    quiet=as_json)
    if as_json:
        out.print_json(json.dumps(result, default=str))
