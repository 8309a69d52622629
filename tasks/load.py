"""Load steps of a flow: upsert accepted records into the target table."""

from __future__ import annotations

from prefect import task

from bpo import target
from bpo.quality import BatchChecked
from bpo.routing import Routed
from bpo.run import Part, RunContext
from bpo.spec import ProcessSpec
from bpo.target import Decided, Passed
from tasks.runs import retry_unless_a_person_must_act


@task(retries=2, retry_delay_seconds=5, timeout_seconds=3600, retry_condition_fn=retry_unless_a_person_must_act)
def load_passed(run: RunContext, spec: ProcessSpec, parts: list[Part], review_rows_key: str) -> Passed:
    """Upsert the records that passed straight through; a re-run adds no rows."""
    return target.load_passed(run, spec, parts, review_rows_key)


@task(retries=2, retry_delay_seconds=5, timeout_seconds=3600, retry_condition_fn=retry_unless_a_person_must_act)
def load_decisions(run: RunContext, spec: ProcessSpec) -> Decided:
    """Upsert the records a reviewer approved and archive every decision; a re-run adds no rows."""
    return target.load_decisions(run, spec)


@task(retries=2, retry_delay_seconds=5, timeout_seconds=3600, retry_condition_fn=retry_unless_a_person_must_act)
def route_and_load(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                   low_confidence: dict[str, list[str]]) -> tuple[Routed, Passed]:
    """Send the records that need a person to review and upsert the rest, each chunk's as it is routed; a re-run
    writes no item twice and adds no rows."""
    return target.route_and_load(run, spec, parts, checked, low_confidence)
