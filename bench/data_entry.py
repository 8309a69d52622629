"""Benchmark of the data-entry flow against a floor without orchestration.

    python -m bench.data_entry --records 100000 [--review-fraction 0.02] [--keep]

Starts its own SeaweedFS, Prefect server and PostgreSQL on free loopback ports in a temporary
folder, writes a synthetic CSV batch, then measures (1) the floor: read + normalize + COPY into
PostgreSQL of the same files, in a child process, and (2) the flow, in this process's main thread,
while a scripted agent thread rejects every review item. Prints one JSON line on stdout; the rest
goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import platform
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "bpo-pg"
BUCKET = "bpo-bench"
FILE_RECORDS = 250_000
FLOOR_TABLE = "bench_floor"
POLL_SECONDS = 0.5
REJECT_REASON = "bench: rejected by the scripted agent"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _status_mb(key: str, pid: int | str = "self", name: str = "status") -> float | None:
    """A ``Key:  N kB`` line of /proc/<pid>/status (or smaps_rollup), in MB."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _flow_processes() -> list[int]:
    """This process and its descendants in its session: task-runner workers, not the services."""
    me, parents, sessions = os.getpid(), {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)], sessions[int(entry.name)] = int(fields[1]), int(fields[3])
    tree, grew = {me}, True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in tree and sessions[pid] == sessions.get(me)}
        grew = not more <= tree
        tree |= more
    return sorted(tree)


def peak_rss_mb() -> float:
    """Peak resident set of this process so far, in MB."""
    # VmHWM covers this address space only; ru_maxrss of a spawned child would also count the
    # parent's pages at fork time (Linux carries the pre-exec high-water mark over).
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler(threading.Thread):
    """Samples the memory of this process plus its task-runner workers, and when it peaked.

    The resident set (``status``) costs microseconds a read. The proportional set (``smaps_rollup``) makes the
    kernel walk the process's page tables: ~13 ms for a 1.5 GB process, while it holds that process's memory
    map lock. Read every tick for three processes it took ~10% of a CPU from the run it measures, so it is
    read only every ``pss_every`` ticks, and never with ``pss_every=0``.
    """

    def __init__(self, interval: float = 0.2, pss_every: int = 5) -> None:
        super().__init__(name="bench-rss", daemon=True)
        self.interval = interval
        self.pss_every = pss_every
        self.finished = threading.Event()
        self.peak_rss_mb = self.peak_pss_mb = 0.0
        self.peak_at: datetime | None = None
        self.max_processes = 1

    def run(self) -> None:
        tick = 0
        while not self.finished.wait(self.interval):
            pids = _flow_processes()
            rss = sum(_status_mb("VmRSS", pid) or 0.0 for pid in pids)
            if self.pss_every and tick % self.pss_every == 0:
                pss = sum(_status_mb("Pss", pid, "smaps_rollup") or 0.0 for pid in pids)
                self.peak_pss_mb = max(self.peak_pss_mb, pss)
            tick += 1
            self.max_processes = max(self.max_processes, len(pids))
            if rss > self.peak_rss_mb:
                self.peak_rss_mb, self.peak_at = rss, datetime.now(UTC)


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn`` in a fresh process so its memory peak is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# ---------------------------------------------------------------------------- services


def _as_pg_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(base: Path, port: int, stack: ExitStack) -> str:
    """PostgreSQL 15 as an unprivileged user (it refuses root), as tests/conftest.py starts it."""
    from bpo.stack import wait_until

    if not (PG_BIN / "initdb").exists():
        raise RuntimeError(f"PostgreSQL binaries not found in {PG_BIN}; install postgresql-15")
    base.mkdir()
    if os.geteuid() == 0:
        if subprocess.run(["id", PG_USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
        shutil.chown(base, user=PG_USER)
    data = base / "data"
    subprocess.run(_as_pg_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "bpo", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "start",
                                "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"]),
                   check=True, capture_output=True)
    stack.callback(subprocess.run, _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                   capture_output=True)

    def ready() -> bool:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=bpo dbname=postgres", connect_timeout=2):
            return True

    wait_until(ready, timeout=30, what="PostgreSQL")
    return f"postgresql+psycopg://bpo@127.0.0.1:{port}/postgres"


def configure_env(root: Path, *, prefect_port: int, s3_port: int, pg_port: int) -> dict[str, str]:
    """BPO_* and PREFECT_* settings; they must be in place before prefect or get_settings() is first used."""
    env = {
        "BPO_HOME": f"{root}/home",
        "BPO_S3_BUCKET": BUCKET,
        "BPO_S3_PREFIX": "bpo",
        "BPO_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "BPO_S3_ACCESS_KEY_ID": "bpo-bench-" + secrets.token_hex(4),
        "BPO_S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(20),
        "BPO_PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "BPO_PREFECT_PORT": str(prefect_port),
        "BPO_S3_PORT": str(s3_port),
        "BPO_OPS_DATABASE_URL": f"sqlite:///{root}/ops.db",
        "BPO_TARGET_DATABASE_URL": f"postgresql+psycopg://bpo@127.0.0.1:{pg_port}/postgres",
        "BPO_REVIEW_POLL_SECONDS": "1",
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_HOME": f"{root}/prefect-client",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    os.environ.update(env)
    return env


def start_stack(root: Path, stack: ExitStack) -> None:
    """SeaweedFS, the Prefect server, PostgreSQL and the ops database; each stopped when ``stack`` closes."""
    from bpo.stack import free_port, start_prefect_server, start_seaweedfs, stop

    prefect_port, s3_port, pg_port = free_port(), free_port(), free_port()
    env = configure_env(root, prefect_port=prefect_port, s3_port=s3_port, pg_port=pg_port)
    t0 = time.perf_counter()
    weed = start_seaweedfs(root / "seaweedfs", s3_port=s3_port, access_key=env["BPO_S3_ACCESS_KEY_ID"],
                           secret_key=env["BPO_S3_SECRET_ACCESS_KEY"], bucket=BUCKET, log=root / "seaweedfs.log")
    stack.callback(stop, weed)
    server = start_prefect_server(root / "prefect-server", port=prefect_port, log=root / "prefect.log")
    stack.callback(stop, server)
    start_postgres(root / "pg", pg_port, stack)

    from bpo.db.session import upgrade

    upgrade(env["BPO_OPS_DATABASE_URL"])
    log(f"services up in {time.perf_counter() - t0:.1f}s (S3 :{s3_port}, Prefect :{prefect_port}, PG :{pg_port})")


# ---------------------------------------------------------------------------- batch and floor (child processes)


def generate(folder: str, records: int, review_fraction: float) -> dict[str, Any]:
    """The synthetic batch as CSV files of at most FILE_RECORDS records."""
    from bpo.samples import make_records, to_csv

    out = Path(folder)
    out.mkdir(parents=True)
    data = make_records(records, review_fraction=review_fraction)
    sizes = 0
    for i, start in enumerate(range(0, len(data), FILE_RECORDS), start=1):
        body = to_csv(data[start:start + FILE_RECORDS])
        (out / f"customers-{i:03d}.csv").write_bytes(body)
        sizes += len(body)
    return {"files": len(list(out.glob("*.csv"))), "bytes": sizes}


def floor(folder: str, dsn: str) -> dict[str, Any]:
    """Read (intake) + normalize + COPY into a fresh table, file by file: the same work minus orchestration."""
    import psycopg
    import pyarrow as pa
    from psycopg import sql
    from pyarrow import csv as pa_csv
    from sqlalchemy import Column, MetaData, Table
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateTable

    from bpo.normalizers import normalize_frame
    from bpo.readers import read_batch_file
    from bpo.spec import load_spec
    from bpo.target import target_table

    spec = load_spec("customer_onboarding")
    # the target table's columns and types, without its primary key: the floor does not deduplicate
    table = Table(FLOOR_TABLE, MetaData(), *(Column(c.name, c.type) for c in target_table(spec).columns))
    columns = [c.name for c in table.columns]
    ddl = str(CreateTable(table).compile(dialect=postgresql.dialect()))
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(FLOOR_TABLE), sql.SQL(", ").join(map(sql.Identifier, columns)))
    stages = {"read": 0.0, "normalize": 0.0, "copy": 0.0}
    rows = 0
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(FLOOR_TABLE)))
        conn.execute(ddl)  # type: ignore[arg-type]
        for path in sorted(Path(folder).glob("*.csv")):
            t0 = time.perf_counter()
            read = read_batch_file(path.name, path.read_bytes(), spec)
            t1 = time.perf_counter()
            data = normalize_frame(read.frame, spec).data
            t2 = time.perf_counter()
            out = data.assign(source_file=data["_source_file"], source_row=data["_source_row"], flow_run_id=None)
            # CSV written by pyarrow, as the product's loader does: nulls unquoted (COPY's NULL), text quoted
            buf = io.BytesIO()
            pa_csv.write_csv(pa.Table.from_pandas(out[columns], preserve_index=False), buf,
                             pa_csv.WriteOptions(include_header=False, quoting_style="all_valid"))
            with conn.cursor().copy(copy_sql) as copy:
                copy.write(buf.getbuffer())
            rows += len(out)
            stages["read"] += t1 - t0
            stages["normalize"] += t2 - t1
            stages["copy"] += time.perf_counter() - t2
        conn.commit()
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu_before
        copied = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(FLOOR_TABLE))).fetchone()
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": rows, "copied": copied[0] if copied else 0,
            "peak_rss_mb": peak_rss_mb(), "stages": {k: round(v, 3) for k, v in stages.items()}}


def reset_database(dsn: str) -> None:
    """Drop the floor's table and checkpoint: the flow meets the database as the floor did, without
    the floor's million rows still to be written out (dirty buffers, WAL) during its load."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(FLOOR_TABLE)))
        conn.execute("CHECKPOINT")


# ---------------------------------------------------------------------------- the flow and its agent


@dataclass
class Agent:
    """Waits for the run to pause on review, then rejects every open item through bpo.review.resolve_many."""

    done: threading.Event
    flow_run_id: str | None = None
    first_item_at: float | None = None
    paused_seen_at: float | None = None
    resolved_at: float | None = None
    resolved: int = 0
    resumed: bool = False
    cpu_seconds: float = 0.0  # this thread's CPU, taken out of the flow's in-process CPU
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc
        finally:
            self.cpu_seconds = time.thread_time()

    def _work(self) -> None:
        from uuid import UUID

        from prefect.client.orchestration import get_client

        from bpo.review import list_items, resolve_many, resume_if_done
        from bpo.settings import get_settings

        settings = get_settings()
        while not self.done.is_set():
            items = list_items(settings, limit=1)
            if items:
                self.flow_run_id, self.first_item_at = items[0].flow_run_id, time.perf_counter()
                break
            self.done.wait(POLL_SECONDS)
        if self.flow_run_id is None:
            return
        # resolve only once PAUSED: the measured wait starts there, and no resume can come too early
        with get_client(sync_client=True) as client:
            while not self.done.is_set():
                state = client.read_flow_run(UUID(self.flow_run_id)).state
                if state is not None and state.is_paused():
                    self.paused_seen_at = time.perf_counter()
                    break
                self.done.wait(POLL_SECONDS)
        if self.paused_seen_at is None:
            return
        while items := list_items(settings, flow_run_id=self.flow_run_id, limit=1000):
            # in bulk (200 per transaction), as an agent rejecting a selection would: the wait is excluded anyway
            res = resolve_many(settings, [item.id for item in items], approve=False, actor="bench-agent",
                               reason=REJECT_REASON)
            self.resolved += len(res.decided)
            self.resumed |= bool(res.resumed)
            if not res.decided:
                raise RuntimeError(f"the bench agent could decide none of {len(items)} items: {res.refused}")
        if not self.resumed:
            self.resumed = resume_if_done(settings, self.flow_run_id, "records")
        self.resolved_at = time.perf_counter()
        log(f"agent: rejected {self.resolved} items in {self.resolved_at - self.paused_seen_at:.1f}s, "
            f"resumed={self.resumed}")


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return (b - a).total_seconds() if a is not None and b is not None else None


def run_timeline(flow_run_id: str) -> dict[str, Any]:
    """From the Prefect API: the PAUSED spans (summed), and per task name the wall its runs covered and their sum."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(UUID(flow_run_id)), key=lambda s: s.timestamp)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))
    paused_at = resumed_at = None
    paused = 0.0  # every span the run was paused (a review, then a gate), summed
    for prev, state in zip(states, states[1:], strict=False):
        if prev.is_paused():
            paused += (state.timestamp - prev.timestamp).total_seconds()
            if paused_at is None:
                paused_at, resumed_at = prev.timestamp, state.timestamp
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    load_start = None
    for run in tasks:
        name = run.name.rsplit("-", 1)[0]
        if run.start_time is not None and run.end_time is not None:
            spans.setdefault(name, []).append((run.start_time, run.end_time))
        if name == "load_decisions":
            load_start = run.start_time
    return {
        "paused_seconds": paused if paused_at is not None else None,
        "resume_to_next_task_seconds": _seconds(resumed_at, load_start),
        "task_wall_seconds": {k: round(_covered(v), 3) for k, v in sorted(spans.items())},
        "task_summed_seconds": {k: round(sum((b - a).total_seconds() for a, b in v), 3)
                                for k, v in sorted(spans.items())},
        "task_runs": {k: len(v) for k, v in sorted(spans.items())},
        "in_tasks_seconds": _covered([span for v in spans.values() for span in v]),
        "spans": spans,
    }


def _covered(spans: list[tuple[datetime, datetime]]) -> float:
    """Seconds during which at least one task ran (tasks may run side by side)."""
    total, end = 0.0, None
    for a, b in sorted(spans):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def run_flow(folder: Path) -> dict[str, Any]:
    """The flow in the main thread, the agent in another (Prefect's pause expects the flow in the main thread)."""
    from prefect.client.orchestration import get_client

    from flows.data_entry import data_entry

    agent = Agent(done=threading.Event())
    thread = threading.Thread(target=agent.run, name="bench-agent", daemon=True)
    rss_before = peak_rss_mb()
    cpu_before = _cpu_seconds()
    sampler = RssSampler()
    sampler.start()
    thread.start()
    called_at = datetime.now(UTC)
    start = time.perf_counter()
    try:
        result = data_entry(batch=str(folder))
    finally:
        total = time.perf_counter() - start
        returned_at = datetime.now(UTC)
        agent.done.set()
        sampler.finished.set()
        thread.join(timeout=60)
    cpu = _cpu_seconds() - cpu_before - agent.cpu_seconds
    if agent.error is not None:
        raise RuntimeError("the scripted agent failed") from agent.error
    run_id = agent.flow_run_id
    if run_id is None:  # nothing went to review: the only run on this server is ours
        with get_client(sync_client=True) as client:
            run_id = str(client.read_flow_runs(limit=1)[0].id)
    timeline = run_timeline(run_id)
    spans = timeline.pop("spans")
    at = sampler.peak_at
    timeline["peak_rss_during"] = sorted(name for name, runs in spans.items()
                                         if at is not None and any(a <= at <= b for a, b in runs))
    every = [span for runs in spans.values() for span in runs]
    if every:
        timeline["before_first_task_seconds"] = round(_seconds(called_at, min(a for a, _ in every)) or 0.0, 3)
        timeline["after_last_task_seconds"] = round(_seconds(max(b for _, b in every), returned_at) or 0.0, 3)
    return {"seconds": total, "result": result, "agent": agent, "timeline": timeline, "cpu_seconds": cpu,
            "peak_rss_mb": max(peak_rss_mb(), sampler.peak_rss_mb), "peak_rss_main_mb": peak_rss_mb(),
            "peak_pss_mb": sampler.peak_pss_mb, "processes": sampler.max_processes, "rss_before_flow_mb": rss_before}


def _cpu_seconds() -> float:
    """CPU of this process and of its children that have exited (task-runner workers; not the services)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def target_rows(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM customers")) or 0)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    mem_kb = 0
    try:
        line = next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
        mem_kb = int(line.split()[1])
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "ram_gb": round(mem_kb / 1024**2, 1), "python": platform.python_version(),
            "platform": platform.platform()}


def bench(records: int, review_fraction: float, root: Path) -> dict[str, Any]:
    with ExitStack() as stack:
        stack.callback(log, "services stopped")
        start_stack(root, stack)
        batch = root / "batch"
        t0 = time.perf_counter()
        made = in_child(generate, str(batch), records, review_fraction)
        log(f"batch: {records} records in {made['files']} CSV files ({made['bytes'] / 1e6:.1f} MB), "
            f"generated in {time.perf_counter() - t0:.1f}s (not measured)")

        low = in_child(floor, str(batch), os.environ["BPO_TARGET_DATABASE_URL"].replace("+psycopg", ""))
        log(f"floor: {low['seconds']:.2f}s {low['stages']}, peak RSS {low['peak_rss_mb']:.0f} MB")
        if low["copied"] != records:
            raise RuntimeError(f"the floor copied {low['copied']} rows of {records}")
        reset_database(os.environ["BPO_TARGET_DATABASE_URL"].replace("+psycopg", ""))

        log("flow: running")
        flow = run_flow(batch)
        agent: Agent = flow["agent"]
        timeline = flow["timeline"]
        wait = timeline["paused_seconds"] or 0.0
        net = flow["seconds"] - wait
        loaded = target_rows(os.environ["BPO_TARGET_DATABASE_URL"])
        log(f"flow: {flow['seconds']:.2f}s total, {wait:.2f}s paused for review")
        log(f"flow: wall per task {timeline['task_wall_seconds']}")
        result = flow["result"]
    return {
        "records": records,
        "review_fraction": review_fraction,
        "flow_seconds": round(flow["seconds"], 3),
        "review_wait_seconds": round(wait, 3),
        "flow_seconds_excluding_review_wait": round(net, 3),
        "records_per_second": round(records / net),
        "floor_seconds": round(low["seconds"], 3),
        "floor_records_per_second": round(records / low["seconds"]),
        "ratio": round(net / low["seconds"], 2),
        "peak_rss_mb": round(flow["peak_rss_mb"]),
        "floor_peak_rss_mb": round(low["peak_rss_mb"]),
        "breakdown": {
            "floor_stages_seconds": low["stages"],
            "floor_process_cpu_seconds": round(low["cpu_seconds"], 1),
            "flow_task_wall_seconds": timeline["task_wall_seconds"],
            "flow_task_summed_seconds": timeline["task_summed_seconds"],
            "flow_task_runs": timeline["task_runs"],
            "flow_outside_tasks_seconds": round(net - timeline["in_tasks_seconds"], 3),
            "flow_before_first_task_seconds": timeline.get("before_first_task_seconds"),
            "flow_after_last_task_seconds": timeline.get("after_last_task_seconds"),
            "flow_process_cpu_seconds": round(flow["cpu_seconds"], 1),
            "resume_to_next_task_seconds": timeline["resume_to_next_task_seconds"],
            "rss_before_flow_mb": round(flow["rss_before_flow_mb"]),
            "peak_rss_main_process_mb": round(flow["peak_rss_main_mb"]),
            "peak_pss_mb": round(flow["peak_pss_mb"]),
            "flow_processes": flow["processes"],
            "peak_rss_during_tasks": timeline["peak_rss_during"],
            "review_items": agent.resolved,
            "agent_first_item_to_paused_seconds": _span(agent.first_item_at, agent.paused_seen_at),
            "agent_paused_to_resolved_seconds": _span(agent.paused_seen_at, agent.resolved_at),
            "loaded": result["loaded"], "rejected": result["rejected"], "target_rows": loaded,
        },
        "machine": machine(),
    }


def _span(a: float | None, b: float | None) -> float | None:
    return round(b - a, 3) if a is not None and b is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data_entry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, required=True, help="records in the synthetic batch")
    parser.add_argument("--review-fraction", type=float, default=0.02, help="share of records that need review")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (data, service logs)")
    args = parser.parse_args(argv)
    if args.records <= 0:
        parser.error("--records must be positive")

    # SIGTERM runs the same clean-up as an error
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="bpo-bench-"))
    root.chmod(0o711)  # PostgreSQL runs as another user below it
    log(f"working in {root}")
    try:
        report = bench(args.records, args.review_fraction, root)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            log(f"removed {root}")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
