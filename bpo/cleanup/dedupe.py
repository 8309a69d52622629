"""Record matching for a cleanup: a Splink 5 model derived from the column roles, trained without labels, on DuckDB.

Pure core: no Prefect, no S3, no client database. The input is the *match frame*: one or more local Parquet
files with a string column ``unique_id`` (the table's key as text) and one column per spec column with
``compare: true``, holding standardized values (strings or null; dates ``YYYY-MM-DD``; phones E.164; emails
lowercased). Everything runs in a DuckDB file in a temporary folder, so a table larger than memory works.

Inside the model a spec column is known by an alias named after its role (``forename``, ``surname``,
``email``, ``dob`` …, see ``aliases``), so client column names never reach Splink's SQL; each comparison's
``comparison_description`` names the spec columns it reads. The output Parquet of ``predict`` therefore has
``unique_id_l``, ``unique_id_r`` (l < r), ``match_probability``, ``match_weight``, ``<alias>_l``/``<alias>_r``
and per comparison ``gamma_<comparison>`` (its level) and ``mw_<comparison>`` (its match weight, the log2 of
its Bayes factor; Splink 5 writes these instead of ``bf_``), plus ``mw_tf_adj_<comparison>`` where term
frequencies adjust it. A comparison is named after its aliases (``forename_surname``, ``email``, ``contact``).
The SQL here is made of this module's own names and the aliases (hence the S608 waivers); the match frame's
column names are only read, quoted.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from splink import ColumnExpression, DuckDBAPI, Linker, SettingsCreator, block_on
from splink.blocking_rule_library import CustomRule
from splink.internals.blocking_rule_creator import BlockingRuleCreator
from splink.internals.comparison_creator import ComparisonCreator
from splink.internals.comparison_level_creator import ComparisonLevelCreator
from splink.internals.splink_dataframe import SplinkDataFrame

from bpo.cleanup.spec import CleanupSpec

UID = "unique_id"
INPUT_TABLE = "bpo_match_input"
# the alias of each role's first column; a second column of the same role gets a _2 suffix
ROLE_ALIAS = {
    "organisation_name": "org", "email": "email", "phone": "phone", "street_address": "street", "city": "city",
    "postal_code": "postcode", "country": "country", "date_of_birth": "dob", "free_text": "text",
    "identifier": "ident",
}
# compared together as one "contact" comparison when two or more are present
CONTACT_ROLES = ("phone", "street_address", "postal_code", "city")
FORENAME_HINTS = ("first", "given", "fore", "vorname", "prenom", "christian")
SURNAME_HINTS = ("last", "sur", "family", "nachname", "nom")
# derived from the forename and surname at load time: term frequencies of the whole name
FULL_NAME = "full_name"
# random pairs sampled for the u probabilities: about 10 s on this machine at any table size
U_MAX_PAIRS = 1e6
# a blocking rule yielding more candidate pairs than this (or PAIRS_PER_ROW per row, if more) is dropped in
# training: at 1M rows first+last name alone makes 19M pairs (2.6x the predict time) and, in bench.cleanup,
# not one merge at 0.99 that the other rules miss
PAIR_BUDGET = 5_000_000
PAIRS_PER_ROW = 10
EM_MAX_PAIRS = 2e6
# the m of a comparison level no training match showed (see _floor_unseen)
M_FLOOR = 1e-3
# the least prior used, PRIOR_FLOOR / rows: about one duplicate pair per 20 rows
PRIOR_FLOOR = 0.1
# share of true matches the deterministic rules are assumed to find, for the prior
DETERMINISTIC_RECALL = 0.7
DUCKDB_MEMORY = "3GB"

log = logging.getLogger(__name__)


class DedupeError(ValueError):
    """The match frame or the model does not fit the spec."""


@dataclass
class Clustering:
    """Clusters of matched rows.

    ``cluster_of`` maps each row merged with at least one other to its cluster's id (the smallest member id);
    rows matched with nobody are absent. ``held`` lists the clusters that would join both rows of a
    cannot-link pair through other rows: they are not merged automatically (their rows are not in
    ``cluster_of``) and go to a person.
    """

    cluster_of: dict[str, str] = field(default_factory=dict)
    held: list[set[str]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- aliases


def aliases(spec: CleanupSpec, columns: Sequence[str]) -> dict[str, str]:
    """Spec column -> the alias the model knows it by, for the compared columns among ``columns``."""
    compared = [c for c in spec.columns if spec.columns[c].compare and c in columns]
    unknown = [c for c in columns if c not in spec.columns]
    if unknown:
        raise DedupeError(f"match frame columns {unknown} are not columns of spec {spec.name!r}")
    not_compared = [c for c in columns if not spec.columns[c].compare]
    if not_compared:
        raise DedupeError(f"match frame columns {not_compared} are compare: false in spec {spec.name!r}")
    if not compared:
        raise DedupeError("the match frame has no compared column")
    out: dict[str, str] = {}
    names = [c for c in compared if spec.columns[c].role == "person_name"]
    if len(names) >= 2:
        fore = next((c for c in names if any(h in c.lower() for h in FORENAME_HINTS)), None)
        sur = next((c for c in names if c != fore and any(h in c.lower() for h in SURNAME_HINTS)), None)
        # without hints the spec's order decides: given name first, as most tables are laid out
        fore = fore or next(c for c in names if c != sur)
        sur = sur or next(c for c in names if c != fore)
        out[fore], out[sur] = "forename", "surname"
    taken: dict[str, int] = {}
    for c in compared:
        if c in out:
            continue
        role = spec.columns[c].role
        base = "name" if role == "person_name" else ROLE_ALIAS[role]
        taken[base] = taken.get(base, 0) + 1
        out[c] = base if taken[base] == 1 else f"{base}_{taken[base]}"
    return out


# ---------------------------------------------------------------------------------------------- settings


def _comparisons(kinds: dict[str, str]) -> list[tuple[ComparisonCreator, list[str]]]:
    """(comparison, aliases it reads) per compared alias; ``kinds`` maps alias -> role."""
    out: list[tuple[ComparisonCreator, list[str]]] = []
    done: set[str] = set()
    if "forename" in kinds and "surname" in kinds:
        out.append((_names_comparison(), ["forename", "surname"]))
        done |= {"forename", "surname"}
    contact = [a for a in kinds if kinds[a] in CONTACT_ROLES]
    if len(contact) >= 2:
        out.append((_contact_comparison(kinds, contact), contact))
        done |= set(contact)
    for alias, role in kinds.items():
        if alias in done:
            continue
        comparison: ComparisonCreator
        if role == "person_name":
            comparison = cl.NameComparison(alias)
        elif role == "organisation_name":
            comparison = cl.CustomComparison(output_column_name=alias, comparison_levels=[
                cll.NullLevel(alias),
                cll.ExactMatchLevel(alias).configure(tf_adjustment_column=alias),
                cll.JaroWinklerLevel(alias, 0.95),
                cll.JaccardLevel(alias, 0.8),
                cll.JaroWinklerLevel(alias, 0.88),
                cll.ElseLevel(),
            ])
        elif role == "email":
            # Splink's EmailComparison without its Jaro-Winkler levels: addresses made of a name are alike
            # whenever the names are, which the name comparison already counted (a father and son at one
            # address share most of an email address and nothing else that matters)
            username = ColumnExpression(alias).regex_extract(cl.EmailComparison.USERNAME_REGEX)
            comparison = cl.CustomComparison(output_column_name=alias, comparison_levels=[
                cll.NullLevel(alias),
                cll.ExactMatchLevel(alias).configure(tf_adjustment_column=alias),
                cll.ExactMatchLevel(username).configure(label_for_charts="Exact match on username"),
                cll.ElseLevel(),
            ])
        elif role in ("phone", "identifier"):
            # a one-key slip (a swapped pair of digits) is still strong evidence for a long number
            comparison = cl.DamerauLevenshteinAtThresholds(alias, [1])
        elif role == "date_of_birth":
            comparison = cl.DateOfBirthComparison(alias, input_is_string=True, datetime_format="%Y-%m-%d",
                                                  datetime_thresholds=[1, 1], datetime_metrics=["month", "year"])
        elif role == "postal_code":
            comparison = cl.CustomComparison(output_column_name=alias, comparison_levels=[
                cll.NullLevel(alias),
                cll.ExactMatchLevel(alias).configure(tf_adjustment_column=alias),
                cll.LevenshteinLevel(alias, 1),
                cll.ElseLevel(),
            ])
        elif role in ("street_address", "free_text"):
            comparison = cl.JaroWinklerAtThresholds(alias, [0.95, 0.85])
        elif role in ("city", "country"):
            comparison = cl.ExactMatch(alias).configure(term_frequency_adjustments=True)
        else:  # pragma: no cover - every role is handled above
            raise DedupeError(f"no comparison for role {role!r}")
        out.append((comparison, [alias]))
    return out


SWAPPED = ("forename=surname", "surname=forename")  # the key of the swapped-name rule


def _names_comparison() -> ComparisonCreator:
    """Given and family name together, as Splink's ForenameSurnameComparison, plus swapped names with a slip."""
    jw = "jaro_winkler_similarity"
    levels: list[ComparisonLevelCreator | dict[str, Any]] = [
        cll.And(cll.NullLevel("forename"), cll.NullLevel("surname")),
        cll.ExactMatchLevel(FULL_NAME).configure(tf_adjustment_column=FULL_NAME),
        cll.ColumnsReversedLevel("forename", "surname", symmetrical=True),
        cll.And(cll.JaroWinklerLevel("forename", 0.92), cll.JaroWinklerLevel("surname", 0.92)),
        cll.And(cll.JaroWinklerLevel("forename", 0.88), cll.JaroWinklerLevel("surname", 0.88)),
        cll.CustomLevel(f'{jw}("forename_l", "surname_r") >= 0.88 AND {jw}("surname_l", "forename_r") >= 0.88',
                        label_for_charts="Names swapped, Jaro-Winkler >= 0.88 on both"),
        # one name alike and the other not: no frequency adjustment here — a rare surname shared with another
        # given name is a relative more often than the same person (the full name carries it when both agree)
        cll.ExactMatchLevel("surname"),
        cll.ExactMatchLevel("forename"),
        cll.ElseLevel(),
    ]
    return cl.CustomComparison(comparison_levels=levels, output_column_name="forename_surname")


def _contact_comparison(kinds: dict[str, str], contact: list[str]) -> ComparisonCreator:
    """Phone and address as one comparison: they agree together for people sharing a home or an office.

    Scored apart, a shared landline, street, postcode and city would count four times over and merge two
    members of a household; as one comparison they count once, and a person decides the rest.
    """
    def first(role: str) -> str | None:
        return next((a for a in contact if kinds[a] == role), None)

    phone, street, postcode, city = (first(r) for r in ("phone", "street_address", "postal_code", "city"))
    # the address agrees: the street and the finest of postcode and city present, or what there is of them
    place = [a for a in (street, postcode or city) if a] or [a for a in (postcode, city) if a]
    address = cll.And(*(cll.ExactMatchLevel(a) for a in place)) if place else None
    levels: list[ComparisonLevelCreator | dict[str, Any]] = [cll.And(*(cll.NullLevel(a) for a in contact))]
    if phone and address is not None:
        levels.append(cll.And(cll.ExactMatchLevel(phone), address).configure(
            label_for_charts="Same phone and address"))
    if address is not None:
        levels.append(cll.And(*(cll.ExactMatchLevel(a) for a in place)).configure(label_for_charts="Same address"))
    if phone:
        levels.append(cll.ExactMatchLevel(phone).configure(label_for_charts="Same phone"))
    if street and (postcode or city):
        area = postcode or city or ""
        levels.append(cll.And(cll.JaroWinklerLevel(street, 0.9), cll.ExactMatchLevel(area)).configure(
            label_for_charts="Similar street, same postcode" if postcode else "Similar street, same city"))
    if postcode:
        levels.append(cll.ExactMatchLevel(postcode).configure(label_for_charts="Same postcode"))
    if city and (city not in place or len(place) > 1):
        levels.append(cll.ExactMatchLevel(city).configure(label_for_charts="Same city"))
    levels.append(cll.ElseLevel())
    return cl.CustomComparison(comparison_levels=levels, output_column_name="contact")


def _blocking_keys(kinds: dict[str, str]) -> list[tuple[str, ...]]:
    """Candidate-pair rules as the expressions both rows must share, from the strongest keys present."""
    has = set(kinds)
    keys: list[tuple[str, ...]] = []

    def add(*exprs: str) -> None:
        if all(re.sub(r"^substr\((\w+), 1, \d\)$", r"\1", e) in has for e in exprs):
            keys.append(exprs)

    for alias, role in kinds.items():
        if role in ("email", "phone", "identifier"):
            add(alias)
    add("forename", "surname")
    if {"forename", "surname"} <= has:
        keys.append(SWAPPED)
    add("surname", "dob")
    add("forename", "dob")
    add("name", "dob")
    add("name")
    add("dob", "postcode")
    add("postcode", "substr(surname, 1, 1)")
    add("postcode", "substr(name, 1, 1)")
    add("street", "postcode")
    add("street", "city")
    add("org")
    add("org", "postcode")
    add("postcode", "substr(org, 1, 1)")
    add("city", "substr(org, 1, 3)")
    # no strong key: every compared column on its own
    return keys or [(a,) for a in kinds]


def _rule(key: tuple[str, ...]) -> BlockingRuleCreator:
    if key == SWAPPED:
        return CustomRule("l.forename = r.surname AND l.surname = r.forename")
    return block_on(*key)


def _deterministic_rules(kinds: dict[str, str]) -> list[str | BlockingRuleCreator]:
    """Rules that admit almost no false positive: the prior is estimated from the pairs they find."""
    has = set(kinds)
    candidates = [("forename", "surname", "dob"), ("email", "surname"), ("email", "forename"),
                  ("phone", "surname"), ("phone", "forename"), ("name", "dob"), ("email", "name"),
                  ("org", "postcode"), ("org", "city"), ("org", "street"), ("ident",), ("email", "dob")]
    rules: list[str | BlockingRuleCreator] = [block_on(*c) for c in candidates if set(c) <= has]
    return rules or [block_on(*kinds)]


def _em_rules(kinds: dict[str, str], comparisons: list[tuple[ComparisonCreator, list[str]]]) -> list[tuple[str, ...]]:
    """EM blocking rules, chosen so every comparison is estimated by at least one (one that doesn't block on it).

    Combinations of strong keys come first: their pairs are nearly all true matches, so EM learns what a
    match looks like without mistaking look-alikes (a household sharing address and phone, namesakes
    sharing a common name) for the matching class.
    """
    has = set(kinds)
    candidates = [("forename", "surname", "dob"), ("email", "phone"), ("email", "dob"), ("phone", "dob"),
                  ("name", "dob"), ("forename", "surname", "postcode"), ("org", "postcode"), ("org", "city"),
                  ("ident",), ("email",), ("phone",), ("forename", "surname"), ("name",), ("org",),
                  ("dob", "postcode"), ("dob",), ("postcode",), ("street",), ("city",)]
    chosen: list[tuple[str, ...]] = []
    estimated: set[int] = set()
    for cand in candidates:
        if not set(cand) <= has:
            continue
        free = {i for i, (_c, cols) in enumerate(comparisons) if not set(cols) & set(cand)}
        if free - estimated:
            chosen.append(cand)
            estimated |= free
        if len(estimated) == len(comparisons):
            break
    return chosen


def _kinds(spec: CleanupSpec, columns: Sequence[str]) -> dict[str, str]:
    return {alias: spec.columns[col].role for col, alias in aliases(spec, columns).items()}


def model_settings(spec: CleanupSpec, columns: list[str]) -> dict[str, Any]:
    """The Splink settings (dedupe_only, DuckDB) for the compared ``columns``, derived from their roles."""
    kinds = _kinds(spec, columns)
    by_alias = {alias: col for col, alias in aliases(spec, columns).items()}
    comparisons = _comparisons(kinds)
    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UID,
        comparisons=[c for c, _ in comparisons],
        blocking_rules_to_generate_predictions=[_rule(k) for k in _blocking_keys(kinds)],
        retain_matching_columns=True,
        retain_intermediate_calculation_columns=True,
        max_iterations=20,
    )
    settings = creator.create_settings_dict("duckdb")
    for comparison, (_c, cols) in zip(settings["comparisons"], comparisons, strict=True):
        comparison["comparison_description"] = ", ".join(by_alias[a] for a in cols)
    return settings


# ---------------------------------------------------------------------------------------------- loading


@contextmanager
def _duckdb() -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB database in a temporary folder, spilling to disk there; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bpo-dedupe-") as tmp:
        con = duckdb.connect(str(Path(tmp) / "match.duckdb"))
        try:
            _run(con, "SET memory_limit = ?", [DUCKDB_MEMORY])
            _run(con, "SET temp_directory = ?", [str(Path(tmp) / "spill")])
            _run(con, "SET preserve_insertion_order = false")
            yield con
        finally:
            con.close()


def _frame_columns(con: duckdb.DuckDBPyConnection, paths: Sequence[Path]) -> list[str]:
    if not paths:
        raise DedupeError("no match-frame file given")
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise DedupeError(f"match-frame files not found: {missing}")
    names = con.read_parquet([str(p) for p in paths]).columns
    if UID not in names:
        raise DedupeError(f"the match frame has no {UID!r} column")
    return [n for n in names if n != UID]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _load(con: duckdb.DuckDBPyConnection, spec: CleanupSpec, paths: Sequence[Path], table: str,
          columns: Sequence[str] | None = None) -> list[str]:
    """Copy the match frame into ``table`` under the model's aliases; returns the spec columns it holds."""
    found = _frame_columns(con, paths)
    if columns is not None and sorted(found) != sorted(columns):
        raise DedupeError(f"the match frame's columns {sorted(found)} are not the model's {sorted(columns)}")
    alias = aliases(spec, found)
    parts = [f"CAST({_quote(UID)} AS VARCHAR) AS {UID}"]
    # blank strings are missing values, not a shared value
    value = {a: f"NULLIF(TRIM(CAST({_quote(col)} AS VARCHAR)), '')" for col, a in alias.items()}
    parts += [f"{expr} AS {a}" for a, expr in value.items()]
    if "forename" in value and "surname" in value:
        # NULL when either is: a shared surname alone must not pass for the same whole name
        parts.append(f"{value['forename']} || ' ' || {value['surname']} AS {FULL_NAME}")
    con.read_parquet([str(p) for p in paths]).project(", ".join(parts)).create(table)
    dupes = _count(con, f"SELECT count(*) - count(DISTINCT {UID}) FROM {table}")  # noqa: S608
    if dupes:
        raise DedupeError(f"the match frame has {dupes} repeated {UID} values")
    nulls = _count(con, f"SELECT count(*) FROM {table} WHERE {UID} IS NULL")  # noqa: S608
    if nulls:
        raise DedupeError(f"the match frame has {nulls} rows without {UID}")
    return found


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[Any]:
    # fetched to the end: DuckDB refuses other work on a connection with an unfinished result
    return con.execute(sql, params).fetchall()


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    rows = _run(con, sql)
    return int(rows[0][0] or 0) if rows else 0


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return _count(con, f"SELECT count(*) FROM {table}")  # noqa: S608


def _model_columns(model: dict[str, Any]) -> list[str]:
    """The spec columns a trained model compares (from each comparison's description)."""
    out: list[str] = []
    for comparison in model.get("comparisons", []):
        out += [c.strip() for c in str(comparison.get("comparison_description", "")).split(",") if c.strip()]
    if not out:
        raise DedupeError("the model names no columns: not a model made by bpo.cleanup.dedupe.train")
    return out


# ---------------------------------------------------------------------------------------------- training


def _pair_count(con: duckdb.DuckDBPyConnection, table: str, key: tuple[str, ...]) -> int:
    """Candidate pairs a rule yields: the sum of n*(n-1)/2 over the groups of rows sharing its expressions."""
    if key == SWAPPED:
        return 0  # as selective as the exact-name rule, which is counted
    not_null = " AND ".join(f"{e} IS NOT NULL" for e in key)
    return _count(con, f"SELECT COALESCE(SUM(n * (n - 1) / 2), 0) FROM (SELECT count(*) AS n FROM {table} "  # noqa: S608
                       f"WHERE {not_null} GROUP BY {', '.join(key)})")


def _affordable(con: duckdb.DuckDBPyConnection, table: str, keys: list[tuple[str, ...]],
                rows: int) -> list[bool]:
    """Which rules stay: those yielding at most the pair budget on this data (the most selective one at least)."""
    budget = max(PAIR_BUDGET, PAIRS_PER_ROW * rows)
    counts = [_pair_count(con, table, k) for k in keys]
    keep = [n <= budget for n in counts]
    if not any(keep):
        keep[counts.index(min(counts))] = True
    if not all(keep):
        log.info("dedupe: %d of %d blocking rules dropped (more than %d candidate pairs)",
                 keep.count(False), len(keep), budget)
    return keep


def train(spec: CleanupSpec, paths: list[Path], *, seed: int = 1) -> dict[str, Any]:
    """Train the model on the match frame, unsupervised; returns it as Splink's JSON dict.

    The prior from deterministic rules, u from random pairs (seeded, at most ``U_MAX_PAIRS``), m by EM over
    blocking rules chosen so every comparison is estimated. Prediction rules that would yield more candidate
    pairs than the budget on this data are dropped from the model.
    """
    with _duckdb() as con:
        columns = _load(con, spec, paths, INPUT_TABLE)
        rows = _rows(con, INPUT_TABLE)
        if rows < 2:
            raise DedupeError(f"the match frame has {rows} row(s): nothing to train on")
        kinds = _kinds(spec, columns)
        settings = model_settings(spec, columns)
        keep = _affordable(con, INPUT_TABLE, _blocking_keys(kinds), rows)
        settings["blocking_rules_to_generate_predictions"] = [
            r for r, k in zip(settings["blocking_rules_to_generate_predictions"], keep, strict=True) if k]
        db_api = DuckDBAPI(con)
        linker = Linker(db_api.register(INPUT_TABLE), settings, log_level=None)
        started = time.perf_counter()
        linker.training.estimate_probability_two_random_records_match(_deterministic_rules(kinds),
                                                                      recall=DETERMINISTIC_RECALL)
        log.info("dedupe: prior in %.1f s", time.perf_counter() - started)
        settings_obj = linker._settings_obj
        if settings_obj._probability_two_random_records_match < PRIOR_FLOOR / rows:
            # the deterministic rules found (almost) nothing, e.g. no two rows agree exactly on every key:
            # assume about one duplicate in ten rows rather than none
            settings_obj._probability_two_random_records_match = PRIOR_FLOOR / rows
        started = time.perf_counter()
        u_pairs = min(U_MAX_PAIRS, rows * (rows - 1) / 2)
        linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs, seed=seed)
        log.info("dedupe: u in %.1f s", time.perf_counter() - started)
        comparisons = _comparisons(kinds)
        for cols in _em_rules(kinds, comparisons):
            if _pair_count(con, INPUT_TABLE, cols) == 0:
                continue  # no pair agrees on it: EM would have nothing to learn from
            started = time.perf_counter()
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*cols), max_pairs=EM_MAX_PAIRS, estimate_without_term_frequencies=True)
            log.info("dedupe: m by EM on %s in %.1f s", cols, time.perf_counter() - started)
        model = dict(linker.misc.save_model_to_json())
    # Splink rebuilds comparisons from dicts without their description: put the column names back
    for trained, derived in zip(model["comparisons"], settings["comparisons"], strict=True):
        trained["comparison_description"] = derived["comparison_description"]
        _floor_unseen(trained, u_pairs)
    return model


def _floor_unseen(comparison: dict[str, Any], sampled_pairs: float) -> None:
    """Give the levels training never saw an m or u, so that they weigh what little is known of them.

    Splink leaves them unset (or 0), and an unset value weighs nothing: two rows born decades apart lose no
    weight for it when every training match shared its date of birth, and two rows at one address gain
    none when no random pair shared one. A level no match showed gets m = ``M_FLOOR``, never above its u (it
    is no evidence *for* a match); a level no random pair showed gets u = half a pair in the sample.
    """
    u_floor = 0.5 / max(sampled_pairs, 1.0)
    for level in comparison["comparison_levels"]:
        if level.get("is_null_level"):
            continue
        m, u = level.get("m_probability"), level.get("u_probability")
        if not u and m:
            level["u_probability"] = u = u_floor
        if not m and u:
            level["m_probability"] = min(M_FLOOR, float(u))


# ---------------------------------------------------------------------------------------------- prediction


def _write_pairs(con: duckdb.DuckDBPyConnection, predictions: Iterable[SplinkDataFrame], out: Path) -> Path:
    """Union the predictions, each pair once with the smaller id on the left, to ``out`` (Parquet)."""
    tables = [p.physical_name for p in predictions]
    names = con.table(tables[0]).columns
    lefts = [n for n in names if n.endswith("_l") and n[:-2] + "_r" in names]
    swapped = []
    for n in names:
        if n in lefts:
            swapped.append(f"CASE WHEN swap THEN {n[:-2]}_r ELSE {n} END AS {n}")
        elif n.endswith("_r") and n[:-2] + "_l" in lefts:
            swapped.append(f"CASE WHEN swap THEN {n[:-2]}_l ELSE {n} END AS {n}")
        elif n != "swap":
            swapped.append(n)
    union = " UNION ALL BY NAME ".join(f"SELECT *, {UID}_l > {UID}_r AS swap FROM {t}" for t in tables)  # noqa: S608
    drop = {f"{FULL_NAME}_l", f"{FULL_NAME}_r", "match_key"}
    keep = [s for s, n in zip(swapped, [n for n in names if n != "swap"], strict=True) if n not in drop]
    sql = (f"SELECT {', '.join(keep)} FROM ({union}) WHERE {UID}_l <> {UID}_r "  # noqa: S608
           f"QUALIFY row_number() OVER (PARTITION BY least({UID}_l, {UID}_r), greatest({UID}_l, {UID}_r) "
           f"ORDER BY match_probability DESC) = 1")
    out.parent.mkdir(parents=True, exist_ok=True)
    con.sql(sql).write_parquet(str(out))
    return out


def _linker(con: duckdb.DuckDBPyConnection, model: dict[str, Any], table: str) -> Linker:
    db_api = DuckDBAPI(con)
    return Linker(db_api.register(table), dict(model), log_level=None)


def predict(spec: CleanupSpec, model: dict[str, Any], paths: list[Path], out: Path, *, threshold: float) -> Path:
    """Score the candidate pairs of the match frame; those at or above ``threshold`` go to ``out`` (Parquet)."""
    with _duckdb() as con:
        _load(con, spec, paths, INPUT_TABLE, _model_columns(model))
        linker = _linker(con, model, INPUT_TABLE)
        scored = linker.inference.predict(threshold_match_probability=threshold, warning_mode="never")
        return _write_pairs(con, [scored], out)


def predict_between(spec: CleanupSpec, model: dict[str, Any], new_paths: list[Path], clean_paths: list[Path],
                    out: Path, *, threshold: float) -> Path:
    """The incremental run: pairs between the new (or changed) rows and the clean table, and among the new rows.

    A ``unique_id`` in both inputs is taken from the new rows (it changed). Term frequencies come from both
    inputs together, as a full run over the whole table would compute them. Same output as ``predict``.
    """
    with _duckdb() as con:
        columns = _model_columns(model)
        _load(con, spec, new_paths, "bpo_new", columns)
        _load(con, spec, clean_paths, "bpo_clean_all", columns)
        _run(con, f"CREATE TABLE bpo_clean AS SELECT * FROM bpo_clean_all "  # noqa: S608
                  f"WHERE {UID} NOT IN (SELECT {UID} FROM bpo_new)")
        _run(con, f"CREATE TABLE {INPUT_TABLE} AS SELECT * FROM bpo_clean UNION ALL SELECT * FROM bpo_new")  # noqa: S608
        db_api = DuckDBAPI(con)
        linker = Linker(db_api.register(INPUT_TABLE), dict(model), log_level=None)
        for comparison in linker._settings_obj.comparisons:
            for level in comparison.comparison_levels:
                if level._tf_adjustment_input_column is not None:
                    linker.table_management.compute_tf_table(level._tf_adjustment_input_column.input_name)
        new = db_api.register("bpo_new")
        clean = db_api.register("bpo_clean")
        between = linker.inference.predict_between(new, clean, threshold_match_probability=threshold,
                                                   warning_mode="never")
        within = linker.inference.predict_within(new, threshold_match_probability=threshold, warning_mode="never")
        return _write_pairs(con, [between, within], out)


# ---------------------------------------------------------------------------------------------- explanation


def _log2(x: float) -> float:
    return math.log2(x) if x > 0 else float("-inf")


def _level_label(comparison: dict[str, Any], gamma: int) -> str:
    """The label of the level a gamma value stands for: -1 the null level, then the levels counted up from ELSE = 0."""
    levels = comparison["comparison_levels"]
    if gamma == -1:
        level = next((lv for lv in levels if lv.get("is_null_level")), None)
    else:
        scored = [lv for lv in levels if not lv.get("is_null_level")]
        level = scored[len(scored) - 1 - gamma] if 0 <= gamma < len(scored) else None
    if level is None:
        raise DedupeError(f"comparison {comparison['output_column_name']!r} has no level {gamma}")
    return str(level.get("label_for_charts") or level["sql_condition"])


def explain(model: dict[str, Any], pair: dict[str, Any]) -> dict[str, Any]:
    """The waterfall of one ``predict`` row: the prior, then each comparison's log2 Bayes factor, summing to its weight.

    A step's ``log2_bf`` includes the term-frequency adjustment of its level (shown apart as ``tf_log2_bf``).
    """
    p = float(model["probability_two_random_records_match"])
    prior = _log2(p / (1 - p))
    steps = []
    for comparison in model["comparisons"]:
        name = comparison["output_column_name"]
        if f"gamma_{name}" not in pair or f"mw_{name}" not in pair:
            raise DedupeError(f"the pair has no gamma_/mw_ column for comparison {name!r}: not a predict row")
        gamma = int(pair[f"gamma_{name}"])
        label = _level_label(comparison, gamma)
        tf = pair.get(f"mw_tf_adj_{name}")
        tf_weight = float(tf) if tf is not None and not pd.isna(tf) else 0.0
        steps.append({"column": comparison.get("comparison_description", name), "comparison": name,
                      "level": label, "log2_bf": float(pair[f"mw_{name}"]) + tf_weight, "tf_log2_bf": tf_weight})
    return {"prior_weight": prior, "steps": steps, "match_weight": float(pair["match_weight"]),
            "match_probability": float(pair["match_probability"])}


# ---------------------------------------------------------------------------------------------- clustering


def clusters(pairs: pd.DataFrame, threshold: float, cannot_link: set[tuple[str, str]]) -> Clustering:
    """Transitive clusters of the pairs at or above ``threshold``, never joining a cannot-link pair.

    Cannot-link edges are dropped first; a connected component that still holds both rows of a cannot-link
    pair (joined through others) is held for a person instead of merged. Components by scipy's sparse-graph
    ``connected_components`` (a run asks for them three times: Splink's own clustering starts a DuckDB
    session each time, ~0.4 s at 100k rows, against milliseconds).
    """
    edges = pairs.loc[pairs["match_probability"] >= threshold, [f"{UID}_l", f"{UID}_r"]]
    edges = edges.astype({f"{UID}_l": str, f"{UID}_r": str})
    if cannot_link and len(edges):
        lo = edges[[f"{UID}_l", f"{UID}_r"]].min(axis=1)
        hi = edges[[f"{UID}_l", f"{UID}_r"]].max(axis=1)
        banned = pd.MultiIndex.from_tuples(sorted(cannot_link)) if cannot_link else None
        keep = ~pd.MultiIndex.from_arrays([lo, hi]).isin(banned)
        edges = edges[keep]
    if edges.empty:
        return Clustering()
    n = len(edges)
    codes, ids = pd.factorize(pd.concat([edges[f"{UID}_l"], edges[f"{UID}_r"]], ignore_index=True))
    graph = coo_matrix((np.ones(n, dtype=np.int32), (codes[:n], codes[n:])), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    members: dict[int, set[str]] = {}
    for uid, cid in zip(ids.tolist(), component.tolist(), strict=True):
        members.setdefault(cid, set()).add(uid)
    out = Clustering()
    component_of = {uid: cid for cid, group in members.items() for uid in group}
    blocked = {component_of[a] for a, b in cannot_link
               if a in component_of and b in component_of and component_of[a] == component_of[b]}
    for cid, group in members.items():
        if len(group) < 2:
            continue
        if cid in blocked:
            out.held.append(group)
            continue
        smallest = min(group)
        for uid in group:
            out.cluster_of[uid] = smallest
    out.held.sort(key=min)
    return out
