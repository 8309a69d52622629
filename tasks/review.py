"""Review steps of a flow: route records that need a person, wait until they are resolved."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment

from bpo import routing
from bpo.db.session import session_scope
from bpo.quality import BatchChecked
from bpo.review import open_count, set_run_status
from bpo.routing import RECORDS_STEP, Routed
from bpo.run import Part, RunContext
from bpo.settings import get_settings
from bpo.spec import ProcessSpec


class ReviewDone(RunInput):
    """What the review service sends when it resumes a run."""

    approved: int
    rejected: int


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def route_records(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                  low_confidence: dict[str, list[str]]) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through."""
    return routing.route_batch(run, spec, parts, checked, low_confidence)


def await_review(run: RunContext, spec: ProcessSpec, step: str = RECORDS_STEP) -> None:
    """Pause (local run) or suspend (deployment run) until every item of ``step`` is resolved."""
    settings = get_settings()
    logger = get_run_logger()
    with session_scope(settings.ops_database_url or "") as s:
        waiting = open_count(s, run.flow_run_id, step)
        if waiting:
            set_run_status(s, run.flow_run_id, "waiting_review")
    if not waiting:
        return
    logger.info("waiting for review: %d items open (bpo review list)", waiting)
    # the due-time action (escalate or reject) is applied by `bpo review expire`; the pause
    # outlives it generously so an escalated item can still be decided
    timeout = int(max(spec.review.due_hours, 1) * 3600 * 4)
    if deployment.id:
        done = suspend_flow_run(wait_for_input=ReviewDone, timeout=timeout, key=f"review-{step}")
    else:
        done = pause_flow_run(wait_for_input=ReviewDone, timeout=timeout,
                              poll_interval=settings.review_poll_seconds, key=f"review-{step}")
    logger.info("review resolved: %s", done)
    with session_scope(settings.ops_database_url or "") as s:
        left = open_count(s, run.flow_run_id, step)
        set_run_status(s, run.flow_run_id, "running")
    if left:
        raise RuntimeError(f"resumed with {left} review items still open; resolve them and resume again")
