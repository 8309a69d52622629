"""Loading into the target table (bpo.target): table shape, idempotent upserts on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Engine,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    select,
    text,
)

from bpo.normalizers import normalize_frame
from bpo.samples import make_records
from bpo.spec import ProcessSpec, load_spec
from bpo.target import PROVENANCE, count_rows, ensure_table, target_table, to_rows, upsert


@pytest.fixture(scope="module")
def spec() -> ProcessSpec:
    return load_spec("customer_onboarding")


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path}/target.db")
    yield engine
    engine.dispose()


def customer_rows(spec: ProcessSpec, table: Table, n: int, *, seed: int = 5, start: int = 1,
                  run_id: str = "run-1") -> pd.DataFrame:
    """``n`` normalized customer records with provenance, typed for ``table`` as load_records types them."""
    raw = pd.DataFrame(make_records(n, seed=seed, review_fraction=0, start=start), dtype=object)
    data = normalize_frame(raw, spec).data
    data = data.assign(source_file="customers.csv", source_row=list(range(2, n + 2)), flow_run_id=run_id)
    return to_rows(data, table)


def read_all(engine: Engine, table: Table, key: str) -> dict[Any, dict[str, Any]]:
    with engine.connect() as conn:
        return {r[key]: dict(r) for r in conn.execute(select(table)).mappings()}


def as_records(rows: pd.DataFrame, key: str) -> dict[Any, dict[str, Any]]:
    return {r[key]: r for r in rows.to_dict("records")}


# ---------------------------------------------------------------------------------------------
# the table


def test_target_table_shape(spec: ProcessSpec) -> None:
    table = target_table(spec)
    assert table.name == "customers"
    assert [c.name for c in table.primary_key.columns] == ["customer_id"]
    assert [c.name for c in table.columns] == [
        "customer_id", "first_name", "last_name", "email", "phone", "date_of_birth", "signup_date", "country",
        "postal_code", "plan", "opening_balance", "opening_balance_currency", *PROVENANCE]
    money = table.c.opening_balance.type
    assert isinstance(money, Numeric) and (money.precision, money.scale) == (18, 2)
    currency = table.c.opening_balance_currency.type
    assert isinstance(currency, String) and currency.length == 3
    assert isinstance(table.c.signup_date.type, Date) and isinstance(table.c.date_of_birth.type, Date)
    assert isinstance(table.c.customer_id.type, String) and not table.c.customer_id.nullable
    assert isinstance(table.c.source_row.type, BigInteger)


def test_composite_and_typed_keys() -> None:
    spec = ProcessSpec.model_validate({
        "name": "shipments", "suite": "none", "target": {"table": "shipments", "key": ["depot", "day", "seq"]},
        "fields": {"depot": {"type": "text", "max_length": 8}, "day": {"type": "date"}, "seq": {"type": "integer"},
                   "note": {"type": "text"}}})
    table = target_table(spec)
    assert [c.name for c in table.primary_key.columns] == ["depot", "day", "seq"]
    assert table.c.depot.type.length == 8
    assert isinstance(table.c.day.type, Date) and isinstance(table.c.seq.type, BigInteger)
    assert isinstance(table.c.note.type, Text) and not table.c.note.primary_key


def test_to_rows_types_dates_and_blanks(spec: ProcessSpec) -> None:
    table = target_table(spec)
    frame = pd.DataFrame({"customer_id": ["C1", "C2"], "signup_date": ["2024-03-04", None],
                          "opening_balance": [Decimal("12.50"), None], "_row": [0, 1]})
    rows = to_rows(frame, table)
    assert list(rows.columns) == [c.name for c in table.columns]
    assert rows.loc[0, "signup_date"] == date(2024, 3, 4)
    assert rows.loc[1, "signup_date"] is None
    assert rows.loc[0, "opening_balance"] == Decimal("12.50") and rows.loc[1, "opening_balance"] is None
    assert rows.loc[0, "email"] is None  # a column the frame lacks is NULL


# ---------------------------------------------------------------------------------------------
# SQLite


def test_ensure_table_creates_then_accepts_the_same_table(spec: ProcessSpec, sqlite_engine: Engine) -> None:
    table = ensure_table(sqlite_engine, spec)
    assert inspect(sqlite_engine).get_pk_constraint("customers")["constrained_columns"] == ["customer_id"]
    upsert(sqlite_engine, table, customer_rows(spec, table, 3), spec.target.key)
    ensure_table(sqlite_engine, spec)  # already there with every column: kept as it is
    assert count_rows(sqlite_engine, "customers") == 3


def test_ensure_table_refuses_a_table_lacking_a_column(spec: ProcessSpec, sqlite_engine: Engine) -> None:
    full = target_table(spec)
    old = Table("customers", MetaData(), *[Column(c.name, c.type, primary_key=c.primary_key)
                                           for c in full.columns if c.name != "opening_balance_currency"])
    old.create(sqlite_engine)
    with pytest.raises(RuntimeError, match=r"customers.*opening_balance_currency"):
        ensure_table(sqlite_engine, spec)


def test_upsert_sqlite_is_idempotent_and_updates(spec: ProcessSpec, sqlite_engine: Engine) -> None:
    table = ensure_table(sqlite_engine, spec)
    rows = customer_rows(spec, table, 20)
    assert upsert(sqlite_engine, table, rows, spec.target.key, chunk_rows=7) == 20
    assert count_rows(sqlite_engine, "customers") == 20
    stored = read_all(sqlite_engine, table, "customer_id")
    assert stored == as_records(rows, "customer_id")  # every value as written: dates, Decimals, text

    # the same rows again (a re-run): no new rows, nothing changes
    assert upsert(sqlite_engine, table, rows, spec.target.key, chunk_rows=7) == 20
    assert count_rows(sqlite_engine, "customers") == 20
    assert read_all(sqlite_engine, table, "customer_id") == stored

    # changed values for some keys plus two new keys: the changed ones are updated in place
    changed = rows.iloc[[0, 5, 19]].copy()
    changed["plan"] = "premium"
    changed["opening_balance"] = [Decimal("0.01"), Decimal("999999.99"), Decimal("12.50")]
    changed["opening_balance_currency"] = "GBP"
    changed["phone"] = None
    changed["flow_run_id"] = "run-2"
    changed = to_rows(changed, table)
    new = customer_rows(spec, table, 2, seed=9, start=1000, run_id="run-2")
    assert upsert(sqlite_engine, table, pd.concat([changed, new]), spec.target.key) == 5
    assert count_rows(sqlite_engine, "customers") == 22
    after = read_all(sqlite_engine, table, "customer_id")
    expected = {**stored, **as_records(changed, "customer_id"), **as_records(new, "customer_id")}
    assert after == expected
    assert after[rows.iloc[5]["customer_id"]]["opening_balance"] == Decimal("999999.99")
    assert after[rows.iloc[0]["customer_id"]]["phone"] is None


def test_upsert_duplicate_keys_in_one_call_keep_the_last(spec: ProcessSpec, sqlite_engine: Engine) -> None:
    table = ensure_table(sqlite_engine, spec)
    rows = customer_rows(spec, table, 4)
    first, again = rows.iloc[[1]].copy(), rows.iloc[[1]].copy()
    first["plan"], again["plan"] = "basic", "premium"
    again["source_row"] = 99
    batch = pd.concat([rows.iloc[[0]], first, rows.iloc[[2]], again, rows.iloc[[3]]], ignore_index=True)
    # chunks of two would put the two occurrences in different statements, were they not collapsed first
    assert upsert(sqlite_engine, table, batch, spec.target.key, chunk_rows=2) == 4
    assert count_rows(sqlite_engine, "customers") == 4
    got = read_all(sqlite_engine, table, "customer_id")[rows.iloc[1]["customer_id"]]
    assert (got["plan"], got["source_row"]) == ("premium", 99)


def test_upsert_of_nothing_writes_nothing(spec: ProcessSpec, sqlite_engine: Engine) -> None:
    table = ensure_table(sqlite_engine, spec)
    assert upsert(sqlite_engine, table, customer_rows(spec, table, 0), spec.target.key) == 0
    assert count_rows(sqlite_engine, "customers") == 0


# ---------------------------------------------------------------------------------------------
# PostgreSQL: COPY straight in; where a key exists, COPY into a staging table, then INSERT ... ON CONFLICT


# Text that CSV and COPY treat specially, each of which must arrive exactly as written.
AWKWARD = [
    'comma, and "double quotes"',
    "two\nlines",
    "windows\r\nline end",
    "back\\slash and \\N and \\.",
    "ends with backslash\\",
    "line one\n\\.\nline three",  # COPY's end-of-data marker alone on a line, inside a value
    "  padded  ",
    "tab\tinside",
    "Zoë — ✓ 東京",
    "'single' quotes; DROP TABLE x; --",
    '"',
    ",",
]


def order_spec(table: str) -> ProcessSpec:
    """A spec whose column names need quoting: a space, a capital letter, a reserved word."""
    return ProcessSpec.model_validate({
        "name": "order-entry", "suite": "order_entry", "target": {"table": table, "key": ["Order Id"]},
        "fields": {
            "Order Id": {"type": "text", "required": True},
            "select": {"type": "text"},
            "amount": {"type": "money", "default_currency": "EUR"},
            "placed on": {"type": "date"},
            "qty": {"type": "integer"},
        }})


def order_rows(table: Table, n: int, *, seed: int = 3, run_id: str = "run-1") -> pd.DataFrame:
    rng = random.Random(seed)
    frame = pd.DataFrame({
        "Order Id": [f"O-{i:04d}" for i in range(n)],
        "select": [AWKWARD[i % len(AWKWARD)] if i % 5 else None for i in range(n)],
        "amount": [Decimal(rng.randint(-5000, 500000)) / 100 for _ in range(n)],
        "amount_currency": [rng.choice(["EUR", "USD"]) for _ in range(n)],
        "placed on": [f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}" for _ in range(n)],
        "qty": pd.array([rng.randint(0, 10**12) if i % 4 else None for i in range(n)], dtype="Int64"),
        "source_file": "orders, \"Q1\".csv",
        "source_row": range(2, n + 2),
        "flow_run_id": run_id,
    })
    return to_rows(frame, table)


@pytest.fixture(scope="module")
def pg_engine(postgres: str) -> Iterator[Engine]:
    """A database of its own on the shared PostgreSQL, dropped afterwards."""
    name = f"bpo_load_{uuid.uuid4().hex[:10]}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(postgres.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.mark.slow
def test_upsert_postgres_copy_path_quotes_names_and_round_trips_values(pg_engine: Engine) -> None:
    spec = order_spec(f"Order Lines {uuid.uuid4().hex[:8]}")  # the table name needs quoting too
    table = ensure_table(pg_engine, spec)
    assert inspect(pg_engine).get_pk_constraint(table.name)["constrained_columns"] == ["Order Id"]
    rows = order_rows(table, 30)
    assert upsert(pg_engine, table, rows, spec.target.key, chunk_rows=4) == 30
    assert count_rows(pg_engine, table.name) == 30
    stored = read_all(pg_engine, table, "Order Id")
    assert stored == as_records(rows, "Order Id")
    assert {r["select"] for r in stored.values()} == set(AWKWARD) | {None}

    # the same rows again: no new rows, nothing changes
    assert upsert(pg_engine, table, rows, spec.target.key, chunk_rows=4) == 30
    assert count_rows(pg_engine, table.name) == 30
    assert read_all(pg_engine, table, "Order Id") == stored

    # changed values (awkward text swapped around, NULLs both ways) and new keys, with a key repeated
    changed = rows.iloc[[1, 2, 3, 10]].copy()
    changed["select"] = [AWKWARD[5], None, "now\nchanged, \"again\"", AWKWARD[0]]
    changed["amount"] = [Decimal("0.00"), Decimal("-1.50"), None, Decimal("9999999999999999.99")]
    changed["qty"] = pd.array([None, 7, 8, 9], dtype="Int64")
    changed["flow_run_id"] = "run-2"
    changed = to_rows(changed, table)
    new = order_rows(table, 35, seed=4, run_id="run-2").iloc[30:]
    repeat = changed.iloc[[0]].assign(select="the last one wins")
    batch = pd.concat([changed, new, repeat])
    assert upsert(pg_engine, table, batch, spec.target.key, chunk_rows=3) == 9
    assert count_rows(pg_engine, table.name) == 35
    expected = {**stored, **as_records(changed, "Order Id"), **as_records(new, "Order Id"),
                **as_records(repeat, "Order Id")}
    assert read_all(pg_engine, table, "Order Id") == expected
    assert expected[rows.iloc[1]["Order Id"]]["select"] == "the last one wins"


@pytest.mark.slow
def test_upsert_postgres_chunk_whose_last_key_exists_leaves_no_half_copy(pg_engine: Engine) -> None:
    """The direct COPY fails at the last row; its first rows are rolled back and the chunk is upserted."""
    spec = order_spec(f"orders_{uuid.uuid4().hex[:8]}")
    table = ensure_table(pg_engine, spec)
    first = order_rows(table, 10)
    upsert(pg_engine, table, first.iloc[:1], spec.target.key)
    again = first.iloc[[0]].assign(select="updated", flow_run_id="run-2")
    chunk = pd.concat([first.iloc[1:], to_rows(again, table)])  # nine new keys, then the existing one
    assert upsert(pg_engine, table, chunk, spec.target.key, chunk_rows=100) == 10
    stored = read_all(pg_engine, table, "Order Id")
    assert stored == {**as_records(first, "Order Id"), **as_records(to_rows(again, table), "Order Id")}
    assert stored[first.iloc[0]["Order Id"]]["select"] == "updated"


@pytest.mark.slow
def test_postgres_and_sqlite_store_the_same(pg_engine: Engine, spec: ProcessSpec, tmp_path: Path) -> None:
    """The COPY path and the generic path agree on the customer spec, row for row."""
    spec = spec.model_copy(update={"target": spec.target.model_copy(
        update={"table": f"customers_{uuid.uuid4().hex[:8]}"})})
    lite = create_engine(f"sqlite:///{tmp_path}/target.db")
    try:
        got = []
        for engine in (pg_engine, lite):
            table = ensure_table(engine, spec)
            upsert(engine, table, customer_rows(spec, table, 25, seed=17), spec.target.key, chunk_rows=10)
            got.append(read_all(engine, table, "customer_id"))
        assert got[0] == got[1]
        assert len(got[0]) == 25
    finally:
        lite.dispose()


@pytest.mark.slow
def test_ensure_table_refuses_postgres_table_lacking_a_column(pg_engine: Engine) -> None:
    spec = order_spec(f"orders_{uuid.uuid4().hex[:8]}")
    full = target_table(spec)
    old = Table(full.name, MetaData(), *[Column(c.name, c.type, primary_key=c.primary_key)
                                         for c in full.columns if c.name != "placed on"])
    old.create(pg_engine)
    with pytest.raises(RuntimeError, match=r"lacks columns \['placed on'\]"):
        ensure_table(pg_engine, spec)
    assert "placed on" not in {c["name"] for c in inspect(pg_engine).get_columns(full.name)}


# ---------------------------------------------------------------------------------------------
# approved review decisions: load_records builds its frame from the decisions' JSON values


def decided_frame(decisions: list[dict[str, Any]], run_id: str = "run-1") -> pd.DataFrame:
    """The frame load_records upserts for approved items (its ``decided`` plus provenance)."""
    decided = pd.DataFrame([{**d, "_source_file": "orders.csv", "_source_row": i + 2}
                            for i, d in enumerate(decisions)], dtype=object)
    return decided.assign(source_file=decided["_source_file"], source_row=decided["_source_row"], flow_run_id=run_id)


def order_decisions() -> list[dict[str, Any]]:
    """Two approved decisions as revalidate stores them (money as text); one has no quantity."""
    return [
        {"Order Id": "O-1", "select": "a, \"b\"", "amount": "12.50", "amount_currency": "EUR",
         "placed on": "2024-03-04", "qty": None},
        {"Order Id": "O-2", "select": "c", "amount": "-0.50", "amount_currency": "USD",
         "placed on": "2024-03-05", "qty": 9007199254740993},  # 2**53 + 1: not exact as a float
    ]


def test_approved_decisions_keep_integers_exact_sqlite(sqlite_engine: Engine) -> None:
    spec = order_spec("orders")
    table = ensure_table(sqlite_engine, spec)
    upsert(sqlite_engine, table, to_rows(decided_frame(order_decisions()), table), spec.target.key)
    stored = read_all(sqlite_engine, table, "Order Id")
    assert stored["O-1"]["qty"] is None
    assert stored["O-2"]["amount"] == Decimal("-0.50") and stored["O-2"]["placed on"] == date(2024, 3, 5)
    assert stored["O-2"]["qty"] == 9007199254740993


@pytest.mark.slow
def test_approved_decisions_with_a_blank_integer_load_into_postgres(pg_engine: Engine) -> None:
    spec = order_spec(f"orders_{uuid.uuid4().hex[:8]}")
    table = ensure_table(pg_engine, spec)
    upsert(pg_engine, table, to_rows(decided_frame(order_decisions()), table), spec.target.key)
    stored = read_all(pg_engine, table, "Order Id")
    assert stored["O-1"]["qty"] is None and stored["O-1"]["select"] == 'a, "b"'
    assert stored["O-2"]["qty"] == 9007199254740993
