"""``bpo stack``, ``bpo deploy``, ``bpo db``: the local stack, the deployments and the ops database."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from bpo.cli.common import app, db_app, fail, out, settings, stack_app
from bpo.settings import Settings


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


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the ops database to the newest migration."""
    from bpo.db.session import upgrade

    upgrade(settings().ops_database_url or "")
    out.print("ops database is up to date")
