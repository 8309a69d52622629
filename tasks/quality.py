"""Quality steps of a flow: the batch-wide expectations, and one result and Data Docs page for the batch."""

from __future__ import annotations

from prefect import task

from bpo.pool import in_worker
from bpo.quality import BatchChecked, Checked, check_batch, publish_validation
from bpo.run import Part, RunContext
from bpo.spec import ProcessSpec


@task(retries=1, retry_delay_seconds=2, timeout_seconds=3600)
def validate_batch(run: RunContext, spec: ProcessSpec, parts: list[Part], chunks: list[Checked]) -> BatchChecked:
    """Check what needs the whole batch at once (in a worker process), then publish the batch's result."""
    batch, duplicates = in_worker(check_batch, run, spec, parts)
    return publish_validation(run, spec, chunks, batch, duplicates)
