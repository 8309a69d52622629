"""`bpo` as a person or a script runs it: in a subprocess, with this test session's settings."""

from __future__ import annotations

import os
import subprocess
import sys

BPO = [sys.executable, "-m", "bpo.cli"]


def bpo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BPO, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=120)
