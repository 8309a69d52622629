"""Research values in the platform normalizers' canonical form, a field's values at a time.

The brief's field types map onto the platform's normalizers (phones E.164, emails, ISO dates,
money, names, whole numbers for counts, plain text for organisations) and the two added for
research (``url``, ``year``). A value the normalizer refuses comes back as None: reconciliation
takes it as weak evidence, never drops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from bpo.normalizers.common import STRING, Normalizer
from bpo.normalizers.date import normalize_date
from bpo.normalizers.email import normalize_email
from bpo.normalizers.integer import normalize_integer
from bpo.normalizers.money import normalize_money
from bpo.normalizers.name import normalize_name
from bpo.normalizers.phone import normalize_phone
from bpo.normalizers.text import normalize_text
from bpo.normalizers.url import normalize_url
from bpo.normalizers.year import normalize_year
from bpo.research.brief import ResearchField
from bpo.spec import FieldSpec, ProcessSpec, TargetSpec

# research type -> (platform normalizer, the FieldSpec type it is checked as)
_NORMALIZERS: dict[str, tuple[Normalizer, str]] = {
    "text": (normalize_text, "text"),
    "organisation": (normalize_text, "text"),  # a company's name keeps its own casing and digits (3M)
    "name": (normalize_name, "name"),
    "email": (normalize_email, "email"),
    "phone": (normalize_phone, "phone"),
    "date": (normalize_date, "date"),
    "money": (normalize_money, "money"),
    "count": (normalize_integer, "integer"),
    "year": (normalize_year, "date"),
    "url": (normalize_url, "text"),
}
_EMPTY = pd.DataFrame()


@lru_cache(maxsize=64)
def _specs(kind: str, name: str, country: str | None, currency: str | None) -> tuple[FieldSpec, ProcessSpec]:
    field = FieldSpec.model_validate({"name": name, "type": kind, "default_currency": currency})
    spec = ProcessSpec(name="research", target=TargetSpec(table="research", key=[]), suite="research",
                       default_region=(country or "US").upper(), fields={})
    return field, spec


def normalize_values(field: ResearchField, values: Sequence[str]) -> list[str | None]:
    """The canonical form of each value of ``field`` (None where it cannot be normalized), in one batch."""
    if not values:
        return []
    normalizer, kind = _NORMALIZERS[field.type]
    spec_field, spec = _specs(kind, field.name or "value", field.country, field.currency)
    raw = pd.Series(list(values), dtype=STRING)
    done = normalizer(raw, spec_field, _EMPTY, spec)
    out = done.values.astype(object).where(done.values.notna(), None).tolist()
    if field.type == "money":  # the amount and its currency, one comparable string: "1200.00 GBP"
        currency = done.extra[f"{spec_field.name}_currency"].tolist()
        out = [None if v is None else f"{v} {c}" for v, c in zip(out, currency, strict=True)]
    return [None if v is None else str(v) for v in out]
