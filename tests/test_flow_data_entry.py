"""The data-entry flow end to end against a real Prefect server, SeaweedFS and SQLite / PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from bpo.samples import write_batch

pytestmark = pytest.mark.slow

BPO = [sys.executable, "-m", "bpo.cli"]


def bpo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BPO, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)


def open_items(run_id: str | None = None) -> list[dict[str, Any]]:
    args = ["review", "list", "--json"] + (["--run", run_id] if run_id else [])
    res = bpo(*args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def run_in_thread(batch: Path, **params: Any) -> tuple[threading.Thread, dict[str, Any]]:
    from flows.data_entry import data_entry

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = data_entry(batch=str(batch), **params)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_for_items(expected: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = open_items()
        if len(items) >= expected:
            return items
        time.sleep(1)
    raise AssertionError(f"expected {expected} open review items, found {len(open_items())}")


def target_count(url: str, table: str = "customers") -> int:
    with create_engine(url).connect() as conn:
        return int(conn.scalar(text(f'SELECT count(*) FROM "{table}"')))


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
        wait_for_items(1)
        time.sleep(2)  # let every item of the step be written before reading the queue
        items = open_items()
        ambiguous = next(i for i in items if any(c["check"] == "ambiguous_date" for c in i["failed_checks"]))
        refused = bpo("review", "resolve", str(ambiguous["id"]), "--approve", "--as", "agent-1")
        fixed = bpo("review", "resolve", str(ambiguous["id"]), "--approve", "--set", "signup_date=2024-03-04",
                    "--as", "agent-1")
        rest = [i for i in items if i["id"] != ambiguous["id"]]
        for item in rest[:-1]:
            bpo("review", "resolve", str(item["id"]), "--reject", "--reason", "not a real customer", "--as", "agent-1")
        last = bpo("review", "resolve", str(rest[-1]["id"]), "--reject", "--reason", "duplicate", "--as", "agent-2")
        return {"items": items, "refused": refused, "fixed": fixed, "last": last, "at": time.monotonic()}

    thread, box = in_background(agent)
    result = data_entry(batch=str(tmp_path / "batch"))
    finished = time.monotonic()
    thread.join(timeout=10)
    assert "error" not in box, box.get("error")
    work = box["result"]
    checks = {c["check"] for i in work["items"] for c in i["failed_checks"]}
    assert {"ambiguous_date", "expect_column_values_to_be_unique", "normalize_email"} <= checks
    assert work["refused"].returncode == 3 and "ambiguous" in work["refused"].stderr
    assert work["fixed"].returncode == 0, work["fixed"].stderr
    assert "run resumed" in work["last"].stdout
    assert finished - work["at"] < 3 + 5  # resumes within the poll interval, plus load and publish
    assert result["records_in"] == sum(counts.values())
    assert result["loaded"] + result["rejected"] + result["quarantined"] == result["records_in"]
    assert result["rejected"] == len(work["items"]) - 1 and result["files_quarantined"] == 1
    assert target_count(target_db) == result["loaded"]
