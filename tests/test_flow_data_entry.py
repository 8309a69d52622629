"""The data-entry flow end to end against a real Prefect server, SeaweedFS and SQLite / PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bpo import review
from bpo.samples import make_records, to_csv, to_jsonl, write_batch
from bpo.settings import Settings
from bpo.target import count_rows
from tests.cli import BPO, bpo

pytestmark = pytest.mark.slow

def records_of(items: list[dict[str, Any]]) -> int:
    """How many records the items hold: an item for a repeated natural key holds every record of it."""
    return sum(len(i["source"].get("records") or [i["source"]]) for i in items)


def open_items(run_id: str | None = None) -> list[dict[str, Any]]:
    args = ["review", "list", "--json"] + (["--run", run_id] if run_id else [])
    res = bpo(*args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def wait_for_items(expected: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = open_items()
        if len(items) >= expected:
            return items
        time.sleep(1)
    raise AssertionError(f"expected {expected} open review items, found {len(open_items())}")


def wait_until_paused(flow_run_id: str, timeout: float = 120) -> None:
    """Records that pass are loaded before the run pauses for the others: an agent may be quicker than that."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(flow_run_id)).state
            if state is not None and state.is_paused():
                return
            time.sleep(0.2)
    raise AssertionError(f"run {flow_run_id} did not pause")


def target_count(url: str, table: str = "customers") -> int:
    return count_rows(create_engine(url), table)


def in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """The agent works in another thread while the flow runs in the main one, as Prefect expects."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def test_batch_with_review_pauses_resumes_and_loads(stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    from flows.data_entry import data_entry

    counts = write_batch(tmp_path / "batch", n=150, review_fraction=0.04)

    def agent() -> dict[str, Any]:
        run_id = wait_for_items(1)[-1]["flow_run_id"]  # soonest due first: this run's items come last
        wait_until_paused(run_id)  # every item of the step is written
        items = open_items(run_id)
        ambiguous = next(i for i in items if any(c["check"] == "ambiguous_date" for c in i["failed_checks"]))
        refused = bpo("review", "resolve", str(ambiguous["id"]), "--approve", "--as", "agent-1")
        # the CLI refused it (above); corrected in process, as the console would (the CLI's own tests run it)
        fixed = review.resolve(Settings(), ambiguous["id"], actor="agent-1", approve=True,
                               sets={"signup_date": "2024-03-04"})
        rest = [i for i in items if i["id"] != ambiguous["id"]]
        if rest[:-1]:  # one command for a selection (the CLI's bulk resolve)
            bpo("review", "resolve", *(str(i["id"]) for i in rest[:-1]), "--reject", "--reason", "not a real customer",
                "--as", "agent-1")
        last = bpo("review", "resolve", str(rest[-1]["id"]), "--reject", "--reason", "duplicate", "--as", "agent-2")
        return {"items": items, "rest": rest, "refused": refused, "fixed": fixed, "last": last, "at": time.monotonic()}

    thread, box = in_background(agent)
    result = data_entry(batch=str(tmp_path / "batch"))
    finished = time.monotonic()
    thread.join(timeout=10)
    assert "error" not in box, box.get("error")
    work = box["result"]
    checks = {c["check"] for i in work["items"] for c in i["failed_checks"]}
    assert {"ambiguous_date", "expect_column_values_to_be_unique", "normalize_email"} <= checks
    assert work["refused"].returncode == 3 and "ambiguous" in work["refused"].stderr
    assert work["fixed"].status == "approved"
    assert "run resumed" in work["last"].stdout
    assert finished - work["at"] < 3 + 5  # resumes within the poll interval, plus load and publish
    assert result["records_in"] == sum(counts.values())
    assert (result["loaded"] + result["rejected"] + result["superseded"] + result["quarantined"]
            == result["records_in"])
    assert result["rejected"] == records_of(work["rest"]) and result["files_quarantined"] == 1
    assert target_count(target_db) == result["loaded"]

    # the decisions are archived, one line each, with who decided and why
    manifest = read_manifest(result)
    key = next(o["key"] for o in manifest["objects"] if o["key"].endswith("review/decisions.jsonl"))
    decisions = [json.loads(line) for line in read_object(key).decode().splitlines()]
    assert len(decisions) == len(work["items"])
    assert sorted(d["status"] for d in decisions) == ["approved"] + ["rejected"] * (len(work["items"]) - 1)
    assert {d["decided_by"] for d in decisions} == {"agent-1", "agent-2"}
    assert next(d for d in decisions if d["status"] == "approved")["decision"]["signup_date"] == "2024-03-04"
    # one Data Docs page for the batch, whose failing values are those the agent saw
    docs = read_object(next(o["key"] for o in manifest["objects"] if o["key"].endswith("data-docs.html"))).decode()
    assert "expect_column_values_to_be_unique" in docs or "values must be unique" in docs


def test_a_batch_in_many_chunks_finds_duplicates_across_chunks(stack: dict[str, str], target_db: str,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are normalized and validated side by side; what needs the whole batch still sees it whole."""
    from bpo.review import list_items, resolve
    from bpo.settings import Settings, get_settings
    from flows.data_entry import data_entry

    monkeypatch.setenv("BPO_CHUNK_ROWS", "40")
    get_settings.cache_clear()
    records = make_records(150, seed=21, review_fraction=0.0, start=50_000)
    records[120]["customer_id"] = records[5]["customer_id"]  # chunk 3 repeats a key of chunk 0
    records[77]["email"] = "not-an-email"  # a row-local failure in chunk 1
    batch = tmp_path / "chunks"
    batch.mkdir()
    (batch / "a.csv").write_bytes(to_csv(records[:100]))
    (batch / "b.csv").write_bytes(to_csv(records[100:]))

    def agent() -> list[Any]:
        settings = Settings()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            items = list_items(settings, process="customer_onboarding")
            items = [i for i in items if i.source["values"].get("customer_id", "").startswith("C0050")]
            if len(items) >= 2:
                time.sleep(1)
                for item in items:
                    resolve(settings, item.id, approve=False, reason="checked by hand", actor="agent")
                return items
            time.sleep(0.3)
        raise AssertionError("the review items did not appear")

    thread, box = in_background(agent)
    try:
        result = data_entry(batch=str(batch))
    finally:
        thread.join(timeout=30)
        get_settings.cache_clear()
    assert "error" not in box, box.get("error")
    held = {(i.record_key, c["check"]) for i in box["result"] for c in i.failed_checks}
    # the repeated key is one decision over both records: row 5 of a.csv is line 7, row 20 of b.csv line 22
    repeated = next(i for i in box["result"] if i.record_key == f"key:{records[5]['customer_id']}")
    assert [(r["file"], r["row"]) for r in repeated.source["records"]] == [("a.csv", 7), ("b.csv", 22)]
    assert {c["check"] for c in repeated.failed_checks} >= {"duplicate_key", "expect_column_values_to_be_unique"}
    assert any(key == "a.csv:79" and "email" in check for key, check in held), held
    assert len(box["result"]) == 2
    assert result["reviewed"] == 3 and result["rejected"] == 3
    assert result["loaded"] == 147 == target_count(target_db)
    assert result["records_in"] == 150
    keys = [o["key"] for o in read_manifest(result)["objects"]]
    assert sum(k.endswith(".parquet") and "/records/normalized/" in k and "issues" not in k for k in keys) == 4
    assert sum(k.endswith(".failures.parquet") for k in keys) == 4 + 1  # a validation per chunk, one for the batch


def read_object(key: str) -> bytes:
    from bpo.settings import Settings
    from bpo.store import ArtifactStore

    store = ArtifactStore(Settings())
    return store.get_bytes(key.removeprefix(f"s3://{store.bucket}/"))


def read_manifest(result: dict[str, Any]) -> dict[str, Any]:
    return json.loads(read_object(result["manifest"]))


def test_rerun_of_the_same_batch_adds_no_rows_and_archives_everything(stack: dict[str, str], target_db: str,
                                                                      tmp_path: Path) -> None:
    from flows.data_entry import data_entry

    batch = tmp_path / "clean"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(120, seed=3, review_fraction=0.0, start=10_000)))
    first = data_entry(batch=str(batch))
    rows = target_count(target_db)
    second = data_entry(batch=str(batch))
    assert rows == 120 == first["loaded"] == second["loaded"]
    assert target_count(target_db) == rows, "a re-run must not add rows"
    assert first["straight_through_rate"] == 1.0

    manifest = read_manifest(second)
    assert manifest["reconciliation"]["balanced"] is True
    keys = [o["key"] for o in manifest["objects"]]
    for suffix in ("raw/forms.csv", "validation/result.json", "validation/data-docs.html",
                   "validation/batch.failures.parquet", "review/decisions.jsonl"):
        assert any(k.endswith(suffix) for k in keys), suffix
    assert any("/records/normalized/" in k and k.endswith(".parquet") for k in keys)
    assert all(len(o["sha256"]) == 64 and o["size"] >= 0 for o in manifest["objects"])

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        summary = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "customer-onboarding-summary"])))
    assert summary and "straight-through" in str(summary[0].data)


def test_bad_inputs_are_quarantined_with_a_reason_and_the_rest_proceeds(stack: dict[str, str], target_db: str,
                                                                       tmp_path: Path) -> None:
    from bpo.samples import HEADERS
    from bpo.settings import Settings
    from bpo.store import ArtifactStore
    from flows.data_entry import data_entry

    batch = tmp_path / "mixed"
    batch.mkdir()
    records = make_records(30, seed=5, review_fraction=0.0, start=20_000)
    # (A formula in a name field is refused and sent to review: test_normalize's name tests.)
    (batch / "good.csv").write_bytes(to_csv(records[:20]))
    (batch / "good.jsonl").write_bytes(to_jsonl(records[20:]) + b"{not json\n")
    (batch / "empty.csv").write_bytes(b"")
    (batch / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (batch / "no-headers.csv").write_bytes(b"alpha,beta,gamma\n1,2,3\n")
    big = "x" * (50 * 1024 * 1024)
    (batch / "huge-field.csv").write_text(",".join(HEADERS.values()) + "\nC1,Ann," + big + ",a@b.com\n")
    (batch / "notes.pdf").write_bytes(b"%PDF-1.4 not a form")

    result = data_entry(batch=str(batch))
    assert result["files_quarantined"] == 4
    # the bad JSON line, the over-long row, and the row under the unrecognized header
    assert result["records_in"] == 33 and result["quarantined"] == 3
    assert result["loaded"] == 30 == target_count(target_db)

    manifest = read_manifest(result)
    files = {f["file"]: f for f in manifest["reconciliation"]["files"]}
    reasons = {name: (f["reason"] or "") for name, f in files.items() if f["status"] == "quarantined"}
    assert "empty" in reasons["empty.csv"].lower()
    assert "binary" in reasons["binary.csv"].lower()
    assert "header" in reasons["no-headers.csv"].lower()
    assert files["no-headers.csv"]["records_in"] == files["no-headers.csv"]["quarantined"] == 1
    assert "unsupported" in reasons["notes.pdf"].lower()
    assert (files["huge-field.csv"]["status"], files["huge-field.csv"]["quarantined"]) == ("read", 1)
    assert manifest["reconciliation"]["balanced"] is True

    store = ArtifactStore(Settings())
    quarantined = store.list_keys(store.key("quarantine", "customer-onboarding", "mixed") + "/")
    for name in reasons:
        assert any(k.endswith(f"/{name}") for k in quarantined), name
        note = json.loads(store.get_bytes(next(k for k in quarantined if k.endswith(f"/{name}.reason.json"))))
        assert note["reason"] == reasons[name]
    assert any(k.endswith("good.jsonl.bad-rows.jsonl") for k in quarantined)
    huge = json.loads(store.get_bytes(next(k for k in quarantined if k.endswith("/huge-field.csv.bad-rows.jsonl"))))
    assert (huge["row"], huge["reason"]) == (2, "field longer than 100000 characters")


def test_a_workbook_whose_records_cannot_be_counted_fails_the_run_with_a_clear_message(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    from bpo.samples import to_xlsx
    from flows.data_entry import data_entry

    batch = tmp_path / "damaged"
    batch.mkdir()
    records = make_records(5, seed=6, review_fraction=0.0, start=30_000)
    (batch / "good.csv").write_bytes(to_csv(records))
    (batch / "truncated.xlsx").write_bytes(to_xlsx(records)[:700])
    with pytest.raises(RuntimeError) as failure:
        data_entry(batch=str(batch))
    message = str(failure.value)
    assert "records of 1 file(s) quarantined whole could not be counted: truncated.xlsx (not a readable XLSX" in message
    assert "re-run the batch" in message and "manifest.json" in message
    assert target_count(target_db) == 5, "the readable file was still loaded"


@pytest.fixture
def postgres_target(postgres: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Target and ops databases on PostgreSQL, each in its own fresh database."""
    import uuid

    from bpo.db.session import upgrade
    from bpo.settings import get_settings

    base = create_engine(postgres, isolation_level="AUTOCOMMIT")
    names = [f"t_{uuid.uuid4().hex[:10]}", f"o_{uuid.uuid4().hex[:10]}"]
    with base.connect() as conn:
        for name in names:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    target, ops = (postgres.rsplit("/", 1)[0] + f"/{n}" for n in names)
    upgrade(ops)
    monkeypatch.setenv("BPO_TARGET_DATABASE_URL", target)
    monkeypatch.setenv("BPO_OPS_DATABASE_URL", ops)
    get_settings.cache_clear()
    yield target
    get_settings.cache_clear()


def test_whole_flow_on_postgresql_with_review(stack: dict[str, str], postgres_target: str, tmp_path: Path) -> None:
    from flows.data_entry import data_entry

    batch = tmp_path / "pg"
    batch.mkdir()
    (batch / "forms.jsonl").write_bytes(to_jsonl(make_records(200, seed=9, review_fraction=0.03, start=30_000)))

    def agent() -> list[dict[str, Any]]:
        items = wait_for_items(1)
        time.sleep(2)
        items = open_items()
        done = bpo("review", "resolve", *(str(i["id"]) for i in items), "--reject", "--reason", "test", "--as", "agent")
        assert done.returncode == 0, done.stderr
        return items

    thread, box = in_background(agent)
    result = data_entry(batch=str(batch))
    thread.join(timeout=10)
    assert "error" not in box, box.get("error")
    assert result["rejected"] == records_of(box["result"]) >= 5
    assert result["loaded"] == 200 - result["rejected"] == target_count(postgres_target)
    with create_engine(postgres_target).connect() as conn:
        row = conn.execute(text("SELECT * FROM customers ORDER BY customer_id LIMIT 1")).one()
    first = make_records(200, seed=9, review_fraction=0.03, start=30_000)[0]
    assert row.customer_id == first["customer_id"] and row.email == first["email"].lower()
    assert isinstance(row.signup_date, date) and row.opening_balance == Decimal(
        first["opening_balance"].replace("$", "").replace("USD", "").replace(",", "").strip())
    assert row.opening_balance_currency == "USD" and row.source_file == "forms.jsonl" and row.source_row == 1
    assert row.flow_run_id == result["manifest"].split("/")[-2]
    again = data_entry(batch=str(batch))  # the decisions carry over: no one is asked again
    assert again["records_in"] == 200 and target_count(postgres_target) == result["loaded"]
    assert again["carried_over"] == len(box["result"]) and again["rejected"] == result["rejected"]


def test_on_postgresql_the_last_record_of_an_unrouted_repeated_key_is_loaded(
        stack: dict[str, str], postgres_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each chunk's passing records load as it is routed; a key repeated across chunks, which this spec neither
    routes nor checks for uniqueness, loads its last record after the routing, and supersedes the others."""
    import yaml

    from bpo.processes import SHIPPED_DIRS
    from bpo.settings import get_settings
    from flows.data_entry import data_entry

    specs, shipped = tmp_path / "specs", SHIPPED_DIRS[0]
    specs.mkdir()
    spec = yaml.safe_load((shipped / "customer_onboarding.yaml").read_text())
    spec["review"]["route"] = ["low_confidence_mapping"]
    (specs / "customer_onboarding.yaml").write_text(yaml.safe_dump(spec))
    suite = json.loads((SHIPPED_DIRS[1] / "customer_onboarding.json").read_text())
    suite["expectations"] = [e for e in suite["expectations"] if e["type"] != "expect_column_values_to_be_unique"]
    (specs / "customer_onboarding.json").write_text(json.dumps(suite))
    monkeypatch.setenv("BPO_PROCESS_DIRS", str(specs))
    monkeypatch.setenv("BPO_CHUNK_ROWS", "40")
    get_settings.cache_clear()
    records = make_records(100, seed=23, review_fraction=0.0, start=60_000)
    records[90]["customer_id"] = records[3]["customer_id"]  # chunk 1 repeats a key of chunk 0
    records[90]["email"] = "later@example.com"
    batch = tmp_path / "repeated"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(records))
    try:
        result = data_entry(batch=str(batch))
    finally:
        get_settings.cache_clear()
    assert result["records_in"] == 100 and result["superseded"] == 1 and result["reviewed"] == 0
    assert result["loaded"] == 99 == target_count(postgres_target)
    with create_engine(postgres_target).connect() as conn:
        email = conn.execute(text("SELECT email FROM customers WHERE customer_id = :k"),
                             {"k": records[3]["customer_id"]}).scalar_one()
    assert email == "later@example.com"


def test_batch_from_an_s3_inbox_prefix_is_taken_and_cleared(stack: dict[str, str], target_db: str) -> None:
    from bpo.settings import Settings
    from bpo.store import ArtifactStore
    from flows.data_entry import data_entry

    store = ArtifactStore(Settings())
    prefix = store.key("inbox", "data-entry", "from-s3")
    store.put_bytes(f"{prefix}/part-1.csv", to_csv(make_records(25, seed=21, review_fraction=0.0, start=40_000)))
    store.put_bytes(f"{prefix}/sub/part-2.jsonl", to_jsonl(make_records(15, seed=22, review_fraction=0.0,
                                                                         start=41_000)))
    result = data_entry(batch=f"s3://{store.bucket}/{prefix}/")
    assert result["loaded"] == 40 == target_count(target_db)
    assert store.list_keys(prefix + "/") == [], "a finished inbox batch is removed from the inbox"
    assert any(k.endswith("raw/sub/part-2.jsonl") for k in (o["key"] for o in read_manifest(result)["objects"]))


def test_a_second_process_declared_only_by_a_spec_and_a_suite(stack: dict[str, str], target_db: str,
                                                              tmp_path: Path) -> None:
    """vendor_setup has no Python of its own: German headers, day-first dates, euro amounts."""
    from flows.data_entry import data_entry

    batch = tmp_path / "vendors"
    batch.mkdir()
    (batch / "lieferanten.csv").write_text(
        "Kreditor;Firma;E-Mail;Telefon;Country;PLZ;Zahlungsziel;Kreditlimit;Since\n"
        "V00001;Müller GmbH;einkauf@mueller.de;030 1234567;Deutschland;10115;30 days;1.250,00 €;03.04.2021\n"
        "V00002;Dupont SA;achats@dupont.fr;+33 1 42 68 53 00;France;75008;net 60;€ 900;15/01/2020\n",
        encoding="cp1252")
    result = data_entry(batch=str(batch), process="vendor_setup")
    assert result["loaded"] == 2 and result["reviewed"] == 0
    with create_engine(target_db).connect() as conn:
        rows = {r.vendor_code: r for r in conn.execute(text("SELECT * FROM vendors"))}
    assert rows["V00001"].legal_name == "Müller GmbH"
    assert str(rows["V00001"].registered_on) == "2021-04-03", "date_order DMY settles 03.04.2021"
    assert Decimal(str(rows["V00001"].credit_limit)) == Decimal("1250.00")
    assert rows["V00001"].credit_limit_currency == "EUR"
    assert rows["V00001"].phone == "+49301234567" and rows["V00002"].payment_terms == "net60"


def test_bpo_run_waits_for_review_says_so_and_resumes_when_the_cli_resolves(stack: dict[str, str], target_db: str,
                                                                            tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    batch = tmp_path / "cli"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(60, seed=31, review_fraction=0.05, start=50_000)))
    run = subprocess.Popen([*BPO, "run", "data-entry", str(batch), "--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    run_id = wait_for_items(1)[-1]["flow_run_id"]
    wait_until_paused(run_id)
    items = open_items(run_id)
    if items[:-1]:
        assert bpo("review", "resolve", *(str(i["id"]) for i in items[:-1]), "--reject", "--reason", "test",
                   "--as", "a").returncode == 0
    last = bpo("review", "resolve", str(items[-1]["id"]), "--reject", "--reason", "test", "--as", "a")
    resolved_at = time.time()
    assert "run resumed" in last.stdout
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert f"waiting for review: {len(items)} items" in stderr
    result = json.loads(stdout)
    assert result["rejected"] == records_of(items) and result["loaded"] == 60 - records_of(items)

    from uuid import UUID

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(UUID(result["flow_run_id"])), key=lambda s: s.timestamp)
    paused = max(i for i, s in enumerate(states) if s.is_paused())
    running_again = states[paused + 1]
    assert running_again.is_running()
    assert running_again.timestamp.timestamp() - resolved_at < 3.0, "the run resumes within 3 seconds"


def test_a_column_recognized_only_approximately_sends_its_records_to_review(stack: dict[str, str], target_db: str,
                                                                          tmp_path: Path) -> None:
    from flows.data_entry import data_entry

    batch = tmp_path / "fuzzy"
    batch.mkdir()
    records = make_records(4, seed=41, review_fraction=0.0, start=60_000)
    csv_text = to_csv(records).decode().replace("E-mail Address", "Emial Adress", 1)
    (batch / "typo.csv").write_text(csv_text)

    def agent() -> list[dict[str, Any]]:
        wait_for_items(4)
        items = open_items()
        # the agent checks the column and accepts each record as proposed
        done = bpo("review", "resolve", *(str(i["id"]) for i in items), "--approve-passing", "--as", "agent")
        assert done.returncode == 0, done.stderr
        return items

    thread, box = in_background(agent)
    result = data_entry(batch=str(batch))
    thread.join(timeout=10)
    assert "error" not in box, box.get("error")
    assert {c["check"] for i in box["result"] for c in i["failed_checks"]} == {"low_confidence_mapping"}
    assert result["reviewed"] == 4 and result["approved"] == 4 and result["loaded"] == 4
    with create_engine(target_db).connect() as conn:
        emails = set(conn.scalars(text("SELECT email FROM customers")))
    assert emails == {r["email"].lower() for r in records}, "approved records load with their normalized values"


def test_the_demo_runs_a_sample_batch_reviews_it_and_says_where_to_look(stack: dict[str, str], target_db: str) -> None:
    res = subprocess.run([*BPO, "demo", "--records", "90"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "bpo review resolve" in res.stdout, "the demo resolves its items through the CLI"
    assert "where to look" in res.stdout and "manifest.json" in res.stdout
    assert target_count(target_db) > 80
