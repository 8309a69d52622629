"""Whole numbers as people and spreadsheets write them."""

from __future__ import annotations

import pandas as pd

from bpo.normalizers.common import Normalized, clean, distinct, extract, nones, result
from bpo.spec import FieldSpec, ProcessSpec

# thousands grouped by commas, or by spaces (1 250, as much of Europe writes; a no-break or thin space is
# a space once cleaned) — one separator throughout
_INTEGER = r"^(?P<sign>[+-]?)(?P<digits>\d{1,3}(?:,\d{3})+|\d{1,3}(?: \d{3})+|\d+)(?:\.0+)?$"
_MAX_INT_DIGITS = 18  # always fits in int64


def normalize_integer(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Whole numbers as Int64; thousands commas or spaces and a zero fraction ("12.0", as spreadsheets write)
    allowed."""
    codes, u = distinct(clean(raw))
    parts = extract(u, _INTEGER)
    digits = parts["digits"].str.replace(r"[, ]", "", regex=True)
    matched = parts["digits"].notna().to_numpy(bool)
    fits = matched & (digits.str.len() <= _MAX_INT_DIGITS).fillna(False).to_numpy(bool)
    values = pd.Series(pd.NA, index=u.index, dtype="Int64")
    sign = parts["sign"].fillna("").str.replace("+", "", regex=False)  # pyarrow's int cast rejects a plus sign
    values[fits] = (sign[fits] + digits[fits]).astype("Int64")
    reasons = nones(len(u))
    reasons[~matched] = [f"not an integer: {v!r}" for v in u[~matched]]
    reasons[matched & ~fits] = [f"integer too large: {v!r}" for v in u[matched & ~fits]]
    return result(raw, codes, values.array, reasons)
