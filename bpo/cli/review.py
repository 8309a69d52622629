"""``bpo review``: the review queue from a terminal — list, show, claim, resolve, expire."""

from __future__ import annotations

import getpass
import json
from typing import Any

import typer
from rich.table import Table

from bpo.cli.common import err, fail, out, review_app, settings


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
    from bpo.runs import run_statuses, sweep_dead_runs

    items = list_items(settings(), status=None if status == "all" else status, process=process, flow_run_id=run,
                       queue=queue)
    # an item of an ended run waits for the batch's next run (`bpo runs retry`), not for this one
    sweep_dead_runs(settings(), flow_run_ids={i.flow_run_id for i in items})
    run_status = run_statuses(settings(), (i.flow_run_id for i in items))
    if as_json:
        out.print_json(json.dumps([{**_item_dict(i), "run_status": run_status.get(i.flow_run_id)} for i in items],
                                  default=str))
        return
    table = Table("id", "process", "record", "checks", "status", "queue", "assignee", "due (UTC)", "run")
    for i in items:
        checks = ", ".join(sorted({f"{c['field']}:{c['check'].removeprefix('expect_column_values_to_')}"
                                   for c in i.failed_checks}))
        table.add_row(str(i.id), i.process, i.record_key, checks, i.status, i.queue, i.assignee or "",
                      f"{i.due_at:%Y-%m-%d %H:%M}", run_status.get(i.flow_run_id, ""))
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
    if done.rerun:
        out.print(done.rerun, markup=False, soft_wrap=True)


@review_app.command("expire")
def review_expire() -> None:
    """Apply the declared timeout action to overdue items (escalate to supervisor, or reject)."""
    from bpo.review import expire_overdue

    out.print(expire_overdue(settings()))
