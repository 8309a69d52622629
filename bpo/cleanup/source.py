"""The client's table: connect, check it against the spec before touching it, read it in chunks, change rows.

Every statement is built with SQLAlchemy Core on lightweight ``table()``/``column()`` objects: names
are quoted by SQLAlchemy (a column called ``order``, a key with spaces, a name holding a quote), values
are bound, and results come back as the driver reads them (no type processing), so nothing of a value
is lost on the way to the snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Connection,
    CreateTableAs,
    DropTable,
    Engine,
    String,
    TableClause,
    Text,
    any_,
    bindparam,
    case,
    cast,
    column,
    create_engine,
    false,
    func,
    inspect,
    literal,
    select,
    table,
    update,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.types import NullType

from bpo.cleanup.rows import encode_row, encode_rows, encode_value, key_text, text_hash
from bpo.cleanup.spec import CleanupSpec
from bpo.connections import ConnectionRefused, connection_url
from bpo.settings import Settings

IN_CHUNK = 500  # keys bound in one IN (...): under every driver's parameter limit
ARRAY_CHUNK = 10_000  # keys bound as one array (PostgreSQL: one parameter, whatever the count)


class CleanupRefused(ValueError):
    """The table or the spec does not fit: said before anything is read or written."""


@dataclass(frozen=True)
class Target:
    """Where the table is: the URL to connect with, and how to name it in logs and the ops database."""

    url: str  # may hold a password: never logged, never stored
    label: str  # the connection's name, or the URL without its password
    table: str
    schema: str | None = None


def resolve(database: str, table_name: str, settings: Settings) -> Target:
    """A named connection (``BPO_CONNECTIONS``) or a SQLAlchemy URL; refused with a reason if it is neither."""
    try:
        url, label = connection_url(database, settings)
    except ConnectionRefused as exc:
        raise CleanupRefused(str(exc)) from None
    return Target(url, label, table_name)


@dataclass
class Checked:
    """The table as the cleanup will use it: its columns in order, and each referencing table's key."""

    columns: list[str]
    key: str
    references: dict[str, list[str]] = field(default_factory=dict)  # "table.column" -> that table's primary key
    text_columns: list[str] = field(default_factory=list)  # declared as text (or untyped): patterns can be checked


def connect(target: Target) -> Engine:
    try:
        engine = create_engine(target.url, pool_pre_ping=True)
        with engine.connect():
            pass
    except (NoSuchModuleError, ArgumentError) as exc:
        raise CleanupRefused(f"cannot use the database {target.label}: {exc}") from None
    except OperationalError as exc:
        raise CleanupRefused(f"cannot connect to {target.label}: {str(exc.orig).strip().splitlines()[0]}") from None
    return engine


def check(engine: Engine, target: Target, spec: CleanupSpec) -> Checked:
    """Refuse, with every reason at once, a table that does not fit the spec; read nothing of its rows."""
    inspector = inspect(engine)
    try:
        if not inspector.has_table(target.table, schema=target.schema):
            raise CleanupRefused(f"no table {target.table!r} in {target.label}")
        described = inspector.get_columns(target.table, schema=target.schema)
        columns = [c["name"] for c in described]
        text_columns = [c["name"] for c in described if isinstance(c["type"], String | NullType)]
        pk = inspector.get_pk_constraint(target.table, schema=target.schema).get("constrained_columns") or []
    except SQLAlchemyError as exc:
        raise CleanupRefused(f"cannot read the definition of {target.table!r}: {exc}") from None
    problems: list[str] = []
    if not pk:
        problems.append(f"table {target.table!r} has no primary key: rows could not be told apart, merged or "
                        f"restored; add one first")
    elif pk != [spec.key]:
        problems.append(f"the spec's key {spec.key!r} is not the table's primary key {pk}")
    missing = [c for c in [spec.key, *spec.table_columns()] if c not in columns]
    if missing:
        problems.append(f"table {target.table!r} has no column {', '.join(map(repr, missing))} "
                        f"(it has {', '.join(map(repr, columns))})")
    references: dict[str, list[str]] = {}
    for ref in spec.references:
        if not inspector.has_table(ref.table, schema=target.schema):
            problems.append(f"referencing table {ref.table!r} does not exist")
            continue
        ref_columns = [c["name"] for c in inspector.get_columns(ref.table, schema=target.schema)]
        ref_pk = ref.key or inspector.get_pk_constraint(ref.table, schema=target.schema).get("constrained_columns")
        if ref.column not in ref_columns:
            problems.append(f"referencing table {ref.table!r} has no column {ref.column!r}")
        elif not ref_pk:
            problems.append(f"referencing table {ref.table!r} has no primary key (list it under references: key)")
        else:
            references[f"{ref.table}.{ref.column}"] = list(ref_pk)
    if problems:
        raise CleanupRefused("; ".join(problems))
    return Checked(columns=columns, key=spec.key, references=references, text_columns=text_columns)


def lightweight(target: Target, name: str, columns: Sequence[str]) -> TableClause:
    """A table clause whose names SQLAlchemy quotes as needed; no types, so values come back as read."""
    return table(name, *(column(c) for c in columns), schema=target.schema)


def fingerprints(engine: Engine | Connection) -> bool:
    """Whether the database gives a fingerprint of a whole row: PostgreSQL (``md5`` of the row's own text)."""
    return engine.dialect.name == "postgresql"


def _fingerprint(r: Any) -> ColumnElement[str]:
    """The database's fingerprint of the whole row ``r`` (an alias of the table): equal exactly when each of its
    values is written the same by its type. Cheaper than reading the row: it says whether a row is as
    snapshotted without a value of it crossing the wire, and is only ever compared within one run."""
    return func.md5(cast(r.table_valued(), Text))


def read_chunks(engine: Engine, target: Target, columns: list[str], key: str, chunk_rows: int, *,
                fingerprint: bool = False) -> Iterator[list[tuple[Any, ...]]]:
    """Every row, ordered by the key, ``chunk_rows`` at a time, streamed (a table larger than memory works).

    With ``fingerprint`` (where ``fingerprints``), each row ends with the database's fingerprint of it.
    """
    r = lightweight(target, target.table, columns).alias("r")
    extra = [_fingerprint(r)] if fingerprint else []
    with engine.connect().execution_options(stream_results=True, yield_per=chunk_rows) as conn:
        result = conn.execute(select(*r.columns, *extra).order_by(r.c[key]))
        for part in result.partitions(chunk_rows):
            yield [tuple(row) for row in part]


def one_of(conn: Connection, col: ColumnClause[Any], values: Sequence[Any]) -> Iterator[ColumnElement[bool]]:
    """``col`` among ``values``, as few conditions as the driver allows: on PostgreSQL ``= ANY(array)``, one
    parameter for a whole chunk (planned once, not once per count of keys); elsewhere ``IN (...)`` in pieces."""
    if conn.dialect.name == "postgresql":
        for start in range(0, len(values), ARRAY_CHUNK):
            yield col == any_(bindparam("values", list(values[start:start + ARRAY_CHUNK])))
    else:
        for start in range(0, len(values), IN_CHUNK):
            yield col.in_(list(values[start:start + IN_CHUNK]))


def fetch(conn: Connection, target: Target, name: str, columns: list[str], key: str,
          keys: Sequence[Any], *, lock: bool = False) -> dict[Any, dict[str, Any]]:
    """The rows of ``name`` with these key values, encoded, by key value (locked FOR UPDATE where supported)."""
    t = lightweight(target, name, columns)
    found: dict[Any, dict[str, Any]] = {}
    at = columns.index(key)
    for condition in one_of(conn, t.c[key], keys):
        stmt = select(*t.columns).where(condition)
        if lock and conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        for r in conn.execute(stmt):
            found[r[at]] = encode_row(columns, tuple(r))
    return found


def fetch_fingerprints(conn: Connection, target: Target, name: str, columns: list[str], key: str,
                       keys: Sequence[Any]) -> dict[str, str]:
    """The database's fingerprint of each row of ``name`` with these key values, by encoded key, the rows locked
    FOR UPDATE (where ``fingerprints``)."""
    r = lightweight(target, name, columns).alias("r")
    found: dict[str, str] = {}
    for condition in one_of(conn, r.c[key], keys):
        found.update((key_text(encode_value(k)), fp) for k, fp in conn.execute(
            select(r.c[key], _fingerprint(r)).where(condition).with_for_update()))
    return found


def fetch_hashes(conn: Connection, target: Target, name: str, columns: list[str], key: str,
                 keys: Sequence[Any], *, lock: bool = False) -> dict[str, str]:
    """The content hash of each row of ``name`` with these key values, by encoded key (locked as ``fetch``)."""
    t = lightweight(target, name, columns)
    at = columns.index(key)
    found: dict[str, str] = {}
    for condition in one_of(conn, t.c[key], keys):
        stmt = select(*t.columns).where(condition)
        if lock and conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        rows = [tuple(r) for r in conn.execute(stmt)]
        by_column, texts = encode_rows(columns, rows)
        found.update(zip((key_text(k) for k in by_column[at]) if rows else (), map(text_hash, texts), strict=True))
    return found


def delete(conn: Connection, target: Target, name: str, key: str, keys: Sequence[Any]) -> None:
    t = lightweight(target, name, [key])
    for condition in one_of(conn, t.c[key], keys):
        conn.execute(t.delete().where(condition))


def update_rows(conn: Connection, target: Target, name: str, key: str,
                rows: Sequence[tuple[Any, dict[str, Any]]]) -> None:
    """Set, in each row named by its key value, the columns given with it (each row its own columns).

    On PostgreSQL through psycopg the rows are copied (``COPY``) into a temporary table shaped like the
    table's own columns and written by one ``UPDATE ... FROM``: a statement for the whole batch, not one
    per row. Each column is set only in the rows that give it (a flag per column), so a value not changed
    is never written back. Elsewhere, one ``executemany`` per set of columns.
    """
    rows = [(key_value, values) for key_value, values in rows if values]  # a row given no column is left as it is
    if not rows:
        return
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        _update_by_copy(conn, target, name, key, rows)
        return
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for key_value, values in rows:
        by_columns[tuple(values)].append({"_key": key_value, **{f"_v{i}": v for i, v in enumerate(values.values())}})
    for columns, params in by_columns.items():
        t = lightweight(target, name, [key, *columns])
        conn.execute(t.update().where(t.c[key] == bindparam("_key")).values(
            {c: bindparam(f"_v{i}") for i, c in enumerate(columns)}), params)


def _update_by_copy(conn: Connection, target: Target, name: str, key: str,
                    rows: Sequence[tuple[Any, dict[str, Any]]]) -> None:
    columns = list(dict.fromkeys(c for _, values in rows for c in values))
    t = lightweight(target, name, [key, *columns])
    # the stage's columns take the table's own types (k: the key, v<i>: a value, s<i>: whether it is set); it is
    # this session's own, dropped before the call returns (or with the transaction, which rolls its creation back)
    shape = select(t.c[key].label("k"), *(t.c[c].label(f"v{i}") for i, c in enumerate(columns)),
                   *(literal(False).label(f"s{i}") for i in range(len(columns)))).where(false())
    create = CreateTableAs(shape, "bpo_stage", temporary=True)
    stage = create.table
    conn.execute(create)
    q = conn.dialect.identifier_preparer
    names = ", ".join(q.quote(c.name) for c in stage.columns)
    # the driver's cursor on this transaction's own connection: COPY is psycopg's, not SQLAlchemy's
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {q.format_table(stage)} ({names}) FROM STDIN") as copy:
        for key_value, values in rows:
            copy.write_row([key_value, *(values.get(c) for c in columns), *(c in values for c in columns)])
    conn.execute(update(t).where(t.c[key] == stage.c.k).values(
        {c: case((stage.c[f"s{i}"], stage.c[f"v{i}"]), else_=t.c[c]) for i, c in enumerate(columns)}))
    conn.execute(DropTable(stage))


def insert_row(conn: Connection, target: Target, name: str, values: dict[str, Any]) -> None:
    t = lightweight(target, name, list(values))
    conn.execute(t.insert().values({c: bindparam(f"_v{i}") for i, c in enumerate(values)}),
                 {f"_v{i}": v for i, v in enumerate(values.values())})


def referencing_rows(conn: Connection, target: Target, name: str, column_name: str, pk: list[str],
                     columns: list[str], values: Sequence[Any]) -> list[dict[str, Any]]:
    """The rows of a referencing table that point at any of ``values``, encoded whole."""
    t = lightweight(target, name, columns)
    out: list[dict[str, Any]] = []
    for condition in one_of(conn, t.c[column_name], values):
        stmt = select(*t.columns).where(condition)
        if conn.dialect.name != "sqlite":
            stmt = stmt.with_for_update()
        out.extend(encode_row(columns, tuple(r)) for r in conn.execute(stmt))
    return out


def table_columns(engine: Engine, target: Target, name: str) -> list[str]:
    return [c["name"] for c in inspect(engine).get_columns(name, schema=target.schema)]
