"""The local stack: a Prefect server and SeaweedFS (S3), on 127.0.0.1 only.

``bpo stack up`` starts what is not running, writes pid and log files under ``.bpo/``,
and is idempotent; ``down`` stops only what ``up`` started. The same launch functions
start the services for the tests, on free ports in temporary folders.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bpo.settings import Settings

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """A service could not be started; the message says which and why."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return True
    return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    """Poll ``check`` until it is true; fail with the service's log tail if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}{_tail(log)}")
        try:
            if check():
                return
        except Exception:  # noqa: S110 - not up yet
            pass
        time.sleep(0.25)
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- last lines of " + str(log) + " ---\n" + "\n".join(text)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code < 500


def _bin(name: str) -> str:
    """A console script installed beside this Python (the venv's), else from PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise StackError(f"{name!r} is not installed; run `pip install -e .` first")
    return found


def _spawn(argv: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd, start_new_session=True)


def start_seaweedfs(data_dir: Path, *, s3_port: int, access_key: str, secret_key: str, bucket: str,
                    log: Path, timeout: float = 60) -> subprocess.Popen:
    """Start ``weed mini`` with every port moved off its default and the bucket created."""
    if port_in_use(s3_port):
        raise StackError(f"port {s3_port} (SeaweedFS S3) is already in use on {LOOPBACK}")
    data_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "s3.port.grpc", "admin.port", "admin.port.grpc", "debug.port")}
    argv = [_bin("weed"), "mini", f"-dir={data_dir}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-s3.port={s3_port}", f"-bucket={bucket}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
            *(f"-{k}={v}" for k, v in ports.items())]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key}
    proc = _spawn(argv, env=env, log=log, cwd=data_dir)
    endpoint = f"http://{LOOPBACK}:{s3_port}"
    wait_until(lambda: _bucket_ready(endpoint, access_key, secret_key, bucket), timeout=timeout,
               what="SeaweedFS", proc=proc, log=log)
    return proc


def _bucket_ready(endpoint: str, access_key: str, secret_key: str, bucket: str) -> bool:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                      region_name="us-east-1")
    s3.head_bucket(Bucket=bucket)
    return True


def prefect_env(api_url: str, **extra: str) -> dict[str, str]:
    """Environment for any process that talks to our Prefect server."""
    return {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING"), **extra}


def start_prefect_server(home: Path, *, port: int, log: Path, timeout: float = 120,
                         extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``prefect server start`` on 127.0.0.1 with its SQLite database under ``home``."""
    if port_in_use(port):
        raise StackError(f"port {port} (Prefect server) is already in use on {LOOPBACK}")
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://{LOOPBACK}:{port}/api"
    env = prefect_env(
        api_url,
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_API_HOST=LOOPBACK,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_API_URL=api_url,
        **(extra_env or {}),
    )
    proc = _spawn([_bin("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)], env=env, log=log)
    wait_until(lambda: httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200, timeout=timeout,
               what="Prefect server", proc=proc, log=log)
    # up once the API answers too: the server's first request past /health takes it about a second to serve (it
    # sets up its API on first use), which would otherwise fall on the first flow run's first call
    wait_until(lambda: httpx.get(f"{api_url}/admin/version", timeout=10.0).status_code == 200, timeout=timeout,
               what="Prefect server API", proc=proc, log=log)
    return proc


def start_worker(*, api_url: str, pool: str, log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> subprocess.Popen:
    """Start a process worker polling ``pool``."""
    return _spawn([_bin("prefect"), "worker", "start", "--pool", pool, "--type", "process"],
                  env=prefect_env(api_url, **(env or {})), log=log, cwd=cwd)


def start_console(*, port: int, log: Path, cwd: Path, timeout: float = 120) -> subprocess.Popen:
    """Start ``bpo console`` on 127.0.0.1 with the caller's settings (environment and working folder)."""
    if port_in_use(port):
        raise StackError(f"port {port} (review console) is already in use on {LOOPBACK}")
    proc = _spawn([sys.executable, "-m", "bpo.cli", "console", "--port", str(port)], env=dict(os.environ), log=log,
                  cwd=cwd)
    wait_until(lambda: _http_ok(f"http://{LOOPBACK}:{port}/api/openapi.json"), timeout=timeout,
               what="review console", proc=proc, log=log)
    return proc


def stop(proc_or_pid: subprocess.Popen | int, timeout: float = 15) -> None:
    """Stop a service and its children (it leads its own process group)."""
    pid = proc_or_pid.pid if isinstance(proc_or_pid, subprocess.Popen) else proc_or_pid
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(proc_or_pid, subprocess.Popen):
            if proc_or_pid.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie we started is not alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    except OSError:
        return True


# --- the local stack (bpo stack up|down|status) ---

@dataclass
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    url: str


def _pidfile(settings: Settings, name: str) -> Path:
    return settings.home / "run" / f"{name}.pid"


def _logfile(settings: Settings, name: str) -> Path:
    return settings.home / "logs" / f"{name}.log"


def _running_pid(settings: Settings, name: str) -> int | None:
    pf = _pidfile(settings, name)
    if not pf.exists():
        return None
    try:
        pid = int(pf.read_text().strip())
    except ValueError:
        return None
    return pid if _alive(pid) else None


def ensure_stack_env(settings: Settings) -> Path:
    """Write ``.bpo/stack.env`` (mode 600) with generated local S3 keys, once."""
    path = settings.home / "stack.env"
    if path.exists():
        return path
    settings.home.mkdir(parents=True, exist_ok=True)
    lines = [
        f"BPO_S3_ENDPOINT_URL=http://{LOOPBACK}:{settings.s3_port}",
        f"BPO_S3_ACCESS_KEY_ID=bpo-{secrets.token_hex(6)}",
        f"BPO_S3_SECRET_ACCESS_KEY={secrets.token_urlsafe(24)}",
        f"BPO_PREFECT_API_URL=http://{LOOPBACK}:{settings.prefect_port}/api",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def stack_status(settings: Settings) -> list[ServiceStatus]:
    urls = {
        "prefect": settings.prefect_ui_url,
        "seaweedfs": settings.s3_endpoint_url or f"http://{LOOPBACK}:{settings.s3_port}",
        "console": f"http://{LOOPBACK}:{settings.console_port}/",
        "worker": f"work pool {settings.work_pool}",
    }
    out = []
    for name, url in urls.items():
        pid = _running_pid(settings, name)
        out.append(ServiceStatus(name, pid is not None, pid, url))
    return out


def stack_up(settings: Settings, *, worker: bool = False, say: Callable[[str], None] = lambda _m: None) -> None:
    """Start what is not running; report what already runs."""
    home = settings.home.resolve()
    for name in ("seaweedfs", "prefect"):
        pid = _running_pid(settings, name)
        if pid is not None:
            say(f"{name}: already running (pid {pid})")
            continue
        if name == "seaweedfs":
            assert settings.s3_access_key_id and settings.s3_secret_access_key
            proc = start_seaweedfs(home / "seaweedfs", s3_port=settings.s3_port,
                                   access_key=settings.s3_access_key_id,
                                   secret_key=settings.s3_secret_access_key.get_secret_value(),
                                   bucket=settings.s3_bucket, log=_logfile(settings, name))
        else:
            proc = start_prefect_server(home / "prefect", port=settings.prefect_port, log=_logfile(settings, name))
        _pidfile(settings, name).parent.mkdir(parents=True, exist_ok=True)
        _pidfile(settings, name).write_text(str(proc.pid))
        say(f"{name}: started (pid {proc.pid})")
    pid = _running_pid(settings, "console")
    if pid is not None:
        say(f"console: already running (pid {pid})")
    else:
        proc = start_console(port=settings.console_port, log=_logfile(settings, "console"), cwd=Path.cwd())
        _pidfile(settings, "console").write_text(str(proc.pid))
        say(f"console: started (pid {proc.pid}) on http://{LOOPBACK}:{settings.console_port}/")
    if worker:
        pid = _running_pid(settings, "worker")
        if pid is not None:
            say(f"worker: already running (pid {pid})")
        else:
            proc = start_worker(api_url=settings.prefect_api_url, pool=settings.work_pool,
                                log=_logfile(settings, "worker"), env=worker_env(settings), cwd=Path.cwd())
            _pidfile(settings, "worker").write_text(str(proc.pid))
            say(f"worker: started (pid {proc.pid})")


def worker_env(settings: Settings) -> dict[str, str]:
    """Settings a worker's flow runs need: persisted results in the S3 block."""
    return {
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": f"s3-bucket/{settings.result_storage_block}",
    }


def deploy(settings: Settings, project_dir: Path) -> subprocess.CompletedProcess[str]:
    """Create or update every deployment in ``prefect.yaml`` on the stack's server."""
    env = prefect_env(settings.prefect_api_url, BPO_PROJECT_DIR=str(project_dir.resolve()))
    return subprocess.run([_bin("prefect"), "--no-prompt", "deploy", "--all"], cwd=project_dir, env=env,
                          capture_output=True, text=True, timeout=300)


def stack_down(settings: Settings, *, say: Callable[[str], None] = lambda _m: None) -> None:
    """Stop only what ``stack up`` started (the pids it recorded)."""
    for name in ("worker", "console", "prefect", "seaweedfs"):
        pid = _running_pid(settings, name)
        pf = _pidfile(settings, name)
        if pid is None:
            if pf.exists():
                pf.unlink()
            continue
        stop(pid)
        pf.unlink(missing_ok=True)
        say(f"{name}: stopped (pid {pid})")


def configure_prefect(settings: Settings) -> None:
    """Create the work pool and the S3 result-storage block on the stack's Prefect server (idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=settings.work_pool, type="process"))
        except ObjectAlreadyExists:
            pass
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    creds = AwsCredentials(
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
        region_name=settings.s3_region,
        aws_client_parameters=AwsClientParameters(endpoint_url=settings.s3_endpoint_url,
                                                  config={"s3": {"addressing_style": "path"}}),
    )
    creds.save(f"{settings.result_storage_block}-credentials", overwrite=True)
    S3Bucket(bucket_name=settings.s3_bucket, credentials=creds,
             bucket_folder=f"{settings.s3_prefix}/prefect-results").save(settings.result_storage_block, overwrite=True)
