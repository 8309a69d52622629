"""The research-compilation flow end to end: a real Prefect server, SeaweedFS, a local web, SQLite and PostgreSQL.

A generated web (``bpo.research.samples``: six sources of differing reliability, two copying a third's
errors, some pages broken) is served on 127.0.0.1; a PDF and a CSV sit in a corpus folder; a SQLite and a
PostgreSQL table hold the client's own records. An agent (a thread, through the review service) answers
every candidates item by the truth and approves the report's gate; the refresh a week later reports
exactly what changed.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, text

from bpo.research.samples import Web, make_web
from tests.web import Reply, Request, serve

pytestmark = pytest.mark.slow


def _routes(web: Web) -> Any:
    """Each page with an ETag; a request that names the current one gets 304."""
    def answer(request: Request) -> Reply:
        page = web.pages.get(request.path)
        if page is None:
            return Reply(404, b"gone", content_type="text/plain")
        etag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'
        if page.status == 200 and request.headers.get("if-none-match") == etag:
            return Reply(304, b"", headers={"ETag": etag}, content_type=None)
        return Reply(page.status, page.body, headers={"ETag": etag}, content_type=page.content_type)
    return answer


def _pdf(path: Path, lines: list[str]) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))


def _tables(url: str, web: Web) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS accounts"))
        conn.execute(text("CREATE TABLE accounts (reg TEXT PRIMARY KEY, telephone TEXT, employees TEXT)"))
        conn.execute(text("INSERT INTO accounts VALUES (:reg, :phone, :employees)"), [
            {"reg": s["identifiers"]["reg"],  # the client's records lack what no web source states either
             "phone": web.truth[(s["id"], "phone")] if ("registry", s["id"], "phone") in web.stated else None,
             "employees": web.truth[(s["id"], "employees")]} for s in web.subjects])
    engine.dispose()


@pytest.fixture
def research(tmp_path: Path, stack: dict[str, str], postgres: str) -> Iterator[tuple[Web, Path, Any]]:
    web = make_web(8, seed=5, conflict_share=0.35)
    web.state("C00003", "founded", None)  # no source states it yet: a refresh adds it
    web.state("C00006", "phone", None, truth=False)  # a required field no source states: an agent enters it
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    first = web.subjects[0]
    _pdf(corpus / "annual-report.pdf", [f"Annual report of {first['name']}",
                                        f"Employees: {web.truth[(first['id'], 'employees')]}"])
    with (corpus / "filings.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["company name", "reg", "e-mail"])
        for s in web.subjects[:4]:
            writer.writerow([s["name"], s["identifiers"]["reg"], web.truth[(s["id"], "email")]])
    lite = f"sqlite:///{tmp_path}/crm.db"
    _tables(lite, web)
    _tables(postgres, web)
    with serve({}) as server:
        server.routes["*"] = _routes(web)
        brief = web.brief(server.base, completeness=0.75)
        query = "SELECT telephone, employees FROM accounts WHERE reg = :reg"
        brief["sources"] += [{"kind": "corpus", "name": "filings", "path": str(corpus), "trust": 0.7},
                             {"kind": "sql", "name": "crm-sqlite", "database": lite, "query": query, "trust": 0.7},
                             {"kind": "sql", "name": "crm-postgresql", "database": postgres, "query": query,
                              "trust": 0.7}]
        path = tmp_path / "company_profiles.yaml"
        path.write_text(yaml.safe_dump(brief, sort_keys=False))
        yield web, path, server


def _agent(web: Web, stop: threading.Event, answered: list[dict[str, Any]]) -> threading.Thread:
    """Answers every candidates item by the truth (a candidate when one is right, else the value entered with
    a citation), and approves the report's gate once the facts are settled."""
    from bpo.db.models import ReviewItem
    from bpo.db.session import session_scope
    from bpo.research.brief import ResearchField
    from bpo.research.normalize import normalize_values
    from bpo.research.samples import FIELDS
    from bpo.review import resolve
    from bpo.settings import get_settings

    def truth_of(subject: str, field: str) -> str | None:
        value = web.truth.get((subject, field))
        if value is None:
            return None
        return normalize_values(ResearchField(name=field, **FIELDS[field]), [value])[0]

    def work() -> None:
        settings = get_settings()
        while not stop.is_set():
            with session_scope(settings.ops_database_url or "") as s:
                items = [(i.id, i.kind, i.record_key, i.source) for i in
                         s.query(ReviewItem).filter(ReviewItem.status == "open", ReviewItem.kind.in_(
                             ("candidates", "gate")))]
            for item_id, kind, key, source in items:
                if kind == "gate":
                    resolve(settings, item_id, actor="supervisor", approve=True, reason="read and approved")
                    continue
                subject, field = key.split("|", 1)
                want = truth_of(subject, field)
                pick = next((n for n, c in enumerate(source["candidates"]) if c["normalized"] == want), None)
                if pick is not None:
                    decision: dict[str, Any] = {"candidate": pick}
                elif want is not None:
                    decision = {"value": web.truth[(subject, field)],
                                "citation": {"location": "https://registry.example/annual", "snippet": "as filed"}}
                else:
                    decision = {"not_found": True, "note": "no source states it"}
                answered.append({"key": key, **decision})
                resolve(settings, item_id, actor="agent", decision=decision)
            time.sleep(0.3)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _published(result: dict[str, Any]) -> dict[str, bytes]:
    from bpo.run import get_store

    store = get_store()
    return {name: store.get_bytes(key) for name, key in result["keys"].items()}


def test_compiled_cited_reviewed_gated_published_and_a_weekly_refresh_reports_exactly_what_changed(
        research: tuple[Web, Path, Any]) -> None:
    import httpx
    from openpyxl import load_workbook

    from bpo.research.brief import ResearchField
    from bpo.research.normalize import normalize_values
    from bpo.research.publish import read_edition
    from bpo.research.samples import FIELDS
    from flows.research_compilation import research_compilation

    web, brief, server = research
    stop = threading.Event()
    answered: list[dict[str, Any]] = []
    agent = _agent(web, stop, answered)
    try:
        result = research_compilation(brief=str(brief))
        assert result["published"] is True
        # every source was read once; a broken page is recorded and the run went on
        by_source = {s["source"]: s for s in result["sources"]}
        for name in {web.layout[p][0] for p, page in web.broken.items() if page.status >= 400}:
            assert by_source[name]["failed"] >= 1, by_source[name]
        unreadable = {u["location"].removeprefix(server.base) for u in result["unreadable"]}
        assert unreadable == {p for p, page in web.broken.items() if page.status == 200}  # the corrupt PDFs
        assert by_source["filings"]["fetched"] == 2 and by_source["crm-postgresql"]["fetched"] == 8
        # every page fetched once in a run (a page answering 5xx is retried)
        assert {p: n for p, n in server.hits.items() if n != 1 and web.pages[p].status < 500} == {}
        # what went out: the four formats, readable, every value right and cited
        files = _published(result)
        assert set(files) >= {"md", "html", "xlsx", "csv"}
        sheet = load_workbook(io.BytesIO(files["xlsx"]), read_only=True)["Facts"]
        assert len(list(sheet.iter_rows(min_row=2))) == 8 * len(FIELDS)
        rows = list(csv.DictReader(io.StringIO(files["csv"].decode("utf-8-sig"))))
        assert rows and all(r["location"] for r in rows if r["value"])
        assert "999 999 9999" not in files["csv"].decode()  # a script's text is never read as a fact
        assert "<script" not in files["html"].decode().lower()
        facts = read_edition(files["json"])
        for fact in facts:
            want = web.truth.get((fact.subject_id, fact.field))
            want_norm = None if want is None else normalize_values(
                ResearchField(name=fact.field, **FIELDS[fact.field]), [want])[0]
            assert fact.value == want_norm, (fact.subject_id, fact.field, fact.value, want_norm, fact.status)
            if fact.value is not None:
                assert fact.citations, fact
                for c in fact.citations:  # a citation is where the value is stated, not merely a page of the subject
                    if c.location.startswith(server.base):
                        path = c.location.removeprefix(server.base)
                        source, _, subject, _ = web.layout[path]
                        assert subject == fact.subject_id
        assert {"key": "C00006|phone", "value": web.truth[("C00006", "phone")],
                "citation": {"location": "https://registry.example/annual", "snippet": "as filed"}} in answered
        assert any("candidate" in a for a in answered), "contested fields were settled by picking a candidate"
        # the link artifact's presigned URL reads the report without credentials
        assert httpx.get(result["links"]["html"], timeout=10).status_code == 200

        # a week later: one phone changed everywhere, an email gone from every source, a year now stated
        old_phone = web.truth[("C00001", "phone")]
        web.state("C00001", "phone", old_phone[:-4] + ("0000" if not old_phone.endswith("0000") else "1111"))
        web.state("C00002", "email", None)
        web.state("C00003", "founded", "1987")
        server.requests.clear()
        asked_before = len(answered)
        again = research_compilation(brief=str(brief))
        assert again["published"] is True
        changed = again["changes"]
        assert changed == {"changed": 1, "added": 1, "unsupported": 1}, changed
        conditional = [r for r in server.requests if "if-none-match" in r.headers]
        assert conditional, "unchanged pages are asked conditionally"
        assert sum(s["not_modified"] for s in again["sources"]) > 0
        report = _published(again)["changes"].decode()
        names = {s["id"]: s["name"] for s in web.subjects}
        assert all(f"{names[sid]} | {field} | {kind}" in report for sid, field, kind in [
            ("C00001", "phone", "changed"), ("C00002", "email", "unsupported"), ("C00003", "founded", "added")])
        # questions answered last week with the same candidates are not asked again
        assert all(a["key"].split("|")[0] in ("C00001", "C00002", "C00003") for a in answered[asked_before:])
    finally:
        stop.set()
        agent.join(timeout=5)


def test_the_report_gate_answered_in_the_prefect_ui_resume_form_rejects_and_nothing_is_published(
        tmp_path: Path, stack: dict[str, str]) -> None:
    """The resume form's answer (what the Prefect UI posts) is recorded as the gate's decision, audited."""
    from prefect.client.orchestration import get_client

    from bpo.db.models import AuditEvent, ReviewItem
    from bpo.db.session import session_scope
    from bpo.review import resolve
    from bpo.run import get_store
    from bpo.settings import get_settings
    from flows.research_compilation import research_compilation

    web = make_web(3, seed=9, broken_share=0.0)
    settings = get_settings()
    done = threading.Event()

    def reviewer() -> None:  # candidates by the service; the gate through the Prefect API, as the UI does
        while not done.is_set():
            with session_scope(settings.ops_database_url or "") as s:
                items = [(i.id, i.kind, i.flow_run_id, i.source) for i in s.query(ReviewItem).filter(
                    ReviewItem.status == "open", ReviewItem.process == "company-profiles")]
            for item_id, kind, run_id, source in items:
                if kind == "candidates":
                    resolve(settings, item_id, actor="agent", decision={"candidate": 0} if source["candidates"]
                            else {"not_found": True, "note": "looked everywhere"})
                    continue
                with get_client(sync_client=True) as client:
                    state = client.read_flow_run(run_id).state
                    if state is not None and state.is_paused():
                        client.resume_flow_run(run_id, run_input={"decision": "reject",
                                                                  "reason": "figures need a second look"})
                        return
            time.sleep(0.3)

    with serve({}) as server:
        server.routes["*"] = _routes(web)
        path = tmp_path / "profiles.yaml"
        path.write_text(yaml.safe_dump(web.brief(server.base), sort_keys=False))
        thread = threading.Thread(target=reviewer, daemon=True)
        thread.start()
        try:
            result = research_compilation(brief=str(path))
        finally:
            done.set()
            thread.join(timeout=5)
    assert result["published"] is False and "keys" not in result
    with session_scope(settings.ops_database_url or "") as s:
        gate = s.query(ReviewItem).filter_by(flow_run_id=result["flow_run_id"], kind="gate").one()
        assert (gate.status, gate.decided_by, gate.reason) == ("rejected", "prefect-ui", "figures need a second look")
        assert s.query(AuditEvent).filter_by(item_id=gate.id, actor="prefect-ui").count() >= 1
    store = get_store()
    run_keys = [k for k in store.list_keys(store.key("runs", "company-profiles")) if result["flow_run_id"] in k]
    assert run_keys and not [k for k in run_keys if "/deliverable/" in k]  # drafted, never published

