"""The ``candidates`` kind: which value of a research field is right? (a research compilation's open question)

The item holds one subject's one field, why it is asked (a required field ``missing``, a
``conflict`` between sources, a ``low_confidence`` choice), the confidence of the value the
reconciliation proposed, and the candidate values it found: each a group of equivalent values with
its confidence and its citations, every citation with a plain-text excerpt of its source around the
value, so that the reviewer reads the evidence without opening the page.

The agent answers one of three ways:

- ``{"candidate": N}``: the N-th candidate (from 0) is right: approved, with its value and citations;
- ``{"value": V, "citation": {"location": L, "snippet": S, ...}}``: a value found elsewhere, with where
  it was read (a location and a snippet at least); checked for the field's type (a phone normalized
  to E.164, a date to ISO, ...) and refused with the reason when it fails: approved;
- ``{"not_found": true, "note": "..."}``: the field cannot be found, and the note says where it was
  looked for: rejected (no value; the field stays empty). For a **required** field the agent's
  not found decides nothing: it sends the item to the supervisor queue, where a supervisor's not
  found is final. An empty required field counts against the brief's completeness, so it takes two
  people to leave one empty.

Any of them may carry a ``reason``. The decision stored is what the flow fills the field with.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bpo.carry import record_hash
from bpo.db.models import ReviewItem
from bpo.research.brief import FieldType
from bpo.research.values import check_value
from bpo.review.kinds import CorrectionRefused, Display, InvalidDecision, Outcome, item_row, register
from bpo.review.service import SUPERVISOR_QUEUE

AskedWhy = Literal["missing", "conflict", "low_confidence"]
WHY = {"missing": "a required field no source fills", "conflict": "sources disagree",
       "low_confidence": "the proposed value's confidence is low"}
SNIPPET_CHARS = 400
EXCERPT_CHARS = 1200  # what a reviewer reads beside a candidate; the whole page stays in the run's S3 store
ENTERED_SOURCE = "agent"  # an entered value's citation names no source of the brief unless the agent does


def _plain(text: str, limit: int) -> str:
    """Whitespace collapsed, control characters dropped, cut to ``limit`` characters (marked with …)."""
    flat = re.sub(r"\s+", " ", re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)).strip()
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


def excerpt_around(text: str, value: str, *, chars: int = EXCERPT_CHARS) -> str:
    """About ``chars`` characters of a source's plain text around the first place ``value`` stands in it
    (case-insensitive; the start of the text when it is not there), cut between words and marked … where cut."""
    flat = _plain(text, len(text) + 1)
    if len(flat) <= chars:
        return flat
    needle = value.strip().casefold()
    at = flat.casefold().find(needle) if needle else -1
    start = 0 if at < 0 else max(0, min(at - (chars - len(needle)) // 2, len(flat) - chars))
    end = start + chars
    value_end = at + len(needle) if at >= 0 else start
    if start > 0:  # from the next word on, never past the value's start
        space = flat.find(" ", start, at if at >= 0 else end)
        start = space + 1 if space >= 0 else start
    if end < len(flat):  # up to the last whole word, never before the value's end
        space = flat.rfind(" ", max(start, value_end), end)
        end = space if space >= 0 else end
    return ("…" if start > 0 else "") + flat[start:end].strip() + ("…" if end < len(flat) else "")


class ItemSubject(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)  # a brief's Subject, identifiers left out

    id: str
    name: str


class ItemField(BaseModel):
    """The field asked about, with what its type's check needs (a brief's ``ResearchField`` validates as one)."""

    model_config = ConfigDict(extra="ignore", from_attributes=True)

    name: str = Field(min_length=1)
    type: FieldType = "text"
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    country: str | None = None
    currency: str | None = None


class ItemCitation(BaseModel):
    """Where a candidate was read (a ``bpo.research.model.Citation`` validates as one), with the source's text
    around it."""

    model_config = ConfigDict(extra="forbid", from_attributes=True)

    source: str
    location: str
    where: str = ""
    snippet: str
    retrieved_at: datetime | None = None
    content_hash: str | None = None
    excerpt: str = ""  # plain text of the source around the value (``excerpt_around``)

    @field_validator("snippet")
    @classmethod
    def _snippet(cls, value: str) -> str:
        return _plain(value, SNIPPET_CHARS)

    @field_validator("excerpt")
    @classmethod
    def _excerpt(cls, value: str) -> str:
        return _plain(value, EXCERPT_CHARS)


class CandidateGroup(BaseModel):
    """One candidate value: equivalent values of several sources grouped under one normalized value."""

    model_config = ConfigDict(extra="forbid")

    value: str  # as a reader sees it (the most common spelling)
    normalized: str | None = None
    confidence: float = Field(ge=0.0, le=1.0)  # the reconciliation's belief that this value is right
    citations: list[ItemCitation] = Field(min_length=1)  # no candidate without a source


class CandidatesSource(BaseModel):
    """What a candidates item holds (its ``source``)."""

    model_config = ConfigDict(extra="forbid")

    subject: ItemSubject
    field: ItemField
    reason: AskedWhy
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)  # of the proposed value; None: none proposed
    proposed: int | None = Field(default=None, ge=0)  # the candidate the reconciliation chose
    candidates: list[CandidateGroup] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> CandidatesSource:
        if self.proposed is not None and self.proposed >= len(self.candidates):
            raise ValueError(f"proposed is candidate {self.proposed}, but there are {len(self.candidates)}")
        if self.reason == "conflict" and len(self.candidates) < 2:
            raise ValueError("a conflict has two candidates or more")
        if self.reason == "low_confidence" and self.proposed is None:
            raise ValueError("a low-confidence question names the candidate proposed")
        return self


class EnteredCitation(BaseModel):
    """Where an entered value was read: a location (URL, file, document) and the text that states it."""

    model_config = ConfigDict(extra="forbid")

    source: str = ENTERED_SOURCE
    location: str = Field(min_length=1)
    where: str = ""
    snippet: str = Field(min_length=1)

    @field_validator("source", "location", "where", "snippet")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _given(self) -> EnteredCitation:
        missing = [name for name in ("location", "snippet") if not getattr(self, name)]
        if missing:
            raise ValueError(f"an entered value's citation needs a {' and a '.join(missing)}")
        self.source = self.source or ENTERED_SOURCE
        return self


class CandidatesDecision(BaseModel):
    """A candidate by its index, a value entered with its citation, or not found with a note."""

    model_config = ConfigDict(extra="forbid")

    candidate: int | None = Field(default=None, ge=0)
    value: str | None = None
    citation: EnteredCitation | None = None
    not_found: bool = False
    note: str = ""
    reason: str = ""

    @field_validator("value", "note", "reason")
    @classmethod
    def _trimmed(cls, value: str | None) -> str | None:
        return None if value is None else value.strip()

    @model_validator(mode="after")
    def _one_answer(self) -> CandidatesDecision:
        given = [name for name, on in (("candidate", self.candidate is not None), ("value", self.value is not None),
                                       ("not_found", self.not_found)) if on]
        if len(given) != 1:
            raise ValueError("answer with one of candidate, value (with its citation) or not_found"
                             + (f", not {' and '.join(given)}" if given else ""))
        if self.value is not None and self.citation is None:
            raise ValueError("citation: an entered value needs its citation (a location and a snippet)")
        if self.citation is not None and self.value is None:
            raise ValueError("citation: goes with an entered value")
        if self.value == "":
            raise ValueError("value: empty; to say the field cannot be found, answer not_found with a note")
        if self.not_found and not (self.note or self.reason):
            raise ValueError("note: saying a field cannot be found needs a note (where it was looked for)")
        return self


def candidates_item(*, flow_run_id: str, process: str, step: str, source: dict[str, Any] | CandidatesSource,
                    due_at: datetime, on_timeout: Literal["escalate", "reject"], record_hash: str | None = None,
                    priority: int = 0) -> dict[str, Any]:
    """The row of a candidates item for ``add_items``: ``source`` as ``CandidatesSource`` reads it, keyed
    ``subject id|field name``; the proposed candidate, if any, is the item's proposal. Without ``record_hash``
    the item's is ``question_hash``: the same question asked again by a later run carries its decision over."""
    checked = CandidatesSource.model_validate(source)
    proposed = {} if checked.proposed is None else {"candidate": checked.proposed}
    return item_row(CandidatesKind.name, flow_run_id=flow_run_id, process=process, step=step,
                    record_key=f"{checked.subject.id}|{checked.field.name}",
                    record_hash=record_hash or question_hash(process, checked),
                    source=checked.model_dump(mode="json"), proposed=proposed, due_at=due_at, on_timeout=on_timeout,
                    priority=priority)


def question_hash(process: str, source: CandidatesSource) -> str:
    """The identity of a question across runs: the subject, the field, and each candidate's value with where it
    was read. Not when it was read, the excerpt or the confidences: a refresh that finds the same values in the
    same places asks nobody again; a new value or a new source asks again."""
    candidates = sorted(json.dumps([c.value, c.normalized, sorted([x.source, x.location, x.snippet]
                                                                  for x in c.citations)]) for c in source.candidates)
    return record_hash(process, [{"subject": source.subject.id, "field": source.field.name,
                                  "type": source.field.type, "candidates": candidates}])


class CandidatesKind:
    name: ClassVar[str] = "candidates"
    decision: ClassVar[type[BaseModel]] = CandidatesDecision

    def display(self, item: ReviewItem) -> Display:
        source = item.source
        subject, field = source.get("subject") or {}, source.get("field") or {}
        proposed = source.get("proposed")
        rows, notes = [], []
        for i, c in enumerate(source.get("candidates") or []):
            citations = c.get("citations") or []
            rows.append([f"{i}{' (proposed)' if i == proposed else ''}", str(c.get("value", "")),
                         _text(c.get("normalized")), f"{float(c.get('confidence') or 0.0):.2f}",
                         ", ".join(dict.fromkeys(str(x.get("source", "")) for x in citations))])
            for x in citations:
                notes.append(f"[{i}] {x.get('source')}: {x.get('location')}"
                             + (f" ({x.get('where')})" if x.get("where") else "") + f" — “{x.get('snippet')}”")
        why = str(source.get("reason", ""))
        confidence = source.get("confidence")
        notes.insert(0, f"asked because {WHY.get(why, why)}"
                     + (f"; proposed value's confidence {float(confidence):.2f}" if confidence is not None else ""))
        required = " (required)" if field.get("required") else ""
        return Display(title=f"{subject.get('name')} ({subject.get('id')}) · {field.get('name')}{required}",
                       columns=["#", "value", "normalized", "confidence", "sources"], rows=rows, notes=notes,
                       summary=f"{why.replace('_', ' ')}: {field.get('name')}, {len(rows)} candidate"
                               f"{'' if len(rows) == 1 else 's'}")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, CandidatesDecision)
        source = CandidatesSource.model_validate(item.source)
        audit: dict[str, Any] = decision.model_dump(mode="json", exclude_defaults=True)
        reason = decision.reason or None
        if decision.candidate is not None:
            if decision.candidate >= len(source.candidates):
                have = (f"there are {len(source.candidates)} candidates (0 to {len(source.candidates) - 1})"
                        if source.candidates else "this item has no candidates: enter a value with its citation, "
                                                   "or say not_found")
                raise InvalidDecision(f"not a candidates decision: candidate: {have}")
            chosen = source.candidates[decision.candidate]
            return Outcome("approved", decision={
                "candidate": decision.candidate, "value": chosen.value, "normalized": chosen.normalized,
                "citations": [c.model_dump(mode="json", exclude={"excerpt"}) for c in chosen.citations]},
                reason=reason, audit=audit, changed=decision.candidate != source.proposed)
        if decision.value is not None:
            assert decision.citation is not None
            f = source.field
            got = check_value(decision.value, f.type, country=f.country, currency=f.currency, minimum=f.minimum,
                              maximum=f.maximum)
            if got.reason is not None:
                raise CorrectionRefused([{"field": f.name, "check": f"{f.type}_format", "reason": got.reason}])
            citation = {**decision.citation.model_dump(mode="json"), "retrieved_at": datetime.now(UTC).isoformat(),
                        "content_hash": None}
            return Outcome("approved", decision={"candidate": None, "value": decision.value,
                                                 "normalized": got.normalized, "citations": [citation]},
                           reason=reason, audit=audit, changed=True)
        note = decision.note or decision.reason
        if source.field.required and item.queue != SUPERVISOR_QUEUE:
            return Outcome("escalated", reason=f"not found (a required field): {note}", audit=audit)
        return Outcome("rejected", decision={"not_found": True, "note": note}, reason=note, audit=audit,
                       changed=source.proposed is not None)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


register(CandidatesKind())
