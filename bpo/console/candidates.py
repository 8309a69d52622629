"""What the item page shows of a research field's candidates item, and the decision its forms send.

Plain dicts; the template draws them, every value escaped by Jinja. A citation's location becomes a
link only when it is an http(s) URL: a ``javascript:`` or ``data:`` location, or a file path, is
shown as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from bpo.review.candidates import WHY


def candidates_view(source: dict[str, Any]) -> dict[str, Any]:
    """The question (subject, field, why asked) and each candidate with its citations, each citation's link."""
    proposed = source.get("proposed")
    candidates = []
    for i, c in enumerate(source.get("candidates") or []):
        citations = [{**x, "href": web_link(str(x.get("location") or "")),
                      "excerpt_parts": marked(str(x.get("excerpt") or ""), str(c.get("value") or ""))}
                     for x in c.get("citations") or []]
        candidates.append({**c, "index": i, "proposed": i == proposed, "citations": citations})
    why = str(source.get("reason") or "")
    return {"why": why, "why_text": WHY.get(why, why), "candidates": candidates,
            "choose": proposed if proposed is not None else (0 if candidates else None)}


def marked(excerpt: str, value: str) -> tuple[str, str, str]:
    """The excerpt as (before, the value as it stands there, after), for the page to mark the value; all
    of it in ``before`` when the value is not in it (a source that spells it otherwise)."""
    at = excerpt.casefold().find(value.strip().casefold()) if value.strip() else -1
    if at < 0:
        return excerpt, "", ""
    end = at + len(value.strip())
    return excerpt[:at], excerpt[at:end], excerpt[end:]


def web_link(location: str) -> str | None:
    """``location`` when it is an http(s) URL with a host (safe as a link), else None."""
    try:
        parts = urlsplit(location.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        return location.strip()
    return None


ACTIONS = ("candidate", "value", "not_found")


def candidates_answer(form: Mapping[str, Any]) -> dict[str, Any] | str:
    """The decision the page's forms send (``action``: candidate, value or not_found), or why there is none."""
    action = str(form.get("action", ""))
    reason = str(form.get("reason", "")).strip()
    if action == "candidate":
        chosen = str(form.get("candidate", "")).strip()
        if not chosen.isdigit():
            return "choose one of the candidates"
        return {"candidate": int(chosen), "reason": reason}
    if action == "value":
        citation = {name: str(form.get(f"cite_{name}", "")).strip() for name in ("source", "location", "where",
                                                                              "snippet")}
        if not citation["source"]:
            del citation["source"]
        return {"value": str(form.get("value", "")), "citation": citation, "reason": reason}
    if action == "not_found":
        return {"not_found": True, "note": str(form.get("note", "")).strip()}
    return "choose a candidate, enter a value with its citation, or say it cannot be found"
