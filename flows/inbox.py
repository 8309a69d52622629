"""Inbox dispatch: start one data-entry run per new batch that has arrived in the inbox.

Inputs: batches under ``<prefix>/inbox/<process>/<batch>/`` in the artifacts bucket.
Outputs: one run of the ``data-entry/data-entry`` deployment per batch, each batch claimed once
in the ops database (a second dispatch, or two at once, never starts a batch twice).
Schedule: every minute (``prefect.yaml``, deployment ``data-entry-inbox``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from prefect import flow, get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from sqlalchemy.exc import IntegrityError

from bpo.db.models import Batch
from bpo.db.session import session_scope, upgrade
from bpo.run import get_store
from bpo.runs import release_claim
from bpo.settings import get_settings


@task(retries=2, retry_delay_seconds=5, timeout_seconds=120)
def find_ready_batches(inbox: str, settle_seconds: int) -> list[str]:
    """Batches (S3 prefixes) whose newest file is older than ``settle_seconds``: their upload has finished."""
    store = get_store()
    now = datetime.now(UTC)
    ready = []
    for prefix in store.list_dirs(store.key(inbox) + "/"):
        newest = store.newest_modified(prefix)
        if newest is not None and now - newest >= timedelta(seconds=settle_seconds):
            ready.append(prefix)
    return ready


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def claim_batch(process: str, batch: str) -> bool:
    """Record the batch as taken; False if another dispatch took it first."""
    try:
        with session_scope(get_settings().ops_database_url or "") as s:
            s.add(Batch(process=process, batch=batch))
    except IntegrityError:
        return False
    return True


@task(timeout_seconds=60)
def start_batch_run(process: str, batch: str, spec: str, deployment: str) -> str | None:
    """Start the batch's run; if it cannot be started, give the claim back so the next dispatch retries."""
    try:
        # not a subflow: a batch run must be free to suspend for review and be resumed on its own
        # called from sync code, so the FlowRun itself (the stub also offers the async variant's coroutine)
        run = cast(FlowRun, run_deployment(deployment, parameters={"batch": batch, "process": spec}, timeout=0,
                                           as_subflow=False, tags=[process, "inbox"]))
    except Exception as exc:
        release_claim(get_settings(), process, batch)
        get_run_logger().error("could not start a run for %s (%s: %s); the next dispatch retries it",
                               batch, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
        return None
    with session_scope(get_settings().ops_database_url or "") as s:
        claimed = s.query(Batch).filter_by(process=process, batch=batch).one()
        claimed.flow_run_id = str(run.id)
    return str(run.id)


@flow(name="dispatch-inbox", log_prints=False)
def dispatch_inbox(process: str = "data-entry", spec: str = "customer_onboarding",
                   deployment: str = "data-entry/data-entry", settle_seconds: int | None = None) -> list[str]:
    """Start a run for every ready batch not yet claimed."""
    settings = get_settings()
    upgrade(settings.ops_database_url or "")
    if settle_seconds is None:
        settle_seconds = settings.inbox_settle_seconds
    started = []
    for batch in find_ready_batches(f"inbox/{process}", settle_seconds):
        if claim_batch(process, batch):
            run_id = start_batch_run(process, batch, spec, deployment)
            if run_id:
                started.append(run_id)
    get_run_logger().info("started %d run(s)", len(started))
    return started
