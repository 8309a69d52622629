"""The scheduled deployments: deployed from prefect.yaml, the schedule fires, a worker completes the runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bpo import review
from bpo.samples import make_records, to_csv, to_jsonl
from bpo.settings import Settings
from bpo.stack import deploy, start_worker, stop, worker_env

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def flow_runs(deployment_name: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        named = DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
        return client.read_flow_runs(deployment_filter=named)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_schedule_picks_up_inbox_batches_once_and_a_worker_completes_them(stack: dict[str, str],
                                                                           tmp_path: Path) -> None:
    from bpo.store import ArtifactStore

    settings = Settings()
    store = ArtifactStore(settings)
    clean = make_records(40, seed=11, review_fraction=0.0, start=500_000)
    store.put_bytes(store.key("inbox", "data-entry", "b-clean", "forms.csv"), to_csv(clean))
    needs_review = make_records(30, seed=12, review_fraction=0.1, start=600_000)
    store.put_bytes(store.key("inbox", "data-entry", "b-review", "forms.jsonl"), to_jsonl(needs_review))

    target = f"sqlite:///{tmp_path}/target.db"
    # the worker persists task results in the S3 block, as `bpo stack up --worker` sets it up
    worker = start_worker(api_url=stack["api"], pool=settings.work_pool, log=tmp_path / "worker.log", cwd=ROOT, env={
        **worker_env(settings), "BPO_TARGET_DATABASE_URL": target, "BPO_INBOX_SETTLE_SECONDS": "0",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5"})
    try:
        from bpo.stack import configure_prefect

        configure_prefect(settings)
        res = deploy(settings, ROOT)
        assert res.returncode == 0, res.stdout + res.stderr
        from prefect.client.orchestration import get_client
        from prefect.deployments import run_deployment

        with get_client(sync_client=True) as client:
            dispatch = client.read_deployment_by_name("dispatch-inbox/data-entry-inbox")
        assert [(s.active, s.schedule.interval.total_seconds()) for s in dispatch.schedules] == [(True, 60)]
        # one dispatch now, beside the schedule's own ticks (not waited for): each batch still starts once
        run_deployment("dispatch-inbox/data-entry-inbox", timeout=0)

        def review_items() -> list[Any]:  # in process: the CLI's own tests are in test_review_cli*.py
            return [i for i in review.list_items(settings) if i.source["file"] == "forms.jsonl"]

        items = wait_for(review_items, 180, "the review batch's items (its run suspends for review)")
        time.sleep(2)
        items = review_items()
        done = review.resolve_many(settings, [i.id for i in items], actor="agent", approve=False, reason="test")
        assert sorted(done.decided) == sorted(i.id for i in items), done

        def both_completed() -> list[Any]:
            runs = flow_runs("data-entry")
            done = [r for r in runs if r.state and r.state.is_completed()]
            failed = [r for r in runs if r.state and (r.state.is_failed() or r.state.is_crashed())]
            assert not failed, [(r.name, r.state.message) for r in failed]
            return done if len(done) >= 2 else []

        wait_for(both_completed, 240, "both batch runs to complete on the worker")
        time.sleep(3)  # another dispatch tick must not start the batches again
        runs = flow_runs("data-entry")
        batches = sorted(r.parameters["batch"] for r in runs)
        assert len(batches) == 2 and len(set(batches)) == 2, batches
        with create_engine(target).connect() as conn:
            loaded = conn.scalar(text("SELECT count(*) FROM customers"))
        held = sum(len(i.source.get("records") or [i]) for i in items)  # an item of a repeated key holds each
        assert len(items) >= 3
        assert loaded == 40 + 30 - held  # every record sent to review was rejected
        assert store.list_keys(store.key("inbox", "data-entry") + "/") == []
        assert store.list_keys(store.key("prefect-results") + "/"), "task results persisted in the S3 block"
    finally:
        stop(worker)
