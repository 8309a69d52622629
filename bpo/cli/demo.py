"""``bpo demo``: a sample batch through data entry, reviewed as an agent would, and where to look."""

from __future__ import annotations

import json
import sys
import time

import typer

from bpo.cli.common import app, fail, out, settings
from bpo.cli.runs import print_summary


@app.command("demo")
def demo(records: int = typer.Option(200, help="Records in the sample batch.")) -> None:
    """Drop a sample batch, run data entry on it, resolve its review items as an agent would, show where to look."""
    import re
    import subprocess
    from datetime import UTC, datetime

    from bpo.review import list_items
    from bpo.samples import write_batch

    s = settings()
    batch = (s.home / "demo" / f"batch-{datetime.now():%Y%m%d-%H%M%S}").resolve()
    counts = write_batch(batch, n=records, review_fraction=0.03)
    out.print(f"sample batch: {batch} — {counts}")
    started = datetime.now(UTC)
    bpo = [sys.executable, "-m", "bpo.cli"]
    run = subprocess.Popen([*bpo, "run", "data-entry", str(batch), "--json"], stdout=subprocess.PIPE, text=True)
    resolved: set[int] = set()
    while run.poll() is None:
        for item in list_items(s, status="open"):
            # SQLite gives back naive datetimes; every time stored here is UTC
            created = item.created_at if item.created_at.tzinfo else item.created_at.replace(tzinfo=UTC)
            if item.id in resolved or created < started:
                continue
            checks = {c["check"] for c in item.failed_checks}
            raw_date = str(item.proposed.get("signup_date") or "")
            match = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", raw_date)
            if checks == {"ambiguous_date"} and match:
                # the agent looks at the form: this client writes month first
                args = ["--approve", "--set", f"signup_date={match[3]}-{match[1]}-{match[2]}"]
            else:
                args = ["--reject", "--reason", "; ".join(sorted({c["reason"] for c in item.failed_checks}))[:200]]
            cmd = ["review", "resolve", str(item.id), *args, "--as", "demo-agent"]
            out.print("[dim]$ bpo " + " ".join(cmd) + "[/dim]")
            subprocess.run([*bpo, *cmd], check=False)
            resolved.add(item.id)
        time.sleep(1)
    stdout = run.stdout.read() if run.stdout else ""
    if run.returncode != 0:
        fail(f"the demo run failed (exit {run.returncode})")
    result = json.loads(stdout)
    from bpo.db.session import engine_for
    from bpo.spec import load_spec
    from bpo.target import count_rows

    table = load_spec("customer_onboarding").target.table
    rows = count_rows(engine_for(s.target_database_url or ""), table)
    print_summary(result)
    out.print(f"""
[bold]where to look[/bold]
  Prefect UI (the run, its artifacts):  {result['url']}
  S3 artifacts of the run:              {result['manifest'].rsplit('/', 1)[0]}/
  S3 browser/API (local stack):         {s.s3_endpoint_url}
  quarantine:                           s3://{s.s3_bucket}/{s.s3_prefix}/quarantine/customer-onboarding/
  target table `{table}`:              {rows} rows in {s.target_database_url}
  review decisions:                     bpo review list --status all
""")
