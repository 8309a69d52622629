"""Research-compilation steps as tasks: retries, timeouts and persisted results around ``bpo.research``.

Results are persisted (the stack's default), so a run resumed from suspension — which starts again from
the top — does not fetch, extract or ask again what it already did.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from bpo.batches import release_batch
from bpo.db.session import session_scope
from bpo.research import pipeline
from bpo.research.brief import Brief
from bpo.research.pipeline import Asked, Compiled, Extracted, Gathered
from bpo.review import set_run_status
from bpo.run import RunContext
from bpo.settings import get_settings


@task(retries=1, retry_delay_seconds=5, timeout_seconds=3600)
def gather_sources(run: RunContext, brief: Brief) -> Gathered:
    """Every source once per run, raw bytes to S3 keyed by content hash; a failing source is recorded."""
    gathered = pipeline.gather_sources(run, brief)
    create_table_artifact(key=f"{_slug(brief)}-sources", table=gathered.sources,
                          description="Documents per source: fetched, not modified, failed, refused")
    return gathered


@task(retries=1, retry_delay_seconds=5, timeout_seconds=3600)
def extract_facts(run: RunContext, brief: Brief, gathered: Gathered) -> Extracted:
    """Candidate facts with their citations, from every document that could be read."""
    return pipeline.extract_facts(run, brief, gathered)


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def ask_candidates(run: RunContext, brief: Brief, extracted: Extracted) -> Asked:
    """Reconcile by learned source trust; conflicts, low confidence and missing required fields to review."""
    return pipeline.ask_candidates(run, brief, extracted)


@task(retries=1, retry_delay_seconds=2, timeout_seconds=1800)
def compile_facts(run: RunContext, brief: Brief, extracted: Extracted) -> Compiled:
    """The agents' decisions laid over the reconciliation; the checks; the report drafted in every format."""
    return pipeline.compile_facts(run, brief, extracted)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def ask_gate(run: RunContext, brief: Brief, compiled: Compiled) -> int:
    """The finished report waits for one approval (in the console, by a signed link or the Prefect UI)."""
    return pipeline.ask_gate(run, brief, compiled, hours=brief.link_hours)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=60)
def gate_status(run: RunContext) -> str | None:
    return pipeline.gate_status(run)


@task(retries=2, retry_delay_seconds=2, timeout_seconds=600)
def publish(run: RunContext, brief: Brief, gathered: Gathered, extracted: Extracted, asked: Asked,
            compiled: Compiled, *, approved: bool) -> dict[str, Any]:
    """The deliverable to S3 with time-limited links (approved), or the rejection recorded; the run is closed."""
    published = pipeline.publish(run, brief, gathered, compiled) if approved else None
    slug = _slug(brief)
    lines = [f"# {brief.name}: {'published' if approved else 'not published: the report was rejected'}", "",
             "| subjects | fields | documents | candidates | sent to review |", "|---:|---:|---:|---:|---:|",
             f"| {len(brief.subjects)} | {len(brief.fields)} | {gathered.documents} | {extracted.candidates} | "
             f"{asked.to_review} |", "", "Facts by status: " + ", ".join(f"{k} {v}" for k, v in
                                                                       sorted(compiled.counts.items())), ""]
    if compiled.problems:
        lines += ["Failed checks:", *[f"- {p}" for p in compiled.problems], ""]
    if extracted.unreadable:
        lines += [f"Unreadable documents: {len(extracted.unreadable)} (see the run's documents.jsonl)", ""]
    if published is not None:
        if published["changes"] is not None:
            c = published["changes"]
            lines += [f"Since the last edition: {c['changed']} changed, {c['added']} added, "
                      f"{c['unsupported']} no longer supported by any source.", ""]
        create_link_artifact(key=f"{slug}-report-link", link=published["links"]["html"],
                             link_text="The report (HTML; the link expires)",
                             description=f"Presigned for {brief.link_hours} h; XLSX, CSV and Markdown beside it")
    create_markdown_artifact(key=f"{slug}-summary", markdown="\n".join(lines), description="Research run")
    summary = {"flow_run_id": run.flow_run_id, "brief": brief.name, "published": approved,
               "subjects": len(brief.subjects), "documents": gathered.documents, "candidates": extracted.candidates,
               "to_review": asked.to_review,
               "unreadable": extracted.unreadable, "facts": compiled.counts, "failed_checks": compiled.problems,
               "sources": gathered.sources, "trust": asked.trust, **(published or {})}
    url = get_settings().ops_database_url or ""
    with session_scope(url) as s:
        set_run_status(s, run.flow_run_id, "completed", published=approved, documents=gathered.documents,
                       candidates=extracted.candidates, to_review=asked.to_review)
    release_batch(url, flow_run_id=run.flow_run_id, process=run.spec, batch=run.batch)
    return summary


def _slug(brief: Brief) -> str:
    return "".join(c if c.isalnum() else "-" for c in brief.name.lower()).strip("-") or "research"
