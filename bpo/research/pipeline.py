"""The research-compilation steps as plain functions: what ``tasks/research.py`` wraps, one call a task.

Between steps only S3 keys and small summaries travel; documents, candidates and page texts are JSON
Lines under the run's prefix. The reconciliation is not stored: it is deterministic, so the step after
review makes it again from the same candidates and lays the agents' decisions over it.

The last published edition of a brief is remembered in S3 (``research-state/<brief>/latest.json``): the
next run asks its pages conditionally (ETag / Last-Modified) and reports what changed since it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import select

from bpo.carry import carry_over
from bpo.db.models import ReviewItem
from bpo.db.session import session_scope
from bpo.pool import import_modules
from bpo.quality import GX, check_expectations
from bpo.research import gather as gathering
from bpo.research import publish as publishing
from bpo.research.brief import Brief
from bpo.research.extract import extract_all
from bpo.research.model import Candidate, Citation, Document, as_dict
from bpo.research.reconcile import FieldResult, Reconciliation, reconcile
from bpo.review import add_items
from bpo.review.candidates import candidates_item, excerpt_around
from bpo.review.gate import open_gate
from bpo.run import RunContext, get_store
from bpo.settings import get_settings
from bpo.store import ArtifactStore

FACTS_STEP = "facts"  # the candidates items: conflicts, low confidence, missing required fields
GATE_STEP = "report"  # the finished report, approved before it is published
E164 = r"^\+[1-9][0-9]{6,14}$"
FORMATS = {"email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "phone": E164, "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
           "url": r"^https?://[^\s/$.?#][^\s]*$", "year": r"^[0-9]{4}$", "count": r"^[0-9]+$"}


@dataclasses.dataclass(frozen=True)
class Gathered:
    documents_key: str
    documents: int
    sources: list[dict[str, Any]]  # per source: fetched, not_modified, failed, refused
    previous_run: str | None  # the flow run of the edition this one refreshes


@dataclasses.dataclass(frozen=True)
class Extracted:
    candidates_key: str
    texts_key: str
    candidates: int
    unreadable: list[dict[str, str]]  # {"location", "reason"}: documents no reader could read


@dataclasses.dataclass(frozen=True)
class Asked:
    items: int  # new candidates items
    to_review: int  # fields sent to review (carried-over decisions included)
    checks: list[dict[str, Any]]  # the expectations on the reconciled draft, before review
    trust: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Compiled:
    edition_key: str  # the facts as JSON
    checks: list[dict[str, Any]]
    problems: list[str]  # failed checks, in words: the gate is asked whenever there are any
    counts: dict[str, int]  # fields by status
    draft: dict[str, str]  # format -> S3 key of the report as it stands


# ---- JSON Lines of the shared dataclasses


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def dump_lines(objects: Iterable[Any]) -> bytes:
    return b"".join(json.dumps(as_dict(o), default=_default).encode() + b"\n" for o in objects)


def _lines(data: bytes) -> Iterator[dict[str, Any]]:
    for line in data.splitlines():
        if line.strip():
            yield json.loads(line)


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def load_documents(data: bytes) -> list[Document]:
    return [Document(**{**d, "retrieved_at": _when(d["retrieved_at"])}) for d in _lines(data)]


def _citation(d: dict[str, Any]) -> Citation:
    return Citation(**{**d, "retrieved_at": _when(d["retrieved_at"])})


def load_candidates(data: bytes) -> list[Candidate]:
    return [Candidate(**{**c, "citation": _citation(c["citation"])}) for c in _lines(data)]


# ---- editions


def _state_key(store: ArtifactStore, brief: Brief) -> str:
    return store.key("research-state", brief.name, "latest.json")


def last_edition(store: ArtifactStore, brief: Brief) -> dict[str, Any] | None:
    """The brief's last published edition ({flow_run_id, edition_key, documents_key, published_at}), if any."""
    key = _state_key(store, brief)
    if not store.list_keys(key):
        return None
    return dict(json.loads(store.get_bytes(key)))


# ---- the steps


def gather_sources(run: RunContext, brief: Brief) -> Gathered:
    """Every source once; raw bytes under the run keyed by content hash; pages unchanged since the last
    edition asked conditionally. A source that fails is recorded with its error and the run goes on."""
    # Great Expectations takes seconds to import: done while the pages download, it is ready for the checks
    threading.Thread(target=import_modules, args=(GX,), name="bpo-import-gx", daemon=True).start()
    store = get_store()
    last = last_edition(store, brief)
    previous = load_documents(store.get_bytes(last["documents_key"])) if last else None
    documents = gathering.gather(brief, store, run.prefix, previous, settings=get_settings())
    key = run.key("documents.jsonl")
    store.put_bytes(key, dump_lines(documents), "application/x-ndjson")
    return Gathered(key, len(documents), [dataclasses.asdict(s) for s in gathering.summarize(brief, documents)],
                    last["flow_run_id"] if last else None)


def _raw(store: ArtifactStore, documents: list[Document]) -> list[tuple[Document, bytes]]:
    readable = [d for d in documents if d.status in ("ok", "not_modified") and d.key]
    data: dict[str, bytes] = {}
    for key in {d.key for d in readable if d.key}:  # what this process gathered a moment ago, if it did
        kept = gathering.recent.take(key)
        if kept is not None:
            data[key] = kept
    keys = sorted({d.key for d in readable if d.key} - data.keys())
    with ThreadPoolExecutor(max_workers=8) as pool:  # one client, shared: boto3 clients are thread-safe
        data.update(zip(keys, pool.map(store.get_bytes, keys), strict=True))
    return [(d, data[d.key]) for d in readable if d.key]


def extract_facts(run: RunContext, brief: Brief, gathered: Gathered) -> Extracted:
    """Candidate facts with citations from every readable document; an unreadable one is listed with its reason."""
    store = get_store()
    documents = load_documents(store.get_bytes(gathered.documents_key))
    found = extract_all(_raw(store, documents), brief)
    key = run.key("candidates.jsonl")
    store.put_bytes(key, dump_lines(found.candidates), "application/x-ndjson")
    texts_key = run.key("texts.json")
    store.put_bytes(texts_key, json.dumps(found.texts).encode(), "application/json")
    unreadable = [{"location": d.location, "reason": reason} for d, reason in found.failures]
    return Extracted(key, texts_key, len(found.candidates), unreadable)


def reconciled(brief: Brief, extracted: Extracted) -> tuple[list[Candidate], Reconciliation]:
    candidates = load_candidates(get_store().get_bytes(extracted.candidates_key))
    return candidates, reconcile(candidates, brief)


def _excerpt(texts: dict[str, str], citation: Citation, value: str) -> str:
    text = texts.get(citation.content_hash or "")
    return excerpt_around(text, value) if text else citation.snippet


def _question(brief: Brief, result: FieldResult, texts: dict[str, str]) -> dict[str, Any]:
    subject = next(s for s in brief.subjects if s.id == result.subject_id)
    field = brief.fields[result.field]
    why = "missing" if result.status == "missing" else result.status
    groups = []
    for group in result.groups:
        citations = []
        for c in publishing.unique(x.citation for x in group.candidates):
            citations.append({"source": c.source, "location": c.location, "where": c.where, "snippet": c.snippet,
                              "retrieved_at": c.retrieved_at.isoformat(), "content_hash": c.content_hash,
                              "excerpt": _excerpt(texts, c, group.candidates[0].value)})
        groups.append({"value": group.value, "normalized": group.candidates[0].normalized,
                       "confidence": round(group.confidence, 6), "citations": citations})
    proposed = 0 if groups and why != "missing" else None
    return {"subject": {"id": subject.id, "name": subject.name},
            "field": {"name": field.name, "type": field.type, "required": field.required, "minimum": field.minimum,
                      "maximum": field.maximum, "country": field.country, "currency": field.currency},
            "reason": why, "confidence": round(result.confidence, 6) if proposed is not None else None,
            "proposed": proposed, "candidates": groups}


def ask_candidates(run: RunContext, brief: Brief, extracted: Extracted) -> Asked:
    """Reconcile; every conflict, low-confidence value and missing required field becomes a ``candidates`` item.

    A question asked before with the same candidates from the same places takes that decision (carried over).
    """
    store = get_store()
    _, rec = reconciled(brief, extracted)
    checks = validate(brief, publishing.facts(rec, brief))
    texts: dict[str, str] = json.loads(store.get_bytes(extracted.texts_key))
    review = brief.review
    due = datetime.now(UTC) + timedelta(hours=review.due_hours)
    items = [candidates_item(flow_run_id=run.flow_run_id, process=brief.name, step=FACTS_STEP,
                             source=_question(brief, result, texts), due_at=due, on_timeout=review.on_timeout,
                             priority=review.priority)
             for result in rec.to_review()]
    new = 0
    if items:
        with session_scope(get_settings().ops_database_url or "") as s:
            carry_over(s, flow_run_id=run.flow_run_id, process=brief.name, batch=run.batch, items=items)
            new = add_items(s, items, assign_among=review.groups if review.assign == "least_loaded" else ())
    return Asked(new, len(rec.to_review()), checks, {k: round(v, 4) for k, v in rec.trust.items()})


def _decisions(run: RunContext) -> dict[tuple[str, str], publishing.Decision]:
    """The agents' answers to this run's candidates items, by (subject id, field)."""
    with session_scope(get_settings().ops_database_url or "") as s:
        items = s.scalars(select(ReviewItem).where(ReviewItem.flow_run_id == run.flow_run_id,
                                                   ReviewItem.step == FACTS_STEP,
                                                   ReviewItem.status.in_(("approved", "rejected")))).all()
        out = {}
        for item in items:
            subject_id, field = item.record_key.split("|", 1)
            decided = item.decision or {}
            agent = item.decided_by or "agent"
            if item.status == "approved" and decided.get("value") is not None:
                citations = tuple(_citation({k: c.get(k) for k in ("source", "location", "where", "snippet",
                                                                    "retrieved_at", "content_hash")})
                                  for c in decided.get("citations") or [])
                value = decided.get("normalized") or decided["value"]  # an entered value, as its field type reads it
                out[(subject_id, field)] = publishing.Decision(agent=agent, value=str(value),
                                                               citations=citations,
                                                               entered=decided.get("candidate") is None)
            else:  # not found, or the proposal rejected: nothing is published for the field
                out[(subject_id, field)] = publishing.Decision(agent=agent, value=None, citations=())
        return out


def facts_frame(brief: Brief, facts: list[publishing.Fact]) -> pd.DataFrame:
    """One row per subject, a column per field (None when empty) and ``<field>__cited`` (every value cited)."""
    rows: dict[str, dict[str, Any]] = {s.id: {"subject_id": s.id} for s in brief.subjects}
    for fact in facts:
        rows[fact.subject_id][fact.field] = fact.value
        rows[fact.subject_id][f"{fact.field}__cited"] = fact.value is None or bool(fact.citations)
    frame = pd.DataFrame(list(rows.values()), columns=["subject_id", *[c for f in brief.fields
                                                                       for c in (f, f"{f}__cited")]])
    return frame.astype(object).where(frame.notna(), None)


def expectations(brief: Brief) -> list[dict[str, Any]]:
    """The deliverable's checks: required fields filled above the completeness threshold, every value cited,
    formats and ranges per field type."""
    out: list[dict[str, Any]] = [{"type": "expect_column_values_to_be_unique", "kwargs": {"column": "subject_id"}}]
    for name, field in brief.fields.items():
        if field.required:
            out.append({"type": "expect_column_values_to_not_be_null",
                        "kwargs": {"column": name, "mostly": brief.completeness}})
        out.append({"type": "expect_column_values_to_be_in_set",
                    "kwargs": {"column": f"{name}__cited", "value_set": [True]}})
        if field.type in FORMATS:
            out.append({"type": "expect_column_values_to_match_regex",
                        "kwargs": {"column": name, "regex": FORMATS[field.type]}})
    return out


def _ranged(brief: Brief, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Year and count columns as numbers, with their range expectations."""
    checks = []
    frame = frame.copy()
    for name, field in brief.fields.items():
        if field.type in ("year", "count") and (field.minimum is not None or field.maximum is not None
                                                or field.type == "count"):
            frame[f"{name}__number"] = pd.to_numeric(frame[name], errors="coerce")
            low = field.minimum if field.minimum is not None else (0 if field.type == "count" else None)
            checks.append({"type": "expect_column_values_to_be_between",
                           "kwargs": {"column": f"{name}__number", "min_value": low, "max_value": field.maximum}})
    return frame, checks


def validate(brief: Brief, facts: list[publishing.Fact]) -> list[dict[str, Any]]:
    """The expectations, run by Great Expectations on the facts."""
    frame, ranges = _ranged(brief, facts_frame(brief, facts))
    return check_expectations(expectations(brief) + ranges, frame=frame)


def problems_of(checks: list[dict[str, Any]]) -> list[str]:
    words = {"expect_column_values_to_not_be_null": "filled below the completeness threshold",
             "expect_column_values_to_be_in_set": "values without a citation",
             "expect_column_values_to_match_regex": "values not in the field's format",
             "expect_column_values_to_be_between": "values out of range",
             "expect_column_values_to_be_unique": "subjects repeated"}
    return [f"{str(c['column']).split('__')[0]}: {words.get(c['type'], c['type'])} "
            f"({c['unexpected_count']} of {c['element_count']})" for c in checks if not c["success"]]


def compile_facts(run: RunContext, brief: Brief, extracted: Extracted) -> Compiled:
    """The reconciliation with the agents' decisions laid over it, checked, and drafted in every format."""
    store = get_store()
    _, rec = reconciled(brief, extracted)
    facts = publishing.facts(rec, brief, _decisions(run))
    checks = validate(brief, facts)
    edition_key = run.key("edition.json")
    store.put_bytes(edition_key, publishing.edition_json(facts), "application/json")
    draft = _render(store, run.key("draft"), brief, facts)
    counts: dict[str, int] = {}
    for fact in facts:
        counts[fact.status] = counts.get(fact.status, 0) + 1
    return Compiled(edition_key, checks, problems_of(checks), counts, draft)


CONTENT_TYPES = {"md": "text/markdown; charset=utf-8", "html": "text/html; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "csv": "text/csv; charset=utf-8", "json": "application/json"}


def _render(store: ArtifactStore, prefix: str, brief: Brief, facts: list[publishing.Fact]) -> dict[str, str]:
    keys = {}
    for name, data in publishing.render(facts, title=brief.description or brief.name,
                                        generated_at=datetime.now(UTC)).items():
        suffix = name.rsplit(".", 1)[-1]
        key = f"{prefix}/{name}"
        store.put_bytes(key, data, CONTENT_TYPES.get(suffix, "application/octet-stream"))
        keys[suffix] = key
    return keys


def needs_gate(brief: Brief, compiled: Compiled) -> bool:
    """The brief asks for a gate, or the report fails a check: a person decides whether it goes out."""
    return brief.review.gate or bool(compiled.problems)


def ask_gate(run: RunContext, brief: Brief, compiled: Compiled, hours: float) -> int:
    store = get_store()
    summary = {"brief": brief.name, "subjects": len(brief.subjects), "fields": len(brief.fields),
               "facts": compiled.counts, "failed_checks": compiled.problems,
               "report": store.uri(compiled.draft["html"]),
               "report_link": store.presigned_url(compiled.draft["html"], hours)}
    with session_scope(get_settings().ops_database_url or "") as s:
        return open_gate(s, run.flow_run_id, brief.name, GATE_STEP, summary,
                         datetime.now(UTC) + timedelta(hours=brief.review.due_hours), brief.review.on_timeout,
                         priority=brief.review.priority)


def gate_status(run: RunContext) -> str | None:
    with session_scope(get_settings().ops_database_url or "") as s:
        return s.scalar(select(ReviewItem.status).where(ReviewItem.flow_run_id == run.flow_run_id,
                                                        ReviewItem.step == GATE_STEP))


def publish(run: RunContext, brief: Brief, gathered: Gathered, compiled: Compiled) -> dict[str, Any]:
    """The deliverable in every format under the run's ``deliverable/`` (the draft compiled, and approved if a
    gate was asked, byte for byte), what changed since the last edition, and this edition remembered as the
    brief's latest."""
    store = get_store()
    facts = publishing.read_edition(store.get_bytes(compiled.edition_key))
    keys = {}
    for suffix, key in compiled.draft.items():  # the very report the gate saw: copied, not rendered again
        keys[suffix] = run.key("deliverable", key.rsplit("/", 1)[-1])
        store.put_bytes(keys[suffix], store.get_bytes(key), CONTENT_TYPES.get(suffix, "application/octet-stream"))
    last = last_edition(store, brief)
    changed: publishing.Changes | None = None
    if last is not None:
        previous = publishing.read_edition(store.get_bytes(last["edition_key"]))
        changed = publishing.changes(previous, facts)
        title = f"{brief.name}: changes since the edition of {last['published_at']}"
        markdown = publishing.changes_markdown(changed, title=title).encode()
        store.put_bytes(run.key("deliverable", "changes.md"), markdown, CONTENT_TYPES["md"])
        store.put_bytes(run.key("deliverable", "changes.csv"), publishing.changes_csv(changed), CONTENT_TYPES["csv"])
        keys["changes"] = run.key("deliverable", "changes.md")
    state = {"flow_run_id": run.flow_run_id, "edition_key": compiled.edition_key,
             "documents_key": gathered.documents_key, "published_at": datetime.now(UTC).isoformat()}
    store.put_bytes(_state_key(store, brief), json.dumps(state).encode(), "application/json")
    return {"keys": keys, "links": {k: store.presigned_url(v, brief.link_hours) for k, v in keys.items()},
            "facts": compiled.counts, "failed_checks": compiled.problems,
            "changes": None if changed is None else {"changed": len(changed.changed), "added": len(changed.added),
                                                    "unsupported": len(changed.unsupported)}}

