"""The pages a named approver without an account reaches through a signed gate link.

No session and no CSRF token: the token in the path is the credential, and a forged form cannot
know it. GET only shows the gate (mail scanners fetch links before the person does); POST decides.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from bpo.console.auth import settings_of
from bpo.console.pages import templates
from bpo.review import ReviewError, kind_of, links

router = APIRouter(include_in_schema=False)
Token = Annotated[str, Path(min_length=1, max_length=links.MAX_TOKEN)]
REFUSAL_STATUS = {"invalid": 404, "expired": 410, "used": 410, "decided": 409, "held": 409}


def _show(request: Request, status: int, **context: Any) -> Response:
    response = templates.TemplateResponse(request, "gate_link.html", {"who": None, "csrf": "", "message": "",
                                                                      **context}, status_code=status)
    response.headers["Referrer-Policy"] = "no-referrer"  # the page's own URL is the credential
    response.headers["X-Robots-Tag"] = "noindex"
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else ""


def _form(request: Request, token: str, link: Any, item: Any, *, status: int = 200, error: str = "",
          reason: str = "") -> Response:
    display = kind_of(item).display(item)
    return _show(request, status, state="open", token=token, approver=link.approver, item=item, display=display,
                 expires=links.expiry_of(token), error=error, reason=reason)


@router.get("/gate/{token}", response_class=HTMLResponse, name="gate_page")
def gate_page(token: Token, request: Request) -> Response:
    try:
        link, item = links.open_link(settings_of(request), token, address=_address(request))
    except links.LinkRefused as exc:
        return _show(request, REFUSAL_STATUS[exc.why], state="refused", error=str(exc))
    return _form(request, token, link, item)


@router.post("/gate/{token}", response_class=HTMLResponse)
async def answer_gate(token: Token, request: Request) -> Response:
    form = await request.form()
    action = str(form.get("action", ""))
    reason = str(form.get("reason", ""))
    settings = settings_of(request)
    try:
        if action not in ("approve", "reject"):
            raise ReviewError("choose approve or reject")
        done = await run_in_threadpool(links.answer_link, settings, token, approve=action == "approve",
                                       reason=reason, address=_address(request),
                                       user_agent=request.headers.get("user-agent", ""))
    except links.LinkRefused as exc:
        return _show(request, REFUSAL_STATUS[exc.why], state="refused", error=str(exc))
    except ReviewError as exc:  # the decision is incomplete: the link is untouched, the form shown again
        try:
            link, item = await run_in_threadpool(links.open_link, settings, token, address=_address(request))
        except links.LinkRefused as refused:
            return _show(request, REFUSAL_STATUS[refused.why], state="refused", error=str(refused))
        return _form(request, token, link, item, status=422, error=str(exc), reason=reason)
    return _show(request, 200, state="done", decision=done.status, resumed=done.resumed)
