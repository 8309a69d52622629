"""Load steps of a flow: upsert accepted records into the target table."""

from __future__ import annotations

from prefect import task

from bpo import target
from bpo.run import Part, RunContext
from bpo.spec import ProcessSpec
from bpo.target import Loaded
from tasks.runs import retry_unless_a_person_must_act


@task(retries=2, retry_delay_seconds=5, timeout_seconds=3600, retry_condition_fn=retry_unless_a_person_must_act)
def load_records(run: RunContext, spec: ProcessSpec, parts: list[Part], review_rows_key: str,
                 duplicates_key: str | None = None) -> Loaded:
    """Upsert the records that passed and the ones a reviewer approved; a re-run adds no rows."""
    return target.load_batch(run, spec, parts, review_rows_key, duplicates_key)
