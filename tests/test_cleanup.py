"""The cleanup's core without Prefect: exact row encoding, standardizing, the checks before touching a table,
the snapshot of awkward tables, apply with hash checks, and exact undo — on SQLite files and SeaweedFS.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine, text

from bpo.cleanup import apply as applying
from bpo.cleanup import source
from bpo.cleanup.plan import ChangeSet, build
from bpo.cleanup.rows import decode_key, decode_row, encode_key, encode_row, row_hash
from bpo.cleanup.snapshot import Snapshot, take_snapshot
from bpo.cleanup.source import CleanupRefused
from bpo.cleanup.spec import CleanupSpec
from bpo.cleanup.standardize import standardize
from bpo.settings import Settings


def _spec(**extra: Any) -> CleanupSpec:
    data: dict[str, Any] = {"name": "t-cleanup", "key": "id", "columns": {
        "name": {"role": "person_name"}, "email": {"role": "email"}, "phone": {"role": "phone"}}}
    data.update(extra)
    return CleanupSpec.model_validate(data)


def test_a_row_encodes_exactly_and_its_hash_follows_every_value() -> None:
    values = (1, "Zoë", None, 1.5, Decimal("10.10"), date(2020, 1, 2), datetime(2020, 1, 2, 3, 4, 5), b"\x00\xff", True)
    columns = [f"c{i}" for i in range(len(values))]
    encoded = encode_row(columns, values)
    assert list(decode_row(encoded).values()) == list(values)
    assert [type(v) for v in decode_row(encoded).values()] == [type(v) for v in values]
    assert row_hash(encoded) == row_hash(encode_row(columns, values))
    # a Decimal's digits, an int against a string, a date against its text: each changes the hash
    for i, other in ((4, Decimal("10.1")), (0, "1"), (5, "2020-01-02")):
        changed = list(values)
        changed[i] = other
        assert row_hash(encode_row(columns, changed)) != row_hash(encoded)
    assert decode_key(encode_key("a b")) == "a b" and decode_key(encode_key(7)) == 7


def test_the_canonical_text_is_json_s_own_for_every_kind_of_value_and_reads_back_exactly() -> None:
    """Every hash ever logged was taken of Python's json text of the row (sorted keys, no spaces, non-ASCII kept):
    the faster writer must give exactly that text, and the text read back must give exactly the values (an
    integer beyond 64 bits stays an integer, a float stays a float)."""
    import json
    import random
    import string

    from bpo.cleanup.rows import canonical, encode_rows, encode_value, parse

    reference = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    rnd = random.Random(7)
    alphabet = string.printable + "éüßЖ中文😀\u2028\u2029\x00\x1f\x7f\u0301"

    def text() -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))

    def value() -> Any:
        return rnd.choice([None, True, False, rnd.randint(-2**63, 2**63 - 1), rnd.randint(-10**30, 10**30), text(),
                           rnd.random() * 10 ** rnd.randint(-20, 20), 1e16, -0.0, date(2000, 1, 2),
                           datetime(2020, 1, 2, 3, 4, 5, 6), Decimal("1.2300"), b"\x00\xff", float("nan")])

    for _ in range(3_000):
        row = {text() or "k": encode_value(value()) for _ in range(rnd.randint(1, 6))}
        written = reference.encode(row)
        assert canonical(row) == written
        back = parse(written)
        assert back == json.loads(written) and [type(back[k]) for k in row] == [type(v) for v in row.values()]
    for key in (7, 2**70, "a b", -1.5, [1, "x"], [2**64, 0.1]):
        assert canonical(key) == reference.encode(key) and parse(canonical(key)) == key
    columns = ["id", "name", "balance"]
    for table in ([(1, "Zoë", 2**65), (2, "a\"b", None)], [(1, "x", 1e-07), (2, "y", None)]):
        assert encode_rows(columns, table)[1] == [reference.encode(dict(zip(columns, r, strict=True))) for r in table]


def test_standardizing_proposes_reformats_as_safe_and_leaves_refused_values_alone() -> None:
    frame = pd.DataFrame({"name": ["JOHN  SMITH", "Zoë", None], "email": ["John@Example.COM", "not-an-email", None],
                          "phone": ["(202) 555-0143", "12", "+44 20 7946 0958"]}).astype(pd.StringDtype())
    standardized, proposals = standardize(frame, _spec())
    by = {(r.position, r.column): (r.new, r.safe) for r in proposals.itertuples()}
    assert by[(0, "name")] == ("John Smith", True)
    assert by[(0, "email")] == ("john@example.com", True)
    assert by[(0, "phone")] == ("+12025550143", True)
    assert by[(2, "phone")] == ("+442079460958", True)
    assert (1, "email") not in by and (1, "phone") not in by  # refused: left as it is
    assert standardized.loc[1, "email"] == "not-an-email" and standardized.loc[1, "name"] == "Zoë"


def test_a_phone_is_read_in_its_rows_country_and_dialled_forms_of_one_number_are_safe() -> None:
    spec = CleanupSpec.model_validate({"name": "t", "table": "t", "key": "id", "default_country": "US", "columns": {
        "phone": {"role": "phone", "country_column": "country"}, "country": {"role": "country"}}})
    frame = pd.DataFrame({
        "phone": ["020 7946 0958", "06 12 34 56 78", "(020) 7946-0958 ext. 12", "0044 20 7946 0958",
                  "8 (495) 123-45-67", "1-800-FLOWERS", "06 12 34 56 78"],
        "country": ["United Kingdom", "FR", "GB", "GB", "RU", "US", None]}).astype(pd.StringDtype())
    standardized, proposals = standardize(frame, spec)
    by = {r.position: (r.new, r.safe) for r in proposals.itertuples() if r.column == "phone"}
    assert by[0] == ("+442079460958", True)  # the national (trunk) prefix 0 for the country code: same number
    assert by[1] == ("+33612345678", True)
    assert by[3] == ("+442079460958", True)
    assert by[4] == ("+74951234567", True)  # Russia's trunk prefix is 8
    assert by[2] == ("+442079460958", False)  # the extension would be lost
    assert by[5] == ("+18003569377", False)  # letters read as digits: a person decides
    assert 6 not in by and standardized.loc[6, "phone"] == "06 12 34 56 78"  # no country: a US number it is not


def _sqlite(tmp_path: Path, ddl: str, rows: list[str] = ()) -> str:  # type: ignore[assignment]
    url = f"sqlite:///{tmp_path}/client.db"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(ddl))
        for row in rows:
            conn.execute(text(row))
    engine.dispose()
    return url


def _check(url: str, table: str, spec: CleanupSpec) -> source.Checked:
    target = source.resolve(url, table, Settings())
    engine = source.connect(target)
    try:
        return source.check(engine, target, spec)
    finally:
        engine.dispose()


def test_a_table_that_does_not_fit_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    url = _sqlite(tmp_path, "CREATE TABLE nokey (id INTEGER, name TEXT, email TEXT, phone TEXT)")
    with pytest.raises(CleanupRefused, match="no primary key"):
        _check(url, "nokey", _spec())
    with pytest.raises(CleanupRefused, match="no table 'missing'"):
        _check(url, "missing", _spec())
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE partial (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()
    with pytest.raises(CleanupRefused, match="no column 'email', 'phone'"):
        _check(url, "partial", _spec())
    with pytest.raises(CleanupRefused, match="referencing table 'orders' does not exist"):
        _check(url, "partial", _spec(columns={"name": {"role": "person_name"}},
                                     references=[{"table": "orders", "column": "cid"}]))
    with pytest.raises(CleanupRefused, match="neither a SQLAlchemy URL nor a connection"):
        source.resolve("no such thing", "t", Settings())
    with pytest.raises(CleanupRefused, match="cannot connect to postgresql") as caught:
        source.connect(source.resolve("postgresql+psycopg://u@127.0.0.1:1/db", "t", Settings()))
    # a password is never put in a run's parameters: it is refused, and not repeated
    with pytest.raises(CleanupRefused, match="holds a password: name the connection in BPO_CONNECTIONS") as caught:
        source.resolve("postgresql+psycopg://u:s3cret@127.0.0.1:1/db", "t", Settings())
    assert "s3cret" not in str(caught.value)
    named = source.resolve("crm", "partial", Settings(connections={"crm": url}))
    assert named.label == "crm" and named.url == url


AWKWARD = ('CREATE TABLE "cust""omers" ("the key" TEXT PRIMARY KEY, "order" TEXT, "e-mail" TEXT, phone, '
           'notes TEXT)')


def _awkward_rows() -> list[str]:
    return [
        """INSERT INTO "cust""omers" VALUES ('a 1', 'JOSÉ  GARCÍA', 'Jose@Example.com', '(202) 555-0101', NULL)""",
        # the same person: combining accents (NFD), another spelling of the phone, stored as an integer
        """INSERT INTO "cust""omers" VALUES ('a 2', 'jose\u0301 garci\u0301a', 'jose@example.com', 2025550101, NULL)""",
        """INSERT INTO "cust""omers" VALUES ('b''1', '李 小龍', NULL, NULL, NULL)""",
        """INSERT INTO "cust""omers" VALUES ('c 1', NULL, NULL, NULL, NULL)""",
        """INSERT INTO "cust""omers" VALUES ('d 1', 'MARY  JONES', NULL, NULL, 'vip')""",
    ]


def _awkward_spec() -> CleanupSpec:
    return CleanupSpec.model_validate({"name": "awkward-cleanup", "key": "the key", "columns": {
        "order": {"role": "person_name"}, "e-mail": {"role": "email"}, "phone": {"role": "phone"},
        "notes": {"role": "free_text", "compare": False}}})


@dataclass
class _Merge:
    """The awkward table as a test sees it: checked, snapshotted, and a change set merging 'a 2' into 'a 1' (as
    the match model would) with every row's safe reformats; ``before`` is each row's content hash first."""

    engine: Any
    target: source.Target
    checked: source.Checked
    snap: Snapshot
    changes: ChangeSet
    before: dict[Any, str]


def _merge(url: str, tmp_path: Path, chunk_rows: int = 10) -> _Merge:
    from bpo.cleanup.pipeline import _snapshot_parts
    from bpo.run import get_store

    spec = _awkward_spec()
    target = source.resolve(url, 'cust"omers', Settings())
    engine = source.connect(target)
    checked = source.check(engine, target, spec)
    before = _hashes(engine, target, checked)
    fingerprinted = source.fingerprints(engine)  # as the flow reads it: PostgreSQL fingerprints each row
    snap = take_snapshot(source.read_chunks(engine, target, checked.columns, checked.key, chunk_rows,
                                            fingerprint=fingerprinted),
                         checked.columns, spec, f"bpo/test-cleanup/{tmp_path.name}", fingerprinted=fingerprinted)
    changes = build(_snapshot_parts(get_store(), snap), {encode_key("a 1"): "x", encode_key("a 2"): "x"}, {}, spec)
    return _Merge(engine, target, checked, snap, changes, before)


def test_an_awkward_table_is_snapshotted_applied_and_undone_exactly(tmp_path: Path, s3: dict[str, str],
                                                                    ops_db: str) -> None:
    """Names with quotes and spaces and a keyword column, keys with spaces and a quote, a mixed-type column,
    NULL-heavy rows, non-Latin and combining Unicode: read, changed and restored exactly."""
    m = _merge(_sqlite(tmp_path, AWKWARD, _awkward_rows()), tmp_path, chunk_rows=2)
    engine, target, checked, snap, changes, before = m.engine, m.target, m.checked, m.snap, m.changes, m.before
    assert snap.rows == 5 and len(snap.parts) == 3
    assert snap.before.emails == 2 and snap.before.valid_emails == 2 and snap.before.phones == 2
    # a plan stored before changes carried the columns they set (and fingerprints) sets the same columns
    import pyarrow.parquet as pq

    from bpo.cleanup.plan import from_parquet, to_parquet

    table = pq.read_table(io.BytesIO(to_parquet(changes.changes))).drop_columns(["sets", "before_fp"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    older = from_parquet(buf.getvalue())
    assert all(o.sets is None for o in older)
    assert [o.set_values(checked.key) for o in older] == [c.set_values(checked.key) for c in changes.changes]
    assert any(c.set_values(checked.key) for c in changes.changes)
    assert changes.clusters == {encode_key("a 1"): [encode_key("a 2")]}
    run_id = f"test-{tmp_path.name}"[:36]
    done = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    assert not done.conflicts and done.applied == len(changes.changes)
    with engine.connect() as conn:
        rows = {r[0]: r for r in conn.execute(text('SELECT * FROM "cust""omers"'))}
    assert set(rows) == {"a 1", "b'1", "c 1", "d 1"}
    assert rows["a 1"][1] == "José García" and rows["a 1"][3] == "+12025550101"
    assert rows["b'1"][1] == "李 小龍" and rows["c 1"][1:] == (None, None, None, None)
    # applying again writes nothing twice
    again = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    assert again.applied == 0 and not again.conflicts
    # killed after the commits but before the log said so: the next attempt finds each row already changed
    from sqlalchemy import delete as sql_delete

    from bpo.db.models import CleanupChange
    from bpo.db.session import session_scope

    with session_scope(ops_db) as s:
        s.execute(sql_delete(CleanupChange).where(CleanupChange.flow_run_id == run_id))
    resumed = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    assert not resumed.conflicts and resumed.applied == len(changes.changes)
    with session_scope(ops_db) as s:
        notes = {c.note for c in applying.log_of(s, run_id)}
    assert notes == {"found applied"}
    undone = applying.undo(engine, target, checked, ops_db, run_id, changes.changes)
    assert not undone.refused and undone.verified == undone.restored == len(changes.changes)
    assert _hashes(engine, target, checked) == before
    with engine.connect() as conn:  # the integer phone is an integer again, not its text
        assert conn.execute(text("""SELECT typeof(phone) FROM "cust""omers" WHERE "the key" = 'a 2'""")).scalar() \
            == "integer"
    engine.dispose()


def test_an_undo_restores_a_chunk_committed_by_a_run_killed_before_it_logged_it(
        tmp_path: Path, s3: dict[str, str], ops_db: str) -> None:
    """A run killed between a chunk's commit and its log, and never resumed: the undo finds the chunk applied
    (its rows show their "after" content) and restores it; a chunk never committed is left alone."""
    from sqlalchemy import delete as sql_delete

    from bpo.db.models import CleanupChange
    from bpo.db.session import session_scope

    m = _merge(_sqlite(tmp_path, AWKWARD, _awkward_rows()), tmp_path)
    engine, target, checked, changes, before = m.engine, m.target, m.checked, m.changes, m.before
    # never applied: the undo finds nothing of it in the table, and changes nothing
    idle = applying.undo(engine, target, checked, ops_db, f"idle-{tmp_path.name}"[:36], changes.changes)
    assert idle.restored == 0 and not idle.refused and _hashes(engine, target, checked) == before
    run_id = f"kill-{tmp_path.name}"[:36]
    applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    with session_scope(ops_db) as s:  # the log of the committed chunk is lost with the process
        s.execute(sql_delete(CleanupChange).where(CleanupChange.flow_run_id == run_id))
    assert _hashes(engine, target, checked) != before
    undone = applying.undo(engine, target, checked, ops_db, run_id, changes.changes)
    assert not undone.refused and undone.verified == undone.restored == len(changes.changes)
    assert _hashes(engine, target, checked) == before
    engine.dispose()


def test_changes_applied_in_many_chunks_are_each_logged_once_as_applied(
        tmp_path: Path, s3: dict[str, str], ops_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk's log is written while the next chunk is applied: every change ends logged once, applied, and
    the whole set undoes exactly."""
    from bpo.cleanup import plan
    from bpo.db.session import session_scope

    monkeypatch.setattr(plan, "CHUNK", 1)
    more = [f"""INSERT INTO "cust""omers" VALUES ('e {i}', '{name}', NULL, NULL, NULL)""" for i, name in enumerate(
        ["ANNA  SMITH", "BOB  LEE", "CARL  MAY", "DORA  KING"])]
    m = _merge(_sqlite(tmp_path, AWKWARD, _awkward_rows() + more), tmp_path)
    chunks = {c.chunk for c in m.changes.changes}
    assert len(chunks) >= 3
    run_id = f"many-{tmp_path.name}"[:36]
    done = applying.apply(m.engine, m.target, m.checked, ops_db, run_id, m.changes.changes)
    assert done.applied == len(m.changes.changes) and not done.conflicts
    with session_scope(ops_db) as s:
        log = [(c.seq, c.chunk, c.status, c.note) for c in applying.log_of(s, run_id)]
    assert log == [(c.seq, c.chunk, "applied", None) for c in m.changes.changes]
    undone = applying.undo(m.engine, m.target, m.checked, ops_db, run_id, m.changes.changes)
    assert not undone.refused and undone.verified == undone.restored == len(m.changes.changes)
    assert _hashes(m.engine, m.target, m.checked) == m.before
    m.engine.dispose()


def test_a_chunk_of_more_entries_than_one_statement_takes_is_logged_whole_and_exactly(ops_db: str) -> None:
    """On SQLite the change log takes many entries per statement: a chunk of more than one statement's worth (the
    last statement part-full) is logged whole, each entry's values where they belong."""
    from datetime import UTC

    from bpo.cleanup.plan import MAIN, Change
    from bpo.db.session import session_scope

    n = 4_321  # more than two statements' worth
    changes = [Change(MAIN, encode_key(f"k{i}"), "delete" if i % 3 else "update", "auto" if i % 2 else "safe",
                      encode_key(f"k{i - i % 5}") if i % 3 else None, None, None, f"b{i}", f"a{i}" if i % 3 == 0
                      else None, seq=i, chunk=i // 2_000) for i in range(n)]
    outcome = {i: ("conflict", f"note {i}") if i % 7 == 0 else ("applied", None) for i in range(n)}
    at = datetime(2026, 12, 3, 13, 0, tzinfo=UTC)
    run_id = "log-many"
    with session_scope(ops_db) as s:
        applying._log(s, run_id, changes, outcome, at)
    with session_scope(ops_db) as s:
        log = applying.log_of(s, run_id)
        got = [(c.seq, c.chunk, c.table_name, c.row_key, c.action, c.how, c.cluster, c.before_hash, c.after_hash,
                c.status, c.note, c.applied_at is not None) for c in log]
    assert got == [(c.seq, c.chunk, MAIN, c.row_key, c.action, c.how, c.cluster, c.before_hash, c.after_hash,
                    *outcome[c.seq], outcome[c.seq][0] == "applied") for c in changes]
    assert {c.applied_at.replace(tzinfo=UTC) for c in log if c.applied_at} == {at}
    with session_scope(ops_db) as s:  # the time is stored as SQLAlchemy writes it (the ORM's own text), not the driver
        raw = set(s.scalars(text("SELECT applied_at FROM cleanup_changes WHERE flow_run_id = :r AND applied_at IS NOT "
                                 "NULL"), {"r": run_id}))
    assert raw == {"2026-12-03 13:00:00.000000"}


PG_TYPED = ('CREATE TABLE "cust""omers" ("the key" TEXT PRIMARY KEY, "order" TEXT, "e-mail" TEXT, phone TEXT, '
            'born DATE, balance NUMERIC(12, 2), seen TIMESTAMPTZ, photo BYTEA, notes TEXT)')


def test_on_postgresql_each_row_gets_exactly_its_own_columns_and_the_undo_restores_it(
        pg_url: str, tmp_path: Path, s3: dict[str, str], ops_db: str) -> None:
    """PostgreSQL writes a batch of rows in one statement (``source.update_rows``): each row's given columns
    take their values exactly (text that COPY must escape, dates, numerics, bytes, NULL), every other column
    keeps its own; then a merge with reformats applies and undoes to the same content hashes."""

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text(PG_TYPED))
        conn.execute(text("""INSERT INTO "cust""omers" VALUES (:k, :o, :e, :p, :b, :bal, :seen, :photo, :n)"""), [
            {"k": "a 1", "o": "JOSÉ  GARCÍA", "e": "Jose@Example.com", "p": "(202) 555-0101", "b": date(1980, 2, 29),
             "bal": Decimal("10.50"), "seen": datetime.fromisoformat("2026-01-02T03:04:05+00:00"), "photo": b"\x00\xff",
             "n": None},
            {"k": "a 2", "o": "jose\u0301 garci\u0301a", "e": "jose@example.com", "p": "202.555.0101", "b": None,
             "bal": None, "seen": None, "photo": None, "n": "tab\there"},
            {"k": "b'1", "o": "李 小龍", "e": None, "p": None, "b": date(2000, 1, 1), "bal": Decimal("-0.01"),
             "seen": None, "photo": b"", "n": None},
            {"k": "c 1", "o": "MARY  JONES", "e": "Mary@Example.com", "p": None, "b": None, "bal": None,
             "seen": None, "photo": None, "n": None}])
    engine.dispose()
    m = _merge(pg_url, tmp_path, chunk_rows=2)
    engine, target, checked, changes, before = m.engine, m.target, m.checked, m.changes, m.before

    def rows() -> dict[str, dict[str, Any]]:
        with engine.connect() as conn:
            return {r["the key"]: dict(r) for r in conn.execute(text('SELECT * FROM "cust""omers"')).mappings()}

    was = rows()
    new = {"a 1": {"order": "back\\slash\nnew line\t\"quoted\"", "born": date(1999, 12, 31)},
           "a 2": {"balance": Decimal("1234567890.12"), "photo": b"\\N\x00", "notes": None},
           "b'1": {"seen": datetime.fromisoformat("2026-12-02T10:00:00+05:30"), "e-mail": "\\N"}}
    with engine.begin() as conn:
        source.update_rows(conn, target, target.table, checked.key, [*new.items(), ("c 1", {})])
    now = rows()
    for key, values in new.items():
        assert now[key] == {**was[key], **values}, key  # its own columns changed, the others as they were
    assert now["c 1"] == was["c 1"]  # given no column: left as it is
    with engine.begin() as conn:  # put back as it was: the merge below starts from the first rows
        source.update_rows(conn, target, target.table, checked.key,
                           [(k, {c: was[k][c] for c in values}) for k, values in new.items()])
    assert rows() == was and _hashes(engine, target, checked) == before

    assert all(c.before_fp for c in changes.changes)  # checked by the database's fingerprint of each row first
    with engine.begin() as conn:  # someone edits a row after the snapshot: its fingerprint tells
        conn.execute(text("""UPDATE "cust""omers" SET born = DATE '2000-01-02' WHERE "the key" = 'c 1'"""))
    run_id = f"pg-{tmp_path.name}"[:36]
    done = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    assert [c["row_key"] for c in done.conflicts] == [encode_key("c 1")]
    assert done.applied == len(changes.changes) - 1
    from sqlalchemy import delete as sql_delete

    from bpo.db.models import CleanupChange
    from bpo.db.session import session_scope

    with session_scope(ops_db) as s:  # killed after the commit, before the log: found applied by their content
        s.execute(sql_delete(CleanupChange).where(CleanupChange.flow_run_id == run_id))
    again = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    assert again.applied == len(changes.changes) - 1 and len(again.conflicts) == 1
    with session_scope(ops_db) as s:
        assert {c.note for c in applying.log_of(s, run_id) if c.status == "applied"} == {"found applied"}
    was["c 1"]["born"] = date(2000, 1, 2)
    merged = rows()
    assert set(merged) == {"a 2", "b'1", "c 1"}  # the most complete row survives
    assert merged["a 2"]["order"] == "José García" and merged["a 2"]["phone"] == "+12025550101"
    assert merged["a 2"]["notes"] == "tab here" and merged["a 2"]["balance"] is None  # not the spec's: its own
    assert merged["b'1"] == was["b'1"] and merged["c 1"] == was["c 1"]  # c 1, the conflict: not overwritten
    undone = applying.undo(engine, target, checked, ops_db, run_id, changes.changes)
    assert not undone.refused and undone.verified == undone.restored == len(changes.changes) - 1
    assert rows() == was
    engine.dispose()


def test_on_postgresql_chunks_applied_side_by_side_are_each_logged_once_and_undone_exactly(
        pg_url: str, tmp_path: Path, s3: dict[str, str], ops_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL two chunks are applied at once, each its own transaction: with many small chunks, every change
    is logged once, the references to every merged row are re-pointed (each re-pointing logged under a number of
    its own), a cluster with a row changed since the snapshot is left whole as a conflict, and the undo restores
    both tables exactly."""
    import threading
    import time

    from bpo.cleanup import plan
    from bpo.cleanup.pipeline import _snapshot_parts
    from bpo.db.session import session_scope
    from bpo.run import get_store

    monkeypatch.setattr(plan, "CHUNK", 2)  # a cluster's two changes a chunk
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT)"))
        conn.execute(text("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, "
                          "customer_id TEXT NOT NULL REFERENCES people (id))"))
        conn.execute(text("INSERT INTO people VALUES (:i, :n, :e, :p)"), [  # p00 and p01 are one person, and so on
            {"i": f"p{i:02d}", "n": f"ANNA  SMITH {i // 2}", "e": f"Anna{i // 2}@Example.com",
             "p": f"(202) 555-01{i // 2:02d}"} for i in range(24)])
        conn.execute(text("INSERT INTO orders VALUES (:o, :c)"), [{"o": o, "c": f"p{o % 24:02d}"} for o in range(48)])
    spec = _spec(references=[{"table": "orders", "column": "customer_id"}])
    target = source.resolve(pg_url, "people", Settings())
    checked = source.check(engine, target, spec)
    snap = take_snapshot(source.read_chunks(engine, target, checked.columns, checked.key, 10, fingerprint=True),
                         checked.columns, spec, f"bpo/test-cleanup/{tmp_path.name}", fingerprinted=True)
    cluster_of = {encode_key(f"p{i:02d}"): f"c{i // 2}" for i in range(24)}
    changes = build(_snapshot_parts(get_store(), snap), cluster_of, {}, spec).changes
    assert len({c.chunk for c in changes}) == 12
    with engine.begin() as conn:  # someone edits a merged row between the snapshot and the apply
        conn.execute(text("UPDATE people SET name = 'Anna Smith-Jones' WHERE id = 'p05'"))
    people_before = _hashes(engine, target, checked)

    def order_rows() -> dict[Any, Any]:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT order_id, customer_id FROM orders")).tuples().all())

    orders_before = order_rows()
    at_once, most = 0, 0
    lock = threading.Lock()
    real = applying._apply_chunk

    def counted(*args: Any) -> Any:  # the real chunk, counted while it runs
        nonlocal at_once, most
        with lock:
            at_once += 1
            most = max(most, at_once)
        try:
            time.sleep(0.05)  # long enough for the next chunk to start beside it
            return real(*args)
        finally:
            with lock:
                at_once -= 1

    monkeypatch.setattr(applying, "_apply_chunk", counted)
    run_id = f"side-{tmp_path.name}"[:36]
    done = applying.apply(engine, target, checked, ops_db, run_id, changes)
    assert most == 2  # two chunks at once
    conflicted = {encode_key("p04"), encode_key("p05")}
    assert {c["row_key"] for c in done.conflicts} == conflicted
    assert done.applied == sum(c.row_key not in conflicted for c in changes)
    assert done.repointed == 22  # two orders for each odd row (the merged ones), but p05's
    with engine.connect() as conn:
        live = set(conn.execute(text("SELECT id FROM people")).scalars())
    assert live == {f"p{i:02d}" for i in range(24) if i % 2 == 0} | {"p05"}
    assert set(order_rows().values()) <= live
    with session_scope(ops_db) as s:
        log = list(applying.log_of(s, run_id))
    assert len({c.seq for c in log}) == len(log) == len(changes) + 22
    assert sorted((c.seq, c.status) for c in log if c.table_name == plan.MAIN) == sorted(
        (c.seq, "conflict" if c.row_key in conflicted else "applied") for c in changes)
    assert {c.status for c in log if c.action == "repoint"} == {"applied"}
    undone = applying.undo(engine, target, checked, ops_db, run_id, changes)
    assert not undone.refused and undone.verified == undone.restored == done.applied + 22
    assert _hashes(engine, target, checked) == people_before and order_rows() == orders_before
    engine.dispose()


def _hashes(engine: Any, target: source.Target, checked: source.Checked) -> dict[Any, str]:
    rows = [r for chunk in source.read_chunks(engine, target, checked.columns, checked.key, 100) for r in chunk]
    i = checked.columns.index(checked.key)
    return {r[i]: row_hash(encode_row(checked.columns, r)) for r in rows}


def test_a_row_changed_after_the_snapshot_is_a_conflict_and_one_changed_after_the_apply_is_not_undone(
        tmp_path: Path, s3: dict[str, str], ops_db: str) -> None:
    m = _merge(_sqlite(tmp_path, AWKWARD, _awkward_rows()), tmp_path)
    engine, target, checked, changes = m.engine, m.target, m.checked, m.changes
    with engine.begin() as conn:  # someone edits the duplicate between the snapshot and the apply
        conn.execute(text("""UPDATE "cust""omers" SET notes = 'called today' WHERE "the key" = 'a 2'"""))
    run_id = f"conf-{tmp_path.name}"[:36]
    done = applying.apply(engine, target, checked, ops_db, run_id, changes.changes)
    conflicted = {c["row_key"] for c in done.conflicts}
    # the edited row is not overwritten, and its cluster is not merged half-way
    assert conflicted == {encode_key("a 1"), encode_key("a 2")}
    with engine.connect() as conn:
        assert conn.execute(text("""SELECT notes FROM "cust""omers" WHERE "the key" = 'a 2'""")).scalar() \
            == "called today"
    # the reformat of another row applied; edited after the apply, it is refused on undo, not overwritten
    with engine.connect() as conn:
        assert conn.execute(text("""SELECT "order" FROM "cust""omers" WHERE "the key" = 'd 1'""")).scalar() \
            == "Mary Jones"
    with engine.begin() as conn:
        conn.execute(text("""UPDATE "cust""omers" SET notes = 'later' WHERE "the key" = 'd 1'"""))
    undone = applying.undo(engine, target, checked, ops_db, run_id, changes.changes)
    assert [(r["row_key"], r["reason"]) for r in undone.refused] == [(encode_key("d 1"),
                                                                      "the row changed since the apply")]
    with engine.connect() as conn:
        assert conn.execute(text("""SELECT notes FROM "cust""omers" WHERE "the key" = 'd 1'""")).scalar() == "later"
    engine.dispose()


def test_a_soft_deleted_merge_keeps_the_row_pointing_at_its_survivor_and_undoes_exactly(
        tmp_path: Path, s3: dict[str, str], ops_db: str) -> None:
    from bpo.cleanup.pipeline import _snapshot_parts
    from bpo.run import get_store

    url = _sqlite(tmp_path, "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, "
                            "merged_into INTEGER)", [
        "INSERT INTO people VALUES (1, 'Ann Lee', 'ann@example.com', NULL, NULL)",
        "INSERT INTO people VALUES (2, 'ANN LEE', NULL, '+12025550101', NULL)"])
    spec = _spec(merge={"mode": "soft_delete", "column": "merged_into"})
    target = source.resolve(url, "people", Settings())
    engine = source.connect(target)
    checked = source.check(engine, target, spec)
    before = _hashes(engine, target, checked)
    snap = take_snapshot(source.read_chunks(engine, target, checked.columns, checked.key, 10), checked.columns, spec,
                         f"bpo/test-cleanup/{tmp_path.name}")
    changes = build(_snapshot_parts(get_store(), snap), {encode_key(1): "c", encode_key(2): "c"}, {}, spec)
    run_id = f"soft-{tmp_path.name}"[:36]
    assert not applying.apply(engine, target, checked, ops_db, run_id, changes.changes).conflicts
    with engine.connect() as conn:
        rows = {r[0]: tuple(r[1:]) for r in conn.execute(text("SELECT * FROM people"))}
    # the survivor takes the phone it lacked; the merged row stays, pointing at it
    assert rows[1] == ("Ann Lee", "ann@example.com", "+12025550101", None)
    assert rows[2][3] == 1
    assert not applying.undo(engine, target, checked, ops_db, run_id, changes.changes).refused
    assert _hashes(engine, target, checked) == before
    engine.dispose()


def test_survivorship_keeps_the_most_complete_row_and_takes_each_column_by_its_rule() -> None:
    from bpo.cleanup.plan import Member, survivor

    spec = CleanupSpec.model_validate({"name": "s-cleanup", "key": "id", "columns": {
        "name": {"role": "person_name"}, "email": {"role": "email"}, "phone": {"role": "phone"},
        "seen": {"role": "free_text", "compare": False}, "origin": {"role": "free_text", "compare": False}},
        "survivorship": {"default": "most_complete", "recency_column": "seen", "source_column": "origin",
                         "source_priority": ["crm", "web"],
                         "columns": {"email": "most_recent", "phone": "source_priority"}}})

    def member(key: int, **values: Any) -> Member:
        row = {"id": key, "name": None, "email": None, "phone": None, "seen": None, "origin": None, **values}
        return Member(encode_key(key), row, f"h{key}", "{}")

    rows = [member(3, name="Ann Lee", email="old@x.com", phone="+1", seen="2020-01-01", origin="web"),
            member(1, name="Ann Lee", email="new@x.com", seen="2024-05-01", origin="web"),
            member(2, name="A. Lee", email="mid@x.com", phone="+2", seen="2022-01-01", origin="crm")]
    kept, values = survivor(rows, spec)
    # rows 2 and 3 are as complete (5 values): the smaller key is kept; its name stays (most complete first)
    assert kept.key == encode_key(2) and values["name"] == "A. Lee"
    assert values["email"] == "new@x.com"  # the most recent row's
    assert values["phone"] == "+2"  # the most trusted source's
    assert values["id"] == 2


def test_clusters_merged_half_in_a_worker_make_the_same_change_set(tmp_path: Path, s3: dict[str, str]) -> None:
    """``build`` with a side (a real process, so the rows and the changes cross a pickle as the flow's worker's do)
    gives the change set it gives alone: every change in the same order, numbered and chunked alike, the same
    clusters, survivors and projection; a row alone in its cluster keeps its reformats only."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bpo.cleanup import plan
    from bpo.cleanup.pipeline import _snapshot_parts
    from bpo.run import get_store

    url = f"sqlite:///{tmp_path / 'people.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE people (id TEXT PRIMARY KEY, name TEXT, email TEXT, phone TEXT)"))
        conn.execute(text("INSERT INTO people VALUES (:i, :n, :e, :p)"), [
            {"i": f"p{i:02d}", "n": f"ANNA  SMITH {i // 3}", "e": f"Anna{i // 3}@Example.com" if i % 3 else None,
             "p": f"(202) 555-01{i % 50:02d}"} for i in range(40)])
    spec = _spec()
    target = source.resolve(url, "people", Settings())
    checked = source.check(engine, target, spec)
    snap = take_snapshot(source.read_chunks(engine, target, checked.columns, checked.key, 7), checked.columns, spec,
                         f"bpo/test-cleanup/{tmp_path.name}")
    # clusters of three (the last row of each has an email the others lack), one of two, one row alone
    cluster_of = {encode_key(f"p{i:02d}"): f"c{i // 3:02d}" for i in range(30)}
    cluster_of |= {encode_key("p30"): "d", encode_key("p31"): "d", encode_key("p32"): "e"}
    how = {"c01": "review"}
    alone = build(_snapshot_parts(get_store(), snap), cluster_of, how, spec)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as worker:
        beside = build(_snapshot_parts(get_store(), snap), cluster_of, how, spec,
                       side=lambda fn, *args: worker.submit(fn, *args))
    assert plan.to_parquet(beside.changes) == plan.to_parquet(alone.changes)
    assert (beside.clusters, beside.how, beside.projected) == (alone.clusters, alone.how, alone.projected)
    assert len(alone.clusters) == 11 and sum(len(m) for m in alone.clusters.values()) == 10 * 2 + 1
    assert list(alone.how.values()).count("review") == 1
    lone = [c for c in alone.changes if c.row_key == encode_key("p32")]
    assert [(c.action, c.cluster) for c in lone] == [("update", None)]  # its reformats, merged into nothing
    assert {c.row_key for c in alone.changes if c.action == "delete"} == {
        k for members in alone.clusters.values() for k in members}
