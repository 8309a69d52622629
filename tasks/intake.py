"""Intake steps of a flow: take each input file in, in a worker process."""

from __future__ import annotations

from prefect import get_run_logger, task

from bpo.intake import FileTaken, Source, take_in
from bpo.pool import in_worker
from bpo.run import RunContext
from bpo.spec import ProcessSpec


# no timeout_seconds: it runs on the task runner's threads, where Prefect cannot enforce one;
# its S3 calls carry botocore's connect/read timeouts
@task(retries=2, retry_delay_seconds=2)
def take_in_file(run: RunContext, spec: ProcessSpec, source: Source) -> FileTaken:
    """Stage one input file and read it into raw-record parts; an unreadable file or row goes to quarantine."""
    taken = in_worker(take_in, run, spec, source)
    if taken.quarantined:
        get_run_logger().warning("quarantined %s: %s", taken.name, taken.quarantined)
    if taken.bad_rows:
        get_run_logger().warning("%s: %d row(s) quarantined", taken.name, taken.bad_rows)
    return taken
