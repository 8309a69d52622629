"""Free text: whitespace normalized, length checked."""

from __future__ import annotations

import pandas as pd

from bpo.normalizers.common import Normalized, clean, distinct, limit_length, nones, result
from bpo.spec import FieldSpec, ProcessSpec


def normalize_text(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Whitespace-normalized text, checked against ``max_length``."""
    codes, u = distinct(clean(raw))
    reasons = nones(len(u))
    u = limit_length(u, field, reasons)
    return result(raw, codes, u.array, reasons)
