"""``bpo``: the one command a person types — stack, runs, review, database."""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from bpo.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Prefect server and SeaweedFS on 127.0.0.1.")
review_app = typer.Typer(no_args_is_help=True, help="Review items: list, show, claim, resolve, expire.")
db_app = typer.Typer(no_args_is_help=True, help="The ops database.")
run_app = typer.Typer(no_args_is_help=True, help="Run a process once against the stack.")
app.add_typer(stack_app, name="stack")
app.add_typer(review_app, name="review")
app.add_typer(db_app, name="db")
app.add_typer(run_app, name="run")

out = Console()
err = Console(stderr=True)


def settings() -> Settings:
    from bpo.settings import get_settings

    return get_settings()


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.callback()
def main() -> None:
    """Point Prefect at the stack before anything imports it."""
    try:
        s = settings()
    except Exception as exc:  # a settings error is the user's to fix: say it plainly
        fail(str(exc))
    os.environ.setdefault("PREFECT_API_URL", s.prefect_api_url)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the run's own log lines go to the Prefect UI; the terminal shows progress and the summary
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


# --- stack ---

@stack_app.command("up")
def stack_up(worker: bool = typer.Option(False, "--worker", help="Also start a worker on the work pool.")) -> None:
    """Start the Prefect server and SeaweedFS (and a worker); a second `up` reports what runs."""
    from bpo import stack
    from bpo.db.session import upgrade
    from bpo.settings import Settings, get_settings

    s = settings()
    stack.ensure_stack_env(s)
    get_settings.cache_clear()
    s = Settings()
    os.environ["PREFECT_API_URL"] = s.prefect_api_url
    try:
        stack.stack_up(s, worker=False, say=out.print)
        upgrade(s.ops_database_url or "")
        stack.configure_prefect(s)
        if worker:
            stack.stack_up(s, worker=True, say=out.print)
    except stack.StackError as exc:
        fail(str(exc))
    _print_status(s)


@stack_app.command("down")
def stack_down() -> None:
    """Stop only what `bpo stack up` started."""
    from bpo import stack

    stack.stack_down(settings(), say=out.print)


@stack_app.command("status")
def stack_status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Each service, whether it runs, and its URL."""
    s = settings()
    if as_json:
        from bpo import stack

        out.print_json(json.dumps([st.__dict__ for st in stack.stack_status(s)]))
        return
    _print_status(s)


def _print_status(s: Settings) -> None:
    from bpo import stack

    table = Table("service", "state", "pid", "url")
    for st in stack.stack_status(s):
        table.add_row(st.name, "[green]running[/green]" if st.running else "stopped", str(st.pid or ""), st.url)
    out.print(table)


@app.command("deploy")
def deploy_all(project_dir: Path = typer.Option(Path("."), help="The folder holding prefect.yaml.")) -> None:
    """Create or update the deployments in prefect.yaml (with their schedules) on the stack."""
    from bpo import stack

    res = stack.deploy(settings(), project_dir)
    if res.returncode != 0:
        fail(f"prefect deploy failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    out.print("deployments are up to date (prefect.yaml)")


# --- database ---

@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the ops database to the newest migration."""
    from bpo.db.session import upgrade

    upgrade(settings().ops_database_url or "")
    out.print("ops database is up to date")


# --- runs ---

STAGES = {"open_run": "open", "list_inputs": "list inputs", "take_in_file": "intake",
          "prepare_chunk": "normalize + validate", "validate_batch": "validate batch", "route_records": "route",
          "load_records": "load", "publish_run": "publish"}


@run_app.command("data-entry")
def run_data_entry(
    batch: str = typer.Argument(..., help="A folder, or an S3 prefix such as inbox/data-entry/<batch>/."),
    process: str = typer.Option("customer_onboarding", "--process", "-p", help="The process spec to apply."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the data-entry flow once on a batch; waits while review items are open."""
    from bpo.db.session import upgrade
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
    upgrade(s.ops_database_url or "")
    result = run_flow_with_progress("data_entry", {"batch": batch, "process": process}, quiet=as_json)
    if as_json:
        out.print_json(json.dumps(result, default=str))


def run_flow_with_progress(flow_name: str, parameters: dict[str, Any], *, quiet: bool = False) -> dict[str, Any]:
    """Run a flow in this process; show a progress bar per stage from the Prefect API while it runs."""
    from importlib import import_module

    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow

    from bpo.pool import warm_up_in_background

    warm_up_in_background()  # the worker processes start while the flow run is created
    flow = getattr(import_module(f"flows.{flow_name}"), flow_name)
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
        state = run_flow(flow, flow_run=flow_run, parameters=parameters, return_type="state")
    finally:
        finished.set()
        watcher.join(timeout=5)
    if not state.is_completed():
        fail(f"run ended {state.type.value}: {state.message or ''} — see {url}")
    result = state.result()
    if not quiet:
        _print_summary(result)
    return {"flow_run_id": str(flow_run.id), "url": url, **result}


def _watch(flow_run_id: Any, finished: threading.Event, *, quiet: bool) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bpo.db.session import session_scope
    from bpo.review import open_count

    s = settings()
    announced_pause = False
    with Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, disable=quiet or not sys.stderr.isatty(), transient=False) as progress:
        bars: dict[str, Any] = {}
        with get_client(sync_client=True) as client:
            while not finished.is_set():
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
                fr = client.read_flow_run(flow_run_id)
                if fr.state and fr.state.is_paused() and not announced_pause:
                    with session_scope(s.ops_database_url or "") as sess:
                        waiting = open_count(sess, str(flow_run_id), "records")
                    msg = (f"waiting for review: {waiting} items open — resolve them with `bpo review list` / "
                           f"`bpo review resolve ID`; the run resumes when the last one is resolved")
                    if quiet:
                        err.print(msg)
                    else:
                        progress.console.print(f"[yellow]{msg}[/yellow]")
                    announced_pause = True
                elif fr.state and not fr.state.is_paused():
                    announced_pause = False
                finished.wait(timeout=0.5)


def _print_summary(result: dict[str, Any]) -> None:
    table = Table("records in", "loaded", "rejected", "quarantined", "reviewed", "straight-through",
                  "files quarantined")
    table.add_row(*(str(result.get(k)) for k in ("records_in", "loaded", "rejected", "quarantined", "reviewed")),
                  f"{result.get('straight_through_rate', 0):.1%}", str(result.get("files_quarantined")))
    out.print(table)
    out.print(f"manifest: {result.get('manifest')}")


# --- review ---

def _item_dict(item: Any) -> dict[str, Any]:
    keys = ("id", "flow_run_id", "process", "step", "kind", "record_key", "status", "queue", "assignee", "due_at",
            "on_timeout", "source", "failed_checks", "proposed", "decision", "reason", "decided_by", "decided_at")
    return {k: getattr(item, k) for k in keys}


@review_app.command("list")
def review_list(
    as_json: bool = typer.Option(False, "--json"),
    status: str = typer.Option("open", help="open, approved, rejected, or all"),
    process: str | None = typer.Option(None, help="Only this process."),
    run: str | None = typer.Option(None, "--run", help="Only this flow run id."),
    queue: str | None = typer.Option(None, help="default or supervisor"),
) -> None:
    """The review queue, soonest due first."""
    from bpo.review import list_items

    items = list_items(settings(), status=None if status == "all" else status, process=process, flow_run_id=run,
                       queue=queue)
    if as_json:
        out.print_json(json.dumps([_item_dict(i) for i in items], default=str))
        return
    table = Table("id", "process", "record", "checks", "status", "queue", "assignee", "due (UTC)")
    for i in items:
        checks = ", ".join(sorted({f"{c['field']}:{c['check'].removeprefix('expect_column_values_to_')}"
                                   for c in i.failed_checks}))
        table.add_row(str(i.id), i.process, i.record_key, checks, i.status, i.queue, i.assignee or "",
                      f"{i.due_at:%Y-%m-%d %H:%M}")
    out.print(table)
    out.print(f"{len(items)} item(s)")


@review_app.command("show")
def review_show(item_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One item: the source values beside the proposed ones, and the checks that failed."""
    from bpo.review import ReviewError, get_item

    try:
        item = get_item(settings(), item_id)
    except ReviewError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(_item_dict(item), default=str))
        return
    out.print(f"[bold]item {item.id}[/bold] · {item.process} · {item.record_key} · {item.status} · "
              f"due {item.due_at:%Y-%m-%d %H:%M} UTC · on timeout: {item.on_timeout}")
    failed = {c["field"] for c in item.failed_checks}
    table = Table("field", "source", "proposed", "")
    for field, value in item.proposed.items():
        mark = "[red]✗[/red]" if field in failed else ""
        table.add_row(field, str(item.source["values"].get(field, "") or ""), str(value or ""), mark)
    out.print(table)
    for c in item.failed_checks:
        out.print(f"  [red]{c['field']}[/red]: {c['reason']} ({c['check']})")
    if item.decision or item.reason:
        out.print(f"decision by {item.decided_by}: {item.decision or ''} {item.reason or ''}")


@review_app.command("claim")
def review_claim(item_id: int, actor: str = typer.Option(getpass.getuser(), "--as", help="Who claims it.")) -> None:
    """Take an item so no one else works on it."""
    from bpo.review import ReviewError, claim

    try:
        claim(settings(), item_id, actor)
    except ReviewError as exc:
        fail(str(exc))
    out.print(f"item {item_id} claimed by {actor}")


@review_app.command("resolve")
def review_resolve(
    item_id: int,
    approve: bool = typer.Option(False, "--approve", help="Accept the record (with --set corrections)."),
    reject: bool = typer.Option(False, "--reject", help="Reject the record (needs --reason)."),
    sets: list[str] = typer.Option([], "--set", help="field=value correction; repeatable."),
    reason: str | None = typer.Option(None, "--reason", help="Why the record is rejected."),
    actor: str = typer.Option(getpass.getuser(), "--as", help="Who decides."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Approve (corrections are validated again) or reject one item; the last one resumes the run."""
    from bpo.review import CorrectionRefused, ReviewError, resolve

    if approve == reject:
        fail("say --approve or --reject", 2)
    if reject and sets:
        fail("--set goes with --approve", 2)
    corrections: dict[str, str] = {}
    for pair in sets:
        field, sep, value = pair.partition("=")
        if not sep or not field.strip():
            fail(f"--set wants field=value, got {pair!r}", 2)
        corrections[field.strip()] = value
    try:
        done = resolve(settings(), item_id, approve=approve, actor=actor, sets=corrections, reason=reason)
    except CorrectionRefused as exc:
        if as_json:
            out.print_json(json.dumps({"item": item_id, "status": "refused", "failures": exc.failures}))
            raise typer.Exit(3) from None
        err.print(f"[red]refused:[/red] item {item_id} stays open; the corrected record still fails:")
        for f in exc.failures:
            err.print(f"  {f['field']}: {f['reason']} ({f['check']})")
        raise typer.Exit(3) from None
    except ReviewError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(done.__dict__))
        return
    out.print(f"item {item_id} {done.status}; {done.open_left} open in this run"
              + (" — run resumed" if done.resumed else ""))


@review_app.command("expire")
def review_expire() -> None:
    """Apply the declared timeout action to overdue items (escalate to supervisor, or reject)."""
    from bpo.review import expire_overdue

    out.print(expire_overdue(settings()))


# --- demo ---

@app.command("demo")
def demo(records: int = typer.Option(200, help="Records in the sample batch.")) -> None:
    """Drop a sample batch, run data entry on it, resolve its review items as an agent would, show where to look."""
    import re
    import subprocess
    from datetime import UTC, datetime

    from bpo.review import list_items
    from bpo.samples import write_batch

    s = settings()
    batch = (s.home / "demo" / f"batch-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    counts = write_batch(batch, n=records, review_fraction=0.03)
    out.print(f"sample batch: {batch} — {counts}")
    started = datetime.now(UTC)
    bpo = [sys.executable, "-m", "bpo.cli"]
    run = subprocess.Popen([*bpo, "run", "data-entry", str(batch), "--json"], stdout=subprocess.PIPE, text=True)
    resolved: set[int] = set()
    while run.poll() is None:
        for item in list_items(s, status="open"):
            # SQLite gives back naive datetimes; every time stored here is UTC
            created = item.created_at if item.created_at.tzinfo else item.created_at.replace(tzinfo=UTC)
            if item.id in resolved or created < started:
                continue
            checks = {c["check"] for c in item.failed_checks}
            raw_date = str(item.proposed.get("signup_date") or "")
            match = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", raw_date)
            if checks == {"ambiguous_date"} and match:
                # the agent looks at the form: this client writes month first
                args = ["--approve", "--set", f"signup_date={match[3]}-{match[1]}-{match[2]}"]
            else:
                args = ["--reject", "--reason", "; ".join(sorted({c["reason"] for c in item.failed_checks}))[:200]]
            cmd = ["review", "resolve", str(item.id), *args, "--as", "demo-agent"]
            out.print("[dim]$ bpo " + " ".join(cmd) + "[/dim]")
            subprocess.run([*bpo, *cmd], check=False)
            resolved.add(item.id)
        time.sleep(1)
    stdout = run.stdout.read() if run.stdout else ""
    if run.returncode != 0:
        fail(f"the demo run failed (exit {run.returncode})")
    result = json.loads(stdout)
    from bpo.db.session import engine_for
    from bpo.spec import load_spec
    from tasks.load import count_rows

    table = load_spec("customer_onboarding").target.table
    rows = count_rows(engine_for(s.target_database_url or ""), table)
    _print_summary(result)
    out.print(f"""
[bold]where to look[/bold]
  Prefect UI (the run, its artifacts):  {result['url']}
  S3 artifacts of the run:              {result['manifest'].rsplit('/', 1)[0]}/
  S3 browser/API (local stack):         {s.s3_endpoint_url}
  quarantine:                           s3://{s.s3_bucket}/{s.s3_prefix}/quarantine/customer-onboarding/
  target table `{table}`:              {rows} rows in {s.target_database_url}
  review decisions:                     bpo review list --status all
""")


if __name__ == "__main__":
    app()
