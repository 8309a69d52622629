"""Twenty agents at once against the console's API on loopback: every item decided once, every run resumed.

The suite runs 120 items over four runs (the 2,000-item run with its throughput is a benchmark's: it takes
minutes on this machine, where the server and the twenty clients share one Python process and two CPUs).

A real uvicorn server on a free 127.0.0.1 port, a real Prefect server holding the paused runs, and the
SQLite ops database. Each agent is a thread with its own httpx client and API token: it lists open
items, claims one, and resolves it (most rejected, one in twenty approved with re-validation). Agents
race for the same items all the time; a lost race is a 409, never a second decision.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from bpo import users
from bpo.db.models import AuditEvent, ReviewItem
from bpo.db.session import session_scope
from bpo.settings import Settings
from tests.test_review import make_item, store

AGENTS = 20
RUNS = 4
ITEMS_PER_RUN = 30
FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]


def _agent(base: str, token: str, decided: Counter[int], lost: list[int], errors: list[str], seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        while True:
            page = http.get("/api/items", params={"status": "open", "assignee": "", "per_page": 40, "counts": False})
            if page.status_code != 200:
                errors.append(f"list {page.status_code}: {page.text[:200]}")
                return
            items = page.json()["items"]
            if not items:
                return
            item = rng.choice(items)  # agents often pick the same one: the claim decides
            claimed = http.post(f"/api/items/{item['id']}/claim")
            if claimed.status_code == 409:
                lost.append(item["id"])
                continue
            if claimed.status_code != 200:
                errors.append(f"claim {claimed.status_code}: {claimed.text[:200]}")
                return
            body = ({"approve": True} if item["id"] % 20 == 0 else {"approve": False, "reason": "not a customer"})
            done = http.post(f"/api/items/{item['id']}/resolve", json=body)
            if done.status_code != 200:
                errors.append(f"resolve {done.status_code}: {done.text[:200]}")
                return
            decided[item["id"]] += 1


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_twenty_agents_resolve_every_item_once_and_every_run_resumes(
        prefect_api: str, console_server: tuple[str, Settings]) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Paused, Running

    base, settings = console_server

    @flow(name="awaits-agents")
    def awaits_agents() -> None:
        return None

    url = settings.ops_database_url or ""
    later = datetime.now(UTC) + timedelta(days=1)
    with get_client(sync_client=True) as client:
        run_ids = []
        for _ in range(RUNS):
            run = client.create_flow_run(awaits_agents, state=Running())
            client.set_flow_run_state(run.id, Paused(timeout_seconds=3600), force=True)
            run_ids.append(str(run.id))
            store(url, [make_item(str(run.id), r, failed_checks=FLAGGED, due_at=later)
                        for r in range(2, ITEMS_PER_RUN + 2)])
        tokens = [users.issue_token(settings, users.add_user(settings, f"agent{n}-{uuid.uuid4().hex[:6]}",
                                                             "a long enough password", "agent").name)[1]
                  for n in range(AGENTS)]
        decided: Counter[int] = Counter()
        lost: list[int] = []
        errors: list[str] = []
        threads = [threading.Thread(target=_agent, args=(base, t, decided, lost, errors, n))
                   for n, t in enumerate(tokens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        assert lost, "agents raced for items (a claim lost is refused, not doubled)"

        assert not errors, errors[:5]
        assert len(decided) == RUNS * ITEMS_PER_RUN and set(decided.values()) == {1}, "each item decided once"
        with session_scope(url) as s:
            assert s.scalar(select(func.count()).select_from(ReviewItem).where(ReviewItem.status == "open")) == 0
            decisions = s.scalar(select(func.count()).select_from(AuditEvent).where(
                AuditEvent.action.in_(["approved", "rejected"]))) or 0
            assert decisions == RUNS * ITEMS_PER_RUN, "the audit holds one decision per item"
            deciders = dict(s.execute(select(ReviewItem.id, ReviewItem.decided_by)).tuples().all())
            claimers = dict(s.execute(select(AuditEvent.item_id, AuditEvent.actor).where(
                AuditEvent.action == "claimed")).tuples().all())
        assert all(deciders[i] == claimers[i] for i in decided), "whoever claimed an item decided it"
        for run_id in run_ids:
            assert not client.read_flow_run(uuid.UUID(run_id)).state.is_paused(), f"run {run_id} was not resumed"
