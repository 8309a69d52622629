"""``bpo review``: the review queue from a terminal — list, show, claim, resolve, export, expire, link.

Everything an item holds came from a client file or an agent: it is printed as literal text
(``rich.text.Text``, ``escape``), never read as console markup.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bpo.cli.common import err, fail, out, review_app, settings

STATUSES = ("open", "approved", "rejected", "all")


def _item_dict(item: Any) -> dict[str, Any]:
    keys = ("id", "flow_run_id", "process", "step", "kind", "record_key", "status", "queue", "assignee", "due_at",
            "on_timeout", "source", "failed_checks", "proposed", "decision", "reason", "decided_by", "decided_at")
    return {k: getattr(item, k) for k in keys}


def _status(status: str) -> str | None:
    if status not in STATUSES:
        fail(f"--status is one of {', '.join(STATUSES)}, not {status!r}", 2)
    return None if status == "all" else status


@review_app.command("list")
def review_list(
    as_json: bool = typer.Option(False, "--json"),
    status: str = typer.Option("open", help="open, approved, rejected, or all"),
    process: str | None = typer.Option(None, help="Only this process."),
    run: str | None = typer.Option(None, "--run", help="Only this flow run id."),
    queue: str | None = typer.Option(None, help="default or supervisor"),
) -> None:
    """The review queue, soonest due first."""
    from bpo.review import kind_of, list_items
    from bpo.runs import run_statuses, sweep_dead_runs

    items = list_items(settings(), status=_status(status), process=process, flow_run_id=run, queue=queue)
    # an item of an ended run waits for the batch's next run (`bpo runs retry`), not for this one
    sweep_dead_runs(settings(), flow_run_ids={i.flow_run_id for i in items})
    run_status = run_statuses(settings(), (i.flow_run_id for i in items))
    if as_json:
        out.print_json(json.dumps([{**_item_dict(i), "run_status": run_status.get(i.flow_run_id)} for i in items],
                                  default=str))
        return
    table = Table("id", "kind", "process", "record", "to decide", "status", "queue", "assignee", "due (UTC)", "run")
    for i in items:
        table.add_row(str(i.id), Text(i.kind), Text(i.process), Text(i.record_key), Text(kind_of(i).display(i).summary),
                      i.status, Text(i.queue), Text(i.assignee or ""), f"{i.due_at:%Y-%m-%d %H:%M}",
                      run_status.get(i.flow_run_id, ""))
    out.print(table)
    out.print(f"{len(items)} item(s)")


@review_app.command("show")
def review_show(item_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One item as its kind shows it: for a record, the source values beside the proposed ones and the failed checks."""
    from bpo.review import ReviewError, get_item, kind_of

    try:
        item = get_item(settings(), item_id)
        shown = kind_of(item).display(item)
    except ReviewError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(_item_dict(item), default=str))
        return
    out.print(f"[bold]item {item.id}[/bold] · {escape(item.kind)} · {escape(item.process)} · {escape(shown.title)} · "
              f"{item.status} · due {item.due_at:%Y-%m-%d %H:%M} UTC · on timeout: {escape(item.on_timeout)}")
    table = Table()
    for column in shown.columns:
        table.add_column(Text(column))
    for row in shown.rows:
        table.add_row(*(Text(v, style="red") if v == "✗" else Text(v) for v in row))
    out.print(table)
    for note in shown.notes:
        out.print(Text("  " + note))
    if item.decision or item.reason:
        out.print(Text(f"decision by {item.decided_by}: {item.decision or ''} {item.reason or ''}"))


@review_app.command("claim")
def review_claim(item_id: int, actor: str = typer.Option(getpass.getuser(), "--as", help="Who claims it.")) -> None:
    """Take an item so no one else works on it."""
    from bpo.review import ReviewError, claim

    try:
        claim(settings(), item_id, actor)
    except ReviewError as exc:
        fail(str(exc))
    out.print(Text(f"item {item_id} claimed by {actor}"))


@review_app.command("next")
def review_next(actor: str = typer.Option(getpass.getuser(), "--as", help="Who claims it.")) -> None:
    """Claim the next item for you (one you hold, else the soonest due unassigned one) and show it."""
    from bpo.review import ReviewError, claim_next

    try:
        item = claim_next(settings(), actor)
    except ReviewError as exc:
        fail(str(exc))
    if item is None:
        out.print("no open item is waiting for you")
        return
    out.print(Text(f"item {item.id} claimed by {actor}"))
    review_show(item.id)


@review_app.command("resolve")
def review_resolve(
    item_ids: list[int] = typer.Argument(None, metavar="ID", help="The item(s) to decide."),
    approve: bool = typer.Option(False, "--approve", help="Accept one item (a record with its --set corrections, "
                                                          "validated again)."),
    approve_passing: bool = typer.Option(False, "--approve-passing",
                                         help="Approve every selected item whose proposed values now pass every "
                                              "check; the others stay open and are listed."),
    reject: bool = typer.Option(False, "--reject", help="Reject the selected item(s), all with one --reason."),
    decision: str | None = typer.Option(None, "--decision", help="A decision as JSON, for kinds that take more "
                                                                  "than approve/reject."),
    all_open: bool = typer.Option(False, "--all-open", help="Select every open item (narrow with --process, --run)."),
    process: str | None = typer.Option(None, help="With --all-open: only this process."),
    run: str | None = typer.Option(None, "--run", help="With --all-open: only this flow run id."),
    sets: list[str] = typer.Option([], "--set", help="field=value correction, with --approve; repeatable."),
    keep: str | None = typer.Option(None, "--keep", help="With --approve, for a repeated key: the record kept "
                                                          "(FILE:ROW, as `show` lists it); the rest are superseded."),
    reason: str | None = typer.Option(None, "--reason", help="Why (needed to reject)."),
    actor: str = typer.Option(getpass.getuser(), "--as", help="Who decides."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decide one item, or many with one decision; the last item of a run resumes it.

    \b
      bpo review resolve ID --approve [--set field=value ...] [--keep FILE:ROW]
      bpo review resolve ID ... --reject --reason TEXT
      bpo review resolve (ID ... | --all-open [--process P] [--run RUN]) --approve-passing
      bpo review resolve (ID ... | --all-open ...) --reject --reason TEXT

    Exit 3 when a single item's decision is refused (it stays open); a bulk resolve lists the
    items it left open and exits 0.
    """
    ids = list(item_ids or [])
    if sum((approve, approve_passing, reject, decision is not None)) != 1:
        fail("say one of --approve, --approve-passing, --reject or --decision", 2)
    if bool(ids) == all_open:
        fail("name the item(s) by ID, or select them with --all-open, one of the two", 2)
    if (process or run) and not all_open:
        fail("--process and --run narrow --all-open", 2)
    if (sets or keep) and not approve:
        fail("--set and --keep go with --approve (one item)", 2)
    if reject and not (reason and reason.strip()):
        fail("a rejection needs a reason (--reason TEXT)", 2)
    if approve and (all_open or len(ids) > 1):
        fail("--approve decides one item; to approve many, use --approve-passing", 2)
    corrections: dict[str, str] = {}
    for pair in sets:
        field, sep, value = pair.partition("=")
        if not sep or not field.strip():
            fail(f"--set wants field=value, got {pair!r}", 2)
        corrections[field.strip()] = value
    wanted: dict[str, Any] | None = None
    if decision is not None:
        try:
            wanted = json.loads(decision)
        except json.JSONDecodeError as exc:
            fail(f"--decision is not JSON: {exc}", 2)
        if not isinstance(wanted, dict):
            fail("--decision is a JSON object", 2)
        if reason is not None:
            wanted = {**wanted, "reason": reason}  # type: ignore[dict-item]
    if keep is not None:
        wanted = {"approve": True, "set": corrections, "keep": keep, **({"reason": reason} if reason else {})}
    verdict: bool | None = None if wanted is not None else (approve or approve_passing)
    if len(ids) == 1 and not approve_passing:
        _resolve_one(ids[0], verdict, corrections, reason if wanted is None else None, wanted, actor, as_json)
    else:
        _resolve_many(ids, all_open, process, run, verdict, reason if wanted is None else None, wanted, actor,
                      as_json)


def _resolve_one(item_id: int, approve: bool | None, sets: dict[str, str], reason: str | None,
                 decision: dict[str, Any] | None, actor: str, as_json: bool) -> None:
    from bpo.review import CorrectionRefused, ReviewError, resolve

    try:
        done = resolve(settings(), item_id, approve=approve, actor=actor, sets=sets, reason=reason, decision=decision)
    except CorrectionRefused as exc:
        if as_json:
            out.print_json(json.dumps({"item": item_id, "status": "refused", "failures": exc.failures}))
            raise typer.Exit(3) from None
        err.print(f"[red]refused:[/red] item {item_id} stays open; the corrected record still fails:")
        for f in exc.failures:
            err.print(Text(f"  {f['field']}: {f['reason']} ({f['check']})"))
        raise typer.Exit(3) from None
    except ReviewError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(done.__dict__))
        return
    status = ("approved once: it needs a second approver (four-eyes)" if done.status == "awaiting_second"
              else done.status)
    out.print(f"item {item_id} {status}; {done.open_left} open in this run"
              + (" — run resumed" if done.resumed else ""))
    if done.rerun:
        out.print(done.rerun, markup=False, soft_wrap=True)


def _resolve_many(ids: list[int], all_open: bool, process: str | None, run: str | None, approve: bool | None,
                  reason: str | None, decision: dict[str, Any] | None, actor: str, as_json: bool) -> None:
    from bpo.review import ReviewError, list_items, resolve_many

    s = settings()
    if all_open:
        ids = [i.id for i in list_items(s, status="open", process=process, flow_run_id=run, limit=None)]
    try:
        done = resolve_many(s, ids, approve=approve, actor=actor, reason=reason, decision=decision)
    except ReviewError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps({"selected": len(ids), "decided": done.decided, "left_open": done.left_open,
                                   "refused": done.refused, "resumed": done.resumed}))
        return
    counts = {status: sum(1 for v in done.decided.values() if v == status) for status in ("approved", "rejected")}
    out.print(f"{len(ids)} selected: {counts['approved']} approved, {counts['rejected']} rejected, "
              f"{len(done.left_open)} left open, {len(done.refused)} not decided")
    for item_id, failures in done.left_open.items():
        out.print(Text(f"  item {item_id} stays open, it still fails: "
                       + "; ".join(f"{f['field']}: {f['reason']} ({f['check']})" for f in failures)))
    for item_id, why in done.refused.items():
        out.print(Text(f"  item {item_id} not decided: {why}"))
    for run_id in done.resumed:
        out.print(f"run {run_id} resumed")


@review_app.command("export")
def review_export(
    file: Path = typer.Argument(..., help="FILE.csv or FILE.xlsx"),
    status: str = typer.Option("all", help="open, approved, rejected, or all"),
    process: str | None = typer.Option(None, help="Only this process."),
) -> None:
    """Write the selected items to a CSV or XLSX file; cells that a spreadsheet would run as formulas are made text."""
    from bpo.exports import FORMATS
    from bpo.review.export import export_items

    if file.suffix.lower() not in FORMATS:
        fail(f"the file must end in {' or '.join(FORMATS)}", 2)
    count = export_items(settings(), file, status=_status(status), process=process)
    out.print(Text(f"{count} item(s) written to {file}"))


@review_app.command("expire")
def review_expire() -> None:
    """Apply the declared timeout action to overdue items (escalate to supervisor, or reject)."""
    from bpo.review import expire_overdue

    out.print(expire_overdue(settings()))


@review_app.command("link")
def review_link(
    item_id: int,
    approver: str = typer.Option(..., "--approver", help="Who answers the gate (named in the audit)."),
    hours: float = typer.Option(48, "--hours", help="How long the link works."),
    console_url: str | None = typer.Option(None, "--console-url", help="The console as the approver reaches it; "
                                                                        "default http://127.0.0.1:<console port>."),
    actor: str = typer.Option(getpass.getuser(), "--as", help="Who makes the link."),
) -> None:
    """Print a signed, single-use, expiring link through which APPROVER answers a gate without an account."""
    from bpo.review import ReviewError
    from bpo.review.links import expiry_of, issue_link

    s = settings()
    base = (console_url or f"http://127.0.0.1:{s.console_port}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail("--console-url is an http:// or https:// address", 2)
    try:
        token = issue_link(s, item_id, approver=approver, created_by=actor, hours=hours)
    except ReviewError as exc:
        fail(str(exc))
    out.print(f"{base}/gate/{token}", markup=False, highlight=False, soft_wrap=True)
    err.print(Text(f"for {approver.strip()}: works once, until {expiry_of(token):%Y-%m-%d %H:%M} UTC"))
