"""Data-quality checks with Great Expectations: suites from the process folders, failures mapped to records."""

from __future__ import annotations

import html
import json
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from bpo.pool import import_modules
from bpo.processes import SHIPPED_DIRS, find_process_file
from bpo.run import Part, RunContext, get_store, put_json, put_parquet, read_parquet
from bpo.schema import CHECK_COLUMNS, CHECK_TYPES, ROW
from bpo.spec import ProcessSpec
from bpo.store import StoredObject

EXPECTATIONS_DIR = SHIPPED_DIRS[1]  # the shipped suites

logging.getLogger("great_expectations").setLevel(logging.ERROR)


GX = ["great_expectations"]


def _prepare_gx() -> None:
    """Quiet GX's chatty loggers; skip the fingerprint GX takes of every frame it is given.

    GX hashes a whole DataFrame below ``HASH_THRESHOLD`` bytes into a batch marker nobody here reads:
    ~0.5 s per 200,000 records, as long as the checks themselves. A threshold of 0 skips it.
    """
    import_modules(GX)  # one thread at a time (bpo.pool)
    from great_expectations.execution_engine import pandas_execution_engine

    _quiet_gx()
    if not hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        raise RuntimeError("great_expectations changed: pandas_execution_engine.HASH_THRESHOLD is gone")
    pandas_execution_engine.HASH_THRESHOLD = 0


def _quiet_gx() -> None:
    """Some GX modules set their own logger to INFO on import (one line per ephemeral context)."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("great_expectations.") and isinstance(logger, logging.Logger) and logger.level:
            logger.setLevel(max(logger.level, logging.ERROR))


class SuiteError(ValueError):
    """A suite file is missing, malformed, or names an expectation GX does not know."""


@dataclass(frozen=True)
class Validation:
    success: bool
    failures: pd.DataFrame  # columns: row, field, check, reason
    result: dict[str, Any]  # the GX validation result, JSON-ready
    html: str  # Data Docs page for the result


def _suite_json(name: str) -> str:
    """``<name>.json`` from the process folders (``BPO_PROCESS_DIRS``)."""
    try:
        path = find_process_file(f"{name}.json", "expectation suite")
    except FileNotFoundError as exc:
        raise SuiteError(str(exc)) from exc
    return _read(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=32)
def _read(path: Path, _mtime_ns: int) -> str:
    return path.read_text(encoding="utf-8")


# Expectations whose verdict on a record depends on that record alone: they are checked chunk by
# chunk, side by side. Every other one (uniqueness, aggregates, table-level checks, any type not
# listed here, and any with a ``mostly`` below 1, whose verdict is the whole batch's share of good
# values) is checked once over the whole batch, on just the columns it names.
ROW_LOCAL = frozenset({
    "expect_column_values_to_not_be_null", "expect_column_values_to_be_null",
    "expect_column_values_to_match_regex", "expect_column_values_to_not_match_regex",
    "expect_column_values_to_match_regex_list", "expect_column_values_to_not_match_regex_list",
    "expect_column_values_to_match_like_pattern", "expect_column_values_to_not_match_like_pattern",
    "expect_column_values_to_match_strftime_format", "expect_column_values_to_be_dateutil_parseable",
    "expect_column_values_to_be_json_parseable", "expect_column_values_to_match_json_schema",
    "expect_column_values_to_be_in_set", "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_be_between", "expect_column_value_lengths_to_be_between",
    "expect_column_value_lengths_to_equal", "expect_column_pair_values_to_be_equal",
    "expect_column_pair_values_a_to_be_greater_than_b", "expect_column_pair_values_to_be_in_set",
    "expect_select_column_values_to_be_unique_within_record", "expect_multicolumn_sum_to_equal",
})
Scope = Literal["all", "row", "batch"]


def in_scope(expectation_type: str, scope: Scope, kwargs: dict[str, Any] | None = None) -> bool:
    """Whether an expectation is checked in ``scope``: chunk by chunk (``"row"``) or over the whole batch."""
    if scope == "all":
        return True
    mostly = (kwargs or {}).get("mostly", 1)
    row_local = expectation_type in ROW_LOCAL and not (isinstance(mostly, int | float) and mostly < 1)
    return row_local == (scope == "row")


def load_suite(name: str, *, date_columns: tuple[str, ...] = (), scope: Scope = "all",
               columns: frozenset[str] | None = None):  # -> gx.ExpectationSuite
    """Load the suite ``<name>.json``; refuse a suite where GX dropped an unknown expectation.

    ``scope`` keeps the row-local expectations (``"row"``), the others (``"batch"``) or all of them;
    ``columns`` (if given) only the expectations on those columns (or on columns derived from them,
    ``<column>_currency``) and those on no column at all.
    Date bounds on ``date_columns`` ("2015-12-31") become midnight timestamps: GX parses a bare date
    into a ``date``, which a datetime column cannot be compared with, while a timestamp bound lets
    GX use its vectorized range check.
    """
    import_modules(GX)  # one thread at a time (bpo.pool)
    import great_expectations as gx

    try:
        data = json.loads(_suite_json(name))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"suite {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or any("type" not in e for e in data.get("expectations", [])):
        raise SuiteError(f"suite {name!r}: every expectation needs a 'type'")
    data["expectations"] = [e for e in data.get("expectations", []) if in_scope(e["type"], scope, e.get("kwargs"))
                            and (columns is None or _on_columns(e.get("kwargs") or {}, columns))]
    declared = len(data["expectations"])
    for e in data["expectations"]:
        kwargs = e.get("kwargs", {})
        if kwargs.get("column") in date_columns:
            for bound in ("min_value", "max_value"):
                if isinstance(kwargs.get(bound), str) and len(kwargs[bound]) == 10:
                    kwargs[bound] += "T00:00:00"
    suite = gx.ExpectationSuite(**data)
    if len(suite.expectations) != declared:
        known = {e.expectation_type for e in suite.expectations}
        unknown = sorted({e["type"] for e in data["expectations"]} - known)
        raise SuiteError(f"suite {name!r}: {declared - len(suite.expectations)} expectations not loaded: {unknown}")
    return suite


def _date_columns(spec: ProcessSpec) -> tuple[str, ...]:
    return tuple(n for n, f in spec.fields.items() if f.type == "date")


def _frame_for_gx(df: pd.DataFrame, spec: ProcessSpec) -> pd.DataFrame:
    """Columns in the types GX checks fastest: dates as datetime64[ns], money as float (ranges only)."""
    out = df.copy(deep=False)
    for name, field in spec.fields.items():
        if name not in out:
            continue
        if field.type == "date":
            out[name] = pd.to_datetime(out[name], format="%Y-%m-%d", errors="coerce").astype("datetime64[ns]")
        elif field.type == "money":
            out[name] = pd.to_numeric(out[name].astype(object), errors="coerce").astype("float64")
    return out


def _plain(value: Any) -> str:
    """A value as a person wrote it: a midnight timestamp is a date."""
    text = str(value)
    return text.removesuffix(" 00:00:00").removesuffix("T00:00:00")


def _describe(check: str, kwargs: dict[str, Any], value: Any) -> str:
    """One line an agent understands for a failed expectation on one value."""
    shown = "empty" if value is None or (isinstance(value, float) and pd.isna(value)) else f"'{_plain(value)}'"
    if check.endswith("not_be_null"):
        return "required value is missing"
    if check.endswith("be_unique"):
        return f"{shown} appears more than once in this batch"
    if check.endswith("match_regex"):
        return f"{shown} does not have the expected format"
    if check.endswith("be_in_set"):
        return f"{shown} is not one of {', '.join(map(str, kwargs.get('value_set', [])))}"
    if check.endswith("be_between"):
        return f"{shown} is outside {_plain(kwargs.get('min_value'))} .. {_plain(kwargs.get('max_value'))}"
    return f"{shown} fails {check}"


_threads = threading.local()


def _dataframes():  # -> gx BatchDefinition
    """This thread's GX batch definition for whole dataframes, in an ephemeral context made once per thread.

    Making the context and its data source costs more than validating one record (GX writes its
    project config as YAML on every addition); a context is not shared between threads.
    """
    found = getattr(_threads, "dataframes", None)
    if found is None:
        import_modules(GX)  # one thread at a time (bpo.pool)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        found = _threads.dataframes = (context.data_sources.add_pandas("records").add_dataframe_asset("batch")
                                       .add_batch_definition_whole_dataframe("whole"))
    return found


def validate_frame(df: pd.DataFrame, spec: ProcessSpec, *, docs: bool = True, scope: Scope = "all",
                   columns: frozenset[str] | None = None) -> Validation:
    """Validate normalized records (with a ``_row`` column) against the spec's suite, or its ``scope``
    (and, given ``columns``, only the expectations on them: see ``load_suite``)."""
    _prepare_gx()
    suite = load_suite(spec.suite, date_columns=_date_columns(spec), scope=scope, columns=columns)
    if not suite.expectations:  # none on these columns: nothing for GX to do
        return _nothing_to_check()
    batch = _dataframes().get_batch(batch_parameters={"dataframe": _frame_for_gx(df, spec)})
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                                                  "return_unexpected_index_query": False})
    rows: list[tuple[int, str, str, str]] = []
    original = df.set_index(ROW)
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        assert cfg is not None  # validating a suite gives every result the expectation it ran
        field = str(cfg.kwargs.get("column", ""))
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message")
            raise SuiteError(f"expectation {cfg.type} on {field!r} could not run: {message}")
        hits = r.result.get("unexpected_index_list") or []
        numbers = [int(hit[ROW]) for hit in hits]
        # the values as normalized, not as retyped for GX (money as Decimal, dates as dates)
        values = (original[field].reindex(numbers).tolist() if field in original.columns
                  else [hit.get(field) for hit in hits])
        rows.extend((row, field, cfg.type, _describe(cfg.type, cfg.kwargs, value))
                    for row, value in zip(numbers, values, strict=True))
    failures = pd.DataFrame(rows, columns=["row", "field", "check", "reason"])
    summary = _summary(result)
    return Validation(bool(result.success), failures, summary, _render_html(result) if docs else "")


UNEXPECTED_KEYS = ("unexpected_list", "partial_unexpected_list", "partial_unexpected_counts",
                   "unexpected_index_list", "partial_unexpected_index_list")
PER_ROW_KEYS = ("unexpected_list", "unexpected_index_list", "partial_unexpected_index_list")
SAMPLE = 20  # failing values a Data Docs page shows per expectation, as GX's own sample


def _summary(result: Any) -> dict[str, Any]:
    """The result's verdicts, counts and sample of failing values per expectation, JSON-safe.

    The per-row lists are left out: they are in ``failures``.

    Built from the result's fields: GX's own ``to_json_dict`` walks every value of the result
    (~0.4 s for a chunk of 200,000 records) to keep what this leaves out anyway.
    """
    def counts(r: Any) -> dict[str, Any]:
        return {k: v for k, v in (r.result or {}).items() if k not in PER_ROW_KEYS}

    data = {
        "success": bool(result.success), "suite_name": result.suite_name, "statistics": dict(result.statistics),
        "results": [{"expectation_config": {"type": r.expectation_config.type, "kwargs": r.expectation_config.kwargs},
                     "success": bool(r.success), "result": counts(r),
                     "exception_info": r.exception_info if r.exception_info else None} for r in result.results],
    }
    return json.loads(json.dumps(data, default=str))


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    return value


def _render_html(result: Any) -> str:
    """A Data Docs page for the validation, rendered locally (GX 1.x has no S3 docs store).

    GX's page template does not escape the failing values it shows, and those come from client
    files: they are escaped here, so a value like ``<script>`` is shown, never run.
    """
    import_modules(GX)  # one thread at a time (bpo.pool)
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    for r in result.results:
        for key in UNEXPECTED_KEYS:
            if r.result and key in r.result:
                r.result[key] = _escaped(r.result[key])
    document = ValidationResultsPageRenderer().render(result)
    return str(DefaultJinjaPageView().render(document))


FAILURE_TYPES = CHECK_TYPES


class Checked(BaseModel):
    """One validation's outcome: the record-level failures and the stored result."""

    name: str  # the chunk's name, or "batch"
    scope: str
    success: bool
    failed_records: int
    failures: str  # parquet: row, field, check, reason
    result: str  # JSON: the GX result without its per-row lists
    summary: dict[str, Any]  # that result (small: counts and ≤ 20 failing values per expectation)
    objects: list[StoredObject]


def _store_validation(run: RunContext, name: str, scope: Scope, checked: Validation) -> Checked:
    store = get_store()
    objects = [
        put_parquet(store, run.key("validation", f"{name}.failures.parquet"), checked.failures.astype(FAILURE_TYPES)),
        put_json(store, run.key("validation", f"{name}.result.json"), checked.result),
    ]
    return Checked(name=name, scope=scope, success=checked.success,
                   failed_records=int(checked.failures["row"].nunique()), failures=objects[0].key,
                   result=objects[1].key, summary=checked.result, objects=objects)


def _nothing_to_check() -> Validation:
    return Validation(True, pd.DataFrame(columns=list(FAILURE_TYPES)), {"success": True, "results": []}, "")


def check_part(run: RunContext, spec: ProcessSpec, normalized_key: str, data: pd.DataFrame) -> Checked:
    """Validate one normalized chunk (``data``, as written to ``normalized_key``) against the row-local
    expectations."""
    name = normalized_key.rsplit("/", 1)[-1].removesuffix(".parquet")
    if not len(data) or not _expectations(spec, "row"):
        return _store_validation(run, name, "row", _nothing_to_check())
    return _store_validation(run, name, "row", validate_frame(data, spec, scope="row", docs=False))


def duplicate_keys(keys: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Records (by ``_row``) whose natural key appears more than once in the batch."""
    dup = keys[keys.duplicated(subset=key, keep=False) & keys[key].notna().all(axis=1)]
    if dup.empty:
        return pd.DataFrame(columns=CHECK_COLUMNS)
    shown = dup[key[0]].astype(str) if len(key) == 1 else dup[key].astype(str).agg(", ".join, axis=1)
    return pd.DataFrame({"row": dup[ROW].to_numpy(), "field": key[0], "check": "duplicate_key",
                         "reason": ("key " + shown + " appears more than once in this batch").to_numpy()},
                        columns=CHECK_COLUMNS)


def check_batch(run: RunContext, spec: ProcessSpec, parts: list[Part]) -> tuple[Checked, StoredObject]:
    """What needs every record of the batch at once, on just the columns it reads.

    The suite's batch-wide expectations (uniqueness, aggregates), and the records whose natural key
    appears more than once (a routing rule of the spec, stored as ``review/duplicates.parquet``).
    """
    expectations = _expectations(spec, "batch")
    named = {c for e in expectations for c in _columns_of(e.get("kwargs", {}))} | set(spec.target.key)
    columns = [c for c in dict.fromkeys([*spec.fields, *(f"{n}_currency" for n, f in spec.fields.items()
                                                          if f.type == "money")]) if c in named]
    store = get_store()
    frames = [read_parquet(store, p.normalized, columns=[*columns, ROW]) for p in parts]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*columns, ROW])
    duplicates = put_parquet(store, run.key("review", "duplicates.parquet"), duplicate_keys(
        data[[*spec.target.key, ROW]], spec.target.key).astype(FAILURE_TYPES))
    if not len(data) or not expectations:
        return _store_validation(run, "batch", "batch", _nothing_to_check()), duplicates
    return _store_validation(run, "batch", "batch", validate_frame(data, spec, scope="batch", docs=False)), duplicates


def _expectations(spec: ProcessSpec, scope: Scope) -> list[dict[str, Any]]:
    """The suite's expectations in ``scope``, as declared (``load_suite`` checks them when they run)."""
    data = json.loads(_suite_json(spec.suite))
    return [e for e in data.get("expectations", [])
            if isinstance(e, dict) and in_scope(str(e.get("type")), scope, e.get("kwargs"))]


def _on_columns(kwargs: dict[str, Any], columns: frozenset[str]) -> bool:
    named = _columns_of(kwargs)
    return not named or any(c in columns or any(c.startswith(f"{f}_") for f in columns) for c in named)


def _columns_of(kwargs: dict[str, Any]) -> list[str]:
    named = [kwargs.get(k) for k in ("column", "column_A", "column_B")]
    return [str(c) for c in [*named, *kwargs.get("column_list", [])] if c]


class BatchChecked(BaseModel):
    """The batch's validation: the failures of every chunk and of the batch-wide checks, and what was written."""

    success: bool
    chunk_failures: list[str]  # parquet keys, in the order of the parts
    batch_failures: str
    duplicates: str  # parquet: the records whose natural key appears more than once
    objects: list[StoredObject]


def publish_validation(run: RunContext, spec: ProcessSpec, chunks: list[Checked], batch: Checked,
                       duplicates: StoredObject) -> BatchChecked:
    """One result and one Data Docs page for the whole batch, from the chunks' and the batch's checks."""
    checks = [*chunks, batch]
    store = get_store()
    combined = combine_results(spec.suite, checks)
    objects = [*(o for c in checks for o in c.objects), duplicates]
    objects.append(put_json(store, run.key("validation", "result.json"), combined))
    objects.append(store.put_bytes(run.key("validation", "data-docs.html"), render_docs(combined).encode(),
                                   "text/html; charset=utf-8"))
    return BatchChecked(success=combined["success"], chunk_failures=[c.failures for c in chunks],
                        batch_failures=batch.failures, duplicates=duplicates.key, objects=objects)


def validate_and_publish(run: RunContext, spec: ProcessSpec, parts: list[Part], chunks: list[Checked]) -> BatchChecked:
    """``check_batch``, then ``publish_validation``: the batch's GX steps in one call (one process imports GX)."""
    batch, duplicates = check_batch(run, spec, parts)
    return publish_validation(run, spec, chunks, batch, duplicates)


def combine_results(suite: str, checks: list[Checked]) -> dict[str, Any]:
    """The batch's result per expectation: counts summed over the chunks that checked it, samples merged.

    A verdict is every chunk's verdict, except for an expectation with ``mostly``: that one is GX's
    rule applied to the summed counts, as one validation of the whole batch would decide.
    """
    merged: dict[str, dict[str, Any]] = {}
    for check in checks:
        for r in check.summary.get("results", []):
            cfg = r.get("expectation_config") or {}
            ident = json.dumps([cfg.get("type"), cfg.get("kwargs", {})], sort_keys=True, default=str)
            got = r.get("result") or {}
            m = merged.setdefault(ident, {
                "expectation_config": {"type": cfg.get("type"), "kwargs": cfg.get("kwargs", {})}, "success": True,
                "checked": "per chunk" if check.scope == "row" else "whole batch", "raised": False,
                "result": {"element_count": 0, "missing_count": 0, "unexpected_count": 0,
                           "partial_unexpected_list": [], "partial_unexpected_counts": []}})
            m["success"] = m["success"] and bool(r.get("success"))
            m["raised"] = m["raised"] or bool((r.get("exception_info") or {}).get("raised_exception"))
            out = m["result"]
            for key in ("element_count", "missing_count", "unexpected_count"):
                out[key] += int(got.get(key) or 0)
            out["partial_unexpected_list"] = [*out["partial_unexpected_list"],
                                              *(got.get("partial_unexpected_list") or [])][:SAMPLE]
            counts = {json.dumps(c["value"], default=str): c for c in out["partial_unexpected_counts"]}
            for c in got.get("partial_unexpected_counts") or []:
                seen = counts.setdefault(json.dumps(c["value"], default=str), {"value": c["value"], "count": 0})
                seen["count"] += int(c["count"])
            out["partial_unexpected_counts"] = sorted(counts.values(), key=lambda c: -c["count"])[:SAMPLE]
    rows = list(merged.values())
    for r in rows:
        out = r["result"]
        present = out["element_count"] - out["missing_count"]
        out["unexpected_percent"] = 100.0 * out["unexpected_count"] / present if present else 0.0
        mostly = r["expectation_config"]["kwargs"].get("mostly")
        if isinstance(mostly, int | float) and not r["raised"]:
            # GX's rule over the batch, not the chunks' verdicts: the share of non-missing values
            # that pass, vacuously true when there are none.
            r["success"] = present == 0 or (present - out["unexpected_count"]) / present >= mostly
        del r["raised"]
        out["unexpected_percent_total"] = (100.0 * out["unexpected_count"] / out["element_count"]
                                           if out["element_count"] else 0.0)
    passed = sum(r["success"] for r in rows)
    return {
        "suite_name": suite, "success": passed == len(rows),
        "statistics": {"evaluated_expectations": len(rows), "successful_expectations": passed,
                       "unsuccessful_expectations": len(rows) - passed,
                       "success_percent": 100.0 * passed / len(rows) if rows else 100.0},
        "results": rows,
        "validations": [{"name": c.name, "checked": c.scope, "success": c.success, "failed_records": c.failed_records,
                         "result": c.result} for c in checks],
    }


def render_docs(combined: dict[str, Any]) -> str:
    """One GX Data Docs page for the whole batch, from the combined result (values from client files escaped)."""
    import_modules(GX)  # one thread at a time (bpo.pool)
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    result = ExpectationSuiteValidationResult(
        success=combined["success"], suite_name=combined["suite_name"], statistics=combined["statistics"],
        results=[ExpectationValidationResult(
            success=r["success"], result=dict(r["result"]),
            expectation_config=ExpectationConfiguration(type=r["expectation_config"]["type"],
                                                        kwargs=r["expectation_config"]["kwargs"]))
            for r in combined["results"]])
    return _render_html(result)


def check_expectations(expectations: list[dict[str, Any]], *, frame: pd.DataFrame | None = None,
                       sql: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """Run expectations (``{"type", "kwargs"}``, as in a suite file) on a frame, or in a database.

    ``sql`` is (SQLAlchemy URL, SELECT statement): the checks run in the database, as SQL, through GX's SQL
    data source; the statement is compiled by SQLAlchemy (names quoted, no values in it), because GX pastes
    a table name into its SQL unquoted. Returns one result per expectation: its type, column, success and
    counts; an expectation GX could not run raises ``SuiteError``.
    """
    _prepare_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite = gx.ExpectationSuite(name="checks", expectations=[dict(e) for e in expectations])
    if len(suite.expectations) != len(expectations):  # GX drops an unknown type silently
        raise SuiteError(f"{len(expectations) - len(suite.expectations)} expectation(s) of an unknown type")
    if sql is not None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        url, query = sql
        source = context.data_sources.add_sql("database", connection_string=url)
        batch = source.add_query_asset("table", query=query).add_batch_definition_whole_table("all").get_batch()
    else:
        assert frame is not None
        batch = _dataframes().get_batch(batch_parameters={"dataframe": frame})
    out = []
    for r in batch.validate(suite).results:
        cfg = r.expectation_config
        assert cfg is not None
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise SuiteError(f"expectation {cfg.type} on {cfg.kwargs.get('column')!r} could not run: "
                             f"{r.exception_info.get('exception_message')}")
        out.append({"type": cfg.type, "column": cfg.kwargs.get("column"), "success": bool(r.success),
                    "unexpected_count": int(r.result.get("unexpected_count") or 0),
                    "element_count": int(r.result.get("element_count") or 0),
                    "unexpected_percent": float(r.result.get("unexpected_percent") or 0.0)})
    return out
