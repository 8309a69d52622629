"""`bpo stack up | status | down` as a person runs it: real services, its own folder and ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bpo.stack import LOOPBACK, free_port

pytestmark = pytest.mark.slow


def bpo(home: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BPO_", "PREFECT_"))}
    return subprocess.run([sys.executable, "-m", "bpo.cli", *args], capture_output=True, text=True, cwd=home,
                          env={**clean, **env}, timeout=240)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def test_stack_up_is_idempotent_reports_status_and_down_stops_only_its_services(tmp_path: Path) -> None:
    prefect_port, s3_port, console_port = free_port(), free_port(), free_port()
    env = {"BPO_HOME": str(tmp_path / ".bpo"), "BPO_PREFECT_PORT": str(prefect_port), "BPO_S3_PORT": str(s3_port),
           "BPO_PREFECT_API_URL": f"http://{LOOPBACK}:{prefect_port}/api", "BPO_CONSOLE_PORT": str(console_port)}
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        up = bpo(tmp_path, env, "stack", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "seaweedfs: started" in up.stdout and "prefect: started" in up.stdout
        assert "console: started" in up.stdout
        assert listening(prefect_port) and listening(s3_port) and listening(console_port)
        stack_env = (tmp_path / ".bpo" / "stack.env")
        assert oct(stack_env.stat().st_mode & 0o777) == "0o600"
        assert "BPO_S3_SECRET_ACCESS_KEY" in stack_env.read_text()
        assert stack_env.read_text().split("BPO_S3_SECRET_ACCESS_KEY=")[1].split()[0] not in up.stdout

        again = bpo(tmp_path, env, "stack", "up")
        assert again.returncode == 0 and "already running" in again.stdout

        status = bpo(tmp_path, env, "stack", "status", "--json")
        services = {s["name"]: s for s in json.loads(status.stdout)}
        assert services["prefect"]["running"] and services["seaweedfs"]["running"] and services["console"]["running"]
        assert services["console"]["url"] == f"http://{LOOPBACK}:{console_port}/"
        assert services["prefect"]["url"] == f"http://{LOOPBACK}:{prefect_port}"
        assert (tmp_path / ".bpo" / "ops.db").exists(), "stack up migrates the ops database"

        down = bpo(tmp_path, env, "stack", "down")
        assert down.returncode == 0 and "stopped" in down.stdout
        assert not listening(prefect_port) and not listening(s3_port) and not listening(console_port)
        assert bystander.poll() is None, "down stops only what up started"
    finally:
        bpo(tmp_path, env, "stack", "down")
        bystander.kill()


def test_a_port_already_taken_is_named_in_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"BPO_HOME": str(tmp_path / ".bpo"), "BPO_S3_PORT": str(port), "BPO_PREFECT_PORT": str(free_port())}
        res = bpo(tmp_path, env, "stack", "up")
    assert res.returncode != 0
    assert f"port {port}" in res.stderr and "already in use" in res.stderr
    bpo(tmp_path, env, "stack", "down")
