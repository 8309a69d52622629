"""Values as the ops database's JSON columns can hold them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd


def json_safe(value: Any) -> Any:
    """Values as JSON can hold them: Decimal as text, NA as None."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
