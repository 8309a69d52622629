"""The supervisors' dashboard: backlog by process and age, SLA attainment, straight-through rate,
items resolved per agent-hour; figures from the ops database, charts drawn here as SVG (no script)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from html import escape
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
            through[process][0] += int((counts or {}).get("straight_through", 0))
            through[process][1] += int((counts or {}).get("records_in", 0))
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
        # decisions per hour in which the agent decided anything: a rate while at work, not per calendar hour
        "per_agent_hour": {a: {"decisions": n, "hours": len(hours[a]), "rate": n / len(hours[a])}
                           for a, n in sorted(decided_by.items())},
    }


def bar_chart(title: str, bars: list[tuple[str, float]], *, unit: str = "", maximum: float | None = None,
              width: int = 520) -> str:
    """A horizontal bar chart as SVG markup; every label is escaped."""
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
                     f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" class="chart-bar"/>'
                     f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" class="chart-value">{escape(shown)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def charts(m: dict[str, Any]) -> list[str]:
    """The dashboard's charts from ``metrics``."""
    backlog = [(f"{p} · {age}", float(n)) for p, ages in m["backlog"].items() for age, n in ages.items() if n]
    sla = [(p, v["share"]) for p, v in m["sla"].items() if v["share"] is not None]
    through = [(p, v["share"]) for p, v in m["straight_through"].items() if v["share"] is not None]
    rate = [(a, round(v["rate"], 1)) for a, v in m["per_agent_hour"].items()]
    return [bar_chart("Open items by process and age", backlog),
            bar_chart(f"Decided within the due time (last {m['days']} days)", sla, unit="%", maximum=1),
            bar_chart(f"Straight-through rate (last {m['days']} days)", through, unit="%", maximum=1),
            bar_chart("Decisions per agent-hour", rate)]
