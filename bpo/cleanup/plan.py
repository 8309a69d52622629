"""The change set: safe reformats, and merged clusters built by the survivorship rules.

Every change names one row by its key, holds the row whole before and after (exactly encoded, as
canonical text, with both hashes) and says why it is made: ``safe`` (a reformat), ``auto`` (an
auto-merge), ``review`` (a person said the pair is the same) or ``accepted`` (a change that is more than a
reformat, which a person accepted: ``bpo.review.reformat``). Changes come in chunks — one
transaction each on apply — and a merged cluster never straddles two chunks, so a merge applies whole
or not at all. The set travels as one Parquet object in S3, the rows' bodies with it.
"""

from __future__ import annotations

import io
import json
import operator
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bpo.cleanup.rows import as_text, canonical, decode_value, parse, text_hash
from bpo.cleanup.spec import CleanupSpec

CHUNK = 2_000  # changes per transaction
MAIN = "main"  # the cleaned table, in the change log (its real name is the run's)


@dataclass(slots=True)
class Change:
    """One change of the set: a row's key, what is done to it and why, and the row before and after.

    ``before`` and ``after`` are the row's canonical text (``bpo.cleanup.rows``: exact, typed JSON);
    a merged row that is deleted has no ``after``. The bodies travel in the plan's Parquet object in S3;
    the ops database logs each change by its key, action, hashes and status.
    """

    table_name: str
    row_key: str
    action: str  # update | delete | soft_delete | repoint
    how: str  # safe | auto | review | accepted
    cluster: str | None
    before: str | None
    after: str | None
    before_hash: str | None
    after_hash: str | None
    seq: int = -1
    chunk: int = -1
    before_fp: str | None = None  # the database's own fingerprint of the row as snapshotted, where it has one
    sets: str | None = None  # the columns an update sets, with their values (canonical text of the encoded values)

    def before_row(self) -> dict[str, Any]:
        return parse(self.before) if self.before is not None else {}

    def after_row(self) -> dict[str, Any]:
        return parse(self.after) if self.after is not None else {}

    def set_values(self, key: str) -> dict[str, Any]:
        """The columns the change writes, with their values (encoded): those whose value (or its type) differs."""
        if self.sets is not None:
            return cast(dict[str, Any], parse(self.sets))
        return _differing(self.before_row(), self.after_row(), key)


def _differing(before: dict[str, Any], after: dict[str, Any], key: str) -> dict[str, Any]:
    return {col: v for col, v in after.items() if col != key and (
        col not in before or before[col] != v or type(before[col]) is not type(v))}


_SCHEMA = pa.schema([("seq", pa.int64()), ("chunk", pa.int64()), ("table_name", pa.string()),
                     ("row_key", pa.string()), ("action", pa.string()), ("how", pa.string()),
                     ("cluster", pa.string()), ("before", pa.string()), ("after", pa.string()),
                     ("before_hash", pa.string()), ("after_hash", pa.string()), ("before_fp", pa.string()),
                     ("sets", pa.string())])


def columns_of(changes: list[Change], names: list[str]) -> list[tuple[Any, ...]]:
    """The changes' values of these fields, field by field (one pass over the changes)."""
    if not changes:
        return [() for _ in names]
    get = operator.attrgetter(*names)
    return list(zip(*map(get, changes), strict=True)) if len(names) > 1 else [tuple(map(get, changes))]


def to_parquet(changes: list[Change]) -> bytes:
    names = _SCHEMA.names
    buf = io.BytesIO()
    pq.write_table(pa.table(dict(zip(names, columns_of(changes, names), strict=True)), schema=_SCHEMA), buf,
                   use_dictionary=["table_name", "action", "how"])  # the bodies and keys are each their own
    return buf.getvalue()


def from_parquet(body: bytes) -> list[Change]:
    t = pq.read_table(io.BytesIO(body))
    names = [f.name for f in fields(Change) if f.name in t.column_names]  # a plan from before a field was added
    return [Change(**dict(zip(names, values, strict=True)))
            for values in zip(*(t.column(n).to_pylist() for n in names), strict=True)]


@dataclass(slots=True)
class Member:
    key: str
    standardized: dict[str, Any]  # the row as read, with its safe reformats applied
    hash: str
    text: str  # the row as read, canonical (parsed only where it is wanted, once: a cluster's rows are many)
    fp: str | None = None  # the database's fingerprint of it (``source.fingerprint``)
    read: dict[str, Any] | None = None  # the row as read, parsed (``as_read``); never changed in place

    def as_read(self) -> dict[str, Any]:
        if self.read is None:
            self.read = cast(dict[str, Any], parse(self.text))
        return self.read


@dataclass
class ChangeSet:
    changes: list[Change] = field(default_factory=list)
    clusters: dict[str, list[str]] = field(default_factory=dict)  # survivor key -> merged keys
    how: dict[str, str] = field(default_factory=dict)  # survivor key -> auto | review
    # each merged row of the table as it will be, the spec's columns as text; None: it leaves the live table
    projected: dict[str, list[str | None] | None] = field(default_factory=dict)

    @property
    def rows_touched(self) -> int:
        return len({c.row_key for c in self.changes if c.table_name == MAIN})

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            name = f"{c.action}_{c.how}"
            out[name] = out.get(name, 0) + 1
        out["clusters"] = len(self.clusters)
        out["merged_rows"] = sum(len(m) for m in self.clusters.values())
        return out

    def change(self, spec: CleanupSpec, action: str, how: str, row: Member, after: dict[str, Any] | None,
               cluster: str | None) -> Change:
        """A change of a row of the table (the caller keeps it in order), and the row as it will be."""
        key = row.key
        after_text = canonical(after) if after is not None else None
        sets = canonical(_differing(row.as_read(), after, spec.key)) if after is not None else None
        change = Change(MAIN, key, action, how, cluster, row.text, after_text, row.hash,
                        text_hash(after_text) if after_text is not None else None, before_fp=row.fp, sets=sets)
        if how != "safe":  # a safe reformat is projected from its proposals (pipeline._after_figures)
            self.projected[key] = ([as_text(decode_value(after.get(c))) for c in spec.columns]
                                   if after is not None and action == "update" else None)
        return change


def _ordered(members: list[Member], spec: CleanupSpec, rule: str, complete: dict[str, int]) -> list[Member]:
    """The cluster's rows, the one whose value wins first (``complete``: each row's count of values, by key)."""
    s = spec.survivorship
    if rule == "most_recent" and s.recency_column:
        column = s.recency_column
        return sorted(members, key=lambda m: (m.standardized.get(column) is not None,
                                              json.dumps(m.standardized.get(column), sort_keys=True)), reverse=True)
    if rule == "source_priority" and s.source_column:
        rank = {name: i for i, name in enumerate(s.source_priority)}
        column = s.source_column
        return sorted(members, key=lambda m: rank.get(str(m.standardized.get(column)), len(rank)))
    return sorted(members, key=lambda m: (-complete[m.key], m.key))  # ties: the kept row first


def survivor(members: list[Member], spec: CleanupSpec) -> tuple[Member, dict[str, Any]]:
    """The row kept (the most complete; ties to the smallest key) and its values after the merge."""
    columns = list(spec.columns)
    complete = {m.key: sum(m.standardized.get(c) not in (None, "") for c in columns) for m in members}
    kept = min(members, key=lambda m: (-complete[m.key], m.key))
    values = dict(kept.standardized)
    orders: dict[str, list[Member]] = {}  # by rule: a cluster's rows are ordered once per rule, not per column
    for column in spec.columns:
        rule = spec.survivorship.rule(column)
        if rule not in orders:
            orders[rule] = _ordered(members, spec, rule, complete)
        for m in orders[rule]:
            value = m.standardized.get(column)
            if value not in (None, ""):
                values[column] = value
                break
    return kept, values


# key -> the row's canonical text after, its hash, the columns set, and how: safe, or accepted by a person
Reformatted = dict[str, tuple[str, str, str, str]]
Accepted = Mapping[str, Mapping[str, str]]  # key -> column -> the new value a person accepted


def safe_rows(snapshot: pa.Table, proposals: pa.Table, accepted: Accepted | None = None) -> Reformatted:
    """Each row of a snapshot part that has safe reformats (``proposals``: the part's), or proposals a person
    accepted (``accepted``: only where this run proposes the same value), as it will be with them: its canonical
    text, hash, the columns they set (with their new values) and how, by key. What ``build`` takes."""
    made = proposals.column("safe")
    if accepted:  # and the unsafe ones a person accepted, where this run proposes the same value
        made = pc.or_(made, pa.array([k in accepted and accepted[k].get(c) == n for k, c, n in zip(
            *(proposals.column(x).to_pylist() for x in ("key", "column", "new")), strict=True)], pa.bool_()))
    by_key: dict[str, list[tuple[str, str]]] = {}
    people: set[str] = set()  # the rows with a change a person accepted
    taken = proposals.filter(made)
    for k, c, n, safe in zip(*(taken.column(x).to_pylist() for x in ("key", "column", "new", "safe")), strict=True):
        by_key.setdefault(k, []).append((c, n))
        if not safe:
            people.add(k)
    out: Reformatted = {}
    for k, text in zip(snapshot.column("key").to_pylist(), snapshot.column("row").to_pylist(), strict=True):
        if k in by_key:
            row = parse(text)
            changed = dict(by_key[k])
            row.update(changed)
            after = canonical(row)
            out[k] = (after, text_hash(after), canonical(changed), "accepted" if k in people else "safe")
    return out


# a cluster's row as the snapshot part read it: key, its text with its safe reformats made (None: it has none), its
# hash, its text as read, the database's fingerprint, and whether a person accepted one of its changes
RawMember = tuple[str, str | None, str, str, str | None, bool]


def build(parts: Iterator[tuple[pa.Table, Reformatted]], cluster_of: dict[str, str], how_of: dict[str, str],
          spec: CleanupSpec, *, side: Callable[..., Future[Merged]] | None = None) -> ChangeSet:
    """The change set from the snapshot parts (each with its rows' safe reformats: ``safe_rows``) and the
    clusters. A row in no cluster takes its reformats as they were made; a cluster's rows start from them.

    ``side`` (``bpo.pool.beside``): the first half of the clusters (by id, counted in rows) is merged there, on
    another CPU, while this process merges the rest; the change set is the same either way."""
    members: dict[str, list[RawMember]] = {}
    safe: list[Change] = []
    for snapshot, after_of in parts:
        fps = (snapshot.column("fp").to_pylist() if "fp" in snapshot.column_names
               else [None] * snapshot.num_rows)  # a part snapshotted before fingerprints were kept
        for key, hash_, text, fp in zip(snapshot.column("key").to_pylist(), snapshot.column("hash").to_pylist(),
                                        snapshot.column("row").to_pylist(), fps, strict=True):
            if key in cluster_of:
                made = after_of.get(key)
                members.setdefault(cluster_of[key], []).append(
                    (key, made[0] if made else None, hash_, text, fp, made is not None and made[3] == "accepted"))
            elif key in after_of:
                after_text, after_hash, sets, how = after_of[key]
                safe.append(Change(MAIN, key, "update", how, None, text, after_text, hash_, after_hash,
                                   before_fp=fp, sets=sets))
    groups = sorted(members.items())
    split = _half(groups)
    if side is not None and split:
        far = side(merge_clusters, groups[:split], how_of, spec)
        near = merge_clusters(groups[split:], how_of, spec)
        merged = [far.result(), near]
    else:
        merged = [merge_clusters(groups, how_of, spec)]
    out = ChangeSet()
    for m in merged:
        out.changes.extend(m.changes)
        out.clusters.update(m.clusters)
        out.how.update(m.how)
        out.projected.update(m.projected)
    out.changes.extend(safe)
    for m in merged:
        out.changes.extend(m.alone)
    _number(out.changes)
    return out


def _half(groups: list[tuple[str, list[RawMember]]]) -> int:
    """Where the clusters split in two halves of about as many rows (0: they do not split, one cluster or none)."""
    total, seen = sum(len(rows) for _, rows in groups), 0
    for at, (_, rows) in enumerate(groups[:-1]):
        seen += len(rows)
        if 2 * seen >= total:
            return at + 1
    return 0


@dataclass
class Merged(ChangeSet):
    """Some clusters merged (``merge_clusters``): their changes, and the reformats of rows alone in their cluster."""

    alone: list[Change] = field(default_factory=list)


def merge_clusters(groups: list[tuple[str, list[RawMember]]], how_of: dict[str, str], spec: CleanupSpec) -> Merged:
    """The changes of these clusters (by id, in order), each built by the survivorship rules."""
    out = Merged()
    merge = spec.merge
    for cluster_id, raw in groups:
        # a row with no reformat is as read: one parse serves both (neither is changed in place)
        rows = []
        for key, made, hash_, text, fp, _ in raw:
            std = parse(made if made is not None else text)
            rows.append(Member(key, std, hash_, text, fp, None if made is not None else std))
        if len(rows) < 2:  # alone in its cluster (its pairs were kept apart): its reformats only
            accepted = {r[0] for r in raw if r[5]}
            out.alone.extend(out.change(spec, "update", "accepted" if m.key in accepted else "safe", m,
                                        m.standardized, None) for m in rows if m.standardized != m.as_read())
            continue
        kept, values = survivor(rows, spec)
        kept_before = kept.as_read()
        how = how_of.get(cluster_id, "auto")
        group = []
        merged = []
        for m in sorted(rows, key=lambda m: m.key):
            if m is kept:
                continue
            merged.append(m.key)
            if merge.mode == "delete":
                group.append(out.change(spec, "delete", how, m, None, kept.key))
            else:
                after = dict(m.standardized)
                after[merge.column] = kept_before[spec.key]
                group.append(out.change(spec, "soft_delete", how, m, after, kept.key))
        # the survivor takes the merged rows' values last: a unique column (an email) is free by then
        if values != kept_before:
            group.append(out.change(spec, "update", how, kept, values, kept.key))
        out.clusters[kept.key] = merged
        out.how[kept.key] = how
        out.changes.extend(group)
    return out


def _number(changes: list[Change]) -> None:
    """Sequence numbers in order; chunks of about CHUNK changes that never split a cluster."""
    chunk, in_chunk, last_cluster = 0, 0, None
    for seq, change in enumerate(changes):
        cluster = change.cluster
        if in_chunk >= CHUNK and (cluster is None or cluster != last_cluster):
            chunk, in_chunk = chunk + 1, 0
        change.seq, change.chunk = seq, chunk
        in_chunk += 1
        last_cluster = cluster
