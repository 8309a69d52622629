"""Reconcile: one value per subject and field from every source's candidates, by learned source trust.

Truth discovery in the manner of TruthFinder (Yin, Han & Yu 2007): a value's confidence comes from
the trust of the sources that state it, a source's trust from the confidence of the values it
states, iterated across *all* subjects until the trust vector settles. The details follow the
Bayesian form of Dong, Berti-Equille & Srivastava 2009 ("Integrating conflicting data: the role of
source dependence"), which also discounts sources that copy one another:

- a source of trust ``t`` casts the vote ``ln(n·t / (1 − t))`` for what it states (``n``: the
  number of wrong values a field could plausibly take); a value's confidence is its share of
  ``exp(γ · votes)`` among the values stated for the field plus the ``n + 1 − m`` values no source
  stated, so a lone source is worth a little less than its trust and agreement compounds. ``γ`` is
  TruthFinder's dampening factor: sources are never quite independent, even after discounting copies.
- a source's trust is the mean confidence of the values it states, with the brief's configured
  trust as a prior worth ``prior_weight`` statements: with little evidence the prior decides.
- two sources that agree on values that lose (stated wrongly, by both) far more often than chance
  would have them do are probably copying one another; each pair's probability of dependence is a
  Bayes factor over the fields both cover (agreeing on a losing value: evidence for; stating
  different values: evidence against; agreeing on a winning value is ignored — two good independent
  sources do that all the time). A shared value counts as losing only if it would lose even with the
  pair's own discount undone, so that a discount cannot become its own evidence. The later (less
  trusted) of two dependent sources stating the same value has its vote scaled by ``1 − c · P(dependent)``.
- a value of a typed field that could not be normalized counts as half a statement: weak evidence.
- equal confidences are broken by recency (the latest ``retrieved_at`` of a group's citations),
  then by the value itself: the output is the same for the same input, in sorted order.

Pure Python and NumPy: no Prefect, no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from bpo.research.brief import Brief
from bpo.research.model import Candidate

Status = Literal["chosen", "conflict", "low_confidence", "missing"]
Key = tuple[str, str]  # (subject_id, field)

_TRUST_FLOOR, _TRUST_CEILING = 0.01, 0.99  # a vote of ±infinity would freeze the iteration


class ReconcileError(ValueError):
    """Candidates that do not fit the brief (an unknown source, field or subject)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The method's constants; the defaults are the ones the tests and the benchmark use."""

    false_values: int = 10  # n: plausible wrong values per field, the chance that two sources err alike
    dampening: float = 0.8  # γ
    prior_weight: float = 5.0  # how many statements the configured trust counts for
    copy_rate: float = 0.8  # c: how much a dependent source copies
    copy_prior: float = 0.1  # P(two sources are dependent) before any evidence
    detect_copying: bool = True
    # a value of a typed field (phone, date …) that its normalizer could not read is weak evidence: it
    # counts this much of a statement (the extraction may have read the wrong text)
    unnormalized_weight: float = 0.5
    conflict_ratio: float = 0.5  # a runner-up with at least this share of the winner's confidence: conflict
    tolerance: float = 1e-5
    max_iterations: int = 100

    def __post_init__(self) -> None:
        checks = {"false_values ≥ 1": self.false_values >= 1, "0 < dampening ≤ 1": 0 < self.dampening <= 1,
                  "prior_weight ≥ 0": self.prior_weight >= 0, "0 ≤ copy_rate < 1": 0 <= self.copy_rate < 1,
                  "0 < copy_prior < 1": 0 < self.copy_prior < 1,
                  "0 < unnormalized_weight ≤ 1": 0 < self.unnormalized_weight <= 1,
                  "0 < conflict_ratio ≤ 1": 0 < self.conflict_ratio <= 1, "tolerance > 0": self.tolerance > 0,
                  "max_iterations ≥ 1": self.max_iterations >= 1}
        wrong = [rule for rule, ok in checks.items() if not ok]
        if wrong:
            raise ValueError("reconcile settings must have " + ", ".join(wrong))


@dataclasses.dataclass(frozen=True)
class ValueGroup:
    """Equivalent candidate values of one field (one after normalization), with who states them."""

    key: str
    value: str  # the normalized value when there is one, else the raw form most candidates use
    candidates: tuple[Candidate, ...]
    sources: tuple[str, ...]
    support: float  # the sources' votes, copies discounted
    confidence: float  # the probability that this is the true value
    latest: datetime | None  # the latest retrieval among its citations


@dataclasses.dataclass(frozen=True)
class FieldResult:
    """One subject's field: the value chosen and every value that was stated, best first."""

    subject_id: str
    field: str
    status: Status
    value: str | None
    confidence: float
    required: bool
    groups: tuple[ValueGroup, ...]

    @property
    def needs_review(self) -> bool:
        """Conflicts, low confidence and missing required values go to an agent."""
        return self.status in ("conflict", "low_confidence") or (self.status == "missing" and self.required)


@dataclasses.dataclass(frozen=True)
class Dependence:
    """How likely two sources copy one another, and the evidence for it."""

    sources: tuple[str, str]
    probability: float
    shared_losing: int  # fields where both state the same value, and it lost
    differing: int  # fields both cover where they state different values
    overlap: int  # fields both cover


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    """Every subject's every field of the brief, sorted by subject and field, and what was learned."""

    results: tuple[FieldResult, ...]
    trust: dict[str, float]  # learned, per source
    prior: dict[str, float]  # configured, per source
    dependence: tuple[Dependence, ...]  # every pair of sources that share a field, sorted
    iterations: int
    converged: bool

    @functools.cached_property
    def _index(self) -> dict[Key, FieldResult]:
        return {(r.subject_id, r.field): r for r in self.results}

    def result(self, subject_id: str, field: str) -> FieldResult:
        try:
            return self._index[(subject_id, field)]
        except KeyError:
            raise KeyError(f"no result for field {field!r} of subject {subject_id!r}") from None

    def to_review(self) -> tuple[FieldResult, ...]:
        """The results an agent must settle: conflicts, low confidence, missing required values."""
        return tuple(r for r in self.results if r.needs_review)


def group_key(candidate: Candidate) -> str:
    """What makes two candidate values one: the normalized value, else the space-collapsed text — casefolded
    either way, so "ACME LTD" and "Acme Ltd" (organisations keep their casing when normalized) are one."""
    text = candidate.normalized if candidate.normalized is not None else " ".join(candidate.value.split())
    return text.casefold()


def _groups(candidates: Iterable[Candidate]) -> dict[Key, dict[str, list[Candidate]]]:
    """Candidates by (subject, field), then by group key; blank values are no candidates."""
    grouped: dict[Key, dict[str, list[Candidate]]] = defaultdict(lambda: defaultdict(list))
    for c in candidates:
        key = group_key(c)
        if key:
            grouped[(c.subject_id, c.field)][key].append(c)
    return grouped


def _display(members: list[Candidate]) -> str:
    """A group's value as published: its commonest normalized form, else its commonest raw form (then the
    first in order)."""
    forms = ([c.normalized for c in members if c.normalized is not None]
             or [" ".join(c.value.split()) for c in members])
    if len(set(forms)) == 1:
        return forms[0]
    counts = Counter(forms)
    return min(counts, key=lambda v: (-counts[v], v))


def _sorted(members: list[Candidate]) -> tuple[Candidate, ...]:
    return tuple(sorted(members, key=lambda c: (c.citation.source, c.citation.location, c.citation.where, c.value,
                                                c.method, _utc(c.citation.retrieved_at))))


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def majority_vote(candidates: Iterable[Candidate]) -> dict[Key, str | None]:
    """The baseline: per (subject, field), the group stated by the most sources; ties go to the smallest key."""
    chosen: dict[Key, str | None] = {}
    for item, groups in sorted(_groups(candidates).items()):
        best = min(groups, key=lambda k: (-len({c.citation.source for c in groups[k]}), k))
        chosen[item] = _display(groups[best])
    return chosen


def _check(candidates: list[Candidate], brief: Brief) -> None:
    sources = {s.name for s in brief.sources}
    subjects = {s.id for s in brief.subjects}
    bad_sources = sorted({c.citation.source for c in candidates} - sources)
    bad_fields = sorted({c.field for c in candidates} - set(brief.fields))
    bad_subjects = {c.subject_id for c in candidates} - subjects
    problems = []
    if bad_sources:
        problems.append(f"sources not in the brief: {bad_sources}")
    if bad_fields:
        problems.append(f"fields not in the brief: {bad_fields}")
    if bad_subjects:  # ids only counted: they may carry a client's identifiers
        problems.append(f"{len(bad_subjects)} subject id(s) not in the brief")
    if problems:
        raise ReconcileError("candidates do not fit the brief: " + "; ".join(problems))


def reconcile(candidates: Iterable[Candidate], brief: Brief, *, settings: Settings = Settings()) -> Reconciliation:
    """Choose a value for every subject and field of ``brief`` from ``candidates``, learning source trust."""
    candidates = list(candidates)
    _check(candidates, brief)
    s = settings
    names = sorted(source.name for source in brief.sources)
    prior = np.array([next(x.trust for x in brief.sources if x.name == n) for n in names])
    column = {n: j for j, n in enumerate(names)}
    grouped = _groups(candidates)

    # one row per (item, group), items in order, so an item's groups are one contiguous run of rows
    items = sorted(grouped)
    rows: list[tuple[Key, str]] = [(item, key) for item in items for key in sorted(grouped[item])]
    n_rows, n_sources = len(rows), len(names)
    starts = np.zeros(len(items), dtype=np.int64)
    item_of = np.zeros(n_rows, dtype=np.int64)
    weight = np.zeros((n_rows, n_sources))  # a source's statement, split when it states several values of one item
    g = 0
    for i, item in enumerate(items):
        starts[i] = g
        stated: dict[str, set[str]] = defaultdict(set)
        for key in sorted(grouped[item]):
            for c in grouped[item][key]:
                stated[c.citation.source].add(key)
        typed = brief.fields[item[1]].type != "text"  # a field whose values the extraction normalizes
        for key in sorted(grouped[item]):
            item_of[g] = i
            normalized: dict[str, bool] = defaultdict(bool)
            for c in grouped[item][key]:
                normalized[c.citation.source] |= c.normalized is not None
            for source, ok in normalized.items():
                weak = s.unnormalized_weight if typed and not ok else 1.0
                weight[g, column[source]] = weak / len(stated[source])
            g += 1
    states = (weight > 0).astype(float)
    n_values = np.diff(np.append(starts, n_rows)) if n_rows else np.zeros(0, dtype=np.int64)
    unstated = np.maximum(s.false_values + 1 - n_values, 0).astype(float)

    trust = prior.copy()
    dependence = np.zeros((n_sources, n_sources))
    confidence = np.zeros(n_rows)
    votes = np.zeros(n_rows)
    evidence = _Evidence.empty(n_sources)
    iterations, converged = 0, n_rows == 0
    while n_rows and iterations < s.max_iterations:
        iterations += 1
        votes, contribution, rank = _votes(weight, states, trust, dependence, names, s)
        confidence = _confidence(votes, starts, unstated, s.dampening)
        new_trust = np.clip((s.prior_weight * prior + weight.T @ confidence) / (s.prior_weight + weight.sum(axis=0)),
                            _TRUST_FLOOR, _TRUST_CEILING)
        new_dependence = dependence
        if s.detect_copying:
            evidence = _Evidence.of(states, votes, contribution, rank, dependence, starts, item_of, s)
            new_dependence = evidence.probability(new_trust, s)
        settled = max(np.abs(new_trust - trust).max(initial=0), np.abs(new_dependence - dependence).max(initial=0))
        trust, dependence = new_trust, new_dependence
        if settled < s.tolerance:
            converged = True
            break

    results = _results(brief, grouped, rows, votes, confidence, s)
    pairs = tuple(Dependence(sources=(names[a], names[b]), probability=round(float(dependence[a, b]), 6),
                             shared_losing=int(evidence.losing[a, b]), differing=int(evidence.differing[a, b]),
                             overlap=int(evidence.overlap[a, b]))
                  for a in range(n_sources) for b in range(a + 1, n_sources) if evidence.overlap[a, b] > 0)
    return Reconciliation(results=results, trust={n: round(float(t), 6) for n, t in zip(names, trust, strict=True)},
                          prior={n: float(p) for n, p in zip(names, prior, strict=True)}, dependence=pairs,
                          iterations=iterations, converged=converged)


def _votes(weight: np.ndarray, states: np.ndarray, trust: np.ndarray, dependence: np.ndarray, names: list[str],
           s: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's votes, each source's part in them and the sources' ranks.

    Trusted sources count first; a later one is discounted for each earlier one stating the same value
    that it may copy.
    """
    score = np.log(s.false_values * trust / (1 - trust))
    order = sorted(range(len(names)), key=lambda j: (-trust[j], names[j]))
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    earlier = rank[:, None] < rank[None, :]  # earlier[j, k]: j counts before k
    discount = np.where(earlier, np.log1p(-s.copy_rate * dependence), 0.0)
    independent = np.exp(states @ discount)  # [group, k]: the product over earlier sources j that state it too
    contribution = weight * independent * score
    return contribution.sum(axis=1), contribution, rank


def _confidence(votes: np.ndarray, starts: np.ndarray, unstated: np.ndarray, dampening: float) -> np.ndarray:
    """Each group's share of its item: exp(γ·votes) over the item's groups and its unstated values (vote 0)."""
    x = dampening * votes
    peak = np.maximum(np.maximum.reduceat(x, starts), 0.0)
    counts = np.diff(np.append(starts, len(x)))
    shifted = np.exp(x - np.repeat(peak, counts))
    total = np.add.reduceat(shifted, starts) + unstated * np.exp(-peak)
    return shifted / np.repeat(total, counts)


@dataclasses.dataclass(frozen=True)
class _Evidence:
    """Counts per pair of sources over the items both cover."""

    losing: np.ndarray  # both state the same value and it is not the item's best
    differing: np.ndarray
    overlap: np.ndarray

    @classmethod
    def empty(cls, n: int) -> _Evidence:
        zero = np.zeros((n, n))
        return cls(zero, zero, zero)

    @classmethod
    def of(cls, states: np.ndarray, votes: np.ndarray, contribution: np.ndarray, rank: np.ndarray,
           dependence: np.ndarray, starts: np.ndarray, item_of: np.ndarray, s: Settings) -> _Evidence:
        """The counts, a shared value judged losing as if the two sources were independent.

        Judged with the pair's own discount in place, two good sources once outvoted together would
        be discounted, so outvoted again: their discount would be its own evidence.
        """
        n = states.shape[1]
        best = np.maximum.reduceat(votes, starts)[item_of]
        losing = np.zeros((n, n))
        for j in range(n):
            for k in range(j + 1, n):
                both = (states[:, j] > 0) & (states[:, k] > 0)
                if not both.any():
                    continue
                later = k if rank[k] > rank[j] else j
                undone = contribution[both, later] * (1 / (1 - s.copy_rate * dependence[j, k]) - 1)
                losing[j, k] = losing[k, j] = np.count_nonzero(votes[both] + undone < best[both])
        covers = (np.add.reduceat(states, starts, axis=0) > 0).astype(float)
        overlap = covers.T @ covers
        agree = states.T @ states
        return cls(losing=losing, differing=np.maximum(overlap - agree, 0), overlap=overlap)

    def probability(self, trust: np.ndarray, s: Settings) -> np.ndarray:
        """P(dependent) per pair: the prior odds times a Bayes factor per losing agreement and per difference."""
        wrong = 1 - trust
        by_chance = np.outer(wrong, wrong) / s.false_values  # two independent sources state the same wrong value
        copied = s.copy_rate * (wrong[:, None] + wrong[None, :]) / 2 + (1 - s.copy_rate) * by_chance
        log_odds = (math.log(s.copy_prior / (1 - s.copy_prior)) + self.losing * np.log(copied / by_chance)
                    + self.differing * math.log(1 - s.copy_rate))
        p = 1 / (1 + np.exp(-np.clip(log_odds, -50, 50)))
        np.fill_diagonal(p, 0.0)
        return np.where(self.overlap > 0, p, 0.0)


def _results(brief: Brief, grouped: dict[Key, dict[str, list[Candidate]]], rows: list[tuple[Key, str]],
             votes: np.ndarray, confidence: np.ndarray, s: Settings) -> tuple[FieldResult, ...]:
    by_item: dict[Key, list[ValueGroup]] = defaultdict(list)
    for g, (item, key) in enumerate(rows):
        members = grouped[item][key]
        by_item[item].append(ValueGroup(
            key=key, value=_display(members), candidates=_sorted(members),
            sources=tuple(sorted({c.citation.source for c in members})), support=round(float(votes[g]), 6),
            confidence=round(float(confidence[g]), 6), latest=max(_utc(c.citation.retrieved_at) for c in members)))
    results = []
    for subject in sorted(brief.subjects, key=lambda x: x.id):
        for name in sorted(brief.fields):
            required = brief.fields[name].required
            groups = by_item.get((subject.id, name))
            if not groups:
                results.append(FieldResult(subject.id, name, "missing", None, 0.0, required, ()))
                continue
            # rounded confidences tie exactly where the arithmetic differs only in its last bits
            ordered = tuple(sorted(groups, key=lambda v: (-v.confidence, -(v.latest or _EPOCH).timestamp(), v.key)))
            best = ordered[0]
            status: Status = "chosen"
            if len(ordered) > 1 and ordered[1].confidence >= s.conflict_ratio * best.confidence:
                status = "conflict"
            elif best.confidence < brief.review.min_confidence:
                status = "low_confidence"
            results.append(FieldResult(subject.id, name, status, best.value, best.confidence, required, ordered))
    return tuple(results)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
