"""What the item page shows of a cleanup's items: a pair's two rows side by side with its waterfall chart,
and a conflict's three versions of a row.

Plain dicts and numbers; the template draws them (the waterfall as inline SVG), so every value and
label is escaped by Jinja like the rest of the page.
"""

from __future__ import annotations

from typing import Any

from bpo.review.conflict import VERSIONS
from bpo.review.pair import columns_of, values_agree

# the waterfall's geometry, in SVG user units
ROW, LABEL_W, PLOT_W, VALUE_W, PAD = 26, 260, 360, 70, 8
LABEL_CHARS = 40  # what fits in LABEL_W at the chart's font size; the bar's tooltip has the whole label


def pair_view(source: dict[str, Any]) -> dict[str, Any]:
    """A pair's rows (one per column, agreeing or not), its waterfall chart and the rest of its cluster."""
    left, right = source.get("left") or {}, source.get("right") or {}
    rows = [{"column": c, "left": left.get(c), "right": right.get(c), "agree": values_agree(left.get(c), right.get(c)),
             "empty": left.get(c) is None and right.get(c) is None} for c in columns_of(source)]
    pair = {str(source.get("left_key")), str(source.get("right_key"))}
    members = source.get("cluster") or []
    cluster_columns = list(dict.fromkeys(c for m in members for c in (m.get("row") or {})))
    cluster = [{"key": str(m.get("key")), "in_pair": str(m.get("key")) in pair,
                "cells": [(m.get("row") or {}).get(c) for c in cluster_columns]} for m in members]
    return {"rows": rows, "cluster_columns": cluster_columns, "cluster": cluster,
            "chart": waterfall_chart(source.get("waterfall"))}


def waterfall_chart(waterfall: dict[str, Any] | None) -> dict[str, Any] | None:
    """The waterfall of match weights as bars: the prior from zero, each comparison's step up or down from the
    running total, and the final weight from zero; None without a waterfall."""
    if not waterfall:
        return None
    prior = float(waterfall.get("prior_weight") or 0.0)
    final = float(waterfall.get("match_weight") or 0.0)
    steps = waterfall.get("steps") or []
    spans: list[tuple[str, str, float, float, str]] = [("prior", "", 0.0, prior, "prior")]
    total = prior
    for s in steps:
        change = float(s.get("log2_bf") or 0.0)
        label = str(s.get("column") or s.get("comparison") or "")
        spans.append((label, str(s.get("level") or ""), total, total + change, "up" if change >= 0 else "down"))
        total += change
    spans.append(("match weight", _probability(waterfall.get("match_probability")), 0.0, final, "final"))
    low = min(0.0, *(v for span in spans for v in span[2:4]))
    high = max(0.0, *(v for span in spans for v in span[2:4]))
    scale = PLOT_W / ((high - low) or 1.0)

    def x(v: float) -> float:
        return round(LABEL_W + (v - low) * scale, 1)

    bars = []
    for i, (label, detail, start, end, shape) in enumerate(spans):
        y = PAD + i * ROW
        change = end - start
        full = f"{label} · {detail}" if detail else label
        bars.append({"text": full if len(full) <= LABEL_CHARS else full[:LABEL_CHARS - 1] + "…", "full": full,
                     "shape": shape, "x": min(x(start), x(end)), "y": y + 4,
                     "width": max(round(abs(x(end) - x(start)), 1), 1.0), "height": ROW - 8, "text_y": y + ROW / 2 + 4,
                     "value_x": max(x(start), x(end)) + 6,
                     "value": f"{change:+.2f}" if shape in ("up", "down") else f"{end:.2f}",
                     "marker": {"up": "▲", "down": "▼"}.get(shape, "")})
    height = PAD * 2 + ROW * len(spans)
    return {"bars": bars, "width": LABEL_W + PLOT_W + VALUE_W, "height": height, "zero_x": x(0.0),
            "steps": len(steps), "final": final}


def conflict_view(source: dict[str, Any]) -> dict[str, Any]:
    """A conflict's row as snapshotted, as it is now and as proposed, column by column; a column whose current
    value differs from the snapshot is marked changed."""
    versions = {v: source.get(v) or {} for v in VERSIONS}
    columns = list(dict.fromkeys(c for version in versions.values() for c in version))
    rows = [{"column": c, **{v: versions[v].get(c) for v in VERSIONS},
             "changed": versions["snapshot"].get(c) != versions["current"].get(c)}
            for c in columns]
    return {"versions": list(VERSIONS), "rows": rows}


def _probability(value: Any) -> str:
    return "" if value is None else f"p={float(value):.2f}"
