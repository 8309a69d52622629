"""Apply a change set once, and undo it exactly.

The change set is the plan's (``bpo.cleanup.plan``: the rows' bodies before and after travel in its
Parquet object in S3). Each chunk is one transaction on the client's database. Before a row is written
its current content hash is compared with the snapshot's: a row changed since the snapshot is not
overwritten but marked ``conflict`` (with the rest of its cluster, so that a merge is whole or not at
all). Rows of referencing tables are re-pointed to the survivor in the same transaction, each logged,
bodies and all, before the commit (they are read there, and are few). Once a chunk is committed its
changes go to the change log (``cleanup_changes`` in the ops database: key, action, hashes, status) in
one transaction, written by a thread while the next chunks are applied. On a database that takes concurrent
writers (not SQLite) two chunks are applied at once, each on its own connection: one waits on the database
while the other's rows are prepared. A run killed between a chunk's commit and its log finds, on its next
attempt, the chunk unlogged and its rows already holding their "after" content: they are logged "found
applied", never written twice.

Undo goes backwards through the applied changes: a row still holding the "after" content is put back
exactly (checked by content hash against the pre-apply hash); a row changed since the apply is
refused and reported, never overwritten. A chunk committed by a run killed before it logged it, and
never resumed, is found by its rows' content and undone with the rest.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from bpo.cleanup import source
from bpo.cleanup.plan import MAIN, Change
from bpo.cleanup.rows import (
    decode_key,
    decode_row,
    decode_value,
    encode_row,
    encode_value,
    key_from_row,
    key_text,
    row_hash,
)
from bpo.cleanup.source import Checked, Target
from bpo.db.models import CleanupChange
from bpo.db.session import session_scope

UNDO_CHUNK = 2_000  # changes undone per transaction
STREAMS = 2  # chunks applied at once (each its own transaction and connection), where the database allows
CC = CleanupChange  # the change log, short: it is in every statement here


@dataclass
class Applied:
    applied: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # the changes not made: row changed since
    repointed: int = 0
    already: int = 0  # found applied by an earlier attempt of the run
    # seq -> (status, note), of each change of the table
    outcome: dict[int, tuple[str, str | None]] = field(default_factory=dict)


def apply(engine: Engine, target: Target, checked: Checked, ops_url: str, flow_run_id: str,
          changes: Sequence[Change], progress: Callable[[int, int], None] | None = None) -> Applied:
    """Apply the run's planned changes (``changes``: the plan) chunk by chunk; conflicts are left unwritten."""
    done = Applied()
    _settle_repoints(engine, target, checked, ops_url, flow_run_id)
    with session_scope(ops_url) as s:
        # what an earlier attempt made of its chunks: each chunk is logged once it is committed
        settled = {seq: (st, note, [before, after]) for seq, st, note, before, after in s.execute(
            select(CC.seq, CC.status, CC.note, CC.before_hash, CC.after_hash).where(
                CC.flow_run_id == flow_run_id, CC.table_name == MAIN))}
        done.already = s.scalar(select(func.count()).where(CC.flow_run_id == flow_run_id,
                                                           CC.status == "applied")) or 0
    planned = {c.seq: [c.before_hash, c.after_hash] for c in changes}
    if any(planned.get(seq) != hashes for seq, (_, _, hashes) in settled.items()):
        raise RuntimeError(f"the change set given is not the one logged for run {flow_run_id}: nothing applied")
    done.outcome = {seq: (st, note) for seq, (st, note, _) in settled.items()}
    chunks: dict[int, list[Change]] = defaultdict(list)
    for c in changes:
        if c.seq not in settled:
            chunks[c.chunk].append(c)
    free_seq = max(planned, default=-1) + 1  # the re-pointings are logged after the plan's changes
    streams = 1 if engine.dialect.name == "sqlite" else STREAMS  # SQLite takes one writer at a time
    seq_lock = threading.Lock()  # the re-pointings' log numbers are taken one stream at a time
    # chunks are applied ``streams`` at a time (each its own transaction: a chunk holds whole clusters, so no two
    # touch one row), and each chunk's log is written by one thread, in order, while the next chunks are applied;
    # at most ``streams`` + 1 committed chunks are unlogged at a time, and a failure to log stops the apply
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpo-change-log") as logger, \
            ThreadPoolExecutor(max_workers=streams, thread_name_prefix="bpo-apply") as appliers:
        running: deque[Future[_ChunkDone]] = deque()
        logged: list[Future[None]] = []

        def settle(made: _ChunkDone) -> None:
            done.applied += made.applied
            done.repointed += made.repointed
            done.outcome.update(made.outcome)
            if logged:
                logged[-1].result()
            logged.append(logger.submit(made.log))

        try:
            for n, chunk in enumerate(sorted(chunks)):
                if len(running) >= streams:
                    settle(running.popleft().result())
                    if progress:
                        progress(n - len(running), len(chunks))
                running.append(appliers.submit(_apply_chunk, engine, target, checked, ops_url, flow_run_id,
                                               chunks[chunk], free_seq, seq_lock))
            while running:
                settle(running.popleft().result())
                if progress:
                    progress(len(chunks) - len(running), len(chunks))
        finally:  # a chunk that failed leaves the others running: each is waited for, and logged if committed
            for left in running:
                try:
                    made = left.result()
                except Exception:  # noqa: BLE001 - the first failure is the one raised
                    continue
                logged.append(logger.submit(made.log))
        for log in logged:
            log.result()
    done.conflicts = [{"row_key": c.row_key, "before": c.before_row(), "after": c.after_row() if c.after else None,
                       "note": done.outcome[c.seq][1]} for c in changes if done.outcome[c.seq][0] == "conflict"]
    return done


@dataclass
class _ChunkDone:
    """What became of one chunk's changes, once committed; ``log`` writes them to the change log."""

    log: Callable[[], None]
    applied: int
    repointed: int
    outcome: dict[int, tuple[str, str | None]]


def _apply_chunk(engine: Engine, target: Target, checked: Checked, ops_url: str, flow_run_id: str,
                 changes: list[Change], free_seq: int, seq_lock: threading.Lock) -> _ChunkDone:
    """One transaction: the chunk's rows checked against their snapshot hash, then written, kind by kind."""
    key = checked.key
    status: dict[int, tuple[str, str | None]] = {}  # seq -> (status, note) of the changes not made as planned
    with engine.begin() as conn:
        hash_of = _hashes_now(conn, target, checked, changes)
        broken: set[str] = set()  # clusters with a row changed since the snapshot
        for c in changes:
            now_hash = hash_of.get(c.row_key)
            if now_hash == c.before_hash:
                continue
            if now_hash == c.after_hash:  # written by an earlier attempt whose log entry was lost
                status[c.seq] = ("applied", "found applied")
                continue
            status[c.seq] = ("conflict", "the row changed since the snapshot" if now_hash is not None
                             else "the row was deleted since the snapshot")
            if c.cluster:
                broken.add(c.cluster)
        todo = []
        for c in changes:
            if c.seq in status:
                continue
            if c.cluster in broken:
                status[c.seq] = ("conflict", "another row of its cluster changed since the snapshot")
                continue
            todo.append(c)
        # references first (a merged row may not go while rows point at it), then the merged rows, then the
        # updates (a survivor takes a unique value only once its merged row is gone); each kind in one batch
        merges = [c for c in todo if c.action in ("delete", "soft_delete") and c.cluster is not None]
        repointed = _repoint(conn, target, checked, ops_url, flow_run_id, changes[0].chunk, merges, free_seq,
                             seq_lock)
        source.delete(conn, target, target.table, key, [decode_key(c.row_key) for c in todo if c.action == "delete"])
        updates = []
        for c in todo:
            if c.action == "delete":
                continue
            values = {col: decode_value(v) for col, v in c.set_values(key).items()}
            if values:
                updates.append((decode_key(c.row_key), values))
        source.update_rows(conn, target, target.table, key, updates)
    now_at = datetime.now(UTC)
    outcome = {c.seq: status.get(c.seq, ("applied", None)) for c in changes}

    def log() -> None:
        with session_scope(ops_url) as s:  # one transaction: a chunk is logged whole, or not at all (then its next
            # attempt finds its rows already holding their "after" content, and logs them "found applied")
            _log(s, flow_run_id, changes, outcome, now_at)
            if repointed:  # the re-pointings, logged before the commit, are made
                s.execute(update(CC).where(CC.flow_run_id == flow_run_id,
                                           CC.seq.between(min(repointed), max(repointed)))
                          .values(status="applied", applied_at=now_at))
    return _ChunkDone(log, len(todo) + sum(1 for st, _ in status.values() if st == "applied"), len(repointed),
                      outcome)


def _hashes_now(conn: Any, target: Target, checked: Checked, changes: list[Change]) -> dict[str, str]:
    """The content hash of each of these rows now, the rows locked. A row whose database fingerprint is still
    the snapshot's has the snapshot's hash: only the others (changed since, or by an earlier attempt) are read."""
    key = checked.key
    if not (source.fingerprints(conn) and all(c.before_fp for c in changes)):
        return source.fetch_hashes(conn, target, target.table, checked.columns, key,
                                   [decode_key(c.row_key) for c in changes], lock=True)
    fp_of = source.fetch_fingerprints(conn, target, target.table, checked.columns, key,
                                      [decode_key(c.row_key) for c in changes])
    same = {c.row_key: c.before_hash for c in changes if c.before_hash and fp_of.get(c.row_key) == c.before_fp}
    others = [decode_key(c.row_key) for c in changes if c.row_key not in same]
    return {**same, **(source.fetch_hashes(conn, target, target.table, checked.columns, key, others)
                       if others else {})}


_LOGGED = ("flow_run_id", "seq", "chunk", "table_name", "row_key", "action", "how", "cluster", "before_hash",
           "after_hash", "status", "note", "applied_at")  # a change of the table's log entry (its bodies are in S3)


def _log(s: Session, flow_run_id: str, changes: Sequence[Change], outcome: dict[int, tuple[str, str | None]],
         now_at: datetime) -> None:
    """The changes' log entries as plain values at the driver level: each entry holds text and numbers only, but
    SQLAlchemy's own handling of each row's parameters was most of the log's time. The statement is still
    SQLAlchemy's (identifiers quoted for the dialect); the one time value is bound once, as the column's type binds
    it on this dialect (on SQLite, its text: the driver's own adapter would format it again for every entry).

    On SQLite, many entries go in each statement (``VALUES (...), (...)``): its driver lets go of the
    interpreter's lock around each statement it steps, and took it back once per entry under ``executemany``,
    each time waiting its turn behind the threads applying the next chunks (a third of the apply's time)."""
    table = cast(Table, CC.__table__)
    conn = s.connection()
    compiled = insert(table).compile(dialect=conn.dialect, column_keys=list(_LOGGED))
    process = table.c.applied_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    at = process(now_at) if process else now_at
    rows = [(flow_run_id, c.seq, c.chunk, c.table_name, c.row_key, c.action, c.how, c.cluster, c.before_hash,
             c.after_hash, *outcome[c.seq], at if outcome[c.seq][0] == "applied" else None) for c in changes]
    if not rows:
        return
    if compiled.positiontup is None:  # a named paramstyle (psycopg's, which pipelines an executemany)
        conn.exec_driver_sql(compiled.string, [dict(zip(_LOGGED, r, strict=True)) for r in rows])
        return
    order = [_LOGGED.index(name) for name in compiled.positiontup]
    head, _, group = compiled.string.partition(" VALUES ")
    per = _rows_per_statement(conn, len(order)) if conn.dialect.name == "sqlite" else 1
    if per == 1:
        conn.exec_driver_sql(compiled.string, [tuple(r[i] for i in order) for r in rows])
        return
    for start in range(0, len(rows), per):
        batch = rows[start:start + per]
        conn.exec_driver_sql(f"{head} VALUES {', '.join([group] * len(batch))}",
                             tuple(r[i] for r in batch for i in order))


def _rows_per_statement(conn: Any, columns: int) -> int:
    """How many rows of ``columns`` values one SQLite statement may bind (its limit of variables), at most 2,000."""
    dbapi = conn.connection.dbapi_connection
    limit = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if hasattr(dbapi, "getlimit") else 999
    return max(1, min(2_000, limit // columns))


def _settle_unlogged(engine: Engine, target: Target, checked: Checked, ops_url: str, flow_run_id: str,
                     changes: Sequence[Change]) -> None:
    """The chunks an attempt committed and died before logging, logged now (for an undo of a run never resumed).

    A chunk is one transaction, so its rows show either all their "before" content or all their "after" content,
    except those changed by someone since: one row still as before means the chunk was never committed (nothing
    to undo); one row as after, and none as before, means it was. Each change of a committed chunk is logged
    applied ("found applied"); the undo then restores those still as the run left them and refuses the others.
    """
    with session_scope(ops_url) as s:
        logged = set(s.scalars(select(CC.seq).where(CC.flow_run_id == flow_run_id, CC.table_name == MAIN)))
    chunks: dict[int, list[Change]] = defaultdict(list)
    for c in changes:
        if c.seq not in logged and c.table_name == MAIN:
            chunks[c.chunk].append(c)
    if not chunks:
        return
    with engine.connect() as conn:
        for chunk in sorted(chunks):
            todo = chunks[chunk]
            now = source.fetch_hashes(conn, target, target.table, checked.columns, checked.key,
                                      [decode_key(c.row_key) for c in todo])
            shows = [now.get(c.row_key) for c in todo]
            if any(h == c.before_hash for h, c in zip(shows, todo, strict=True)) or not any(
                    h == c.after_hash for h, c in zip(shows, todo, strict=True)):
                continue
            with session_scope(ops_url) as s:
                _log(s, flow_run_id, todo, dict.fromkeys((c.seq for c in todo), ("applied", "found applied")),
                     datetime.now(UTC))


def _settle_repoints(engine: Engine, target: Target, checked: Checked, ops_url: str, flow_run_id: str) -> None:
    """Re-pointings logged by an attempt that died: applied if the row shows it, else dropped (never committed)."""
    pk_of = {ref.rsplit(".", 1)[0]: pk for ref, pk in checked.references.items()}
    with session_scope(ops_url) as s:
        stale = list(s.scalars(select(CC).where(CC.flow_run_id == flow_run_id, CC.status == "planned",
                                                CC.table_name != MAIN)))
        if not stale:
            return
        with engine.connect() as conn:
            for c in stale:
                columns = source.table_columns(engine, target, c.table_name)
                now = _fetch_one(conn, target, c.table_name, columns, pk_of.get(c.table_name, []),
                                 decode_key(c.row_key))
                if now is not None and row_hash(now) == c.after_hash:
                    c.status, c.applied_at = "applied", datetime.now(UTC)
                else:
                    s.delete(c)


def _repoint(conn: Any, target: Target, checked: Checked, ops_url: str, flow_run_id: str, chunk: int,
             merges: list[Change], free_seq: int, seq_lock: threading.Lock) -> list[int]:
    """Point every referencing row at a merged row to its survivor; each row is logged (before, after) first.

    Returns the log's sequence numbers of the re-pointings.
    """
    if not merges or not checked.references:
        return []
    change_of = {c.row_key: c for c in merges}
    merged_values = [decode_key(c.row_key) for c in merges]
    seqs: list[int] = []
    for ref, pk in checked.references.items():
        name, column_name = ref.rsplit(".", 1)
        columns = source.table_columns(conn.engine, target, name)
        rows = source.referencing_rows(conn, target, name, column_name, pk, columns, merged_values)
        if not rows:
            continue
        log, moves = [], {}
        for row in rows:
            change = change_of[key_text(row[column_name])]
            survivor = decode_key(change.cluster or "")
            after = {**row, column_name: encode_value(survivor)}
            moves[key_text(row[column_name])] = (decode_value(row[column_name]), survivor)
            log.append({"flow_run_id": flow_run_id, "seq": -1, "chunk": chunk, "table_name": name,
                        "row_key": key_from_row(row, pk), "action": "repoint", "how": change.how,
                        "cluster": change.cluster, "before": row, "after": after, "before_hash": row_hash(row),
                        "after_hash": row_hash(after), "status": "planned"})
        with seq_lock, session_scope(ops_url) as s:  # logged before the commit: a lost commit leaves a planned entry
            top = max(s.scalar(select(CC.seq).where(CC.flow_run_id == flow_run_id).order_by(CC.seq.desc())
                               .limit(1)) or 0, free_seq - 1)
            for i, entry in enumerate(log):
                entry["seq"] = top + 1 + i
            s.execute(insert(cast(Table, CC.__table__)), log)
        seqs.extend(range(top + 1, top + 1 + len(log)))
        t = source.lightweight(target, name, [column_name])
        conn.execute(t.update().where(t.c[column_name] == bindparam("_merged")).values(
            {column_name: bindparam("_survivor")}), [{"_merged": m, "_survivor": sv} for m, sv in moves.values()])
    return seqs


@dataclass
class Undone:
    restored: int = 0
    refused: list[dict[str, Any]] = field(default_factory=list)  # row changed since the apply: left as it is
    verified: int = 0  # restored rows whose content hash equals the pre-apply hash


def undo(engine: Engine, target: Target, checked: Checked, ops_url: str, flow_run_id: str,
         plan: Sequence[Change] = ()) -> Undone:
    """Put back every row the run changed; refuse rows changed since the apply (each reported, none overwritten).

    ``plan`` is the run's change set (the rows' bodies); a log written before the bodies moved to S3 holds them.
    """
    out = Undone()
    # an attempt killed between a chunk's commit and its log, and never resumed: its rows are undone too
    _settle_repoints(engine, target, checked, ops_url, flow_run_id)
    _settle_unlogged(engine, target, checked, ops_url, flow_run_id, plan)
    with session_scope(ops_url) as s:
        changes = list(s.scalars(select(CC).where(CC.flow_run_id == flow_run_id, CC.status == "applied")))
        s.expunge_all()
    if not changes:
        return out
    bodies = {c.seq: c for c in plan}
    # updated rows back first (a survivor gives up the unique values it took), then the deleted rows, then the
    # references to them; newest first within each
    order = {"update": 0, "soft_delete": 0, "delete": 1, "repoint": 2}
    changes.sort(key=lambda c: (order.get(c.action, 0), -c.seq))
    columns_of: dict[str, list[str]] = {}
    pk_of = {ref.rsplit(".", 1)[0]: pk for ref, pk in checked.references.items()}
    results: dict[int, tuple[str, str | None]] = {}
    group: list[CleanupChange] = []
    for c in [*changes, None]:
        if group and (c is None or len(group) >= UNDO_CHUNK or (c.table_name, order.get(c.action, 0)) != (
                group[0].table_name, order.get(group[0].action, 0))):
            with engine.begin() as conn:
                if group[0].table_name == MAIN:
                    _undo_rows(conn, target, checked, group, bodies, results, out)
                else:
                    _undo_some(conn, engine, target, checked, group, columns_of, pk_of, results, out)
            group = []
        if c is not None:
            group.append(c)
    now_at = datetime.now(UTC)
    by_result: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for change_id, outcome in results.items():
        by_result[outcome].append(change_id)
    with session_scope(ops_url) as s:
        for (st, note), ids in by_result.items():
            for start in range(0, len(ids), 500):
                s.execute(update(CC).where(CC.id.in_(ids[start:start + 500])).values(
                    status=st, note=note, undone_at=now_at if st == "undone" else None))
    out.refused = [{"table": c.table_name, "row_key": c.row_key, "reason": results[c.id][1]}
                   for c in changes if results.get(c.id, ("",))[0] == "undo_refused"]
    return out


def _before(c: CleanupChange, bodies: dict[int, Change]) -> dict[str, Any]:
    if c.before is not None:
        return c.before
    if c.seq not in bodies:
        raise source.CleanupRefused(f"the change set of run {c.flow_run_id!r} does not hold change {c.seq}: "
                                    "it cannot be undone exactly")
    return bodies[c.seq].before_row()


def _undo_rows(conn: Any, target: Target, checked: Checked, changes: list[CleanupChange], bodies: dict[int, Change],
               results: dict[int, tuple[str, str | None]], out: Undone) -> None:
    """Rows of the cleaned table of one kind (restored, or inserted again), in batches, each verified by hash."""
    key = checked.key
    now = source.fetch_hashes(conn, target, target.table, checked.columns, key,
                              [decode_key(c.row_key) for c in changes], lock=True)
    inserts: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    restores: list[tuple[Any, dict[str, Any]]] = []
    done = []
    for c in changes:
        now_hash = now.get(c.row_key)
        if c.action == "delete":
            if now_hash is not None:
                results[c.id] = ("undo_refused", "a row with its key exists again since the apply")
                continue
            before = decode_row(_before(c, bodies))
            inserts[tuple(before)].append({f"_v{i}": v for i, v in enumerate(before.values())})
        else:
            if now_hash != c.after_hash:
                results[c.id] = ("undo_refused", "the row changed since the apply" if now_hash is not None
                                 else "the row was deleted since the apply")
                continue
            values = {col: v for col, v in decode_row(_before(c, bodies)).items() if col != key}
            restores.append((decode_key(c.row_key), values))
        done.append(c)
    for columns, params in inserts.items():
        t = source.lightweight(target, target.table, list(columns))
        conn.execute(t.insert().values({col: bindparam(f"_v{i}") for i, col in enumerate(columns)}), params)
    source.update_rows(conn, target, target.table, key, restores)
    again = source.fetch_hashes(conn, target, target.table, checked.columns, key,
                                [decode_key(c.row_key) for c in done])
    for c in done:
        if again.get(c.row_key) == c.before_hash:
            out.verified += 1
        results[c.id] = ("undone", None)
        out.restored += 1


def _undo_some(conn: Any, engine: Engine, target: Target, checked: Checked, changes: list[CleanupChange],
               columns_of: dict[str, list[str]], pk_of: dict[str, list[str]],
               results: dict[int, tuple[str, str | None]], out: Undone) -> None:
    """Rows of a referencing table, one by one (they are few, and their keys may span columns)."""
    for c in changes:
        name = c.table_name
        if name not in columns_of:
            columns_of[name] = source.table_columns(engine, target, name)
        key_cols = pk_of.get(name, [])
        key_value = decode_key(c.row_key)
        row = _fetch_one(conn, target, name, columns_of[name], key_cols, key_value)
        if (row_hash(row) if row is not None else None) != c.after_hash:
            results[c.id] = ("undo_refused", "the row changed since the apply" if row is not None
                             else "the row was deleted since the apply")
            continue
        before = decode_row(c.before or {})
        where_key = dict(zip(key_cols, key_value if len(key_cols) > 1 else [key_value], strict=True))
        _restore(conn, target, name, where_key, before)
        again = _fetch_one(conn, target, name, columns_of[name], key_cols, key_value)
        if again is not None and row_hash(again) == c.before_hash:
            out.verified += 1
        results[c.id] = ("undone", None)
        out.restored += 1


def _fetch_one(conn: Any, target: Target, name: str, columns: list[str], key_cols: list[str],
               key_value: Any) -> dict[str, Any] | None:
    t = source.lightweight(target, name, columns)
    values = key_value if len(key_cols) > 1 else [key_value]
    stmt = select(*t.columns).where(*(t.c[k] == v for k, v in zip(key_cols, values, strict=True)))
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return encode_row(columns, tuple(row))


def _restore(conn: Any, target: Target, name: str, where_key: dict[str, Any], before: dict[str, Any]) -> None:
    t = source.lightweight(target, name, list(before))
    values = {c: v for c, v in before.items() if c not in where_key}
    conn.execute(t.update().where(*(t.c[k] == v for k, v in where_key.items())).values(values))


def log_of(session: Session, flow_run_id: str) -> list[CleanupChange]:
    return list(session.scalars(select(CC).where(CC.flow_run_id == flow_run_id).order_by(CC.seq)))
