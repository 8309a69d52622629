"""Runs that are killed or lose a service end, say how, and a re-run gives exact rows (the real stack)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import create_engine, func, select

from bpo.db.models import ReviewItem, Run
from bpo.db.session import session_scope
from bpo.samples import make_records, to_csv
from bpo.target import count_rows
from tests.cli import BPO, bpo

pytestmark = pytest.mark.slow


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def start(batch: Path, **env: str) -> subprocess.Popen[str]:
    """`bpo run` as a person starts it, in its own process group (so the whole group can be killed)."""
    return subprocess.Popen([*BPO, "run", "data-entry", str(batch), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env={**os.environ, **env})


def run_of(batch: Path, *, status: tuple[str, ...] | None = None) -> Run | None:
    with session_scope(os.environ["BPO_OPS_DATABASE_URL"]) as s:
        q = select(Run).where(Run.batch == str(batch.resolve())).order_by(Run.started_at.desc())
        run = s.scalars(q).first()
        return run if run is not None and (status is None or run.status in status) else None


def open_items(run_id: str) -> list[dict[str, Any]]:
    res = bpo("review", "list", "--json", "--run", run_id)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def waiting_run(batch: Path) -> Run:
    run = wait_for(lambda: run_of(batch, status=("waiting_review",)), 120, "the run to wait for review")
    wait_for(lambda: paused(run.flow_run_id), 30, "the run to pause")
    return run


def paused(run_id: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(run_id)).state
    return bool(state and state.is_paused())


def batch_of(tmp_path: Path, name: str, n: int, *, review: float, start_key: int, seed: int) -> tuple[Path, list]:
    folder = tmp_path / name
    folder.mkdir()
    records = make_records(n, seed=seed, review_fraction=review, start=start_key)
    (folder / "forms.csv").write_bytes(to_csv(records))
    return folder, records


def reject_all(run_id: str) -> subprocess.CompletedProcess[str]:
    items = open_items(run_id)
    assert items
    last = None
    for item in items:
        last = bpo("review", "resolve", str(item["id"]), "--reject", "--reason", "test", "--as", "agent")
        assert last.returncode == 0, last.stderr
    assert last is not None
    return last


def target_count(url: str) -> int:
    return count_rows(create_engine(url), "customers")


def no_values(text: str, records: list[dict[str, Any]]) -> None:
    for r in records[:50]:
        for field in ("email", "phone", "last_name"):
            value = str(r.get(field) or "")
            assert len(value) < 5 or value not in text, f"a record's {field} is in the output"


def test_killed_while_paused_is_crashed_its_resolve_says_rerun_and_retry_loads_exact_rows(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    batch, _ = batch_of(tmp_path, "paused", 60, review=0.05, start_key=70_000, seed=51)
    proc = start(batch, BPO_REVIEW_PAUSE_SECONDS="2")  # a pause runs out every 2 s: the run must pause again
    run = waiting_run(batch)

    def paused_twice() -> bool:
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(UUID(run.flow_run_id))
        return sum(s.is_paused() for s in states) >= 2 and not any(s.is_failed() for s in states)

    wait_for(paused_twice, 30, "a second pause after the first timed out")
    assert run_of(batch).status == "waiting_review"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    listed = bpo("runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    mine = next(r for r in json.loads(listed.stdout) if r["flow_run_id"] == run.flow_run_id)
    assert mine["status"] == "crashed" and "ended without a word" in mine["message"]
    items = open_items(run.flow_run_id)
    assert {i["run_status"] for i in items} == {"crashed"}
    last = reject_all(run.flow_run_id)
    assert "run resumed" not in last.stdout
    assert f"bpo runs retry {run.flow_run_id}" in last.stdout

    retried = subprocess.run([*BPO, "runs", "retry", run.flow_run_id, "--json"], capture_output=True, text=True,
                             timeout=180)
    assert retried.returncode == 0, retried.stderr
    result = json.loads(retried.stdout)
    held = sum(len(i["source"].get("records") or [i]) for i in items)  # an item of a repeated key holds each
    assert result["rejected"] == held and result["loaded"] == 60 - held
    assert target_count(target_db) == result["loaded"]
    with session_scope(os.environ["BPO_OPS_DATABASE_URL"]) as s:
        per_run = dict(s.execute(select(ReviewItem.flow_run_id, func.count()).where(ReviewItem.flow_run_id.in_(
            [run.flow_run_id, result["flow_run_id"]])).group_by(ReviewItem.flow_run_id)).tuples().all())
    # the retry asked nothing again: the crashed run keeps its decided items (its history), the retry holds
    # them as decisions carried over, and no item of either run is open
    assert per_run == {run.flow_run_id: len(items), result["flow_run_id"]: len(items)}
    assert result["carried_over"] == len(items) and open_items(run.flow_run_id) == []
    assert open_items(result["flow_run_id"]) == []
    again = bpo("runs", "retry", result["flow_run_id"], env={"COLUMNS": "400"})
    assert again.returncode != 0 and "completed; there is nothing to retry" in again.stderr


def test_killed_during_load_then_rerun_gives_exact_rows(stack: dict[str, str], target_db: str,
                                                        tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    batch, _ = batch_of(tmp_path, "load", 8000, review=0.0, start_key=80_000, seed=52)
    # the target database is held locked, so the load is caught running however fast it would be (it waits
    # on the lock, up to the engine's busy timeout); the kill comes while it waits
    lock = sqlite3.connect(target_db.removeprefix("sqlite:///"), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    proc = start(batch)
    run = wait_for(lambda: run_of(batch), 60, "the run to open")

    def loading() -> bool:
        with get_client(sync_client=True) as client:
            trs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[UUID(run.flow_run_id)])))
        return any(t.name.startswith(("load_passed", "route_and_load")) and t.state and t.state.is_running()
                   for t in trs)

    try:
        wait_for(loading, 120, "the load to start")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    rerun = subprocess.run([*BPO, "run", "data-entry", str(batch), "--json"], capture_output=True, text=True,
                           timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["loaded"] == 8000 - result["superseded"] == target_count(target_db)
    with session_scope(os.environ["BPO_OPS_DATABASE_URL"]) as s:
        killed = s.get(Run, run.flow_run_id)
        assert killed is not None and killed.status == "crashed", killed.status if killed else None


def test_seaweedfs_stopped_mid_run_ends_with_one_clear_message(stack: dict[str, str], target_db: str,
                                                              tmp_path: Path) -> None:
    from bpo.stack import free_port, start_seaweedfs, stop

    port = free_port()
    key, secret = "bpo-private", uuid.uuid4().hex
    weed = start_seaweedfs(tmp_path / "weed", s3_port=port, access_key=key, secret_key=secret,
                           bucket=stack["bucket"], log=tmp_path / "weed.log")
    endpoint = f"http://127.0.0.1:{port}"
    try:
        batch, records = batch_of(tmp_path, "s3", 40, review=0.05, start_key=90_000, seed=53)
        proc = start(batch, BPO_S3_ENDPOINT_URL=endpoint, BPO_S3_PORT=str(port), BPO_S3_ACCESS_KEY_ID=key,
                     BPO_S3_SECRET_ACCESS_KEY=secret)
        run = waiting_run(batch)
        stop(weed)
        reject_all(run.flow_run_id)
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        stop(weed)
    assert proc.returncode != 0
    assert f"S3 is not reachable at {endpoint}: run `bpo stack status`" in stderr, stderr
    # the records that passed were loaded before the run waited for review; the message says how many
    loaded = target_count(target_db)
    assert "Traceback" not in stderr and loaded > 0 and f"records already loaded by this run: {loaded}" in stderr
    no_values(stdout + stderr, records)
    assert run_of(batch).status == "failed"


def test_a_locked_sqlite_target_is_named_and_no_record_value_is_shown(stack: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from bpo.db.session import engine_for
    from bpo.spec import load_spec
    from bpo.target import ensure_table

    path = tmp_path / "locked-target.db"
    url = f"sqlite:///{path}?timeout=1"
    ensure_table(engine_for(url), load_spec("customer_onboarding"))  # the rows' INSERT is what meets the lock
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        batch, records = batch_of(tmp_path, "locked", 30, review=0.0, start_key=95_000, seed=54)
        res = subprocess.run([*BPO, "run", "data-entry", str(batch)], capture_output=True, text=True, timeout=180,
                             env={**os.environ, "BPO_TARGET_DATABASE_URL": url})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert res.returncode != 0
    assert f"the target database {url} is locked by another program" in res.stderr, res.stderr
    assert "records already loaded by this run:" in res.stderr and "Traceback" not in res.stderr
    no_values(res.stdout + res.stderr, records)
    run = run_of(batch)
    assert run is not None and run.status == "failed" and "is locked" in (run.message or "")
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(run.flow_run_id)])))
    logged = "\n".join(log.message for log in logs)
    assert "Traceback" in logged, "the traceback is in the run's log"
    no_values(logged, records)


PG_BIN = Path("/usr/lib/postgresql/15/bin")


def test_postgresql_stopped_mid_run_ends_with_one_clear_message(stack: dict[str, str], tmp_path: Path) -> None:
    from bpo.stack import free_port
    from tests.conftest import _as_pg_user, pg_owns

    base = Path(tempfile.mkdtemp(prefix="bpo-pg-fault-"))
    pg_owns(base)
    data, port = base / "data", free_port()
    pg_ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(_as_pg_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "bpo", "--auth=trust"]), check=True,
                   capture_output=True)
    subprocess.run(_as_pg_user([pg_ctl, "-D", str(data), "-l", str(base / "pg.log"), "-w", "start", "-o",
                                f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"]),
                   check=True, capture_output=True)
    url = f"postgresql+psycopg://bpo@127.0.0.1:{port}/postgres"
    try:
        batch, records = batch_of(tmp_path, "pg", 40, review=0.05, start_key=97_000, seed=55)
        proc = start(batch, BPO_TARGET_DATABASE_URL=url)
        run = waiting_run(batch)
        subprocess.run(_as_pg_user([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), check=True,
                       capture_output=True)
        reject_all(run.flow_run_id)
        stdout, stderr = proc.communicate(timeout=150)
    finally:
        subprocess.run(_as_pg_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    assert proc.returncode != 0
    assert f"the target database {url} is not reachable" in stderr, stderr
    assert "records already loaded by this run: unknown" in stderr and "Traceback" not in stderr
    no_values(stdout + stderr, records)


def test_an_inbox_batch_whose_run_fails_to_start_is_claimed_again_next_time(stack: dict[str, str]) -> None:
    from bpo.db.models import Batch
    from bpo.run import get_store
    from flows.inbox import dispatch_inbox

    store = get_store()
    process = f"fault-{uuid.uuid4().hex[:8]}"
    prefix = store.key("inbox", process, "b1")
    store.put_bytes(f"{prefix}/part.csv", to_csv(make_records(3, seed=56, review_fraction=0.0, start=99_000)))

    def claims() -> list[tuple[str, str | None]]:
        with session_scope(os.environ["BPO_OPS_DATABASE_URL"]) as s:
            return [(b.batch, b.flow_run_id) for b in s.scalars(select(Batch).where(Batch.process == process))]

    assert dispatch_inbox(process=process, deployment="no-such-flow/no-such-deployment", settle_seconds=0) == []
    assert claims() == [], "a batch whose run could not start is not left claimed"
    assert dispatch_inbox(process=process, deployment="no-such-flow/no-such-deployment", settle_seconds=0) == []
    assert claims() == []
