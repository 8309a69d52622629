"""What every normalizer shares: the result types, cleaning, and the per-distinct-value plumbing.

Every normalizer cleans its column, works on the distinct values and broadcasts the results back
to the rows, so per-value library calls run once per distinct value, not once per row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.api.extensions import ExtensionArray

from bpo.spec import FieldSpec, ProcessSpec

STRING = pd.StringDtype()

# Python's \s spelled out: with \s pandas falls back from pyarrow's RE2 to a slow per-value re loop.
_WHITESPACE = "[ \t\n\r\f\v\x1c-\x1f\x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"


@dataclasses.dataclass(frozen=True)
class Normalized:
    """One field's normalized values; ``reasons`` also explains any raised flag."""

    values: pd.Series
    reasons: pd.Series
    flags: pd.Series
    extra: dict[str, pd.Series] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NormalizedFrame:
    """All fields of a spec normalized, plus the long-form table of problems found."""

    data: pd.DataFrame
    issues: pd.DataFrame


Normalizer = Callable[[pd.Series, FieldSpec, pd.DataFrame, ProcessSpec], Normalized]
Array: TypeAlias = ExtensionArray | np.ndarray


def clean(raw: pd.Series) -> pd.Series:
    """Trim and collapse whitespace; missing or blank values become NA (nullable string dtype)."""
    s = raw.astype(STRING).str.replace(_WHITESPACE, " ", regex=True).str.strip()
    return s.where(s.str.len() > 0)


def distinct(s: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes per row (-1 for NA) and the distinct non-NA values as a 0..k-1 indexed Series."""
    codes, uniques = pd.factorize(s)
    return codes, pd.Series(uniques.array, dtype=STRING)


def nones(n: int) -> np.ndarray:
    """An object array of ``n`` Nones (no reason / no flag)."""
    return np.full(n, None, dtype=object)


def spread(per_value: Array, codes: np.ndarray, fill: object) -> Array:
    """Broadcast per-distinct-value results to rows; rows with code -1 (blank) get ``fill``."""
    if isinstance(per_value, ExtensionArray):
        return per_value.take(codes, allow_fill=True)
    padded = np.empty(len(per_value) + 1, dtype=object)
    padded[:-1] = per_value
    padded[-1] = fill  # code -1 indexes this last slot
    return padded[codes]


def result(
    raw: pd.Series,
    codes: np.ndarray,
    values: Array,
    reasons: np.ndarray,
    flags: np.ndarray | None = None,
    extra: dict[str, Array] | None = None,
) -> Normalized:
    """Assemble a Normalized from per-distinct-value results."""
    index = raw.index
    flags = nones(len(reasons)) if flags is None else flags
    return Normalized(
        values=pd.Series(spread(values, codes, pd.NA), index=index, name=raw.name),
        reasons=pd.Series(spread(reasons, codes, None), index=index, dtype=object),
        flags=pd.Series(spread(flags, codes, None), index=index, dtype=object),
        extra={
            name: pd.Series(spread(col, codes, pd.NA), index=index, name=name) for name, col in (extra or {}).items()
        },
    )


# Regexes run on pyarrow's RE2 kernels: pandas' str.extract loops in Python (~15x slower on 100k values),
# and pandas' other str methods silently switch to Python's re, whose \d also matches non-ASCII digits.


def arrow(s: pd.Series) -> pa.Array:
    """The values of a string Series as a pyarrow array."""
    return pa.array(s.array, type=pa.large_string())


def extract(s: pd.Series, pattern: str) -> pd.DataFrame:
    """Named regex groups as string columns, NA where the value does not match or a group is empty."""
    groups = pc.extract_regex(arrow(s), pattern)
    columns = {f.name: pd.arrays.ArrowStringArray(c) for f, c in zip(groups.type, groups.flatten(), strict=True)}
    return pd.DataFrame(columns, index=s.index).replace("", pd.NA)


def matches(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask of values in which ``pattern`` matches (False for NA); anchor the pattern as needed."""
    found = pc.fill_null(pc.match_substring_regex(arrow(s), pattern), False)
    return found.to_numpy(zero_copy_only=False).astype(bool)


def mask(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask of values matching ``pattern`` in full."""
    return matches(s, f"^(?:{pattern})$")


def limit_length(u: pd.Series, field: FieldSpec, reasons: np.ndarray) -> pd.Series:
    """Blank out and explain values longer than ``field.max_length``."""
    if field.max_length is None:
        return u
    too_long = (u.str.len() > field.max_length).fillna(False).to_numpy(bool)
    reasons[too_long] = [f"longer than {field.max_length} characters ({len(v)})" for v in u[too_long]]
    return u.mask(too_long)
