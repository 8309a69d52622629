"""A research field's ``candidates`` items in process: built with ``candidates_item`` and ``add_items`` as the
research flow writes them, shown by the API and the item page (each candidate with its citations, the source
excerpt beside it, values inert, only http(s) locations as links), answered through the API, the page's forms
and the CLI: a candidate picked, a value entered with its own citation (checked for the field's type), or not
found. Items belong to the shipped cleanup spec's process (whose review names no group, so any agent may
answer) and runs are kept open (``keep_open``), so no answer here needs a Prefect server.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from bpo import review
from bpo.cli import app
from bpo.console.app import create_app
from bpo.db.session import session_scope
from bpo.research.model import Citation
from bpo.research.values import check_value
from bpo.review.candidates import excerpt_around
from bpo.settings import Settings
from tests.test_console import person, sign_in, token_for
from tests.test_review import events, keep_open

PROCESS = "customers-cleanup"
STEP = "candidates"
LATER = datetime(2100, 1, 1, tzinfo=UTC)
READ = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
PAGE = ("Acme Ltd — contact. Our office is open Monday to Friday. Call us on +1 202 555 0143 for orders. "
        "<script>alert('excerpt')</script> Founded 1999.")


def candidates_source(*, required: bool = True, reason: str = "conflict", subject: str = "acme") -> dict[str, Any]:
    web = Citation(source="company-site", location="https://acme.example/contact", where="main > p:nth-of-type(2)",
                   snippet="Call us on +1 202 555 0143", retrieved_at=READ, content_hash="a" * 64)
    return {
        "subject": {"id": subject, "name": "Acme <b>Ltd</b>", "identifiers": {"lei": "5493001KJTIIGC8Y1R12"}},
        "field": {"name": "phone", "type": "phone", "required": required, "country": "US", "labels": ["tel"]},
        "reason": reason, "confidence": 0.55, "proposed": 0,
        "candidates": [
            {"value": "+1 202 555 0143", "normalized": "+12025550143", "confidence": 0.55,
             "citations": [{**web.__dict__, "excerpt": excerpt_around(PAGE, "+1 202 555 0143")},
                           # a research Citation as the extraction makes it, without an excerpt
                           Citation(source="registry", location="javascript:alert(1)", where="row 3",
                                    snippet="tel 202 555 0143", retrieved_at=READ)]},
            {"value": "<script>alert(1)</script>", "normalized": None, "confidence": 0.45,
             "citations": [{"source": "directory", "location": "/corpus/directory.pdf",
                            "where": "page 3 (x 72, y 540)", "snippet": "phone: <script>alert(1)</script>",
                            "excerpt": "Acme   Ltd\n\tphone: <script>"}]},
        ]}


def add_candidates(settings: Settings, run_id: str, **kwargs: Any) -> int:
    row = review.candidates_item(flow_run_id=run_id, process=PROCESS, step=STEP, source=candidates_source(**kwargs),
                                 record_hash=None, due_at=LATER, on_timeout="escalate")
    with session_scope(settings.ops_database_url or "") as s:
        assert review.add_items(s, [row]) == 1
    return next(i.id for i in review.list_items(settings, flow_run_id=run_id) if i.record_key == row["record_key"])


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def run_id(settings: Settings) -> str:
    run = str(uuid.uuid4())
    keep_open(settings.ops_database_url or "", run, step=STEP)
    return run


def test_a_candidates_payload_is_checked_when_the_item_is_made(run_id: str) -> None:
    row = review.candidates_item(flow_run_id=run_id, process=PROCESS, step=STEP, source=candidates_source(),
                                 due_at=LATER, on_timeout="escalate")
    assert (row["kind"], row["record_key"], row["proposed"]) == ("candidates", "acme|phone", {"candidate": 0})
    stored = row["source"]
    # a brief's subject and field are taken as they are, their extraction settings (identifiers, labels) left out
    assert stored["subject"] == {"id": "acme", "name": "Acme <b>Ltd</b>"} and "labels" not in stored["field"]
    cited, bare = stored["candidates"][0]["citations"]
    assert cited["retrieved_at"] == "2026-11-30T09:15:00Z" and cited["content_hash"] == "a" * 64
    assert "+1 202 555 0143" in cited["excerpt"]
    assert (bare["location"], bare["where"], bare["excerpt"], bare["retrieved_at"]) == (
        "javascript:alert(1)", "row 3", "", "2026-11-30T09:15:00Z")
    assert stored["candidates"][1]["citations"][0]["excerpt"] == "Acme Ltd phone: <script>"  # plain, one line

    def refused(change: dict[str, Any]) -> str:
        with pytest.raises(ValidationError) as exc:
            review.candidates_item(flow_run_id=run_id, process=PROCESS, step=STEP,
                                   source={**candidates_source(), **change}, record_hash=None, due_at=LATER,
                                   on_timeout="escalate")
        return str(exc.value)

    assert "field.type" in refused({"field": {"name": "phone", "type": "colour"}})
    assert "reason" in refused({"reason": "curious"})
    assert "proposed is candidate 2, but there are 2" in refused({"proposed": 2})
    assert "a conflict has two candidates or more" in refused({"candidates": candidates_source()["candidates"][:1]})
    uncited = {**candidates_source()["candidates"][0], "citations": []}
    assert "candidates.0.citations" in refused({"candidates": [uncited], "reason": "low_confidence"})
    snippetless = [{k: v for k, v in candidates_source()["candidates"][1]["citations"][0].items() if k != "snippet"}]
    assert "snippet" in refused({"candidates": [candidates_source()["candidates"][0],
                                                {**candidates_source()["candidates"][1], "citations": snippetless}]})
    # the same question in a later run (read again, other confidences) carries its decision over; a new value not
    later = candidates_source()
    later["confidence"] = later["candidates"][0]["confidence"] = 0.6
    later["candidates"][0]["citations"][1] = {**later["candidates"][0]["citations"][1].__dict__,
                                              "retrieved_at": datetime.now(UTC)}
    again = review.candidates_item(flow_run_id=str(uuid.uuid4()), process=PROCESS, step=STEP, source=later,
                                   due_at=LATER, on_timeout="escalate")
    assert again["record_hash"] == row["record_hash"]
    later["candidates"][1]["value"] = "+1 202 555 0199"
    changed = review.candidates_item(flow_run_id=run_id, process=PROCESS, step=STEP, source=later, due_at=LATER,
                                     on_timeout="escalate")
    assert changed["record_hash"] != row["record_hash"]
    # a missing required field may have no candidate at all, and then proposes none
    empty = review.candidates_item(flow_run_id=run_id, process=PROCESS, step=STEP, record_hash=None, due_at=LATER,
                                   on_timeout="escalate", source={**candidates_source(), "reason": "missing",
                                                                  "candidates": [], "proposed": None,
                                                                  "confidence": None})
    assert empty["proposed"] == {} and empty["source"]["candidates"] == []


def test_the_page_shows_each_candidate_with_its_citations_and_excerpt_inert(client: TestClient, settings: Settings,
                                                                          run_id: str) -> None:
    iid = add_candidates(settings, run_id)
    agent = person(settings)
    shown = client.get(f"/api/items/{iid}", headers=token_for(settings, agent)).json()
    assert shown["summary"] == "conflict: phone, 2 candidates"
    assert shown["display"]["rows"][0][:4] == ["0 (proposed)", "+1 202 555 0143", "+12025550143", "0.55"]

    csrf = sign_in(client, agent)
    page = client.get(f"/items/{iid}").text
    assert 'id="choose-0"' not in page and 'id="enter"' not in page  # read-only until claimed
    client.post(f"/items/{iid}/claim", data={"csrf": csrf})
    page = client.get(f"/items/{iid}").text
    assert "sources disagree" in page and "required" in page
    first = re.search(r'<section class="candidate proposed" id="candidate-0".*?</section>', page, re.S)
    second = re.search(r'<section class="candidate" id="candidate-1".*?</section>', page, re.S)
    assert first and second
    assert re.search(r'<input type="radio" name="candidate" value="0" id="choose-0" checked>', first[0])
    assert re.search(r'<label for="choose-0">Candidate 1: <span class="value">\+1 202 555 0143</span>', first[0])
    # an http(s) location is a link that opens no window onto this page; any other location is text
    assert re.search(r'<a href="https://acme.example/contact" class="location" rel="noopener noreferrer"', first[0])
    assert '<span class="location">javascript:alert(1)</span>' in first[0] and 'href="javascript' not in page
    assert '<span class="location">/corpus/directory.pdf</span>' in second[0] and "page 3 (x 72, y 540)" in second[0]
    excerpt = re.search(r'<blockquote class="excerpt">(.*?)</blockquote>', first[0], re.S)
    assert excerpt and "Call us on <mark>+1 202 555 0143</mark> for orders." in excerpt[1]  # the value marked
    # values, snippets and excerpts holding markup are shown as text, never run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in second[0] and "&lt;script&gt;alert(&#39;excerpt&#39;)" in page
    assert "Acme &lt;b&gt;Ltd&lt;/b&gt;" in page and "<script>alert" not in page and "<b>Ltd" not in page
    for form in ("candidate-form", "value-form", "not-found-form"):
        assert f'id="{form}"' in page
    for label in ("entered-value", "cite-location", "cite-snippet", "not-found-note"):
        assert f'<label for="{label}">' in page and f'id="{label}"' in page


def test_a_candidate_picked_through_the_api_and_a_value_entered_through_the_form(client: TestClient,
                                                                               settings: Settings, run_id: str) -> None:
    agent = person(settings)
    headers = token_for(settings, agent)
    picked, entered = add_candidates(settings, run_id, subject="a"), add_candidates(settings, run_id, subject="b")
    client.post(f"/api/items/{picked}/claim", headers=headers)
    done = client.post(f"/api/items/{picked}/resolve", headers=headers, json={"decision": {"candidate": 0}}).json()
    assert done["status"] == "approved"
    item = review.get_item(settings, picked)
    assert item.decision["value"] == "+1 202 555 0143" and item.decision["normalized"] == "+12025550143"
    assert [c["location"] for c in item.decision["citations"]] == ["https://acme.example/contact",
                                                                   "javascript:alert(1)"]

    csrf = sign_in(client, agent)
    client.post(f"/items/{entered}/claim", data={"csrf": csrf})
    cite = {"cite_location": "https://registry.example/acme", "cite_snippet": "Telephone: 202-555-0199"}
    bad = client.post(f"/items/{entered}/resolve", data={"csrf": csrf, "action": "value", "value": "555-01", **cite})
    message = re.search(r'<p class="message" role="status">(.*?)</p>', bad.text)
    assert message and "not a valid phone number in region US" in message[1] and "555-01" not in message[1]
    assert review.get_item(settings, entered).status == "open"
    assert events(settings.ops_database_url or "", entered)[-1].action == "correction_refused"
    client.post(f"/items/{entered}/resolve", data={"csrf": csrf, "action": "value", "value": "202-555-0199",
                                                   "reason": "the registry is current", **cite})
    item = review.get_item(settings, entered)
    assert (item.status, item.decided_by, item.reason) == ("approved", agent, "the registry is current")
    assert (item.decision["candidate"], item.decision["value"], item.decision["normalized"]) == (
        None, "202-555-0199", "+12025550199")
    (citation,) = item.decision["citations"]
    assert (citation["source"], citation["location"], citation["snippet"]) == (
        "agent", "https://registry.example/acme", "Telephone: 202-555-0199")
    assert "decided: <strong>202-555-0199</strong> (entered)" in client.get(f"/items/{entered}").text.lower()


def test_a_decision_of_the_wrong_shape_is_refused_naming_the_field(client: TestClient, settings: Settings,
                                                                   run_id: str) -> None:
    headers = token_for(settings, person(settings))
    iid = add_candidates(settings, run_id)
    client.post(f"/api/items/{iid}/claim", headers=headers)
    cases = [({"candidate": 2}, "candidate: there are 2 candidates (0 to 1)"),
             ({"candidate": -1}, "candidate: Input should be greater than or equal to 0"),
             ({"candidate": 0, "not_found": True, "note": "x"}, "one of candidate, value (with its citation) or "
                                                               "not_found, not candidate and not_found"),
             ({"value": "+1 202 555 0100"}, "citation: an entered value needs its citation"),
             ({"value": "+1 202 555 0100", "citation": {"location": "https://a.example/"}}, "citation.snippet: "
                                                                                           "Field required"),
             ({"value": "+1 202 555 0100", "citation": {"location": " ", "snippet": "tel"}},
              "citation: an entered value's citation needs a location"),
             ({"not_found": True}, "note: saying a field cannot be found needs a note"),
             ({"verdict": "same"}, "verdict: Extra inputs are not permitted"),
             ({}, "answer with one of candidate, value (with its citation) or not_found")]
    for decision, why in cases:
        bad = client.post(f"/api/items/{iid}/resolve", headers=headers, json={"decision": decision})
        assert bad.status_code == 422, decision
        assert bad.json()["detail"].startswith("not a candidates decision") and why in bad.json()["detail"], decision
        assert "202 555 0100" not in bad.json()["detail"]
    assert review.get_item(settings, iid).status == "open"


@pytest.mark.parametrize(("value", "type_", "normalized"), [
    ("(202) 555-0143", "phone", "+12025550143"), ("+44 20 7946 0958", "phone", "+442079460958"),
    ("555-01", "phone", None), ("Info@Acme.Example", "email", "info@acme.example"), ("info@", "email", None),
    ("4 March 2019", "date", "2019-03-04"), ("03/04/2019", "date", None), ("$1,200.50", "money", "1200.50 USD"),
    ("https://acme.example/about", "url", "https://acme.example/about"), ("javascript:alert(1)", "url", None),
    ("1999", "year", "1999"), ("199", "year", None), ("1 250", "count", "1250"), ("-3", "count", None)])
def test_an_entered_value_is_read_as_its_field_type(value: str, type_: Any, normalized: str | None) -> None:
    got = check_value(value, type_)
    assert got.normalized == normalized
    assert (got.reason is None) == (normalized is not None) and value not in (got.reason or "")


def test_a_year_out_of_the_fields_range_is_refused() -> None:
    assert check_value("2190", "year", maximum=2026).reason == "above the field's maximum 2026"
    assert check_value("1400", "year", minimum=1800).reason == "below the field's minimum 1800"


def test_not_found_leaves_an_optional_field_empty_and_sends_a_required_one_to_a_supervisor(
        client: TestClient, settings: Settings, run_id: str) -> None:
    agent, boss = token_for(settings, person(settings)), token_for(settings, person(settings, "supervisor"))
    optional, required = add_candidates(settings, run_id, subject="o", required=False), add_candidates(settings,
                                                                                                       run_id)
    client.post(f"/api/items/{optional}/claim", headers=agent)
    done = client.post(f"/api/items/{optional}/resolve", headers=agent,
                       json={"decision": {"not_found": True, "note": "site and registry checked"}}).json()
    item = review.get_item(settings, optional)
    assert (done["status"], item.status, item.decision, item.reason) == (
        "rejected", "rejected", {"not_found": True, "note": "site and registry checked"}, "site and registry checked")

    client.post(f"/api/items/{required}/claim", headers=agent)
    done = client.post(f"/api/items/{required}/resolve", headers=agent,
                       json={"decision": {"not_found": True, "note": "no source lists a phone"}}).json()
    item = review.get_item(settings, required)
    assert (done["status"], item.status, item.queue, item.decision) == ("escalated", "open", "supervisor", None)
    assert "no source lists a phone" in events(settings.ops_database_url or "", required)[-1].detail["reason"]
    client.post(f"/api/items/{required}/claim", headers=boss)
    final = client.post(f"/api/items/{required}/resolve", headers=boss,
                        json={"decision": {"not_found": True, "note": "confirmed: none published"}}).json()
    assert final["status"] == "rejected"
    assert review.get_item(settings, required).decision == {"not_found": True, "note": "confirmed: none published"}


def test_a_candidates_item_is_answered_from_the_cli(settings: Settings, run_id: str) -> None:
    cli = CliRunner()  # in process, on the ops database (no BPO_TOKEN)
    first, second = add_candidates(settings, run_id, subject="c1"), add_candidates(settings, run_id, subject="c2")
    shown = cli.invoke(app, ["review", "show", str(first)])
    text = " ".join(shown.output.split())  # as wrapped to the terminal
    assert shown.exit_code == 0 and "Acme <b>Ltd</b> (c1) · phone (required)" in text, shown.output
    assert "asked because sources disagree; proposed value's confidence 0.55" in text
    assert "[1] directory: /corpus/directory.pdf (page 3 (x 72, y 540))" in text
    lonely = cli.invoke(app, ["review", "resolve", str(first), "--cite-location", "https://a.example/", "--as", "bob"])
    assert lonely.exit_code == 2 and "--cite-location and --cite-snippet go with --value" in lonely.output
    both = cli.invoke(app, ["review", "resolve", str(first), "--candidate", "1", "--not-found", "--as", "bob"])
    assert both.exit_code == 2 and "say one of --candidate, --value or --not-found" in both.output
    done = cli.invoke(app, ["review", "resolve", str(first), "--candidate", "1", "--as", "bob"])
    assert done.exit_code == 0 and f"item {first} approved" in done.output, done.output
    assert review.get_item(settings, first).decision["candidate"] == 1
    refused = cli.invoke(app, ["review", "resolve", str(second), "--value", "555-01", "--cite-location",
                               "https://a.example/", "--cite-snippet", "tel 555-01", "--as", "bob"])
    assert refused.exit_code == 3 and "not a valid phone number" in refused.output
    entered = cli.invoke(app, ["review", "resolve", str(second), "--value", "+1 202 555 0100", "--cite-location",
                               "https://a.example/", "--cite-snippet", "tel +1 202 555 0100", "--as", "bob"])
    assert entered.exit_code == 0, entered.output
    assert review.get_item(settings, second).decision["normalized"] == "+12025550100"


def test_an_excerpt_is_the_source_text_around_the_value_cut_between_words() -> None:
    page = "intro " * 400 + "Telephone:\n\t+1 202 555 0143 (orders)" + " outro" * 400
    excerpt = excerpt_around(page, "+1 202 555 0143", chars=120)
    assert excerpt.startswith("…intro") and excerpt.endswith("outro…") and len(excerpt) <= 122
    assert "Telephone: +1 202 555 0143 (orders)" in excerpt  # whitespace collapsed, the value whole
    assert excerpt_around(page, "not there", chars=40) == "intro intro intro intro intro intro…"  # the start
    assert excerpt_around("A short page.", "page") == "A short page."
