"""Gather: every source of a brief read once per run, its raw bytes kept under the run, keyed by content hash.

- web pages: each ``WebSource`` page for each subject, through the guarded ``Fetcher``; a URL that
  several subjects share is fetched once (its document then names no single subject);
- a document corpus: every file of a folder or an S3 prefix — HTML, PDF, plain text, CSV by suffix,
  any other file recorded as refused;
- SQL tables: the source's query once per subject, the subject's terms bound as parameters, the
  rows kept as JSON ``{"columns": [...], "rows": [[...], ...]}``.

The bytes go to ``<prefix>/raw/<sha256>`` (the same bytes twice are one object). Every source
yields documents, whatever happens to it: a failure is a ``failed`` or ``refused`` document with
its reason, and the rest of the run goes on. ``previous`` — the documents of the last edition —
makes the web requests conditional, so an unchanged page is ``not_modified`` and not fetched again.

The bytes just stored are also kept in this process (``recent``, bounded): the extraction that follows
in the same run takes them from there instead of downloading again what it has just uploaded. A key
names its content (its hash), so a kept copy is never stale; one not kept is read from S3.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, time
from decimal import Decimal
from itertools import zip_longest
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from bpo.connections import ConnectionRefused, connection_url
from bpo.research.brief import Brief, CorpusSource, SqlSource, WebSource
from bpo.research.fetch import Fetched, Fetcher
from bpo.research.model import Document, DocumentStatus
from bpo.settings import Settings
from bpo.store import ArtifactStore

CORPUS_TYPES = {".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf", ".txt": "text/plain",
                ".csv": "text/csv"}
# a corpus file is the client's own document, trusted more than a web page, but not without bound
CORPUS_MAX_BYTES = 200_000_000
# threads reading at once over all sources; each host's own guard keeps it to its limit
MIN_WORKERS, MAX_WORKERS = 4, 32


RECENT_MAX_BYTES = 256_000_000


class RecentBytes:
    """Raw bytes by S3 key, the oldest dropped past ``max_bytes``: what the next step of the run will read."""

    def __init__(self, max_bytes: int = RECENT_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if key in self._data:
                return
            self._data[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, dropped = self._data.popitem(last=False)
                self._size -= len(dropped)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def take(self, key: str) -> bytes | None:
        """The bytes, no longer kept here: a long-lived worker does not hold a run's pages after it."""
        with self._lock:
            data = self._data.pop(key, None)
            self._size -= len(data) if data is not None else 0
            return data


recent = RecentBytes()


class RawStore(Protocol):
    """Where raw bytes go: ``ArtifactStore`` in a run; anything with the same ``put_bytes`` in a test."""

    def put_bytes(self, key: str, data: bytes, content_type: str = ...) -> Any: ...


@dataclasses.dataclass(frozen=True)
class SourceSummary:
    """How one source went: documents fetched, not modified since the last edition, failed, refused."""

    source: str
    fetched: int = 0
    not_modified: int = 0
    failed: int = 0
    refused: int = 0


def summarize(brief: Brief, documents: Iterable[Document]) -> list[SourceSummary]:
    """One summary per source of the brief, in the brief's order (a source with no document shows zeros)."""
    counts = {source.name: {"ok": 0, "not_modified": 0, "failed": 0, "refused": 0} for source in brief.sources}
    for document in documents:
        counts.setdefault(document.source, {"ok": 0, "not_modified": 0, "failed": 0, "refused": 0})
        counts[document.source][document.status] += 1
    return [SourceSummary(name, c["ok"], c["not_modified"], c["failed"], c["refused"]) for name, c in counts.items()]


class _Keeper:
    """Stores raw bytes once per content hash for the run."""

    def __init__(self, store: RawStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self._stored: set[str] = set()
        self._lock = threading.Lock()

    def keep(self, data: bytes, content_type: str) -> tuple[str, str]:
        digest = hashlib.sha256(data).hexdigest()
        key = f"{self.prefix}/raw/{digest}"
        with self._lock:
            if digest in self._stored:
                return key, digest
            self._stored.add(digest)
        try:
            self.store.put_bytes(key, data, content_type)
        except BaseException:
            with self._lock:
                self._stored.discard(digest)
            raise
        recent.put(key, data)
        return key, digest

    def document(self, source: str, location: str, data: bytes, content_type: str, *,
                 subject_id: str | None = None, stored_type: str | None = None,
                 retrieved_at: datetime | None = None, **extra: Any) -> Document:
        """An ``ok`` document for ``data``, or a ``failed`` one if the bytes cannot be stored."""
        when = retrieved_at or datetime.now(UTC)
        try:
            key, digest = self.keep(data, stored_type or content_type)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return Document(source, location, "failed", when, subject_id, content_type,
                            error=f"could not store the raw bytes: {reason}")
        return Document(source, location, "ok", when, subject_id, content_type, digest, key, len(data), **extra)


def gather(brief: Brief, store: RawStore, prefix: str, previous: Iterable[Document] | None = None, *,
           settings: Settings | None = None, workers: int | None = None,
           fetcher: Fetcher | None = None) -> list[Document]:
    """Every source of ``brief`` read once; the documents in the brief's source order, then by location."""
    keeper = _Keeper(store, prefix)
    last = {d.location: d for d in previous or () if d.status in ("ok", "not_modified") and d.key}
    jobs: list[_Job] = []
    pages: dict[str, list[_Job]] = {}  # by host
    web = [s for s in brief.sources if isinstance(s, WebSource)]
    own_fetcher = fetcher is None
    client = fetcher or Fetcher(web)
    try:
        for source in brief.sources:
            if isinstance(source, WebSource):
                asked: dict[str, list[str]] = {}
                for subject in brief.subjects:
                    for url in source.urls(subject):
                        asked.setdefault(url, [])
                        if subject.id not in asked[url]:
                            asked[url].append(subject.id)
                for url, subjects in asked.items():
                    host = (urlsplit(url).hostname or "").lower()
                    pages.setdefault(host, []).append(_web_job(client, keeper, source, url, subjects, last.get(url)))
            elif isinstance(source, CorpusSource):
                jobs.extend(_corpus_jobs(keeper, source, store))
            else:
                jobs.append(_sql_job(keeper, source, brief, settings))
        # hosts taken in turn: workers queued behind one host's limit would leave the other hosts idle
        jobs.extend(job for turn in zip_longest(*pages.values()) for job in turn if job is not None)
        if workers is None:  # enough for every host's limit to be used, within bounds on a small machine
            workers = min(MAX_WORKERS, max(MIN_WORKERS, sum(s.concurrency for s in web) + 2))
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gather") as pool:
            results = list(pool.map(_safe, jobs))
    finally:
        if own_fetcher:
            client.close()
    order = {source.name: i for i, source in enumerate(brief.sources)}
    documents = [d for batch in results for d in batch]
    return sorted(documents, key=lambda d: (order.get(d.source, len(order)), d.location, d.subject_id or ""))


@dataclasses.dataclass(frozen=True)
class _Job:
    """One unit of the pool: a page, a file, or one SQL source's queries."""

    source: str
    location: str
    run: Callable[[], list[Document]]


def _safe(job: _Job) -> list[Document]:
    try:
        return job.run()
    except Exception as exc:  # each job reports its own failures; this is the net under a bug
        return [_unread(job.source, job.location, "failed", f"unexpected error: {type(exc).__name__}")]


def _web_job(fetcher: Fetcher, keeper: _Keeper, source: WebSource, url: str, subjects: list[str],
             previous: Document | None) -> _Job:
    subject_id = subjects[0] if len(subjects) == 1 else None  # a page several subjects share concerns them all

    def run() -> list[Document]:
        got: Fetched = fetcher.fetch(source, url, previous)
        extra = {"etag": got.etag, "last_modified": got.last_modified, "final_url": got.final_url}
        if got.status == "ok" and got.body is not None:
            # the header as sent: its charset is what a page declaring none in its markup is decoded by
            sent = got.content_type_header or got.content_type or "application/octet-stream"
            return [keeper.document(source.name, url, got.body, sent, subject_id=subject_id, stored_type=sent,
                                    retrieved_at=got.retrieved_at, **extra)]
        if got.status == "not_modified" and previous is not None:
            # the bytes are those of the last edition, kept under its key
            return [Document(source.name, url, "not_modified", got.retrieved_at, subject_id, previous.content_type,
                             previous.content_hash, previous.key, previous.size, **extra)]
        return [Document(source.name, url, got.status, got.retrieved_at, subject_id, error=got.error,
                         final_url=got.final_url)]

    return _Job(source.name, url, run)


def _corpus_jobs(keeper: _Keeper, source: CorpusSource, store: RawStore) -> list[_Job]:
    if source.path.startswith("s3://"):
        return _s3_corpus_jobs(keeper, source, store)
    root = Path(source.path)
    if not root.is_dir():
        return [_Job(source.name, source.path, lambda: [_unread(source.name, source.path, "failed",
                                                                 f"no folder at {source.path}")])]
    jobs = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        jobs.append(_Job(source.name, str(path), _file_reader(keeper, source, root, path)))
    return jobs


def _file_reader(keeper: _Keeper, source: CorpusSource, root: Path, path: Path) -> Callable[[], list[Document]]:
    def run() -> list[Document]:
        location = str(path)
        kind = CORPUS_TYPES.get(path.suffix.lower())
        if kind is None:
            return [_unread(source.name, location, "refused", f"unsupported file type ({path.suffix or 'none'})")]
        try:
            real = path.resolve()
            if not real.is_relative_to(root.resolve()):  # a link out of the corpus folder
                return [_unread(source.name, location, "refused", "a link to a file outside the corpus folder")]
            size = real.stat().st_size
            if size > CORPUS_MAX_BYTES:
                return [_unread(source.name, location, "failed", f"larger than {CORPUS_MAX_BYTES} bytes")]
            data = real.read_bytes()
        except OSError as exc:
            return [_unread(source.name, location, "failed", f"cannot read the file ({exc.strerror or exc})")]
        return [keeper.document(source.name, location, data, kind)]

    return run


def _s3_corpus_jobs(keeper: _Keeper, source: CorpusSource, store: RawStore) -> list[_Job]:
    bucket, _, prefix = source.path.removeprefix("s3://").partition("/")
    if not isinstance(store, ArtifactStore):
        return [_Job(source.name, source.path, lambda: [_unread(
            source.name, source.path, "failed", "an S3 corpus is read through the S3 artifact store")])]
    client = store.client
    try:
        listed: list[tuple[str, int]] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            listed.extend((obj["Key"], int(obj.get("Size", 0))) for obj in page.get("Contents", []))
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return [_Job(source.name, source.path, lambda: [_unread(source.name, source.path, "failed",
                                                                 f"cannot list the corpus: {reason}")])]
    jobs = []
    for key, size in sorted(listed):
        if key.endswith("/"):  # a folder marker some tools write, not a document
            continue
        jobs.append(_Job(source.name, f"s3://{bucket}/{key}", _object_reader(keeper, source, client, bucket, key,
                                                                             size)))
    return jobs


def _object_reader(keeper: _Keeper, source: CorpusSource, client: Any, bucket: str, key: str,
                   size: int) -> Callable[[], list[Document]]:
    def run() -> list[Document]:
        location = f"s3://{bucket}/{key}"
        suffix = Path(key).suffix.lower()
        kind = CORPUS_TYPES.get(suffix)
        if kind is None:
            return [_unread(source.name, location, "refused", f"unsupported file type ({suffix or 'none'})")]
        if size > CORPUS_MAX_BYTES:
            return [_unread(source.name, location, "failed", f"larger than {CORPUS_MAX_BYTES} bytes")]
        try:
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            return [_unread(source.name, location, "failed", f"cannot read the object: {reason}")]
        return [keeper.document(source.name, location, data, kind)]

    return run


def _sql_job(keeper: _Keeper, source: SqlSource, brief: Brief, settings: Settings | None) -> _Job:
    location = f"sql:{source.name}"

    def run() -> list[Document]:
        subjects = [s.id for s in brief.subjects]
        try:
            url, label = connection_url(source.database, settings or Settings())
        except ConnectionRefused as exc:
            return [_unread(source.name, location, "refused", str(exc), subject) for subject in subjects]
        statement = text(source.query)
        names = set(statement.compile().params)
        try:
            engine = create_engine(url)
        except Exception as exc:  # an unknown dialect or driver, a malformed URL
            return [_unread(source.name, location, "failed", f"cannot use the database {label}: "
                             f"{type(exc).__name__}", subject) for subject in subjects]
        documents = []
        try:
            # never committed: whatever a query might change is rolled back when the connection closes
            with engine.connect() as conn:
                for subject in brief.subjects:
                    terms = subject.terms()
                    params = {name: terms[name] for name in names}  # the brief checked every name is a term
                    try:
                        result = conn.execute(statement, params)
                        body = {"columns": list(result.keys()), "rows": [[_plain(v) for v in row] for row in result]}
                    except SQLAlchemyError as exc:
                        conn.rollback()
                        documents.append(_unread(source.name, location, "failed",
                                                  f"the query failed: {_db_reason(exc)}", subject.id))
                        continue
                    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
                    documents.append(keeper.document(source.name, location, data, "application/json",
                                                     subject_id=subject.id))
        except SQLAlchemyError as exc:
            done = {d.subject_id for d in documents}
            documents.extend(_unread(source.name, location, "failed", f"cannot query {label}: {_db_reason(exc)}",
                                      subject) for subject in subjects if subject not in done)
        finally:
            engine.dispose()
        return documents

    return _Job(source.name, location, run)


def _db_reason(exc: SQLAlchemyError) -> str:
    # the driver's own first line: SQLAlchemy's full message appends the statement and the bound values
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = str(exc.orig).strip().splitlines()
        return first[0][:200] if first else type(exc.orig).__name__
    return type(exc).__name__


def _plain(value: Any) -> Any:
    """A SQL value as JSON holds it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def _unread(source: str, location: str, status: DocumentStatus, error: str, subject_id: str | None = None) -> Document:
    """A document whose bytes could not, or may not, be read: the reason instead."""
    return Document(source, location, status, datetime.now(UTC), subject_id, error=error)

