"""The review console: FastAPI, server-rendered pages, and the JSON API under /api/.

``create_app(settings)`` builds it; ``bpo console`` serves it on 127.0.0.1. Everything a page uses
(its style, its one script) ships in this package: a page makes no request to another host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from bpo import notify
from bpo.console import api, links, pages
from bpo.pool import import_modules
from bpo.quality import GX
from bpo.settings import Settings

log = logging.getLogger("bpo.console")

HERE = Path(__file__).resolve().parent

# no script, style, image or frame from anywhere but this console; no inline script
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        return response


NOTIFY_EVERY = 5.0  # seconds between two looks at the notification outbox


def _deliver_notifications(settings: Settings, stop: threading.Event) -> None:
    """Send queued notifications while the console runs; a failure is logged and retried, never raised."""
    while not stop.wait(NOTIFY_EVERY):
        try:
            notify.deliver_due(settings)
        except Exception:  # the database may be away a moment: the next round tries again
            log.exception("delivering notifications failed; retried in %.0f s", NOTIFY_EVERY)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # a correction is validated with Great Expectations, whose import takes seconds: taken now, beside
    # the first requests, not by the first agent who corrects a field
    threading.Thread(target=import_modules, args=(GX,), daemon=True).start()
    stop = threading.Event()
    threading.Thread(target=_deliver_notifications, args=(app.state.settings, stop), daemon=True,
                     name="bpo-notify").start()
    yield
    stop.set()


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI(title="nonvoice-bpo review console", version="1", openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None,  # the docs pages would load scripts from a CDN
                  lifespan=_lifespan)
    app.state.settings = settings
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(links.router)
    return app
