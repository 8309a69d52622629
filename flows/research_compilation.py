"""Research compilation: profiles compiled from many sources, every fact cited, published after review.

Input: a research brief (``flows/specs/*.yaml`` with ``kind: research``, or any YAML/JSON/CSV file): the
subjects, the fields with their types, the completeness threshold, the sources (a document corpus, web
pages under an allowlist, SQL tables). Outputs, under the run's S3 prefix: every fetched document's raw
bytes (by content hash), the candidate facts with their citations, the deliverable as Markdown, HTML,
XLSX and CSV with a time-limited link, and what changed since the brief's last edition. Conflicts,
low-confidence values and missing required fields wait for an agent; the finished report waits for one
approval (console, signed link, or the Prefect UI's resume form). Schedule: the ``research-compilation``
deployment runs on demand, and weekly for a standing brief.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from bpo.research.brief import load_brief
from bpo.research.pipeline import FACTS_STEP, GATE_STEP, needs_gate
from tasks import runs as run_hooks
from tasks.artifacts import open_run
from tasks.research import ask_candidates, ask_gate, compile_facts, extract_facts, gate_status, gather_sources, publish
from tasks.review import await_review


def _run_name() -> str:
    brief = str(flow_run.get_parameters().get("brief") or "brief")
    return f"research-{brief.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"


@flow(name="research-compilation", flow_run_name=_run_name, on_failure=[run_hooks.on_failure],
      on_crashed=[run_hooks.on_crashed], on_cancellation=[run_hooks.on_cancellation])
def research_compilation(brief: str) -> dict[str, Any]:
    """Gather → extract → reconcile → validate → review → gate → publish."""
    b = load_brief(brief)  # a brief that cannot be compiled is refused here, before any fetch
    run = open_run(str(flow_run.get_id()), b.name, b.name, f"research/{b.name}")
    gathered = gather_sources(run, b)
    extracted = extract_facts(run, b, gathered)
    asked = ask_candidates(run, b, extracted)
    await_review(run, FACTS_STEP)  # conflicts, low confidence, missing required fields: an agent picks or enters
    compiled = compile_facts(run, b, extracted)
    approved = True
    if needs_gate(b, compiled):
        ask_gate(run, b, compiled)
        failed = "; ".join(compiled.problems) or "none"
        await_review(run, GATE_STEP, gate_description=(
            f"**{b.name}**: {len(b.subjects)} subjects × {len(b.fields)} fields. Failed checks: {failed}. "
            f"The draft report is linked from the run's gate item (`bpo review list`). Approve to publish it."))
        approved = gate_status(run) == "approved"
    return publish(run, b, gathered, extracted, asked, compiled, approved=approved)
