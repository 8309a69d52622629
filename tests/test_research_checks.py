"""The deliverable's checks, run by Great Expectations: completeness, citations, formats and ranges."""

from __future__ import annotations

from datetime import UTC, datetime

from bpo.research.brief import Brief
from bpo.research.model import Citation
from bpo.research.pipeline import problems_of, validate
from bpo.research.publish import Fact

CITED = (Citation("registry", "https://registry.example/1", "td", "as stated", datetime(2026, 11, 1, tzinfo=UTC)),)


def _brief() -> Brief:
    return Brief.model_validate({
        "name": "checks", "completeness": 0.75,
        "subjects": [{"id": f"s{i}", "name": f"Company {i}"} for i in range(4)],
        "fields": {"phone": {"type": "phone", "required": True}, "website": {"type": "url"},
                   "founded": {"type": "year", "minimum": 1800, "maximum": 2100},
                   "employees": {"type": "count"}},
        "sources": [{"kind": "web", "name": "registry", "allow": ["https://registry.example/"],
                     "pages": ["https://registry.example/{id}"]}]})


def _fact(subject: str, field: str, value: str | None, cited: bool = True) -> Fact:
    return Fact(subject, subject, field, value, 0.9, "chosen", CITED if cited and value is not None else ())


def test_a_clean_deliverable_passes_and_each_fault_is_named() -> None:
    brief = _brief()
    good = [_fact(f"s{i}", f, v) for i in range(4) for f, v in
            (("phone", "+12025550100"), ("website", "https://c.example/"), ("founded", "1999"), ("employees", "12"))]
    assert problems_of(validate(brief, good)) == []
    bad = [f for f in good if not (f.subject_id in ("s0", "s1") and f.field == "phone")]  # 2 of 4 filled: < 75%
    bad += [_fact("s0", "phone", None), _fact("s1", "phone", None)]
    bad = [_fact(f.subject_id, f.field, "javascript:alert(1)") if (f.subject_id, f.field) == ("s2", "website")
           else _fact(f.subject_id, f.field, "1650") if (f.subject_id, f.field) == ("s3", "founded")
           else _fact(f.subject_id, f.field, f.value, cited=False) if (f.subject_id, f.field) == ("s1", "employees")
           else f for f in bad]
    assert sorted(problems_of(validate(brief, bad))) == [
        "employees: values without a citation (1 of 4)",
        "founded: values out of range (1 of 4)",
        "phone: filled below the completeness threshold (2 of 4)",
        "website: values not in the field's format (1 of 4)",
    ]
