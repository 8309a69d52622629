"""Snapshot, standardize and profile: one streamed pass over the client's table.

Each chunk of rows (ordered by key) becomes four Parquet objects in the run's S3 prefix:
``snapshot/`` — every row whole, exactly encoded, with its content hash (what undo restores and
checks) and, on PostgreSQL, the database's own fingerprint of it (what apply checks first);
``text/`` — the spec's columns as text, as read (what the 'after' checks start from); ``match/`` —
the compared columns standardized, the input of the match model; and ``proposals/`` — the value
changes standardizing proposes, each marked safe or not. Only one chunk is in memory at a time, so
a table larger than memory works.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bpo.cleanup.checks import E164, EMAIL  # the figures use the expectations' patterns
from bpo.cleanup.rows import encode_rows, key_text, text_column, text_hash
from bpo.cleanup.spec import CleanupSpec
from bpo.cleanup.standardize import standardize
from bpo.run import get_store
from bpo.store import ArtifactStore, StoredObject

T = TypeVar("T")


@dataclass
class Figures:
    """Quality figures of one version of the table (before, or as it would be after)."""

    rows: int = 0
    nulls: dict[str, int] = field(default_factory=dict)  # per column
    emails: int = 0  # non-null values of email columns
    valid_emails: int = 0
    phones: int = 0
    e164_phones: int = 0
    duplicates: int = 0  # rows that are a duplicate of another (rows in clusters minus clusters)

    def add(self, other: Figures) -> None:
        self.rows += other.rows
        for c, n in other.nulls.items():
            self.nulls[c] = self.nulls.get(c, 0) + n
        self.emails += other.emails
        self.valid_emails += other.valid_emails
        self.phones += other.phones
        self.e164_phones += other.e164_phones
        self.duplicates += other.duplicates

    def shares(self) -> dict[str, float | None]:
        def share(n: int, d: int) -> float | None:
            return round(n / d, 6) if d else None
        return {"valid_emails": share(self.valid_emails, self.emails),
                "e164_phones": share(self.e164_phones, self.phones),
                "duplicate_rate": share(self.duplicates, self.rows),
                **{f"nulls.{c}": share(n, self.rows) for c, n in self.nulls.items()}}

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "nulls": self.nulls, "emails": self.emails, "valid_emails": self.valid_emails,
                "phones": self.phones, "e164_phones": self.e164_phones, "duplicates": self.duplicates,
                "shares": self.shares()}


def profile(values: pd.DataFrame, spec: CleanupSpec) -> Figures:
    """Figures of one chunk: ``values`` holds the spec's columns as text (or NA)."""
    figures = Figures(rows=len(values), nulls={c: int(values[c].isna().sum()) for c in spec.columns})
    for name, col in spec.columns.items():
        present = values[name].dropna().astype(str)
        if col.role == "email":
            figures.emails += len(present)
            figures.valid_emails += int(present.str.fullmatch(EMAIL).sum())
        elif col.role == "phone":
            figures.phones += len(present)
            figures.e164_phones += int(present.str.fullmatch(E164).sum())
    return figures


@dataclass
class Snapshot:
    """What the pass wrote and measured."""

    columns: list[str]  # the table's columns, in order
    rows: int = 0
    parts: list[str] = field(default_factory=list)  # snapshot/ keys
    text_parts: list[str] = field(default_factory=list)  # text/ keys: the spec's columns as text, as read
    match_parts: list[str] = field(default_factory=list)  # match/ keys
    proposal_parts: list[str] = field(default_factory=list)  # proposals/ keys
    objects: list[StoredObject] = field(default_factory=list)
    before: Figures = field(default_factory=Figures)
    proposals: int = 0
    safe_proposals: int = 0


TEXT_PREFIX = "c:"  # text/ columns: the key is "key", a spec column c is "c:" + c (a column may be called "key")


def _put(store: ArtifactStore, key: str, table: pa.Table) -> StoredObject:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return store.put_bytes(key, buf.getvalue(), "application/vnd.apache.parquet")


@dataclass
class Standardized:
    """What standardizing one chunk wrote and measured."""

    match_key: str
    proposals_key: str
    objects: list[StoredObject]
    figures: Figures
    proposals: int
    safe_proposals: int


def _inline(fn: Callable[..., T], *args: Any) -> Future[T]:
    done: Future[T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - raised where the result is read, as a worker's would be
        done.set_exception(exc)
    return done


def take_snapshot(chunks: Iterable[list[tuple[Any, ...]]], columns: list[str], spec: CleanupSpec, prefix: str, *,
                  side: Callable[..., Future[Standardized]] = _inline, fingerprinted: bool = False,
                  then: Callable[[], None] | None = None) -> Snapshot:
    """Write the snapshot, text, match and proposal parts of every chunk; measure the 'before' figures.

    ``fingerprinted``: each row read ends with the database's fingerprint of it (``source.read_chunks``), kept
    beside its hash.

    This process reads and encodes the chunks; each chunk's standardizing is handed to ``side`` (``bpo.pool.beside``
    gives it to a worker process, so that it runs on another CPU while the next chunk is read), by its text part.
    ``then`` is called once every chunk is read and handed over: what the side is to do after them.
    """
    store = get_store()
    snap = Snapshot(columns=columns)
    key_at = columns.index(spec.key)
    positions = {c: columns.index(c) for c in spec.columns}
    pending: list[Future[Standardized]] = []
    for number, rows in enumerate(chunks):
        fps: list[str | None] = [None] * len(rows)
        if fingerprinted:
            fps = [row[-1] for row in rows]
            rows = [row[:-1] for row in rows]
        by_column, texts = encode_rows(columns, rows)
        keys = [key_text(k) for k in by_column[key_at]]
        raw = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        name = f"part-{number:05d}.parquet"
        snapshot = pa.table({"key": keys, "hash": [text_hash(t) for t in texts], "row": texts,
                             "fp": pa.array(fps, pa.string())})
        as_read = pa.table({"key": keys, **{TEXT_PREFIX + c: pa.array(text_column(raw[i]), type=pa.string())
                                            for c, i in positions.items()}})
        for folder, tbl, parts in (("snapshot", snapshot, snap.parts), ("text", as_read, snap.text_parts)):
            obj = _put(store, f"{prefix}/{folder}/{name}", tbl)
            parts.append(obj.key)
            snap.objects.append(obj)
        snap.rows += len(rows)
        pending.append(side(standardize_part, snap.text_parts[-1], spec, prefix, name))
    if then is not None:
        then()
    for i in reversed(range(len(pending))):  # what the side has not started yet, this process (idle now) does
        if pending[i].cancel():
            pending[i] = _inline(standardize_part, snap.text_parts[i], spec, prefix, f"part-{i:05d}.parquet")
    for done in pending:
        part = done.result()
        snap.match_parts.append(part.match_key)
        snap.proposal_parts.append(part.proposals_key)
        snap.objects.extend(part.objects)
        snap.before.add(part.figures)
        snap.proposals += part.proposals
        snap.safe_proposals += part.safe_proposals
    return snap


def standardize_part(text_key: str, spec: CleanupSpec, prefix: str, name: str) -> Standardized:
    """One chunk's match and proposal parts, from its text part; and its 'before' figures."""
    store = get_store()
    t = pq.read_table(io.BytesIO(store.get_bytes(text_key)))
    keys = t.column("key").to_pylist()
    text = pd.DataFrame({c: pd.array(t.column(TEXT_PREFIX + c).to_pylist(), dtype=pd.StringDtype())
                         for c in spec.columns})
    standardized, proposals = standardize(text, spec)
    compared = [c for c, col in spec.columns.items() if col.compare]
    match = pa.table({"unique_id": pa.array(keys, pa.string()), **{
        c: pa.array(standardized[c].to_numpy(object, na_value=None), type=pa.string()) for c in compared}})
    props = pa.table({"key": [keys[p] for p in proposals["position"]],
                      "column": proposals["column"].astype(str).tolist(),
                      "old": proposals["old"].astype(str).tolist(), "new": proposals["new"].astype(str).tolist(),
                      "safe": proposals["safe"].astype(bool).tolist()},
                     schema=pa.schema([("key", pa.string()), ("column", pa.string()), ("old", pa.string()),
                                       ("new", pa.string()), ("safe", pa.bool_())]))
    match_obj = _put(store, f"{prefix}/match/{name}", match)
    props_obj = _put(store, f"{prefix}/proposals/{name}", props)
    return Standardized(match_key=match_obj.key, proposals_key=props_obj.key, objects=[match_obj, props_obj],
                        figures=profile(text, spec), proposals=len(proposals),
                        safe_proposals=int(proposals["safe"].sum()) if len(proposals) else 0)


def local_copies(store: ArtifactStore, keys: list[str], folder: Path) -> list[Path]:
    """The parts as local files (the match model reads files), downloaded once per folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in keys:
        path = folder / key.rsplit("/", 1)[-1]
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(store.get_bytes(key))
            tmp.replace(path)
        paths.append(path)
    return paths
