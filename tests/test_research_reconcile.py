"""bpo.research.reconcile: truth discovery over generated candidates (no services)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bpo.normalizers.phone import library_e164
from bpo.research.brief import Brief
from bpo.research.model import Candidate, Citation
from bpo.research.reconcile import ReconcileError, Settings, majority_vote, reconcile

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def cand(subject: str, field: str, value: str, source: str, *, normalized: str | None = None,
         when: datetime = T0) -> Candidate:
    return Candidate(subject, field, value, normalized, "table",
                     Citation(source, f"https://{source}.test/{subject}", "table > tr:nth-child(2) > td", value, when))


def brief(subjects: int, sources: dict[str, float | None], fields: dict[str, bool] | None = None,
          min_confidence: float = 0.8) -> Brief:
    return Brief.model_validate({
        "name": "t", "subjects": [{"id": f"s{i:03d}", "name": f"Subject {i}"} for i in range(subjects)],
        "fields": {name: {"type": "text", "required": required}
                   for name, required in (fields or {"phone": True}).items()},
        "sources": [{"name": name, "kind": "corpus", "path": "/tmp", **({"trust": t} if t else {})}
                    for name, t in sources.items()],
        "review": {"min_confidence": min_confidence}})


def test_reliable_sources_outvote_an_unreliable_one_whatever_its_configured_trust() -> None:
    rng = random.Random(3)
    candidates = []
    for i in range(30):
        subject = f"s{i:03d}"
        candidates += [cand(subject, "phone", f"+4420794600{i:02d}", s) for s in ("a", "b", "c")]
        candidates.append(cand(subject, "phone", f"+4420{rng.randrange(10**8):08d}", "u"))
    the_brief = brief(30, {"a": None, "b": None, "c": None, "u": 0.9})

    result = reconcile(candidates, the_brief)

    assert [r.value for r in result.results] == [f"+4420794600{i:02d}" for i in range(30)]
    assert {r.status for r in result.results} == {"chosen"}
    assert all(r.confidence > 0.9 and len(r.groups) == 2 for r in result.results)
    assert result.trust["u"] < 0.3 < 0.9 < min(result.trust[s] for s in "abc")
    assert result.prior["u"] == 0.9 and result.converged
    rng.shuffle(candidates)
    assert reconcile(candidates, the_brief) == result  # the same answer in the same order, whatever the input order


def copying_world() -> list[Candidate]:
    """a, b, c independent and right; d and e state the same values, sometimes the same wrong ones.

    s000-s059: all five right. s060-s079: a, b, c right, d and e share a wrong value (they lose).
    s080-s099: only c reports the field, against d and e's shared wrong value.
    """
    candidates = []
    for i in range(100):
        subject, truth, wrong = f"s{i:03d}", f"true-{i}", f"wrong-{i}"
        sources = "abcde" if i < 60 else "abc" if i < 80 else "c"
        candidates += [cand(subject, "phone", truth, s) for s in sources]
        if i >= 60:
            candidates += [cand(subject, "phone", wrong, s) for s in "de"]
    return candidates


def test_two_copying_sources_do_not_outvote_an_independent_correct_one() -> None:
    candidates = copying_world()
    the_brief = brief(100, {s: None for s in "abcde"})

    result = reconcile(candidates, the_brief)
    majority = majority_vote(candidates)
    without = reconcile(candidates, the_brief, settings=Settings(detect_copying=False))

    copied = [f"s{i:03d}" for i in range(80, 100)]
    assert [result.result(s, "phone").value for s in copied] == [f"true-{i}" for i in range(80, 100)]
    assert [majority[(s, "phone")] for s in copied] == [f"wrong-{i}" for i in range(80, 100)]
    assert [without.result(s, "phone").value for s in copied] == [f"wrong-{i}" for i in range(80, 100)]
    # every field of s080-s099 still goes to review (one source against a discounted pair), with both values
    assert all(result.result(s, "phone").needs_review and len(result.result(s, "phone").groups) == 2 for s in copied)
    pairs = {d.sources: d for d in result.dependence}
    # the evidence: s060-s079, where their shared value loses even counted as two independent votes
    assert pairs[("d", "e")].probability > 0.99 and pairs[("d", "e")].shared_losing == 20
    assert all(pairs[p].probability <= 0.1 for p in [("a", "b"), ("a", "c"), ("b", "c"), ("a", "d"), ("c", "e")])
    assert result.trust["c"] > result.trust["d"]


def test_equivalent_values_in_different_formats_form_one_group() -> None:
    formats = {"a": "+44 20 7946 0958", "b": "020 7946 0958", "c": "(020) 7946-0958", "d": "0044 20 7946 0958"}
    candidates = [cand("s000", "phone", raw, s, normalized=library_e164(raw.replace("0044", "+44"), "GB"))
                  for s, raw in formats.items()]
    candidates += [cand("s000", "name", "Acme  Trading LTD", "a"), cand("s000", "name", "acme trading ltd", "b"),
                   cand("s000", "name", "Acme Trading Ltd", "c"), cand("s000", "name", "Acme Trading Ltd", "d")]

    result = reconcile(candidates, brief(1, {s: None for s in "abcd"}, {"phone": True, "name": True}))

    phone = result.result("s000", "phone")
    assert [g.key for g in phone.groups] == ["+442079460958"] and phone.value == "+442079460958"
    assert sorted(c.value for c in phone.groups[0].candidates) == sorted(formats.values())
    assert phone.groups[0].sources == ("a", "b", "c", "d") and phone.status == "chosen"
    name = result.result("s000", "name")
    assert [g.key for g in name.groups] == ["acme trading ltd"]
    assert name.value == "Acme Trading Ltd"  # the raw form most sources use
    assert len(name.groups[0].candidates) == 4
    # normalized values that differ only in case (an organisation keeps its casing) are one group too
    upper = [cand("s000", "name", v, s, normalized=v) for s, v in (("a", "ACME LTD"), ("b", "Acme Ltd"),
                                                                   ("c", "Acme Ltd"))]
    org = reconcile(upper, brief(1, {s: None for s in "abc"}, {"name": True})).result("s000", "name")
    assert [g.key for g in org.groups] == ["acme ltd"] and org.value == "Acme Ltd"


@pytest.mark.parametrize("later", ["a", "b"])
def test_recency_breaks_an_exact_tie(later: str) -> None:
    earlier = "b" if later == "a" else "a"
    candidates = [cand("s000", "phone", f"value-{later}", later, when=T0 + timedelta(days=3)),
                  cand("s000", "phone", f"value-{earlier}", earlier, when=T0)]

    result = reconcile(candidates, brief(1, {"a": None, "b": None})).result("s000", "phone")

    assert result.groups[0].confidence == result.groups[1].confidence
    assert result.value == f"value-{later}"
    assert result.status == "conflict" and [len(g.candidates) for g in result.groups] == [1, 1]


def test_a_close_runner_up_is_a_conflict_with_every_candidate_kept() -> None:
    candidates = [cand("s000", "phone", "111", "a"), cand("s000", "phone", "222", "b"),
                  cand("s000", "phone", "222", "b", when=T0 - timedelta(days=1)), cand("s000", "phone", "333", "c")]

    result = reconcile(candidates, brief(1, {"a": 0.8, "b": 0.7, "c": 0.2})).result("s000", "phone")

    assert result.status == "conflict" and result.value == "111" and result.needs_review
    assert [g.value for g in result.groups] == ["111", "222", "333"]
    assert [len(g.candidates) for g in result.groups] == [1, 2, 1]
    assert result.groups[1].confidence >= 0.5 * result.groups[0].confidence


def test_missing_and_low_confidence_fields() -> None:
    candidates = [cand("s000", "phone", "111", s) for s in "abc"] + [cand("s001", "fax", "999", "a")]

    result = reconcile(candidates, brief(2, {s: None for s in "abc"}, {"phone": True, "fax": False}))

    missing = result.result("s001", "phone")
    assert (missing.status, missing.value, missing.confidence, missing.groups) == ("missing", None, 0.0, ())
    assert missing.needs_review
    optional = result.result("s000", "fax")
    assert optional.status == "missing" and not optional.needs_review
    single = result.result("s001", "fax")  # one source of the default trust 0.6
    assert single.status == "low_confidence" and single.value == "999" and single.confidence < 0.8
    assert result.result("s000", "phone").status == "chosen"
    assert [(r.subject_id, r.field) for r in result.to_review()] == [("s001", "fax"), ("s001", "phone")]
    assert [(r.subject_id, r.field) for r in result.results] == [("s000", "fax"), ("s000", "phone"),
                                                                 ("s001", "fax"), ("s001", "phone")]


@pytest.mark.parametrize(("trust_a", "trust_b", "winner"), [(0.9, 0.5, "from-a"), (0.5, 0.9, "from-b")])
def test_the_configured_trust_decides_when_evidence_is_thin(trust_a: float, trust_b: float, winner: str) -> None:
    candidates = [cand("s000", "phone", "from-a", "a"), cand("s000", "phone", "from-b", "b")]

    result = reconcile(candidates, brief(1, {"a": trust_a, "b": trust_b})).result("s000", "phone")

    assert result.value == winner


def test_a_typed_value_that_could_not_be_normalized_is_weak_evidence() -> None:
    the_brief = brief(1, {"a": None, "b": None}, {"phone": True, "note": False})
    the_brief.fields["phone"].type = "phone"
    phones = [cand("s000", "phone", "+44 20 7946 0958", "a", normalized="+442079460958"),
              cand("s000", "phone", "call 0800 FLOWERS", "b")]
    notes = [cand("s000", "note", "Closed Mondays", "a", normalized="closed mondays"),
             cand("s000", "note", "open daily", "b")]

    phone = reconcile(phones, the_brief).result("s000", "phone")
    note = reconcile(notes, the_brief).result("s000", "note")

    assert phone.value == "+442079460958" and phone.groups[0].support > 1.5 * phone.groups[1].support
    assert note.groups[0].support == note.groups[1].support  # free text: normalized or not, a full statement


def test_candidates_outside_the_brief_are_refused_with_the_reason() -> None:
    candidates = [cand("s000", "phone", "111", "nowhere"), cand("secret-id", "colour", "red", "a")]

    with pytest.raises(ReconcileError) as error:
        reconcile(candidates, brief(1, {"a": None}))

    message = str(error.value)
    assert "sources not in the brief: ['nowhere']" in message and "fields not in the brief: ['colour']" in message
    assert "1 subject id(s) not in the brief" in message and "secret-id" not in message


def test_two_good_sources_outvoted_together_are_not_taken_for_copies() -> None:
    """Weak sources that err alike (few wrong values to choose from) at first outvote the two good ones
    on some fields; that must not make the good pair look like copiers, while a real copier is found."""
    rng = random.Random(11)
    accuracy = {"good1": 0.99, "good2": 0.99, "fair": 0.8, "weak1": 0.6, "weak2": 0.6}
    candidates = []
    for i in range(200):
        for field in ("phone", "email", "founded", "city"):
            stated = {s: f"true-{i}" if rng.random() < a else f"wrong{rng.randrange(3)}-{i}"
                      for s, a in accuracy.items() if rng.random() < 0.85}
            if "weak1" in stated and rng.random() < 0.95:
                stated["copier"] = stated["weak1"]
            candidates += [cand(f"s{i:03d}", field, v, s) for s, v in stated.items()]
    the_brief = brief(200, {s: None for s in [*accuracy, "copier"]},
                      {f: True for f in ("phone", "email", "founded", "city")})

    result = reconcile(candidates, the_brief)

    pairs = {d.sources: d.probability for d in result.dependence}
    assert pairs[("good1", "good2")] < 0.5
    assert pairs[("copier", "weak1")] > 0.99
    right = sum(r.value == f"true-{int(r.subject_id[1:])}" for r in result.results)
    majority = majority_vote(candidates)
    assert right > sum(v == f"true-{int(s[1:])}" for (s, _), v in majority.items())


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="0 < dampening ≤ 1, 0 ≤ copy_rate < 1"):
        Settings(dampening=0, copy_rate=1.0)
