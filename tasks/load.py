"""Load: upsert accepted records into the target table, keyed by the natural key, in chunked transactions."""

from __future__ import annotations

import io

import pandas as pd
from prefect import task
from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, Date, Engine, MetaData, Numeric, String, Table, Text, inspect, select
from sqlalchemy.dialects import postgresql, sqlite

from bpo.db.models import ReviewItem
from bpo.db.session import engine_for, session_scope
from bpo.settings import get_settings
from bpo.spec import ProcessSpec
from bpo.store import StoredObject
from tasks.artifacts import Part, RunContext, get_store, put_json, read_parquet
from tasks.quality import ROW
from tasks.review import RECORDS_STEP

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
    if inspect(engine).has_table(table.name):
        existing = {c["name"] for c in inspect(engine).get_columns(table.name)}
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
    written = 0
    for start in range(0, len(rows), chunk_rows):
        part = rows.iloc[start:start + chunk_rows]
        if engine.dialect.name == "postgresql":
            _upsert_postgres(engine, table, part, key)
        else:
            _upsert_generic(engine, table, part, key)
        written += len(part)
    return written


def _upsert_generic(engine: Engine, table: Table, part: pd.DataFrame, key: list[str]) -> None:
    insert = sqlite.insert(table) if engine.dialect.name == "sqlite" else postgresql.insert(table)
    updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in key}
    stmt = insert.on_conflict_do_update(index_elements=key, set_=updates)
    with engine.begin() as conn:
        conn.execute(stmt, part.to_dict("records"))


def _upsert_postgres(engine: Engine, table: Table, part: pd.DataFrame, key: list[str]) -> None:
    """COPY into a temporary table, then one INSERT … ON CONFLICT DO UPDATE from it."""
    import pyarrow as pa
    from psycopg import sql
    from pyarrow import csv as pa_csv

    cols = [c.name for c in table.columns]
    buf = io.BytesIO()
    # nulls are written unquoted-empty (COPY's NULL), every string is quoted ("" stays an empty string)
    pa_csv.write_csv(pa.Table.from_pandas(part[cols], preserve_index=False), buf,
                     pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    ident = sql.Identifier
    col_list = sql.SQL(", ").join(map(ident, cols))
    updates = sql.SQL(", ").join(sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in cols if c not in key)
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
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




class Loaded(BaseModel):
    """Records that reached the target table (passed or approved) and those rejected, per input file."""

    loaded: dict[str, int]
    rejected: dict[str, int]
    approved: int
    objects: list[StoredObject]


@task(retries=2, retry_delay_seconds=5, timeout_seconds=3600)
def load_records(run: RunContext, spec: ProcessSpec, parts: list[Part], review_rows_key: str) -> Loaded:
    """Upsert the records that passed and the ones a reviewer approved; a re-run adds no rows."""
    settings = get_settings()
    store = get_store()
    engine = engine_for(settings.target_database_url or "")
    table = ensure_table(engine, spec)
    held = set(read_parquet(store, review_rows_key)[ROW].tolist())
    loaded: dict[str, int] = {}
    for part in parts:
        data = read_parquet(store, part.normalized)
        data = data[~data[ROW].isin(held)]
        upsert(engine, table, to_rows(_with_provenance(data, run), table), spec.target.key,
               chunk_rows=settings.chunk_rows)
        loaded[part.file] = loaded.get(part.file, 0) + len(data)
    rejected: dict[str, int] = {}
    with session_scope(settings.ops_database_url) as s:
        items = list(s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == run.flow_run_id,
                                                        ReviewItem.step == RECORDS_STEP)))
    approved = [i for i in items if i.status == "approved"]
    for item in items:
        if item.status == "rejected":
            rejected[item.source["file"]] = rejected.get(item.source["file"], 0) + 1
        elif item.status == "approved":
            loaded[item.source["file"]] = loaded.get(item.source["file"], 0) + 1
    if approved:
        decided = pd.DataFrame([{**(i.decision or {}), "_source_file": i.source["file"],
                                 "_source_row": i.source["row"]} for i in approved], dtype=object)
        upsert(engine, table, to_rows(_with_provenance(decided, run), table), spec.target.key,
               chunk_rows=settings.chunk_rows)
    decisions = put_json(store, run.key("review", "decisions.json"), [{
        "item": i.id, "record": i.record_key, "status": i.status, "failed_checks": i.failed_checks,
        "proposed": i.proposed, "decision": i.decision, "reason": i.reason, "decided_by": i.decided_by,
        "decided_at": i.decided_at} for i in items])
    return Loaded(loaded=loaded, rejected=rejected, approved=len(approved), objects=[decisions])


def _with_provenance(frame: pd.DataFrame, run: RunContext) -> pd.DataFrame:
    return frame.assign(source_file=frame["_source_file"], source_row=frame["_source_row"],
                        flow_run_id=run.flow_run_id)
