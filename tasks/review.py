"""Review steps of a flow: route records that need a person, wait until they are resolved."""

from __future__ import annotations

import itertools
from typing import Literal
from uuid import UUID

from prefect import get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment
from prefect.states import Running

from bpo import review, routing, runs
from bpo.db.session import session_scope
from bpo.quality import BatchChecked
from bpo.review import open_count, set_run_status
from bpo.routing import RECORDS_STEP, GateVerdict, Routed
from bpo.run import Part, RunContext
from bpo.settings import get_settings
from bpo.spec import ProcessSpec


class ReviewDone(RunInput):
    """What the review service sends when it resumes a run."""

    approved: int
    rejected: int


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def ask_for_gate(run: RunContext, spec: ProcessSpec, routed: Routed) -> None:
    """Ask a person to approve the whole batch before anything is loaded."""
    routing.ask_gate(run, spec, routed)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def read_gate(run: RunContext) -> GateVerdict:
    """How the batch's gate was decided."""
    return routing.gate_verdict(run)


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def route_records(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                  low_confidence: dict[str, list[str]]) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through."""
    return routing.route_batch(run, spec, parts, checked, low_confidence)


class GateAnswer(ReviewDone):
    """What resumes a run at a gate: the review service's counts, or a person's answer in the Prefect UI's
    resume form (``decision``), which the run then records in the review service as that person's."""

    approved: int = 0
    rejected: int = 0
    decision: Literal["approve", "reject"] | None = None
    reason: str = ""


UI_ACTOR = "prefect-ui"  # who answered a gate in the Prefect UI: Prefect's open-source server names no user


def await_review(run: RunContext, step: str = RECORDS_STEP, *, gate_description: str | None = None) -> None:
    """Pause (local run) or suspend (deployment run) until every item of ``step`` is resolved.

    With ``gate_description`` the step is a gate that may also be answered in the Prefect UI: its resume form
    shows the description and asks approve or reject (and a reason).
    """
    settings = get_settings()
    logger = get_run_logger()
    with session_scope(settings.ops_database_url or "") as s:
        waiting = open_count(s, run.flow_run_id, step)
        if waiting:
            set_run_status(s, run.flow_run_id, "waiting_review")
    if not waiting:
        return
    logger.info("waiting for review: %d items open (bpo review list)", waiting)
    answer: type[ReviewDone] = ReviewDone
    if gate_description is not None:
        answer = GateAnswer.with_initial_data(description=gate_description)
    if deployment.id:
        # no timeout: the process exits while suspended, and the review service's timeouts decide
        done = suspend_flow_run(wait_for_input=answer, timeout=None, key=f"review-{step}")
    else:
        done = _pause_until_resolved(run, step, settings.review_pause_seconds, settings.review_poll_seconds, answer)
    logger.info("review resolved: %s", done)
    if isinstance(done, GateAnswer) and done.decision is not None:
        _answer_gate_from_ui(run, step, done)
    with session_scope(settings.ops_database_url or "") as s:
        left = open_count(s, run.flow_run_id, step)
        set_run_status(s, run.flow_run_id, "running")
    if left:
        raise RuntimeError(f"resumed with {left} review items still open; resolve them and resume again")


def _answer_gate_from_ui(run: RunContext, step: str, done: GateAnswer) -> None:
    """Record the Prefect UI's answer to a gate still open in the review service (audited as ``UI_ACTOR``)."""
    settings = get_settings()
    open_items = [i for i in review.list_items(settings, flow_run_id=run.flow_run_id) if i.step == step]
    for item in open_items:
        reason = done.reason.strip() or ("rejected in the Prefect UI" if done.decision == "reject" else None)
        review.resolve(settings, item.id, actor=UI_ACTOR, approve=done.decision == "approve", reason=reason,
                       resume=False)


def _pause_until_resolved(run: RunContext, step: str, pause_seconds: int, poll_seconds: int,
                          answer: type[ReviewDone]) -> ReviewDone:
    """Pause again each time a pause times out while items are open: a waiting run never fails on a timer."""
    settings = get_settings()
    for attempt in itertools.count():
        key = f"review-{step}" if attempt == 0 else f"review-{step}-{attempt}"  # a pause key fires once
        try:
            return pause_flow_run(wait_for_input=answer, timeout=pause_seconds, poll_interval=poll_seconds,
                                  key=key)
        except FlowPauseTimeout:
            # back to Running (the server may already have failed the expired pause), then wait again
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(UUID(run.flow_run_id), Running(), force=True)
            with session_scope(settings.ops_database_url or "") as s:
                left = open_count(s, run.flow_run_id, step)
            if not left:  # resolved just as the pause ran out: the counts are the service's to give
                return ReviewDone(**runs.decided_counts(settings, run.flow_run_id, step))
            get_run_logger().info("still waiting for review: %d items open; pausing again", left)
    raise AssertionError("unreachable")

