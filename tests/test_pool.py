"""Streams of work (bpo.pool): this process and a worker process run steps side by side; results,
errors and settings travel; a dead worker is survived."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bpo import pool
from bpo.settings import get_settings


def pid_and_chunk_rows(pause: float) -> tuple[int, int]:
    time.sleep(pause)
    return os.getpid(), get_settings().chunk_rows


def fail_with(text: str) -> None:
    time.sleep(0.3)
    raise ValueError(text)


def die_unless_in(pid: int) -> int:
    """Kills a worker process; returns when run in the process ``pid``."""
    time.sleep(0.3)
    if os.getpid() != pid:
        os._exit(9)
    return pid


def test_two_steps_run_at_once_here_and_in_a_worker_with_the_callers_settings(two_streams: None) -> None:
    assert all(f.result(timeout=60) != os.getpid() for f in pool.warm_up())  # the worker has started
    started = time.perf_counter()
    results = pool.map_in_workers(pid_and_chunk_rows, [(1.0,), (1.0,)])
    assert time.perf_counter() - started < 1.8, "the two steps ran one after the other"
    assert {pid for pid, _ in results} - {os.getpid()}, "no step ran in a worker process"
    assert os.getpid() in {pid for pid, _ in results}, "this process's own stream was not used"
    assert [rows for _, rows in results] == [1234, 1234]


def test_a_step_that_may_run_here_does_not_wait_behind_a_starting_worker(two_streams: None) -> None:
    started = pool.warm_up()  # the worker imports pandas, pyarrow, Great Expectations: seconds
    results = pool.map_in_workers(pid_and_chunk_rows, [(0.0,), (0.0,), (0.0,)])
    assert not started[0].done(), "the worker started too soon for this test to tell"
    assert {pid for pid, _ in results} == {os.getpid()}, "a step waited for the starting worker"
    assert started[0].result(timeout=60) != os.getpid()
    later = pool.map_in_workers(pid_and_chunk_rows, [(1.0,), (1.0,)])  # once started, the worker takes steps
    assert {pid for pid, _ in later} - {os.getpid()}


def whole_step(pause: float) -> tuple[str, int]:
    time.sleep(pause)
    return "whole", os.getpid()


def first_part(pause: float) -> tuple[str, int]:
    time.sleep(pause)
    return "part", os.getpid()


def test_a_step_that_validates_runs_in_a_worker_and_this_process_takes_only_its_first_part(
        two_streams: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert all(f.result(timeout=60) != os.getpid() for f in pool.warm_up())
    assert pool.in_worker(pid_and_chunk_rows, 0.0, validates=True)[0] != os.getpid(), "it ran here"
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as threads:
        done = list(threads.map(lambda _: pool.in_worker_or_here(whole_step, first_part, 1.0), range(2)))
    assert time.perf_counter() - started < 1.8, "the two steps ran one after the other"
    assert sorted(done) == [("part", os.getpid()), ("whole", next(pid for step, pid in done if step == "whole"))]
    assert done[0][1] != done[1][1]


def test_a_batch_under_one_chunk_starts_no_worker_and_runs_here(two_streams: None, tmp_path: Path) -> None:
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    big.mkdir()
    (small / "forms.csv").write_bytes(b"x" * 1000)
    (big / "forms.csv").write_bytes(b"x" * (1234 * pool.BYTES_PER_RECORD))  # a chunk's worth
    pool.warm_up_in_background(str(big))
    assert not pool._one_stream, "a batch of a chunk or more spreads over the streams"
    pool.shutdown()
    pool.warm_up_in_background(str(small))
    results = pool.map_in_workers(pid_and_chunk_rows, [(0.3,), (0.3,)])
    assert [pid for pid, _ in results] == [os.getpid()] * 2
    assert pool._pool is None or not pool._pool._processes, "no worker process was started"


def test_an_error_is_raised_in_the_caller_wherever_the_step_ran(two_streams: None) -> None:
    with pytest.raises(ValueError, match="bad value"):
        pool.map_in_workers(fail_with, [("bad value",), ("bad value",)])


def test_a_dead_worker_fails_its_call_clearly_and_the_next_call_gets_a_new_pool(two_streams: None) -> None:
    with pytest.raises(RuntimeError, match="worker process died while running die_unless_in"):
        pool.map_in_workers(die_unless_in, [(os.getpid(),), (os.getpid(),)])
    results = pool.map_in_workers(pid_and_chunk_rows, [(0.5,), (0.5,)])
    assert {pid for pid, _ in results} - {os.getpid()}


def test_one_stream_runs_everything_here(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BPO_WORKERS", "1")
    get_settings.cache_clear()
    pool.shutdown()
    try:
        assert {pid for pid, _ in pool.map_in_workers(pid_and_chunk_rows, [(0,), (0,), (0,)])} == {os.getpid()}
    finally:
        pool.shutdown()
        monkeypatch.undo()
        get_settings.cache_clear()


def test_no_validation_worker_for_a_larger_batch_or_with_one_stream(two_streams: None, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "forms.csv").write_bytes(b"x" * (get_settings().chunk_rows * pool.BYTES_PER_RECORD))
    assert not pool.start_validator(str(big)) and pool._validator is None
    assert not pool.start_validator("inbox/data-entry/b1/")  # an S3 prefix is not sized
    monkeypatch.setenv("BPO_WORKERS", "1")
    get_settings.cache_clear()
    (tmp_path / "small").mkdir()
    assert not pool.start_validator(str(tmp_path / "small")) and pool._validator is None


def test_a_step_beside_runs_in_a_worker_can_be_taken_back_and_a_dead_worker_is_replaced(two_streams: None) -> None:
    from concurrent.futures.process import BrokenProcessPool

    first = pool.beside(pid_and_chunk_rows, 1.0)
    second = pool.beside(pid_and_chunk_rows, 0.0)
    third = pool.beside(pid_and_chunk_rows, 0.0)
    # neither call behind the running one has started: each can be taken back (the pool itself would have marked
    # the second running, and kept it)
    assert second.cancel(), "a call the worker has not started could not be taken back"
    pid, rows = first.result(timeout=60)
    assert pid != os.getpid() and rows == 1234  # in the worker, under the caller's settings
    assert third.result(timeout=60)[0] == pid
    with pytest.raises(BrokenProcessPool):
        pool.beside(die_unless_in, os.getpid()).result(timeout=60)
    assert pool.beside(pid_and_chunk_rows, 0.0).result(timeout=60)[0] not in (os.getpid(), pid)
