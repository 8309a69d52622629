"""How runs end (bpo.runs): dead runs swept, short failure messages without record values."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from bpo import runs
from bpo.db.models import AuditEvent, Batch, ReviewItem, Run
from bpo.db.session import engine_for, session_scope
from bpo.review import expire_overdue, get_item
from bpo.settings import Settings
from tests.test_review import keep_open, make_item, store


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def add_run(url: str, run_id: str, *, status: str = "running", batch: str = "/data/b1", pid: int | None = None,
            host: str | None = None) -> None:
    with session_scope(url) as s:
        s.add(Run(flow_run_id=run_id, process="customer-onboarding", batch=batch, status=status, s3_prefix="p",
                  host=host, pid=pid, pid_started=None))


def status_of(url: str, run_id: str) -> Run:
    with session_scope(url) as s:
        run = s.get(Run, run_id)
        assert run is not None
        return run


def _items(url: str, run_id: str) -> list[ReviewItem]:
    with session_scope(url) as s:
        return list(s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == run_id)))


def test_an_escalated_item_past_its_escalated_due_time_is_rejected_and_audited(settings: Settings) -> None:
    url = settings.ops_database_url or ""
    run_id = str(uuid.uuid4())
    past = datetime.now(UTC) - timedelta(minutes=5)
    store(url, [make_item(run_id, 1, due_at=past, on_timeout="escalate", queue="supervisor")])
    keep_open(url, run_id)
    item_id = next(i.id for i in _items(url, run_id) if i.record_key == "f.csv:1")
    done = expire_overdue(settings)
    item = get_item(settings, item_id)
    assert item.status == "rejected" and item.reason == "review timed out after escalation", item.status
    assert done["rejected"] >= 1
    with session_scope(url) as s:
        actions = [(e.action, e.detail) for e in s.scalars(select(AuditEvent).where(AuditEvent.item_id == item_id))]
    assert ("timed_out", {"action": "reject"}) in actions


def test_mark_ended_keeps_the_first_word_and_never_reopens_a_completed_run(settings: Settings) -> None:
    url = settings.ops_database_url or ""
    run_id, done_id = str(uuid.uuid4()), str(uuid.uuid4())
    add_run(url, run_id)
    add_run(url, done_id, status="completed")
    assert runs.mark_ended(settings, run_id, "failed", "S3 is not reachable")
    assert not runs.mark_ended(settings, run_id, "crashed", "later word")
    assert not runs.mark_ended(settings, done_id, "crashed", "x")
    assert (status_of(url, run_id).status, status_of(url, run_id).message) == ("failed", "S3 is not reachable")
    assert status_of(url, done_id).status == "completed"


def test_retry_refuses_a_completed_run_and_an_unknown_one(settings: Settings) -> None:
    url = settings.ops_database_url or ""
    done_id = str(uuid.uuid4())
    add_run(url, done_id, status="completed")
    with pytest.raises(runs.RunError, match="completed; there is nothing to retry"):
        runs.retry_target(settings, done_id)
    with pytest.raises(runs.RunError, match="no run"):
        runs.retry_target(settings, str(uuid.uuid4()))
    failed = str(uuid.uuid4())
    add_run(url, failed, status="crashed")
    assert runs.retry_target(settings, failed).flow_run_id == failed


def test_database_errors_carry_no_record_values(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (email TEXT UNIQUE, phone TEXT)"))
        conn.execute(text("INSERT INTO customers VALUES (:e, :p)"), {"e": "ann.lee@example.com", "p": "+14155550101"})
    with pytest.raises(DBAPIError) as info, engine.begin() as conn:
        conn.execute(text("INSERT INTO customers VALUES (:e, :p)"), {"e": "ann.lee@example.com", "p": "+14155550101"})
    assert "ann.lee@example.com" not in str(info.value) and "+14155550101" not in str(info.value)
    message = runs.explain_failure(info.value, Settings(target_database_url=url), loaded=3)
    assert "ann.lee" not in message and "records already loaded by this run: 3" in message


def test_a_locked_target_is_named_without_its_password_and_says_what_was_loaded(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE customers (email TEXT)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = engine_for(f"sqlite:///{path}?timeout=0.2")
    try:
        with pytest.raises(DBAPIError) as info, engine.begin() as conn:
            conn.execute(text("INSERT INTO customers VALUES (:e)"), {"e": "bob@example.com"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = runs.explain_failure(info.value, Settings(target_database_url=f"sqlite:///{path}"), loaded=0)
    assert message == (f"the target database sqlite:///{path} is locked by another program (close it, or wait "
                       f"for it to finish, then re-run); records already loaded by this run: 0")
    assert runs.safe_url("postgresql+psycopg://bpo:s3cret@db:5432/t") == "postgresql+psycopg://bpo:***@db:5432/t"


def test_s3_out_of_reach_says_where_and_what_to_do() -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    from bpo.stack import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                          region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(EndpointConnectionError) as info:
        client.list_buckets()
    message = runs.explain_failure(RuntimeError("load failed") .with_traceback(None), Settings())
    assert message.startswith("RuntimeError: load failed")
    try:
        raise RuntimeError("reading part 3") from info.value
    except RuntimeError as wrapped:
        message = runs.explain_failure(wrapped, Settings(s3_endpoint_url=endpoint), loaded=None)
    assert message.startswith(f"S3 is not reachable at {endpoint}: run `bpo stack status`")


def test_a_run_whose_process_is_gone_is_not_taken_for_a_live_one() -> None:
    import os

    host, pid, started = runs.this_process()
    assert runs.process_alive(pid, started)
    assert not runs.process_alive(dead_pid(), None)
    assert not runs.process_alive(os.getpid(), (started or 0) + 1), "a reused pid is another process"


def test_release_claim_forgets_only_a_claim_without_a_run(settings: Settings) -> None:
    url = settings.ops_database_url or ""
    b1, b2 = f"s3://b/{uuid.uuid4()}/", f"s3://b/{uuid.uuid4()}/"
    with session_scope(url) as s:
        s.add_all([Batch(process="data-entry", batch=b1), Batch(process="data-entry", batch=b2, flow_run_id="r")])
    runs.release_claim(settings, "data-entry", b1)
    runs.release_claim(settings, "data-entry", b2)
    with session_scope(url) as s:
        left = set(s.scalars(select(Batch.batch).where(Batch.batch.in_([b1, b2]))))
    assert left == {b2}
