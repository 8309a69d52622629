"""Run a flow's CPU-bound steps side by side: intake, normalization, validation, routing, loads.

Those steps are pandas, pyarrow and Great Expectations code that holds Python's GIL most of the
time, so the task runner's threads alone run them one at a time. A task that calls ``in_worker``
still runs on its thread (Prefect sees and retries it as usual) but its work takes one of the
*streams*: the flow's own process (one stream, used first: it has everything imported already) or
one of the worker processes (the others). With ``BPO_WORKERS`` streams in all (default: one per
CPU), that many steps really run at once.

Streams are sized to the work: a local batch too small to fill one chunk (``BPO_CHUNK_ROWS``,
reckoned at ``BYTES_PER_RECORD``) is done by the flow's own process alone, and no worker is started
for it (a worker's start, ~5 s of CPU for its imports, is longer than such a batch takes).

What crosses a process boundary is small: the run, the spec, S3 keys in; S3 keys and counts out.
Data goes through S3, as between any two steps. Workers are fresh interpreters (``spawn``: nothing
inherited from a process that runs threads) that import the heavy libraries once as they start;
they live as long as the flow's process. Each call carries the caller's settings, so a worker never
acts on stale configuration.
"""

from __future__ import annotations

import functools
import importlib
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

from bpo.run import get_store
from bpo.settings import Settings, get_settings, use_settings

T = TypeVar("T")

# imported by every worker as it starts, so the first call does not pay for them
PRELOAD = ["pandas", "pyarrow.parquet", "pyarrow.compute", "boto3", "great_expectations",
           "bpo.intake", "bpo.prepare", "bpo.quality", "bpo.routing", "bpo.target"]

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_streams: threading.BoundedSemaphore | None = None
_here = threading.Lock()  # the flow's own process runs one step at a time
_one_stream = False  # this run's batch is small: every step waits for the flow's own process
BYTES_PER_RECORD = 100  # a CSV record of the sample forms is ~150 bytes; a batch under a chunk is far below


def stream_count(settings: Settings | None = None) -> int:
    """Steps that run at once: ``BPO_WORKERS``, or one per CPU; the flow's process is one of them."""
    configured = (settings or get_settings()).workers
    return configured if configured > 0 else (os.cpu_count() or 1)


def _get_pool() -> tuple[ProcessPoolExecutor | None, threading.BoundedSemaphore]:
    global _pool, _streams
    with _lock:
        streams = stream_count()
        if _streams is None:
            _streams = threading.BoundedSemaphore(streams)
        if _pool is None and streams > 1:
            _pool = ProcessPoolExecutor(max_workers=streams - 1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_preload)
        return _pool, _streams


def _preload() -> None:
    import_modules(PRELOAD)


_IMPORTING = threading.Lock()


def import_modules(modules: list[str]) -> None:
    """Import ``modules`` one thread at a time: two threads importing one package at once can each find the
    other's modules half-initialized (Great Expectations' packages import one another in a cycle)."""
    with _IMPORTING:
        for module in modules:
            importlib.import_module(module)


def warm_up() -> list[Future[int]]:
    """Start the worker processes now (their imports take a few seconds), not at the first call."""
    pool, _ = _get_pool()
    return [] if pool is None else [pool.submit(os.getpid) for _ in range(stream_count() - 1)]


# what the flow's own process imports only at its first validation (~2 s): taken beside the run's first steps
HERE_PRELOAD = ["great_expectations"]


def warm_up_in_background(batch: str | None = None) -> None:
    """Start the workers beside the caller, unless ``batch`` is a local folder that one stream does alone.

    For such a batch, this process makes its S3 client and imports what its first validation needs in
    a background thread instead: the run's first steps (flow-run creation, opening the run, staging
    files) mostly wait on the network, so the thread takes time they leave idle. Call it once the flow's own modules
    are imported: the thread then imports only what the flow's steps import lazily.
    """
    global _one_stream
    _one_stream = batch is not None and _under_one_chunk(Path(batch))
    if _one_stream:
        threading.Thread(target=_preload_here, name="bpo-preload", daemon=True).start()
    else:
        threading.Thread(target=warm_up, name="bpo-pool-warm-up", daemon=True).start()


def _preload_here() -> None:
    get_store()  # the S3 client first: opening the run needs it within a second, GX only at the first validation
    import_modules(HERE_PRELOAD)


def _under_one_chunk(folder: Path) -> bool:
    """A local folder whose files add up to less than one chunk of records (an S3 prefix is not sized here)."""
    if not folder.is_dir():
        return False
    limit = get_settings().chunk_rows * BYTES_PER_RECORD
    size = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            size += path.stat().st_size
            if size >= limit:
                return False
    return True


def shutdown() -> None:
    global _pool, _streams, _one_stream
    with _lock:
        pool, _pool, _streams, _one_stream = _pool, None, None, False
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _release_memory() -> None:
    """Give a finished step's freed memory back to the system: an idle stream should not hold a chunk's peak."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _call(settings: Settings, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """A step in a worker process, under the caller's settings."""
    use_settings(settings)
    return _here_now(fn, args)


def in_worker(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` on a free stream and return its result; its exception is raised here.

    ``fn`` must be a module-level function, and its arguments and result picklable (it may run in a
    worker process); it must not call ``in_worker`` itself (it holds a stream). A worker that died
    (killed for memory, say) breaks the pool: the call raises, and the next call gets a new pool.
    """
    pool, streams = _get_pool()
    with streams:  # a stream is free: this process's, or else a worker's
        if pool is None:
            return _here_now(fn, args)
        if _one_stream:
            with _here:
                return _here_now(fn, args)
        if _here.acquire(blocking=False):
            try:
                return _here_now(fn, args)
            finally:
                _here.release()
        try:
            return pool.submit(_call, get_settings(), fn, args).result()
        except BrokenProcessPool as exc:
            _forget(pool)
            raise RuntimeError(f"a worker process died while running {fn.__name__}; "
                               "the step can be retried (a new pool is started)") from exc


def _here_now(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    try:
        return fn(*args)
    finally:
        _release_memory()


def beside(fn: Callable[..., T], *args: Any) -> Future[T]:
    """Start ``fn(*args)`` in a worker process, beside what this process goes on doing; its result in the future.

    For a step whose libraries the rest of the flow never needs (Great Expectations, for a cleanup's checks):
    the worker imports them and runs the step on another CPU, and this process never loads them. With one
    stream (``BPO_WORKERS=1``, one CPU) it runs in a thread here. ``fn`` and its arguments as for ``in_worker``.
    A call the worker has not started can be cancelled (``Future.cancel()``) and done here instead. A worker
    that died raises ``BrokenProcessPool`` from ``result()``, and the next call starts a new pool.
    """
    pool, _ = _get_pool()
    if pool is None:
        threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpo-beside")
        try:
            return threads.submit(_here_now, fn, args)
        finally:
            threads.shutdown(wait=False)
    future = pool.submit(_call, get_settings(), fn, args)

    def forget_if_broken(done: Future[T]) -> None:
        if not done.cancelled() and isinstance(done.exception(), BrokenProcessPool):
            _forget(pool)

    future.add_done_callback(forget_if_broken)
    return future


def _forget(pool: ProcessPoolExecutor) -> None:
    """A broken pool is dropped: the next call starts a new one."""
    global _pool
    with _lock:
        if _pool is pool:
            _pool = None


def map_in_workers(fn: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
    """``fn(*args)`` for each ``args`` of ``calls``, side by side on the free streams; results in order."""
    if len(calls) <= 1:
        return [in_worker(fn, *args) for args in calls]
    with ThreadPoolExecutor(max_workers=min(len(calls), stream_count()), thread_name_prefix="bpo-map") as threads:
        return list(threads.map(lambda args: in_worker(fn, *args), calls))
