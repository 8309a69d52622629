"""The ``record`` kind: a data-entry record that failed a check, approved (maybe corrected) or rejected.

A correction is normalized and validated again, as the flow would, before it is accepted.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bpo.db.models import ReviewItem
from bpo.normalizers import normalize_frame
from bpo.quality import validate_frame
from bpo.review.kinds import CorrectionRefused, Display, Outcome, ReviewError, register
from bpo.review.values import json_safe
from bpo.schema import ROW
from bpo.spec import ProcessSpec, load_spec


class RecordDecision(BaseModel):
    """Approve the proposed values (with ``set`` corrections), or reject with a reason."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    approve: bool
    sets: dict[str, str] = Field(default_factory=dict, alias="set")
    reason: str | None = None
    # an item for a repeated natural key: the record kept ("FILE:ROW"; default the last one), the others
    # are superseded; ``set`` corrections apply to the kept record's values (merged values)
    keep: str | None = None

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> RecordDecision:
        if not self.approve and not (self.reason and self.reason.strip()):
            raise ValueError("a rejection needs a reason (--reason TEXT)")
        if not self.approve and (self.sets or self.keep):
            raise ValueError("corrections (--set) and --keep go with an approval")
        return self


def revalidate(spec: ProcessSpec, values: dict[str, Any], *,
               recheck: set[str] | None = None) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Normalize and validate one record as the flow would; return accepted values and failures.

    Every field is normalized again; with ``recheck`` (``fields_to_recheck``) only the expectations on
    those fields run again: the others passed in the flow on values that have not changed since.
    """
    raw = pd.DataFrame([{name: (None if values.get(name) is None else str(values.get(name)))
                         for name in spec.fields}], dtype=object)
    normalized = normalize_frame(raw, spec)
    data = normalized.data.assign(**{ROW: [0]})
    failures = [{"field": str(r.field), "check": str(r.check), "reason": str(r.reason)}
                for r in normalized.issues.itertuples()]
    checked = validate_frame(data, spec, docs=False, columns=None if recheck is None else frozenset(recheck))
    # as in routing: a check on a value normalization could not read adds nothing to the reason given
    unread = {f["field"] for f in failures}
    failures += [{"field": str(r.field), "check": str(r.check), "reason": str(r.reason)}
                 for r in checked.failures.itertuples() if str(r.field) not in unread]
    accepted = {c: json_safe(v) for c, v in data.drop(columns=[ROW]).iloc[0].items() if not str(c).startswith("_")}
    return accepted, failures


def fields_to_recheck(item: ReviewItem, spec: ProcessSpec, sets: dict[str, str]) -> set[str]:
    """The fields whose expectations a decision must run again: those it changes, those that failed, and
    those whose normalization depends on a changed field (a postal code on its country)."""
    changed = {k for k, v in sets.items() if str(v) != str(item.proposed.get(k) if item.proposed.get(k) is not None
                                                            else "")}
    changed |= {f.name for f in spec.fields.values() if f.country_field in changed}
    return changed | {str(c.get("field")) for c in item.failed_checks}


class RecordKind:
    name: ClassVar[str] = "record"
    decision: ClassVar[type[BaseModel]] = RecordDecision

    def display(self, item: ReviewItem) -> Display:
        failed = {c["field"] for c in item.failed_checks}
        source = item.source.get("values", {})
        rows = [[name, _text(source.get(name)), _text(value), "✗" if name in failed else ""]
                for name, value in item.proposed.items()]
        checks = sorted({f"{c['field']}:{c['check'].removeprefix('expect_column_values_to_')}"
                         for c in item.failed_checks})
        notes = [f"{c['field']}: {c['reason']} ({c['check']})" for c in item.failed_checks]
        for m in item.source.get("records") or []:  # a repeated key: every record of it, to keep one
            values = ", ".join(f"{k}={_text(v)}" for k, v in (m.get("proposed") or {}).items())
            notes.append(f"record {m['file']}:{m['row']} (--keep {m['file']}:{m['row']}): {values}")
        return Display(title=item.record_key, columns=["field", "source", "proposed", ""], rows=rows,
                       notes=notes, summary=", ".join(checks) or "check the record against its source")

    def check(self, item: ReviewItem, decision: Any) -> Outcome:
        assert isinstance(decision, RecordDecision)
        # an edit is audited with the values it replaced, beside the values it set
        audit: dict[str, Any] = {"set": decision.sets, "reason": decision.reason}
        if decision.sets:
            audit["before"] = {k: item.proposed.get(k) for k in decision.sets}
        if not decision.approve:
            return Outcome("rejected", reason=decision.reason, audit=audit)
        spec = load_spec(item.process)
        unknown = sorted(set(decision.sets) - set(spec.fields))
        if unknown:
            raise ReviewError(f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(spec.fields)}")
        base, kept = item.proposed, None
        if decision.keep is not None:
            kept = _member(item, decision.keep)
            base = kept["proposed"]
            audit["keep"] = decision.keep
        # a record kept from a repeated key is another record than the proposed one: all of it is checked
        recheck = None if kept is not None else fields_to_recheck(item, spec, decision.sets)
        accepted, failures = revalidate(spec, {**base, **decision.sets}, recheck=recheck)
        if failures:
            raise CorrectionRefused(failures)
        if kept is not None:  # where the loaded record came from: the one kept, not the one proposed
            accepted[KEPT] = {"file": kept["file"], "row": kept["row"]}
        changed = kept is not None or any(str(v).strip() != str(item.proposed.get(k) or "").strip()
                                          for k, v in decision.sets.items())
        return Outcome("approved", decision=accepted, reason=decision.reason, audit=audit, changed=changed)


KEPT = "_kept"  # in an approved decision: which record of a repeated key was kept


def _member(item: ReviewItem, keep: str) -> dict[str, Any]:
    members = item.source.get("records") or []
    names = [f"{m['file']}:{m['row']}" for m in members]
    if keep not in names:
        where = f"one of {', '.join(names)}" if names else "only for an item of a repeated key"
        raise ReviewError(f"--keep names a record of the item: {where}")
    return dict(members[names.index(keep)])


def _text(value: Any) -> str:
    return "" if value is None else str(value)


register(RecordKind())
