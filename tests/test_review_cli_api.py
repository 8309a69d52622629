"""``bpo review`` with an API token: through the console's API, as the token's user, under its rules.

A real console (uvicorn on a free loopback port, its own SQLite ops database) answers; the CLI
runs in process (typer's CliRunner) with BPO_TOKEN and BPO_CONSOLE_URL. Runs are kept open
(``keep_open``) so that no resolve needs a Prefect server to resume a run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from bpo import review, users
from bpo import settings as settings_module
from bpo.cli import app, common
from bpo.settings import Settings, get_settings
from bpo.stack import free_port
from tests.test_review import item_id, keep_open, make_item, store

PASSWORD = "correct horse battery"
FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]
Run = Callable[..., Result]


@pytest.fixture
def console(console_server: tuple[str, Settings]) -> tuple[str, Settings]:
    return console_server


@pytest.fixture
def bpo_review(monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``bpo review ARGS`` in process with this environment (``token=None``: none, the database path)."""
    monkeypatch.setattr(settings_module, "_given", None)
    monkeypatch.setattr(common.out, "width", 400)  # no wrapping: a value is found whole in a table

    def run(*args: str, token: str | None, url: str, ops: str) -> Result:
        env = {"BPO_TOKEN": token, "BPO_CONSOLE_URL": url, "BPO_OPS_DATABASE_URL": ops}
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(app, ["review", *args], env=env)
        finally:
            get_settings.cache_clear()

    yield run
    get_settings.cache_clear()


def person(settings: Settings, role: str = "agent", groups: list[str] | None = None) -> tuple[str, str]:
    """A new user and an API token of theirs."""
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    users.add_user(settings, name, PASSWORD, role, groups)
    return name, users.issue_token(settings, name)[1]


def open_items(settings: Settings, rows: list[int], **overrides: Any) -> tuple[str, dict[int, int]]:
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url or "", [make_item(run_id, r, **overrides) for r in rows])
    keep_open(settings.ops_database_url or "", run_id)
    return run_id, {r: item_id(settings, run_id, r) for r in (*rows, 999)}


def test_list_and_show_go_through_the_api_in_the_shape_of_the_database_path(
        console: tuple[str, Settings], bpo_review: Run, tmp_path: Any) -> None:
    url, settings = console
    _, token = person(settings)
    run_id, ids = open_items(settings, [2, 3])
    nowhere = f"sqlite:///{tmp_path}/absent/ops.db"  # the API path never opens a database of its own

    listed = bpo_review("list", "--run", run_id, "--json", token=token, url=url, ops=nowhere)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [ids[2], ids[3], ids[999]]  # soonest due first
    local = bpo_review("list", "--run", run_id, "--json", token=None, url=url, ops=settings.ops_database_url)
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout) == rows  # the same items in the same shape, whichever path
    assert rows[0]["source"]["file"] == "f.csv" and rows[0]["failed_checks"][0]["field"] == "email"

    table = bpo_review("list", "--run", run_id, token=token, url=url, ops=nowhere)
    assert "f.csv:2" in table.stdout and "3 item(s)" in table.stdout
    shown = bpo_review("show", str(ids[2]), "--json", token=token, url=url, ops=nowhere)
    local_shown = bpo_review("show", str(ids[2]), "--json", token=None, url=url, ops=settings.ops_database_url)
    assert json.loads(shown.stdout) == json.loads(local_shown.stdout)
    assert {f["name"] for f in json.loads(shown.stdout)["fields"]} >= {"email"}


def test_an_agent_outside_the_process_groups_sees_nothing_and_is_refused(
        console: tuple[str, Settings], bpo_review: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from bpo.console import auth

    monkeypatch.setattr(auth, "groups_of", lambda process: frozenset({"onboarding"}))
    url, settings = console
    _, outsider = person(settings, groups=["claims"])
    _, member = person(settings, groups=["onboarding"])
    run_id, ids = open_items(settings, [2])
    ops = settings.ops_database_url or ""

    listed = bpo_review("list", "--run", run_id, "--json", token=outsider, url=url, ops=ops)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
    for args in (["show", str(ids[2])], ["claim", str(ids[2])],
                 ["resolve", str(ids[2]), "--reject", "--reason", "not mine"]):
        refused = bpo_review(*args, token=outsider, url=url, ops=ops)
        assert refused.exit_code == 1 and "not in a group that reviews customer_onboarding" in refused.stderr, args
    bulk = bpo_review("resolve", str(ids[2]), "--reject", "--reason", "x", str(ids[999]), "--json",
                      token=outsider, url=url, ops=ops)
    assert json.loads(bulk.stdout)["decided"] == {}
    assert review.get_item(settings, ids[2]).status == "open" and review.get_item(settings, ids[2]).assignee is None
    seen = bpo_review("list", "--run", run_id, "--json", token=member, url=url, ops=ops)
    assert {r["id"] for r in json.loads(seen.stdout)} == {ids[2], ids[999]}


def test_claim_next_and_unclaim_act_as_the_token_user_and_another_as_is_refused(
        console: tuple[str, Settings], bpo_review: Run) -> None:
    url, settings = console
    name, token = person(settings)
    _, ids = open_items(settings, [2, 3])
    ops = settings.ops_database_url or ""

    other = bpo_review("claim", str(ids[3]), "--as", "someone-else", token=token, url=url, ops=ops)
    assert other.exit_code == 2 and f"BPO_TOKEN is {name}'s API token" in other.stderr
    assert review.get_item(settings, ids[3]).assignee is None

    claimed = bpo_review("claim", str(ids[3]), "--as", name, token=token, url=url, ops=ops)
    assert claimed.exit_code == 0, claimed.output
    assert f"item {ids[3]} claimed by {name}" in claimed.stdout
    assert review.get_item(settings, ids[3]).assignee == name

    nxt = bpo_review("next", token=token, url=url, ops=ops)  # the one held comes first, shown with its fields
    assert nxt.exit_code == 0 and f"item {ids[3]} claimed by {name}" in nxt.stdout and "email" in nxt.stdout

    back = bpo_review("unclaim", str(ids[3]), token=token, url=url, ops=ops)
    assert back.exit_code == 0 and f"item {ids[3]} is back in the queue" in back.stdout
    assert review.get_item(settings, ids[3]).assignee is None
    again = bpo_review("unclaim", str(ids[3]), token=token, url=url, ops=ops)
    assert again.exit_code == 1 and "not held by" in again.stderr

    nxt = bpo_review("next", token=token, url=url, ops=ops)  # none held now: the soonest due free one
    assert f"item {ids[2]} claimed by {name}" in nxt.stdout
    acts = [e for e in review.audit_of(settings, item_id=ids[3]) if e.action != "created"]
    assert {e.action for e in acts} == {"claimed", "unclaimed"} and {e.actor for e in acts} == {name}


def test_a_correction_that_still_fails_shows_the_field_and_leaves_the_item_open(
        console: tuple[str, Settings], bpo_review: Run) -> None:
    url, settings = console
    name, token = person(settings)
    _, ids = open_items(settings, [2], email="two-at-example.com")
    ops = settings.ops_database_url or ""
    item = str(ids[2])

    unclaimed = bpo_review("resolve", item, "--approve", "--set", "email=Two@Example.com", token=token, url=url,
                           ops=ops)
    assert unclaimed.exit_code == 1 and f"claim item {item} first" in unclaimed.stderr
    bpo_review("claim", item, token=token, url=url, ops=ops)
    failing = bpo_review("resolve", item, "--approve", "--set", "email=still wrong", token=token, url=url, ops=ops)
    assert failing.exit_code == 3, failing.output
    assert f"item {item} stays open" in failing.stderr
    assert "email: An email address must have an @-sign" in failing.stderr  # the field, and why it still fails
    assert review.get_item(settings, ids[2]).status == "open"
    as_json = bpo_review("resolve", item, "--approve", "--set", "email=x", "--json", token=token, url=url, ops=ops)
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)["failures"][0]["field"] == "email"

    done = bpo_review("resolve", item, "--approve", "--set", "email=Two@Example.com", "--json", token=token, url=url,
                      ops=ops)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout) == {"item_id": ids[2], "status": "approved", "open_left": 1, "resumed": False,
                                       "rerun": None}
    decided = review.get_item(settings, ids[2])
    assert decided.decided_by == name and decided.decision["email"] == "two@example.com"


def test_an_item_another_agent_holds_is_refused_with_who_holds_it(console: tuple[str, Settings],
                                                                   bpo_review: Run) -> None:
    url, settings = console
    ann, ann_token = person(settings)
    _, bob_token = person(settings)
    _, ids = open_items(settings, [2])
    ops = settings.ops_database_url or ""
    assert bpo_review("claim", str(ids[2]), token=ann_token, url=url, ops=ops).exit_code == 0

    for args in (["claim", str(ids[2])], ["resolve", str(ids[2]), "--reject", "--reason", "mine now"]):
        refused = bpo_review(*args, token=bob_token, url=url, ops=ops)
        assert refused.exit_code == 1 and f"item {ids[2]} is claimed by {ann}" in refused.stderr, args
    item = review.get_item(settings, ids[2])
    assert item.status == "open" and item.assignee == ann


def test_bulk_approve_over_the_api_approves_what_passes_as_the_token_user(console: tuple[str, Settings],
                                                                        bpo_review: Run) -> None:
    url, settings = console
    name, token = person(settings)
    run_id = str(uuid.uuid4())
    ops = settings.ops_database_url or ""
    store(ops, [make_item(run_id, 2, failed_checks=FLAGGED), make_item(run_id, 3, email="three-at-example.com")])
    keep_open(ops, run_id)
    ids = {r: item_id(settings, run_id, r) for r in (2, 3, 999)}

    done = bpo_review("resolve", "--all-open", "--run", run_id, "--approve-passing", "--json", token=token, url=url,
                      ops=ops)
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["selected"] == 3
    assert report["decided"] == {str(ids[2]): "approved", str(ids[999]): "approved"}
    assert {f["field"] for f in report["left_open"][str(ids[3])]} == {"email"}
    assert report["refused"] == {} and report["resumed"] == []
    assert review.get_item(settings, ids[2]).decided_by == name and review.get_item(settings, ids[3]).status == "open"

    many = bpo_review("resolve", str(ids[3]), str(ids[2]), "--decision", '{"approve": false}', token=token, url=url,
                      ops=ops)
    assert many.exit_code == 1 and "one item at a time" in many.stderr


def test_a_token_without_a_reachable_console_is_an_error_never_a_fall_back(console: tuple[str, Settings],
                                                                          bpo_review: Run) -> None:
    url, settings = console
    _, token = person(settings)
    _, ids = open_items(settings, [2])
    ops = settings.ops_database_url or ""
    down = f"http://127.0.0.1:{free_port()}"

    for args in (["list"], ["resolve", str(ids[2]), "--reject", "--reason", "no console"]):
        res = bpo_review(*args, token=token, url=down, ops=ops)
        assert res.exit_code == 1, res.output
        assert f"the console at {down} cannot be reached" in res.stderr and "BPO_TOKEN is set" in res.stderr
    assert review.get_item(settings, ids[2]).status == "open"  # the database was not used instead

    wrong = bpo_review("list", token="bpo_not-a-token", url=url, ops=ops)
    assert wrong.exit_code == 1 and "does not accept this API token" in wrong.stderr
    remote = bpo_review("list", token=token, url="http://console.example:8700", ops=ops)
    assert remote.exit_code == 1 and "unencrypted" in remote.stderr


def test_without_a_token_the_cli_works_on_the_database(console: tuple[str, Settings], bpo_review: Run) -> None:
    url, settings = console
    _, ids = open_items(settings, [2, 3])
    ops = settings.ops_database_url or ""
    down = f"http://127.0.0.1:{free_port()}"  # no console is needed, nor asked

    helped = bpo_review("--help", token=None, url=down, ops=ops)
    assert "BPO_TOKEN" in helped.stdout and "ops database directly" in helped.stdout
    claimed = bpo_review("claim", str(ids[2]), "--as", "carol", token=None, url=down, ops=ops)
    assert claimed.exit_code == 0 and f"item {ids[2]} claimed by carol" in claimed.stdout
    done = bpo_review("resolve", str(ids[2]), "--reject", "--reason", "test data", "--as", "carol", token=None,
                      url=down, ops=ops)
    assert done.exit_code == 0, done.output
    assert review.get_item(settings, ids[2]).decided_by == "carol"
    held = bpo_review("resolve", str(ids[3]), "--reject", "--reason", "x", "--as", "dave", token=None, url=down,
                      ops=ops)
    assert held.exit_code == 0  # the database path keeps the service's rules only: no claim needed first
