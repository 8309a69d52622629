"""Data entry: key a batch of documents into the target database.

Inputs: a batch — a local folder, or an S3 prefix such as ``inbox/data-entry/<batch>/`` — of
CSV, XLSX, JSON and JSON Lines files, and the name of a process spec (``flows/specs/``).
Outputs: the accepted records upserted into the spec's target table; unreadable files and
rows in ``quarantine/``; raw inputs, normalized Parquet, validation results and Data Docs,
review decisions and ``manifest.json`` (with the reconciliation) under the run's S3 prefix.
Schedule: the ``data-entry`` deployment's ``dispatch_inbox`` flow starts one run per new batch.
"""

from __future__ import annotations

import os
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from bpo.intake import FileTaken
from bpo.pool import warm_up_in_background
from bpo.quality import BatchChecked
from bpo.reconcile import reconcile, rejected_at_gate
from bpo.routing import GATE_STEP, Routed
from bpo.run import Part, RunContext, batch_name
from bpo.spec import load_spec
from bpo.target import Decided, Passed
from tasks import runs as run_hooks
from tasks.artifacts import clear_inbox, list_inputs, open_run, publish_run
from tasks.intake import take_in_file
from tasks.load import load_decisions, load_passed, route_and_load
from tasks.normalize import prepare_chunk
from tasks.quality import validate_batch
from tasks.review import ask_for_gate, await_review, read_gate, route_records


def _run_name() -> str:
    params = flow_run.get_parameters()
    return f"{params.get('process', 'customer_onboarding')}-{batch_name(params['batch'])}"


# the task runner's threads hand the CPU-bound steps to bpo.pool's streams (this process and its workers)
THREADS = max(4, os.cpu_count() or 1)


# the ignore: Prefect types task_runner as TaskRunner[PrefectFuture[Any]] (invariant); no ThreadPoolTaskRunner fits
@flow(name="data-entry", flow_run_name=_run_name, task_runner=ThreadPoolTaskRunner(max_workers=THREADS),  # type: ignore[arg-type]
      # a run that fails, crashes or is cancelled says so in the ops database
      on_failure=[run_hooks.on_failure], on_crashed=[run_hooks.on_crashed],
      on_cancellation=[run_hooks.on_cancellation])
def data_entry(batch: str, process: str = "customer_onboarding") -> dict[str, Any]:
    """Intake → normalize → validate → route → load what passed → review → load decisions → publish."""
    warm_up_in_background(batch)  # the worker processes start while the run is opened (one validator for a small batch)
    spec = load_spec(process)
    run = open_run(str(flow_run.get_id()), spec.name, spec.slug, batch)
    # files, then chunks, run side by side on the streams; a file's chunks start as soon as it and the
    # files before it are taken in (its records are numbered after theirs)
    intake = [take_in_file.submit(run, spec, source) for source in list_inputs(run)]
    taken: list[FileTaken] = []
    chunks = []
    offset = 0
    for future in intake:
        file = future.result()
        taken.append(file)
        for raw_key, rows in file.parts:
            chunks.append(prepare_chunk.submit(run, spec, file.name, raw_key, rows, offset))
            offset += rows
    prepared = [c.result() for c in chunks]
    parts: list[Part] = [part for part, _ in prepared]
    # what only the whole batch can show: uniqueness, aggregates, duplicate keys
    checked = validate_batch(run, spec, parts, [check for _, check in prepared])
    low_confidence = {f.name: f.low_confidence for f in taken if f.low_confidence}
    if spec.review.hold_batch or spec.review.gate:  # all or nothing: nothing loads before every item is decided
        routed = route_records(run, spec, parts, checked, low_confidence)
        await_review(run)
        if spec.review.gate:  # then a person approves the whole batch
            ask_for_gate(run, spec, routed)
            await_review(run, GATE_STEP)
            if not read_gate(run).approved:
                decided = rejected_at_gate(taken, routed)
                return finish(run, taken, parts, checked, routed, Passed(loaded={}), decided)
        passed = load_passed(run, spec, parts, routed.review_rows)
    else:  # what passed goes straight through, each chunk's as it is routed; only the records under review wait
        routed, passed = route_and_load(run, spec, parts, checked, low_confidence)
        await_review(run)
    return finish(run, taken, parts, checked, routed, passed, load_decisions(run, spec))


def finish(run: RunContext, taken: list[FileTaken], parts: list[Part], checked: BatchChecked, routed: Routed,
           passed: Passed, decided: Decided) -> dict[str, Any]:
    """Reconcile, write the manifest and the run's artifacts, clear the inbox."""
    objects = [*(f.staged for f in taken), *(o for f in taken for o in f.objects),
               *(o for p in parts for o in p.objects), *checked.objects, *decided.objects]
    summary = publish_run(run, objects, reconcile(taken, routed, passed, decided))
    clear_inbox(run)
    return summary
