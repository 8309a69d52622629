"""The package as a client installs it: a wheel, not the checkout, running a client's own process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from bpo.samples import make_records, to_csv

pytestmark = pytest.mark.slow
CHECKOUT = Path(__file__).resolve().parent.parent


def client_folder(folder: Path) -> None:
    """A client's process, a spec and its suite side by side, in no folder of the checkout."""
    folder.mkdir()
    spec = yaml.safe_load((CHECKOUT / "flows" / "specs" / "customer_onboarding.yaml").read_text())
    spec.update(name="acme-intake", suite="acme_intake", target={"table": "acme_customers", "key": ["customer_id"]})
    (folder / "acme_intake.yaml").write_text(yaml.safe_dump(spec))
    suite = json.loads((CHECKOUT / "expectations" / "customer_onboarding.json").read_text())
    suite["name"] = "acme_intake"
    (folder / "acme_intake.json").write_text(json.dumps(suite))


def install_wheel(tmp_path: Path) -> Path:
    """Build the wheel and install it, without -e, into a new virtualenv; its python.

    The third-party libraries come from this test's own environment (a plain path in a ``.pth``, so
    that environment's editable install of this checkout is not activated there); only the wheel
    is installed, before that path is added, so pip sees an environment without the package.
    """
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                    str(CHECKOUT)], check=True, timeout=180)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    wheel = next((tmp_path / "dist").glob("nonvoice_bpo-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=120)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "shared_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_an_installed_package_runs_a_clients_process_from_outside_the_checkout(stack: dict[str, str],
                                                                               tmp_path: Path) -> None:
    python = install_wheel(tmp_path)
    client = tmp_path / "acme"
    client_folder(client)
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "forms.csv").write_bytes(to_csv(make_records(30, seed=5, review_fraction=0.0, start=700_000)))
    target = f"sqlite:///{tmp_path}/target.db"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(BPO_PROCESS_DIRS=str(client), BPO_TARGET_DATABASE_URL=target, COLUMNS="300")
    work = tmp_path / "elsewhere"  # the current folder is no part of the checkout either
    work.mkdir()

    where = subprocess.run([str(python), "-c", "import bpo, flows, tasks; print(bpo.__file__, flows.__file__, "
                            "tasks.__file__)"], cwd=work, env=env, capture_output=True, text=True, check=True)
    assert all(str(tmp_path / "venv") in f and str(CHECKOUT) not in f for f in where.stdout.split()), where.stdout

    bpo = [str(python.parent / "bpo"), "run", "data-entry", str(batch)]
    run = subprocess.run([*bpo, "--process", "acme_intake", "--json"], cwd=work, env=env, capture_output=True,
                         text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    assert result["loaded"] == 30 and result["rejected"] == 0
    with create_engine(target).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM acme_customers")).scalar() == 30

    # a spec not on the search path: the error says where it looked and what is there
    missing = subprocess.run([*bpo, "--process", "customer_onboarding"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=120)
    assert missing.returncode == 1
    message = " ".join(missing.stderr.split())
    assert str(client) in message and "acme_intake" in message, missing.stderr
