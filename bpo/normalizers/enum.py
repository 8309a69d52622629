"""Enumerations: the spelling keyed in mapped to the spec's canonical value, near misses flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from bpo.normalizers.common import STRING, Normalized, clean, distinct, nones, result
from bpo.spec import FieldSpec, ProcessSpec

# rapidfuzz's ratio (normalized Indel similarity, 0-100), as difflib's ratio was at 0.8
_FUZZY_CUTOFF = 80.0


def _enum_key(value: str) -> str:
    """Comparison key: lower-case letters and digits only, so "U.S.A." == "usa"."""
    return "".join(ch for ch in value.casefold() if ch.isalnum())


def _enum_lookup(field: FieldSpec) -> dict[str, str]:
    """Key of every canonical value and spelling -> canonical value (first declared wins)."""
    lookup: dict[str, str] = {}
    for canonical, spellings in field.values.items():
        for spelling in [canonical, *spellings]:
            lookup.setdefault(_enum_key(spelling), canonical)
    return lookup


def normalize_enum(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Canonical enum values; near misses are mapped but flagged ``low_confidence_mapping``."""
    codes, u = distinct(clean(raw))
    lookup = _enum_lookup(field)
    keys = list(lookup)
    values = np.full(len(u), None, dtype=object)
    reasons = nones(len(u))
    flags = nones(len(u))
    value_keys = [_enum_key(v) for v in u]
    exact = np.array([k in lookup for k in value_keys], dtype=bool)
    values[exact] = [lookup[k] for k, hit in zip(value_keys, exact, strict=True) if hit]
    misses = np.flatnonzero(~exact)
    if len(misses):
        # every miss against every spelling in one call; the best score wins, the first declared on a tie
        scores = process.cdist([value_keys[i] for i in misses], keys, scorer=fuzz.ratio,
                               score_cutoff=_FUZZY_CUTOFF, dtype=np.float32)
        best = scores.argmax(axis=1)
        close = scores[np.arange(len(misses)), best] >= _FUZZY_CUTOFF
        for i, j in zip(misses[close], best[close], strict=True):
            values[i] = lookup[keys[j]]
            flags[i] = "low_confidence_mapping"
            reasons[i] = f"{u[i]!r} mapped to {values[i]!r} with low confidence"
        allowed = ", ".join(field.values)
        for i in misses[~close]:
            reasons[i] = f"{u[i]!r} is not one of the allowed values: {allowed}"
    return result(raw, codes, pd.array(values, dtype=STRING), reasons, flags)
