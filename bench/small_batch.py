"""Benchmark of a small batch through ``bpo run``, against the import floor.

    python -m bench.small_batch [--records 50] [--repeat 5] [--keep]

Starts its own SeaweedFS and Prefect server on free loopback ports in a temporary folder (the
ops and target databases are SQLite files there; no PostgreSQL), then alternates, ``--repeat``
times: (1) the floor, ``python -c "import prefect, great_expectations, pandas"`` in a fresh
interpreter, and (2) ``bpo run data-entry <batch> --json`` as a subprocess, on a new batch of
``--records`` clean records (no review items) each time. Prints one JSON line on stdout with the
medians and their ratio; the rest goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.data_entry import log

BUCKET = "bpo-bench"
FLOOR = [sys.executable, "-c", "import prefect, great_expectations, pandas"]
BPO = [sys.executable, "-m", "bpo.cli"]
CHECKOUT = Path(__file__).resolve().parent.parent


def start_stack(root: Path, stack: ExitStack) -> dict[str, str]:
    """SeaweedFS and a Prefect server, each stopped when ``stack`` closes; the settings a ``bpo`` process needs."""
    import secrets

    from bpo.stack import free_port, start_prefect_server, start_seaweedfs, stop

    prefect_port, s3_port = free_port(), free_port()
    env = {
        "BPO_HOME": f"{root}/home",
        "BPO_S3_BUCKET": BUCKET,
        "BPO_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "BPO_S3_ACCESS_KEY_ID": "bpo-bench-" + secrets.token_hex(4),
        "BPO_S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(20),
        "BPO_PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "BPO_PREFECT_PORT": str(prefect_port),
        "BPO_S3_PORT": str(s3_port),
        "BPO_OPS_DATABASE_URL": f"sqlite:///{root}/ops.db",
        "BPO_TARGET_DATABASE_URL": f"sqlite:///{root}/target.db",
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_HOME": f"{root}/prefect-client",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    os.environ.update(env)
    t0 = time.perf_counter()
    weed = start_seaweedfs(root / "seaweedfs", s3_port=s3_port, access_key=env["BPO_S3_ACCESS_KEY_ID"],
                           secret_key=env["BPO_S3_SECRET_ACCESS_KEY"], bucket=BUCKET, log=root / "seaweedfs.log")
    stack.callback(stop, weed)
    server = start_prefect_server(root / "prefect-server", port=prefect_port, log=root / "prefect.log")
    stack.callback(stop, server)
    log(f"services up in {time.perf_counter() - t0:.1f}s (S3 :{s3_port}, Prefect :{prefect_port})")
    return env


def make_batch(folder: Path, records: int, start: int) -> None:
    from bpo.samples import make_records, to_csv

    folder.mkdir(parents=True)
    (folder / "forms.csv").write_bytes(to_csv(make_records(records, seed=start, review_fraction=0.0, start=start)))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=CHECKOUT, timeout=300)
    return time.perf_counter() - t0, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bpo-bench-small-"))
    floors: list[float] = []
    runs: list[float] = []
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        env = {**os.environ, **start_stack(root, stack)}
        # the warm-up run writes the checkout's bytecode, as pip does for an installed package; a
        # PYTHONDONTWRITEBYTECODE left in the environment would have every run compile the product anew
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        from bpo.db.session import upgrade

        upgrade(env["BPO_OPS_DATABASE_URL"])
        # one run first, not timed: the server's first flow run and the first pyc compilation are not a batch's cost
        for i in range(args.repeat + 1):
            batch = root / "batches" / f"b{i:02d}"
            make_batch(batch, args.records, start=100_000 * (i + 1))
            floor_s, proc = timed(FLOOR, env)
            if proc.returncode != 0:
                raise RuntimeError(f"the floor failed: {proc.stderr[-2000:]}")
            run_s, proc = timed([*BPO, "run", "data-entry", str(batch), "--json"], env)
            if proc.returncode != 0:
                raise RuntimeError(f"bpo run failed ({proc.returncode}): {proc.stderr[-3000:]}")
            summary = json.loads(proc.stdout)
            if summary["loaded"] != args.records or summary["reviewed"]:
                raise RuntimeError(f"run {i}: expected {args.records} loaded, none reviewed: {summary}")
            log(f"{'warm-up' if i == 0 else f'run {i}'}: floor {floor_s:.2f}s, bpo run {run_s:.2f}s")
            if i:
                floors.append(floor_s)
                runs.append(run_s)
    floor_median, run_median = statistics.median(floors), statistics.median(runs)
    print(json.dumps({
        "benchmark": "small_batch", "records": args.records, "repeat": args.repeat,
        "run_seconds": round(run_median, 3), "floor_seconds": round(floor_median, 3),
        "ratio": round(run_median / floor_median, 3),
        "run_samples": [round(s, 3) for s in runs], "floor_samples": [round(s, 3) for s in floors],
        "target_database": "sqlite", "cpus": os.cpu_count(), "python": platform.python_version(),
    }), flush=True)


if __name__ == "__main__":
    main()
