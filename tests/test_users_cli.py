"""``bpo users …`` as an engineer types it: the password prompted twice, tokens shown once and revocable.

In process (typer's CliRunner, the same app the ``bpo`` command runs), each prompt answered on stdin.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from bpo import users
from bpo.cli import app, common
from bpo.settings import Settings, get_settings


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.out, "width", 200)  # a table is found whole
    get_settings.cache_clear()


def bpo(*args: str, stdin: str = "") -> Done:
    done = CliRunner().invoke(app, list(args), input=stdin)
    return Done(done.exit_code, done.stdout, done.stderr)


def test_add_list_token_and_revoke(ops_db: str) -> None:
    settings = Settings(ops_database_url=ops_db)
    name = f"carol-{uuid.uuid4().hex[:6]}"
    added = bpo("users", "add", name, "--role", "agent", "--group", "onboarding", stdin="long password 1\n" * 2)
    assert added.returncode == 0, added.stderr
    assert f"added {name} (agent), groups onboarding" in added.stdout
    assert "long password 1" not in added.stdout + added.stderr
    assert users.sign_in(settings, name, "long password 1").groups == frozenset({"onboarding"})

    short = bpo("users", "add", f"dan-{uuid.uuid4().hex[:6]}", "--role", "agent", stdin="short\nshort\n")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    wrong_role = bpo("users", "add", f"eve-{uuid.uuid4().hex[:6]}", "--role", "admin", stdin="long password 1\n" * 2)
    assert wrong_role.returncode == 1 and "role must be one of agent, supervisor, engineer" in wrong_role.stderr
    again = bpo("users", "add", name, "--role", "agent", stdin="long password 1\n" * 2)
    assert again.returncode == 1 and "exists already" in again.stderr

    listed = bpo("users", "list")
    assert name in listed.stdout and "onboarding" in listed.stdout

    issued = bpo("users", "token", name, "--label", "laptop")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("bpo_") and users.by_token(settings, token) is not None
    assert "not shown again" in issued.stderr
    token_id = users.list_tokens(settings, name)[-1].id
    assert bpo("users", "revoke", str(token_id)).returncode == 0
    assert users.by_token(settings, token) is None
    assert bpo("users", "revoke", str(token_id)).returncode == 1  # revoked already
