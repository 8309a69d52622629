"""Countries as ISO 3166 alpha-2 codes, from the names and codes people write.

English names (ISO's, the official and common ones, CLDR's) and alpha-2 and alpha-3 codes, compared
folded (case, accents kept, spacing and punctuation aside): "USA", "U.S.A.", "United States of America"
and "us" all read as US. Used where a country decides how another value is read (a phone's region) and by
the cleanup's country role.
"""

from __future__ import annotations

import unicodedata
from functools import cache

import pandas as pd
import pycountry
from babel import Locale

from bpo.normalizers.common import STRING, clean


def fold(value: str) -> str:
    """``value`` compared as a person reads it: NFKC, case-folded, letters and digits only."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", value).casefold() if ch.isalnum())


@cache
def _lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for code, name in Locale("en").territories.items():
        if len(code) == 2 and code.isalpha():
            lookup[fold(name)] = code
    for country in pycountry.countries:
        for name in (getattr(country, "official_name", None), getattr(country, "common_name", None), country.name):
            if name:
                lookup[fold(name)] = country.alpha_2
    for country in pycountry.countries:  # codes last: a code wins over a name that folds the same
        lookup[country.alpha_3.casefold()] = country.alpha_2
        lookup[country.alpha_2.casefold()] = country.alpha_2
    return lookup


def country_codes(raw: pd.Series) -> pd.Series:
    """ISO alpha-2 codes for the country names and codes it knows; NA for the rest."""
    lookup = _lookup()
    codes = {v: lookup.get(fold(v)) for v in clean(raw).dropna().unique()}  # each distinct value looked up once
    return clean(raw).map(lambda v: codes.get(v) if isinstance(v, str) else pd.NA).astype(STRING)
