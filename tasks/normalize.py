"""Normalize steps of a flow: one chunk normalized and checked against the row-local expectations."""

from __future__ import annotations

from prefect import task

from bpo.pool import in_worker, in_worker_or_here, validates_beside
from bpo.prepare import check_stored_part, normalize_chunk, prepare_part
from bpo.quality import Checked
from bpo.run import Part, RunContext
from bpo.spec import ProcessSpec


# no timeout_seconds: it runs on the task runner's threads, where Prefect cannot enforce one
@task(retries=1, retry_delay_seconds=2)
def prepare_chunk(run: RunContext, spec: ProcessSpec, file: str, raw_key: str, rows: int,
                  row_offset: int) -> tuple[Part, Checked]:
    """Normalize and validate one chunk (see ``bpo.prepare.prepare_part``) on a free stream.

    A worker process does both at once. The flow's own process, which never imports Great Expectations
    while there are workers, only normalizes; a worker then checks the chunk as stored. With a validation
    worker (a batch one stream does alone, ``bpo.pool.start_validator``), the chunk is normalized here
    while that worker may still be importing Great Expectations, and checked there.
    """
    if validates_beside():
        part = in_worker(normalize_chunk, run, spec, file, raw_key, rows, row_offset)
        return part, in_worker(check_stored_part, run, spec, part, validates=True)
    done = in_worker_or_here(prepare_part, normalize_chunk, run, spec, file, raw_key, rows, row_offset)
    if isinstance(done, Part):  # normalized in the flow's process: checked in a worker
        return done, in_worker(check_stored_part, run, spec, done, validates=True)
    return done
