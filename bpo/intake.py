"""Intake: list a batch's files, stage each one under the run's ``raw/``, read it into raw-record parts.

Every file is accounted for: read, or quarantined with its reason and the records it held (see
``bpo.readers.count_records`` for how those are counted). Only files inside the batch are read: a
symbolic link is never followed, so nothing outside the batch folder can be copied into S3.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from bpo.readers import BadRow, UnreadableFile, count_records, read_batch_file
from bpo.run import RunContext, batch_name, get_store, put_json, put_parquet_table
from bpo.settings import get_settings
from bpo.spec import ProcessSpec
from bpo.store import StoredObject


class Source(BaseModel):
    """One file of a batch: a local path or an S3 key, its name within the batch, and why it is not read."""

    name: str
    path: str | None = None
    key: str | None = None
    refused: str | None = None  # set when the entry must not be read (a symbolic link, a device)
    # a refused entry that may hold records nobody counted (a link to a file outside the batch)
    refused_uncounted: bool = False


def _link_refusal(path: Path, root: Path) -> tuple[str, bool]:
    """Why a symbolic link in the batch is not followed, and whether records may hide behind it."""
    target = path.resolve()
    if not target.exists():
        return "broken symbolic link: nothing to read", False
    if not target.is_relative_to(root):
        return "symbolic link pointing outside the batch folder: never read", True
    inside = target.relative_to(root).as_posix() or "."
    return f"symbolic link to {inside!r} inside the batch: read there, not twice", False


def _local_sources(folder: Path) -> list[Source]:
    """Every entry of a local batch folder and its sub-folders, hidden ones included; links not followed."""
    root = folder.resolve()
    sources: list[Source] = []
    # followlinks=False: a link to a folder is listed (and refused), never entered
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for entry in [*dirnames, *filenames]:
            path = here / entry
            name = path.relative_to(folder).as_posix()
            if path.is_symlink():
                reason, uncounted = _link_refusal(path, root)
                sources.append(Source(name=name, path=str(path), refused=reason, refused_uncounted=uncounted))
            elif path.is_file():
                sources.append(Source(name=name, path=str(path)))
            elif not path.is_dir():
                sources.append(Source(name=name, path=str(path), refused="not a regular file: never read"))
    return sorted(sources, key=lambda s: s.name)


def list_inputs(run: RunContext) -> list[Source]:
    """The batch's files: a local folder's, or an S3 prefix's (in the artifacts bucket), hidden ones included."""
    store = get_store()
    if run.batch.startswith("s3://") or not Path(run.batch).exists():
        prefix = run.batch.removeprefix(f"s3://{store.bucket}/").rstrip("/") + "/"
        if run.batch.startswith("s3://") and not run.batch.startswith(f"s3://{store.bucket}/"):
            raise ValueError(f"batch {run.batch!r} is not in the artifacts bucket {store.bucket!r}")
        # a key ending in "/" is a folder marker some tools write, not a file
        keys = [key for key in store.list_keys(prefix) if not key.endswith("/")]
        if not keys:
            raise FileNotFoundError(f"batch {run.batch!r} is neither a local folder nor an S3 prefix with files")
        return [Source(name=key[len(prefix):], key=key) for key in keys]
    folder = Path(run.batch)
    if not folder.is_dir():
        raise NotADirectoryError(f"batch {run.batch!r} is not a folder")
    return _local_sources(folder)


def _read_local(path: str) -> bytes:
    """A local file's bytes; O_NOFOLLOW refuses a file swapped for a link after the batch was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as file:
        return file.read()


def _source_bytes(source: Source) -> bytes:
    """The bytes of an input file that may be read (``source.refused`` is None)."""
    return _read_local(str(source.path)) if source.path else get_store().get_bytes(str(source.key))


def quarantine(run: RunContext, name: str, data: bytes | None, reason: str) -> list[StoredObject]:
    """Put an unreadable file (or the rows of one) in ``quarantine/<process>/<batch>/`` beside its reason;
    with ``data`` None (an entry never read) only the reason is written."""
    store = get_store()
    base = store.key("quarantine", run.process, batch_name(run.batch), name)
    note = {"file": name, "reason": reason, "flow_run_id": run.flow_run_id, "batch": run.batch,
            "at": dt.datetime.now(dt.UTC).isoformat()}
    stored = [] if data is None else [store.put_bytes(base, data)]
    return [*stored, put_json(store, base + ".reason.json", note)]


class FileTaken(BaseModel):
    """One input file after intake: its raw record parts, or why it was quarantined."""

    name: str
    staged: StoredObject  # the file as received under the run's raw/ (a refused entry: its reason note)
    records: int = 0
    parts: list[tuple[str, int]] = []  # (raw parquet key, rows)
    bad_rows: int = 0
    quarantined: str | None = None
    held: int = 0  # records of a file quarantined whole, where they could be counted
    uncounted: bool = False  # quarantined whole, holding records nobody could count
    sources: list[str] = []  # the _source_file values its records carry (a workbook's "book.xlsx#Sheet2")
    notes: list[str] = []  # what of the file holds no record and was passed over, with why
    low_confidence: list[str] = []
    unmapped: list[str] = []
    objects: list[StoredObject] = []


def chunk_bounds(rows: int, size: int) -> list[tuple[int, int]]:
    """(start, end) of each chunk of ``rows`` records: ``size`` each, and a remainder under half a chunk
    joins the last one (a small tail chunk costs a task, a validation and a load of its own, and
    normalizes slower per record: fewer of its values repeat)."""
    starts = list(range(0, rows, size))
    if not starts:
        return []
    if len(starts) > 1 and rows - starts[-1] < size // 2:
        starts.pop()
    return list(zip(starts, [*starts[1:], rows], strict=True))


def _bad_rows_text(bad_rows: list[BadRow]) -> bytes:
    """The bad-rows quarantine: one JSON line per row, with its reason (and sheet, for a workbook)."""
    lines = []
    for bad in bad_rows:
        line = {"row": bad.row, "reason": bad.reason, "raw": bad.raw}
        if bad.source:
            line["source"] = bad.source
        lines.append(json.dumps(line))
    return "\n".join(lines).encode()


def take_in(run: RunContext, spec: ProcessSpec, source: Source) -> FileTaken:
    """Stage one input file, read it into raw-record parts; an unreadable file or row goes to quarantine."""
    name = source.name
    if source.refused:
        notes = quarantine(run, name, None, source.refused)
        return FileTaken(name=name, staged=notes[0], quarantined=source.refused, uncounted=source.refused_uncounted)
    # the uploads (the staged file, the raw parts) go on in threads while the file is read and the parts
    # encoded: they mostly wait on the network with the GIL released; each is awaited before the step returns
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="bpo-intake-put") as puts:
        return _take_in(run, spec, source, puts)


def _take_in(run: RunContext, spec: ProcessSpec, source: Source, puts: ThreadPoolExecutor) -> FileTaken:
    """``take_in`` for a file that may be read, its uploads on ``puts``."""
    name = source.name
    store = get_store()
    settings = get_settings()
    data = _source_bytes(source)
    staging = puts.submit(store.put_bytes, run.key("raw", name), data)
    try:
        read = read_batch_file(name, data, spec, max_decompressed_bytes=settings.max_decompressed_bytes)
    except UnreadableFile as exc:
        held = exc.records if exc.records is not None else count_records(name, data)
        return FileTaken(name=name, quarantined=exc.reason, staged=staging.result(), held=held or 0,
                         uncounted=held is None, objects=quarantine(run, name, data, exc.reason))
    quarantined: list[StoredObject] = []
    if read.bad_rows:
        quarantined += quarantine(run, f"{name}.bad-rows.jsonl", _bad_rows_text(read.bad_rows),
                                  f"{len(read.bad_rows)} row(s) could not be parsed; see each line's reason")
    frame = read.frame.reset_index(drop=True)
    parts: list[tuple[Future[StoredObject], int]] = []
    for i, (start, end) in enumerate(chunk_bounds(len(frame), settings.chunk_rows)):
        table = pa.Table.from_pandas(frame.iloc[start:end], preserve_index=False)  # here: it holds the GIL
        key = run.key("records", "raw", f"{name}.part-{i:04d}.parquet")
        parts.append((puts.submit(put_parquet_table, store, key, table), end - start))
    sources = sorted(set(frame["_source_file"].unique())) if len(frame) else []
    stored = [future.result() for future, _ in parts]
    keys = [(o.key, rows) for o, (_, rows) in zip(stored, parts, strict=True)]
    return FileTaken(name=name, records=len(frame), parts=keys,
                     bad_rows=len(read.bad_rows), staged=staging.result(), sources=sources, notes=read.notes,
                     low_confidence=read.low_confidence, unmapped=read.unmapped, objects=[*quarantined, *stored])
