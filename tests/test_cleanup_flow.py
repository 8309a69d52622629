"""The database-cleanup flow end to end: a real Prefect server, SeaweedFS, SQLite and PostgreSQL target tables.

A generated customer table with known duplicates (and an orders table referencing it) is snapshotted,
standardized, de-duplicated, reviewed, applied and undone; every restored row is checked by content hash.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from sqlalchemy import create_engine, text

from bpo.cleanup.apply import log_of
from bpo.cleanup.rows import as_text, encode_row, row_hash
from bpo.cleanup.snapshot import profile
from bpo.cleanup.spec import load_cleanup_spec
from bpo.run import get_store
from tests.cli import BPO

pytestmark = pytest.mark.slow

FIRST = ["James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David", "Elizabeth",
         "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas", "Sarah", "Charles", "Karen",
         "Zoë", "José", "Łukasz", "Ünal", "Søren", "Anaïs", "Björn", "Chloé", "Dmitri", "Émile"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
        "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
        "Nguyen", "Müller", "O'Brien", "Kowalski", "Ivanov", "Tanaka", "Rossi", "Dubois", "Novák", "Østergaard"]
CITIES = ["Springfield", "Riverside", "Franklin", "Greenville", "Bristol", "Clinton", "Fairview", "Salem"]


def make_customers(n: int, dup_share: float, seed: int) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """``n`` distinct people, then a duplicate of ``dup_share`` of them (typos, reformatted values, a moved
    address, a missing value); returns the rows and each duplicate's original id."""
    rnd = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(1, n + 1):
        first, last = FIRST[i % len(FIRST)], LAST[(i * 7) % len(LAST)]
        rows.append({"customer_id": i, "first_name": first, "last_name": last,
                     "email": f"{first[:3].lower()}.{last[:4].lower()}{i}@example.com".replace("'", ""),
                     "phone": f"+1202555{i:04d}", "date_of_birth": f"19{50 + i % 45:02d}-{1 + i % 12:02d}-"
                                                                    f"{1 + i % 28:02d}",
                     "street": f"{10 + i} Main St", "city": CITIES[i % len(CITIES)], "postal_code": f"{10000 + i}",
                     "country": "US", "updated_at": f"2024-01-{1 + i % 28:02d}"})
    truth: dict[int, int] = {}
    next_id = n + 1
    for original in rnd.sample(rows[:n], int(n * dup_share)):
        dup = dict(original, customer_id=next_id)
        dup["first_name"] = original["first_name"].upper()  # a reformat
        dup["last_name"] = original["last_name"][:-1] + "x" if rnd.random() < 0.3 else original["last_name"]
        dup["phone"] = f"(202) 555-{original['phone'][-4:]}"  # the same number, written nationally
        y, m, d = original["date_of_birth"].split("-")
        dup["date_of_birth"] = f"{m}/{d}/{y}"
        if rnd.random() < 0.3:
            dup["street"] = f"{rnd.randint(1, 999)} Oak Ave"  # moved
        if rnd.random() < 0.3:
            dup["email"] = None
        dup["updated_at"] = "2025-06-01"
        rows.append(dup)
        truth[next_id] = original["customer_id"]
        next_id += 1
    return rows, truth


def create_tables(url: str, rows: list[dict[str, Any]], orders: list[tuple[int, int]]) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS orders"))
        conn.execute(text("DROP TABLE IF EXISTS customers"))
        conn.execute(text("CREATE TABLE customers (customer_id INTEGER PRIMARY KEY, first_name TEXT, last_name TEXT, "
                          "email TEXT, phone TEXT, date_of_birth TEXT, street TEXT, city TEXT, postal_code TEXT, "
                          "country TEXT, updated_at TEXT)"))
        conn.execute(text("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, "
                          "customer_id INTEGER REFERENCES customers(customer_id), amount INTEGER)"))
        if rows:
            conn.execute(text("INSERT INTO customers VALUES (:customer_id, :first_name, :last_name, :email, :phone, "
                              ":date_of_birth, :street, :city, :postal_code, :country, :updated_at)"), rows)
        if orders:
            conn.execute(text("INSERT INTO orders VALUES (:o, :c, 10)"), [{"o": o, "c": c} for o, c in orders])
    engine.dispose()


def table_hashes(url: str, table: str) -> dict[Any, str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM {table}"))  # noqa: S608 (a test's own fixed table name)
        columns = list(result.keys())
        out = {r[0]: row_hash(encode_row(columns, tuple(r))) for r in result}
    engine.dispose()
    return out


def _spec(tmp_path: Path, **changes: Any) -> Path:
    from bpo.spec import SPECS_DIR

    data = yaml.safe_load((SPECS_DIR / "customers_cleanup.yaml").read_text())
    data.update(changes)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def sqlite_table(tmp_path: Path, stack: dict[str, str]) -> Iterator[tuple[str, dict[int, int]]]:
    rows, truth = make_customers(300, 0.1, seed=7)
    url = f"sqlite:///{tmp_path}/client.db"
    orders = [(i, dup) for i, dup in enumerate(sorted(truth), start=1)] + [(1000, 1)]
    create_tables(url, rows, orders)
    yield url, truth


def _changes(run_id: str) -> list[Any]:
    from bpo.cleanup.apply import log_of
    from bpo.db.session import session_scope
    from bpo.settings import get_settings

    with session_scope(get_settings().ops_database_url or "") as s:
        return log_of(s, run_id)


@contextmanager
def _resolving_pairs(truth: dict[int, int], before_gate: Any = None) -> Iterator[None]:
    """An agent in another thread while the block runs: answers every open pair item by the truth (same /
    different), approves gates."""
    from bpo.cleanup.rows import decode_key
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.review import resolve
    from bpo.settings import get_settings

    def work(stop: threading.Event) -> None:
        settings = get_settings()
        while not stop.is_set():
            with session_scope(settings.ops_database_url or "") as s:
                open_ids = [(i.id, i.record_key) for i in s.query(ReviewItem).filter_by(kind="pair", status="open")]
                gates = [i.id for i in s.query(ReviewItem).filter_by(kind="gate", status="open")]
            for item_id in gates:
                if before_gate is not None:
                    before_gate()
                resolve(settings, item_id, actor="supervisor", approve=True, reason="the report looks right")
            for item_id, key in open_ids:
                left, right = (decode_key(k) for k in key.split("|"))
                same = truth.get(left, left) == truth.get(right, right)
                resolve(settings, item_id, actor="agent", decision={"verdict": "same" if same else "different",
                                                                   "reason": "checked by the truth"})
            time.sleep(0.3)

    with _agent(work):
        yield


@contextmanager
def _agent(work: Any) -> Iterator[None]:
    """``work(stop)`` in a thread, until the block ends and sets ``stop``, the event it polls."""
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def test_cleanup_on_sqlite_dry_run_then_merge_repoint_undo_and_a_rerun_asks_no_one_again(
        sqlite_table: tuple[str, dict[int, int]], tmp_path: Path) -> None:
    """A dry run changes nothing; a run merges the known duplicates (pairs answered by an agent) and re-points
    orders; its undo restores every row exactly; run again on the restored table, no one is asked anything:
    "same" answers carry over and "different" pairs stay apart."""
    from bpo.cleanup.undo import undo_run
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.settings import get_settings
    from flows.database_cleanup import database_cleanup

    url, truth = sqlite_table
    spec = str(_spec(tmp_path, thresholds={"auto_merge": 0.99, "review": 0.8, "gate_share": 1.0}))
    before = table_hashes(url, "customers")
    orders_before = table_hashes(url, "orders")
    dry = database_cleanup(database=url, table="customers", spec=spec, dry_run=True)
    assert dry["dry_run"] and dry["changes"]["clusters"] >= 1 and "applied" not in dry
    assert table_hashes(url, "customers") == before
    with session_scope(get_settings().ops_database_url or "") as s:
        assert not s.query(ReviewItem).filter_by(flow_run_id=dry["flow_run_id"]).count()

    with _resolving_pairs(truth):
        result = database_cleanup(database=url, table="customers", spec=spec)
    assert not result["problems"], result
    remaining = set(table_hashes(url, "customers"))
    merged = [d for d, o in truth.items() if not (d in remaining and o in remaining)]
    assert len(merged) >= 0.9 * len(truth), f"only {len(merged)} of {len(truth)} duplicates merged"
    assert all((d in remaining) != (o in remaining) for d, o in truth.items() if d in merged)
    assert len(remaining) == len(before) - len(merged)  # nothing merged that is not a known duplicate
    engine = create_engine(url)
    with engine.connect() as conn:
        orders = dict(conn.execute(text("SELECT order_id, customer_id FROM orders")).tuples().all())
    engine.dispose()
    assert set(orders.values()) <= remaining
    assert result["after"]["e164_phones"] > result["before"]["e164_phones"]
    assert result["after"]["duplicate_rate"] < result["before"]["duplicate_rate"]
    # the projection the 'after' figures and checks were made on is the table exactly as the apply left it
    cspec = load_cleanup_spec(spec)
    engine = create_engine(url)
    with engine.connect() as conn:
        live = conn.execute(text(f"SELECT {', '.join(cspec.columns)} FROM customers")).all()  # noqa: S608
    engine.dispose()
    frame = pd.DataFrame({c: pd.array([as_text(r[i]) for r in live], dtype=pd.StringDtype())
                          for i, c in enumerate(cspec.columns)})
    actual = profile(frame, cspec).shares()
    assert {k: v for k, v in actual.items() if k != "duplicate_rate"} == {
        k: v for k, v in result["after"].items() if k != "duplicate_rate"}
    # the table's expectations (GX), run in the database before and on the projection after
    checks = {(b["type"], b["column"]): (b["unexpected_count"], a["unexpected_count"])
              for b, a in zip(result["checks_before"], result["checks_after"], strict=True)}
    phones_before, phones_after = checks[("expect_column_values_to_match_regex", "phone")]
    assert phones_before >= len(truth) and phones_after == 0  # national spellings: E.164 after
    assert checks[("expect_column_values_to_be_unique", "customer_id")] == (0, 0)
    with session_scope(get_settings().ops_database_url or "") as s:
        asked = s.query(ReviewItem).filter_by(flow_run_id=result["flow_run_id"], kind="pair").all()
        different = {(i.source["left_key"], i.source["right_key"]) for i in asked if i.status == "rejected"}

    # the change log in S3 is the ops database's, bodies and all: each change of the table and each re-pointing
    stored = pq.read_table(io.BytesIO(get_store().get_bytes(result["change_log"]))).to_pylist()
    with session_scope(get_settings().ops_database_url or "") as s:
        logged = {c.seq: (c.table_name, c.row_key, c.action, c.status, c.before_hash, c.after_hash)
                  for c in log_of(s, result["flow_run_id"])}
    assert {r["seq"]: (r["table"], r["row_key"], r["action"], r["status"], r["before_hash"], r["after_hash"])
            for r in stored} == logged
    assert {r["table"] for r in stored} == {"main", "orders"} and {r["status"] for r in stored} == {"applied"}
    assert all(row_hash(json.loads(r["before"])) == r["before_hash"] for r in stored)

    _undo_is_refused_while_the_run_is_live(result["flow_run_id"], url, before)
    report = undo_run(result["flow_run_id"])
    assert not report.refused and report.verified == report.restored > 0
    assert table_hashes(url, "customers") == before
    assert table_hashes(url, "orders") == orders_before

    again = database_cleanup(database=url, table="customers", spec=spec)  # no agent: it must not wait
    assert set(table_hashes(url, "customers")) == remaining
    with session_scope(get_settings().ops_database_url or "") as s:
        items = s.query(ReviewItem).filter_by(flow_run_id=again["flow_run_id"], kind="pair").all()
    assert all(i.status != "open" for i in items)
    assert not {(i.source["left_key"], i.source["right_key"]) for i in items} & different


def _undo_is_refused_while_the_run_is_live(run_id: str, url: str, before: dict[str, str]) -> None:
    """A run still going (Prefect says Running, its process alive here) may still be applying: no undo yet."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running
    from sqlalchemy import update

    from bpo.cleanup.source import CleanupRefused
    from bpo.cleanup.undo import undo_run
    from bpo.db.models import Run
    from bpo.db.session import session_scope
    from bpo.runs import this_process
    from bpo.settings import get_settings

    host, pid, started = this_process()
    ops = get_settings().ops_database_url or ""
    after = table_hashes(url, "customers")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(uuid.UUID(run_id), Running(), force=True)
        with session_scope(ops) as s:
            s.execute(update(Run).where(Run.flow_run_id == run_id).values(status="running", host=host, pid=pid,
                                                                          pid_started=started))
        try:
            with pytest.raises(CleanupRefused, match="still running"):
                undo_run(run_id)
            assert table_hashes(url, "customers") == after != before
        finally:
            client.set_flow_run_state(uuid.UUID(run_id), Completed(), force=True)
            with session_scope(ops) as s:
                s.execute(update(Run).where(Run.flow_run_id == run_id).values(status="completed"))


def _last_run_id() -> str:
    from sqlalchemy import select

    from bpo.db.models import Run
    from bpo.db.session import session_scope
    from bpo.settings import get_settings

    with session_scope(get_settings().ops_database_url or "") as s:
        return s.scalars(select(Run.flow_run_id).where(Run.process == "customers-cleanup")
                         .order_by(Run.started_at.desc())).first() or ""


def _create_pg(url: str, rows: list[dict[str, Any]], orders: list[tuple[int, int]]) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (customer_id BIGINT PRIMARY KEY, first_name TEXT, last_name TEXT, "
                          "email TEXT, phone TEXT, date_of_birth TEXT, street TEXT, city TEXT, postal_code TEXT, "
                          "country TEXT, updated_at DATE)"))
        conn.execute(text("CREATE TABLE orders (order_id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL "
                          "REFERENCES customers(customer_id), amount NUMERIC(10, 2))"))
        conn.execute(text("INSERT INTO customers VALUES (:customer_id, :first_name, :last_name, :email, :phone, "
                          ":date_of_birth, :street, :city, :postal_code, :country, CAST(:updated_at AS DATE))"), rows)
        conn.execute(text("INSERT INTO orders VALUES (:o, :c, 12.50)"), [{"o": o, "c": c} for o, c in orders])
    engine.dispose()


def test_cleanup_on_postgresql_detects_a_row_changed_before_apply_then_an_incremental_run_links_new_rows(
        pg_url: str, tmp_path: Path, stack: dict[str, str]) -> None:
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.settings import get_settings
    from flows.database_cleanup import database_cleanup

    rows, truth = make_customers(200, 0.1, seed=11)
    orders = [(i, dup) for i, dup in enumerate(sorted(truth), start=1)]
    _create_pg(pg_url, rows, orders)
    edited = sorted(truth)[0]  # a duplicate someone edits while the change set waits at its gate

    def edit_before_gate() -> None:
        engine = create_engine(pg_url)
        with engine.begin() as conn:
            conn.execute(text("UPDATE customers SET street = '1 Edited Rd' WHERE customer_id = :k"), {"k": edited})
        engine.dispose()

    spec = _spec(tmp_path, thresholds={"auto_merge": 0.99, "review": 0.8, "gate_share": 0.0})
    with _resolving_pairs(truth, before_gate=edit_before_gate):
        first = database_cleanup(database=pg_url, table="customers", spec=str(spec))
    assert first["conflicts"] >= 1
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        street = conn.execute(text("SELECT street FROM customers WHERE customer_id = :k"), {"k": edited}).scalar()
        remaining = {r[0] for r in conn.execute(text("SELECT customer_id FROM customers"))}
        order_of = dict(conn.execute(text("SELECT order_id, customer_id FROM orders")).tuples().all())
    assert street == "1 Edited Rd"  # not overwritten, not merged away
    # what the next incremental run starts from: every row as this run left it, merged rows gone, and the edited row
    # as snapshotted (so that the next run takes it as changed)
    from bpo.cleanup.pipeline import state_prefix
    from bpo.cleanup.rows import encode_key
    from bpo.cleanup.source import resolve as resolve_target
    from bpo.run import get_store

    store = get_store()
    saved = pq.read_table(io.BytesIO(store.get_bytes(state_prefix(store, load_cleanup_spec(str(spec)), resolve_target(
        pg_url, "customers", get_settings())) + "/state.parquet")))
    state = dict(zip(saved.column("key").to_pylist(), saved.column("hash").to_pylist(), strict=True))
    now = {encode_key(k): h for k, h in table_hashes(pg_url, "customers").items()}
    assert saved.num_rows == len(state) and state.keys() == now.keys()
    assert {k for k in now if state[k] != now[k]} == {encode_key(edited)}
    assert set(order_of.values()) <= remaining  # every order re-pointed to a row that exists (the FK holds)
    merged = [d for d, o in truth.items() if not (d in remaining and o in remaining)]
    assert len(merged) >= len(truth) - 2, f"{len(merged)} of {len(truth)} duplicates merged"  # one is in conflict
    assert all((d in remaining) != (o in remaining) for d, o in truth.items() if d in merged)
    with session_scope(get_settings().ops_database_url or "") as s:
        conflict = s.query(ReviewItem).filter_by(flow_run_id=first["flow_run_id"], kind="conflict").all()
    assert [c.source["row_key"] for c in conflict if c.source["row_key"] == str(edited)]
    from bpo.review import resolve

    for item in conflict:  # an agent acknowledges each: the next run proposes the row afresh
        assert resolve(get_settings(), item.id, actor="agent", decision={
            "acknowledge": True, "reason": "the client edited it; the next run proposes it again"}).status == "approved"

    # a new duplicate arrives; the incremental run links the new and changed rows only
    original = 5 if 5 in remaining else min(remaining)
    with engine.begin() as conn:
        base = dict(conn.execute(text("SELECT * FROM customers WHERE customer_id = :k"), {"k": original}).mappings()
                    .one())
        conn.execute(text("INSERT INTO customers VALUES (9999, :f, :l, :e, :p, :d, :s, :c, :z, :n, :u)"), {
            "f": str(base["first_name"]).lower(), "l": base["last_name"], "e": base["email"], "p": base["phone"],
            "d": base["date_of_birth"], "s": base["street"], "c": base["city"], "z": base["postal_code"],
            "n": base["country"], "u": base["updated_at"]})
        conn.execute(text("INSERT INTO orders VALUES (5000, 9999, 1.00)"))
    before_second = table_hashes(pg_url, "customers")
    with _resolving_pairs(truth | {9999: original}):
        second = database_cleanup(database=pg_url, table="customers", spec=str(_spec(tmp_path)), incremental=True)
    assert second["model"] == "reused"
    assert second["pairs_for_review"] <= first["pairs_for_review"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers WHERE customer_id = 9999")).scalar() == 0
        assert conn.execute(text("SELECT customer_id FROM orders WHERE order_id = 5000")).scalar() == original
    from bpo.cleanup.undo import undo_run

    report = undo_run(second["flow_run_id"])
    assert not report.refused and report.verified == report.restored
    assert table_hashes(pg_url, "customers") == before_second
    with engine.connect() as conn:
        assert conn.execute(text("SELECT customer_id FROM orders WHERE order_id = 5000")).scalar() == 9999
    engine.dispose()


def test_an_empty_table_and_a_table_of_one_row_are_cleaned_without_matching(tmp_path: Path,
                                                                          stack: dict[str, str]) -> None:
    from flows.database_cleanup import database_cleanup

    url = f"sqlite:///{tmp_path}/small.db"
    create_tables(url, [], [])
    spec = str(_spec(tmp_path, references=[], thresholds={"auto_merge": 0.99, "review": 0.8, "gate_share": 1.0}))
    empty = database_cleanup(database=url, table="customers", spec=spec)
    assert empty["rows"] == 0 and empty["applied"] == 0 and not empty["problems"]
    rows, _ = make_customers(1, 0.0, seed=1)
    rows[0]["first_name"] = "ANNA"
    create_tables(url, rows, [])
    one = database_cleanup(database=url, table="customers", spec=spec)
    assert one["rows"] == 1 and one["changes"].get("update_safe") == 1 and one["applied"] == 1
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT first_name FROM customers")).scalar() == "Anna"
    engine.dispose()


@contextmanager
def _answering_reformats(accept: dict[str, bool]) -> Iterator[None]:
    """An agent in another thread while the block runs: accepts or rejects each open reformat item, by its row's
    key."""
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.review import resolve
    from bpo.settings import get_settings

    def work(stop: threading.Event) -> None:
        settings = get_settings()
        while not stop.is_set():
            with session_scope(settings.ops_database_url or "") as s:
                asked = [(i.id, i.record_key) for i in s.query(ReviewItem).filter_by(kind="reformat", status="open")]
            for item_id, key in asked:
                resolve(settings, item_id, actor="agent", decision={"approve": accept[key], "reason": "checked"})
            time.sleep(0.3)

    with _agent(work):
        yield


def test_a_change_that_is_more_than_a_reformat_waits_for_a_person_and_the_answer_carries_over(
        tmp_path: Path, stack: dict[str, str]) -> None:
    """A vanity number read as digits and a phone whose extension would be dropped are not safe: each row is a
    ``reformat`` item, and the run waits. The accepted change is applied (logged "accepted", undone exactly), the
    rejected row keeps its value; a run on the restored table asks no one: both answers carry over."""
    from bpo.cleanup.undo import undo_run
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.settings import get_settings
    from flows.database_cleanup import database_cleanup

    rows, _ = make_customers(12, 0.0, seed=3)
    rows[0]["phone"] = "1-800-FLOWERS"  # letters read as digits: +18003569377
    rows[1]["phone"] = "(202) 555-0199 ext. 7"  # the extension would be lost
    rows[2]["phone"] = "(202) 555-0142"  # written nationally: a safe reformat, asked of no one
    url = f"sqlite:///{tmp_path}/client.db"
    create_tables(url, rows, [])
    spec = str(_spec(tmp_path, references=[], thresholds={"auto_merge": 0.99, "review": 0.8, "gate_share": 1.0}))
    before = table_hashes(url, "customers")
    with _answering_reformats({"1": True, "2": False}):
        result = database_cleanup(database=url, table="customers", spec=spec)
    assert not result["problems"], result
    engine = create_engine(url)
    with engine.connect() as conn:
        phones = dict(conn.execute(text("SELECT customer_id, phone FROM customers WHERE customer_id <= 3")).all())
    engine.dispose()
    assert phones == {1: "+18003569377", 2: "(202) 555-0199 ext. 7", 3: "+12025550142"}
    with session_scope(get_settings().ops_database_url or "") as s:
        items = {i.record_key: i for i in s.query(ReviewItem).filter_by(flow_run_id=result["flow_run_id"])}
    assert {k: (i.kind, i.status) for k, i in items.items()} == {"1": ("reformat", "approved"),
                                                                  "2": ("reformat", "rejected")}
    assert items["2"].source["changes"] == [{"column": "phone", "old": "(202) 555-0199 ext. 7",
                                             "new": "+12025550199"}]
    assert result["changes"].get("update_accepted") == 1 and result["changes_for_review"] == 2
    assert {(c.row_key, c.how) for c in _changes(result["flow_run_id"]) if c.row_key in ("1", "3")} == {
        ("1", "accepted"), ("3", "safe")}

    report = undo_run(result["flow_run_id"])
    assert not report.refused and report.verified == report.restored > 0
    assert table_hashes(url, "customers") == before
    again = database_cleanup(database=url, table="customers", spec=spec)  # no agent: it must not wait
    assert again["changes"].get("update_accepted") == 1
    with session_scope(get_settings().ops_database_url or "") as s:
        carried = {i.record_key: i.status for i in s.query(ReviewItem).filter_by(flow_run_id=again["flow_run_id"])}
    assert carried == {"1": "approved", "2": "rejected"}
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT phone FROM customers WHERE customer_id = 1")).scalar() == "+18003569377"
    engine.dispose()


def test_the_cli_refuses_a_table_that_does_not_fit_before_a_run_starts(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bpo.cli import app

    url = f"sqlite:///{tmp_path}/c.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE customers (customer_id INTEGER, first_name TEXT)"))
    engine.dispose()
    runner = CliRunner()
    got = runner.invoke(app, ["run", "database-cleanup", url, "customers", "--spec", str(_spec(tmp_path))])
    assert got.exit_code == 1
    assert "no primary key" in got.output and "has no column" in got.output and "'last_name'" in got.output
    got = runner.invoke(app, ["run", "database-cleanup", "nope", "customers"])
    assert got.exit_code == 1 and "neither a SQLAlchemy URL nor a connection" in got.output
    got = runner.invoke(app, ["cleanup", "undo", "00000000-0000-0000-0000-000000000000"])
    assert got.exit_code == 1 and "no cleanup run" in got.output


def test_bpo_run_database_cleanup_dry_run_reports_and_exits_with_its_workers(
        sqlite_table: tuple[str, dict[int, int]], tmp_path: Path) -> None:
    """The CLI end to end, as a process: the checks and the standardizing ran in a worker process (``beside``),
    and the run still ends, with its JSON summary, changing nothing."""
    url, _ = sqlite_table
    before = table_hashes(url, "customers")
    spec = str(_spec(tmp_path, thresholds={"auto_merge": 0.99, "review": 0.8, "gate_share": 1.0}))
    got = subprocess.run([*BPO, "run", "database-cleanup", url, "customers", "--spec", spec, "--dry-run", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    summary = json.loads(got.stdout)
    assert summary["dry_run"] and summary["changes"]["clusters"] >= 1 and summary["checks_before"]
    assert table_hashes(url, "customers") == before
