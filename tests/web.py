"""A small web a test defines and serves on 127.0.0.1: pages, errors, slow, hanging and endless answers, redirects.

``serve(routes)`` starts a ``ThreadingHTTPServer`` on a free loopback port and yields a ``Web``. Each
route maps a path (query string included when the key has one, else the bare path) to:

- a ``Reply`` (status, headers, body, a delay before answering, a hang after the headers, an
  endless body streamed chunk by chunk);
- a list of ``Reply`` served in turn, its last one repeating (503, 503, then 200);
- a function of the ``Request`` returning a ``Reply`` (conditional answers, generated pages).

A path with no route is answered by the route ``"*"`` if there is one, else a 404. The server counts
hits per path, the requests as they came
(headers included), the most requests it served at once, and the body bytes it managed to send.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "text/html; charset=utf-8"
    delay: float = 0.0  # seconds before the status line: longer than a read timeout is a timeout
    hang: bool = False  # send the headers and part of the body, then hang until the server stops
    endless: int = 0  # stream this many body bytes in 64 KiB chunks, with no Content-Length


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-cased names
    at: float  # time.monotonic() when it came


Route = Reply | list[Reply] | Callable[[Request], Reply]


@dataclass
class Web:
    base: str
    routes: dict[str, Route]
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[Request] = field(default_factory=list)
    active: int = 0
    most_active: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # body bytes written, per path
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def reply_for(self, request: Request) -> Reply:
        route = (self.routes.get(request.path) or self.routes.get(request.path.split("?", 1)[0])
                 or self.routes.get("*"))
        with self.lock:
            self.hits[request.path] += 1
            self.requests.append(request)
            turn = self.hits[request.path]
        if route is None:
            return Reply(404, b"not found", content_type="text/plain")
        if isinstance(route, Reply):
            return route
        if isinstance(route, list):
            return route[min(turn, len(route)) - 1]
        return route(request)


def _handler(web: Web) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body ~40 ms

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            with web.lock:
                web.active += 1
                web.most_active = max(web.most_active, web.active)
            try:
                self._answer(web.reply_for(Request(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                     time.monotonic())))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a size cap, a timeout): what the test wants to see
            finally:
                with web.lock:
                    web.active -= 1

        def _answer(self, reply: Reply) -> None:
            if reply.delay and web.stopping.wait(reply.delay):
                return
            body = reply.body.encode() if isinstance(reply.body, str) else reply.body
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.endless or reply.hang:
                self.send_header("Connection", "close")
                self.close_connection = True
            elif "content-length" not in {k.lower() for k in reply.headers}:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._write(body)
            if reply.hang:
                web.stopping.wait()
            chunk = b"x" * 65536
            left = reply.endless
            while left > 0 and not web.stopping.is_set():
                self._write(chunk[:left])
                left -= len(chunk)

        def _write(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()
            with web.lock:
                web.sent[self.path] += len(data)

    return Handler


@contextmanager
def serve(routes: dict[str, Route] | None = None) -> Iterator[Web]:
    """The routes served on a free 127.0.0.1 port until the block ends (hanging answers are released then)."""
    web = Web("", dict(routes or {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(web))  # port 0: the system picks a free one, no race
    web.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield web
    finally:
        web.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
