"""Benchmark of the research-compilation flow on a generated web with a known truth.

    python -m bench.research --subjects 1000 [--seed 1] [--gate] [--concurrency 8] [--keep]

Serves ``bpo.research.samples.make_web(N)`` (six sources per subject of differing reliability, two
copying a third's errors, 20% of fields contested, 5% of pages broken) on 127.0.0.1, starts its own
SeaweedFS and Prefect server (the ops database is SQLite) on free loopback ports in a temporary folder,
and runs ``research_compilation(brief=...)`` in this process while a scripted agent thread settles every
candidates item (the proposed candidate, or not found with a note) and approves any gate. Then it scores
what was published without review against the truth, and plain majority voting over the same
candidates (the run's ``candidates.jsonl``) on the same fields. Prints one JSON line on stdout; the
rest goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from bench.data_entry import BUCKET, RssSampler, _covered, configure_env, log, machine, peak_rss_mb, run_timeline

POLL_SECONDS = 0.3
NOT_FOUND_NOTE = "bench: no source states it"


def start_stack(root: Path, stack: ExitStack) -> None:
    """SeaweedFS, the Prefect server and the SQLite ops database (the research flow needs no PostgreSQL)."""
    from bpo.stack import free_port, start_prefect_server, start_seaweedfs, stop

    prefect_port, s3_port = free_port(), free_port()
    env = configure_env(root, prefect_port=prefect_port, s3_port=s3_port, pg_port=free_port())
    os.environ.pop("BPO_TARGET_DATABASE_URL", None)  # no target database: research publishes to S3
    t0 = time.perf_counter()
    weed = start_seaweedfs(root / "seaweedfs", s3_port=s3_port, access_key=env["BPO_S3_ACCESS_KEY_ID"],
                           secret_key=env["BPO_S3_SECRET_ACCESS_KEY"], bucket=BUCKET, log=root / "seaweedfs.log")
    stack.callback(stop, weed)
    server = start_prefect_server(root / "prefect-server", port=prefect_port, log=root / "prefect.log")
    stack.callback(stop, server)

    from bpo.db.session import upgrade

    upgrade(env["BPO_OPS_DATABASE_URL"])
    log(f"services up in {time.perf_counter() - t0:.1f}s (S3 :{s3_port}, Prefect :{prefect_port})")


class Agent(threading.Thread):
    """Settles every open candidates item quickly (the proposed candidate, else not found) and approves gates."""

    def __init__(self) -> None:
        super().__init__(name="bench-research-agent", daemon=True)
        self.finished = threading.Event()
        self.picked = self.not_found = self.gates = 0
        self.first_item_at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:
            self.error = exc

    def _work(self) -> None:
        from bpo.db.models import ReviewItem
        from bpo.db.session import session_scope
        from bpo.review import resolve, resolve_many
        from bpo.settings import get_settings

        settings = get_settings()
        while not self.finished.wait(POLL_SECONDS):
            with session_scope(settings.ops_database_url or "") as s:
                items = [(i.id, i.kind, (i.source or {}).get("proposed")) for i in
                         s.query(ReviewItem).filter(ReviewItem.status == "open",
                                                    ReviewItem.kind.in_(("candidates", "gate")))]
            if items and self.first_item_at is None:
                self.first_item_at = time.perf_counter()
            by_choice: dict[int | None, list[int]] = {}
            for item_id, kind, proposed in items:
                if kind == "gate":
                    resolve(settings, item_id, actor="bench-supervisor", approve=True, reason="bench: approved")
                    self.gates += 1
                else:
                    by_choice.setdefault(proposed, []).append(item_id)
            for proposed, ids in sorted(by_choice.items(), key=lambda x: x[0] is None):
                decision = {"not_found": True, "note": NOT_FOUND_NOTE} if proposed is None else {"candidate": proposed}
                done = resolve_many(settings, ids, actor="bench-agent", decision=decision)
                if done.refused or done.left_open:
                    raise RuntimeError(f"the agent's decisions were not taken: {len(done.refused)} refused, "
                                       f"{len(done.left_open)} left open")
                if proposed is None:
                    self.not_found += len(ids)
                else:
                    self.picked += len(ids)


def _routes(web: Any) -> Any:
    from tests.web import Reply, Request

    def answer(request: Request) -> Reply:
        page = web.pages.get(request.path)
        if page is None:
            return Reply(404, b"gone", content_type="text/plain")
        return Reply(page.status, page.body, content_type=page.content_type)
    return answer


def serve_web(subjects: int, seed: int, ready: Any, stop: Any) -> None:
    """The generated web on a free loopback port, in a process of its own: a site is not the client's
    process, and in-process its threads would contend with the flow for the GIL."""
    import socketserver

    from bpo.research.samples import make_web
    from tests.web import serve

    socketserver.BaseServer.handle_error = lambda *_: None  # type: ignore[method-assign]  # a client's reset
    web = make_web(subjects, seed=seed)
    with serve({}) as server:
        server.routes["*"] = _routes(web)
        ready.put(server.base)
        stop.wait()
        ready.put(len(server.requests))


def score(web: Any, facts: list[Any], candidates: list[Any]) -> dict[str, Any]:
    """Accuracy of what was published without review (status chosen), and of majority voting on the same fields."""
    from bpo.research.brief import ResearchField
    from bpo.research.normalize import normalize_values
    from bpo.research.reconcile import majority_vote
    from bpo.research.samples import FIELDS

    specs = {name: ResearchField(name=name, **spec) for name, spec in FIELDS.items()}
    keys = sorted(web.truth)
    truth: dict[tuple[str, str], str | None] = {}
    for field, spec in specs.items():  # one batch per field, as the flow normalizes
        ours = [k for k in keys if k[1] == field]
        truth.update(zip(ours, normalize_values(spec, [web.truth[k] for k in ours]), strict=True))
    statuses = Counter(f.status for f in facts)
    chosen = [f for f in facts if f.status == "chosen"]
    right = [f for f in chosen if truth.get((f.subject_id, f.field)) == f.value]
    wrong = [f for f in chosen if truth.get((f.subject_id, f.field)) != f.value]
    vote = majority_vote(candidates)
    vote_right = sum(vote.get((f.subject_id, f.field)) == truth.get((f.subject_id, f.field)) for f in chosen)
    # over every field some source states (what majority voting would publish with no review at all)
    stated = [k for k in vote if k in truth]
    vote_all_right = sum(vote[k] == truth[k] for k in stated)
    contested = {k for k in web.contested}
    return {
        "fields": len(facts),
        "statuses": dict(sorted(statuses.items())),
        "published_without_review": len(chosen),
        "accuracy_without_review": round(len(right) / len(chosen), 5) if chosen else None,
        "wrong_without_review": len(wrong),
        "wrong_without_review_contested": sum((f.subject_id, f.field) in contested for f in wrong),
        "wrong_by_field": dict(sorted(Counter(f.field for f in wrong).items())),
        "majority_vote_accuracy_same_fields": round(vote_right / len(chosen), 5) if chosen else None,
        "majority_vote_accuracy_all_stated_fields": round(vote_all_right / len(stated), 5) if stated else None,
        "majority_vote_fields_all_stated": len(stated),
    }


def bench(subjects: int, seed: int, root: Path, *, gate: bool, concurrency: int | None = None) -> dict[str, Any]:
    from bpo.research.samples import make_web

    t0 = time.perf_counter()
    web = make_web(subjects, seed=seed)
    log(f"web: {subjects} subjects, {len(web.pages)} pages ({len(web.broken)} broken), "
        f"{len(web.contested)} contested fields, made in {time.perf_counter() - t0:.1f}s (not measured)")
    with ExitStack() as stack:
        stack.callback(log, "services stopped")
        start_stack(root, stack)
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Queue(), context.Event()
        site = context.Process(target=serve_web, args=(subjects, seed, ready, stop), name="bench-web", daemon=True)
        site.start()
        stack.callback(site.join, 10)
        stack.callback(stop.set)
        base = ready.get(timeout=120)
        brief = web.brief(base, review={"gate": gate})
        for source in brief["sources"]:  # the six share one host: the fetcher holds it to the strictest
            source["concurrency"] = concurrency or source["concurrency"]
        brief_path = root / "company_profiles.yaml"
        brief_path.write_text(yaml.safe_dump(brief, sort_keys=False))

        from bpo.research.pipeline import load_candidates
        from bpo.research.publish import read_edition
        from bpo.run import get_store
        from flows.research_compilation import research_compilation

        agent = Agent()
        sampler = RssSampler(interval=1.0, pss_every=0)  # /proc read for every process: 0.2 s cost a few % of a core
        agent.start()
        sampler.start()
        load = os.getloadavg()
        log("flow: running")
        start = time.perf_counter()
        try:
            result = research_compilation(brief=str(brief_path))
        finally:
            seconds = time.perf_counter() - start
            load_after = os.getloadavg()
            agent.finished.set()
            sampler.finished.set()
            agent.join(timeout=30)
        if agent.error is not None:
            raise RuntimeError("the scripted agent failed") from agent.error
        timeline = run_timeline(result["flow_run_id"])
        spans = timeline.pop("spans")
        paused = _paused_seconds(result["flow_run_id"])
        net = seconds - paused
        store = get_store()
        facts = read_edition(store.get_bytes(result["keys"]["json"]))
        prefix = result["keys"]["json"].split("/deliverable/", 1)[0]
        candidates = load_candidates(store.get_bytes(f"{prefix}/candidates.jsonl"))
        stop.set()
        requests = ready.get(timeout=30)
    figures = score(web, facts, candidates)
    gather_s = timeline["task_wall_seconds"].get("gather_sources")
    out = {
        "bench": "research", "subjects": subjects, "seed": seed, "gate": gate,
        "host_concurrency": min(s["concurrency"] for s in brief["sources"]),
        "flow_seconds": round(seconds, 3), "review_wait_seconds": round(paused, 3),
        "flow_seconds_excluding_review_wait": round(net, 3),
        "accuracy_without_review": figures["accuracy_without_review"],
        "majority_vote_accuracy": figures["majority_vote_accuracy_same_fields"],
        "review_share": round(result["to_review"] / figures["fields"], 5),
        "pages": result["documents"], "http_requests": requests,
        "gather_pages_per_second": round(result["documents"] / gather_s, 1) if gather_s else None,
        "stage_seconds": timeline["task_wall_seconds"],
        "outside_tasks_seconds": round(net - _covered([x for v in spans.values() for x in v]), 3),
        "scores": figures, "candidates": result["candidates"], "to_review": result["to_review"],
        "agent": {"picked": agent.picked, "not_found": agent.not_found, "gates": agent.gates},
        "failed_checks": result["failed_checks"], "trust": result["trust"],
        "peak_rss_mb": round(max(sampler.peak_rss_mb, peak_rss_mb())),
        "load_average_before": [round(x, 2) for x in load], "load_average_after": [round(x, 2) for x in load_after],
        "machine": machine(),
    }
    log(f"flow: {seconds:.1f}s, {paused:.1f}s waiting for review; stages {timeline['task_wall_seconds']}")
    log(f"accuracy without review {figures['accuracy_without_review']} (majority vote on the same fields "
        f"{figures['majority_vote_accuracy_same_fields']}), {result['to_review']} of {figures['fields']} fields "
        f"to review")
    return out


def _paused_seconds(flow_run_id: str) -> float:
    """Every PAUSED span of the run (candidates review, then the gate), from the Prefect API's state history."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = sorted(client.read_flow_run_states(UUID(flow_run_id)), key=lambda s: s.timestamp)
    return sum((b.timestamp - a.timestamp).total_seconds() for a, b in zip(states, states[1:], strict=False)
               if a.is_paused())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.research", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, required=True, help="companies in the generated web")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gate", action="store_true", help="keep the brief's report gate (the agent approves it)")
    parser.add_argument("--concurrency", type=int, help="requests at once to the web's host (default: the "
                        "generated brief's 8)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (service logs, data)")
    args = parser.parse_args(argv)
    if args.subjects <= 0:
        parser.error("--subjects must be positive")
    if args.concurrency is not None and args.concurrency <= 0:
        parser.error("--concurrency must be positive")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="bpo-rbench-"))
    log(f"working in {root}")
    try:
        report = bench(args.subjects, args.seed, root, gate=args.gate, concurrency=args.concurrency)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
            log(f"removed {root}")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
