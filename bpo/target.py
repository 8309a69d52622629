"""Target tables: the table a spec describes, and upserts of accepted records keyed by the natural key."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Date, Engine, MetaData, Numeric, String, Table, Text, cast, inspect, select
from sqlalchemy.dialects import postgresql, sqlite

from bpo.db.models import ReviewItem
from bpo.db.session import engine_for, session_scope
from bpo.pool import map_in_workers
from bpo.quality import BatchChecked
from bpo.review.record import KEPT
from bpo.routing import RECORDS_STEP, Routed, route_batch
from bpo.run import Part, RunContext, get_store, read_parquet
from bpo.schema import ROW
from bpo.settings import get_settings
from bpo.spec import ProcessSpec
from bpo.store import StoredObject

PROVENANCE = ["source_file", "source_row", "flow_run_id"]


def target_table(spec: ProcessSpec, metadata: MetaData | None = None) -> Table:
    """The target table a spec describes: one column per field, the natural key as primary key."""
    metadata = metadata or MetaData()
    cols: list[Column] = []
    for name, field in spec.fields.items():
        key = name in spec.target.key
        if field.type == "date":
            cols.append(Column(name, Date, primary_key=key))
        elif field.type == "money":
            cols.append(Column(name, Numeric(18, 2)))
            cols.append(Column(f"{name}_currency", String(3)))
        elif field.type == "integer":
            cols.append(Column(name, BigInteger, primary_key=key))
        else:
            cols.append(Column(name, String(field.max_length or 320) if key else Text, primary_key=key))
    cols += [Column("source_file", Text), Column("source_row", BigInteger), Column("flow_run_id", String(36))]
    return Table(spec.target.table, metadata, *cols)


def ensure_table(engine: Engine, spec: ProcessSpec) -> Table:
    """Create the target table if it is missing; refuse one whose columns differ from the spec."""
    table = target_table(spec)
    inspector = inspect(engine)
    if inspector.has_table(table.name):
        existing = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in existing]
        if missing:
            raise RuntimeError(f"target table {table.name!r} lacks columns {missing}; migrate it before loading")
    else:
        table.create(engine)
    return table


def to_rows(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """Select and type the table's columns from a normalized frame."""
    out = pd.DataFrame(index=frame.index)
    for col in table.columns:
        src = frame[col.name] if col.name in frame else pd.Series(None, index=frame.index, dtype=object)
        if isinstance(col.type, Date):
            out[col.name] = pd.to_datetime(src, format="%Y-%m-%d", errors="coerce").dt.date
        elif isinstance(col.type, BigInteger):
            # never through float: integers beyond 2**53 must stay exact
            out[col.name] = pd.array(src.astype(object).where(src.notna(), None).tolist(), dtype="Int64")
        else:
            out[col.name] = src
    return out.astype(object).where(out.notna(), None)


def upsert(engine: Engine, table: Table, rows: pd.DataFrame, key: list[str], *, chunk_rows: int = 50_000) -> int:
    """Insert or update ``rows`` by ``key``; one transaction per chunk; returns rows written."""
    if rows.empty:
        return 0
    # a statement may touch a key once: the last occurrence wins, as a later record would on re-entry
    rows = rows.drop_duplicates(subset=key, keep="last")
    if engine.dialect.name == "postgresql":
        import pyarrow as pa

        cols = [c.name for c in table.columns]
        return upsert_arrow(engine, table, pa.Table.from_pandas(rows[cols], preserve_index=False), key,
                            chunk_rows=chunk_rows)
    for start in range(0, len(rows), chunk_rows):
        _upsert_generic(engine, table, rows.iloc[start:start + chunk_rows], key)
    return len(rows)


def upsert_arrow(engine: Engine, table: Table, rows: pa.Table, key: list[str], *, chunk_rows: int = 50_000) -> int:
    """PostgreSQL: upsert an Arrow table with the target's columns, never through Python objects."""
    keys = rows.select(key).to_pandas()
    if keys.duplicated(keep="last").any():
        rows = rows.filter(pa.array(~keys.duplicated(keep="last").to_numpy()))
    for start in range(0, rows.num_rows, chunk_rows):
        _upsert_postgres(engine, table, rows.slice(start, chunk_rows), key)
    return rows.num_rows


def _upsert_generic(engine: Engine, table: Table, part: pd.DataFrame, key: list[str]) -> None:
    insert = sqlite.insert(table) if engine.dialect.name == "sqlite" else postgresql.insert(table)
    updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in key}
    stmt = insert.on_conflict_do_update(index_elements=key, set_=updates)
    with engine.begin() as conn:
        conn.execute(stmt, part.to_dict("records"))


def _upsert_postgres(engine: Engine, table: Table, part: pa.Table, key: list[str]) -> None:
    """COPY straight into the table; if a key is already there, COPY into a temporary table and upsert from it.

    A chunk of new records (the usual case: keys seen twice in a batch are held for review) costs one
    COPY. A chunk that meets an existing key rolls its COPY back to a savepoint at the first conflict and
    takes the INSERT … ON CONFLICT DO UPDATE path, so the outcome is an upsert either way.
    """
    from psycopg import errors, sql
    from pyarrow import csv as pa_csv

    cols = [c.name for c in table.columns]
    buf = io.BytesIO()
    # nulls are written unquoted-empty (COPY's NULL), every string is quoted ("" stays an empty string)
    pa_csv.write_csv(part.select(cols), buf, pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    ident = sql.Identifier
    col_list = sql.SQL(", ").join(map(ident, cols))
    updates = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in cols if c not in key)
    with engine.begin() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None  # an open connection has its psycopg connection
        cur = driver.cursor()
        cur.execute("SAVEPOINT bpo_copy")
        try:
            direct = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(ident(table.name), col_list)
            with cur.copy(direct) as copy:
                copy.write(buf.getbuffer())
            return
        except errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT bpo_copy")
        cur.execute(sql.SQL("CREATE TEMP TABLE bpo_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP")
                    .format(ident(table.name)))
        with cur.copy(sql.SQL("COPY bpo_stage ({}) FROM STDIN WITH (FORMAT csv)").format(col_list)) as copy:
            copy.write(buf.getbuffer())
        cur.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM bpo_stage ON CONFLICT ({k}) DO UPDATE SET {u}")
                    .format(t=ident(table.name), c=col_list, k=sql.SQL(", ").join(map(ident, key)), u=updates))


def count_rows(engine: Engine, table_name: str) -> int:
    from sqlalchemy import func

    table = Table(table_name, MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


class Passed(BaseModel):
    """Records that went straight through to the target table, per input file."""

    loaded: dict[str, int]


class Decided(BaseModel):
    """What the review decided, applied: records approved (loaded), rejected, superseded, per input file."""

    loaded: dict[str, int]
    rejected: dict[str, int]
    superseded: dict[str, int]  # records of a repeated key the agent did not keep
    approved: int
    objects: list[StoredObject]


def load_rows(run: RunContext, spec: ProcessSpec, data: pa.Table) -> int:
    """Upsert normalized records (as stored: a chunk's, or some of them) into the target table; returns how many."""
    settings = get_settings()
    engine = engine_for(settings.target_database_url or "")
    table = target_table(spec)
    if engine.dialect.name == "postgresql":
        upsert_arrow(engine, table, _arrow_rows(data, table, run), spec.target.key, chunk_rows=settings.chunk_rows)
    else:
        upsert(engine, table, to_rows(_with_provenance(data.to_pandas(), run), table), spec.target.key,
               chunk_rows=settings.chunk_rows)
    return data.num_rows


def load_part(run: RunContext, spec: ProcessSpec, part: Part, review_rows_key: str,
              repeated_key: str | None = None) -> int:
    """Upsert one chunk's records that were not held for review; returns how many. With ``repeated_key``
    (a parquet of ``row`` numbers: records whose natural key repeats), only those of its records."""
    store = get_store()
    held = pa.array(read_parquet(store, review_rows_key)[ROW], type=pa.int64())
    data = pq.read_table(io.BytesIO(store.get_bytes(part.normalized)))
    keep = pc.invert(pc.is_in(data[ROW], value_set=held))
    if repeated_key is not None:
        repeated = pa.array(read_parquet(store, repeated_key)["row"], type=pa.int64())
        keep = pc.and_(keep, pc.is_in(data[ROW], value_set=repeated))
    return load_rows(run, spec, data.filter(keep))


def load_passed(run: RunContext, spec: ProcessSpec, parts: list[Part], review_rows_key: str,
                repeated_key: str | None = None) -> Passed:
    """Upsert the records that passed straight through; a re-run adds no rows. With ``repeated_key``, only
    those of a repeated natural key (see ``load_part``).

    No two of them share a natural key (routing holds or supersedes every repeated one), so on
    PostgreSQL the chunks load side by side; SQLite takes one writer at a time.
    """
    engine = engine_for(get_settings().target_database_url or "")
    ensure_table(engine, spec)
    calls = [(run, spec, part, review_rows_key, repeated_key) for part in parts]
    if engine.dialect.name == "postgresql":
        counts = map_in_workers(load_part, calls)
    else:
        counts = [load_part(*call) for call in calls]
    loaded: dict[str, int] = {}
    for part, count in zip(parts, counts, strict=True):
        loaded[part.file] = loaded.get(part.file, 0) + count
    return Passed(loaded=loaded)


def route_and_load(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                   low_confidence: dict[str, list[str]]) -> tuple[Routed, Passed]:
    """Route the batch (``bpo.routing.route_batch``) and load what passes straight through; a re-run adds no rows.

    On PostgreSQL each chunk's passing records are loaded as it is routed, beside the writing of its review
    items (the database's work then overlaps the routing's), and only the last record of a repeated key that
    passes is loaded afterwards. SQLite takes one writer at a time: it loads after the routing.
    """
    engine = engine_for(get_settings().target_database_url or "")
    ensure_table(engine, spec)
    if engine.dialect.name != "postgresql":
        routed = route_batch(run, spec, parts, checked, low_confidence)
        return routed, load_passed(run, spec, parts, routed.review_rows)
    routed = route_batch(run, spec, parts, checked, low_confidence, load=load_rows)
    loaded = dict(routed.loaded)
    if routed.passed > sum(loaded.values()):  # the last record of a repeated key, where it passes
        for file, count in load_passed(run, spec, parts, routed.review_rows, checked.duplicates).loaded.items():
            loaded[file] = loaded.get(file, 0) + count
    return routed, Passed(loaded=loaded)


def _kept(item: Any) -> tuple[str, int]:
    """The record an approved item loads: the one the agent kept, else the one it came from."""
    kept = (item.decision or {}).get(KEPT) or item.source
    return str(kept["file"]), int(kept["row"])


def _add(counts: dict[str, int], file: str, n: int = 1) -> None:
    counts[file] = counts.get(file, 0) + n


def load_decisions(run: RunContext, spec: ProcessSpec) -> Decided:
    """Upsert the records reviewers approved (or whose approval carried over); archive every decision.

    An item for a repeated natural key loads the record kept (its ``source``) and counts the other
    records of the key as superseded; rejecting it rejects them all.
    """
    settings = get_settings()
    engine = engine_for(settings.target_database_url or "")
    table = ensure_table(engine, spec)
    items, decisions = _archive_decisions(run)
    loaded: dict[str, int] = {}
    rejected: dict[str, int] = {}
    superseded: dict[str, int] = {}
    approved = [i for i in items if i.status == "approved"]
    for item in items:
        members = item.source.get("records") or [item.source]
        if item.status == "rejected":
            for m in members:
                _add(rejected, m["file"])
        elif item.status == "approved":
            file, row = _kept(item)
            _add(loaded, file)
            for m in members:
                if (m["file"], m["row"]) != (file, row):
                    _add(superseded, m["file"])
    if approved:
        decided = pd.DataFrame([{**{k: v for k, v in (i.decision or {}).items() if k != KEPT},
                                 "_source_file": _kept(i)[0], "_source_row": _kept(i)[1]} for i in approved],
                               dtype=object)
        upsert(engine, table, to_rows(_with_provenance(decided, run), table), spec.target.key,
               chunk_rows=settings.chunk_rows)
    return Decided(loaded=loaded, rejected=rejected, superseded=superseded, approved=len(approved),
                   objects=[decisions])


@dataclass(frozen=True)
class _Decided:
    """An item as loading its decision needs it (the decision parsed only where it is an approval)."""

    status: str
    source: dict[str, Any]
    decision: dict[str, Any] | None


# written to the archive as stored: JSON text, never parsed and encoded again (tens of thousands of items)
_AS_STORED = ("failed_checks", "proposed", "decision")


def _archive_decisions(run: RunContext) -> tuple[list[_Decided], StoredObject]:
    """The run's review items and their decisions, and ``review/decisions.jsonl`` written from them."""
    with session_scope(get_settings().ops_database_url or "") as s:
        rows = s.execute(select(ReviewItem.id, ReviewItem.record_key, ReviewItem.status, ReviewItem.source,
                                ReviewItem.reason, ReviewItem.decided_by, ReviewItem.decided_at,
                                *(cast(getattr(ReviewItem, c), Text).label(c) for c in _AS_STORED)).where(
            ReviewItem.flow_run_id == run.flow_run_id, ReviewItem.step == RECORDS_STEP)).all()
    # JSON Lines, one decision a line, spliced from the stored JSON: json's own encoder is the slow part
    lines = []
    items = []
    for r in rows:
        head = json.dumps({"item": r.id, "record": r.record_key, "status": r.status, "reason": r.reason,
                           "decided_by": r.decided_by, "decided_at": r.decided_at}, default=str)[:-1]
        stored = ", ".join(f'"{c}": {getattr(r, c) or "null"}' for c in _AS_STORED)
        lines.append(f"{head}, {stored}}}\n")
        items.append(_Decided(r.status, r.source, json.loads(r.decision) if r.status == "approved" and r.decision
                              else None))
    return items, get_store().put_bytes(run.key("review", "decisions.jsonl"), "".join(lines).encode(),
                                        "application/x-ndjson")


def _arrow_rows(data: pa.Table, table: Table, run: RunContext) -> pa.Table:
    """The target's columns from a normalized chunk; dates stay ISO text, which COPY reads as dates."""
    n = data.num_rows
    source = {"source_file": "_source_file", "source_row": "_source_row"}
    arrays = []
    for col in table.columns:
        name = source.get(col.name, col.name)
        if col.name == "flow_run_id":
            arrays.append(pa.array([run.flow_run_id] * n, type=pa.string()))
        elif name in data.column_names:
            arrays.append(data[name])
        else:
            arrays.append(pa.nulls(n))
    return pa.table(arrays, names=[c.name for c in table.columns])


def _with_provenance(frame: pd.DataFrame, run: RunContext) -> pd.DataFrame:
    return frame.assign(source_file=frame["_source_file"], source_row=frame["_source_row"],
                        flow_run_id=run.flow_run_id)
