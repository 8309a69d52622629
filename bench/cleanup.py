"""Benchmark of the database-cleanup de-duplication against Splink with a hand-written configuration.

    python -m bench.cleanup --rows 100000 [--seed 1] [--baseline-only] [--keep]

Generates a customer table with known duplicates (``bench.cleanup_data``), and measures, each in a fresh
child process so that its memory peak is its own:

- ``baseline``: Splink 5 alone on the standardized match frame, with the settings a person would write
  for this table (``baseline_settings``), trained and clustered the usual way;
- ``dedupe``: ``bpo.cleanup.dedupe`` (the model derived from the spec's roles) on the same frame:
  train + predict + clusters at the spec's auto-merge threshold;
- ``flow`` (not with ``--baseline-only``): its own SeaweedFS, Prefect server and PostgreSQL (as
  ``bench.data_entry`` starts them), the raw table in PostgreSQL, and the database-cleanup flow end to end
  in this process while an agent thread answers the pair items from the truth and approves any gate.
  ``auto_precision`` is the precision of the auto-merges alone; precision/recall/F1 count the merges a
  person confirmed too. ``seconds`` includes the review wait (the run paused while the agent answers, in
  bulk, within a second or two); ``seconds_excluding_review_wait`` leaves out the span Prefect shows the run
  ``Paused``, as ``bench.data_entry`` does. ``task_wall_seconds`` is each step's wall time.

Precision, recall and F1 are pairwise over clusters (every two rows put in one cluster is a predicted
pair; every two rows of one true entity a true pair). Prints one JSON line on stdout, the rest on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bench.cleanup_data import make_customers, standardize
from bench.data_entry import in_child, log, machine, peak_rss_mb
from bpo.cleanup.spec import CleanupSpec

TABLE = "customers"
REVIEW_THRESHOLD = 0.80
AUTO_THRESHOLD = 0.99


def bench_spec() -> CleanupSpec:
    """The cleanup spec of the generated table: a role on each column, nothing tuned to the data."""
    return CleanupSpec.model_validate({
        "name": "bench-customers", "table": TABLE, "key": "customer_id", "default_country": "US",
        "columns": {
            "first_name": {"role": "person_name"}, "last_name": {"role": "person_name"},
            "email": {"role": "email"}, "phone": {"role": "phone", "country_column": "country"},
            "date_of_birth": {"role": "date_of_birth", "date_order": "MDY"},
            "street": {"role": "street_address"}, "city": {"role": "city"},
            "postal_code": {"role": "postal_code", "country_column": "country"}, "country": {"role": "country"},
            "updated_at": {"role": "free_text", "standardize": False, "compare": False},
        },
        "survivorship": {"default": "most_complete", "recency_column": "updated_at"},
        "thresholds": {"auto_merge": AUTO_THRESHOLD, "review": REVIEW_THRESHOLD, "gate_share": 1.0},
    })


# ------------------------------------------------------------------------------------------ metrics


def pair_scores(cluster_of: dict[str, str], truth: dict[str, int]) -> dict[str, float]:
    """Pairwise precision, recall and F1 of clusters (uid -> cluster id; absent uids are singletons)."""
    frame = pd.DataFrame({"uid": list(cluster_of), "cluster": list(cluster_of.values())})
    frame["entity"] = frame["uid"].map(truth)
    sizes = frame.groupby("cluster").size()
    predicted = float((sizes * (sizes - 1) / 2).sum())
    both = frame.groupby(["cluster", "entity"]).size()
    correct = float((both * (both - 1) / 2).sum())
    entity_sizes = pd.Series(truth).value_counts()
    true_pairs = float((entity_sizes * (entity_sizes - 1) / 2).sum())
    precision = correct / predicted if predicted else 1.0
    recall = correct / true_pairs if true_pairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
            "predicted_pairs": int(predicted), "true_pairs": int(true_pairs)}


def _clusters_from_merges(merges: list[tuple[str, str, str]], hows: set[str]) -> dict[str, str]:
    """Clusters from (survivor, merged, how) rows: each merged row joins its survivor's cluster."""
    cluster_of: dict[str, str] = {}
    for survivor, merged, how in merges:
        if how in hows:
            cluster_of[survivor] = survivor
            cluster_of[merged] = survivor
    return cluster_of


# ------------------------------------------------------------------------------------------ baseline


def baseline_settings() -> dict[str, Any]:
    """What a person writes for this table after Splink's tutorials: one comparison per column."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.JaroWinklerAtThresholds("street", [0.9]),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postal_code"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "last_name"),
            block_on("last_name", "date_of_birth"),
            block_on("first_name", "date_of_birth"),
            block_on("email"),
            block_on("phone"),
            block_on("postal_code", "substr(last_name, 1, 1)"),
        ],
        retain_intermediate_calculation_columns=True,
    ).create_settings_dict("duckdb")


def run_baseline(match_path: str, out: str, seed: int) -> dict[str, Any]:
    """Splink alone: train (prior, u, EM on two rules), predict, cluster at the auto-merge threshold."""
    from splink import DuckDBAPI, Linker, block_on

    started = time.perf_counter()
    db_api = DuckDBAPI()
    frame = db_api.register(pd.read_parquet(match_path))
    linker = Linker(frame, baseline_settings(), log_level=logging.WARNING)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "date_of_birth"), block_on("email")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=seed)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    trained = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=REVIEW_THRESHOLD)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, AUTO_THRESHOLD)
    frame_out = clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    frame_out.astype(str).to_parquet(out)
    ended = time.perf_counter()
    return {"seconds": round(ended - started, 2), "train_seconds": round(trained - started, 2),
            "predict_cluster_seconds": round(ended - trained, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}


def run_dedupe(match_path: str, out: str, seed: int) -> dict[str, Any]:
    """bpo.cleanup.dedupe: the role-derived model trained, pairs predicted, clustered at auto-merge."""
    from bpo.cleanup import dedupe

    spec = bench_spec()
    started = time.perf_counter()
    model = dedupe.train(spec, [Path(match_path)], seed=seed)
    trained = time.perf_counter()
    pairs_path = dedupe.predict(spec, model, [Path(match_path)], Path(out).with_suffix(".pairs.parquet"),
                                threshold=REVIEW_THRESHOLD)
    pairs = pd.read_parquet(pairs_path, columns=["unique_id_l", "unique_id_r", "match_probability"])
    predicted = time.perf_counter()
    auto = dedupe.clusters(pairs, AUTO_THRESHOLD, set())
    pd.DataFrame({"unique_id": list(auto.cluster_of), "cluster_id": list(auto.cluster_of.values())}).to_parquet(out)
    ended = time.perf_counter()
    return {"seconds": round(ended - started, 2), "train_seconds": round(trained - started, 2),
            "predict_seconds": round(predicted - trained, 2), "cluster_seconds": round(ended - predicted, 2),
            "candidate_pairs": len(pairs), "auto_pairs": int((pairs["match_probability"] >= AUTO_THRESHOLD).sum()),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def _cluster_map(path: Path) -> dict[str, str]:
    frame = pd.read_parquet(path).astype(str)
    return dict(zip(frame["unique_id"], frame["cluster_id"], strict=True))


# ------------------------------------------------------------------------------------------ the flow


class PairAgent(threading.Thread):
    """Answers every open ``pair`` item from the truth (same / different), approves any gate and keeps every row
    a ``reformat`` item asks about (the generated table has none: its changes are all safe reformats)."""

    def __init__(self, truth: dict[str, int]) -> None:
        super().__init__(name="bench-pair-agent", daemon=True)
        self.truth = truth
        self.finished = threading.Event()
        self.answered = 0
        self.gates = 0

    def run(self) -> None:
        from bpo.cleanup.rows import decode_key
        from bpo.db.models import ReviewItem
        from bpo.db.session import session_scope
        from bpo.review import resolve, resolve_many
        from bpo.settings import get_settings

        settings = get_settings()
        while not self.finished.wait(0.5):
            with session_scope(settings.ops_database_url or "") as s:
                pairs = [(i.id, i.record_key) for i in s.query(ReviewItem).filter_by(kind="pair", status="open")]
                gates = [i.id for i in s.query(ReviewItem).filter_by(kind="gate", status="open")]
                kept = [i.id for i in s.query(ReviewItem).filter_by(kind="reformat", status="open")]
            for item_id in kept:
                resolve(settings, item_id, actor="bench-agent", decision={"approve": False, "reason": "bench: kept"})
            for item_id in gates:
                resolve(settings, item_id, actor="bench-supervisor", approve=True, reason="bench: approved")
                self.gates += 1
            verdicts: dict[str, list[int]] = {"same": [], "different": []}
            for item_id, key in pairs:
                left, right = (str(decode_key(k)) for k in key.split("|"))
                same = self.truth.get(left, -1) == self.truth.get(right, -2)
                verdicts["same" if same else "different"].append(item_id)
            for verdict, ids in verdicts.items():  # in bulk, one call per answer, as an agent ticking a selection
                if ids:
                    done = resolve_many(settings, ids, actor="bench-agent",
                                        decision={"verdict": verdict, "reason": "bench: by the truth"})
                    self.answered += len(done.decided)


def run_flow(url: str, table: str, spec_path: str) -> str:
    """The database-cleanup flow end to end on ``url``; returns its flow-run id.

    Runs in this process (the stack must be up, see ``bench``); pair items are answered by a ``PairAgent``
    the caller starts.
    """
    from flows.database_cleanup import database_cleanup

    result = database_cleanup(database=url, table=table, spec=spec_path)
    if result.get("problems"):
        raise RuntimeError(f"the flow refused its change set: {result['problems']}")
    return str(result["flow_run_id"])


def merges_of(run_id: str) -> list[tuple[str, str, str]]:
    """(survivor_key, merged_key, how) per merged row, from the run's change log: rows deleted (or soft-deleted)
    into a cluster, ``how`` "auto" (auto-merge) or "review" (a person said same)."""
    from sqlalchemy import select

    from bpo.cleanup.rows import decode_key
    from bpo.db.models import CleanupChange as C
    from bpo.db.session import session_scope
    from bpo.settings import get_settings

    with session_scope(get_settings().ops_database_url or "") as s:
        rows = s.execute(select(C.cluster, C.row_key, C.how).where(
            C.flow_run_id == run_id, C.action.in_(["delete", "soft_delete"]), C.cluster.is_not(None))).all()
    return [(str(decode_key(cluster)), str(decode_key(key)), how) for cluster, key, how in rows]


def write_table(url: str, table: pd.DataFrame) -> None:
    """The raw customer table into PostgreSQL with its primary key, by COPY (as a client database holds it)."""
    import psycopg

    columns = ", ".join(f'"{c}"' for c in table.columns)
    types = {"customer_id": "bigint PRIMARY KEY"}
    ddl = ", ".join(f'"{c}" {types.get(c, "text")}' for c in table.columns)
    with psycopg.connect(url.replace("+psycopg", "")) as con:
        con.execute(f'DROP TABLE IF EXISTS "{TABLE}"')
        con.execute(f'CREATE TABLE "{TABLE}" ({ddl})')
        with con.cursor().copy(f'COPY "{TABLE}" ({columns}) FROM STDIN') as copy:
            for row in table.itertuples(index=False):
                copy.write_row([None if v is None or (isinstance(v, float) and v != v) else v for v in row])


# ------------------------------------------------------------------------------------------ main


def bench(rows: int, seed: int, root: Path, *, baseline_only: bool, skip_baseline: bool = False) -> dict[str, Any]:
    started = time.perf_counter()
    table, entity = make_customers(rows, seed)
    match = standardize(table)
    match_path = root / "match.parquet"
    match.to_parquet(match_path, index=False)
    truth = dict(zip(match["unique_id"], entity.astype(int), strict=True))
    log(f"generated {rows} rows ({len(set(truth.values()))} entities) in {time.perf_counter() - started:.1f} s")

    result: dict[str, Any] = {"bench": "cleanup", "rows": rows, "seed": seed,
                              "entities": len(set(truth.values())), "machine": machine()}
    base: dict[str, Any] = {}
    if not skip_baseline:
        log("baseline: Splink with hand-written settings")
        base = in_child(run_baseline, str(match_path), str(root / "baseline.parquet"), seed)
        base.update(pair_scores(_cluster_map(root / "baseline.parquet"), truth))
        result["baseline"] = base
        log(f"baseline: {base}")
    log("dedupe: bpo.cleanup.dedupe, model from the roles")
    mine = in_child(run_dedupe, str(match_path), str(root / "dedupe.parquet"), seed)
    mine.update(pair_scores(_cluster_map(root / "dedupe.parquet"), truth))
    result["dedupe"] = mine
    log(f"dedupe: {mine}")
    if not baseline_only:
        result["flow"] = _bench_flow(root, table, truth)
        if base:
            result["flow_vs_splink_seconds"] = round(result["flow"]["seconds"] / base["seconds"], 2)
            result["flow_excluding_review_wait_vs_splink_seconds"] = round(
                result["flow"]["seconds_excluding_review_wait"] / base["seconds"], 2)
    return result


def _bench_flow(root: Path, table: pd.DataFrame, truth: dict[str, int]) -> dict[str, Any]:
    """The table in PostgreSQL, the flow run end to end while the agent answers its pair items."""
    from bench.data_entry import RssSampler, run_timeline, start_stack

    spec_path = root / "bench_customers_cleanup.yaml"
    spec_path.write_text(yaml.safe_dump(bench_spec().model_dump(mode="json", exclude_defaults=True)))
    with ExitStack() as stack:
        start_stack(root, stack)
        url = os.environ["BPO_TARGET_DATABASE_URL"]
        started = time.perf_counter()
        write_table(url, table)
        log(f"flow: table written to PostgreSQL in {time.perf_counter() - started:.1f} s (not measured)")
        import flows.database_cleanup  # noqa: F401 - imported before the clock starts, as Splink is for the baseline

        agent = PairAgent(truth)
        sampler = RssSampler(pss_every=0)  # the proportional set is not reported here
        agent.start()
        sampler.start()
        started = time.perf_counter()
        try:
            run_id = run_flow(url, TABLE, str(spec_path))
        finally:
            seconds = time.perf_counter() - started
            agent.finished.set()
            sampler.finished.set()
            agent.join(timeout=10)
        merges = merges_of(run_id)
        timeline = run_timeline(run_id)
    figures = pair_scores(_clusters_from_merges(merges, {"auto", "review"}), truth)
    auto = pair_scores(_clusters_from_merges(merges, {"auto"}), truth)
    paused = timeline["paused_seconds"] or 0.0
    out = {"seconds": round(seconds, 2), "review_wait_seconds": round(paused, 2),
           "seconds_excluding_review_wait": round(seconds - paused, 2),
           "task_wall_seconds": timeline["task_wall_seconds"],
           "peak_rss_mb": round(max(sampler.peak_rss_mb, peak_rss_mb()), 1),
           **figures, "auto_precision": auto["precision"], "auto_pairs": auto["predicted_pairs"],
           "pair_items_answered": agent.answered, "gates_approved": agent.gates,
           "merged_rows": len(merges)}
    log(f"flow: {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline-only", action="store_true",
                        help="Splink alone and bpo.cleanup.dedupe alone, no database and no flow")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="leave out Splink with hand-written settings (slow at 1M rows: its blocking is wide)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    root = Path(tempfile.mkdtemp(prefix="bpo-bench-cleanup-"))
    root.chmod(0o711)  # PostgreSQL runs as another user below it
    try:
        result = bench(args.rows, args.seed, root, baseline_only=args.baseline_only,
                       skip_baseline=args.skip_baseline)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result), flush=True)  # noqa: T201 - the bench's one line of output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
