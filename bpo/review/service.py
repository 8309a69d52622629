"""The review service: one mechanism for every kind of review item.

Flows write items and pause; agents list, claim and resolve them (CLI or console); when the last
open item of a run's review step is resolved, the run is resumed. What an item is — a record to
correct, a gate, a pair — is its kind's business (``bpo.review.kinds``): the service asks the
item's handler to check a decision and stores what it accepts. A decision is taken once: every
change of an item's status or assignee is a conditional UPDATE of an open item, so of two agents
acting at the same moment one wins and the other is told who did.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, ValidationError
from sqlalchemy import CursorResult, Table, Update, func, insert, or_, select, update
from sqlalchemy.orm import Session

from bpo import notify, runs
from bpo.carry import SYSTEM
from bpo.db.models import AuditEvent, Membership, ReviewItem, Run, User
from bpo.db.session import session_scope
from bpo.process_review import review_of
from bpo.review.kinds import CorrectionRefused, InvalidDecision, Kind, Outcome, ReviewError, kind_of
from bpo.settings import Settings
from bpo.spec import ReviewSpec


@dataclass(frozen=True)
class Resolution:
    item_id: int
    status: str  # approved | rejected | awaiting_second (four-eyes: a first approval) | escalated (still open)
    open_left: int  # open items left in the same run and step
    resumed: bool
    rerun: str | None = None  # the run has ended: nothing was resumed, this says how to re-run it


@dataclass
class BulkResolution:
    """What a bulk resolve did with each item it was given."""

    decided: dict[int, str] = field(default_factory=dict)  # item -> approved | rejected | awaiting_second
    left_open: dict[int, list[dict[str, str]]] = field(default_factory=dict)  # the decision still fails: why
    refused: dict[int, str] = field(default_factory=dict)  # not decided here: why (decided, claimed, unknown)
    resumed: list[str] = field(default_factory=list)  # runs resumed after their last item


IN_CHUNK = 500  # ids bound in one IN (...)


def add_items(session: Session, items: Sequence[ReviewItem | dict[str, Any]], *,
              assign_among: Sequence[str] = ()) -> int:
    """Insert items not already there (same run, step and record key), in bulk; return how many were new.

    An item is a ``ReviewItem`` or a plain row of its columns (cheaper by the ten thousand);
    columns left out take their defaults. With ``assign_among`` (groups), each new open item is
    assigned to the member of those groups who holds the fewest open items (``assign_least_loaded``).
    """
    if not items:
        return 0
    columns = [c.key for c in ReviewItem.__table__.columns]
    rows = [i if isinstance(i, dict) else {k: v for k in columns if (v := getattr(i, k)) is not None} for i in items]
    run_id, step = rows[0]["flow_run_id"], rows[0]["step"]
    existing = set(session.scalars(select(ReviewItem.record_key).where(
        ReviewItem.flow_run_id == run_id, ReviewItem.step == step)))
    new = [r for r in rows if r["record_key"] not in existing]
    if not new:
        return 0
    by_shape: dict[frozenset[str], list[dict[str, Any]]] = {}
    for r in new:  # one executemany per shape of row
        by_shape.setdefault(frozenset(r), []).append(r)
    for rows_of_shape in by_shape.values():
        session.execute(insert(cast(Table, ReviewItem.__table__)), rows_of_shape)
    ids = dict(session.execute(select(ReviewItem.record_key, ReviewItem.id).where(
        ReviewItem.flow_run_id == run_id, ReviewItem.step == step)).tuples().all())
    session.execute(insert(cast(Table, AuditEvent.__table__)), [
        {"actor": "system", "action": "created", "item_id": ids[r["record_key"]], "flow_run_id": run_id,
         "detail": {"checks": [c["check"] for c in r["failed_checks"]]}} for r in new])
    if assign_among:
        assign_least_loaded(session, [ids[r["record_key"]] for r in new if r.get("status", "open") == "open"],
                            assign_among)
    return len(new)


def assign_least_loaded(session: Session, item_ids: Sequence[int], groups: Sequence[str]) -> dict[int, str]:
    """Assign each item to the active member of ``groups`` holding the fewest open items; return who got what.

    The load counted is every open item a member holds, of any process; ties go by name, so the
    order is reproducible. With no member in the groups the items stay in the shared queue.
    """
    heap = _loads(session, groups)
    if not heap or not item_ids:
        return {}
    given: dict[int, str] = {}
    for item_id in item_ids:
        load, member = heapq.heappop(heap)
        given[item_id] = member
        heapq.heappush(heap, (load + 1, member))
    by_member: dict[str, list[int]] = {}
    for item_id, member in given.items():
        by_member.setdefault(member, []).append(item_id)
    for member, ids in by_member.items():
        for start in range(0, len(ids), IN_CHUNK):
            session.execute(update(ReviewItem).where(ReviewItem.id.in_(ids[start:start + IN_CHUNK]),
                                                     ReviewItem.status == "open", ReviewItem.assignee.is_(None))
                            .values(assignee=member).execution_options(synchronize_session=False))
    listed = list(given)
    run_of = {i: r for start in range(0, len(listed), IN_CHUNK) for i, r in session.execute(
        select(ReviewItem.id, ReviewItem.flow_run_id).where(ReviewItem.id.in_(listed[start:start + IN_CHUNK])))}
    session.execute(insert(cast(Table, AuditEvent.__table__)), [
        {"actor": "system", "action": "assigned", "item_id": i, "flow_run_id": run_of.get(i),
         "detail": {"from": None, "to": m, "rule": "least_loaded", "groups": sorted(groups)}}
        for i, m in given.items()])
    notify.assigned(session, list(given))
    return given


def open_count(session: Session, flow_run_id: str, step: str | None) -> int:
    """Open items of the run's review step (``None``: of every step)."""
    where = [ReviewItem.flow_run_id == flow_run_id, ReviewItem.status == "open"]
    if step is not None:
        where.append(ReviewItem.step == step)
    return int(session.scalar(select(func.count()).select_from(ReviewItem).where(*where)) or 0)


def list_items(settings: Settings, *, status: str | None = "open", process: str | None = None,
               flow_run_id: str | None = None, queue: str | None = None,
               limit: int | None = 200) -> list[ReviewItem]:
    """Items in queue order: soonest due first; ``limit=None`` for all of them."""
    with session_scope(_ops(settings)) as s:
        q = select(ReviewItem).order_by(ReviewItem.due_at, ReviewItem.id).limit(limit)
        if status:
            q = q.where(ReviewItem.status == status)
        if process:
            q = q.where(ReviewItem.process == process)
        if flow_run_id:
            q = q.where(ReviewItem.flow_run_id == flow_run_id)
        if queue:
            q = q.where(ReviewItem.queue == queue)
        return list(s.scalars(q))


def get_item(settings: Settings, item_id: int) -> ReviewItem:
    with session_scope(_ops(settings)) as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        return item


def claim(settings: Settings, item_id: int, actor: str) -> ReviewItem:
    """Assign an open item to ``actor``; an item claimed by someone else is refused, and so is an item
    waiting for its second approval to the person who gave the first (four-eyes)."""
    _need_actor(actor)
    with session_scope(_ops(settings)) as s:
        if not _changed(s, _takeable(item_id, actor).where(_not_first_approved_by(actor)).values(assignee=actor)):
            _refuse(s, item_id, actor)
        item = s.get(ReviewItem, item_id, populate_existing=True)
        assert item is not None
        s.add(AuditEvent(actor=actor, action="claimed", item_id=item.id, flow_run_id=item.flow_run_id, detail={}))
        return item


def claim_next(settings: Settings, actor: str, *, processes: frozenset[str] | None = None,
               tries: int = 20) -> ReviewItem | None:
    """Claim the next item for ``actor``: one they hold already, else the most urgent unassigned one (highest
    priority, then soonest due).

    Another agent may take the chosen item first; the next one is tried (``tries`` times). None when
    nothing is waiting for ``actor`` (``processes``: the ones they may work on, None for every one).
    """
    _need_actor(actor)
    for assignee in (actor, ""):
        f = QueueFilter(status="open", assignee=assignee, processes=processes, second_approver=actor)
        for _ in range(tries):
            page, _total = queue_page(settings, f, sort="priority", limit=1)
            if not page:
                break
            try:
                return claim(settings, page[0][0].id, actor)
            except ReviewError:
                continue
    return None


def unclaim(settings: Settings, item_id: int, actor: str) -> ReviewItem:
    """Give back an open item ``actor`` holds; it is then free for anyone to claim."""
    _need_actor(actor)
    with session_scope(_ops(settings)) as s:
        released = _changed(s, update(ReviewItem).where(
            ReviewItem.id == item_id, ReviewItem.status == "open", ReviewItem.assignee == actor)
            .values(assignee=None).execution_options(synchronize_session=False))
        if not released:
            row = s.execute(select(ReviewItem.status, ReviewItem.assignee).where(ReviewItem.id == item_id)).first()
            if row is None:
                raise ReviewError(f"no review item {item_id}")
            if row.status != "open":
                raise ReviewError(f"item {item_id} is already {row.status}")
            raise ReviewError(f"item {item_id} is not held by {actor}")
        item = s.get(ReviewItem, item_id, populate_existing=True)
        assert item is not None
        s.add(AuditEvent(actor=actor, action="unclaimed", item_id=item.id, flow_run_id=item.flow_run_id, detail={}))
        return item


def _loads(session: Session, groups: Sequence[str]) -> list[tuple[int, str]]:
    """The active members of ``groups`` with how many open items each holds, as a heap (least loaded first)."""
    members = sorted(set(session.scalars(select(User.name).join(Membership, Membership.user_id == User.id).where(
        Membership.group.in_(sorted(groups)), User.active.is_(True)))))
    if not members:
        return []
    held = dict(session.execute(select(ReviewItem.assignee, func.count()).where(
        ReviewItem.status == "open", ReviewItem.assignee.in_(members)).group_by(ReviewItem.assignee)).tuples().all())
    heap = [(int(held.get(m, 0)), m) for m in members]
    heapq.heapify(heap)
    return heap


def assign(settings: Settings, item_id: int, *, actor: str, assignee: str | None = None,
           group: str | None = None) -> ReviewItem:
    """A supervisor's assignment of an open item to a person, to the least-loaded member of a group, or back
    to the shared queue (neither)."""
    _need_actor(actor)
    if assignee and group:
        raise ReviewError("assign to a person or to a group, not both")
    with session_scope(_ops(settings)) as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        if group:
            first_by = (item.first_approval or {}).get("by")  # never back to the first of two approvers
            members = sorted(m for m in _loads(s, [group]) if m[1] != first_by)
            if not members:
                raise ReviewError(f"group {group!r} has no active member who may take item {item_id}")
            assignee = members[0][1]
        before = item.assignee
        if not _changed(s, update(ReviewItem).where(ReviewItem.id == item_id, ReviewItem.status == "open")
                        .values(assignee=assignee).execution_options(synchronize_session=False)):
            raise ReviewError(f"item {item_id} is already {item.status}")
        s.add(AuditEvent(actor=actor, action="assigned", item_id=item_id, flow_run_id=item.flow_run_id,
                         detail={"from": before, "to": assignee, **({"group": group} if group else {})}))
        if assignee:
            notify.assigned(s, [item_id])
        s.refresh(item)
        return item


@dataclass(frozen=True)
class QueueFilter:
    """Which items a queue view shows; ``None`` leaves a criterion out."""

    status: str | None = "open"
    process: str | None = None
    processes: frozenset[str] | None = None  # the processes the viewer may work on (None: every one)
    step: str | None = None
    kind: str | None = None
    queue: str | None = None
    assignee: str | None = None  # a name, or "" for unassigned items
    overdue: bool | None = None
    flow_run_id: str | None = None
    second_approver: str | None = None  # leave out the items this person gave the first of two approvals
    priority: int | None = None


SORTS = {"due": (ReviewItem.due_at, ReviewItem.id), "-due": (ReviewItem.due_at.desc(), ReviewItem.id.desc()),
         "created": (ReviewItem.created_at, ReviewItem.id), "-created": (ReviewItem.created_at.desc(),
                                                                          ReviewItem.id.desc()),
         "id": (ReviewItem.id,), "-id": (ReviewItem.id.desc(),), "process": (ReviewItem.process, ReviewItem.due_at),
         "priority": (ReviewItem.priority.desc(), ReviewItem.due_at, ReviewItem.id)}


def _where(q: Any, f: QueueFilter, now: datetime) -> Any:
    if f.status:
        q = q.where(ReviewItem.status == f.status)
    for column, value in ((ReviewItem.process, f.process), (ReviewItem.step, f.step), (ReviewItem.kind, f.kind),
                          (ReviewItem.queue, f.queue), (ReviewItem.flow_run_id, f.flow_run_id)):
        if value:
            q = q.where(column == value)
    if f.processes is not None:
        q = q.where(ReviewItem.process.in_(sorted(f.processes)))
    if f.assignee == "":
        q = q.where(ReviewItem.assignee.is_(None))
    elif f.assignee:
        q = q.where(ReviewItem.assignee == f.assignee)
    if f.priority is not None:
        q = q.where(ReviewItem.priority == f.priority)
    if f.second_approver:
        q = q.where(_not_first_approved_by(f.second_approver))
    if f.overdue is True:
        q = q.where(ReviewItem.due_at < now)
    elif f.overdue is False:
        q = q.where(ReviewItem.due_at >= now)
    return q


def queue_page(settings: Settings, f: QueueFilter, *, sort: str = "due", offset: int = 0,
               limit: int = 50) -> tuple[list[tuple[ReviewItem, str | None]], int]:
    """One page of the queue in ``sort`` order, each item with its run's status; and how many match."""
    if sort not in SORTS:
        raise ReviewError(f"sort by one of {', '.join(SORTS)}")
    now = datetime.now(UTC)
    with session_scope(_ops(settings)) as s:
        total = int(s.scalar(_where(select(func.count()).select_from(ReviewItem), f, now)) or 0)
        q = _where(select(ReviewItem, Run.status).outerjoin(Run, Run.flow_run_id == ReviewItem.flow_run_id),
                   f, now).order_by(*SORTS[sort]).offset(max(0, offset)).limit(max(1, min(limit, 500)))
        return [(item, status) for item, status in s.execute(q)], total


def queue_counts(settings: Settings, f: QueueFilter) -> dict[str, dict[str, int]]:
    """Counts of the items ``f`` selects (its status aside) by status, process, kind, queue and priority; and
    overdue."""
    now = datetime.now(UTC)
    out: dict[str, dict[str, int]] = {}
    with session_scope(_ops(settings)) as s:
        for name, column in (("status", ReviewItem.status), ("process", ReviewItem.process),
                             ("kind", ReviewItem.kind), ("queue", ReviewItem.queue), ("priority", ReviewItem.priority)):
            scope = QueueFilter(**{**f.__dict__, "status": None}) if name == "status" else f
            q = _where(select(column, func.count()).select_from(ReviewItem), scope, now).group_by(column)
            out[name] = {str(k): int(n) for k, n in s.execute(q)}
        out["overdue"] = {"open": int(s.scalar(_where(select(func.count()).select_from(ReviewItem),
                                                      QueueFilter(**{**f.__dict__, "status": "open", "overdue": True}),
                                                      now)) or 0)}
    return out


def audit_of(settings: Settings, *, item_id: int | None = None, flow_run_id: str | None = None,
             limit: int = 1000) -> list[AuditEvent]:
    """The audit trail of one item or one run, oldest first."""
    with session_scope(_ops(settings)) as s:
        q = select(AuditEvent).order_by(AuditEvent.at, AuditEvent.id).limit(limit)
        if item_id is not None:
            q = q.where(AuditEvent.item_id == item_id)
        if flow_run_id is not None:
            q = q.where(AuditEvent.flow_run_id == flow_run_id)
        return list(s.scalars(q))


def resolve(settings: Settings, item_id: int, *, actor: str, approve: bool | None = None,
            sets: dict[str, str] | None = None, reason: str | None = None,
            decision: Mapping[str, Any] | None = None, resume: bool = True) -> Resolution:
    """Decide one item: ``decision`` as its kind takes it, or (record and gate) approve/reject, sets, reason.

    ``resume=False``: the run itself records the decision (a gate answered in the Prefect UI's resume form),
    so there is no paused run to resume.

    The kind checks the decision (a corrected record is normalized and validated again) and may
    refuse it (``CorrectionRefused``: the item stays open, the refusal is audited).
    """
    _need_actor(actor)
    wanted = _decision_input(approve, sets, reason, decision)
    with session_scope(_ops(settings)) as s:
        item = s.get(ReviewItem, item_id)
        if item is None:
            raise ReviewError(f"no review item {item_id}")
        try:
            outcome = _check(s, item, actor, wanted)
        except CorrectionRefused:
            s.commit()  # the refusal stays in the audit trail
            raise
        status = _decide(s, item, actor, outcome, datetime.now(UTC))
        run_id, step = item.flow_run_id, item.step
        left = open_count(s, run_id, step)
    resumed = resume_if_done(settings, run_id, step) if left == 0 and resume else False
    rerun = runs.rerun_hint(settings, run_id) if left == 0 and not resumed and resume else None
    return Resolution(item_id, status, left, resumed, rerun)


def resolve_many(settings: Settings, item_ids: Iterable[int], *, actor: str, approve: bool | None = None,
                 reason: str | None = None, decision: Mapping[str, Any] | None = None,
                 batch_size: int = 200) -> BulkResolution:
    """Take one decision on many items: each is checked by its kind, decided or left open, and reported.

    With ``approve=True`` every item whose proposed values now pass every check is approved; the
    others stay open with their failures. Items are checked outside any write, then each batch of
    ``batch_size`` is written in one transaction; each run is resumed once, after its last item.
    """
    _need_actor(actor)
    wanted = _decision_input(approve, None, reason, decision)
    done = BulkResolution()
    touched: set[tuple[str, str]] = set()
    ids = list(dict.fromkeys(item_ids))
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        with session_scope(_ops(settings)) as s:
            found = {i.id: i for i in s.scalars(select(ReviewItem).where(ReviewItem.id.in_(chunk)))}
            accepted: list[tuple[ReviewItem, Outcome]] = []
            for item_id in chunk:
                item = found.get(item_id)
                try:
                    if item is None:
                        raise ReviewError(f"no review item {item_id}")
                    accepted.append((item, _check(s, item, actor, wanted)))
                except CorrectionRefused as exc:
                    done.left_open[item_id] = exc.failures
                except ReviewError as exc:
                    done.refused[item_id] = str(exc)
            now = datetime.now(UTC)
            for item, outcome in accepted:
                try:
                    status = _decide(s, item, actor, outcome, now)
                except ReviewError as exc:  # decided or claimed by someone else since it was checked
                    done.refused[item.id] = str(exc)
                    continue
                done.decided[item.id] = status
                touched.add((item.flow_run_id, item.step))
    for run_id, step in sorted(touched):
        if resume_if_done(settings, run_id, step):
            done.resumed.append(run_id)
    return done


def _ops(settings: Settings) -> str:
    assert settings.ops_database_url, "Settings fills in the ops database URL"
    return settings.ops_database_url


def _need_actor(actor: str) -> None:
    if not actor.strip():
        raise ReviewError("say who resolves the item (--as NAME)")


def _decision_input(approve: bool | None, sets: dict[str, str] | None, reason: str | None,
                    decision: Mapping[str, Any] | None) -> dict[str, Any]:
    if decision is not None:
        if approve is not None or sets or reason is not None:
            raise ReviewError("give a decision, or approve/reject with sets and a reason, not both")
        return dict(decision)
    if approve is None:
        raise ReviewError("say whether the item is approved or rejected (--approve/--reject)")
    wanted: dict[str, Any] = {"approve": approve}
    if sets:
        wanted["set"] = sets
    if reason is not None:
        wanted["reason"] = reason
    return wanted


def _check(s: Session, item: ReviewItem, actor: str, wanted: dict[str, Any]) -> Outcome:
    """The item's kind's verdict on ``wanted``; a refused correction is audited (in ``s``) and raised."""
    if item.status != "open" or (item.assignee and item.assignee != actor):
        _refuse(s, item.id, actor)
    kind = kind_of(item)
    decision = _parse(kind, _on_first_approval(item, wanted))
    try:
        return kind.check(item, decision)
    except CorrectionRefused as exc:
        s.add(AuditEvent(actor=actor, action="correction_refused", item_id=item.id, flow_run_id=item.flow_run_id,
                         detail={**decision.model_dump(mode="json", by_alias=True), "failures": exc.failures}))
        raise


def _on_first_approval(item: ReviewItem, wanted: dict[str, Any]) -> dict[str, Any]:
    """A second approval starts from what the first approver approved: their corrections, then the second's own.

    So a second approver who changes nothing approves the first's values (and one who changes a field
    keeps the first's other corrections), whichever way the approval comes (console, API, CLI).
    """
    first = item.first_approval
    if not first or wanted.get("approve") is not True:
        return wanted
    merged = {**wanted, "set": {**(first.get("set") or {}), **(wanted.get("set") or {})}}
    if first.get("keep") and not wanted.get("keep"):
        merged["keep"] = first["keep"]
    return merged


def _parse(kind: Kind, wanted: dict[str, Any]) -> BaseModel:
    try:
        return kind.decision.model_validate(wanted)
    except ValidationError as exc:
        # without the input: it may hold client values
        problems = []
        for e in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(p) for p in e["loc"])
            text = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {text}" if where else text)
        raise InvalidDecision(f"not a {kind.name} decision: {'; '.join(problems)}") from None


SECOND_APPROVAL_QUEUE = "second-approval"


def _needs_second(item: ReviewItem, outcome: Outcome) -> bool:
    """Four-eyes: an approval whose values match a rule of the item's process needs a second approver."""
    if outcome.status != "approved" or not outcome.decision:
        return False
    try:
        rules = review_of(item.process).four_eyes
    except (FileNotFoundError, ValueError):
        return False
    return any(rule.matches(outcome.decision) for rule in rules)


def _decide(s: Session, item: ReviewItem, actor: str, outcome: Outcome, now: datetime) -> str:
    """Write ``outcome`` if the item is still open and not someone else's, with its audit event; else refuse.

    Returns the item's status: ``approved`` or ``rejected``, or ``awaiting_second`` when the approval
    is the first of two (four-eyes). The first approver cannot give the second approval; a second
    approver who changes the values gives a new first approval, which needs another person again.
    """
    if outcome.status == "escalated":  # an answer that decides nothing: the supervisor decides
        escalate(s, item.id, actor, outcome.reason or "", detail=outcome.audit, now=now)
        return "escalated"
    first = item.first_approval
    if first is not None and outcome.status == "approved" and not outcome.audit.get("set"):
        # an approval with no corrections of its own approves what the first approver approved
        outcome = Outcome("approved", decision=first.get("decision"), reason=outcome.reason, audit=outcome.audit,
                          changed=bool(first.get("changed")))
    if _needs_second(item, outcome) and (first is None or first.get("decision") != outcome.decision):
        if not _changed(s, _takeable(item.id, actor).where(_first_approval_is(first)).values(
                first_approval={"by": actor, "at": now.isoformat(), "decision": outcome.decision,
                                "reason": outcome.reason, "changed": outcome.changed,
                                "set": outcome.audit.get("set") or {}, "keep": outcome.audit.get("keep")},
                assignee=None, queue=SECOND_APPROVAL_QUEUE)):
            _refuse(s, item.id, actor)
        s.add(AuditEvent(actor=actor, action="first_approval", item_id=item.id, flow_run_id=item.flow_run_id,
                         detail={**outcome.audit, **({"replaces": first["by"]} if first else {})}))
        return "awaiting_second"
    if first is not None and outcome.status == "approved" and first.get("by") == actor:
        raise ReviewError(f"item {item.id} needs a second approver: {actor} gave the first approval")
    won = _changed(s, _takeable(item.id, actor).where(_first_approval_is(first)).values(
        status=outcome.status, decision=outcome.decision, reason=outcome.reason, decided_by=actor,
        decided_at=now, assignee=actor, sample_outcome=_sample_outcome(item, outcome)))
    if not won:
        _refuse(s, item.id, actor)
    detail = {**outcome.audit, **({"first_approval_by": first["by"]} if first else {})}
    s.add(AuditEvent(actor=actor, action=outcome.status, item_id=item.id, flow_run_id=item.flow_run_id,
                     detail=detail))
    return outcome.status


SUPERVISOR_QUEUE = "supervisor"


def escalate(session: Session, item_id: int, actor: str, reason: str, *, detail: Mapping[str, Any] | None = None,
             now: datetime | None = None) -> None:
    """Send an open item to the supervisor queue now, unassigned and due again in its process's due time.

    Like a decision, it takes an item that is open and unclaimed or held by ``actor``; an item already in
    the supervisor queue is refused (a supervisor decides it). Audited as ``escalated`` with ``reason``.
    """
    _need_actor(actor)
    now = now or datetime.now(UTC)
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise ReviewError(f"no review item {item_id}")
    due = now + timedelta(hours=_due_hours(item.process))
    if not _changed(session, _takeable(item_id, actor).where(ReviewItem.queue != SUPERVISOR_QUEUE).values(
            queue=SUPERVISOR_QUEUE, assignee=None, due_at=due)):
        queue = session.scalar(select(ReviewItem.queue).where(ReviewItem.id == item_id, ReviewItem.status == "open"))
        if queue == SUPERVISOR_QUEUE:
            raise ReviewError(f"item {item_id} is already in the supervisor queue: a supervisor decides it")
        _refuse(session, item_id, actor)
    session.add(AuditEvent(actor=actor, action="escalated", item_id=item_id, flow_run_id=item.flow_run_id,
                           detail={**(detail or {}), "reason": reason, "from_queue": item.queue}))


def _due_hours(process: str) -> float:
    """How long an item of ``process`` waits before its timeout action; the default if its spec cannot be read."""
    try:
        return review_of(process).due_hours
    except (FileNotFoundError, ValueError):
        return ReviewSpec().due_hours


def _sample_outcome(item: ReviewItem, outcome: Outcome) -> str | None:
    """What a person's decision of a quality sample says of automation: correct, corrected or rejected."""
    if not item.sample:
        return None
    if outcome.status == "rejected":
        return "rejected"
    return "corrected" if outcome.changed else "correct"


def _not_first_approved_by(actor: str) -> Any:
    """The item has no first approval, or one given by somebody other than ``actor``."""
    return or_(ReviewItem.first_approval.is_(None), ReviewItem.first_approval["by"].as_string() != actor)


def _first_approval_is(first: dict[str, Any] | None) -> Any:
    """The item still has the first approval it was read with (none, or the same person's at the same moment):
    two approvals at once cannot both be first, and none confirms a first approval replaced meanwhile."""
    if first is None:
        return ReviewItem.first_approval.is_(None)
    return (ReviewItem.first_approval["by"].as_string() == str(first.get("by"))) & (
        ReviewItem.first_approval["at"].as_string() == str(first.get("at")))


def _takeable(item_id: int, actor: str) -> Update:
    """An UPDATE of the item that matches only while it is open and unclaimed or claimed by ``actor``."""
    return update(ReviewItem).where(
        ReviewItem.id == item_id, ReviewItem.status == "open",
        or_(ReviewItem.assignee.is_(None), ReviewItem.assignee == actor)).execution_options(
        synchronize_session=False)


def _changed(s: Session, statement: Any) -> bool:
    return cast(CursorResult[Any], s.execute(statement)).rowcount == 1


def _refuse(s: Session, item_id: int, actor: str) -> None:
    """Raise why ``actor`` cannot act on the item, read as it is now (after whoever changed it committed)."""
    row = s.execute(select(ReviewItem.status, ReviewItem.decided_by, ReviewItem.assignee,
                           ReviewItem.first_approval).where(ReviewItem.id == item_id)).first()
    if row is None:
        raise ReviewError(f"no review item {item_id}")
    if row.status != "open":
        raise ReviewError(f"item {item_id} is already {row.status} (by {row.decided_by})")
    if row.assignee and row.assignee != actor:
        raise ReviewError(f"item {item_id} is claimed by {row.assignee}")
    if (row.first_approval or {}).get("by") == actor:
        raise ReviewError(f"item {item_id} needs a second approver: {actor} gave the first approval")
    raise ReviewError(f"item {item_id} changed while you acted on it; try again")


def resume_if_done(settings: Settings, flow_run_id: str, step: str, *, settle_seconds: float = 10.0) -> bool:
    """Resume the run's paused review step when no item of it is open; True if it was resumed.

    A run still running may be about to pause (it counted open items a moment before the last one
    was resolved): it is given ``settle_seconds`` to get there, so that no run waits for nothing.
    """
    with session_scope(_ops(settings)) as s:
        if open_count(s, flow_run_id, step):
            return False
    if runs.ended(settings, flow_run_id):  # a dead run may still look paused to Prefect: resume nothing
        return False
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        deadline = time.monotonic() + settle_seconds
        while True:
            try:
                run = client.read_flow_run(UUID(flow_run_id))
            except ObjectNotFound:  # the run is gone (deleted, server reset): nothing waits to be resumed
                return False
            if run.state is not None and run.state.is_paused():
                break
            if run.state is None or not run.state.is_running() or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        # counted again now that the run waits: items written after the first count are seen
        with session_scope(_ops(settings)) as s:
            if open_count(s, flow_run_id, step):
                return False
            counts = dict(s.execute(select(ReviewItem.status, func.count()).where(
                ReviewItem.flow_run_id == flow_run_id, ReviewItem.step == step).group_by(ReviewItem.status)).all())
        decided = {"approved": int(counts.get("approved", 0)), "rejected": int(counts.get("rejected", 0))}
        client.resume_flow_run(UUID(flow_run_id), run_input=decided)
    with session_scope(_ops(settings)) as s:
        s.add(AuditEvent(actor="system", action="resumed", item_id=None, flow_run_id=flow_run_id,
                         detail={"step": step, **decided}))
    return True


def expire_overdue(settings: Settings, *, now: datetime | None = None) -> dict[str, int]:
    """Apply each overdue item's declared timeout action: escalate to the supervisor queue, or reject.

    Each action is a conditional UPDATE of a still-open item, so an agent deciding it at the same
    moment is never overwritten.
    """
    now = now or datetime.now(UTC)
    done = {"escalated": 0, "rejected": 0, "resumed": 0}
    touched: set[tuple[str, str]] = set()
    overdue_now: dict[str, list[int]] = {}  # action -> the items it was applied to
    with session_scope(_ops(settings)) as s:
        overdue = list(s.scalars(select(ReviewItem).where(ReviewItem.status == "open", ReviewItem.due_at < now)))
        for item in overdue:
            still_open = update(ReviewItem).where(ReviewItem.id == item.id, ReviewItem.status == "open")
            # escalated once, overdue again in the supervisor queue: the final action is to reject
            action = "escalate" if item.on_timeout == "escalate" and item.queue != "supervisor" else "reject"
            if item.on_timeout == "reject":
                if not _changed(s, still_open.values(status="rejected", reason="review timed out",
                                                     decided_by=SYSTEM, decided_at=now)):
                    continue
                done["rejected"] += 1
                touched.add((item.flow_run_id, item.step))
            elif item.queue != "supervisor":
                due = now + timedelta(hours=_due_hours(item.process))
                if not _changed(s, still_open.values(queue="supervisor", assignee=None, due_at=due)):
                    continue
                done["escalated"] += 1
            else:
                if not _changed(s, still_open.values(status="rejected", reason="review timed out after escalation",
                                                     decided_by=SYSTEM, decided_at=now)):
                    continue
                done["rejected"] += 1
                touched.add((item.flow_run_id, item.step))
            s.add(AuditEvent(actor="system", action="timed_out", item_id=item.id, flow_run_id=item.flow_run_id,
                             detail={"action": action}))
            overdue_now.setdefault(action, []).append(item.id)
        for action, ids in overdue_now.items():
            notify.overdue(s, ids, action)
    for run_id, step in touched:
        done["resumed"] += int(resume_if_done(settings, run_id, step))
    return done


def set_run_status(session: Session, flow_run_id: str, status: str, **counts: Any) -> None:
    values: dict[str, Any] = {"status": status}
    if counts:
        values["counts"] = json.loads(json.dumps(counts, default=str))
    if status in ("completed", "failed"):
        values["finished_at"] = datetime.now(UTC)
    session.execute(update(Run).where(Run.flow_run_id == flow_run_id).values(**values))
