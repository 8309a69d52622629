"""Decisions carry over, repeated keys are one decision, passing records go straight through, one run per batch.

End to end against a real Prefect server, SeaweedFS and SQLite; the agent works from another thread.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine, select, text

from bpo.db.models import AuditEvent
from bpo.db.session import session_scope
from bpo.samples import make_records, to_csv
from bpo.spec import SPECS_DIR
from bpo.target import count_rows
from tests.cli import BPO, bpo

pytestmark = pytest.mark.slow


def _settings() -> Any:
    from bpo.settings import Settings

    return Settings()


def _open_items(batch: Path) -> list[Any]:
    from bpo.review import list_items

    return [i for i in list_items(_settings()) if str(batch) in _batch_of(i.flow_run_id)]


def _batch_of(flow_run_id: str) -> str:
    from bpo.db.models import Run

    with session_scope(_settings().ops_database_url) as s:
        run = s.get(Run, flow_run_id)
        return run.batch if run else ""


def _wait_for(predicate: Any, what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(url: str) -> int:
    engine = create_engine(url)
    try:
        return count_rows(engine, "customers")
    except Exception:  # the table does not exist yet: nothing loaded
        return 0
    finally:
        engine.dispose()


class Agent(threading.Thread):
    """Resolves the batch's items as they appear: ``decide(item) -> (approve, reason)`` or the keyword
    arguments of ``resolve``; notes what it saw."""

    def __init__(self, batch: Path, decide: Any, *, expect: int | None = None, look: Any = None) -> None:
        super().__init__(daemon=True)
        self.batch, self.decide, self.expect, self.look = batch, decide, expect, look
        self.seen: list[Any] = []
        self.looked: Any = None
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        from bpo.review import resolve

        try:
            settings = _settings()
            while not self.stop.is_set():
                items = _open_items(self.batch)
                if items and (self.expect is None or len(items) >= self.expect):
                    time.sleep(1)  # every item of the step written
                    items = _open_items(self.batch)
                    if self.look is not None and self.looked is None:
                        self.looked = self.look()
                    for item in items:
                        decided = self.decide(item)
                        if isinstance(decided, tuple):
                            decided = {"approve": decided[0], "reason": decided[1]}
                        resolve(settings, item.id, actor="agent", **decided)
                    self.seen += items
                time.sleep(0.3)
        except BaseException as exc:
            self.error = exc


def _run_with(agent: Agent, **params: Any) -> dict[str, Any]:
    from flows.data_entry import data_entry

    agent.start()
    try:
        return data_entry(**params)
    finally:
        agent.stop.set()
        agent.join(timeout=10)
        assert agent.error is None, agent.error


def test_a_rerun_asks_nothing_already_decided_and_a_changed_record_is_asked_again(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    batch = tmp_path / "carry"
    batch.mkdir()
    records = make_records(80, seed=51, review_fraction=0.1, start=70_000)
    (batch / "forms.csv").write_bytes(to_csv(records))

    first_agent = Agent(batch, lambda item: (False, "not a real customer"))
    first = _run_with(first_agent, batch=str(batch))
    assert first_agent.seen and first["rejected"] >= len(first_agent.seen)

    again_agent = Agent(batch, lambda item: (False, "asked twice"))
    again = _run_with(again_agent, batch=str(batch))
    assert again_agent.seen == [], "nothing already decided is asked again"
    for key in ("records_in", "loaded", "rejected", "superseded", "quarantined"):
        assert again[key] == first[key], key
    assert again["carried_over"] == len(first_agent.seen)
    assert _rows(target_db) == first["loaded"]
    with session_scope(_settings().ops_database_url) as s:
        carried = s.scalars(select(AuditEvent).where(AuditEvent.action == "carried_over",
                                                     AuditEvent.flow_run_id == again["manifest"].split("/")[-2]))
        assert len(list(carried)) == len(first_agent.seen), "each carried-over decision is audited"

    # one held record changes (a new bad email): that one, and only that one, is asked again
    held = next(i for i in first_agent.seen if i.record_key.startswith("forms.csv:")
                and any(c["check"] == "normalize_email" for c in i.failed_checks))
    index = held.source["row"] - 2
    records[index]["email"] = "still-not-an-email"
    (batch / "forms.csv").write_bytes(to_csv(records))
    third_agent = Agent(batch, lambda item: (False, "changed, still bad"))
    third = _run_with(third_agent, batch=str(batch))
    assert [i.record_key for i in third_agent.seen] == [held.record_key]
    assert third["rejected"] == first["rejected"] and third["carried_over"] == len(first_agent.seen) - 1


def test_records_sharing_a_key_are_one_decision_and_the_other_is_superseded(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    batch = tmp_path / "dupes"
    batch.mkdir()
    records = make_records(10, seed=52, review_fraction=0.0, start=71_000)
    records[7]["customer_id"] = records[2]["customer_id"]  # repeated within a file
    (batch / "a.csv").write_bytes(to_csv(records))
    repeat = make_records(1, seed=53, review_fraction=0.0, start=71_004)  # repeats records[4]'s key
    (batch / "b.csv").write_bytes(to_csv(repeat))

    first_of_key = f"key:{records[2]['customer_id']}"

    def decide(item: Any) -> Any:  # the first key keeps its first record (line 4 of a.csv), the other the last
        if item.record_key == first_of_key:
            return {"decision": {"approve": True, "keep": "a.csv:4"}}
        return (True, None)

    agent = Agent(batch, decide, expect=2)
    result = _run_with(agent, batch=str(batch))
    assert sorted(i.record_key for i in agent.seen) == sorted(
        [f"key:{records[2]['customer_id']}", f"key:{records[4]['customer_id']}"])
    for item in agent.seen:
        assert len(item.source["records"]) == 2 and item.failed_checks[0]["check"] == "duplicate_key"
    assert result["records_in"] == 11 and result["loaded"] == 9 and result["superseded"] == 2
    assert result["reviewed"] == 4 and result["approved"] == 2
    assert _rows(target_db) == 9
    with create_engine(target_db).connect() as conn:
        kept = {r.customer_id: r for r in conn.execute(text("SELECT * FROM customers"))}
    first, second = kept[records[2]["customer_id"]], kept[records[4]["customer_id"]]
    assert (first.source_file, first.source_row) == ("a.csv", 4), "the record the agent kept is loaded"
    assert first.email == records[2]["email"].lower()
    assert (second.source_file, second.source_row) == ("b.csv", 2), "by default the last record is kept"


def test_passing_records_load_while_the_others_wait_unless_the_spec_holds_the_batch(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    batch = tmp_path / "straight"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(60, seed=54, review_fraction=0.1, start=72_000)))

    agent = Agent(batch, lambda item: (False, "no"), look=lambda: _rows(target_db))
    result = _run_with(agent, batch=str(batch))
    assert agent.seen and agent.looked == result["loaded"] == result["straight_through"] > 0

    spec = yaml.safe_load((SPECS_DIR / "customer_onboarding.yaml").read_text())
    spec["review"]["hold_batch"] = True
    held_spec = tmp_path / "customer_onboarding_held.yaml"
    held_spec.write_text(yaml.safe_dump(spec))
    again = tmp_path / "held"
    again.mkdir()
    (again / "forms.csv").write_bytes(to_csv(make_records(60, seed=55, review_fraction=0.1, start=73_000)))
    before = _rows(target_db)
    agent = Agent(again, lambda item: (False, "no"), look=lambda: _rows(target_db))
    result = _run_with(agent, batch=str(again), process=str(held_spec))
    assert agent.seen and agent.looked == before, "nothing of a held batch loads before every item is decided"
    assert _rows(target_db) == before + result["loaded"]


def test_a_second_run_of_a_batch_while_one_is_active_is_refused_naming_it(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    from flows.data_entry import data_entry

    batch = tmp_path / "busy"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(40, seed=56, review_fraction=0.1, start=74_000)))
    first = subprocess.Popen([*BPO, "run", "data-entry", str(batch), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        items = _wait_for(lambda: _open_items(batch), "the first run's review items")
        holder = items[0].flow_run_id
        with pytest.raises(Exception, match=holder):
            data_entry(batch=str(batch))
        # the first run may still be raising its items (record items, then the batch's): count by run
        assert {i.flow_run_id for i in _open_items(batch)} == {holder}, "the refused run raised items of its own"
        time.sleep(1)
        assert bpo("review", "resolve", *(str(i.id) for i in _open_items(batch)), "--reject", "--reason", "x",
                   "--as", "a").returncode == 0
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
    assert data_entry(batch=str(batch))["records_in"] == 40, "once the first run has ended, the batch runs again"


def test_a_spec_can_ask_for_a_gate_a_rejected_gate_loads_nothing(stack: dict[str, str], target_db: str,
                                                                 tmp_path: Path) -> None:
    spec = yaml.safe_load((SPECS_DIR / "customer_onboarding.yaml").read_text())
    spec["review"]["gate"] = True
    gated = tmp_path / "customer_onboarding_gated.yaml"
    gated.write_text(yaml.safe_dump(spec))

    batch = tmp_path / "gated"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(30, seed=57, review_fraction=0.1, start=75_000)))
    agent = Agent(batch, lambda item: (False, "client withdrew the batch" if item.kind == "gate" else "bad record"),
                  look=lambda: _rows(target_db))
    result = _run_with(agent, batch=str(batch), process=str(gated))
    kinds = [i.kind for i in agent.seen]
    assert kinds.count("gate") == 1 and kinds[-1] == "gate", "the gate comes after the records' review"
    gate = agent.seen[-1]
    assert gate.source["summary"]["straight_through"] == result["straight_through"] > 0
    assert agent.looked == 0 and _rows(target_db) == 0, "a rejected gate loads nothing"
    assert result["loaded"] == 0 and result["rejected"] + result["superseded"] == result["records_in"] == 30

    clean = tmp_path / "gated-clean"
    clean.mkdir()
    (clean / "forms.csv").write_bytes(to_csv(make_records(5, seed=58, review_fraction=0.0, start=76_000)))
    agent = Agent(clean, lambda item: (True, "checked the totals"), look=lambda: _rows(target_db))
    result = _run_with(agent, batch=str(clean), process=str(gated))
    assert [i.kind for i in agent.seen] == ["gate"] and agent.looked == 0
    assert result["loaded"] == 5 == _rows(target_db)


def test_a_share_of_clean_records_is_reviewed_as_blind_samples_and_a_rerun_samples_the_same(
        stack: dict[str, str], target_db: str, tmp_path: Path) -> None:
    spec = yaml.safe_load((SPECS_DIR / "customer_onboarding.yaml").read_text())
    spec["review"]["sample_share"] = 0.3
    spec["review"]["priority"] = 3
    sampled_spec = tmp_path / "customer_onboarding_sampled.yaml"
    sampled_spec.write_text(yaml.safe_dump(spec))
    batch = tmp_path / "sampled"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(20, seed=59, review_fraction=0.0, start=77_000)))

    rejected: list[str] = []

    def decide(item: Any) -> Any:
        if not rejected:  # the first sample is wrong after all; the others are right as proposed
            rejected.append(item.record_key)
            return (False, "the form was for another branch")
        return (True, None)

    agent = Agent(batch, decide)
    result = _run_with(agent, batch=str(batch), process=str(sampled_spec))
    assert agent.seen and all(i.failed_checks == [] and i.sample and i.priority == 3 for i in agent.seen)
    assert result["sampled"] == len(agent.seen) == result["reviewed"]
    assert result["straight_through"] == 20 - len(agent.seen)
    assert result["loaded"] == 19 == _rows(target_db) and result["rejected"] == 1
    with session_scope(_settings().ops_database_url) as s:
        from bpo.db.models import ReviewItem

        outcomes = sorted(s.scalars(select(ReviewItem.sample_outcome).where(
            ReviewItem.id.in_([i.id for i in agent.seen]))))
    assert outcomes == sorted(["rejected"] + ["correct"] * (len(agent.seen) - 1))

    again_agent = Agent(batch, lambda item: (False, "asked twice"))
    again = _run_with(again_agent, batch=str(batch), process=str(sampled_spec))
    assert again_agent.seen == [], "the same records are sampled again, and their decisions carry over"
    assert again["carried_over"] == len(agent.seen) and again["loaded"] == 19
