"""What every ``bpo`` command shares: the apps, the consoles, the settings and how a command fails."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.markup import escape

from bpo.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="``bpo``: the one command a person types — stack, runs, review, database.")
stack_app = typer.Typer(no_args_is_help=True, help="The local stack: Prefect server and SeaweedFS on 127.0.0.1.")
review_app = typer.Typer(no_args_is_help=True, help=(
    "Review items: list, show, claim, unclaim, next, resolve, export, expire, link. With BPO_TOKEN set (an API token "
    "from `bpo users token NAME`), list/show/claim/unclaim/next/resolve go through the console's API "
    "(BPO_CONSOLE_URL, default http://127.0.0.1:BPO_CONSOLE_PORT) as the token's user, under its rules; "
    "without it they work on the ops database directly (an engineer's local use). export, expire and link always "
    "work on the ops database."))
db_app = typer.Typer(no_args_is_help=True, help="The ops database.")
run_app = typer.Typer(no_args_is_help=True, help="Run a process once against the stack.")
runs_app = typer.Typer(no_args_is_help=True, help="Runs: list them with how they ended, retry one that failed.")
cleanup_app = typer.Typer(no_args_is_help=True, help="Database cleanups: undo one run's changes exactly.")
app.add_typer(stack_app, name="stack")
app.add_typer(cleanup_app, name="cleanup")
app.add_typer(review_app, name="review")
app.add_typer(db_app, name="db")
app.add_typer(run_app, name="run")
app.add_typer(runs_app, name="runs")

out = Console()
err = Console(stderr=True)


def settings() -> Settings:
    from bpo.settings import get_settings

    return get_settings()


def fail(message: str, code: int = 1) -> None:
    # messages may quote what a user typed; not wrapped at the terminal's width: a URL or a command stays whole
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
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
    # (a failure's traceback too: the terminal gets one short message, the traceback is in the run's log)
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
