"""Prefect state hooks that tell the ops database how a run ended (bpo.runs does the work)."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger

from bpo import runs
from bpo.settings import get_settings
from bpo.spec import load_spec


def _exception(state: Any) -> BaseException | None:
    try:
        result = state.result(raise_on_failure=False)
    except BaseException as exc:  # a result that cannot be read is itself the failure
        return exc
    return result if isinstance(result, BaseException) else None


def _end(flow_run: Any, state: Any, status: str) -> None:
    settings = get_settings()
    exc = _exception(state)
    table = None
    try:  # a data-entry run (it has a batch) names what it loaded into; other processes load nothing
        if "batch" in flow_run.parameters:
            table = load_spec(flow_run.parameters.get("process", "customer_onboarding")).target.table
    except (FileNotFoundError, ValueError):
        pass
    loaded = runs.loaded_by_run(settings, table, str(flow_run.id)) if table else None
    if exc is not None:
        message = runs.explain_failure(exc, settings, loaded=loaded, loads="batch" in flow_run.parameters)
        try:  # the traceback goes to the run's log, the short message to the person
            get_run_logger().error("run %s: %s\n%s", status, message, runs.format_traceback(exc))
        except Exception:  # no run context left (a crash): the ops database still gets the message
            pass
    else:
        message = f"{state.type.value.lower()}: {state.message or 'no message'}"
    runs.mark_ended(settings, str(flow_run.id), status, message)


def retry_unless_a_person_must_act(task: Any, task_run: Any, state: Any) -> bool:
    """A task's retry condition: a service down or a database locked is reported at once, not retried."""
    exc = _exception(state)
    return exc is None or not runs.needs_a_person(exc, get_settings())


def on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    _end(flow_run, state, "failed")


def on_crashed(flow: Any, flow_run: Any, state: Any) -> None:
    _end(flow_run, state, "crashed")


def on_cancellation(flow: Any, flow_run: Any, state: Any) -> None:
    _end(flow_run, state, "cancelled")
