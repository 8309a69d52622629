"""Data-quality checks with Great Expectations: suites from ``expectations/``, failures mapped to records."""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from bpo.spec import ProcessSpec
from tasks.artifacts import RunContext

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"
ROW = "_row"  # the batch-wide record number every failure is mapped back to

logging.getLogger("great_expectations").setLevel(logging.ERROR)


class SuiteError(ValueError):
    """A suite file is missing, malformed, or names an expectation GX does not know."""


@dataclass(frozen=True)
class Validation:
    success: bool
    failures: pd.DataFrame  # columns: row, field, check, reason
    result: dict[str, Any]  # the GX validation result, JSON-ready
    html: str  # Data Docs page for the result


@lru_cache(maxsize=32)
def _suite_json(name: str) -> str:
    path = EXPECTATIONS_DIR / f"{name}.json"
    if not path.is_file():
        raise SuiteError(f"no expectation suite {name!r} at {path}")
    return path.read_text(encoding="utf-8")


def load_suite(name: str, *, date_columns: tuple[str, ...] = ()):  # -> gx.ExpectationSuite (imported lazily)
    """Load ``expectations/<name>.json``; refuse a suite where GX dropped an unknown expectation.

    Date bounds on ``date_columns`` ("2015-12-31") become midnight timestamps: GX parses a bare date
    into a ``date``, which a datetime column cannot be compared with, while a timestamp bound lets
    GX use its vectorized range check.
    """
    import great_expectations as gx

    try:
        data = json.loads(_suite_json(name))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"suite {name!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or any("type" not in e for e in data.get("expectations", [])):
        raise SuiteError(f"suite {name!r}: every expectation needs a 'type'")
    declared = len(data.get("expectations", []))
    for e in data.get("expectations", []):
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


def validate_frame(df: pd.DataFrame, spec: ProcessSpec, *, docs: bool = True) -> Validation:
    """Validate a normalized batch (with a ``_row`` column) against the spec's suite."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    suite = context.suites.add(load_suite(spec.suite, date_columns=_date_columns(spec)))
    batch = (context.data_sources.add_pandas("records").add_dataframe_asset("batch")
             .add_batch_definition_whole_dataframe("whole")
             .get_batch(batch_parameters={"dataframe": _frame_for_gx(df, spec)}))
    result = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ROW],
                                                  "return_unexpected_index_query": False})
    rows: list[tuple[int, str, str, str]] = []
    original = df.set_index(ROW)
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        field = str(cfg.kwargs.get("column", ""))
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message")
            raise SuiteError(f"expectation {cfg.type} on {field!r} could not run: {message}")
        for hit in r.result.get("unexpected_index_list") or []:
            row = int(hit[ROW])
            # the value as normalized, not as retyped for GX (money as Decimal, dates as dates)
            value = original.at[row, field] if field in original.columns else hit.get(field)
            rows.append((row, field, cfg.type, _describe(cfg.type, cfg.kwargs, value)))
    failures = pd.DataFrame(rows, columns=["row", "field", "check", "reason"])
    summary = _summary(result)
    return Validation(bool(result.success), failures, summary, _render_html(result) if docs else "")


UNEXPECTED_KEYS = ("unexpected_list", "partial_unexpected_list", "partial_unexpected_counts",
                   "unexpected_index_list", "partial_unexpected_index_list")


def _summary(result: Any) -> dict[str, Any]:
    """The result without the per-row lists (those are in ``failures``), JSON-safe."""
    data = result.to_json_dict()
    for r in data.get("results", []):
        for key in UNEXPECTED_KEYS:
            (r.get("result") or {}).pop(key, None)
    data["describe"] = result.describe_dict() if hasattr(result, "describe_dict") else {}
    # the lists are gone before the round trip: they are most of the result when many rows fail
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
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    for r in result.results:
        for key in UNEXPECTED_KEYS:
            if r.result and key in r.result:
                r.result[key] = _escaped(r.result[key])
    document = ValidationResultsPageRenderer().render(result)
    return str(DefaultJinjaPageView().render(document))


@task(retries=1, retry_delay_seconds=2, timeout_seconds=3600)
def validate_batch(run: RunContext, spec: ProcessSpec, normalized_keys: list[str]) -> dict[str, Any]:
    """Validate the whole normalized batch (uniqueness is batch-wide); store result, Data Docs and failures."""
    from tasks.artifacts import get_store, put_json, put_parquet, read_parquet

    store = get_store()
    frames = [read_parquet(store, k) for k in normalized_keys]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({ROW: []})
    checked = validate_frame(data, spec) if len(data) else Validation(True, pd.DataFrame(
        columns=["row", "field", "check", "reason"]), {}, "")
    objects = [
        put_json(store, run.key("validation", "result.json"), checked.result),
        store.put_bytes(run.key("validation", "data-docs.html"), checked.html.encode(), "text/html; charset=utf-8"),
        put_parquet(store, run.key("validation", "failures.parquet"), checked.failures.astype(
            {"row": "int64", "field": str, "check": str, "reason": str})),
    ]
    return {"success": checked.success, "failed_records": int(checked.failures["row"].nunique()),
            "failures_key": objects[2].key, "objects": objects}
