"""Routing: which records need a person (and why), written as review items; the rest pass straight through."""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel
from sqlalchemy import func, select

from bpo.carry import audit_carried, carry_over, record_hash
from bpo.db.models import ReviewItem
from bpo.db.session import session_scope
from bpo.pool import map_in_workers
from bpo.quality import BatchChecked
from bpo.review import add_items, json_safe, open_gate
from bpo.run import Part, RunContext, get_store, put_parquet, read_parquet
from bpo.schema import CHECK_COLUMNS, ROW
from bpo.settings import get_settings
from bpo.spec import ProcessSpec

RECORDS_STEP = "records"
GATE_STEP = "gate"


class Routed(BaseModel):
    """Where routing sent the batch's records."""

    passed: int  # straight through, loaded at once
    review: int  # held for a person (or for a decision carried over from an earlier run)
    sampled: int = 0  # of those: quality samples (records that passed every check, reviewed to measure accuracy)
    superseded: dict[str, int] = {}  # per file: records of a repeated key replaced by a later one
    carried_over: int = 0  # held records whose decision was taken before, for the same content
    taken_over: int = 0  # items still open in an ended run of the batch, now this run's
    review_rows: str  # parquet of the _row numbers not loaded straight: held or superseded
    loaded: dict[str, int] = {}  # per file: records loaded as their chunk was routed (``route_batch``'s ``load``)


class Member(BaseModel):
    """One record of a natural key that appears more than once in the batch."""

    row: int
    key: str
    file: str
    source_row: int
    values: dict[str, Any]  # as read
    proposed: dict[str, Any]
    checks: list[dict[str, str]]  # why this record itself needs a person, besides its key


class PartRouted(BaseModel):
    held: list[int]  # _row numbers written as items of their own
    members: list[Member]  # records of repeated keys: decided together, batch-wide
    carried_over: int = 0
    taken_over: int = 0
    sampled: int = 0  # of the held records: quality samples, which passed every check
    loaded: int = 0  # records loaded as the chunk was routed (``load``): every one not held nor of a repeated key


def _proposed(row: dict[str, Any], raw: dict[str, Any], spec: ProcessSpec) -> dict[str, Any]:
    """Normalized values where there are some, the raw value where normalization gave none."""
    out: dict[str, Any] = {}
    for name, field in spec.fields.items():
        value = row.get(name)
        if field.type == "money" and isinstance(value, Decimal):
            value = f"{row.get(f'{name}_currency') or ''} {value}".strip()
        value = json_safe(value)
        if value is None:
            value = json_safe(raw.get(name))
        out[name] = None if value is None else str(value)
    return out


def review_checks(data: pd.DataFrame, issues: pd.DataFrame, failures: pd.DataFrame, duplicates: pd.DataFrame,
            fuzzy_columns: list[str], flagged: set[str]) -> pd.DataFrame:
    """Every reason one chunk's records need a person, one row per (record, field, check)."""
    # a low-confidence enum still has a value: it waits for a person only if the spec routes it;
    # an ambiguous date has none, so it always does
    issues = issues[(issues["check"] != "low_confidence_mapping") | ("low_confidence_mapping" in flagged)]
    failed = failures[failures["row"].isin(data[ROW])]
    # GX's "missing" on a value normalization could not read adds nothing to the reason already given
    explained = failed.set_index(["row", "field"]).index.isin(issues.set_index(["row", "field"]).index)
    frames = [issues, failed[~explained]]
    if "duplicate_key" in flagged:
        # a suite that checks uniqueness has said it already
        told = failed.loc[failed["check"].str.contains("unique"), "row"]
        frames.append(duplicates[duplicates["row"].isin(data[ROW]) & ~duplicates["row"].isin(told)])
    if "low_confidence_mapping" in flagged:
        for field in fuzzy_columns:
            hit = data.loc[data[field].notna(), ROW]
            frames.append(pd.DataFrame({"row": hit.to_numpy(), "field": field, "check": "low_confidence_mapping",
                                        "reason": f"the column for {field} was recognized only approximately"}))
    return pd.concat([f[CHECK_COLUMNS] for f in frames if not f.empty] or [pd.DataFrame(columns=CHECK_COLUMNS)],
                     ignore_index=True)


def _parquet(store: Any, key: str) -> pa.Table:
    return pq.read_table(io.BytesIO(store.get_bytes(key)))


def _records(table: pa.Table) -> list[dict[str, Any]]:
    frame = table.to_pandas()
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def write_items(run: RunContext, spec: ProcessSpec, items: list[dict[str, Any]]) -> tuple[int, int]:
    """Write review items, applying what was decided before; returns (carried over, taken over)."""
    with session_scope(get_settings().ops_database_url or "") as s:
        carried = carry_over(s, flow_run_id=run.flow_run_id, process=run.spec, batch=run.batch, items=items)
        add_items(s, items, assign_among=assignment_groups(spec))
        audit_carried(s, run.flow_run_id, RECORDS_STEP, carried.sources)
    return carried.carried_over, carried.taken_over


def assignment_groups(spec: ProcessSpec) -> list[str]:
    """The groups whose members new items are assigned to at once; none: items wait in the shared queue."""
    return spec.review.groups if spec.review.assign == "least_loaded" else []


def _source_values(src: dict[str, Any]) -> dict[str, Any]:
    return {k: json_safe(v) for k, v in src.items() if not str(k).startswith("_")}


def _key_text(row: dict[str, Any], spec: ProcessSpec) -> str:
    return ", ".join(str(json_safe(row.get(k))) for k in spec.target.key)


# loads a chunk's records that pass straight through (normalized, as stored), returns how many
Load = Callable[[RunContext, ProcessSpec, pa.Table], int]


def route_part(run: RunContext, spec: ProcessSpec, part: Part, failures_keys: list[str], duplicates_key: str,
               fuzzy_columns: list[str], due: datetime, load: Load | None = None) -> PartRouted:
    """Write one chunk's review items; return the ``_row`` numbers they hold back, and its repeated-key records.

    Records whose natural key appears more than once in the batch are not written here: they are one
    decision per key, made across chunks by ``route_batch``. Items already written for the same
    records (a retried step) are not written again. With ``load``, the chunk's records that need no
    person and share no key are loaded beside the writing of its items (a retry loads them again:
    ``load`` must be an upsert).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bpo-route-load") as beside:
        return _route_part(run, spec, part, failures_keys, duplicates_key, fuzzy_columns, due, load, beside)


def _route_part(run: RunContext, spec: ProcessSpec, part: Part, failures_keys: list[str], duplicates_key: str,
                fuzzy_columns: list[str], due: datetime, load: Load | None, beside: ThreadPoolExecutor) -> PartRouted:
    store = get_store()
    failures = pd.concat([read_parquet(store, k) for k in failures_keys], ignore_index=True)
    table = _parquet(store, part.normalized)
    data = table.select([ROW, *(f for f in fuzzy_columns if f in table.column_names)]).to_pandas()
    duplicates = read_parquet(store, duplicates_key)
    checks = review_checks(data, read_parquet(store, part.issues), failures, duplicates, fuzzy_columns,
                           set(spec.review.route))
    checks = checks[checks["check"] != "duplicate_key"]  # said once per key, by route_batch
    repeated = data[ROW].isin(duplicates["row"]).to_numpy()
    wanted = data[ROW].isin(checks["row"]).to_numpy() | repeated
    raw_table = _parquet(store, part.raw) if spec.review.sample_share > 0 else None
    sampled = (pick_samples(raw_table, run.spec, spec.review.sample_share) & ~wanted if raw_table is not None
               else np.zeros(len(data), dtype=bool))
    wanted |= sampled
    loading = None if load is None else beside.submit(load, run, spec, table.filter(pa.array(~wanted)))
    if not wanted.any():
        return PartRouted(held=[], members=[], loaded=0 if loading is None else loading.result())
    # only these records become Python values, in one pass (a Series per record would cost ~1 ms each)
    taken = np.flatnonzero(wanted)
    rows = _records(table.take(taken))
    raws = _records((raw_table if raw_table is not None else _parquet(store, part.raw)).take(taken))
    is_sample = set(data[ROW].to_numpy()[sampled].tolist())
    checks = checks.sort_values("row", kind="stable")
    found: dict[int, list[dict[str, str]]] = {}
    for r in checks.astype({"field": str, "check": str, "reason": str}).itertuples(index=False):
        found.setdefault(int(r.row), []).append({"field": r.field, "check": r.check, "reason": r.reason})
    is_repeated = set(data[ROW].to_numpy()[repeated].tolist())
    items: list[dict[str, Any]] = []
    members: list[Member] = []
    for row, src in zip(rows, raws, strict=True):
        number = int(row[ROW])
        values = _source_values(src)
        if number in is_repeated:
            members.append(Member(row=number, key=_key_text(row, spec), file=str(src["_source_file"]),
                                  source_row=int(src["_source_row"]), values=values,
                                  proposed=_proposed(row, src, spec), checks=found.get(number, [])))
            continue
        items.append({
            "flow_run_id": run.flow_run_id, "process": run.spec, "step": RECORDS_STEP, "kind": "record",
            "record_key": f"{src['_source_file']}:{int(src['_source_row'])}",
            "record_hash": record_hash(run.spec, [values]),
            "source": {"file": str(src["_source_file"]), "row": int(src["_source_row"]), "values": values},
            "failed_checks": found.get(number, []), "proposed": _proposed(row, src, spec), "due_at": due,
            "on_timeout": spec.review.on_timeout, "sample": number in is_sample, "priority": spec.review.priority,
        })
    carried, taken_over = write_items(run, spec, items) if items else (0, 0)
    return PartRouted(held=sorted((found.keys() - is_repeated) | is_sample), members=members, carried_over=carried,
                      taken_over=taken_over, sampled=len(is_sample), loaded=0 if loading is None else loading.result())


SAMPLE_SCALE = 1_000_000


def pick_samples(raw: pa.Table, process: str, share: float) -> np.ndarray:
    """Which records are quality samples: ``share`` of them, chosen by a hash of their source values.

    The same record is chosen again by a re-run (its decision then carries over instead of asking
    twice), and which records are chosen does not depend on their order or their chunk.
    """
    values = raw.select([c for c in raw.column_names if not c.startswith("_")]).to_pandas().astype(str)
    salted = pd.util.hash_pandas_object(values.assign(_process=process), index=False).to_numpy()
    return (salted % SAMPLE_SCALE) < round(share * SAMPLE_SCALE)


def _group_item(run: RunContext, spec: ProcessSpec, members: list[Member], due: datetime) -> dict[str, Any]:
    """One item for every record of one natural key: the agent keeps one (or merged values), the rest are superseded.

    The last record is proposed, as a later record would win on re-entry.
    """
    base = members[-1]
    where = ", ".join(f"{m.file}:{m.source_row}" for m in members)
    checks = [{"field": spec.target.key[0], "check": "duplicate_key",
               "reason": f"key {base.key} appears {len(members)} times in this batch ({where}): keep one record"}]
    for m in members:
        own = m is base
        checks += [{**c, "reason": c["reason"] if own else f"{c['reason']} (record {m.file}:{m.source_row})"}
                   for c in m.checks]
    return {
        "flow_run_id": run.flow_run_id, "process": run.spec, "step": RECORDS_STEP, "kind": "record",
        "record_key": f"key:{base.key}", "record_hash": record_hash(run.spec, [m.values for m in members]),
        "source": {"file": base.file, "row": base.source_row, "values": base.values,
                   "records": [{"file": m.file, "row": m.source_row, "values": m.values, "proposed": m.proposed}
                               for m in members]},
        "failed_checks": checks, "proposed": base.proposed, "due_at": due, "on_timeout": spec.review.on_timeout,
        "priority": spec.review.priority,
    }


def route_batch(run: RunContext, spec: ProcessSpec, parts: list[Part], checked: BatchChecked,
                low_confidence: dict[str, list[str]], load: Load | None = None) -> Routed:
    """Send every record with a failed check or a routed flag to review; the rest pass straight through.

    The chunks are routed, and their items written, side by side (``bpo.pool``). Records sharing a
    natural key are one decision: one item per key when any of them needs a person or the spec routes
    repeated keys; otherwise the last one passes and the others are superseded. With ``load``, each
    chunk's passing records that share no key are loaded as it is routed (``Routed.loaded``); the last
    record of a repeated key that passes is not: the caller loads it.
    """
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    routed = map_in_workers(route_part, [
        (run, spec, part, [chunk_failures, checked.batch_failures], checked.duplicates,
         low_confidence.get(part.file, []), due, load)
        for part, chunk_failures in zip(parts, checked.chunk_failures, strict=True)])
    loaded: dict[str, int] = {}
    for part, done in zip(parts, routed, strict=True):
        if load is not None:
            loaded[part.file] = loaded.get(part.file, 0) + done.loaded
    held = [r for part in routed for r in part.held]
    carried = sum(p.carried_over for p in routed)
    taken_over = sum(p.taken_over for p in routed)
    groups: dict[str, list[Member]] = {}
    for member in sorted((m for p in routed for m in p.members), key=lambda m: m.row):
        groups.setdefault(member.key, []).append(member)
    superseded: dict[str, int] = {}
    group_items = []
    for members in groups.values():
        if "duplicate_key" in spec.review.route or any(m.checks for m in members):
            group_items.append(_group_item(run, spec, members, due))
            held += [m.row for m in members]
        else:
            for m in members[:-1]:
                superseded[m.file] = superseded.get(m.file, 0) + 1
            held += [m.row for m in members[:-1]]
    if group_items:
        more_carried, more_taken = write_items(run, spec, group_items)
        carried, taken_over = carried + more_carried, taken_over + more_taken
    key = run.key("review", "rows.parquet")
    put_parquet(get_store(), key, pd.DataFrame({ROW: pd.Series(sorted(held), dtype="int64")}))
    total = sum(p.rows for p in parts)
    withheld = sum(superseded.values())
    return Routed(passed=total - len(held), review=len(held) - withheld, sampled=sum(p.sampled for p in routed),
                  superseded=superseded, carried_over=carried, taken_over=taken_over, review_rows=key, loaded=loaded)


class GateVerdict(BaseModel):
    approved: bool
    reason: str | None = None
    decided_by: str | None = None


def ask_gate(run: RunContext, spec: ProcessSpec, routed: Routed) -> None:
    """Ask for the whole batch's approval, on what routing and the review made of it (once per run)."""
    with session_scope(get_settings().ops_database_url or "") as s:
        counts = dict(s.execute(select(ReviewItem.status, func.count()).where(
            ReviewItem.flow_run_id == run.flow_run_id, ReviewItem.step == RECORDS_STEP)
            .group_by(ReviewItem.status)).tuples().all())
        summary = {"batch": run.batch, "straight_through": routed.passed, "reviewed": routed.review,
                   "items_approved": int(counts.get("approved", 0)), "items_rejected": int(counts.get("rejected", 0)),
                   "superseded": sum(routed.superseded.values()), "artifacts": get_store().uri(run.prefix)}
        open_gate(s, run.flow_run_id, run.spec, GATE_STEP, summary,
                  datetime.now(UTC) + timedelta(hours=spec.review.due_hours), spec.review.on_timeout,
                  priority=spec.review.priority)  # not assigned to an agent: a signed link may answer it


def gate_verdict(run: RunContext) -> GateVerdict:
    """How the run's gate was decided (it is decided: the run waited for it)."""
    with session_scope(get_settings().ops_database_url or "") as s:
        gate = s.execute(select(ReviewItem.status, ReviewItem.reason, ReviewItem.decided_by).where(
            ReviewItem.flow_run_id == run.flow_run_id, ReviewItem.step == GATE_STEP)).one()
    return GateVerdict(approved=gate.status == "approved", reason=gate.reason, decided_by=gate.decided_by)
