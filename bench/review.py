"""Benchmark of the review console against 10,000 open items, with the CLI as its baseline.

    python -m bench.review [--items 10000] [--samples 40] [--agents 20] [--agent-items 2000] [--keep]

Starts a Prefect server (for the paused runs) and ``bpo console`` as its own process on free loopback
ports, in a temporary folder with a SQLite ops database holding ``--items`` open record items. Then
measures, each figure against what it is compared with in the same run:
- the queue: ``GET /api/items`` and the queue page ``GET /`` (signed in), median and p95;
- resolve with re-validation: ``POST /api/items/{id}/resolve`` approving a claimed item (the record is
  normalized and validated again), median and p95, against ``bpo review resolve ID --approve`` as a
  subprocess (today's CLI, one process start per decision);
- resolve-to-resume: from the last item's resolve to its paused Prefect run leaving ``Paused``;
- throughput: ``--agents`` agents (threads, each with its own token and client) resolving
  ``--agent-items`` items spread over four paused runs; every item must be decided once.
Prints one JSON line on stdout (progress on stderr). Targets: p95 ≤ 300 ms for the queue and for resolve,
resume median ≤ 2 s. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.data_entry import log
from bench.small_batch import start_stack
from tests.test_review import make_item, store  # the suite's record items: valid values, one flagged check

FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]
PASSWORD = "bench password 1234"


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(samples) * 1000, 1), "p95_ms": round(_p95(samples) * 1000, 1),
            "n": len(samples)}


def _paused_run(client: Any, name: str) -> str:
    from prefect import flow
    from prefect.states import Paused, Running

    @flow(name=name)
    def waits() -> None:
        return None

    run = client.create_flow_run(waits, state=Running())
    client.set_flow_run_state(run.id, Paused(timeout_seconds=3600), force=True)
    return str(run.id)


def _seed(url: str, run_id: str, rows: range, *, due_days: float = 1) -> None:
    due = datetime.now(UTC) + timedelta(days=due_days)
    store(url, [make_item(run_id, r, failed_checks=FLAGGED, due_at=due) for r in rows])


def _ids(url: str, run_id: str) -> list[int]:
    from sqlalchemy import select

    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope

    with session_scope(url) as s:
        return list(s.scalars(select(ReviewItem.id).where(ReviewItem.flow_run_id == run_id).order_by(ReviewItem.id)))


def _start_console(root: Path, env: dict[str, str], port: int, stack: ExitStack) -> str:
    log_file = (root / "console.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bpo.cli", "console", "--port", str(port)], env=env,
                            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(lambda: (proc.terminate(), proc.wait(timeout=20)))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/api/openapi.json", timeout=2).status_code == 200:
                return base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the console did not start: {(root / 'console.log').read_text()[-2000:]}")
        time.sleep(0.2)


def _signed_in(base: str, name: str) -> httpx.Client:
    import re

    http = httpx.Client(base_url=base, timeout=60, follow_redirects=True)
    page = http.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token, "no sign-in form"
    done = http.post("/login", data={"name": name, "password": PASSWORD, "login_csrf": token[1]})
    assert done.status_code == 200 and "Queue" in done.text, done.status_code
    return http


def _agent(base: str, token: str, decided: Counter[int], lost: list[int], errors: list[str]) -> None:
    import random

    rng = random.Random(token)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=120) as http:
        while True:
            page = http.get("/api/items", params={"status": "open", "assignee": "", "per_page": 40,
                                                  "counts": False, "queue": "default", "process": "bench_agents"})
            if page.status_code != 200:
                errors.append(f"list {page.status_code}")
                return
            items = page.json()["items"]
            if not items:
                return
            item = rng.choice(items)
            claimed = http.post(f"/api/items/{item['id']}/claim")
            if claimed.status_code == 409:
                lost.append(item["id"])
                continue
            done = http.post(f"/api/items/{item['id']}/resolve", json={"approve": False, "reason": "bench"})
            if claimed.status_code != 200 or done.status_code != 200:
                errors.append(f"claim {claimed.status_code} resolve {done.status_code}: {done.text[:200]}")
                return
            decided[item["id"]] += 1


def bench(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from bpo import users
    from bpo.db.session import upgrade
    from bpo.settings import Settings
    from bpo.stack import free_port

    with ExitStack() as stack:
        env = {**os.environ, **start_stack(root, stack)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        from prefect.client.orchestration import get_client  # after start_stack has pointed Prefect at its server

        url = env["BPO_OPS_DATABASE_URL"]
        upgrade(url)
        settings = Settings(ops_database_url=url)
        name = f"bench-{uuid.uuid4().hex[:6]}"
        users.add_user(settings, name, PASSWORD, "supervisor")
        token = users.issue_token(settings, name)[1]
        with get_client(sync_client=True) as client:
            t0 = time.perf_counter()
            queue_run = _paused_run(client, "bench-queue")
            _seed(url, queue_run, range(2, args.items + 2))
            log(f"{args.items} open items written in {time.perf_counter() - t0:.1f}s")
            base = _start_console(root, env, free_port(), stack)
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            api.get("/api/items")  # first request: the server's lazy imports
            # and the first check waits for the console's Great Expectations import (a thread taken at start,
            # which holds the interpreter meanwhile): the figures below are of a console at work, not starting
            api.post(f"/api/items/{_ids(url, queue_run)[-1]}/check", json={})
            lists, pages, resolves, clis = [], [], [], []
            for i in range(args.samples):
                t = time.perf_counter()
                got = api.get("/api/items", params={"per_page": 50, "page": 1 + i % 20})
                lists.append(time.perf_counter() - t)
                assert got.status_code == 200 and got.json()["total"] >= args.items
            browser = _signed_in(base, name)
            for i in range(args.samples):
                t = time.perf_counter()
                got = browser.get("/", params={"page": 1 + i % 20})
                pages.append(time.perf_counter() - t)
                assert got.status_code == 200
            ids = _ids(url, queue_run)
            for item_id in ids[:args.samples]:
                assert api.post(f"/api/items/{item_id}/claim").status_code == 200
                t = time.perf_counter()
                done = api.post(f"/api/items/{item_id}/resolve", json={"approve": True})
                resolves.append(time.perf_counter() - t)
                assert done.status_code == 200 and done.json()["status"] == "approved", done.text
            cli_env = {**env, "COLUMNS": "200"}
            cli_env.pop("BPO_TOKEN", None)  # the baseline is the CLI on the database, one process a decision
            for item_id in ids[args.samples:args.samples + args.cli_samples]:
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "bpo.cli", "review", "resolve", str(item_id), "--approve",
                                       "--as", name], env=cli_env, capture_output=True, text=True, timeout=120)
                clis.append(time.perf_counter() - t)
                assert proc.returncode == 0, proc.stderr[-1000:]
            log(f"queue and resolve measured; CLI resolve median {statistics.median(clis):.2f}s")

            resumes = []
            for _ in range(args.resumes):
                run_id = _paused_run(client, "bench-resume")
                _seed(url, run_id, range(2, 3))
                (item_id,) = _ids(url, run_id)
                api.post(f"/api/items/{item_id}/claim")
                t = time.perf_counter()
                done = api.post(f"/api/items/{item_id}/resolve", json={"approve": False, "reason": "bench"})
                assert done.status_code == 200, done.text
                while client.read_flow_run(uuid.UUID(run_id)).state.is_paused():
                    if time.perf_counter() - t > 30:
                        raise RuntimeError(f"run {run_id} was not resumed")
                    time.sleep(0.02)
                resumes.append(time.perf_counter() - t)

            agent_runs = [_paused_run(client, "bench-agents") for _ in range(4)]
            per_run = args.agent_items // len(agent_runs)
            for run_id in agent_runs:
                store(url, [make_item(run_id, r, process="bench_agents", failed_checks=FLAGGED,
                                      due_at=datetime.now(UTC) + timedelta(days=1)) for r in range(2, per_run + 2)])
            tokens = [users.issue_token(settings, users.add_user(settings, f"agent{n}-{uuid.uuid4().hex[:6]}",
                                                                 PASSWORD, "supervisor").name)[1]
                      for n in range(args.agents)]
            decided: Counter[int] = Counter()
            lost: list[int] = []
            errors: list[str] = []
            threads = [threading.Thread(target=_agent, args=(base, tok, decided, lost, errors)) for tok in tokens]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            took = time.perf_counter() - t
            if errors or len(decided) != per_run * len(agent_runs) or set(decided.values()) != {1}:
                raise RuntimeError(f"agents: {len(decided)} decided, errors {errors[:3]}")
            unresumed = [r for r in agent_runs if client.read_flow_run(uuid.UUID(r)).state.is_paused()]
            if unresumed:
                raise RuntimeError(f"runs not resumed: {unresumed}")
    return {
        "benchmark": "review", "open_items": args.items,
        "api_list": _summary(lists), "queue_page": _summary(pages),
        "resolve_with_revalidation": _summary(resolves),
        "cli_resolve": {"median_s": round(statistics.median(clis), 2), "n": len(clis)},
        "resolve_to_resume": {"median_s": round(statistics.median(resumes), 2), "max_s": round(max(resumes), 2),
                              "n": len(resumes)},
        "agents": {"agents": args.agents, "items": len(decided), "seconds": round(took, 1),
                   "items_per_second": round(len(decided) / took, 1), "claims_lost": len(lost)},
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--cli-samples", type=int, default=3)
    parser.add_argument("--resumes", type=int, default=5)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--agent-items", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bpo-bench-review-"))
    try:
        result = bench(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
