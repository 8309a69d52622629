"""The supervisors' dashboard: backlog by process and age, SLA attainment, straight-through rate,
items resolved per agent-hour, straight-through accuracy measured by quality samples; figures from the
ops database, charts drawn here as SVG (no script)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from html import escape
from math import sqrt
from typing import Any

from sqlalchemy import select

from bpo.db.models import AuditEvent, ReviewItem, Run
from bpo.db.session import session_scope
from bpo.settings import Settings

AGES = [("< 1 h", timedelta(hours=1)), ("1-4 h", timedelta(hours=4)), ("4-24 h", timedelta(hours=24)),
        ("> 24 h", None)]
DECISIONS = ("approved", "rejected", "first_approval")


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _age_bucket(age: timedelta) -> str:
    for label, limit in AGES:
        if limit is None or age < limit:
            return label
    return AGES[-1][0]


def metrics(settings: Settings, *, now: datetime | None = None, days: int = 30,
            processes: frozenset[str] | None = None) -> dict[str, Any]:
    """The dashboard's figures over the last ``days`` (the backlog as it is now), for ``processes`` (None: all)."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    backlog: dict[str, Counter[str]] = defaultdict(Counter)
    sla: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # process -> [on time, decided]
    with session_scope(settings.ops_database_url or "") as s:
        def mine(q: Any) -> Any:
            return q if processes is None else q.where(ReviewItem.process.in_(sorted(processes)))

        for process, created in s.execute(mine(select(ReviewItem.process, ReviewItem.created_at)
                                               .where(ReviewItem.status == "open"))):
            backlog[process][_age_bucket(now - _aware(created))] += 1
        for process, due, decided in s.execute(mine(select(ReviewItem.process, ReviewItem.due_at,
                                                           ReviewItem.decided_at).where(
                ReviewItem.status.in_(["approved", "rejected"]), ReviewItem.decided_at >= since))):
            sla[process][1] += 1
            sla[process][0] += int(_aware(decided) <= _aware(due))
        runs = s.execute(select(Run.process, Run.counts).where(Run.started_at >= since, Run.status == "completed"))
        through: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # process -> [straight through, records in]
        for process, counts in runs:
            if processes is not None and process not in processes:
                continue
            # quality samples passed every check too: they count as straight through for the rate
            counts = counts or {}
            through[process][0] += int(counts.get("straight_through", 0)) + int(counts.get("sampled", 0))
            through[process][1] += int(counts.get("records_in", 0))
        samples: dict[str, Counter[str]] = defaultdict(Counter)
        for process, outcome in s.execute(mine(select(ReviewItem.process, ReviewItem.sample_outcome).where(
                ReviewItem.sample_outcome.is_not(None), ReviewItem.decided_at >= since))):
            samples[process][outcome] += 1
        hours: dict[str, set[datetime]] = defaultdict(set)
        decided_by: Counter[str] = Counter()
        q = select(AuditEvent.actor, AuditEvent.at).where(AuditEvent.action.in_(DECISIONS), AuditEvent.at >= since,
                                                          AuditEvent.actor != "system")
        if processes is not None:
            q = q.join(ReviewItem, ReviewItem.id == AuditEvent.item_id).where(ReviewItem.process.in_(sorted(processes)))
        for actor, at in s.execute(q):
            decided_by[actor] += 1
            hours[actor].add(_aware(at).replace(minute=0, second=0, microsecond=0))
    return {
        "days": days,
        "backlog": {p: {label: c.get(label, 0) for label, _ in AGES} for p, c in sorted(backlog.items())},
        "sla": {p: {"on_time": v[0], "decided": v[1], "share": v[0] / v[1] if v[1] else None}
                for p, v in sorted(sla.items())},
        "straight_through": {p: {"records": v[1], "straight_through": v[0], "share": v[0] / v[1] if v[1] else None}
                             for p, v in sorted(through.items())},
        "accuracy": {p: _accuracy(c) for p, c in sorted(samples.items())},
        # decisions per hour in which the agent decided anything: a rate while at work, not per calendar hour
        "per_agent_hour": {a: {"decisions": n, "hours": len(hours[a]), "rate": n / len(hours[a])}
                           for a, n in sorted(decided_by.items())},
    }


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% for z = 1.96): sound for small samples and for 0 or n."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _accuracy(outcomes: Counter[str]) -> dict[str, Any]:
    n, correct = sum(outcomes.values()), outcomes.get("correct", 0)
    low, high = wilson(correct, n)
    return {"samples": n, "correct": correct, "corrected": outcomes.get("corrected", 0),
            "rejected": outcomes.get("rejected", 0), "share": correct / n, "low": low, "high": high}


def bar_chart(title: str, bars: list[tuple[str, float]], *, unit: str = "", maximum: float | None = None,
              width: int = 520, intervals: list[tuple[float, float]] | None = None) -> str:
    """A horizontal bar chart as SVG markup, each bar with its interval (a whisker) if given; labels escaped."""
    row, label_w, pad = 24, 170, 8
    top = max([v for _, v in bars] + [maximum or 0, 1e-9])
    height = pad * 2 + 20 + row * max(1, len(bars))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>',
             f'<text x="{pad}" y="{pad + 12}" class="chart-title">{escape(title)}</text>']
    if not bars:
        parts.append(f'<text x="{pad}" y="{pad + 36}" class="chart-empty">nothing yet</text>')
    for i, (label, value) in enumerate(bars):
        y = pad + 20 + i * row
        w = (width - label_w - 70) * (value / top)
        shown = f"{value:.0%}" if unit == "%" else f"{value:g}{unit}"
        parts.append(f'<text x="{pad}" y="{y + 15}" class="chart-label">{escape(label[:28])}</text>'
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" class="chart-bar"/>')
        end = w
        if intervals:
            low, high = ((width - label_w - 70) * (v / top) for v in intervals[i])
            mid, end = y + row / 2 - 1, max(w, high)
            shown += f" ({intervals[i][0]:.0%}–{intervals[i][1]:.0%})" if unit == "%" else ""
            parts.append(f'<path d="M{label_w + low:.1f} {mid:.1f}H{label_w + high:.1f}M{label_w + low:.1f} '
                         f'{mid - 5:.1f}v10M{label_w + high:.1f} {mid - 5:.1f}v10" class="chart-interval"/>')
        parts.append(f'<text x="{label_w + end + 6:.1f}" y="{y + 15}" class="chart-value">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def charts(m: dict[str, Any]) -> list[str]:
    """The dashboard's charts from ``metrics``."""
    backlog = [(f"{p} · {age}", float(n)) for p, ages in m["backlog"].items() for age, n in ages.items() if n]
    sla = [(p, v["share"]) for p, v in m["sla"].items() if v["share"] is not None]
    through = [(p, v["share"]) for p, v in m["straight_through"].items() if v["share"] is not None]
    rate = [(a, round(v["rate"], 1)) for a, v in m["per_agent_hour"].items()]
    accuracy = [(f"{p} (n={v['samples']})", v["share"]) for p, v in m["accuracy"].items()]
    return [bar_chart("Open items by process and age", backlog),
            bar_chart(f"Decided within the due time (last {m['days']} days)", sla, unit="%", maximum=1),
            bar_chart(f"Straight-through rate (last {m['days']} days)", through, unit="%", maximum=1),
            bar_chart("Decisions per agent-hour", rate),
            bar_chart(f"Straight-through accuracy, quality samples, 95% interval (last {m['days']} days)", accuracy,
                      unit="%", maximum=1, width=640,
                      intervals=[(v["low"], v["high"]) for v in m["accuracy"].values()])]
