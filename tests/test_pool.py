"""Worker processes (bpo.pool): results and errors come back, settings travel, a dead worker is survived."""

from __future__ import annotations

import os

import pytest

from bpo import pool
from bpo.settings import get_settings


def worker_pid_and_chunk_rows() -> tuple[int, int]:
    return os.getpid(), get_settings().chunk_rows


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def die() -> None:
    os._exit(9)


def test_work_runs_in_another_process_with_the_callers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPO_CHUNK_ROWS", "1234")
    get_settings.cache_clear()
    try:
        pid, rows = pool.in_worker(worker_pid_and_chunk_rows)
        assert pid != os.getpid()
        assert rows == 1234
        monkeypatch.setenv("BPO_CHUNK_ROWS", "4321")
        get_settings.cache_clear()
        assert pool.in_worker(worker_pid_and_chunk_rows)[1] == 4321
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_an_error_in_the_worker_is_raised_in_the_caller() -> None:
    with pytest.raises(ValueError, match="bad value"):
        pool.in_worker(raise_value_error, "bad value")


def test_a_dead_worker_fails_its_call_clearly_and_the_next_call_gets_a_new_pool() -> None:
    with pytest.raises(RuntimeError, match="worker process died while running die"):
        pool.in_worker(die)
    pid, _ = pool.in_worker(worker_pid_and_chunk_rows)
    assert pid != os.getpid()
