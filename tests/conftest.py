"""Test services: a real Prefect server, SeaweedFS (S3) and PostgreSQL on free loopback ports.

Nothing is mocked. Ports and folders are fixed here, at import, so Prefect reads its API URL
before any test module imports it; each service starts only when a test asks for it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bpo.stack import free_port, start_prefect_server, start_seaweedfs, stop, wait_until

ROOT = tempfile.mkdtemp(prefix="bpo-tests-")
PREFECT_PORT = free_port()
S3_PORT = free_port()
ACCESS_KEY = "bpo-test-" + secrets.token_hex(4)
SECRET_KEY = secrets.token_urlsafe(20)
BUCKET = "bpo-test"

os.environ.update({
    "BPO_HOME": f"{ROOT}/home",
    "BPO_S3_BUCKET": BUCKET,
    "BPO_S3_PREFIX": "bpo",
    "BPO_S3_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "BPO_S3_ACCESS_KEY_ID": ACCESS_KEY,
    "BPO_S3_SECRET_ACCESS_KEY": SECRET_KEY,
    "BPO_PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
    "BPO_PREFECT_PORT": str(PREFECT_PORT),
    "BPO_S3_PORT": str(S3_PORT),
    "BPO_OPS_DATABASE_URL": f"sqlite:///{ROOT}/ops.db",  # each test file gets its own: see ops_db below
    "BPO_TARGET_DATABASE_URL": f"sqlite:///{ROOT}/target.db",
    "BPO_REVIEW_POLL_SECONDS": "1",
    "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
    "PREFECT_HOME": f"{ROOT}/prefect-client",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
})

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "bpo-pg"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def s3() -> Iterator[dict[str, str]]:
    """SeaweedFS with the test bucket; every port moved off its default."""
    proc = start_seaweedfs(Path(ROOT) / "seaweedfs", s3_port=S3_PORT, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                           bucket=BUCKET, log=Path(ROOT) / "seaweedfs.log")
    yield {"endpoint": f"http://127.0.0.1:{S3_PORT}", "bucket": BUCKET}
    stop(proc)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A Prefect server with its SQLite database in the test folder."""
    # the scheduler looks for due schedules every second, so a scheduled run starts within the test
    proc = start_prefect_server(Path(ROOT) / "prefect-server", port=PREFECT_PORT, log=Path(ROOT) / "prefect.log",
                                extra_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"})
    yield f"http://127.0.0.1:{PREFECT_PORT}/api"
    stop(proc)


@pytest.fixture(scope="session")
def _migrated_ops_db() -> Path:
    """An ops database migrated once; each test file starts from a copy of it."""
    from bpo.db.session import upgrade

    path = Path(ROOT) / "ops-template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="module", autouse=True)
def ops_db(request: pytest.FixtureRequest, _migrated_ops_db: Path) -> Iterator[str]:
    """This test file's own ops database (BPO_OPS_DATABASE_URL), migrated and empty.

    Files share none, so the review items a file leaves open are not listed by another's tests, whichever files
    ran before it (under pytest-xdist each worker runs its own share of the files, in its own order).
    """
    from bpo.settings import get_settings

    path = Path(ROOT) / f"ops-{request.node.path.stem}.db"
    shutil.copyfile(_migrated_ops_db, path)
    url = f"sqlite:///{path}"
    os.environ["BPO_OPS_DATABASE_URL"] = url
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def stack(s3: dict[str, str], prefect_api: str, ops_db: str) -> dict[str, str]:
    """Everything a flow run needs: S3, Prefect and the ops database."""
    return {**s3, "api": prefect_api, "ops_db": ops_db}


def _as_pg_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *argv] if os.geteuid() == 0 else argv


def pg_owns(folder: Path) -> None:
    """Give a PostgreSQL data folder to the unprivileged user (created once; root only, as PostgreSQL refuses it)."""
    if os.geteuid() != 0:
        return
    if subprocess.run(["id", PG_USER], capture_output=True).returncode != 0:
        made = subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], capture_output=True, text=True)
        # 9: another pytest-xdist worker created it between our check and this call
        if made.returncode not in (0, 9):
            raise RuntimeError(f"useradd {PG_USER} failed ({made.returncode}): {made.stderr.strip()}")
    shutil.chown(folder, user=PG_USER)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """PostgreSQL 15 started as an unprivileged user (it refuses root) on a free loopback port."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL binaries not found in {PG_BIN}; install postgresql-15")
    base = Path(tempfile.mkdtemp(prefix="bpo-pg-"))
    pg_owns(base)
    data, port = base / "data", free_port()
    subprocess.run(_as_pg_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "bpo", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "start",
                                "-o", f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"]),
                   check=True, capture_output=True)
    url = f"postgresql+psycopg://bpo@127.0.0.1:{port}/postgres"

    def ready() -> bool:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=bpo dbname=postgres", connect_timeout=2):
            return True

    wait_until(ready, timeout=30, what="PostgreSQL")
    yield url
    subprocess.run(_as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: str, tmp_path: Path) -> Iterator[str]:
    """A database of its own for one test, on the session's PostgreSQL (a client database, say)."""
    from sqlalchemy import create_engine, text

    name = f"client_{tmp_path.name.lower().replace('-', '_')}"[:60]
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield postgres.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def target_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SQLite target database for one test."""
    from bpo.settings import get_settings

    url = f"sqlite:///{tmp_path}/target.db"
    monkeypatch.setenv("BPO_TARGET_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[tuple[str, object]]:
    """The review console on a fresh SQLite ops database: (its base URL, its Settings)."""
    from bpo.db.session import upgrade
    from bpo.settings import Settings
    from tests.servers import serving  # the console's imports come after this file has set the environment

    url = f"sqlite:///{tmp_path / 'console-ops.db'}"
    upgrade(url)
    settings = Settings(ops_database_url=url)
    with serving(settings) as base:
        yield base, settings


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with service tests first, each file's tests kept together and in order.

    Under pytest-xdist each worker takes whole files in this order: the long files start at once and the quick
    ones fill in at the end, rather than one worker finishing a long file alone.
    """
    has_slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in has_slow)  # stable: collection order within each group


@pytest.fixture
def two_streams(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``bpo.pool`` with this process and one worker process, whatever the machine's CPU count (chunks of 1,234)."""
    from bpo import pool
    from bpo.settings import get_settings

    monkeypatch.setenv("BPO_WORKERS", "2")
    monkeypatch.setenv("BPO_CHUNK_ROWS", "1234")
    get_settings.cache_clear()
    pool.shutdown()
    yield
    pool.shutdown()
    monkeypatch.undo()
    get_settings.cache_clear()
