"""The console's pages: sign-in, the queue, an item beside its source, and the forms that act on it."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from bpo import review, users
from bpo.console import api, dashboard
from bpo.console.auth import COOKIE, Caller, caller, caller_or_none, settings_of, visible_processes
from bpo.console.candidates import candidates_answer, candidates_view
from bpo.console.compare import conflict_view, pair_view
from bpo.console.views import audit_row, item_detail, item_row
from bpo.review.pair import Verdict

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")  # .html is autoescaped
LOGIN_CSRF = "bpo_login_csrf"
PER_PAGE = 50


# the message a redirect carries to the next page is signed: a link made elsewhere cannot put words on a page
_MESSAGE_KEY = secrets.token_bytes(32)


def _signature(message: str) -> str:
    return hmac.new(_MESSAGE_KEY, message.encode(), "sha256").hexdigest()[:32]


def _page(request: Request, template: str, who: Caller | None, **context: Any) -> HTMLResponse:
    message = request.query_params.get("msg", "")
    if not hmac.compare_digest(request.query_params.get("sig", ""), _signature(message)):
        message = ""
    return templates.TemplateResponse(request, template, {"who": who, "csrf": who.csrf if who else "",
                                                      "message": message, **context})


def _back(path: str, message: str = "") -> RedirectResponse:
    query = ("?" + urlencode({"msg": message, "sig": _signature(message)})) if message else ""
    return RedirectResponse(path + query, status_code=303)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(request, "login.html", None, login_csrf=token)
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", secure=_secure(request), max_age=3600)
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    sent, cookie = str(form.get("login_csrf", "")), request.cookies.get(LOGIN_CSRF, "")
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        raise HTTPException(403, "the sign-in form expired; reload it")
    settings = settings_of(request)
    address = request.client.host if request.client else ""
    try:
        person = users.sign_in(settings, str(form.get("name", "")), str(form.get("password", "")), address)
    except users.SignInRefused as exc:
        token = secrets.token_urlsafe(24)
        response = _page(request, "login.html", None, login_csrf=token, error=str(exc),
                         name=str(form.get("name", "")))
        response.status_code = 429 if exc.retry_after else 401
        if exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict", secure=_secure(request),
                            max_age=3600)
        return response
    secret, _ = users.start_session(settings, person)
    signed_in = _back("/")
    signed_in.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=_secure(request),
                        max_age=users.SESSION_HOURS * 3600)
    signed_in.delete_cookie(LOGIN_CSRF)
    return signed_in


@router.post("/logout")
def logout(request: Request, who: Caller = Depends(caller)) -> Response:
    secret = request.cookies.get(COOKIE)
    if secret:
        users.end_session(settings_of(request), secret)
    response = _back("/login", "signed out")
    response.delete_cookie(COOKIE)
    return response


def _signed_in(request: Request) -> Caller | Response:
    who = caller_or_none(request)
    if who is None:
        return _back("/login")
    return who


# the answers of kinds decided with their own buttons (the form's ``action``)
ANSWERS: dict[str, tuple[str, ...]] = {"pair": get_args(Verdict), "conflict": ("acknowledge",)}

FILTERS = ("status", "process", "step", "kind", "queue", "assignee", "group", "priority", "overdue", "run", "sort")


@router.get("/", response_class=HTMLResponse)
def queue(request: Request) -> Response:
    who = _signed_in(request)
    if isinstance(who, Response):
        return who
    q = request.query_params
    chosen = {k: q.get(k, "") for k in FILTERS}
    if "status" not in q:
        chosen["status"] = "open"
    overdue = {"yes": True, "no": False}.get(chosen["overdue"])
    try:
        page = max(1, int(q.get("page", "1")))
    except ValueError:
        page = 1
    settings = settings_of(request)
    f = api.queue_filter(request, who, status=chosen["status"], process=chosen["process"], step=chosen["step"],
                         kind=chosen["kind"], queue=chosen["queue"],
                         assignee=None if chosen["assignee"] == "" else
                         ("" if chosen["assignee"] == "-" else chosen["assignee"]),
                         overdue=overdue, run=chosen["run"], group=chosen["group"] or None,
                         priority=int(chosen["priority"]) if chosen["priority"].isdigit() else None)
    sort = chosen["sort"] if chosen["sort"] in review.SORTS else "due"
    rows, total = review.queue_page(settings, f, sort=sort, offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    counts = review.queue_counts(settings, f)
    pages = max(1, -(-total // PER_PAGE))
    link = {k: v for k, v in chosen.items() if v}

    def href(**change: Any) -> str:
        return "/?" + urlencode({**link, **{k: v for k, v in change.items() if v not in (None, "")}})

    return _page(request, "queue.html", who, items=[item_row(i, st) for i, st in rows], total=total, page=page,
                 pages=pages, counts=counts, chosen=chosen, sorts=list(review.SORTS), href=href,
                 processes=api.processes_in_queue(request))


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request) -> Response:
    who = _signed_in(request)
    if isinstance(who, Response):
        return who
    allowed = visible_processes(who.person, api.processes_in_queue(request))
    figures = dashboard.metrics(settings_of(request), processes=allowed)
    return _page(request, "dashboard.html", who, figures=figures,
                 charts=[Markup(svg) for svg in dashboard.charts(figures)])  # SVG built with every label escaped


@router.get("/next")
def next_item(request: Request) -> Response:
    """Claim the next open item for the signed-in agent: theirs first, then the soonest due unassigned one."""
    who = _signed_in(request)
    if isinstance(who, Response):
        return who
    allowed = visible_processes(who.person, api.processes_in_queue(request))
    item = review.claim_next(settings_of(request), who.person.name, processes=allowed)
    return _back(f"/items/{item.id}") if item else _back("/", "no open item is waiting for you")


@router.get("/items/{item_id}", response_class=HTMLResponse)
def item_page(item_id: api.ItemId, request: Request) -> Response:
    who = _signed_in(request)
    if isinstance(who, Response):
        return who
    item, run_status = api.load_item(request, who, item_id)
    audit = review.audit_of(settings_of(request), item_id=item_id)
    people = users.list_users(settings_of(request)) if who.person.supervises else []
    return _page(request, "item.html", who, item=item_detail(item, run_status),
                 mine=item.assignee == who.person.name, audit=[audit_row(e) for e in audit],
                 people=sorted(p.name for p in people), groups=sorted({g for p in people for g in p.groups}),
                 pair=pair_view(item.source) if item.kind == "pair" else None,
                 conflict=conflict_view(item.source) if item.kind == "conflict" else None,
                 candidates=candidates_view(item.source) if item.kind == "candidates" else None)


@router.post("/items/{item_id}/assign")
async def assign(item_id: api.ItemId, request: Request, who: Caller = Depends(caller)) -> Response:
    """A supervisor's form: to a person, to a group's least-loaded member, or back to the queue."""
    form = await request.form()
    body = api.AssignBody(assignee=str(form.get("assignee", "")).strip() or None,
                          group=str(form.get("group", "")).strip() or None)
    try:
        done = await run_in_threadpool(api.assign, item_id, body, request, who)
    except HTTPException as exc:
        return _back(f"/items/{item_id}", str(exc.detail))
    return _back(f"/items/{item_id}", f"item {item_id} assigned to {done['assignee']}" if done["assignee"]
                 else f"item {item_id} is back in the queue")


@router.post("/items/{item_id}/claim")
def claim(item_id: api.ItemId, request: Request, who: Caller = Depends(caller)) -> Response:
    try:
        api.claim(item_id, request, who)
    except HTTPException as exc:
        return _back(f"/items/{item_id}", str(exc.detail))
    return _back(f"/items/{item_id}")


@router.post("/items/{item_id}/unclaim")
def unclaim(item_id: api.ItemId, request: Request, who: Caller = Depends(caller)) -> Response:
    try:
        api.unclaim(item_id, request, who)
    except HTTPException as exc:
        return _back(f"/items/{item_id}", str(exc.detail))
    return _back("/", f"item {item_id} is back in the queue")


@router.post("/items/{item_id}/resolve")
async def resolve(item_id: api.ItemId, request: Request, who: Caller = Depends(caller)) -> Response:
    form = await request.form()
    item, _ = api.load_item(request, who, item_id)
    action = str(form.get("action", ""))
    reason = str(form.get("reason", "")).strip()
    if item.kind == "candidates":  # a candidate, an entered value with its citation, or not found
        answer = candidates_answer(form)
        if isinstance(answer, str):
            return _back(f"/items/{item_id}", answer)
        body = api.ResolveBody(decision=answer)
    elif item.kind in ANSWERS:  # a kind answered with its own buttons, not approve/reject
        if action not in ANSWERS[item.kind]:
            return _back(f"/items/{item_id}", f"choose {' or '.join(ANSWERS[item.kind])}")
        answer = {"verdict": action} if item.kind == "pair" else {"acknowledge": True}
        body = api.ResolveBody(decision={**answer, "reason": reason})
    elif action not in ("approve", "reject"):
        return _back(f"/items/{item_id}", "choose approve or reject")
    else:
        sets = {}
        for name, value in (item.proposed or {}).items():
            sent = form.get(f"field.{name}")
            if sent is not None and str(sent) != ("" if value is None else str(value)):
                sets[name] = str(sent)
        body = api.ResolveBody(approve=action == "approve", set=sets if action == "approve" else {},
                               reason=reason or None, keep=str(form.get("keep", "")).strip() or None)
    try:
        done = await run_in_threadpool(api.resolve, item_id, body, request, who)
    except HTTPException as exc:
        detail = exc.detail
        text = detail.get("message", "") + ": " + "; ".join(
            f"{f['field']}: {f['reason']}" for f in detail.get("failures", [])) if isinstance(detail, dict) else detail
        return _back(f"/items/{item_id}", str(text))
    note = (f"item {item_id} approved once: a second approver must approve it" if done["status"] == "awaiting_second"
            else f"item {item_id} sent to the supervisor queue" if done["status"] == "escalated"
            else f"item {item_id} {done['status']}")
    if done["resumed"]:
        note += "; the run resumed"
    elif done["rerun"]:
        note += f"; {done['rerun']}"
    return _back("/next" if form.get("then") == "next" else "/", note)


@router.post("/items/bulk")
async def bulk(request: Request, who: Caller = Depends(caller)) -> Response:
    form = await request.form()
    ids = [int(v) for v in form.getlist("ids") if isinstance(v, str) and v.isdigit() and 0 < int(v) <= api.DB_INT]
    if not ids:
        return _back("/", "select some items first")
    action = str(form.get("action", ""))
    body = api.BulkBody(ids=ids, approve=action == "approve", reason=str(form.get("reason", "")).strip() or None)
    try:
        done = await run_in_threadpool(api.bulk_resolve, body, request, who)
    except HTTPException as exc:
        return _back("/", str(exc.detail))
    return _back("/", f"{len(done['decided'])} decided, {len(done['left_open'])} still failing, "
                      f"{len(done['refused'])} refused")
