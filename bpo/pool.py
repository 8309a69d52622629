"""Worker processes for the CPU-bound steps of a flow: intake, normalization, validation.

Those steps are pandas, pyarrow and Great Expectations code that holds Python's GIL most of the
time, so the task runner's threads alone run them one at a time. A task that calls ``in_worker``
still runs on its thread (Prefect sees and retries it as usual) but hands its work to one of these
processes and waits. What crosses the process boundary is small: the run, the spec, S3 keys in;
S3 keys and counts out. Data goes through S3, as between any two steps.

The workers are fresh interpreters (``spawn``: nothing inherited from a process that runs threads)
that import the heavy libraries once when they start, side by side; they live as long as the flow's
process. Each call carries the caller's settings, so a worker never acts on stale configuration.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from bpo.settings import Settings, get_settings, use_settings

T = TypeVar("T")

# imported by every worker as it starts, so the first call does not pay for them
PRELOAD = ["pandas", "pyarrow.parquet", "pyarrow.compute", "boto3", "great_expectations",
           "tasks.intake", "tasks.normalize", "tasks.quality", "tasks.review", "tasks.load"]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def worker_count(settings: Settings | None = None) -> int:
    configured = (settings or get_settings()).workers
    return configured if configured > 0 else (os.cpu_count() or 1)


def _get_pool() -> ProcessPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(max_workers=worker_count(), mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_preload)
        return _pool


def _preload() -> None:
    for module in PRELOAD:
        importlib.import_module(module)


def warm_up() -> None:
    """Start the workers now (their imports take a few seconds), not at the first call."""
    pool = _get_pool()
    for _ in range(worker_count()):
        pool.submit(os.getpid)


def shutdown() -> None:
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def warm_up_in_background() -> None:
    threading.Thread(target=warm_up, name="bpo-pool-warm-up", daemon=True).start()


def _release_memory() -> None:
    """Give a finished call's freed memory back to the system: an idle worker should not hold a chunk's peak."""
    import ctypes

    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _call(settings: Settings, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    use_settings(settings)
    try:
        return fn(*args)
    finally:
        _release_memory()


def in_worker(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker process and return its result; its exception is raised here.

    ``fn`` must be a module-level function, and its arguments and result picklable. A worker that
    died (killed for memory, say) breaks the pool: the call raises, and the next call gets a new pool.
    """
    return map_in_workers(fn, [args])[0]


def map_in_workers(fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """``fn(*args)`` for each ``args`` of ``calls``, side by side in the workers; results in order."""
    global _pool
    pool = _get_pool()
    settings = get_settings()
    try:
        futures = [pool.submit(_call, settings, fn, args) for args in calls]
        return [f.result() for f in futures]
    except BrokenProcessPool as exc:
        with _lock:
            if _pool is pool:
                _pool = None
        raise RuntimeError(f"a worker process died while running {fn.__name__}; "
                           "the step can be retried (a new pool is started)") from exc
