"""``bpo review``: the review queue from a terminal — list, show, claim, unclaim, next, resolve, export, expire,
link.

With an API token (``BPO_TOKEN``, from ``bpo users token NAME``) ``list``, ``show``, ``claim``,
``unclaim``, ``next`` and ``resolve`` go through the console's JSON API (``BPO_CONSOLE_URL``, by
default the one ``bpo stack up`` started) as the token's user, under the console's rules: groups,
claims, four-eyes. A console that cannot be reached is an error, never a quiet fall back to the
database, where those rules would not hold. Without a token they work on the ops database directly
(an engineer's local use). ``export``, ``expire`` and ``link`` always work on the ops database.

Everything an item holds came from a client file or an agent: it is printed as literal text
(``rich.text.Text``, ``escape``), never read as console markup.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bpo.cli.common import err, fail, out, review_app, settings
from bpo.cli.review_backend import Backend, ConsoleBackend, Refused, Row
from bpo.console_client import ConsoleClient, ConsoleError, ConsoleUnreachable

STATUSES = ("open", "approved", "rejected", "all")
VERDICTS = ("same", "different", "not_sure")  # a pair's answers (bpo.review.pair, not imported here: it is slow)
LIST_LIMIT = 200
AS_HELP = "Who acts (default: your login name). With BPO_TOKEN you act as the token's user: another name is refused."


def _status(status: str) -> str | None:
    if status not in STATUSES:
        fail(f"--status is one of {', '.join(STATUSES)}, not {status!r}", 2)
    return None if status == "all" else status


@contextmanager
def _acting(actor: str | None = None) -> Iterator[Backend]:
    """Where this command acts: the console's API when a token is set, else the ops database.

    A refusal, or a console that cannot be reached, ends the command with why.
    """
    s = settings()
    try:
        backend: Backend
        if s.token is None:
            from bpo.cli.review_db import DatabaseBackend  # the review service takes seconds to import: only here

            backend = DatabaseBackend(s, actor or getpass.getuser())
        else:
            console = ConsoleBackend(ConsoleClient(s.console_url or "", s.token.get_secret_value()))
            backend = console
            if actor is not None:
                user = console.user()
                if actor != user:
                    console.close()
                    fail(f"--as {actor}: BPO_TOKEN is {user}'s API token, and through the console you act as "
                         f"the token's user; leave out --as, or use {actor}'s own token", 2)
        try:
            yield backend
        finally:
            backend.close()
    except Refused as exc:
        fail(str(exc))
    except ConsoleUnreachable as exc:
        fail(f"{exc}. BPO_TOKEN is set, so `bpo review` works through the console and its rules: start it "
             "(`bpo stack up`, or `bpo console`) or set BPO_CONSOLE_URL to where it runs. Without BPO_TOKEN it "
             "works on the ops database directly (an engineer's local use).")
    except ConsoleError as exc:
        fail(str(exc))


def _due(value: str | None) -> str:
    return f"{datetime.fromisoformat(value):%Y-%m-%d %H:%M}" if value else ""


@review_app.command("list")
def review_list(
    as_json: bool = typer.Option(False, "--json"),
    status: str = typer.Option("open", help="open, approved, rejected, or all"),
    process: str | None = typer.Option(None, help="Only this process."),
    run: str | None = typer.Option(None, "--run", help="Only this flow run id."),
    queue: str | None = typer.Option(None, help="default or supervisor"),
) -> None:
    """The review queue, soonest due first (the items you may work on, with BPO_TOKEN)."""
    wanted = _status(status)
    with _acting() as backend:
        items, total = backend.queue(status=wanted, process=process, run=run, queue=queue, limit=LIST_LIMIT)
    if as_json:
        out.print_json(json.dumps(items, default=str))
        return
    table = Table("id", "kind", "process", "record", "to decide", "status", "queue", "assignee", "due (UTC)", "run")
    for i in items:
        table.add_row(str(i["id"]), Text(i["kind"]), Text(i["process"]), Text(i["record_key"]),
                      Text(i["summary"] or ""), Text(i["status"]), Text(i["queue"]), Text(i["assignee"] or ""),
                      _due(i["due_at"]), Text(i["run_status"] or ""))
    out.print(table)
    out.print(f"{len(items)} item(s)" + (f" of {total}: the {len(items)} soonest due" if total > len(items) else ""))


def _print_item(item: Row) -> None:
    shown = item["display"]
    out.print(f"[bold]item {item['id']}[/bold] · {escape(item['kind'])} · {escape(item['process'])} · "
              f"{escape(shown['title'])} · {escape(item['status'])} · due {_due(item['due_at'])} UTC · "
              f"on timeout: {escape(item['on_timeout'])}")
    table = Table()
    for column in shown["columns"]:
        table.add_column(Text(column))
    for row in shown["rows"]:
        table.add_row(*(Text(v, style="red") if v == "✗" else Text(v) for v in row))
    out.print(table)
    for note in shown["notes"]:
        out.print(Text("  " + note))
    if item["decision"] or item["reason"]:
        out.print(Text(f"decision by {item['decided_by']}: {item['decision'] or ''} {item['reason'] or ''}"))


@review_app.command("show")
def review_show(item_id: int, as_json: bool = typer.Option(False, "--json")) -> None:
    """One item as its kind shows it: for a record, the source values beside the proposed ones and the failed checks."""
    with _acting() as backend:
        item = backend.item(item_id)
    if as_json:
        out.print_json(json.dumps(item, default=str))
        return
    _print_item(item)


@review_app.command("claim")
def review_claim(item_id: int, actor: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Take an item so no one else works on it."""
    with _acting(actor) as backend:
        item = backend.claim(item_id)
    out.print(Text(f"item {item['id']} claimed by {item['assignee']}"))


@review_app.command("unclaim")
def review_unclaim(item_id: int, actor: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Give back an item you hold: anyone may claim it then."""
    with _acting(actor) as backend:
        item = backend.unclaim(item_id)
    out.print(Text(f"item {item['id']} is back in the queue"))


@review_app.command("next")
def review_next(actor: str | None = typer.Option(None, "--as", help=AS_HELP)) -> None:
    """Claim the next item for you (one you hold, else the soonest due unassigned one) and show it."""
    with _acting(actor) as backend:
        item = backend.next()
    if item is None:
        out.print("no open item is waiting for you")
        return
    out.print(Text(f"item {item['id']} claimed by {item['assignee']}"))
    _print_item(item)


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
    pair_verdict: str | None = typer.Option(None, "--verdict", help="A pair: same, different, or not_sure (the "
                                                                     "item goes to the supervisor queue)."),
    candidate: int | None = typer.Option(None, "--candidate", help="A candidates item: the candidate (from 0, as "
                                                                   "`show` numbers them) that is right."),
    value: str | None = typer.Option(None, "--value", help="A candidates item: a value found elsewhere, with "
                                                           "--cite-location and --cite-snippet."),
    cite_location: str | None = typer.Option(None, "--cite-location", help="With --value: where it was read."),
    cite_snippet: str | None = typer.Option(None, "--cite-snippet", help="With --value: the text that states it."),
    not_found: bool = typer.Option(False, "--not-found", help="A candidates item: the field cannot be found "
                                                              "(--reason says where you looked)."),
    all_open: bool = typer.Option(False, "--all-open", help="Select every open item (narrow with --process, --run)."),
    process: str | None = typer.Option(None, help="With --all-open: only this process."),
    run: str | None = typer.Option(None, "--run", help="With --all-open: only this flow run id."),
    sets: list[str] = typer.Option([], "--set", help="field=value correction, with --approve; repeatable."),
    keep: str | None = typer.Option(None, "--keep", help="With --approve, for a repeated key: the record kept "
                                                          "(FILE:ROW, as `show` lists it); the rest are superseded."),
    reason: str | None = typer.Option(None, "--reason", help="Why (needed to reject)."),
    actor: str | None = typer.Option(None, "--as", help=AS_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decide one item, or many with one decision; the last item of a run resumes it.

    \b
      bpo review resolve ID --approve [--set field=value ...] [--keep FILE:ROW]
      bpo review resolve ID ... --reject --reason TEXT
      bpo review resolve (ID ... | --all-open [--process P] [--run RUN]) --approve-passing
      bpo review resolve (ID ... | --all-open ...) --reject --reason TEXT
      bpo review resolve ID --verdict same|different|not_sure [--reason TEXT]      (a pair)
      bpo review resolve ID --decision '{"acknowledge": true}' --reason TEXT      (a conflict)
      bpo review resolve ID --candidate N | --value V --cite-location L --cite-snippet S
                            | --not-found --reason WHERE_YOU_LOOKED            (a candidates item)

    Exit 3 when a single item's decision is refused (it stays open); a bulk resolve lists the
    items it left open and exits 0. With BPO_TOKEN a single item is decided as in the console:
    claim it first (`bpo review claim ID`, or `bpo review next`).
    """
    ids = list(item_ids or [])
    answer = _candidates_answer(candidate, value, cite_location, cite_snippet, not_found, reason)
    if sum((approve, approve_passing, reject, decision is not None, pair_verdict is not None,
            answer is not None)) != 1:
        fail("say one of --approve, --approve-passing, --reject, --decision, --verdict, --candidate, --value "
             "or --not-found", 2)
    if pair_verdict is not None and pair_verdict not in VERDICTS:
        fail(f"--verdict is one of {', '.join(VERDICTS)}, not {pair_verdict!r}", 2)
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
    if pair_verdict is not None:
        wanted = {"verdict": pair_verdict, **({"reason": reason} if reason is not None else {})}
    if answer is not None:
        wanted = answer
    if keep is not None:
        wanted = {"approve": True, "set": corrections, "keep": keep, **({"reason": reason} if reason else {})}
    verdict: bool | None = None if wanted is not None else (approve or approve_passing)
    with _acting(actor) as backend:
        if len(ids) == 1 and not approve_passing:
            _resolve_one(backend, ids[0], verdict, corrections, reason if wanted is None else None, wanted, as_json)
        else:
            _resolve_many(backend, ids, all_open, process, run, verdict, reason if wanted is None else None, wanted,
                          as_json)


def _candidates_answer(candidate: int | None, value: str | None, location: str | None, snippet: str | None,
                       not_found: bool, reason: str | None) -> dict[str, Any] | None:
    """A candidates item's decision from the options, None when none of them is given."""
    if (location is not None or snippet is not None) and value is None:
        fail("--cite-location and --cite-snippet go with --value", 2)
    if sum((candidate is not None, value is not None, not_found)) > 1:
        fail("say one of --candidate, --value or --not-found", 2)
    extra = {"reason": reason} if reason is not None else {}
    if candidate is not None:
        return {"candidate": candidate, **extra}
    if value is not None:
        return {"value": value, "citation": {"location": location or "", "snippet": snippet or ""}, **extra}
    if not_found:
        return {"not_found": True, "note": reason or ""}
    return None


def _resolve_one(backend: Backend, item_id: int, approve: bool | None, sets: dict[str, str], reason: str | None,
                 decision: dict[str, Any] | None, as_json: bool) -> None:
    try:
        done = backend.resolve(item_id, approve=approve, sets=sets, reason=reason, decision=decision)
    except Refused as exc:
        if not exc.failures:
            raise
        if as_json:
            out.print_json(json.dumps({"item": item_id, "status": "refused", "failures": exc.failures}))
            raise typer.Exit(3) from None
        err.print(f"[red]refused:[/red] item {item_id} stays open; the corrected record still fails:")
        for f in exc.failures:
            err.print(Text(f"  {f['field']}: {f['reason']} ({f['check']})"))
        raise typer.Exit(3) from None
    if as_json:
        out.print_json(json.dumps(done))
        return
    status = ("approved once: it needs a second approver (four-eyes)" if done["status"] == "awaiting_second"
              else "sent to the supervisor queue" if done["status"] == "escalated" else done["status"])
    out.print(Text(f"item {item_id} {status}; {done['open_left']} open in this run"
                   + (" — run resumed" if done["resumed"] else "")))
    if done["rerun"]:
        out.print(done["rerun"], markup=False, soft_wrap=True)


def _resolve_many(backend: Backend, ids: list[int], all_open: bool, process: str | None, run: str | None,
                  approve: bool | None, reason: str | None, decision: dict[str, Any] | None, as_json: bool) -> None:
    if all_open:
        ids = backend.open_ids(process=process, run=run)
    done = backend.resolve_many(ids, approve=approve, reason=reason, decision=decision)
    if as_json:
        out.print_json(json.dumps({"selected": len(ids), **done}))
        return
    counts = {status: sum(1 for v in done["decided"].values() if v == status) for status in ("approved", "rejected")}
    out.print(f"{len(ids)} selected: {counts['approved']} approved, {counts['rejected']} rejected, "
              f"{len(done['left_open'])} left open, {len(done['refused'])} not decided")
    for item_id, failures in done["left_open"].items():
        out.print(Text(f"  item {item_id} stays open, it still fails: "
                       + "; ".join(f"{f['field']}: {f['reason']} ({f['check']})" for f in failures)))
    for item_id, why in done["refused"].items():
        out.print(Text(f"  item {item_id} not decided: {why}"))
    for run_id in done["resumed"]:
        out.print(Text(f"run {run_id} resumed"))


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
                                                                        "default BPO_CONSOLE_URL."),
    actor: str = typer.Option(getpass.getuser(), "--as", help="Who makes the link."),
) -> None:
    """Print a signed, single-use, expiring link through which APPROVER answers a gate without an account."""
    from bpo.review import ReviewError
    from bpo.review.links import expiry_of, issue_link

    s = settings()
    base = (console_url or s.console_url or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        fail("--console-url is an http:// or https:// address", 2)
    try:
        token = issue_link(s, item_id, approver=approver, created_by=actor, hours=hours)
    except ReviewError as exc:
        fail(str(exc))
    out.print(f"{base}/gate/{token}", markup=False, highlight=False, soft_wrap=True)
    err.print(Text(f"for {approver.strip()}: works once, until {expiry_of(token):%Y-%m-%d %H:%M} UTC"))
