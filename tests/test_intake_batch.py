"""Intake of whole batches against real S3 (SeaweedFS): every entry of a folder or prefix is accounted for,
nothing outside the batch is read, and a file quarantined whole still counts its records."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from openpyxl import Workbook

from bpo.intake import FileTaken, Source, list_inputs, take_in
from bpo.reconcile import reconcile
from bpo.routing import Routed
from bpo.run import RunContext, get_store
from bpo.spec import ProcessSpec, load_spec
from bpo.store import StoredObject
from bpo.target import Decided, Passed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spec() -> ProcessSpec:
    return load_spec("customer_onboarding")

NOTHING_DECIDED = Decided(loaded={}, rejected={}, superseded={}, approved=0, objects=[])


def run_for(batch: str) -> RunContext:
    run_id = uuid.uuid4().hex
    return RunContext(flow_run_id=run_id, process="customer-onboarding", spec="customer_onboarding", batch=batch,
                      prefix=get_store().key("runs", run_id))


def take_all(run: RunContext, spec: ProcessSpec) -> dict[str, FileTaken]:
    return {source.name: take_in(run, spec, source) for source in list_inputs(run)}


def every_object(prefix: str = "") -> dict[str, bytes]:
    store = get_store()
    return {key: store.get_bytes(key) for key in store.list_keys(prefix)}


def test_links_out_of_the_batch_are_quarantined_and_never_read(s3: dict[str, str], spec: ProcessSpec,
                                                                tmp_path: Path) -> None:
    secret = b"aws_secret_access_key=" + uuid.uuid4().hex.encode()
    outside = tmp_path / "stack"
    outside.mkdir()
    (outside / "stack.env").write_bytes(secret)
    (outside / "more.csv").write_bytes(b"customer_id,email\n" + secret + b",x@y.z\n")
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "good.csv").write_bytes(b"customer_id,email\n1,a@b.c\n")
    (batch / "creds.csv").symlink_to(outside / "stack.env")
    (batch / "shared").symlink_to(outside, target_is_directory=True)
    (batch / "again.csv").symlink_to(batch / "good.csv")
    (batch / "gone.csv").symlink_to(tmp_path / "nowhere.csv")

    run = run_for(str(batch))
    taken = take_all(run, spec)

    assert sorted(taken) == ["again.csv", "creds.csv", "gone.csv", "good.csv", "shared"]
    assert taken["good.csv"].records == 1
    for name in ("creds.csv", "shared"):
        assert taken[name].quarantined == "symbolic link pointing outside the batch folder: never read"
        assert taken[name].uncounted, "records may hide behind a link out of the batch"
    assert taken["again.csv"].quarantined == "symbolic link to 'good.csv' inside the batch: read there, not twice"
    assert taken["gone.csv"].quarantined == "broken symbolic link: nothing to read"
    assert not taken["again.csv"].uncounted and not taken["gone.csv"].uncounted
    # the secret's bytes are nowhere in the bucket: not under raw/, not in the quarantine
    stored = every_object()
    assert stored, "the run wrote its objects"
    assert not [key for key, data in stored.items() if secret in data]
    quarantined = [k for k in stored if "/quarantine/" in f"/{k}" and k.endswith("creds.csv.reason.json")]
    assert quarantined, "the link's reason is in the quarantine"

    reconciliation = reconcile(list(taken.values()), Routed(passed=1, review=0, review_rows=""),
                               Passed(loaded={"good.csv": 1}), NOTHING_DECIDED)
    assert not reconciliation.balanced
    problem = reconciliation.problem() or ""
    assert "records of 2 file(s) quarantined whole could not be counted" in problem
    assert "creds.csv (symbolic link pointing outside the batch folder: never read)" in problem


def test_hidden_files_and_sub_folders_are_read_or_quarantined(s3: dict[str, str], spec: ProcessSpec,
                                                              tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    (batch / "late" / ".cache").mkdir(parents=True)
    (batch / ".hidden.csv").write_bytes(b"customer_id,email\n1,a@b.c\n2,b@c.d\n")
    (batch / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + b"\x00" * 64)
    (batch / "late" / "forms.jsonl").write_bytes(b'{"customer_id": "3"}\n')
    (batch / "late" / ".cache" / "notes.txt").write_bytes(b"name\nAnn\nBob\n")
    taken = take_all(run_for(str(batch)), spec)
    assert sorted(taken) == [".DS_Store", ".hidden.csv", "late/.cache/notes.txt", "late/forms.jsonl"]
    assert taken[".hidden.csv"].records == 2 and taken["late/forms.jsonl"].records == 1
    assert "file name has no extension" in (taken[".DS_Store"].quarantined or "")
    assert taken[".DS_Store"].held == 0 and not taken[".DS_Store"].uncounted  # binary: no record in it
    assert taken["late/.cache/notes.txt"].held == 2  # its lines minus the header


def test_an_s3_prefix_lists_hidden_files_too(s3: dict[str, str], spec: ProcessSpec) -> None:
    store = get_store()
    prefix = store.key("inbox", "customer-onboarding", uuid.uuid4().hex)
    store.put_bytes(f"{prefix}/.hidden.csv", b"customer_id\n1\n")
    store.put_bytes(f"{prefix}/sub/forms.csv", b"customer_id\n2\n")
    store.put_bytes(f"{prefix}/sub/", b"")  # a folder marker some tools write
    sources = list_inputs(run_for(f"s3://{store.bucket}/{prefix}"))
    assert [s.name for s in sources] == [".hidden.csv", "sub/forms.csv"]


def test_a_file_quarantined_whole_counts_its_records(s3: dict[str, str], spec: ProcessSpec, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "no-headers.csv").write_bytes(b"alpha,beta\n1,2\n3,4\n")
    (batch / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (batch / "empty.json").write_bytes(b"")
    wb = Workbook()
    wb.active.append(["customer_id"])
    wb.active.append(["1"])
    buf = io.BytesIO()
    wb.save(buf)
    (batch / "truncated.xlsx").write_bytes(buf.getvalue()[:700])
    taken = take_all(run_for(str(batch)), spec)
    assert (taken["no-headers.csv"].held, taken["no-headers.csv"].uncounted) == (2, False)
    assert (taken["binary.csv"].held, taken["binary.csv"].uncounted) == (0, False)
    assert (taken["empty.json"].held, taken["empty.json"].uncounted) == (0, False)
    assert taken["truncated.xlsx"].uncounted
    counts = {f.file: f for f in reconcile(list(taken.values()), Routed(passed=0, review=0, review_rows=""),
                                           Passed(loaded={}), NOTHING_DECIDED).files}
    assert (counts["no-headers.csv"].records_in, counts["no-headers.csv"].quarantined) == (2, 2)
    assert counts["no-headers.csv"].balanced and not counts["truncated.xlsx"].balanced


def test_reconcile_sums_a_workbooks_sheets(spec: ProcessSpec) -> None:
    staged = StoredObject(key="raw/book.xlsx", size=1, sha256="0")
    book = FileTaken(name="book.xlsx", staged=staged, records=3, sources=["book.xlsx#A", "book.xlsx#B"])
    decided = Decided(loaded={"book.xlsx#B": 1}, rejected={"book.xlsx#A": 1}, superseded={}, approved=1, objects=[])
    files = reconcile([book], Routed(passed=1, review=2, review_rows=""), Passed(loaded={"book.xlsx": 1}),
                      decided).files
    assert (files[0].loaded, files[0].rejected, files[0].balanced) == (2, 1, True)
    assert Source(name="x").refused is None
