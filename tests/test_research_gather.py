"""Gather: every source read once, raw bytes kept by content hash, and every hostile answer made a reasoned document.

The pages come from a real HTTP server on 127.0.0.1 (tests/web.py). It is allowlisted explicitly
(``private_hosts: ["127.0.0.1"]``), as a client's intranet would be; a source without it proves
that loopback is refused.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from bpo.research.brief import Brief, WebSource
from bpo.research.fetch import MAX_RETRY_AFTER, USER_AGENT, Fetcher, address_refusal, retry_after
from bpo.research.gather import gather, summarize
from bpo.research.model import Document
from bpo.settings import Settings
from bpo.store import ArtifactStore
from tests.web import Reply, Request, serve


class FolderStore:
    """Raw bytes written under a folder: not a mock of S3 but a real local store with the one method gather
    uses (``put_bytes``), so that the fast tests need no service; the slow test below uses SeaweedFS."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.puts: list[str] = []

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.puts.append(key)

    def read(self, document: Document) -> bytes:
        assert document.key is not None
        return (self.root / document.key).read_bytes()


def make_brief(*sources: dict[str, Any], subjects: list[dict[str, Any]] | None = None) -> Brief:
    return Brief.model_validate({"name": "t", "subjects": subjects or [{"id": "s1", "name": "Acme Ltd"}],
                                 "fields": {"phone": {"type": "phone"}}, "sources": list(sources)})


def web_source(base: str, *pages: str, **settings: Any) -> dict[str, Any]:
    return {"kind": "web", "name": "web", "allow": [base + "/"], "pages": [base + p for p in pages],
            "private_hosts": ["127.0.0.1"], "read_timeout": 2, "connect_timeout": 2, "requests_per_second": 100,
            **settings}


def run(brief: Brief, store: FolderStore, previous: list[Document] | None = None) -> dict[str, Document]:
    # a short backoff keeps the retry tests fast; the schedule itself is the product's
    with Fetcher([s for s in brief.sources if isinstance(s, WebSource)], backoff=0.02) as fetcher:
        documents = gather(brief, store, "runs/r1", previous, fetcher=fetcher)
    return {d.location: d for d in documents}


@pytest.fixture
def store(tmp_path: Path) -> FolderStore:
    return FolderStore(tmp_path / "s3")


def test_pages_kept_exactly_by_content_hash(store: FolderStore) -> None:
    latin1 = "Société Générale, Straße 5 — tél. 01 23".encode("cp1252", errors="replace")
    script = b"<html><script>document.title='ran'; fetch('/beacon')</script><p>Phone: 555</p></html>"
    routes = {"/p/acme-ltd": Reply(body=b"<p>Acme</p>"), "/p/bolt-co": Reply(body=b"<p>Acme</p>"),
              "/list": Reply(body=b"<ul><li>Acme</li><li>Bolt</li></ul>"),
              "/latin1": Reply(body=latin1, content_type="text/html; charset=windows-1252"),
              "/script": Reply(body=script)}
    with serve(routes) as web:
        brief = make_brief(web_source(web.base, "/p/{slug}", "/list", "/latin1", "/script"),
                           subjects=[{"id": "s1", "name": "Acme Ltd"}, {"id": "s2", "name": "Bolt Co"}])
        docs = run(brief, store)
        hits = dict(web.hits)
        agents = {r.headers.get("user-agent") for r in web.requests}
    assert {d.status for d in docs.values()} == {"ok"}
    assert hits["/list"] == hits["/latin1"] == 1  # shared by both subjects, fetched once
    assert docs[web.url("/list")].subject_id is None and docs[web.url("/p/bolt-co")].subject_id == "s2"
    for document in docs.values():
        assert document.key == f"runs/r1/raw/{document.content_hash}"
        assert hashlib.sha256(store.read(document)).hexdigest() == document.content_hash
    # the same bytes from two pages are one object
    assert docs[web.url("/p/acme-ltd")].key == docs[web.url("/p/bolt-co")].key
    assert len(store.puts) == len(set(store.puts)) == 4
    assert store.read(docs[web.url("/latin1")]) == latin1  # not decoded, not re-encoded
    assert docs[web.url("/latin1")].content_type == "text/html; charset=windows-1252"  # its charset kept
    assert store.read(docs[web.url("/script")]) == script  # kept as it came; nothing here runs it
    assert hits.get("/beacon") is None
    assert agents == {USER_AGENT}


def test_timeouts_and_errors_fail_the_page_and_the_run_goes_on(store: FolderStore) -> None:
    routes = {"/slow": Reply(body=b"late", delay=5), "/hang": Reply(body=b"<html><p>half", hang=True),
              "/gone": Reply(404), "/ok": Reply(body=b"fine")}
    with serve(routes) as web:
        brief = make_brief(web_source(web.base, "/slow", "/hang", "/gone", "/ok", read_timeout=0.3))
        started = time.monotonic()
        docs = run(brief, store)
        took = time.monotonic() - started
        hits = dict(web.hits)
    assert docs[web.url("/ok")].status == "ok"
    for path in ("/slow", "/hang"):
        assert docs[web.url(path)].status == "failed"
        assert docs[web.url(path)].error == "no answer within the read timeout of 0.3 s"
        assert hits[path] == 1  # a page that hung is not asked again
    assert docs[web.url("/gone")].error == "HTTP 404"
    assert took < 4  # neither the 5 s delay nor the hang was waited out
    summary = summarize(brief, docs.values())[0]
    assert (summary.fetched, summary.failed, summary.refused) == (1, 3, 0)


def test_retries_honour_retry_after_and_give_up(store: FolderStore) -> None:
    routes = {"/busy": [Reply(429, headers={"Retry-After": "1"}), Reply(body=b"after the pause")],
              "/flaky": [Reply(503), Reply(503), Reply(body=b"third time")],
              "/down": Reply(500)}
    with serve(routes) as web:
        brief = make_brief(web_source(web.base, "/busy", "/flaky", "/down", retries=2, concurrency=3,
                                      requests_per_second=100))
        docs = run(brief, store)
        hits = dict(web.hits)
        busy = [r.at for r in web.requests if r.path == "/busy"]
    assert docs[web.url("/busy")].status == docs[web.url("/flaky")].status == "ok"
    assert busy[1] - busy[0] >= 0.95  # waited as the server asked
    assert hits["/flaky"] == 3
    assert docs[web.url("/down")].status == "failed"
    assert docs[web.url("/down")].error == "HTTP 500 after 3 attempts" and hits["/down"] == 3
    # a closed port: connection errors are retried, then the page fails with its reason
    closed = web.base  # the server is stopped now
    brief = make_brief(web_source(closed, "/x", retries=1, robots=False))
    assert run(brief, store)[closed + "/x"].error == "cannot connect after 2 attempts"


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    assert retry_after("2") == 2
    assert retry_after("86400") == MAX_RETRY_AFTER
    soon = retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True))
    assert soon is not None and 8 <= soon <= 10
    assert retry_after(format_datetime(datetime.now(UTC) + timedelta(days=2), usegmt=True)) == MAX_RETRY_AFTER
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert retry_after("soon") is None and retry_after(None) is None


def test_an_enormous_body_fails_by_the_cap_without_being_read(store: FolderStore) -> None:
    routes = {"/endless": Reply(endless=2_000_000_000),
              "/declared": Reply(body=b"x" * 10, headers={"Content-Length": "9000000000"})}
    with serve(routes) as web:
        brief = make_brief(web_source(web.base, "/endless", "/declared", max_bytes=100_000))
        docs = run(brief, store)
        sent = web.sent["/endless"]
    assert docs[web.url("/endless")].status == "failed"
    assert docs[web.url("/endless")].error == "larger than 100000 bytes"
    assert sent < 50_000_000  # the client stopped reading: the rest of the 2 GB never left the server
    assert docs[web.url("/declared")].error == "larger than 100000 bytes (declares 9000000000)"
    assert store.puts == []


def test_allowlist_redirects_and_private_addresses(store: FolderStore) -> None:
    with serve() as web:
        web.routes.update({
            "/a/moved": Reply(302, headers={"Location": "/a/here"}), "/a/here": Reply(body=b"landed"),
            "/a/away": Reply(302, headers={"Location": "/b/secret"}),
            "/a/out": Reply(301, headers={"Location": "http://example.com/a/x?token=abc"}),
            "/a/loop": Reply(302, headers={"Location": "/a/loop"}),
            "/a/to-localhost": Reply(302, headers={"Location": web.base.replace("127.0.0.1", "localhost") + "/a/x"}),
            "/b/secret": Reply(body=b"never")})
        local = web.base.replace("127.0.0.1", "localhost")
        trusted = {**web_source(web.base, "/a/moved", "/a/away", "/a/out", "/a/loop", "/a/to-localhost"),
                   "allow": [web.base + "/a/", local + "/a/"]}
        brief = make_brief(trusted,
                           # the same server without private_hosts: loopback refused, by IP and by name
                           {**web_source(web.base, "/a/here"), "name": "plain", "private_hosts": []},
                           {**web_source(local, "/a/here"), "name": "by-name"},
                           # named explicitly: connected to the address checked, the name kept in Host
                           {**web_source(local, "/a/named"), "name": "named", "private_hosts": ["localhost"]})
        web.routes["/a/named"] = Reply(body=b"intranet")
        docs = {(d.source, d.location): d for d in gather(brief, store, "runs/r1")}
        outside = Fetcher().fetch(WebSource.model_validate(trusted), web.url("/b/secret"))
        hits = dict(web.hits)
        named_host = next(r.headers["host"] for r in web.requests if r.path == "/a/named")

    def doc(path: str, source: str = "web", base: str = web.base) -> Document:
        return docs[(source, base + path)]

    assert doc("/a/moved").status == "ok" and doc("/a/moved").final_url == web.url("/a/here")
    assert doc("/a/away").status == "refused"
    assert doc("/a/away").error == (f"{web.url('/a/away')} redirects to {web.url('/b/secret')}, outside the "
                                    f"allowlist of source 'web'")
    assert doc("/a/out").status == "refused" and "token" not in (doc("/a/out").error or "")
    assert doc("/a/loop").error == "more than 5 redirects"
    assert doc("/a/to-localhost").status == "refused"
    assert doc("/a/to-localhost").error.startswith("localhost resolves to a loopback address")  # type: ignore[union-attr]
    assert doc("/a/here", "plain").status == doc("/a/here", "by-name", local).status == "refused"
    assert "127.0.0.1 resolves to a loopback address" in (doc("/a/here", "plain").error or "")
    assert doc("/a/named", "named", local).status == "ok" and named_host == local.removeprefix("http://")
    assert outside.status == "refused" and "outside the allowlist" in (outside.error or "")
    assert hits.get("/b/secret") is None and hits["/a/here"] == 1  # only the allowed redirect reached it


@pytest.mark.parametrize(("address", "kind"), [
    ("10.1.2.3", "a private address"), ("192.168.0.10", "a private address"),
    ("169.254.169.254", "a link-local address"), ("::1", "a loopback address"),
    ("::ffff:127.0.0.1", "an IPv4-mapped IPv6 address"), ("0.0.0.0", "an unspecified address"),
    ("224.0.0.1", "a multicast address"), ("fe80::1", "a link-local address"),
    ("100.64.0.1", "a non-public address"), ("8.8.8.8", None), ("2606:4700::1111", None)])
def test_address_check(address: str, kind: str | None) -> None:
    assert address_refusal(address) == kind


def test_robots_txt_is_read_once_and_honoured(store: FolderStore) -> None:
    def robots(request: Request) -> Reply:
        if request.headers["host"].startswith("localhost"):  # the second origin's robots.txt is down
            return Reply(503)
        return Reply(body="User-agent: *\nDisallow: /private/\n", content_type="text/plain")

    routes = {"/robots.txt": robots, "/public/1": Reply(body=b"one"), "/public/2": Reply(body=b"two"),
              "/private/3": Reply(body=b"no")}
    with serve(routes) as web:
        local = web.base.replace("127.0.0.1", "localhost")
        brief = make_brief(web_source(web.base, "/public/1", "/public/2", "/private/3"),
                           {**web_source(local, "/public/1", retries=1), "name": "down",
                            "private_hosts": ["localhost"]})
        docs = run(brief, store)
        hits = dict(web.hits)
    assert docs[web.url("/public/1")].status == docs[web.url("/public/2")].status == "ok"
    assert docs[web.url("/private/3")].status == "refused"
    assert docs[web.url("/private/3")].error == f"{web.url('/private/3')} is disallowed by {web.base}/robots.txt"
    assert "/private/3" not in hits
    # RFC 9309: a robots.txt the server cannot give (5xx) forbids the whole origin
    assert docs[local + "/public/1"].status == "refused"
    assert docs[local + "/public/1"].error == (f"{local}/robots.txt answered HTTP 503 after 2 attempts: "
                                               f"every page refused")
    assert hits["/robots.txt"] == 1 + 2 and hits["/public/1"] == 1  # once per origin (the second tried twice)


def test_a_refresh_asks_conditionally_and_unchanged_pages_are_not_modified(store: FolderStore) -> None:
    version = {"etag": '"v1"'}
    stamp = "Mon, 30 Nov 2026 10:00:00 GMT"

    def tagged(request: Request) -> Reply:
        if request.headers.get("if-none-match") == version["etag"]:
            return Reply(304, headers={"ETag": version["etag"]})
        return Reply(body=f"page {version['etag']}", headers={"ETag": version["etag"]})

    def dated(request: Request) -> Reply:
        if request.headers.get("if-modified-since") == stamp:
            return Reply(304)
        return Reply(body=b"dated page", headers={"Last-Modified": stamp})

    with serve({"/tagged": tagged, "/dated": dated}) as web:
        brief = make_brief(web_source(web.base, "/tagged", "/dated"))
        first = run(brief, store)
        second = run(brief, store, list(first.values()))
        version["etag"] = '"v2"'
        third = run(brief, store, list(second.values()))
    tagged_url, dated_url = web.url("/tagged"), web.url("/dated")
    assert first[tagged_url].status == first[dated_url].status == "ok"
    assert first[tagged_url].etag == '"v1"' and first[dated_url].last_modified == stamp
    for url in (tagged_url, dated_url):
        assert second[url].status == "not_modified"
        assert (second[url].key, second[url].content_hash) == (first[url].key, first[url].content_hash)
    assert third[dated_url].status == "not_modified"
    assert third[tagged_url].status == "ok" and third[tagged_url].content_hash != first[tagged_url].content_hash
    assert store.read(third[tagged_url]) == b'page "v2"'


def test_per_host_limits_hold_across_threads(store: FolderStore) -> None:
    pages = [f"/p/{i}" for i in range(10)]
    with serve({p: Reply(body=p, delay=0.15) for p in pages}) as web:
        brief = make_brief(web_source(web.base, *pages, concurrency=2, requests_per_second=1000, robots=False))
        docs = run(brief, store)
        most = web.most_active
    assert {d.status for d in docs.values()} == {"ok"}
    assert most == 2  # in parallel, but never more than the host allows
    with serve({p: Reply(body=p) for p in pages[:6]}) as web:
        brief = make_brief(web_source(web.base, *pages[:6], concurrency=6, requests_per_second=10, robots=False))
        run(brief, store)
        starts = sorted(r.at for r in web.requests)
    assert len(starts) == 6 and starts[-1] - starts[0] >= 0.45  # 10 per second: 5 intervals of 100 ms


def test_corpus_folder_reads_each_supported_file(tmp_path: Path, store: FolderStore) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    files = {"about.html": b"<p>Acme</p>", "sub/report.PDF": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
             "notes.txt": "Téléphone: 01 23".encode("latin-1"), "rows.csv": b"name,phone\nAcme,555\n",
             "deck.pptx": b"PK\x03\x04"}
    for name, data in files.items():
        (corpus / name).write_bytes(data)
    (tmp_path / "outside.txt").write_text("not part of the corpus")
    (corpus / "link.txt").symlink_to(tmp_path / "outside.txt")
    brief = make_brief({"kind": "corpus", "name": "files", "path": str(corpus)},
                       {"kind": "corpus", "name": "missing", "path": str(tmp_path / "nowhere")})
    docs = {d.location: d for d in gather(brief, store, "runs/r1")}
    types = {name: docs[str(corpus / name)].content_type for name in files if not name.endswith(".pptx")}
    assert types == {"about.html": "text/html", "sub/report.PDF": "application/pdf", "notes.txt": "text/plain",
                     "rows.csv": "text/csv"}
    for name, data in files.items():
        if not name.endswith(".pptx"):
            assert store.read(docs[str(corpus / name)]) == data
    assert docs[str(corpus / "deck.pptx")].status == "refused"
    assert docs[str(corpus / "deck.pptx")].error == "unsupported file type (.pptx)"
    assert docs[str(corpus / "link.txt")].error == "a link to a file outside the corpus folder"
    assert docs[str(tmp_path / "nowhere")].error == f"no folder at {tmp_path / 'nowhere'}"
    assert all(d.subject_id is None for d in docs.values())


def test_sql_source_binds_each_subjects_terms(tmp_path: Path, store: FolderStore) -> None:
    database = tmp_path / "client.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE companies (name TEXT, phone TEXT, founded INTEGER)")
        conn.executemany("INSERT INTO companies VALUES (?, ?, ?)",
                         [("O'Brien & Sons", "+353 1 555 0100", 1921), ("Acme Ltd", "555", 1990)])
    subjects = [{"id": "s1", "name": "O'Brien & Sons"}, {"id": "s2", "name": "Nobody'; DROP TABLE companies; --"}]
    brief = make_brief({"kind": "sql", "name": "crm", "database": f"sqlite:///{database}",
                        "query": "SELECT phone, founded FROM companies WHERE name = :name"},
                       {"kind": "sql", "name": "broken", "database": f"sqlite:///{database}",
                        "query": "SELECT phone FROM no_such_table WHERE name = :name"},
                       {"kind": "sql", "name": "secret", "database": "postgresql://u:hunter2@db.invalid/crm",
                        "query": "SELECT 1"}, subjects=subjects)
    docs = {(d.source, d.subject_id): d for d in gather(brief, store, "runs/r1")}
    found, none = docs[("crm", "s1")], docs[("crm", "s2")]
    assert found.status == "ok" and found.location == "sql:crm" and found.content_type == "application/json"
    assert json.loads(store.read(found)) == {"columns": ["phone", "founded"], "rows": [["+353 1 555 0100", 1921]]}
    assert json.loads(store.read(none)) == {"columns": ["phone", "founded"], "rows": []}
    with sqlite3.connect(database) as conn:  # the quote was a value, never SQL
        assert conn.execute("SELECT count(*) FROM companies").fetchone() == (2,)
    broken = docs[("broken", "s1")]
    assert broken.status == "failed" and broken.error == "the query failed: no such table: no_such_table"
    assert "O'Brien" not in (broken.error or "")
    secret = docs[("secret", "s1")]
    assert secret.status == "refused" and "hunter2" not in (secret.error or "") and "BPO_CONNECTIONS" in (
        secret.error or "")


@pytest.mark.slow
def test_s3_corpus_is_read_and_kept_in_the_store(s3: dict[str, str]) -> None:
    store = ArtifactStore(Settings())
    corpus = store.key("corpora", "gather-test")
    store.put_bytes(f"{corpus}/a.html", b"<p>Acme</p>", "text/html")
    store.put_bytes(f"{corpus}/deep/b.csv", b"name\nAcme\n", "text/csv")
    store.put_bytes(f"{corpus}/c.exe", b"MZ")
    store.put_bytes(f"{corpus}/deep/", b"")  # a folder marker
    brief = make_brief({"kind": "corpus", "name": "bucket", "path": f"s3://{store.bucket}/{corpus}/"})
    prefix = store.key("runs", "research-compilation", "gather-test")
    docs = {d.location: d for d in gather(brief, store, prefix)}
    base = f"s3://{store.bucket}/{corpus}"
    assert sorted(docs) == [f"{base}/a.html", f"{base}/c.exe", f"{base}/deep/b.csv"]
    assert docs[f"{base}/c.exe"].status == "refused"
    html = docs[f"{base}/a.html"]
    assert html.status == "ok" and html.key == f"{prefix}/raw/{html.content_hash}"
    assert store.get_bytes(html.key) == b"<p>Acme</p>"
    assert store.get_bytes(docs[f"{base}/deep/b.csv"].key or "") == b"name\nAcme\n"


def test_bytes_just_gathered_are_kept_for_the_extraction_and_the_oldest_dropped_past_the_bound(
        store: FolderStore) -> None:
    from bpo.research.gather import RecentBytes, recent

    with serve({"/p/acme-ltd": Reply(body=b"<p>Phone: 555 0100</p>")}) as web:
        docs = run(make_brief(web_source(web.base, "/p/{slug}")), store)
    document = docs[web.url("/p/acme-ltd")]
    assert document.key is not None and recent.get(document.key) == b"<p>Phone: 555 0100</p>"
    kept = RecentBytes(max_bytes=10)
    kept.put("a", b"12345")
    kept.put("b", b"123456")  # 11 bytes in all: the oldest goes
    kept.put("c", b"x" * 11)  # larger than the bound: never kept
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == (None, b"123456", None)
    assert kept.take("b") == b"123456" and kept.get("b") is None  # taken by the extraction: room again
    kept.put("d", b"x" * 10)
    assert kept.get("d") == b"x" * 10
