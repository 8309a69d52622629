"""How runs end: marking failed, crashed and cancelled runs, sweeping runs whose process died, retrying them.

A run's row in the ops database is the product's word on it. Prefect's state hooks mark a run that
fails, crashes or is cancelled; a process killed outright (SIGKILL, power loss) runs no hook, so
``sweep_dead_runs`` finds runs still marked active whose Prefect run has ended, no longer exists, or
whose process on this host is gone. The items of an ended run wait for the next run of the batch,
which takes them over (`bpo.carry`: by content, with their decisions); resolving them never resumes anything.
"""

from __future__ import annotations

import os
import re
import socket
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from bpo.db.models import AuditEvent, Batch, ReviewItem, Run
from bpo.db.session import engine_for, session_scope
from bpo.settings import Settings

ACTIVE = ("running", "waiting_review")
ENDED = ("failed", "crashed", "cancelled")
# a statement on one of these tables went to the ops database; any other to the target
_OPS_STATEMENT = re.compile(r'\b(from|into|update|table)\s+"?(runs|review_items|audit_events|batches)\b', re.I)


class RunError(ValueError):
    """A run action that cannot be taken; the message says why."""


# ---------------------------------------------------------------------------------------------
# the process that runs a run


def _pid_started(pid: int) -> int | None:
    """When the process started (clock ticks since boot, /proc), so a reused pid is not taken for the run's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def this_process() -> tuple[str, int, int | None]:
    pid = os.getpid()
    return socket.gethostname(), pid, _pid_started(pid)


def process_alive(pid: int, started: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        pass
    return started is None or _pid_started(pid) in (None, started)


def record_process(session: Session, flow_run_id: str) -> None:
    """The run is (again) in this process: after a resume from suspension it runs in a new one."""
    host, pid, started = this_process()
    session.execute(update(Run).where(Run.flow_run_id == flow_run_id).values(host=host, pid=pid, pid_started=started))


# ---------------------------------------------------------------------------------------------
# ending a run


def mark_ended(settings: Settings, flow_run_id: str, status: str, message: str) -> bool:
    """Mark an active run ended with ``status`` and a short message; a run already ended keeps its word."""
    if status not in ENDED:
        raise ValueError(f"{status!r} is not an ended status ({', '.join(ENDED)})")
    with session_scope(settings.ops_database_url or "") as s:
        # a run the flow itself closed as failed (unbalanced) still gets its message
        endable = Run.status.in_(ACTIVE) | ((Run.status == status) & Run.message.is_(None))
        done = s.execute(update(Run).where(Run.flow_run_id == flow_run_id, endable).values(
            status=status, message=message[:2000], finished_at=datetime.now(UTC)))
        if done.rowcount:  # type: ignore[attr-defined]
            s.add(AuditEvent(actor="system", action=f"run_{status}", flow_run_id=flow_run_id,
                             detail={"message": message[:2000]}))
        return bool(done.rowcount)  # type: ignore[attr-defined]


def safe_url(url: str) -> str:
    """A database URL as a person may see it: never the password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: show nothing of it rather than a secret
        return "(unreadable database URL)"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return seen


def _db_problem(exc: DBAPIError) -> str | None:
    """What went wrong with a database, in words that carry no record value (never the statement's parameters)."""
    text = str(exc.orig).lower() if exc.orig is not None else ""
    if "locked" in text or "busy" in text:
        return "is locked by another program (close it, or wait for it to finish, then re-run)"
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "is read-only (give the run write access, then re-run)"
    if exc.connection_invalidated or any(w in text for w in ("connection refused", "could not connect",
                                                               "server closed", "terminating connection",
                                                               "connection failed", "no such host",
                                                               "consuming input failed")):
        return "is not reachable (start it, or check the URL, then re-run)"
    if "disk" in text and "full" in text:
        return "is full (free space, then re-run)"
    return None


def _known_cause(exc: BaseException, settings: Settings) -> str | None:
    """What failed, when it is something a person must put right (a service down, a database locked)."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

    for e in _chain(exc):
        if isinstance(e, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError) or (
                type(e).__name__ == "ConnectionClosedError" and "botocore" in type(e).__module__):
            return f"S3 is not reachable at {settings.s3_endpoint_url or 'AWS S3'}: run `bpo stack status`"
        if isinstance(e, DBAPIError) and (problem := _db_problem(e)):
            ops = bool(_OPS_STATEMENT.search(e.statement or ""))
            url = settings.ops_database_url if ops else settings.target_database_url
            return f"the {'ops' if ops else 'target'} database {safe_url(url or '')} {problem}"
    return None


def needs_a_person(exc: BaseException, settings: Settings) -> bool:
    """True when retrying cannot help (S3 down, a database locked, read-only or down): fail at once, say why."""
    return _known_cause(exc, settings) is not None


def explain_failure(exc: BaseException, settings: Settings, *, loaded: int | None = None, loads: bool = True) -> str:
    """One short sentence: what failed and what to do. Never a record value, never a traceback.

    ``loads``: the run loads records into the target database (data entry), so say how many it loaded.
    """
    done = ("" if not loads else "; records already loaded by this run: unknown (the target database could not be "
            "asked)" if loaded is None else f"; records already loaded by this run: {loaded}")
    if cause := _known_cause(exc, settings):
        return cause + done
    for e in _chain(exc):
        if isinstance(e, DBAPIError):
            ops = bool(_OPS_STATEMENT.search(e.statement or ""))
            url = settings.ops_database_url if ops else settings.target_database_url
            return (f"the {'ops' if ops else 'target'} database {safe_url(url or '')} refused the run "
                    f"({type(e.orig or e).__name__}); see the run's log{done}")
    # anything else: its type and first line, which our own errors keep free of record values
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, SQLAlchemyError):
        first = ""  # SQLAlchemy's text may quote a statement; the log has it
    return f"{type(exc).__name__}{': ' + first if first else ''}; see the run's log{done}"


def loaded_by_run(settings: Settings, table: str, flow_run_id: str) -> int | None:
    """Rows of the target table this run wrote, or None if the target cannot be asked."""
    from sqlalchemy import MetaData, Table

    try:
        engine = engine_for(settings.target_database_url or "")
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, table):
                return 0
            t = Table(table, MetaData(), autoload_with=conn)
            if "flow_run_id" not in t.c:
                return None
            return int(conn.scalar(select(func.count()).select_from(t).where(t.c.flow_run_id == flow_run_id)) or 0)
    except SQLAlchemyError:
        return None


def format_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# ---------------------------------------------------------------------------------------------
# the sweep


@dataclass(frozen=True)
class Swept:
    flow_run_id: str
    status: str
    message: str


def _prefect_states(run_ids: list[str]) -> dict[str, Any] | None:
    """Prefect's state of each run (missing: Prefect has no such run); None when the API cannot be reached."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    try:
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
                any_=[UUID(r) for r in run_ids])), limit=len(run_ids))
    except Exception:  # no API: the sweep falls back on what it can see on this host
        return None
    return {str(fr.id): fr.state for fr in found}


def _verdict(run: Run, state: Any, states_known: bool, host: str) -> tuple[str, str] | None:
    suspended = state is not None and state.is_paused() and state.name == "Suspended"
    # a suspended deployment run has no process on purpose: it waits for its resume. A killed process is
    # the first word: Prefect may since have failed the run's expired pause on its own
    if run.host == host and run.pid and not suspended and not process_alive(run.pid, run.pid_started):
        return "crashed", f"its process (pid {run.pid} on {run.host}) ended without a word (killed?)"
    if states_known and state is None:
        return "failed", "its Prefect flow run no longer exists (server reset or run deleted); re-run the batch"
    if state is not None and state.is_final():
        kind = state.type.value.lower()
        status = {"crashed": "crashed", "cancelled": "cancelled"}.get(kind, "failed")
        return status, f"Prefect says the run ended {state.type.value} without telling the ops database"
    return None


def sweep_dead_runs(settings: Settings, *, process: str | None = None, batch: str | None = None,
                    flow_run_ids: Iterable[str] | None = None) -> list[Swept]:
    """Mark every run still recorded as active whose process or Prefect run has ended; return what was marked."""
    with session_scope(settings.ops_database_url or "") as s:
        q = select(Run).where(Run.status.in_(ACTIVE))
        if process:
            q = q.where(Run.process == process)
        if batch:
            q = q.where(Run.batch == batch)
        if flow_run_ids is not None:
            q = q.where(Run.flow_run_id.in_(list(flow_run_ids)))
        active = list(s.scalars(q))
    if not active:
        return []
    states = _prefect_states([r.flow_run_id for r in active])
    host = socket.gethostname()
    swept = []
    for run in active:
        verdict = _verdict(run, (states or {}).get(run.flow_run_id), states is not None, host)
        if verdict and mark_ended(settings, run.flow_run_id, *verdict):
            swept.append(Swept(run.flow_run_id, *verdict))
    return swept


def ended(settings: Settings, flow_run_id: str) -> Run | None:
    """The run, if it has ended without completing (swept first); None while it may still go on."""
    sweep_dead_runs(settings, flow_run_ids=[flow_run_id])
    with session_scope(settings.ops_database_url or "") as s:
        run = s.get(Run, flow_run_id)
        return run if run is not None and run.status in ENDED else None


def rerun_hint(settings: Settings, flow_run_id: str) -> str | None:
    """What to tell an agent who resolved the last item of a run that has ended; None if the run is alive."""
    run = ended(settings, flow_run_id)
    if run is None:
        return None
    return (f"run {flow_run_id} has {run.status} ({run.message or 'no message'}); nothing waits for these "
            f"decisions: re-run it with `bpo runs retry {flow_run_id}`")


# ---------------------------------------------------------------------------------------------
# the next run of a batch takes over


def decided_counts(settings: Settings, flow_run_id: str, step: str) -> dict[str, int]:
    """How many items of the run's step were approved and rejected (what a resume reports)."""
    with session_scope(settings.ops_database_url or "") as s:
        counts = dict(s.execute(select(ReviewItem.status, func.count()).where(
            ReviewItem.flow_run_id == flow_run_id, ReviewItem.step == step).group_by(ReviewItem.status)).tuples())
    return {"approved": int(counts.get("approved", 0)), "rejected": int(counts.get("rejected", 0))}


def release_claim(settings: Settings, process: str, batch: str) -> None:
    """Forget an inbox claim whose run never started, so the next dispatch takes the batch again."""
    with session_scope(settings.ops_database_url or "") as s:
        for claim in s.scalars(select(Batch).where(Batch.process == process, Batch.batch == batch,
                                                   Batch.flow_run_id.is_(None))):
            s.delete(claim)


# ---------------------------------------------------------------------------------------------
# listing and retrying


@dataclass(frozen=True)
class RunRow:
    flow_run_id: str
    process: str
    batch: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    records_in: int | None
    loaded: int | None
    rejected: int | None
    open_items: int
    message: str | None


def list_runs(settings: Settings, *, status: str | None = None, process: str | None = None,
              limit: int = 100) -> list[RunRow]:
    """Runs newest first, with their counts and open review items (dead runs swept first)."""
    sweep_dead_runs(settings, process=process)
    with session_scope(settings.ops_database_url or "") as s:
        q = select(Run).order_by(Run.started_at.desc()).limit(limit)
        if status:
            q = q.where(Run.status == status)
        if process:
            q = q.where(Run.process.in_([process, process.replace("_", "-")]))
        runs = list(s.scalars(q))
        open_by_run = dict(s.execute(select(ReviewItem.flow_run_id, func.count()).where(
            ReviewItem.status == "open", ReviewItem.flow_run_id.in_([r.flow_run_id for r in runs]))
            .group_by(ReviewItem.flow_run_id)).tuples().all())
    return [RunRow(r.flow_run_id, r.process, r.batch, r.status, r.started_at, r.finished_at,
                   r.counts.get("records_in"), r.counts.get("loaded"), r.counts.get("rejected"),
                   int(open_by_run.get(r.flow_run_id, 0)), r.message) for r in runs]


def run_statuses(settings: Settings, flow_run_ids: Iterable[str]) -> dict[str, str]:
    ids = sorted(set(flow_run_ids))
    if not ids:
        return {}
    with session_scope(settings.ops_database_url or "") as s:
        return dict(s.execute(select(Run.flow_run_id, Run.status).where(Run.flow_run_id.in_(ids))).tuples().all())


def retry_target(settings: Settings, flow_run_id: str) -> Run:
    """The run to retry, if it may be: it has ended without completing. Otherwise a RunError saying why."""
    sweep_dead_runs(settings, flow_run_ids=[flow_run_id])
    with session_scope(settings.ops_database_url or "") as s:
        run = s.get(Run, flow_run_id)
    if run is None:
        raise RunError(f"no run {flow_run_id} in the ops database (`bpo runs list` shows them)")
    if run.status in ACTIVE:
        raise RunError(f"run {flow_run_id} is still {run.status}; resolve its items (`bpo review list --run "
                       f"{flow_run_id}`) or wait for it — only an ended run is retried")
    if run.status == "completed":
        raise RunError(f"run {flow_run_id} completed; there is nothing to retry "
                       f"(`bpo run data-entry {run.batch}` runs the batch again)")
    return run
