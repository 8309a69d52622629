"""Quality steps of a flow: the batch-wide expectations, and one result and Data Docs page for the batch."""

from __future__ import annotations

from prefect import task

from bpo.pool import in_worker
from bpo.quality import BatchChecked, Checked, validate_and_publish
from bpo.run import Part, RunContext
from bpo.spec import ProcessSpec


@task(retries=1, retry_delay_seconds=2, timeout_seconds=3600)
def validate_batch(run: RunContext, spec: ProcessSpec, parts: list[Part], chunks: list[Checked]) -> BatchChecked:
    """Check what needs the whole batch at once, then publish the batch's result (in a worker process)."""
    return in_worker(validate_and_publish, run, spec, parts, chunks, validates=True)
