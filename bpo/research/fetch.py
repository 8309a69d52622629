"""The guarded HTTP client research pages are fetched with: polite to every host, safe against hostile ones.

Every request of a run goes through one ``Fetcher``:

- the host is resolved once; every address it resolves to is checked, and one that is loopback,
  private, link-local, reserved, multicast or unspecified is refused unless the source names the
  host in ``private_hosts``. The connection is pinned to the checked address (the URL's host is
  replaced by it, the Host header and the TLS server name keep the name), so a second DNS answer
  cannot send the request elsewhere;
- a per-host guard, shared by every thread, holds the concurrency and rate limits; a 429's
  Retry-After pushes back every request to that host, not only the one that got it;
- robots.txt is fetched once per origin through the same guard and honoured;
- redirects are followed by hand, each Location checked against the source's allowlist and the
  address check again, at most ``MAX_REDIRECTS``;
- the body is streamed and abandoned at ``max_bytes``; bytes are kept as they came, never decoded;
- connection errors, 429 and 5xx are retried with exponential backoff (Retry-After honoured, capped);
- a 304 to a conditional request (ETag / Last-Modified of the previous edition) is ``not_modified``.

Nothing raises out of ``Fetcher.fetch``: every failure is a ``Fetched`` with status ``failed`` or
``refused`` and a reason that names neither a secret nor a query string.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import re
import socket
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpx
from protego import Protego

from bpo import __version__
from bpo.research.brief import WebSource, allowed
from bpo.research.model import Document, DocumentStatus

USER_AGENT = f"nonvoice-bpo/{__version__} research"
ROBOTS_AGENT = "nonvoice-bpo"  # the product token robots.txt rules name
MAX_REDIRECTS = 5
MAX_RETRY_AFTER = 30.0  # seconds: a hostile Retry-After cannot park the run
BACKOFF = 0.25  # seconds before the first retry; doubled each time, with jitter
ROBOTS_MAX_BYTES = 500_000  # RFC 9309 asks crawlers to parse at least 500 KiB
REDIRECTS = (301, 302, 303, 307, 308)


@dataclasses.dataclass(frozen=True)
class Fetched:
    """What one URL gave: the raw body (``ok`` only), or why there is none."""

    url: str
    status: DocumentStatus
    body: bytes | None = None
    content_type: str | None = None  # the media type, without parameters
    content_type_header: str | None = None  # as sent, with its charset: kept on the stored object
    etag: str | None = None
    last_modified: str | None = None
    final_url: str | None = None
    error: str | None = None
    retrieved_at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))


class _Refused(Exception):
    """The URL must not be fetched; the message is the reason."""


class _Failed(Exception):
    """The fetch went wrong; the message is the reason."""


class _ServerError(_Failed):
    """The server kept answering 429 or 5xx until the retries ran out."""


def shown(url: str) -> str:
    """A URL as an error message may show it: no user info, no query string (either may hold a key)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class HostGuard:
    """One host's limits, shared by every thread: at most ``concurrency`` requests at once, ``rate`` per second."""

    def __init__(self, concurrency: int, rate: float) -> None:
        self.slots = threading.BoundedSemaphore(concurrency)
        self.interval = 1.0 / rate
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time the next request may start

    def wait_turn(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def defer(self, seconds: float) -> None:
        """The host asked for a pause (429 Retry-After): no request to it starts before then."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)


def address_refusal(address: str) -> str | None:
    """Why a resolved address may not be connected to without the host being named in private_hosts, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        embedded = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not embedded.is_global:
            return "an IPv6 address embedding a non-public IPv4 address"
    for kind, hit in (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
                      ("a multicast", ip.is_multicast), ("an unspecified", ip.is_unspecified),
                      ("a private", ip.is_private), ("a reserved", ip.is_reserved)):
        if hit:
            return f"{kind} address"
    if not ip.is_global:
        return "a non-public address"
    return None


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER)


class Fetcher:
    """One run's HTTP client: the per-host guards, resolved addresses and robots.txt rules it keeps."""

    def __init__(self, sources: Iterable[WebSource] = (), *, backoff: float = BACKOFF) -> None:
        self.backoff = backoff
        self._lock = threading.Lock()
        self._guards: dict[str, HostGuard] = {}
        self._addresses: dict[str, list[str] | str] = {}  # host -> addresses, or why it cannot be resolved
        # (origin, source) -> the rules, or why every page there is refused (or fails: the host cannot be reached)
        self._robots: dict[tuple[str, str], Protego | _Refused | _Failed] = {}
        self._origin_locks: dict[str, threading.Lock] = {}
        # a host named by several sources gets the strictest of their limits
        self._limits: dict[str, tuple[int, float]] = {}
        for source in sources:
            for base in source.allow:
                host = _ascii_host(urlsplit(base).hostname or "")
                concurrency, rate = self._limits.get(host, (source.concurrency, source.requests_per_second))
                self._limits[host] = (min(concurrency, source.concurrency), min(rate, source.requests_per_second))
        self._clients: dict[str, httpx.Client] = {}

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, source: WebSource, url: str, previous: Document | None = None) -> Fetched:
        """Fetch one page of ``source``; never raises."""
        try:
            if not any(allowed(url, base) for base in source.allow):
                raise _Refused(f"{shown(url)} is outside the allowlist of source {source.name!r}")
            return self._follow(source, url, previous)
        except _Refused as exc:
            return Fetched(url, "refused", error=str(exc))
        except _Failed as exc:
            return Fetched(url, "failed", error=str(exc))
        except Exception as exc:  # a bug or an unforeseen library error must not end the batch
            return Fetched(url, "failed", error=f"unexpected error: {type(exc).__name__}")

    def _follow(self, source: WebSource, url: str, previous: Document | None) -> Fetched:
        headers: dict[str, str] = {}
        if previous is not None and previous.status in ("ok", "not_modified") and previous.key:
            if previous.etag:
                headers["If-None-Match"] = previous.etag
            if previous.last_modified:
                headers["If-Modified-Since"] = previous.last_modified
        current = url
        for hop in range(MAX_REDIRECTS + 1):
            if source.robots:
                self._check_robots(source, current)
            response, body = self._request(source, current, headers, source.max_bytes)
            if response.status_code in REDIRECTS and "location" in response.headers:
                target = urljoin(current, response.headers["location"])
                if urlsplit(target).scheme not in ("http", "https"):
                    raise _Refused(f"{shown(current)} redirects to a non-HTTP URL")
                if not any(allowed(target, base) for base in source.allow):
                    raise _Refused(f"{shown(current)} redirects to {shown(target)}, outside the allowlist "
                                   f"of source {source.name!r}")
                if hop == MAX_REDIRECTS:
                    break
                current = target
                continue
            final = current if current != url else None
            if response.status_code == 304 and headers:
                assert previous is not None  # conditional headers come only from a previous document
                return Fetched(url, "not_modified", etag=response.headers.get("etag") or previous.etag,
                               last_modified=response.headers.get("last-modified") or previous.last_modified,
                               final_url=final)
            if not 200 <= response.status_code < 300:
                raise _Failed(f"HTTP {response.status_code}")
            header, media = _content_type(response.headers.get("content-type"))
            return Fetched(url, "ok", body=body, content_type=media or None, content_type_header=header,
                           etag=response.headers.get("etag"), last_modified=response.headers.get("last-modified"),
                           final_url=final)
        raise _Failed(f"more than {MAX_REDIRECTS} redirects")

    def _guard(self, host: str, source: WebSource) -> HostGuard:
        with self._lock:
            guard = self._guards.get(host)
            if guard is None:
                concurrency, rate = self._limits.get(host, (source.concurrency, source.requests_per_second))
                guard = self._guards[host] = HostGuard(concurrency, rate)
            return guard

    def _client(self, host: str) -> httpx.Client:
        """The host's own client: a pool keyed by the pinned address alone would let two names served from
        one address share a TLS connection verified for only one of them."""
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                # no proxy from the environment: it would connect to the proxy, not the pinned, checked address
                client = self._clients[host] = httpx.Client(trust_env=False, follow_redirects=False,
                                                            headers={"User-Agent": USER_AGENT})
            return client

    def _address(self, host: str, port: int, source: WebSource) -> str:
        """The checked address to connect to: resolved once per run, every answer checked."""
        with self._lock:
            found = self._addresses.get(host)
        if found is None:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
                found = list(dict.fromkeys(str(info[4][0]) for info in infos)) or "no address"
            except (socket.gaierror, UnicodeError) as exc:
                found = f"cannot resolve the host ({exc.__class__.__name__})"
            with self._lock:
                found = self._addresses.setdefault(host, found)
        if isinstance(found, str):
            raise _Failed(f"{host}: {found}")
        if host not in {_ascii_host(h) for h in source.private_hosts}:
            for address in found:
                why = address_refusal(address)
                if why is not None:
                    raise _Refused(f"{host} resolves to {why} ({address}); name it in private_hosts of source "
                                   f"{source.name!r} if it is meant to be reached")
        return found[0]

    def _request(self, source: WebSource, url: str, headers: dict[str, str],
                 max_bytes: int) -> tuple[httpx.Response, bytes]:
        """One GET with retries; the response (closed) and its body, at most ``max_bytes``."""
        parts = httpx.URL(url)
        host = parts.raw_host.decode("ascii").lower()  # IDNA-encoded: what DNS, the Host header and SNI take
        address = self._address(host, parts.port or (443 if parts.scheme == "https" else 80), source)
        guard = self._guard(host, source)
        timeout = httpx.Timeout(source.read_timeout, connect=source.connect_timeout)
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        netloc = host if ":" not in host else f"[{host}]"
        if parts.port:
            netloc += f":{parts.port}"
        # the whole body within a few read timeouts: a server trickling a byte at a time cannot hold a slot forever
        budget = source.connect_timeout + 4 * source.read_timeout
        attempts = source.retries + 1
        for attempt in range(attempts):
            wait: float | None = None
            client = self._client(host)
            guard.slots.acquire()
            try:
                guard.wait_turn()
                pinned = parts.copy_with(host=address, username=None, password=None)
                request = client.build_request("GET", pinned, headers={**headers, "Host": netloc}, timeout=timeout,
                                               extensions=extensions)
                started = time.monotonic()
                response = client.send(request, stream=True)
                try:
                    code = response.status_code
                    if code == 429 or code >= 500:
                        wait = retry_after(response.headers.get("retry-after"))
                        if code == 429:
                            guard.defer(wait if wait is not None else self._delay(attempt))
                        if attempt + 1 == attempts:
                            raise _ServerError(f"HTTP {code} after {attempts} attempt{'s' * (attempts > 1)}")
                    else:
                        return response, self._read(response, max_bytes, started + budget)
                finally:
                    response.close()
            except httpx.ReadTimeout:
                # a page that hung once will hang again: retrying would only park the run longer
                raise _Failed(f"no answer within the read timeout of {source.read_timeout:g} s") from None
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError,
                    httpx.WriteError, httpx.PoolTimeout) as exc:
                if attempt + 1 == attempts:
                    raise _Failed(f"{_transport_reason(exc, source)} after {attempts} "
                                  f"attempt{'s' * (attempts > 1)}") from None
            except httpx.HTTPError as exc:
                raise _Failed(_transport_reason(exc, source)) from None
            finally:
                guard.slots.release()
            time.sleep(wait if wait is not None else self._delay(attempt))
        raise _Failed("no attempt made")  # unreachable: the loop returns or raises

    def _delay(self, attempt: int) -> float:
        return min(self.backoff * 2**attempt * (1 + random.random() / 2), MAX_RETRY_AFTER)

    @staticmethod
    def _read(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _Failed(f"larger than {max_bytes} bytes (declares {declared})")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():  # decoded: a gzip bomb is counted by what it inflates to
            size += len(chunk)
            if size > max_bytes:
                raise _Failed(f"larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise _Failed("the body took too long to arrive")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_robots(self, source: WebSource, url: str) -> None:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        with self._lock:
            lock = self._origin_locks.setdefault(origin, threading.Lock())
        with lock:  # fetched once per origin, even when many threads ask at once
            rules = self._robots.get((origin, source.name))
            if rules is None:
                rules = self._robots[(origin, source.name)] = self._read_robots(source, origin)
        if isinstance(rules, Exception):
            raise rules
        if not rules.can_fetch(url, ROBOTS_AGENT):
            raise _Refused(f"{shown(url)} is disallowed by {origin}/robots.txt")

    def _read_robots(self, source: WebSource, origin: str) -> Protego | _Refused | _Failed:
        """The origin's rules. As RFC 9309 has it, a 4xx means no rules and a server error means refuse all;
        a host that cannot be reached at all fails its pages instead, as fetching them would."""
        url = f"{origin}/robots.txt"
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response, body = self._request(source, url, {}, ROBOTS_MAX_BYTES)
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    target = urljoin(url, location)
                    if urlsplit(target)[:2] != urlsplit(url)[:2]:  # only within the origin
                        return Protego.parse("")
                    url = target
                    continue
                if 400 <= response.status_code < 500:
                    return Protego.parse("")
                if response.status_code != 200:
                    return _Refused(f"{origin}/robots.txt answered HTTP {response.status_code}: every page refused")
                return Protego.parse(body.decode("utf-8", errors="replace"))
        except _ServerError as exc:
            return _Refused(f"{origin}/robots.txt answered {exc}: every page refused")
        except _Failed as exc:
            return exc
        except _Refused as exc:
            return exc
        return _Refused(f"{origin}/robots.txt redirects too often: every page refused")


def _content_type(header: str | None) -> tuple[str | None, str | None]:
    """The Content-Type as sent (kept on the stored object) and its media type; a malformed one is dropped, so a
    hostile header cannot break the store's own request."""
    if not header or len(header) > 200 or not header.isascii() or not header.isprintable():
        return None, None
    media = header.split(";", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", media):
        return None, None
    return header, media


def _ascii_host(name: str) -> str:
    """A host name as DNS takes it (IDNA-encoded, lower-cased); an IPv6 literal as it is."""
    name = name.strip().strip("[]")
    if ":" in name:
        return name.lower()
    try:
        return httpx.URL(f"http://{name}/").raw_host.decode("ascii").lower()
    except httpx.InvalidURL:
        return name.lower()


def _transport_reason(exc: httpx.HTTPError, source: WebSource) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within the connect timeout of {source.connect_timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "the connection broke"
    if isinstance(exc, httpx.DecodingError):
        return "the body cannot be decoded (its Content-Encoding)"
    return f"request failed ({type(exc).__name__})"
