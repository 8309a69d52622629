"""Run a flow's CPU-bound steps side by side: intake, normalization, validation, routing, loads.

Those steps are pandas, pyarrow and Great Expectations code that holds Python's GIL most of the
time, so the task runner's threads alone run them one at a time. A task that calls ``in_worker``
still runs on its thread (Prefect sees and retries it as usual) but its work takes one of the
*streams*: the flow's own process (one stream, used first: it has everything imported already) or
one of the worker processes (the others). With ``BPO_WORKERS`` streams in all (default: one per
CPU), that many steps really run at once. The steps that use Great Expectations (``validates=True``)
run in the workers only: the flow's process, which also runs Prefect's client, never imports it.

Streams are sized to the work: a local batch too small to fill one chunk (``BPO_CHUNK_ROWS``,
reckoned at ``BYTES_PER_RECORD``) is done by the flow's own process alone, and no worker pool is
started for it (a worker's start, ~5 s of CPU for its imports, is longer than such a batch takes).
``bpo run`` gives such a batch one *validation worker* instead (``start_validator``), started
before Prefect is imported: it imports Great Expectations on another CPU while this process
imports Prefect and starts the flow, and takes the batch's validation steps (``validates=True``).

What crosses a process boundary is small: the run, the spec, S3 keys in; S3 keys and counts out.
Data goes through S3, as between any two steps. Workers are fresh interpreters (``spawn``: nothing
inherited from a process that runs threads) that import the heavy libraries once as they start;
they live as long as the flow's process. Each call carries the caller's settings, so a worker never
acts on stale configuration.
"""

from __future__ import annotations

import functools
import importlib
import logging
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal, TypeVar

from bpo.settings import Settings, get_settings, use_settings

T = TypeVar("T")
log = logging.getLogger("bpo.pool")

# imported by every worker as it starts, so the first call does not pay for them (a flow may name its own:
# ``warm_up_in_background(preload=...)``)
PRELOAD = ["pandas", "pyarrow.parquet", "pyarrow.compute", "boto3", "great_expectations",
           "bpo.intake", "bpo.prepare", "bpo.quality", "bpo.routing", "bpo.target"]
_worker_preload = PRELOAD  # what the pool, once started, has its workers import

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_streams: _Streams | None = None
_one_stream = False  # this run's batch is small: every step waits for the flow's own process
_validator: ProcessPoolExecutor | None = None  # a small batch's one worker for its validation steps
BYTES_PER_RECORD = 100  # a CSV record of the sample forms is ~150 bytes; a batch under a chunk is far below


def stream_count(settings: Settings | None = None) -> int:
    """Steps that run at once: ``BPO_WORKERS``, or one per CPU; the flow's process is one of them."""
    configured = (settings or get_settings()).workers
    return configured if configured > 0 else (os.cpu_count() or 1)


class _Streams:
    """Which streams are free: the flow's own process (one step at a time) and the worker processes.

    A step takes the flow's process if it may and that is free, else a worker. A step that must run in a
    worker (``where="worker"``) goes before the steps that may run anywhere when a worker comes free: the
    flow's process cannot take it, and they may still get the flow's process.
    """

    def __init__(self, workers: int) -> None:
        self._free = threading.Condition()
        self._here_free = True
        self._workers_free = workers
        self._waiting_for_worker = 0

    def take(self, where: Where) -> bool:
        """Wait for a stream ``where`` allows; True if it is the flow's process, False if a worker."""
        with self._free:
            waits_for_worker = where == "worker"
            self._waiting_for_worker += waits_for_worker
            try:
                while True:
                    if where != "worker" and self._here_free:
                        self._here_free = False
                        return True
                    if where != "here" and self._workers_free > 0 and (waits_for_worker or
                                                                       not self._waiting_for_worker):
                        self._workers_free -= 1
                        return False
                    self._free.wait()
            finally:
                self._waiting_for_worker -= waits_for_worker

    def hold_worker(self) -> None:
        """Count one worker busy (one that is still starting) until ``give_back(False)``."""
        with self._free:
            self._workers_free -= 1

    def give_back(self, here: bool) -> None:
        with self._free:
            if here:
                self._here_free = True
            else:
                self._workers_free += 1
            self._free.notify_all()


Where = Literal["any", "here", "worker"]


def _get_pool() -> tuple[ProcessPoolExecutor | None, _Streams]:
    global _pool, _streams
    with _lock:
        streams = stream_count()
        if _streams is None:
            _streams = _Streams(streams - 1)
        if _pool is None and streams > 1:
            _pool = ProcessPoolExecutor(max_workers=streams - 1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_preload, initargs=(_worker_preload,))
        return _pool, _streams


def _preload(modules: list[str]) -> None:
    _end_with_parent()
    import_modules(modules)


def _end_with_parent() -> None:
    """End this worker process as soon as the process that started it has ended.

    A worker waits for its next call on a pipe it holds both ends of, so it never sees its parent
    go: ``bpo run`` ends with ``os._exit`` (or is killed), and a worker left behind would live on,
    holding the output pipe ``bpo run``'s caller reads to the end.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), name="bpo-parent-watch", daemon=True).start()


def _exit_after(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(0)  # from a thread other than the main one, only this ends the process


_IMPORTING = threading.Lock()


def import_modules(modules: list[str]) -> None:
    """Import ``modules`` one thread at a time: two threads importing one package at once can each find the
    other's modules half-initialized (Great Expectations' packages import one another in a cycle)."""
    with _IMPORTING:
        for module in modules:
            importlib.import_module(module)


def warm_up() -> list[Future[int]]:
    """Start the worker processes now (their imports take a few seconds), not at the first call.

    Until a worker has started, its stream is not free: a step that may run here takes this process when
    it comes free, instead of waiting behind the worker's imports.
    """
    pool, streams = _get_pool()
    if pool is None:
        return []
    started = []
    for _ in range(stream_count() - 1):
        streams.hold_worker()
        try:
            future = pool.submit(os.getpid)
        except BaseException:
            streams.give_back(False)
            raise
        future.add_done_callback(lambda _: streams.give_back(False))  # started, or failed to: the next call says
        started.append(future)
    return started


# what the flow's own process imports only at its first validation (~2 s): taken beside the run's first steps
HERE_PRELOAD = ["great_expectations"]


def warm_up_in_background(batch: str | None = None, *, preload: list[str] | None = None) -> None:
    """Start the workers beside the caller, unless ``batch`` is a local folder that one stream does alone.

    ``preload``: the modules the workers import as they start, if not ``PRELOAD`` (a pool already started keeps
    its own): a flow whose first steps in a worker need less than Great Expectations names them, and the workers
    start on those steps seconds sooner.

    Such a batch gets the validation worker instead (``start_validator``; ``bpo run`` has started it
    already), if there are two streams or more: Great Expectations' import (seconds of CPU, holding the
    GIL) is then that worker's, on another CPU, while this process takes the batch in and normalizes it.
    This process makes its S3 client in a background thread meanwhile, and, with no validation worker,
    imports what its first validation needs: the run's first steps (flow-run creation, opening the run,
    staging files) mostly wait on the network, so the thread takes time they leave idle. Call it once the
    flow's own modules are imported: the thread then imports only what the flow's steps import lazily.
    """
    global _one_stream, _worker_preload
    if preload is not None:
        with _lock:
            _worker_preload = preload
    _one_stream = batch is not None and _under_one_chunk(Path(batch))
    if batch is not None and _one_stream:
        start_validator(batch)
        threading.Thread(target=_preload_here, name="bpo-preload", daemon=True).start()
    else:
        threading.Thread(target=warm_up, name="bpo-pool-warm-up", daemon=True).start()


def validates_beside() -> bool:
    """Whether a validation worker takes the steps that validate (``start_validator``)."""
    return _validator is not None


def _preload_here() -> None:
    from bpo.run import get_store  # not at the top: ``bpo run`` starts the validator before pandas is imported

    get_store()  # the S3 client first: opening the run needs it within a second, GX only at the first validation
    if _validator is None:  # else GX is the validator's to import, never this process's
        import_modules(HERE_PRELOAD)


# what the validation worker imports as it starts: its steps' code, GX and the S3 client's libraries
VALIDATOR_PRELOAD = ["pandas", "pyarrow.parquet", "boto3", "great_expectations", "bpo.prepare", "bpo.quality"]


def start_validator(batch: str) -> bool:
    """For a batch that one stream does alone, start one worker process now for its validation steps.

    Call it first thing, before Prefect is imported: the worker (a fresh interpreter) imports Great
    Expectations, the normalizers and validation code (~8 s of CPU) on another CPU while this process
    imports Prefect and starts the flow run, instead of both taking turns on one CPU under the GIL.
    The steps ``in_worker(..., validates=True)`` then run in it, and this process never imports GX.
    Not started with one stream in all (``BPO_WORKERS=1``, one CPU) or for a larger batch, which
    gets the worker pool. Returns whether it was started.
    """
    global _validator
    if stream_count() < 2 or not _under_one_chunk(Path(batch)):
        return False
    with _lock:
        if _validator is None:
            _validator = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_preload_validator)
            _validator.submit(os.getpid)  # the process starts at the first call, not at the first step
    return True


def _preload_validator() -> None:
    from bpo.run import get_store

    _end_with_parent()
    import_modules(VALIDATOR_PRELOAD)
    get_store()  # the S3 client, for the settings a call brings when they are these (see ``_call``)


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
    global _pool, _streams, _one_stream, _validator
    with _lock:
        pools, _pool, _validator, _streams, _one_stream = [_pool, _validator], None, None, None, False
    for pool in pools:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def end_workers() -> None:
    """End the worker processes at once and free the pools: for a process about to exit after its run.

    They are idle then, and a worker's own orderly exit (the interpreter freeing GX, pandas …
    object by object) takes seconds; the exit handlers would wait for it.
    """
    with _lock:
        pools = [p for p in (_pool, _validator) if p is not None]
    for pool in pools:
        for process in list((pool._processes or {}).values()):  # None once shut down
            process.kill()
    shutdown()


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
    if settings != get_settings():  # the same settings keep this process's S3 client (``get_store``)
        use_settings(settings)
    return _here_now(fn, args)


def in_worker(fn: Callable[..., T], *args: Any, validates: bool = False) -> T:
    """Run ``fn(*args)`` on a free stream and return its result; its exception is raised here.

    ``fn`` must be a module-level function, and its arguments and result picklable (it may run in a
    worker process); it must not call ``in_worker`` itself (it holds a stream). A worker that died
    (killed for memory, say) breaks the pool: the call raises, and the next call gets a new pool.
    A step that ``validates`` (uses Great Expectations) runs in the validation worker if there is
    one (``start_validator``); if that worker is dead, it runs here, as without one. With worker
    processes it runs in one of them, never here: they import GX as they start, and this process,
    which also runs the flow, would otherwise import it too (seconds of CPU, holding the GIL).
    """
    return in_worker_or_here(fn, fn, *args, validates=validates)


U = TypeVar("U")


def in_worker_or_here(fn: Callable[..., T], here: Callable[..., U], *args: Any, validates: bool = True) -> T | U:
    """``fn(*args)`` on a free stream, or ``here(*args)`` if that stream is the flow's own process.

    For a step that ``validates`` of which the flow's process can do the part without Great
    Expectations: with worker processes, whichever stream is free first takes it, a worker the whole
    step (``fn``), the flow's process its first part (``here``), leaving the rest to the caller (to
    send to a worker with ``in_worker(..., validates=True)``). With no worker processes it is ``fn`` here.
    """
    if validates and _validator is not None:
        done, result = _in_validator(fn, args)
        if done:
            return result
    pool, streams = _get_pool()
    if pool is None or _one_stream:  # every step here, one at a time
        where: Where = "here"
    else:  # a step that validates never falls to this process whole
        where = "worker" if validates and here is fn else "any"
    if streams.take(where):
        try:
            if where == "here":
                return _here_now(fn, args)
            return _here_now(here, args)
        finally:
            streams.give_back(True)
    assert pool is not None
    try:
        return pool.submit(_call, get_settings(), fn, args).result()
    except BrokenProcessPool as exc:
        _forget(pool)
        raise RuntimeError(f"a worker process died while running {fn.__name__}; "
                           "the step can be retried (a new pool is started)") from exc
    finally:
        streams.give_back(False)


def _in_validator(fn: Callable[..., T], args: tuple[Any, ...]) -> tuple[bool, Any]:
    """``(True, fn(*args))`` from the validation worker, or ``(False, None)`` if it is dead (then there is none)."""
    global _validator
    validator = _validator
    if validator is None:
        return False, None
    try:
        future = validator.submit(_call, get_settings(), fn, args)
    except RuntimeError:  # broken before this call, or shut down meanwhile
        future = None
    if future is not None:
        try:
            return True, future.result()
        except BrokenProcessPool:  # it died (or its imports failed) before or while running the step
            pass
    with _lock:
        if _validator is validator:
            _validator = None
    log.warning("the validation worker died; %s runs in the flow's process", fn.__name__)
    validator.shutdown(wait=False, cancel_futures=True)
    return False, None


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
    A call the worker has not started can be cancelled (``Future.cancel()``) and done here instead: calls wait
    here, in order, and go to the pool only as a worker comes free (the pool itself would take one call more
    than it has workers, marked running, and never give it back). A worker that died raises
    ``BrokenProcessPool`` from ``result()``, and the next call starts a new pool.
    """
    pool, _ = _get_pool()
    if pool is None:
        threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpo-beside")
        try:
            return threads.submit(_here_now, fn, args)
        finally:
            threads.shutdown(wait=False)
    future: Future[T] = Future()
    with _lock:
        _waiting_beside.append((future, pool, get_settings(), fn, args))
    _send_beside()
    return future


# calls of ``beside`` not yet given to the pool (future, pool, settings, fn, args), in order; and how many it holds
_waiting_beside: deque[tuple[Future[Any], ProcessPoolExecutor, Settings, Callable[..., Any], tuple[Any, ...]]] = deque()
_sent_beside = 0


def _send_beside() -> None:
    """Give the pool the next waiting call of ``beside`` (a cancelled one is skipped), while it has a free worker."""
    global _sent_beside
    with _lock:
        if _sent_beside >= stream_count() - 1:
            return
        while _waiting_beside:
            future, pool, settings, fn, args = _waiting_beside.popleft()
            if future.set_running_or_notify_cancel():
                break
        else:
            return
        _sent_beside += 1
    try:
        sent = pool.submit(_call, settings, fn, args)
    except Exception as exc:  # noqa: BLE001 - a pool shut down or broken: the caller's result() raises it
        _forget(pool)
        sent = Future()
        sent.set_exception(exc)

    def settle(done: Future[Any]) -> None:
        global _sent_beside
        error = done.exception()
        if isinstance(error, BrokenProcessPool):
            _forget(pool)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(done.result())
        with _lock:
            _sent_beside -= 1
        _send_beside()

    sent.add_done_callback(settle)


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
