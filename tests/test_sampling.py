"""Quality sampling: which straight-through records are sampled, what a decision of a sample says, and the
measured accuracy (with its Wilson interval) on the dashboard. A real SQLite ops database, no services.

The end-to-end path (a run sends its samples to review, blind, and loads them after) is in
``test_flow_decisions.py``.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from bpo import review, users
from bpo.console import dashboard
from bpo.console.app import create_app
from bpo.db.session import upgrade
from bpo.routing import pick_samples
from bpo.samples import make_records
from bpo.settings import Settings
from tests.test_review import item_id, keep_open, make_item, store

PASSWORD = "correct horse battery"


def _raw(n: int) -> pa.Table:
    rows = make_records(n, seed=3, review_fraction=0.0)
    return pa.Table.from_pylist([{**r, "_row": i, "_source_row": i + 2} for i, r in enumerate(rows)])


def test_a_share_of_records_is_sampled_by_their_content_whatever_their_order() -> None:
    table = _raw(4000)
    chosen = pick_samples(table, "customer_onboarding", 0.1)
    assert 320 <= chosen.sum() <= 480, chosen.sum()
    ids = set(table.column("customer_id").to_numpy()[chosen])
    shuffled = table.take(random.Random(1).sample(range(table.num_rows), table.num_rows))
    again = pick_samples(shuffled.drop_columns(["_row", "_source_row"]), "customer_onboarding", 0.1)
    assert set(shuffled.column("customer_id").to_numpy()[again]) == ids, "the same records, in any order or chunk"
    assert pick_samples(table, "vendor_setup", 0.1).tolist() != chosen.tolist(), "each process draws its own"
    assert not pick_samples(table, "customer_onboarding", 0.0).any()
    assert pick_samples(table, "customer_onboarding", 1.0).all()


def test_the_wilson_interval() -> None:
    assert dashboard.wilson(0, 0) == (0.0, 1.0)
    low, high = dashboard.wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = dashboard.wilson(90, 100)
    assert (low, high) == (pytest.approx(0.8256, abs=1e-4), pytest.approx(0.9448, abs=1e-4))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    upgrade(url)
    return Settings(ops_database_url=url)


def test_a_samples_outcome_measures_accuracy_on_the_dashboard_and_the_agent_is_not_told(settings: Settings) -> None:
    run_id = str(uuid.uuid4())
    samples = [make_item(run_id, r, failed_checks=[]) for r in range(2, 7)]
    for item in samples:
        item.sample = True
    ordinary = make_item(run_id, 7)
    store(settings.ops_database_url or "", [*samples, ordinary])
    keep_open(settings.ops_database_url or "", run_id)
    ids = [item_id(settings, run_id, r) for r in range(2, 8)]

    agent = "ana"
    users.add_user(settings, agent, PASSWORD, "agent")
    token = {"Authorization": f"Bearer {users.issue_token(settings, agent)[1]}"}
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        shown = client.get(f"/api/items/{ids[0]}", headers=token).json()
        assert "sample" not in str(shown).lower(), "blind: nothing tells the agent this is a sample"
        listed = client.get("/api/items", headers=token).json()
        assert "sample" not in str(listed).lower()

    review.resolve(settings, ids[0], actor=agent, approve=True)
    review.resolve(settings, ids[1], actor=agent, approve=True)
    review.resolve(settings, ids[2], actor=agent, approve=True,
                   sets={"first_name": "Someone-Else"})  # the record as automation proposed it was wrong
    review.resolve(settings, ids[3], actor=agent, approve=False, reason="not our customer")
    # a value given back as it was proposed is no correction
    review.resolve(settings, ids[4], actor=agent, approve=True, sets={"country": samples[4].proposed["country"]})
    review.resolve(settings, ids[5], actor=agent, approve=True)  # not a sample: not counted
    outcomes = [review.get_item(settings, i).sample_outcome for i in ids]
    assert outcomes == ["correct", "correct", "corrected", "rejected", "correct", None]

    figures = dashboard.metrics(settings)
    accuracy = figures["accuracy"]["customer_onboarding"]
    assert (accuracy["samples"], accuracy["correct"], accuracy["corrected"], accuracy["rejected"]) == (5, 3, 1, 1)
    assert accuracy["share"] == 0.6 and (accuracy["low"], accuracy["high"]) == dashboard.wilson(3, 5)
    svg = dashboard.charts(figures)[-1]
    assert "Straight-through accuracy" in svg and 'class="chart-interval"' in svg and "60%" in svg
