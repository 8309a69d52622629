"""Years: a four-digit year on its own ("1999", "c. 1999", "March 1999"), or the year of a date the date
normalizer reads."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpo.normalizers.common import STRING, Normalized, clean, distinct, extract, nones, result
from bpo.normalizers.date import normalize_date
from bpo.spec import FieldSpec, ProcessSpec

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?,?"
_YEAR = rf"^(?:(?:in|since|c\.|ca\.|circa|{_MONTH}) ?)?(?P<year>\d{{4}})$"


def normalize_year(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Four-digit years as text ("1999"); a full date gives its year; an ambiguous day/month does not matter."""
    codes, u = distinct(clean(raw))
    values = extract(u.str.lower(), _YEAR)["year"].to_numpy(object)
    rest = np.flatnonzero(pd.isna(values))
    if len(rest):
        # the day/month order cannot change the year, so read dates month-first rather than refuse them
        dated = normalize_date(u.iloc[rest], field.model_copy(update={"date_order": "MDY"}), frame, spec)
        values[rest] = dated.values.str[:4].to_numpy(object)
    values = np.where(pd.isna(values), None, values)
    reasons = nones(len(u))
    reasons[pd.isna(values)] = "not a year"
    return result(raw, codes, pd.array(values, dtype=STRING), reasons)
