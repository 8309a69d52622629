"""One batch, one run at a time: a run holds its batch from the moment it opens until it ends.

A second run of a batch that is held by a live run is refused with a message naming that run. A
holder that has ended — completed, failed, crashed or cancelled, or whose Prefect run is gone — no
longer holds anything: the next run of the batch takes the batch over (and, through
``bpo.carry``, its open review items and decisions).
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bpo.db.models import ActiveBatch, Run
from bpo.db.session import session_scope

ENDED = frozenset({"completed", "failed", "crashed", "cancelled"})


class BatchBusy(RuntimeError):
    """The batch is being processed by another run; the message names it."""


def prefect_run_is_live(flow_run_id: str) -> bool:
    """True while Prefect knows the run and it has not reached a final state."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except (ObjectNotFound, ValueError):
        return False
    return state is not None and not state.is_final()


def hold_batch(url: str, *, flow_run_id: str, process: str, batch: str,
               is_live: Callable[[str], bool] = prefect_run_is_live) -> str | None:
    """Take the batch for ``flow_run_id``; returns the ended run it was taken over from, if any.

    Raises ``BatchBusy`` when a live run holds it. Two runs starting at once: one insert wins, the
    other sees the winner live and is refused.
    """
    try:
        with session_scope(url) as s:
            s.add(ActiveBatch(process=process, batch=batch, flow_run_id=flow_run_id))
        return None
    except IntegrityError:
        pass
    with session_scope(url) as s:
        holder = s.scalar(select(ActiveBatch.flow_run_id).where(ActiveBatch.process == process,
                                                                ActiveBatch.batch == batch))
        status = s.scalar(select(Run.status).where(Run.flow_run_id == holder)) if holder else None
    if holder is None:  # released between the insert and the look
        return hold_batch(url, flow_run_id=flow_run_id, process=process, batch=batch, is_live=is_live)
    if holder == flow_run_id:  # this run again: resumed from suspension, or a retried task
        return None
    if status not in ENDED and is_live(holder):
        raise BatchBusy(f"batch {batch!r} is being processed by run {holder} ({status or 'starting'}); "
                        f"wait for it to end, or see `bpo runs list`")
    with session_scope(url) as s:
        taken = s.execute(update(ActiveBatch).where(
            ActiveBatch.process == process, ActiveBatch.batch == batch, ActiveBatch.flow_run_id == holder)
            .values(flow_run_id=flow_run_id)).rowcount  # type: ignore[attr-defined]
    if not taken:
        raise BatchBusy(f"batch {batch!r} was just taken by another run; see `bpo runs list`")
    return holder


def release_batch(url: str, *, flow_run_id: str, process: str, batch: str) -> None:
    """Let the batch go, if this run still holds it."""
    with session_scope(url) as s:
        s.execute(delete(ActiveBatch).where(ActiveBatch.process == process, ActiveBatch.batch == batch,
                                            ActiveBatch.flow_run_id == flow_run_id))
