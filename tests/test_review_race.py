"""Two agents acting on one item at the same moment: one decision, one claim, on SQLite and on PostgreSQL.

Each round starts two threads on a barrier, so both calls reach the database together; a service that
reads the item, then writes it, lets both through (SQLite ignores SELECT … FOR UPDATE). The rounds are
repeated because a race lost once proves little.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bpo.db.session import upgrade
from bpo.review import ReviewError, claim, get_item, resolve
from bpo.settings import Settings
from tests.test_review import events, item_id, keep_open, make_item, store

ROUNDS = 12
AGENTS = ("ann", "bob")


def race(*calls: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Run the calls at once (a barrier releases them together); ("ok", result) or ("refused", error) each."""
    barrier = threading.Barrier(len(calls), timeout=60)

    def go(call: Callable[[], Any]) -> tuple[str, Any]:
        barrier.wait()
        try:
            return ("ok", call())
        except ReviewError as exc:
            return ("refused", exc)

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result(timeout=120) for f in [pool.submit(go, c) for c in calls]]


def decide_at_once(settings: Settings, round_no: int) -> None:
    run_id = str(uuid.uuid4())
    url = settings.ops_database_url
    # an odd round races an approval (validated again, slower) against a rejection
    store(url, [make_item(run_id, 2, seed=round_no)])
    keep_open(url, run_id)
    iid = item_id(settings, run_id, 2)
    approve_first = round_no % 2 == 1

    def decide(agent: str) -> Callable[[], Any]:
        if approve_first and agent == "ann":
            return lambda: resolve(settings, iid, approve=True, actor=agent)
        return lambda: resolve(settings, iid, approve=False, actor=agent, reason=f"rejected by {agent}")

    results = race(*(decide(a) for a in AGENTS))
    won = [AGENTS[n] for n, (how, _) in enumerate(results) if how == "ok"]
    assert len(won) == 1, f"round {round_no}: {len(won)} decisions taken: {results}"
    winner = won[0]
    item = get_item(settings, iid)
    assert item.decided_by == winner and item.assignee == winner
    (_, refusal), = [r for r in results if r[0] == "refused"]
    assert re.search(rf"already {item.status} \(by {winner}\)", str(refusal)), str(refusal)
    decisions = [e for e in events(url, iid) if e.action in ("approved", "rejected")]
    assert [(e.actor, e.action) for e in decisions] == [(winner, item.status)]
    if item.status == "rejected":
        assert item.reason == f"rejected by {winner}"


def claim_at_once(settings: Settings, round_no: int) -> None:
    run_id = str(uuid.uuid4())
    store(settings.ops_database_url, [make_item(run_id, 2, seed=round_no)])
    iid = item_id(settings, run_id, 2)
    results = race(*(lambda agent=a: claim(settings, iid, agent) for a in AGENTS))
    won = [AGENTS[n] for n, (how, _) in enumerate(results) if how == "ok"]
    assert len(won) == 1, f"round {round_no}: both agents hold the item: {results}"
    (_, refusal), = [r for r in results if r[0] == "refused"]
    assert f"claimed by {won[0]}" in str(refusal)
    assert get_item(settings, iid).assignee == won[0]
    assert [e.actor for e in events(settings.ops_database_url, iid) if e.action == "claimed"] == won


@pytest.fixture
def sqlite_ops(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture(scope="module")
def postgres_ops(postgres: str) -> Iterator[Settings]:
    """A database of its own on the test PostgreSQL, migrated like a production ops database."""
    name = f"ops_race_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield Settings(ops_database_url=url)
    admin.dispose()


def test_two_agents_deciding_one_item_at_once_on_sqlite_take_one_decision(sqlite_ops: Settings) -> None:
    for n in range(ROUNDS):
        decide_at_once(sqlite_ops, n)


def test_two_agents_claiming_one_item_at_once_on_sqlite_one_holds_it(sqlite_ops: Settings) -> None:
    for n in range(ROUNDS):
        claim_at_once(sqlite_ops, n)


@pytest.mark.slow
def test_two_agents_deciding_one_item_at_once_on_postgres_take_one_decision(postgres_ops: Settings) -> None:
    for n in range(ROUNDS):
        decide_at_once(postgres_ops, n)


@pytest.mark.slow
def test_two_agents_claiming_one_item_at_once_on_postgres_one_holds_it(postgres_ops: Settings) -> None:
    for n in range(ROUNDS):
        claim_at_once(postgres_ops, n)
