"""A small batch's validation worker (bpo.pool.start_validator): the batch's GX steps run in it with the
same results as in the pool's worker processes and the flow's own process; a step's error is raised; a
worker that dies is replaced by the flow's own process, which does the step itself."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bpo import pool
from bpo.intake import list_inputs, take_in
from bpo.prepare import check_stored_part, normalize_chunk, prepare_part
from bpo.quality import validate_and_publish
from bpo.run import RunContext, get_store
from bpo.samples import write_batch
from bpo.spec import load_spec

pytestmark = pytest.mark.slow

RENDERED = re.compile(r"\?d=\d{8}T\d{6}\.\d+Z|-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def where(fn: Callable[..., Any], *args: Any) -> tuple[int, Any]:
    """``fn(*args)``, and the process it ran in."""
    return os.getpid(), fn(*args)


def fail_with(text: str) -> None:
    raise ValueError(text)


def die_unless_in(pid: int) -> int:
    if os.getpid() != pid:
        os._exit(9)
    return pid


def test_a_small_batch_validated_in_the_worker_gives_the_same_results_and_a_dead_worker_falls_back(
        s3: dict[str, str], two_streams: None, tmp_path: Path) -> None:
    spec = load_spec("customer_onboarding")
    batch = tmp_path / "batch"
    write_batch(batch, n=60, review_fraction=0.2, with_unreadable=False)  # failures in every file
    run_id = uuid.uuid4().hex
    run = RunContext(flow_run_id=run_id, process=spec.name, spec=spec.slug, batch=str(batch),
                     prefix=get_store().key("runs", run_id))
    taken = [take_in(run, spec, source) for source in list_inputs(run)]
    chunks = [(f.name, raw_key, rows) for f in taken for raw_key, rows in f.parts]
    assert len(chunks) == 3

    def validate() -> tuple[set[int], Any]:
        """The flow's two validating steps, through ``in_worker`` as its tasks call them: where they ran, results."""
        pids, prepared, offset = set(), [], 0
        for name, raw_key, rows in chunks:
            pid, result = pool.in_worker(where, prepare_part, run, spec, name, raw_key, rows, offset, validates=True)
            pids.add(pid)
            prepared.append(result)
            offset += rows
        pid, checked = pool.in_worker(where, validate_and_publish, run, spec, [p for p, _ in prepared],
                                      [c for _, c in prepared], validates=True)
        # a Data Docs page is stamped with its rendering time and random element ids: compared without them
        docs = next(o for o in checked.objects if o.key.endswith("/data-docs.html"))
        page = RENDERED.sub("", get_store().get_bytes(docs.key).decode())
        objects = [o if o is not docs else (o.key, o.size) for o in checked.objects]
        return pids | {pid}, (prepared, checked.model_copy(update={"objects": objects}), page)

    pool_pids, here = validate()  # no validation worker: in a worker process of the pool, never in this one
    assert len(pool_pids) == 1 and os.getpid() not in pool_pids
    assert here[1].objects and not here[1].success  # the failures were found

    assert pool.start_validator(str(batch))
    pool.warm_up_in_background(str(batch))  # as the flow does: one stream, and no GX import here
    worker_pids, in_validator = validate()
    assert len(worker_pids) == 1 and os.getpid() not in worker_pids
    assert in_validator == here  # every part, check, stored object (its size and sha256) and the page the same
    # as the flow's prepare_chunk does it with a validation worker: normalized here, checked there from S3
    split, offset = [], 0
    for name, raw_key, rows in chunks:
        pid, part = pool.in_worker(where, normalize_chunk, run, spec, name, raw_key, rows, offset)
        assert pid == os.getpid()
        pid, checked = pool.in_worker(where, check_stored_part, run, spec, part, validates=True)
        assert pid in worker_pids
        split.append((part, checked))
        offset += rows
    assert split == here[0]
    assert pool.in_worker(where, len, "abc") == (os.getpid(), 3), "a step that does not validate runs here"
    with pytest.raises(ValueError, match="bad value"):  # the step's own error is raised, not retried here
        pool.in_worker(fail_with, "bad value", validates=True)
    assert pool._validator is not None

    started = time.monotonic()
    assert pool.in_worker(die_unless_in, os.getpid(), validates=True) == os.getpid()  # it died running it
    assert time.monotonic() - started < 30
    assert pool._validator is None
    after_pids, after = validate()  # the rest of the run goes on here
    assert after_pids == {os.getpid()} and after == here

