"""A run and its artifacts: the run and part types, the run's S3 prefix, staged inputs, quarantine, the inbox."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from bpo import runs
from bpo.batches import hold_batch
from bpo.db.models import Run
from bpo.db.session import session_scope
from bpo.settings import get_settings
from bpo.store import ArtifactStore, StoredObject


class RunContext(BaseModel):
    """What every step of a run needs to know about it."""

    flow_run_id: str
    process: str  # the spec's name, e.g. customer-onboarding
    spec: str  # the spec file's stem, e.g. customer_onboarding
    batch: str
    prefix: str  # the run's S3 prefix

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix, *[p.strip("/") for p in parts]])


class Part(BaseModel):
    """One chunk of one input file, through the stages."""

    file: str
    raw: str
    normalized: str
    issues: str
    rows: int
    objects: list[StoredObject] = []


_stores: dict[int, ArtifactStore] = {}
_stores_lock = threading.Lock()


def get_store() -> ArtifactStore:
    """This process's store for the current settings: one S3 client, shared by the process's threads.

    boto3 clients are thread-safe once made; making one per call on a shared session is not.
    """
    settings = get_settings()
    with _stores_lock:
        store = _stores.get(id(settings))
        if store is None or store.settings is not settings:
            store = _stores[id(settings)] = ArtifactStore(settings)
            _ = store.client  # made here, under the lock
        return store


def put_parquet(store: ArtifactStore, key: str, frame: pd.DataFrame) -> StoredObject:
    return put_parquet_table(store, key, pa.Table.from_pandas(frame, preserve_index=False))


def put_parquet_table(store: ArtifactStore, key: str, table: pa.Table) -> StoredObject:
    """An Arrow table as Parquet (as pandas' ``to_parquet`` writes it); encoding it mostly releases the GIL."""
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return store.put_bytes(key, buf.getvalue().to_pybytes(), "application/vnd.apache.parquet")


def read_parquet(store: ArtifactStore, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get_bytes(key)), columns=columns)


def put_json(store: ArtifactStore, key: str, data: Any) -> StoredObject:
    return store.put_bytes(key, json.dumps(data, indent=2, default=str).encode(), "application/json")


def open_run(flow_run_id: str, process: str, spec: str, batch: str) -> RunContext:
    """Take the batch (one run at a time), record the run in the ops database (once) and fix its S3 prefix.

    The batch's runs whose process died are marked ended first, so that a dead run does not hold the
    batch; the row names this process, so the run can be found dead if it is killed.
    """
    settings = get_settings()
    runs.sweep_dead_runs(settings, process=process, batch=batch)
    hold_batch(settings.ops_database_url or "", flow_run_id=flow_run_id, process=spec, batch=batch)
    with session_scope(settings.ops_database_url or "") as s:
        run = s.get(Run, flow_run_id)
        if run is None:
            started = datetime.now(UTC)
            prefix = get_store().run_prefix(process, flow_run_id, started)
            s.add(Run(flow_run_id=flow_run_id, process=process, batch=batch, status="running", s3_prefix=prefix,
                      started_at=started))
        else:
            prefix = run.s3_prefix
        runs.record_process(s, flow_run_id)
    return RunContext(flow_run_id=flow_run_id, process=process, spec=spec, batch=batch, prefix=prefix)


def batch_name(batch: str) -> str:
    return batch.rstrip("/").rsplit("/", 1)[-1] or "batch"


def clear_inbox(run: RunContext) -> int:
    """Remove a finished batch from the inbox (its files are kept under the run's ``raw/``)."""
    store = get_store()
    inbox = store.key("inbox") + "/"
    prefix = run.batch.removeprefix(f"s3://{store.bucket}/")
    if not prefix.startswith(inbox):
        return 0
    keys = store.list_keys(prefix.rstrip("/") + "/")
    for key in keys:
        store.delete(key)
    return len(keys)
