"""The cleanup's report: before/after figures, the change set and the clusters — HTML in S3, Markdown in Prefect."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, select_autoescape

_ENV = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_HTML = _ENV.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cleanup of {{ table }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse;margin:1rem 0}
td,th{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}
.bad{color:#a00}</style></head><body>
<h1>Cleanup of {{ table }}</h1>
<p>Run {{ run_id }} · spec {{ spec }}{% if dry_run %} · <strong>dry run: nothing was changed</strong>{% endif %}</p>
<h2>Quality before and after</h2>
<table><tr><th>figure</th><th>before</th><th>after</th></tr>
{% for name, b, a in figures %}<tr><td>{{ name }}</td><td>{{ b }}</td><td>{{ a }}</td></tr>{% endfor %}
</table>
{% if problems %}<h2 class="bad">The projection fails its checks: nothing applied</h2>
<ul>{% for p in problems %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}
<h2>Change set</h2>
<table><tr><th>change</th><th>count</th></tr>
{% for name, n in counts %}<tr><td>{{ name }}</td><td>{{ n }}</td></tr>{% endfor %}</table>
<h2>Matching</h2>
<table>{% for name, v in matching %}<tr><td>{{ name }}</td><td>{{ v }}</td></tr>{% endfor %}</table>
{% if applied %}<h2>Applied</h2>
<table>{% for name, v in applied %}<tr><td>{{ name }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
<h2>Clusters (first {{ clusters|length }})</h2>
<table><tr><th>survivor</th><th>merged rows</th><th>how</th></tr>
{% for survivor, merged, how in clusters %}<tr><td>{{ survivor }}</td><td>{{ merged }}</td><td>{{ how }}</td></tr>
{% endfor %}</table>
</body></html>""")


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value:.2%}"


def figure_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    b, a = before["shares"], after["shares"]
    rows = [("rows", str(before["rows"]), str(after["rows"])),
            ("valid emails", _pct(b["valid_emails"]), _pct(a["valid_emails"])),
            ("E.164 phones", _pct(b["e164_phones"]), _pct(a["e164_phones"])),
            ("duplicate rate", _pct(b["duplicate_rate"]), _pct(a["duplicate_rate"]))]
    rows += [(f"nulls in {k.removeprefix('nulls.')}", _pct(v), _pct(a.get(k))) for k, v in b.items()
             if k.startswith("nulls.")]
    return rows


def render(*, table: str, run_id: str, spec: str, dry_run: bool, before: dict[str, Any], after: dict[str, Any],
           problems: list[str], counts: dict[str, int], matching: dict[str, Any], applied: dict[str, Any] | None,
           clusters: list[tuple[str, str, str]]) -> str:
    return _HTML.render(table=table, run_id=run_id, spec=spec, dry_run=dry_run, figures=figure_rows(before, after),
                        problems=problems, counts=sorted(counts.items()), matching=sorted(matching.items()),
                        applied=sorted((applied or {}).items()), clusters=clusters[:200])


def markdown(*, table: str, dry_run: bool, before: dict[str, Any], after: dict[str, Any], counts: dict[str, int],
             problems: list[str], report_uri: str) -> str:
    lines = [f"# Cleanup of `{table}`{' (dry run)' if dry_run else ''}", "", "| figure | before | after |",
             "|---|---:|---:|"]
    lines += [f"| {n} | {b} | {a} |" for n, b, a in figure_rows(before, after)[:4]]
    lines += ["", "| change | count |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    if problems:
        lines += ["", "**The projection fails its checks; nothing was applied:**"] + [f"- {p}" for p in problems]
    lines += ["", f"Report: `{report_uri}`"]
    return "\n".join(lines)
