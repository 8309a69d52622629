"""The JSON API under ``/api/``: everything the console does, for the CLI and scripts (OpenAPI at /api/openapi.json)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import select

from bpo import review, users
from bpo.console import auth, dashboard
from bpo.console.auth import (
    Caller,
    caller,
    may_work,
    must_supervise,
    must_work,
    settings_of,
    visible_processes,
)
from bpo.console.views import audit_row, item_detail, item_row, item_stored
from bpo.db.models import ReviewItem
from bpo.db.session import session_scope
from bpo.exports import write_csv
from bpo.review import links
from bpo.settings import Settings
from bpo.spec import load_spec

router = APIRouter(prefix="/api")
DB_INT = 2**63 - 1  # what a database integer holds: a larger id is refused (422), not a server error
ItemId = Annotated[int, Path(ge=1, le=DB_INT)]


class ResolveBody(BaseModel):
    """A record or gate decision (``approve`` with ``set`` corrections, or a reason); ``decision`` for other kinds
    (a pair: ``{"verdict": "same" | "different" | "not_sure", "reason": ...}``; a conflict:
    ``{"acknowledge": true, "reason": ...}``; a candidates item: ``{"candidate": N}``, ``{"value": ..., "citation":
    {"location": ..., "snippet": ...}}`` or ``{"not_found": true, "note": ...}``)."""

    approve: bool | None = None
    set: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    keep: str | None = None
    decision: dict[str, Any] | None = None


class CheckBody(BaseModel):
    set: dict[str, str] = Field(default_factory=dict)


class BulkBody(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=DB_INT)]] = Field(min_length=1, max_length=10_000)
    approve: bool
    reason: str | None = None


class AssignBody(BaseModel):
    """To a person, to the least-loaded member of a group, or (neither) back to the shared queue."""

    assignee: str | None = None
    group: str | None = None


class LinkBody(BaseModel):
    approver: str = Field(min_length=1, max_length=links.MAX_APPROVER)
    hours: float = Field(48, gt=0, le=links.MAX_HOURS)


def processes_in_queue(request: Request) -> list[str]:
    with session_scope(settings_of(request).ops_database_url or "") as s:
        return sorted(s.scalars(select(ReviewItem.process).distinct()))


def queue_filter(request: Request, who: Caller, *, status: str | None, process: str | None, step: str | None,
                 kind: str | None, queue: str | None, assignee: str | None, overdue: bool | None,
                 run: str | None = None, group: str | None = None, priority: int | None = None) -> review.QueueFilter:
    """What a queue request selects, within the processes the caller may see; ``group``: the processes whose
    review that group does."""
    in_queue = processes_in_queue(request)
    allowed = visible_processes(who.person, in_queue)
    if group:
        of_group = frozenset(p for p in in_queue if group in (auth.groups_of(p) or ()))
        allowed = of_group if allowed is None else allowed & of_group
    return review.QueueFilter(status=status or None, process=process or None, processes=allowed, step=step or None,
                              kind=kind or None, queue=queue or None, assignee=assignee, overdue=overdue,
                              flow_run_id=run or None, priority=priority)


def load_item(request: Request, who: Caller, item_id: int) -> tuple[ReviewItem, str | None]:
    settings = settings_of(request)
    try:
        item = review.get_item(settings, item_id)
    except review.ReviewError as exc:
        raise HTTPException(404, str(exc)) from None
    must_work(who.person, item.process)
    page, _ = review.queue_page(settings, review.QueueFilter(status=None, flow_run_id=item.flow_run_id,
                                                               step=item.step), limit=1)
    return item, page[0][1] if page else None


def _refusal(exc: Exception) -> HTTPException:
    """A service refusal as HTTP: 409 for a conflict (decided, held by another), 422 for a decision that fails
    or is not one of the item's kind."""
    if isinstance(exc, review.CorrectionRefused):
        return HTTPException(422, {"message": str(exc), "failures": exc.failures})
    if isinstance(exc, review.InvalidDecision):
        return HTTPException(422, str(exc))
    return HTTPException(409, str(exc))


@router.get("/me")
def me(who: Caller = Depends(caller)) -> dict[str, Any]:
    p = who.person
    return {"name": p.name, "role": p.role, "groups": sorted(p.groups)}


@router.get("/items")
def list_items(request: Request, who: Caller = Depends(caller), status: str | None = "open",
               process: str | None = None, step: str | None = None, kind: str | None = None,
               queue: str | None = None, assignee: str | None = None, overdue: bool | None = None,
               run: str | None = None, group: str | None = None, priority: int | None = Query(None, ge=0, le=9),
               sort: str = "due", page: int = Query(1, ge=1),
               per_page: int = Query(50, ge=1, le=500), counts: bool = True, full: bool = False) -> dict[str, Any]:
    """Items in the queue, filtered, sorted and paginated, with the counts of the filter (unless ``counts=false``);
    ``full=true`` adds what each item holds (source, failed checks, proposed values, decision)."""
    settings = settings_of(request)
    f = queue_filter(request, who, status=status, process=process, step=step, kind=kind, queue=queue,
                     assignee=assignee, overdue=overdue, run=run, group=group, priority=priority)
    try:
        rows, total = review.queue_page(settings, f, sort=sort, offset=(page - 1) * per_page, limit=per_page)
    except review.ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    row = item_stored if full else item_row
    return {"items": [row(i, st) for i, st in rows], "total": total, "page": page, "per_page": per_page,
            "counts": review.queue_counts(settings, f) if counts else None}


@router.get("/items/{item_id}")
def get_item(item_id: ItemId, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    item, run_status = load_item(request, who, item_id)
    return item_detail(item, run_status)


@router.post("/next")
def next_item(request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Claim the next item for you (one you hold, else the soonest due free one of your processes): ``item``,
    null when nothing waits for you."""
    allowed = visible_processes(who.person, processes_in_queue(request))
    item = review.claim_next(settings_of(request), who.person.name, processes=allowed)
    if item is None:
        return {"item": None}
    item, run_status = load_item(request, who, item.id)
    return {"item": item_detail(item, run_status)}


def _hold(item_id: int, request: Request, who: Caller,
          act: Callable[[Settings, int, str], ReviewItem]) -> dict[str, Any]:
    """Claim or give back an item (``act``): atomic in the service, refused with why."""
    _, run_status = load_item(request, who, item_id)
    try:
        item = act(settings_of(request), item_id, who.person.name)
    except review.ReviewError as exc:
        raise _refusal(exc) from None
    return item_row(item, run_status)


@router.post("/items/{item_id}/claim")
def claim(item_id: ItemId, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Hold an open item: nobody else can act on it until you resolve or unclaim it."""
    return _hold(item_id, request, who, review.claim)


@router.post("/items/{item_id}/unclaim")
def unclaim(item_id: ItemId, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Give back an item you hold."""
    return _hold(item_id, request, who, review.unclaim)


@router.post("/items/{item_id}/assign")
def assign(item_id: ItemId, body: AssignBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    must_supervise(who.person)
    item, run_status = load_item(request, who, item_id)
    settings = settings_of(request)
    if body.assignee:
        try:
            users.get_person(settings, body.assignee)
        except users.UserError as exc:
            raise HTTPException(422, str(exc)) from None
    try:
        item = review.assign(settings, item_id, actor=who.person.name, assignee=body.assignee or None,
                             group=body.group or None)
    except review.ReviewError as exc:
        raise _refusal(exc) from None
    return item_row(item, run_status)


@router.post("/items/{item_id}/check")
def check(item_id: ItemId, body: CheckBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Validate the item's record with ``set`` corrections as the flow would; nothing is decided."""
    item, _ = load_item(request, who, item_id)
    if item.kind != "record":
        raise HTTPException(422, f"a {item.kind} item has no record to check")
    unknown = sorted(set(body.set) - set(item.proposed))
    if unknown:
        raise HTTPException(422, f"no such field: {', '.join(unknown)}")
    values = {**{k: (None if v is None else str(v)) for k, v in item.proposed.items()}, **body.set}
    spec = load_spec(item.process)
    accepted, failures = review.revalidate(spec, values, recheck=review.fields_to_recheck(item, spec, body.set))
    return {"passes": not failures, "failures": failures, "accepted": accepted}


@router.post("/items/{item_id}/resolve")
def resolve(item_id: ItemId, body: ResolveBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Decide an item you hold (claim it first): approve (with corrections) or reject with a reason."""
    item, _ = load_item(request, who, item_id)
    if item.status == "open" and item.assignee != who.person.name:
        raise HTTPException(409, f"claim item {item_id} first" if not item.assignee
                            else f"item {item_id} is claimed by {item.assignee}")
    if body.decision is not None:
        decision = body.decision
    else:
        decision = {"approve": body.approve, "reason": body.reason}
        if body.set:
            decision["set"] = body.set
        if body.keep:
            decision["keep"] = body.keep
    try:
        done = review.resolve(settings_of(request), item_id, actor=who.person.name, decision=decision)
    except review.ReviewError as exc:
        raise _refusal(exc) from None
    return {"item_id": done.item_id, "status": done.status, "open_left": done.open_left, "resumed": done.resumed,
            "rerun": done.rerun}


@router.post("/items/bulk-resolve")
def bulk_resolve(body: BulkBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """Approve every selected item whose proposed values now pass, or reject them all with one reason."""
    settings = settings_of(request)
    refused: dict[int, str] = {}
    ids: list[int] = []
    for item_id in dict.fromkeys(body.ids):
        try:
            item = review.get_item(settings, item_id)
        except review.ReviewError as exc:
            refused[item_id] = str(exc)
            continue
        if not may_work(who.person, item.process):
            refused[item_id] = f"{who.person.name} is not in a group that reviews {item.process}"
        else:
            ids.append(item_id)
    try:
        done = review.resolve_many(settings, ids, actor=who.person.name, approve=body.approve, reason=body.reason)
    except review.ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"decided": done.decided, "left_open": done.left_open, "refused": {**refused, **done.refused},
            "resumed": done.resumed}


@router.post("/items/{item_id}/link")
def gate_link(item_id: ItemId, body: LinkBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    """A signed, single-use, expiring link through which ``approver`` answers a gate without an account."""
    must_supervise(who.person)
    item, _ = load_item(request, who, item_id)
    try:
        links.check_approver(body.approver)
        if item.kind != "gate":
            raise review.ReviewError(f"item {item_id} is a {item.kind} item; only a gate can be answered through "
                                     f"a link")
    except review.ReviewError as exc:
        raise HTTPException(422, str(exc)) from None
    try:
        token = links.issue_link(settings_of(request), item_id, approver=body.approver, created_by=who.person.name,
                                 hours=body.hours)
    except review.ReviewError as exc:
        raise _refusal(exc) from None
    return {"url": str(request.url_for("gate_page", token=token)), "expires_at": links.expiry_of(token).isoformat()}


@router.get("/items/{item_id}/audit")
def item_audit(item_id: ItemId, request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    load_item(request, who, item_id)
    return [audit_row(e) for e in review.audit_of(settings_of(request), item_id=item_id)]


@router.get("/runs/{flow_run_id}/audit")
def run_audit(flow_run_id: str, request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    must_supervise(who.person)
    return [audit_row(e) for e in review.audit_of(settings_of(request), flow_run_id=flow_run_id)]


@router.get("/audit.csv", response_class=PlainTextResponse)
def audit_csv(request: Request, who: Caller = Depends(caller),
              item: Annotated[int | None, Query(ge=1, le=DB_INT)] = None,
              run: str | None = None) -> Response:
    """The audit trail of an item or a run as CSV; cells that a spreadsheet would run as formulas are made inert."""
    if item is None and run is None:
        raise HTTPException(422, "name an item (?item=ID) or a run (?run=FLOW_RUN_ID)")
    if item is not None:
        load_item(request, who, item)
    else:
        must_supervise(who.person)
    events = review.audit_of(settings_of(request), item_id=item, flow_run_id=run if item is None else None,
                             limit=1_000_000)
    buf = io.StringIO()
    write_csv(buf, ["at", "actor", "action", "item_id", "flow_run_id", "detail"],
              ([e.at, e.actor, e.action, e.item_id, e.flow_run_id, e.detail] for e in events))
    name = f"audit-item-{item}.csv" if item is not None else "audit-run.csv"
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/dashboard")
def dashboard_figures(request: Request, who: Caller = Depends(caller), days: int = Query(30, ge=1, le=366)
                      ) -> dict[str, Any]:
    """The dashboard's figures: backlog by process and age, SLA attainment, straight-through rate, agent rate."""
    allowed = visible_processes(who.person, processes_in_queue(request))
    return dashboard.metrics(settings_of(request), days=days, processes=allowed)


@router.get("/users")
def list_users(request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    must_supervise(who.person)
    people = users.list_users(settings_of(request))
    return [{"name": p.name, "role": p.role, "groups": sorted(p.groups)} for p in people]
