"""``bpo run database-cleanup`` and ``bpo cleanup undo``: clean a client table once, and take a run back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bpo.cli.common import cleanup_app, fail, out, run_app, settings
from bpo.cli.runs import _exit_without_teardown, run_flow_with_progress


@run_app.command("database-cleanup")
def run_database_cleanup(
    database: str = typer.Argument(..., help="A SQLAlchemy URL, or the name of a connection in BPO_CONNECTIONS."),
    table: str = typer.Argument(..., help="The table to clean (its primary key must be the spec's key)."),
    spec: str = typer.Option("customers_cleanup", "--spec", "-s", help="A cleanup spec: a name or a YAML file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Stop after the report; change nothing."),
    incremental: bool = typer.Option(False, "--incremental", help=(
        "Link only the rows added or changed since the last run against the already clean table.")),
    retrain: bool = typer.Option(False, "--retrain", help="Train the match model again instead of reusing it."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run the database cleanup once; waits while pairs or the change-set gate are open for review."""
    from bpo.cleanup.source import CleanupRefused, connect, resolve
    from bpo.cleanup.source import check as check_table
    from bpo.cleanup.spec import load_cleanup_spec
    from bpo.db.session import upgrade

    s = settings()
    try:
        cspec = load_cleanup_spec(spec)
        target = resolve(database, table, s)
        engine = connect(target)
        try:  # refused here, before a flow run exists: the person sees why at once
            check_table(engine, target, cspec)
        finally:
            engine.dispose()
    except (FileNotFoundError, ValueError) as exc:  # CleanupRefused is a ValueError
        fail(str(exc) if isinstance(exc, CleanupRefused | FileNotFoundError) else f"spec {spec}: {exc}")
    if Path(spec).suffix in (".yaml", ".yml"):
        spec = str(Path(spec).resolve())
    upgrade(s.ops_database_url or "")
    result = run_flow_with_progress("database-cleanup", {
        "database": database, "table": table, "spec": spec, "dry_run": dry_run, "incremental": incremental,
        "retrain": retrain}, quiet=as_json, summary=_print_summary)
    if as_json:
        out.print_json(json.dumps(result, default=str))
    _exit_without_teardown()


def _print_summary(result: dict[str, Any]) -> None:
    figures = Table("figure", "before", "after")
    for name in ("valid_emails", "e164_phones", "duplicate_rate"):
        b, a = result.get("before", {}).get(name), result.get("after", {}).get(name)
        figures.add_row(name, "—" if b is None else f"{b:.2%}", "—" if a is None else f"{a:.2%}")
    out.print(figures)
    changes = Table("change", "count")
    for name, n in sorted((result.get("changes") or {}).items()):
        changes.add_row(escape(name), str(n))
    out.print(changes)
    for problem in result.get("problems") or []:
        out.print(f"[red]not applied:[/red] {escape(problem)}")
    if result.get("dry_run"):
        out.print("dry run: nothing was changed")
    elif "applied" in result:
        out.print(f"applied {result['applied']} changes, re-pointed {result.get('repointed', 0)} references, "
                  f"{result.get('conflicts', 0)} conflicts (review items); "
                  f"undo: bpo cleanup undo {result['flow_run_id']}")
    out.print(f"report: {escape(str(result.get('report')))}")


@cleanup_app.command("undo")
def undo(
    run_id: str = typer.Argument(..., help="The flow run id of the cleanup run to take back."),
    database: str | None = typer.Option(None, "--database", help=(
        "Another connection name (or URL) for the run's database; by default the one the run used.")),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Restore every row the run changed exactly (checked by content hash); rows changed since are refused."""
    from bpo.cleanup.source import CleanupRefused
    from bpo.cleanup.undo import undo_run
    from bpo.db.session import upgrade

    upgrade(settings().ops_database_url or "")
    try:
        report = undo_run(run_id, database, settings())
    except (CleanupRefused, FileNotFoundError) as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(report.as_dict(), default=str))
    else:
        out.print(f"restored {report.restored} rows of {escape(report.table)} ({report.verified} verified by content "
                  f"hash); refused {len(report.refused)}")
        for r in report.refused[:50]:
            out.print(f"  refused {escape(str(r['table']))} {escape(str(r['row_key']))}: {escape(str(r['reason']))}")
    if report.refused:
        raise typer.Exit(3)
