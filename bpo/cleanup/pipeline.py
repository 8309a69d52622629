"""The database cleanup's steps, as the flow calls them (through thin tasks): no Prefect here.

check → snapshot (+ standardize, profile) → match (train or reuse the model, score pairs) → review the
uncertain pairs → change set (clusters, survivorship) → validate the projection → gate → apply → report.
Large data stays in S3 (and in the run's local work folder for the match model); what passes between
steps is keys and counts.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import io
import json
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from bpo import pool
from bpo.carry import carry_over, record_hash
from bpo.cleanup import apply as applying
from bpo.cleanup import checks, dedupe, source
from bpo.cleanup.plan import (
    MAIN,
    Accepted,
    Change,
    ChangeSet,
    Reformatted,
    build,
    columns_of,
    from_parquet,
    safe_rows,
    to_parquet,
)
from bpo.cleanup.rows import canonical, decode_key, encode_key
from bpo.cleanup.snapshot import TEXT_PREFIX, Figures, Snapshot, local_copies, profile, take_snapshot
from bpo.cleanup.source import Checked, Target
from bpo.cleanup.spec import CleanupSpec
from bpo.db.models import CleanupChange, ReviewItem, Run
from bpo.db.session import session_scope
from bpo.review import add_items, open_gate
from bpo.review.conflict import conflict_item
from bpo.review.pair import pair_item
from bpo.review.reformat import reformat_item
from bpo.run import RunContext, get_store, put_json, put_parquet
from bpo.settings import get_settings
from bpo.store import ArtifactStore

REVIEW_STEP = "review"  # what the run asks before its change set: uncertain pairs, unsafe reformats
GATE_STEP = "change-set"
CONFLICTS_STEP = "conflicts"


class Matched(BaseModel):
    """What the match model found: where the pairs are, the model used, and what goes to a person."""

    pairs_key: str  # Parquet in S3: every scored pair at or above the review threshold
    model_key: str
    trained: bool  # False: an earlier run's model was reused
    candidates: int  # pairs at or above the review threshold
    auto_pairs: int
    review_pairs: int
    held_clusters: int
    new_rows: int | None = None  # incremental: rows new or changed since the last run
    checks_before: list[dict[str, Any]] = Field(default_factory=list)  # the table's expectations, in the database


class Planned(BaseModel):
    plan_key: str
    counts: dict[str, int]
    rows_touched: int
    clusters: int
    merged_rows: int
    before: dict[str, Any]
    after: dict[str, Any]
    problems: list[str] = Field(default_factory=list)  # the "after" checks that fail: nothing is applied
    checks_before: list[dict[str, Any]] = Field(default_factory=list)  # the expectations, in the database
    checks_after: list[dict[str, Any]] = Field(default_factory=list)  # the same, on the projection


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cycle collector paused for a step that makes a change per row (millions of objects, none of
    them in a cycle): each full collection would walk them all again. What the step leaves is collected after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def work_dir(run: RunContext) -> Path:
    return get_settings().home / "cleanup" / run.flow_run_id


def state_prefix(store: ArtifactStore, spec: CleanupSpec, target: Target) -> str:
    """Where the last run left its model and the table's expected state (for the next, incremental run)."""
    ident = hashlib.sha256(f"{target.label}\0{target.schema or ''}\0{target.table}".encode()).hexdigest()[:16]
    return store.key("cleanup-state", spec.name, ident)


def snapshot(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec) -> Snapshot:
    """The snapshot pass: read and encode the table here, each chunk standardized beside (``bpo.pool.beside``).

    The worker standardizes chunks on the other CPU while this process reads and encodes the next. Once
    every chunk is read, the table's expectations (the 'before' quality) are handed to the worker after
    them: they run while this process finishes the snapshot and matches (``match`` takes their result).
    """
    def check_before() -> None:
        _checking[run.flow_run_id] = pool.beside(checks.before, target, checked, spec)

    engine = source.connect(target)
    try:
        fingerprinted = source.fingerprints(engine)
        snap = take_snapshot(source.read_chunks(engine, target, checked.columns, checked.key, spec.chunk_rows,
                                                fingerprint=fingerprinted),
                             checked.columns, spec, run.prefix, side=pool.beside, fingerprinted=fingerprinted,
                             then=check_before)
    finally:
        engine.dispose()
    # the safe reformats do not wait for the match: the worker makes them after the checks, while the model runs
    _reformatting[run.flow_run_id] = _reformat_beside(run, snap, range(len(snap.parts)))
    return snap


# the 'before' checks this process started at the end of a run's snapshot, by run: its match waits for them (a run
# resumed in another process starts them there)
_checking: dict[str, Future[list[dict[str, Any]]]] = {}
# the safe reformats of each snapshot part, made by the worker from the end of the snapshot (a local Parquet file
# each), by run: the plan takes them (a run resumed in another process makes them at its plan)
_reformatting: dict[str, dict[int, Future[str]]] = {}


def _read(store: ArtifactStore, key: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet object of the run, whole or only ``columns`` (a snapshot part's rows are most of its bytes)."""
    return pq.read_table(io.BytesIO(store.get_bytes(key)), columns=columns)


def _compared(spec: CleanupSpec) -> list[str]:
    return [c for c, col in spec.columns.items() if col.compare]


def match(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec, snap: Snapshot, *,
          incremental: bool, retrain: bool) -> Matched:
    """Score candidate pairs; and beside them, the table's expectations run in the database (the 'before' quality).

    The expectations run in a worker process (``bpo.pool.beside``, started by ``snapshot``): Great Expectations'
    import and the checks take the CPU the match leaves, and this process never imports Great Expectations.
    """
    checking = _checking.pop(run.flow_run_id, None) or pool.beside(checks.before, target, checked, spec)
    matched = _match(run, target, spec, snap, incremental=incremental, retrain=retrain)
    matched.checks_before = checking.result()
    return matched


def _match(run: RunContext, target: Target, spec: CleanupSpec, snap: Snapshot, *, incremental: bool,
           retrain: bool) -> Matched:
    """Score candidate pairs: the model saved by the last run is reused unless the spec's columns changed."""
    store = get_store()
    state = state_prefix(store, spec, target)
    folder = work_dir(run)
    paths = local_copies(store, snap.match_parts, folder / "match")
    settings_hash = hashlib.sha256(json.dumps(dedupe.model_settings(spec, _compared(spec)), sort_keys=True,
                                              default=str).encode()).hexdigest()
    if snap.rows < 2:  # an empty table, or one row: there is nothing to match, and no model to train
        out = folder / "pairs.parquet"
        folder.mkdir(parents=True, exist_ok=True)
        _empty_pairs(out)
        pairs_obj = store.put_bytes(run.key("pairs.parquet"), out.read_bytes(), "application/vnd.apache.parquet")
        model_obj = put_json(store, run.key("model.json"), {"settings_hash": settings_hash, "model": None})
        return Matched(pairs_key=pairs_obj.key, model_key=model_obj.key, trained=False, candidates=0, auto_pairs=0,
                       review_pairs=0, held_clusters=0)
    model: dict[str, Any] | None = None
    if not retrain and f"{state}/model.json" in store.list_keys(f"{state}/model.json"):
        saved = json.loads(store.get_bytes(f"{state}/model.json"))
        if saved.get("settings_hash") == settings_hash:
            model = saved["model"]
    trained = model is None
    if model is None:
        model = dedupe.train(spec, paths)
    model_obj = put_json(store, run.key("model.json"), {"settings_hash": settings_hash, "model": model})
    out = folder / "pairs.parquet"
    threshold = spec.thresholds.review
    new_rows = None
    expected = _expected_state(store, state) if incremental else None
    if expected is not None:
        new_keys = _new_or_changed(store, snap, expected)
        new_rows = len(new_keys)
        new_path, clean_path = _split(paths, new_keys, folder)
        if new_rows:
            dedupe.predict_between(spec, model, [new_path], [clean_path], out, threshold=threshold)
        else:
            _empty_pairs(out)
    else:
        dedupe.predict(spec, model, paths, out, threshold=threshold)
    pairs = pd.read_parquet(out)
    pairs_obj = store.put_bytes(run.key("pairs.parquet"), out.read_bytes(), "application/vnd.apache.parquet")
    auto = int((pairs["match_probability"] >= spec.thresholds.auto_merge).sum())
    return Matched(pairs_key=pairs_obj.key, model_key=model_obj.key, trained=trained, candidates=len(pairs),
                   auto_pairs=auto, review_pairs=len(pairs) - auto, held_clusters=0, new_rows=new_rows)


def _empty_pairs(out: Path) -> None:
    pq.write_table(pa.table({"unique_id_l": pa.array([], pa.string()), "unique_id_r": pa.array([], pa.string()),
                             "match_probability": pa.array([], pa.float64()),
                             "match_weight": pa.array([], pa.float64())}), out)


def _expected_state(store: ArtifactStore, state: str) -> dict[str, str] | None:
    key = f"{state}/state.parquet"
    if key not in store.list_keys(key):
        return None
    t = _read(store, key)
    return dict(zip(t.column("key").to_pylist(), t.column("hash").to_pylist(), strict=True))


def _new_or_changed(store: ArtifactStore, snap: Snapshot, expected: dict[str, str]) -> set[str]:
    out: set[str] = set()
    for part in snap.parts:
        t = _read(store, part, ["key", "hash"])
        for k, h in zip(t.column("key").to_pylist(), t.column("hash").to_pylist(), strict=True):
            if expected.get(k) != h:
                out.add(k)
    return out


def _split(paths: list[Path], new_keys: set[str], folder: Path) -> tuple[Path, Path]:
    tables = [pq.read_table(p) for p in paths]
    whole = pa.concat_tables(tables) if tables else pa.table({"unique_id": pa.array([], pa.string())})
    is_new = pa.array([k in new_keys for k in whole.column("unique_id").to_pylist()])
    new_path, clean_path = folder / "new.parquet", folder / "clean.parquet"
    pq.write_table(whole.filter(is_new), new_path)
    pq.write_table(whole.filter(pa.compute.invert(is_new)), clean_path)
    return new_path, clean_path


def _rows_by_key(store: ArtifactStore, snap: Snapshot, keys: set[str]) -> dict[str, dict[str, Any]]:
    """The standardized compared values of these rows, for showing a pair to a person."""
    out: dict[str, dict[str, Any]] = {}
    wanted = pa.array(sorted(keys), pa.string())
    for part in snap.match_parts:
        t = _read(store, part)
        for row in t.filter(pc.is_in(t.column("unique_id"), value_set=wanted)).to_pylist():
            out[row.pop("unique_id")] = row
    return out


def cannot_link(spec: CleanupSpec) -> set[tuple[str, str]]:
    """Pairs a person said are different, in any earlier run of this cleanup: kept apart for good."""
    with session_scope(get_settings().ops_database_url or "") as s:  # the two keys only, not the items' bodies
        rows = s.execute(select(ReviewItem.source["left_key"].as_string(), ReviewItem.source["right_key"].as_string())
                         .where(ReviewItem.process == spec.name, ReviewItem.kind == "pair",
                                ReviewItem.status == "rejected",
                                # a pair rejected by a timeout has no verdict: it is asked again, not kept apart
                                ReviewItem.decision["verdict"].as_string() == "different")).all()
    return {(str(left), str(right)) for left, right in rows}


def _pair_of(src: dict[str, Any]) -> tuple[str, str]:
    return str(src["left_key"]), str(src["right_key"])


def same_pairs(run: RunContext, spec: CleanupSpec) -> set[tuple[str, str]]:
    """Pairs of this run a person said are the same entity."""
    with session_scope(get_settings().ops_database_url or "") as s:
        sources = s.scalars(select(ReviewItem.source).where(
            ReviewItem.flow_run_id == run.flow_run_id, ReviewItem.step == REVIEW_STEP, ReviewItem.kind == "pair",
            ReviewItem.status == "approved"))
        return {_pair_of(src) for src in sources}


def accepted_reformats(run: RunContext) -> dict[str, dict[str, str]]:
    """The unsafe reformats of this run a person accepted (or accepted before, carried over): key -> column -> new."""
    with session_scope(get_settings().ops_database_url or "") as s:
        sources = s.scalars(select(ReviewItem.source).where(
            ReviewItem.flow_run_id == run.flow_run_id, ReviewItem.step == REVIEW_STEP,
            ReviewItem.kind == "reformat", ReviewItem.status == "approved"))
        return {str(src["row_key"]): {c["column"]: c["new"] for c in src["changes"]} for src in sources}


def ask_review(run: RunContext, spec: CleanupSpec, snap: Snapshot, matched: Matched) -> int:
    """The run's questions before its change set: its uncertain pairs and its unsafe reformats; how many are new."""
    return ask_pairs(run, spec, snap, matched) + ask_reformats(run, spec, snap)


def ask_reformats(run: RunContext, spec: CleanupSpec, snap: Snapshot) -> int:
    """One ``reformat`` item per row with proposals that are more than a reformat; return how many are new.

    The item's hash is the row's content and its proposals: while both stay the same, a decision carries over
    to later runs (an accepted change applies again, a rejected one is not asked again).
    """
    store = get_store()
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    items = []
    for part, text_key, props_key in zip(snap.parts, snap.text_parts, snap.proposal_parts, strict=True):
        props = _read(store, props_key)
        unsafe = props.filter(pc.invert(props.column("safe")))
        if not unsafe.num_rows:
            continue
        changes: dict[str, list[dict[str, str]]] = {}
        for k, c, o, n in zip(*(unsafe.column(x).to_pylist() for x in ("key", "column", "old", "new")), strict=True):
            changes.setdefault(k, []).append({"column": c, "old": o, "new": n})
        wanted = pa.array(list(changes), pa.string())
        text = _read(store, text_key)
        text = text.filter(pc.is_in(text.column("key"), value_set=wanted))
        hashes = _read(store, part, ["key", "hash"])
        hashes = hashes.filter(pc.is_in(hashes.column("key"), value_set=wanted))
        hash_of = dict(zip(hashes.column("key").to_pylist(), hashes.column("hash").to_pylist(), strict=True))
        for row in text.to_pylist():
            key = row.pop("key")
            src = {"table": run.batch.rsplit("/", 1)[-1], "key": spec.key, "row_key": key,
                   "row": {c.removeprefix(TEXT_PREFIX): v for c, v in row.items()}, "changes": changes[key]}
            h = record_hash(spec.name, [{"row": hash_of[key]}, {"reformat": changes[key]}])
            items.append(reformat_item(flow_run_id=run.flow_run_id, process=spec.name, step=REVIEW_STEP,
                                       source=src, record_hash=h, due_at=due, on_timeout=spec.review.on_timeout,
                                       priority=spec.review.priority))
    if not items:
        return 0
    with session_scope(get_settings().ops_database_url or "") as s:
        carry_over(s, flow_run_id=run.flow_run_id, process=spec.name, batch=run.batch, items=items)
        return add_items(s, items, assign_among=spec.review.groups if spec.review.assign == "least_loaded" else ())


def ask_pairs(run: RunContext, spec: CleanupSpec, snap: Snapshot, matched: Matched) -> int:
    """One ``pair`` item per uncertain pair not already settled by the auto-merges; return how many are new.

    A pair whose two rows were decided before with the same content takes that decision (carried over);
    a pair a person called different is not asked again at all.
    """
    store = get_store()
    pairs = pd.read_parquet(io.BytesIO(store.get_bytes(matched.pairs_key)))
    banned = cannot_link(spec)
    auto = dedupe.clusters(pairs, spec.thresholds.auto_merge, banned)
    uncertain = pairs[pairs["match_probability"] < spec.thresholds.auto_merge]
    held = {m for members in auto.held for m in members}
    todo = []
    for row in uncertain.to_dict("records"):
        left, right = str(row["unique_id_l"]), str(row["unique_id_r"])
        if (left, right) in banned:
            continue
        a, b = auto.cluster_of.get(left), auto.cluster_of.get(right)
        if a is not None and a == b:
            continue  # already merged through surer pairs
        todo.append(row)
    # pairs joining held clusters are asked too: a person settles what the model cannot
    for members in auto.held:
        ids = sorted(members)
        inside = pairs[pairs["unique_id_l"].isin(ids) & pairs["unique_id_r"].isin(ids)]
        todo.extend(r for r in inside.to_dict("records")
                    if (str(r["unique_id_l"]), str(r["unique_id_r"])) not in banned and r not in todo)
    if not todo:
        return 0
    keys = {str(r[c]) for r in todo for c in ("unique_id_l", "unique_id_r")}
    cluster_members: dict[str, set[str]] = {}
    for k, c in auto.cluster_of.items():
        cluster_members.setdefault(c, set()).add(k)
    for c in list(cluster_members):
        if keys & cluster_members[c]:
            keys |= cluster_members[c]
    rows = _rows_by_key(store, snap, keys | held)
    model = json.loads(store.get_bytes(matched.model_key))["model"]
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    items = []
    for r in todo:
        left, right = str(r["unique_id_l"]), str(r["unique_id_r"])
        group = {left, right}
        for side in (left, right):
            if side in auto.cluster_of:
                group |= cluster_members[auto.cluster_of[side]]
        src = {"table": run.batch.rsplit("/", 1)[-1], "key": spec.key, "left_key": left, "right_key": right,
               "left": rows.get(left, {}), "right": rows.get(right, {}),
               "match_probability": float(r["match_probability"]), "match_weight": float(r["match_weight"]),
               "waterfall": dedupe.explain(model, r),
               "cluster": [{"key": k, "row": rows.get(k, {})} for k in sorted(group)]}
        h = record_hash(spec.name, [rows.get(left, {}), rows.get(right, {}), {"pair": [left, right]}])
        items.append(pair_item(flow_run_id=run.flow_run_id, process=spec.name, step=REVIEW_STEP, source=src,
                               record_hash=h, due_at=due, on_timeout=spec.review.on_timeout,
                               priority=spec.review.priority))
    with session_scope(get_settings().ops_database_url or "") as s:
        carry_over(s, flow_run_id=run.flow_run_id, process=spec.name, batch=run.batch, items=items)
        return add_items(s, items, assign_among=spec.review.groups if spec.review.assign == "least_loaded" else ())


def final_clusters(run: RunContext, spec: CleanupSpec, matched: Matched) -> tuple[dict[str, str], dict[str, str]]:
    """Each merged row's cluster, from the auto-merge pairs and the pairs a person said are the same.

    Returns (cluster of each row, how each cluster came about: auto, or review if a person joined it).
    """
    pairs = pd.read_parquet(io.BytesIO(get_store().get_bytes(matched.pairs_key)))
    same = same_pairs(run, spec)
    banned = cannot_link(spec)
    sure = pairs["match_probability"] >= spec.thresholds.auto_merge
    said = pd.Series([(str(a), str(b)) in same for a, b in zip(pairs["unique_id_l"], pairs["unique_id_r"],
                                                               strict=True)], index=pairs.index, dtype=bool)
    edges = pairs[sure | said].copy()
    edges["match_probability"] = 1.0
    clustering = dedupe.clusters(edges, 1.0, banned)
    how: dict[str, str] = {}
    reviewed = {k for pair in same for k in pair}
    for k, c in clustering.cluster_of.items():
        if k in reviewed:
            how[c] = "review"
        else:
            how.setdefault(c, "auto")
    return clustering.cluster_of, how


def reformatted_part(part_key: str, props_key: str, path: str) -> str:
    """One snapshot part's rows with their safe reformats made (``safe_rows``: none a person accepted), from S3,
    written to the local Parquet file ``path`` (for the plan of the run, in this machine's work folder)."""
    store = get_store()
    made = safe_rows(_read(store, part_key), _read(store, props_key))
    values = list(made.values())
    pq.write_table(pa.table({"key": pa.array(list(made), pa.string()), **{
        name: pa.array([v[i] for v in values], pa.string()) for i, name in enumerate(_REFORMATTED)}}), path)
    return path


_REFORMATTED = ("after", "hash", "sets", "how")  # a reformatted part's columns beside its key (``Reformatted``)


def _read_reformatted(path: str) -> Reformatted:
    t = pq.read_table(path)
    return dict(zip(t.column("key").to_pylist(), zip(*(t.column(c).to_pylist() for c in _REFORMATTED), strict=True),
                    strict=True))


def _reformat_beside(run: RunContext, snap: Snapshot, numbers: Iterable[int]) -> dict[int, Future[str]]:
    """These parts' safe reformats, started in the worker (``reformatted_part``), by part number."""
    folder = work_dir(run) / "reformatted"
    folder.mkdir(parents=True, exist_ok=True)
    return {i: pool.beside(reformatted_part, snap.parts[i], snap.proposal_parts[i],
                           str(folder / snap.parts[i].rsplit("/", 1)[-1])) for i in numbers}


def _snapshot_parts(store: ArtifactStore, snap: Snapshot, accepted: Accepted | None = None,
                    beside: dict[int, Future[str]] | None = None) -> Iterator[tuple[pa.Table, Reformatted]]:
    """Each snapshot part with its rows' safe reformats, and those a person accepted, made (``safe_rows``).

    ``beside``: the parts' safe reformats the worker (``bpo.pool.beside``) was given to make, by part number; a part
    it has not started when it is wanted is made here, and so is every part it was not given. What a person
    accepted is made here, on the rows it concerns.
    """
    parts = list(zip(snap.parts, snap.proposal_parts, strict=True))
    beside = dict(beside or {})
    try:
        for i, (part, props_key) in enumerate(parts):
            rows = _read(store, part)
            made = beside.pop(i, None)
            if made is None or made.cancel():
                yield rows, safe_rows(rows, _read(store, props_key), accepted)
                continue
            after_of = _read_reformatted(made.result())
            if accepted:  # the rows with a change a person accepted, made again with it
                props = _read(store, props_key)
                wanted = pa.array(list(accepted), pa.string())
                after_of.update(safe_rows(rows.filter(pc.is_in(rows.column("key"), value_set=wanted)),
                                          props.filter(pc.is_in(props.column("key"), value_set=wanted)), accepted))
            yield rows, after_of
    finally:  # a build that stopped half-way leaves the worker nothing to do
        for left in beside.values():
            left.cancel()


def plan_changes(run: RunContext, spec: CleanupSpec, checked: Checked, snap: Snapshot, matched: Matched,
                 cluster_of: dict[str, str], how: dict[str, str]) -> Planned:
    """The change set, stored in S3; and the 'after' figures of the table it would make, checked."""
    store = get_store()
    accepted = accepted_reformats(run)
    # the worker's safe reformats, made since the snapshot; or (a run resumed in another process) every other part's
    beside = _reformatting.pop(run.flow_run_id, None) or _reformat_beside(run, snap, range(1, len(snap.parts), 2))
    with _gc_paused():  # the change set's objects, and each pass over them (one tuple per change and field)
        changes = build(_snapshot_parts(store, snap, accepted, beside), cluster_of, how, spec, side=pool.beside)
        # the projection, its figures and its checks in the worker (where the 'before' checks ran), while this
        # process stores the change set
        projecting = pool.beside(projected_checks, snap, changes.projected, spec, accepted,
                                 run.key("projection.parquet"), checked)
        plan = store.put_bytes(run.key("changes.parquet"), to_parquet(changes.changes),
                               "application/vnd.apache.parquet")
    _made_here[plan.key] = changes.changes
    before = dataclasses.replace(snap.before, nulls=dict(snap.before.nulls), duplicates=_duplicates(spec, matched))
    after, after_checks = projecting.result()
    after.duplicates = max(before.duplicates - sum(len(m) for m in changes.clusters.values()), 0)
    problems = _check_after(before, after, snap, changes) + checks.compare(matched.checks_before, after_checks)
    counts = changes.counts()
    return Planned(plan_key=plan.key, counts=counts, rows_touched=changes.rows_touched, clusters=counts["clusters"],
                   merged_rows=counts["merged_rows"], before=before.as_dict(), after=after.as_dict(),
                   problems=problems, checks_before=matched.checks_before, checks_after=after_checks)


# change sets this process planned, by their S3 key (written once, never changed): the apply that follows takes
# the objects rather than reading them back (a run resumed in another process reads them from S3)
_made_here: dict[str, list[Change]] = {}


def _duplicates(spec: CleanupSpec, matched: Matched) -> int:
    """Rows the model takes for a duplicate of another (at the review threshold, pairs said different aside)."""
    pairs = pd.read_parquet(io.BytesIO(get_store().get_bytes(matched.pairs_key)))
    found = dedupe.clusters(pairs, spec.thresholds.review, cannot_link(spec)).cluster_of
    return len(found) - len(set(found.values()))


def projected_checks(snap: Snapshot, projected: dict[str, list[str | None] | None], spec: CleanupSpec,
                     accepted: Accepted, projection_key: str, checked: Checked) -> tuple[Figures, list[dict[str, Any]]]:
    """The projection (``_after_figures``) stored at ``projection_key``, its figures, and the table's expectations
    run on it (``checks.after``). ``projected``: the change set's merged rows as they will be (``ChangeSet``)."""
    store = get_store()
    figures, projection = _after_figures(store, snap, projected, spec, accepted)
    put_parquet(store, projection_key, projection)
    return figures, checks.after(projection, checked, spec)


def _after_figures(store: ArtifactStore, snap: Snapshot, projected: dict[str, list[str | None] | None],
                   spec: CleanupSpec, accepted: Accepted) -> tuple[Figures, pd.DataFrame]:
    """The projection — the table as read, with the change set applied — as text, and its figures."""
    figures = Figures()
    wanted = list(spec.columns)
    names = {"key": spec.key, **{TEXT_PREFIX + c: c for c in wanted}}
    frames = []
    changed = pa.array(list(projected), pa.string())
    for part, props_key in zip(snap.text_parts, snap.proposal_parts, strict=True):
        t = _read(store, part)
        touched = pc.is_in(t.column("key"), value_set=changed).to_numpy(zero_copy_only=False)
        frame = t.to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get).rename(columns=names)
        props = _read(store, props_key).to_pandas()
        made = props["safe"].astype(bool)
        if accepted:  # and the changes a person accepted
            made |= np.array([accepted.get(k, {}).get(c) == n for k, c, n in zip(
                props["key"], props["column"], props["new"], strict=True)], dtype=bool)
        safe = props[made]
        if len(safe):  # the safe (and accepted) reformats, column by column; then the merged rows, whole
            where = pd.Index(frame[spec.key].astype(object)).get_indexer(safe["key"].astype(object))
            for column in safe["column"].unique():
                pick = (safe["column"] == column).to_numpy(bool)
                frame.loc[frame.index[where[pick]], column] = safe["new"].to_numpy(object)[pick]
        if touched.any():
            at = np.flatnonzero(touched)
            rows = [projected[k] for k in frame[spec.key].iloc[at]]
            kept = np.array([r is not None for r in rows], dtype=bool)
            if kept.any():
                frame.loc[frame.index[at[kept]], wanted] = pd.DataFrame(
                    [r for r in rows if r is not None], columns=wanted, index=frame.index[at[kept]],
                    dtype=pd.StringDtype())
            frame = frame.drop(index=frame.index[at[~kept]]).reset_index(drop=True)
        figures.add(profile(frame, spec))
        frames.append(frame)
    projection = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series([], dtype=pd.StringDtype()) for c in [spec.key, *wanted]})
    return figures, projection


def _check_after(before: Figures, after: Figures, snap: Snapshot, changes: ChangeSet) -> list[str]:
    """What the cleaned table must satisfy before anything is written: nothing lost, nothing made worse."""
    problems = []
    merged = sum(len(m) for m in changes.clusters.values())
    if after.rows != before.rows - merged:
        problems.append(f"the projection has {after.rows} live rows, expected {before.rows} - {merged} merged")
    b, a = before.shares(), after.shares()
    for figure in ("valid_emails", "e164_phones"):
        if b[figure] is not None and a[figure] is not None and a[figure] + 1e-9 < b[figure]:  # type: ignore[operator]
            problems.append(f"{figure} would fall from {b[figure]:.2%} to {a[figure]:.2%}")
    for column, n in after.nulls.items():
        before_nulls = before.nulls.get(column, 0)
        if n > before_nulls:
            problems.append(f"column {column!r} would gain {n - before_nulls} nulls")
    return problems


def needs_gate(spec: CleanupSpec, snap: Snapshot, planned: Planned) -> bool:
    return bool(snap.rows) and planned.rows_touched / snap.rows > spec.thresholds.gate_share


def ask_gate(run: RunContext, spec: CleanupSpec, snap: Snapshot, planned: Planned, report_key: str) -> int:
    summary = {"table": run.batch, "rows": snap.rows, "rows_touched": planned.rows_touched,
               "share_touched": round(planned.rows_touched / max(snap.rows, 1), 4),
               "gate_share": spec.thresholds.gate_share, "changes": planned.counts,
               "report": get_store().uri(report_key)}
    with session_scope(get_settings().ops_database_url or "") as s:
        return open_gate(s, run.flow_run_id, spec.name, GATE_STEP, summary,
                         datetime.now(UTC) + timedelta(hours=spec.review.due_hours), spec.review.on_timeout,
                         priority=spec.review.priority)


def gate_approved(run: RunContext) -> bool:
    with session_scope(get_settings().ops_database_url or "") as s:
        status = s.scalar(select(ReviewItem.status).where(ReviewItem.flow_run_id == run.flow_run_id,
                                                          ReviewItem.step == GATE_STEP))
    return status == "approved"


def apply_changes(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec, planned: Planned,
                  spec_path: str) -> dict[str, Any]:
    """Apply the change set chunk by chunk, each logged once committed; a conflict becomes a ``conflict`` item.

    The run's table, spec and change set are recorded first, so that a run killed half-way can still be undone.
    """
    store = get_store()
    ops = get_settings().ops_database_url or ""
    with session_scope(ops) as s:
        s.execute(update(Run).where(Run.flow_run_id == run.flow_run_id).values(
            counts={"table": target.table, "cleanup_spec": spec_path, "plan": planned.plan_key}))
    # the change set as this process made it, or (a run resumed in a new process) as stored
    changes = _made_here.pop(planned.plan_key, None) or from_parquet(store.get_bytes(planned.plan_key))
    engine = source.connect(target)
    with _gc_paused():
        try:
            done = applying.apply(engine, target, checked, ops, run.flow_run_id, changes)
        finally:
            engine.dispose()
        conflicts = _raise_conflicts(run, target, checked, spec, done.conflicts)
        _applied_here[run.flow_run_id] = [(c.row_key, c.after_hash) for c in changes if c.table_name == MAIN
                                          and done.outcome.get(c.seq, ("planned", None))[0] == "applied"]
        log_obj = store.put_bytes(run.key("change-log.parquet"), _change_log(ops, run, changes, done.outcome),
                                  "application/vnd.apache.parquet")
    return {"applied": done.applied, "repointed": done.repointed, "conflicts": conflicts,
            "change_log": log_obj.key, "found_applied": done.already}


# the rows of the table each run applied here, with their hash after (None: deleted), by run: its save_state takes
# them (a run resumed in another process reads them from the change log)
_applied_here: dict[str, list[tuple[str, str | None]]] = {}


def _change_log(ops: str, run: RunContext, changes: list[Change], outcome: dict[int, tuple[str, str | None]]) -> bytes:
    """The change log as the apply left it: every change with its status and bodies, the re-pointings too."""
    c = CleanupChange
    with session_scope(ops) as s:
        repoints = s.execute(select(c.seq, c.chunk, c.table_name, c.row_key, c.action, c.how, c.cluster, c.before,
                                    c.after, c.before_hash, c.after_hash, c.status, c.note)
                             .where(c.flow_run_id == run.flow_run_id, c.table_name != MAIN).order_by(c.seq)).all()
    fields = ["seq", "chunk", "table_name", "row_key", "action", "how", "cluster", "before", "after", "before_hash",
              "after_hash"]
    columns = [list(values) for values in columns_of(changes, fields)]
    statuses = [outcome.get(seq, ("planned", None)) for seq in columns[0]]
    columns += [[st for st, _ in statuses], [note for _, note in statuses]]
    for r in repoints:
        values = (*r[:7], canonical(r.before) if r.before is not None else None,
                  canonical(r.after) if r.after is not None else None, *r[9:])
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    names = ["seq", "chunk", "table", *fields[3:], "status", "note"]
    buf = io.BytesIO()
    pq.write_table(pa.table(dict(zip(names, columns, strict=True))), buf)
    return buf.getvalue()


def _raise_conflicts(run: RunContext, target: Target, checked: Checked, spec: CleanupSpec,
                     conflicts: list[dict[str, Any]]) -> int:
    with_rows = [c for c in conflicts if "before" in c]
    if not with_rows:
        return 0
    engine = source.connect(target)
    try:
        with engine.connect() as conn:
            current = source.fetch(conn, target, target.table, checked.columns, checked.key,
                                   [decode_key(c["row_key"]) for c in with_rows])
    finally:
        engine.dispose()
    now_by_key = {encode_key(k): v for k, v in current.items()}
    due = datetime.now(UTC) + timedelta(hours=spec.review.due_hours)
    items = [conflict_item(flow_run_id=run.flow_run_id, process=spec.name, step=CONFLICTS_STEP, source={
        "table": target.table, "key": spec.key, "row_key": c["row_key"], "snapshot": c["before"] or {},
        "current": now_by_key.get(c["row_key"]) or {}, "proposed": c["after"] or {}}, record_hash=None,
        due_at=due, on_timeout=spec.review.on_timeout, priority=spec.review.priority) for c in with_rows]
    with session_scope(get_settings().ops_database_url or "") as s:
        add_items(s, items)
    return len(items)


def save_state(run: RunContext, target: Target, spec: CleanupSpec, snap: Snapshot, matched: Matched) -> None:
    """The table as this run left it (key → content hash) and its model: what the next incremental run reads."""
    store = get_store()
    state = state_prefix(store, spec, target)
    snapshotted = pa.concat_tables([_read(store, part, ["key", "hash"]) for part in snap.parts]) if snap.parts else (
        pa.table({"key": pa.array([], pa.string()), "hash": pa.array([], pa.string())}))
    applied = _applied_here.pop(run.flow_run_id, None)
    if applied is None:
        with session_scope(get_settings().ops_database_url or "") as s:
            applied = [(k, h) for k, h in s.execute(select(CleanupChange.row_key, CleanupChange.after_hash).where(
                CleanupChange.flow_run_id == run.flow_run_id, CleanupChange.table_name == MAIN,
                CleanupChange.status == "applied"))]
    # each row as the run left it: the rows it did not touch as snapshotted, the others as applied (a merged row
    # that was deleted is gone); a row is touched at most once
    changed = pa.table({"key": pa.array([k for k, _ in applied], pa.string()),
                        "hash": pa.array([h for _, h in applied], pa.string())})
    untouched = snapshotted.filter(pc.invert(pc.is_in(snapshotted.column("key"), value_set=changed.column("key"))))
    left = pa.concat_tables([untouched, changed.filter(pc.is_valid(changed.column("hash")))])
    buf = io.BytesIO()
    pq.write_table(left, buf)
    store.put_bytes(f"{state}/state.parquet", buf.getvalue(), "application/vnd.apache.parquet")
    if json.loads(store.get_bytes(matched.model_key)).get("model") is not None:
        store.put_bytes(f"{state}/model.json", store.get_bytes(matched.model_key), "application/json")


def cluster_rows(store: ArtifactStore, planned: Planned) -> list[tuple[str, str, str]]:
    """(survivor, merged keys, how) per merged cluster, from the stored change set."""
    t = pq.read_table(io.BytesIO(store.get_bytes(planned.plan_key)), columns=["row_key", "action", "how", "cluster"])
    merged: dict[str, list[str]] = {}
    how: dict[str, str] = {}
    for key, action, h, cluster in zip(*(t.column(n).to_pylist() for n in t.column_names), strict=True):
        if action in ("delete", "soft_delete") and cluster:
            merged.setdefault(cluster, []).append(key)
            how[cluster] = h
    return [(k, ", ".join(v), how[k]) for k, v in sorted(merged.items())]


def clean_up_work(run: RunContext) -> None:
    _made_here.pop(run.key("changes.parquet"), None)  # a dry run's, or one the checks or the gate stopped
    _checking.pop(run.flow_run_id, None)
    _applied_here.pop(run.flow_run_id, None)
    for left in _reformatting.pop(run.flow_run_id, {}).values():
        left.cancel()
    shutil.rmtree(work_dir(run), ignore_errors=True)
