"""``bpo run research-compilation``: compile a research brief once, with a progress bar per stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bpo.cli.common import fail, out, run_app, settings
from bpo.cli.runs import _exit_without_teardown, run_flow_with_progress


@run_app.command("research-compilation")
def run_research_compilation(
    brief: str = typer.Argument(..., help="A research brief: a name in the process folders, or a YAML, JSON or "
                                          "CSV file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Compile a brief once; waits while facts or the report's gate are open for review."""
    from bpo.db.session import upgrade
    from bpo.research.brief import BriefError, load_brief

    s = settings()
    try:  # refused here, before a flow run exists and before any fetch
        load_brief(brief)
    except BriefError as exc:
        fail(str(exc))
    if Path(brief).suffix.lower() in (".yaml", ".yml", ".json", ".csv"):
        brief = str(Path(brief).resolve())
    upgrade(s.ops_database_url or "")
    result = run_flow_with_progress("research-compilation", {"brief": brief}, quiet=as_json,
                                    summary=_print_summary)
    if as_json:
        out.print_json(json.dumps(result, default=str))
    _exit_without_teardown()


def _print_summary(result: dict[str, Any]) -> None:
    sources = Table("source", "fetched", "not modified", "failed", "refused")
    for row in result.get("sources", []):
        sources.add_row(escape(str(row["source"])), *(str(row[k]) for k in ("fetched", "not_modified", "failed",
                                                                             "refused")))
    out.print(sources)
    facts = ", ".join(f"{escape(str(k))} {v}" for k, v in sorted((result.get("facts") or {}).items()))
    out.print(f"facts: {facts}; sent to review: {result.get('to_review', 0)}")
    for problem in result.get("failed_checks") or []:
        out.print(f"[red]failed check:[/red] {escape(problem)}")
    if not result.get("published"):
        out.print("[yellow]not published: the report was rejected at its gate[/yellow]")
        return
    changes = result.get("changes")
    if changes:
        out.print(f"since the last edition: {changes['changed']} changed, {changes['added']} added, "
                  f"{changes['unsupported']} no longer supported")
    for name, link in (result.get("links") or {}).items():
        out.print(f"{name}: {escape(link)}", soft_wrap=True)
