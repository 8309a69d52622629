"""Runs and their artifacts: the run's S3 prefix, staged inputs, quarantine, manifest, Prefect artifacts."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

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


def get_store() -> ArtifactStore:
    return ArtifactStore(get_settings())


def put_parquet(store: ArtifactStore, key: str, frame: pd.DataFrame) -> StoredObject:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return store.put_bytes(key, buf.getvalue(), "application/vnd.apache.parquet")


def read_parquet(store: ArtifactStore, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get_bytes(key)), columns=columns)


def put_json(store: ArtifactStore, key: str, data: Any) -> StoredObject:
    return store.put_bytes(key, json.dumps(data, indent=2, default=str).encode(), "application/json")


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def open_run(flow_run_id: str, process: str, spec: str, batch: str) -> RunContext:
    """Record the run in the ops database (once) and fix its S3 prefix."""
    settings = get_settings()
    with session_scope(settings.ops_database_url) as s:
        run = s.get(Run, flow_run_id)
        if run is None:
            started = datetime.now(UTC)
            prefix = get_store().run_prefix(process, flow_run_id, started)
            s.add(Run(flow_run_id=flow_run_id, process=process, batch=batch, status="running", s3_prefix=prefix,
                      started_at=started))
        else:
            prefix = run.s3_prefix
    return RunContext(flow_run_id=flow_run_id, process=process, spec=spec, batch=batch, prefix=prefix)


def batch_name(batch: str) -> str:
    return batch.rstrip("/").rsplit("/", 1)[-1] or "batch"


class Source(BaseModel):
    """One file of a batch: a local path or an S3 key, and its name within the batch."""

    name: str
    path: str | None = None
    key: str | None = None


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600)
def list_inputs(run: RunContext) -> list[Source]:
    """The batch's files: a local folder's, or an S3 prefix's (in the artifacts bucket)."""
    store = get_store()
    if run.batch.startswith("s3://") or not Path(run.batch).exists():
        prefix = run.batch.removeprefix(f"s3://{store.bucket}/").rstrip("/") + "/"
        if run.batch.startswith("s3://") and not run.batch.startswith(f"s3://{store.bucket}/"):
            raise ValueError(f"batch {run.batch!r} is not in the artifacts bucket {store.bucket!r}")
        keys = store.list_keys(prefix)
        if not keys:
            raise FileNotFoundError(f"batch {run.batch!r} is neither a local folder nor an S3 prefix with files")
        return [Source(name=key[len(prefix):], key=key) for key in keys]
    folder = Path(run.batch)
    if not folder.is_dir():
        raise NotADirectoryError(f"batch {run.batch!r} is not a folder")
    return [Source(name=path.relative_to(folder).as_posix(), path=str(path))
            for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))]


def stage_input(run: RunContext, source: Source) -> tuple[bytes, StoredObject]:
    """Copy one input file into the run's ``raw/`` folder; returns its bytes and the stored copy."""
    store = get_store()
    data = Path(source.path).read_bytes() if source.path else store.get_bytes(str(source.key))
    return data, store.put_bytes(run.key("raw", source.name), data)


def quarantine(run: RunContext, name: str, data: bytes, reason: str) -> list[StoredObject]:
    """Put an unreadable file (or the rows of one) in ``quarantine/<process>/<batch>/`` beside its reason."""
    store = get_store()
    base = store.key("quarantine", run.process, batch_name(run.batch), name)
    note = {"file": name, "reason": reason, "flow_run_id": run.flow_run_id, "batch": run.batch,
            "at": datetime.now(UTC).isoformat()}
    return [store.put_bytes(base, data), put_json(store, base + ".reason.json", note)]


@task(retries=2, retry_delay_seconds=2, timeout_seconds=300)
def publish_run(run: RunContext, objects: list[StoredObject], files: list[dict[str, Any]],
                totals: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` with the reconciliation, the Prefect artifacts, and close the run."""
    from bpo.review import set_run_status

    store = get_store()
    balanced = all(f["records_in"] == f["loaded"] + f["rejected"] + f["quarantined"] for f in files)
    manifest = {
        "flow_run_id": run.flow_run_id, "process": run.process, "batch": run.batch,
        "prefix": store.uri(run.prefix), "written_at": datetime.now(UTC).isoformat(),
        "objects": [o.__dict__ for o in objects],
        "reconciliation": {"balanced": balanced, "files": files, "totals": totals},
    }
    put_json(store, run.key("manifest.json"), manifest)
    straight = totals["straight_through"] / totals["records_in"] if totals["records_in"] else 0.0
    slug = run.process.lower()
    create_markdown_artifact(key=f"{slug}-summary", description="Run summary", markdown="\n".join([
        f"# {run.process}: batch `{run.batch}`",
        "",
        "| records in | loaded | rejected | quarantined | reviewed | straight-through |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {totals['records_in']} | {totals['loaded']} | {totals['rejected']} | {totals['quarantined']} | "
        f"{totals['reviewed']} | {straight:.1%} |",
        "",
        f"Reconciliation: {'balanced' if balanced else '**NOT balanced**'}. Artifacts: `{store.uri(run.prefix)}/`",
    ]))
    create_table_artifact(key=f"{slug}-files", table=files, description="Reconciliation per file")
    create_link_artifact(key=f"{slug}-manifest", link=store.uri(run.key("manifest.json")),
                         description="Manifest of every object the run wrote")
    with session_scope(get_settings().ops_database_url) as s:
        set_run_status(s, run.flow_run_id, "completed" if balanced else "failed", **totals)
    if not balanced:
        raise RuntimeError(f"reconciliation failed: records in != loaded + rejected + quarantined: {files}")
    return {"manifest": store.uri(run.key("manifest.json")), "straight_through_rate": round(straight, 4), **totals}


@task(retries=2, retry_delay_seconds=2, timeout_seconds=300)
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
