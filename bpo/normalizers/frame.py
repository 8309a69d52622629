"""A whole frame normalized by the spec: one normalizer per field type, and the long-form issues."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpo.normalizers.common import STRING, Array, Normalized, NormalizedFrame, Normalizer
from bpo.normalizers.date import normalize_date
from bpo.normalizers.email import normalize_email
from bpo.normalizers.enum import normalize_enum
from bpo.normalizers.integer import normalize_integer
from bpo.normalizers.money import normalize_money
from bpo.normalizers.name import normalize_name
from bpo.normalizers.phone import normalize_phone
from bpo.normalizers.postal_code import normalize_postal_code
from bpo.normalizers.text import normalize_text
from bpo.spec import ProcessSpec

ISSUE_COLUMNS = ["row", "field", "check", "reason"]
_NOTHING_YET = pd.DataFrame()

NORMALIZERS: dict[str, Normalizer] = {
    "text": normalize_text,
    "name": normalize_name,
    "email": normalize_email,
    "phone": normalize_phone,
    "date": normalize_date,
    "money": normalize_money,
    "postal_code": normalize_postal_code,
    "enum": normalize_enum,
    "integer": normalize_integer,
}


def _issues(index: pd.Index, spec: ProcessSpec, results: dict[str, Normalized]) -> pd.DataFrame:
    """Long-form issues, one row per reason or flag, ordered by row then spec field order."""
    pieces = []
    for order, (name, field) in enumerate(spec.fields.items()):
        result = results[name]
        flags = result.flags.to_numpy(object)
        reasons = result.reasons.to_numpy(object)
        flagged = pd.notna(flags)
        positions = np.flatnonzero(flagged | pd.notna(reasons))
        if not len(positions):
            continue
        flagged = flagged[positions]
        texts = reasons[positions]
        pieces.append(
            pd.DataFrame(
                {
                    "position": positions,
                    "order": order,
                    "row": index[positions],
                    "field": name,
                    "check": np.where(flagged, flags[positions], f"normalize_{field.type}"),
                    "reason": np.where(pd.notna(texts), texts, flags[positions]),
                }
            )
        )
    if not pieces:
        return pd.DataFrame({c: pd.Series([], dtype=index.dtype if c == "row" else object) for c in ISSUE_COLUMNS})
    issues = pd.concat(pieces, ignore_index=True).sort_values(["position", "order"], kind="stable")
    return issues[ISSUE_COLUMNS].reset_index(drop=True)


def normalize_frame(raw: pd.DataFrame, spec: ProcessSpec) -> NormalizedFrame:
    """Normalize every field of ``spec``; underscore columns of ``raw`` pass through unchanged."""
    blank = pd.Series(pd.NA, index=raw.index, dtype=STRING)
    # Postal codes read the normalized country, so fields with a country_field go last.
    ordered = sorted(spec.fields.values(), key=lambda f: f.country_field is not None)
    results: dict[str, Normalized] = {}
    for field in ordered:
        column = raw[field.name] if field.name in raw.columns else blank.rename(field.name)
        # only a field reading another (a postal code its country) is given the values normalized so far
        done = (pd.DataFrame({name: r.values.array for name, r in results.items()}, index=raw.index)
                if field.country_field else _NOTHING_YET)
        results[field.name] = NORMALIZERS[field.type](column, field, done, spec)
    columns: dict[str, Array] = {}
    for name in spec.fields:
        columns[name] = results[name].values.array
        columns.update({extra: s.array for extra, s in results[name].extra.items()})
    for name in raw.columns:
        if isinstance(name, str) and name.startswith("_"):
            columns[name] = raw[name].array
    data = pd.DataFrame(columns, index=raw.index)
    return NormalizedFrame(data=data, issues=_issues(raw.index, spec, results))
