"""``bpo users …`` and ``bpo console``: the people who review, their tokens, and the web console."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from bpo.cli.common import app, fail, out, settings

users_app = typer.Typer(no_args_is_help=True, help="Users of the console and the API: roles, groups, tokens.")
app.add_typer(users_app, name="users")


def _ready() -> None:
    from bpo.db.session import upgrade

    upgrade(settings().ops_database_url or "")


@users_app.command("add")
def add(name: str = typer.Argument(..., help="The user's sign-in name."),
        role: str = typer.Option(..., "--role", "-r", help="agent, supervisor or engineer."),
        group: list[str] = typer.Option([], "--group", "-g", help="A group (team) the user belongs to; repeatable."),
        password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                                     help="Prompted for when not given (never put it on a command line).")) -> None:
    """Add a user; the password is prompted for and stored as an argon2id hash."""
    from bpo import users

    _ready()
    try:
        person = users.add_user(settings(), name, password, role, group)
    except users.UserError as exc:
        fail(str(exc))
    out.print(f"added {escape(person.name)} ({person.role})" +
              (f", groups {escape(', '.join(sorted(person.groups)))}" if person.groups else ""), soft_wrap=True)


@users_app.command("list")
def list_() -> None:
    """Every user with their role and groups."""
    from bpo import users

    _ready()
    table = Table("name", "role", "groups")
    for p in users.list_users(settings()):
        table.add_row(escape(p.name), p.role, escape(", ".join(sorted(p.groups))))
    out.print(table)


@users_app.command("groups")
def groups(name: str,
           group: list[str] = typer.Option([], "--group", "-g", help="The user's groups, all of them.")) -> None:
    """Set a user's groups (those given replace the ones they had)."""
    from bpo import users

    _ready()
    try:
        person = users.set_groups(settings(), name, group)
    except users.UserError as exc:
        fail(str(exc))
    out.print(f"{escape(person.name)}: {escape(', '.join(sorted(person.groups))) or 'no group'}", soft_wrap=True)


@users_app.command("team")
def team(group: str = typer.Argument(..., help="The group (team)."),
         webhook: str = typer.Option("", help="A URL sent a JSON POST on each new assignment and overdue item."),
         email: str = typer.Option("", help="An address sent a mail for the same (BPO_SMTP_HOST)."),
         show: bool = typer.Option(False, "--list", help="List every team's targets instead.")) -> None:
    """Say where a team is told of its work: a webhook and/or an address (empty clears it)."""
    from bpo import notify, users

    _ready()
    if show:
        table = Table("team", "webhook", "email")
        for t in users.list_teams(settings()):
            table.add_row(escape(t.name), escape(notify.where(t.webhook)) if t.webhook else "", escape(t.email or ""))
        out.print(table)
        return
    try:
        t = users.set_team(settings(), group, webhook=webhook, email=email)
    except users.UserError as exc:
        fail(str(exc))
    targets = [x for x in (t.webhook and f"webhook {notify.where(t.webhook)}", t.email and f"email {t.email}") if x]
    out.print(f"team {escape(t.name)}: {escape(', '.join(targets)) or 'not notified'}", soft_wrap=True)


@users_app.command("token")
def token(name: str, label: str = typer.Option("", "--label", help="What the token is for.")) -> None:
    """Issue an API token for NAME and print it once (only its hash is kept)."""
    from bpo import users

    _ready()
    try:
        token_id, secret = users.issue_token(settings(), name, label)
    except users.UserError as exc:
        fail(str(exc))
    typer.echo(secret)
    typer.echo(f"token {token_id} for {name}: keep it now, it is not shown again "
               f"(revoke with `bpo users revoke {token_id}`)", err=True)


@users_app.command("revoke")
def revoke(token_id: int) -> None:
    """Revoke an API token by its number."""
    from bpo import users

    _ready()
    try:
        users.revoke_token(settings(), token_id)
    except users.UserError as exc:
        fail(str(exc))
    out.print(f"token {token_id} revoked")


@app.command("console")
def console(port: int = typer.Option(8700, "--port", help="The port on 127.0.0.1.")) -> None:
    """Serve the review console and its API on 127.0.0.1."""
    import uvicorn

    from bpo.console.app import create_app

    _ready()
    out.print(f"review console on http://127.0.0.1:{port}/ (API under /api/, OpenAPI at /api/openapi.json)")
    uvicorn.run(create_app(settings()), host="127.0.0.1", port=port, log_level="warning")
