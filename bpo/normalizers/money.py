"""Amounts of money: a Decimal with two places, and the ISO currency it is in.

What a currency symbol means comes from CLDR (through babel): ``€`` is only ever EUR, but ``$``
is the dollar of a dozen countries and ``kr`` the krona or krone of four. A symbol is read as the
field's ``default_currency`` when people of the countries using that currency write it so (``$``
for CAD in Canada, ``¥`` for CNY in China, ``kr`` for NOK in Norway), as the code written beside
it when there is one (``$10 CAD``), else as English writes it (``$`` USD, ``¥`` JPY); a symbol
none of these settle (``kr`` with a USD default), or a code ISO 4217 does not have, is refused
with its reason.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from functools import lru_cache

import numpy as np
import pandas as pd
from babel import Locale, localedata
from babel.core import get_global
from babel.numbers import list_currencies

from bpo.normalizers.common import STRING, Normalized, clean, distinct, extract, mask, nones, result
from bpo.spec import FieldSpec, ProcessSpec

_CODE = "[A-Z]{3}"
# A currency token as written: a short run of anything but digits, spaces, signs and brackets ($,
# CA$, R$, CN¥, USD, kr., zł). Which currency it names is decided per distinct token, so a symbol
# nothing settles ("kr" with a USD default) is refused by name rather than making the value
# unreadable. (Unicode classes such as \p{Sc} would make RE2 ten times slower here.)
_TOKEN = r"[^\d\s().,+\-]{1,5}\.?"
# Amounts with 3+ decimals are refused rather than rounded: "1.234" is as likely European thousands.
_AMOUNT_EUROPEAN = r"\d{1,3}(?:\.\d{3})+,\d{2}|\d+,\d{2}"
_AMOUNT_US = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_CENTS = Decimal("0.01")
_MONEY = (
    rf"^(?P<open>\()? ?(?P<sign1>[-+])? ?(?P<cur1>{_TOKEN})? ?(?P<sign2>[-+])? ?(?P<number>\d[\d.,]*)"
    rf" ?(?P<cur2>{_TOKEN})? ?(?P<sign3>-)?(?P<close>\))?$"
)


def _symbol_key(symbol: str) -> str:
    """How a symbol is compared: compatibility form (fullwidth ￥ is ¥), upper case, no trailing dot."""
    return unicodedata.normalize("NFKC", symbol).upper().rstrip(".")


def _usable(symbol: str, code: str) -> bool:
    """A symbol a person types: not the ISO code itself, no spaces or invisible marks."""
    return bool(symbol) and symbol != code and symbol.isprintable() and " " not in symbol and code != "XXX"


@lru_cache(maxsize=1)
def _codes() -> frozenset[str]:
    """The ISO 4217 codes CLDR knows."""
    return frozenset(list_currencies())


@lru_cache(maxsize=1)
def _english_symbols() -> dict[str, str]:
    """Symbol key -> the currency English writes with it ($ USD, ¥ JPY, CA$ CAD): the reading without context."""
    return {_symbol_key(s): code for code, s in Locale("en").currency_symbols.items() if _usable(s, code)}


@lru_cache(maxsize=64)
def _local_symbols(code: str) -> frozenset[str]:
    """Symbol keys the people of the territories whose currency is ``code`` write it with."""
    territories = {
        territory
        for territory, currencies in get_global("territory_currencies").items()
        if any(c[0] == code and c[2] is None and c[3] for c in currencies)  # current legal tender
    }
    symbols = {s for s, c in _english_symbols().items() if c == code}
    for ident in localedata.locale_identifiers():
        if ident.rsplit("_", 1)[-1] in territories:
            symbol = Locale.parse(ident).currency_symbols.get(code, "")
            if _usable(symbol, code):
                symbols.add(_symbol_key(symbol))
    return frozenset(symbols)


def _meaning(token: object, other: object, default: str | None) -> str | None:
    """The ISO code a currency token stands for beside the ``other`` token, or None where nothing settles it."""
    if not isinstance(token, str):
        return None
    if re.fullmatch(_CODE, token) and token in _codes():
        return token
    key = _symbol_key(token)
    if isinstance(other, str) and re.fullmatch(_CODE, other) and key in _local_symbols(other):
        return other
    if default and key in _local_symbols(default):
        return default
    return _english_symbols().get(key)


def normalize_money(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Decimal amounts (2 places) plus a ``<name>_currency`` ISO code column."""
    codes, u = distinct(clean(raw))
    default = field.default_currency.upper() if field.default_currency else None
    m = extract(u.str.upper(), _MONEY)
    number = m["number"]
    european = mask(number, _AMOUNT_EUROPEAN)
    us = mask(number, _AMOUNT_US)
    plain = number.str.replace(",", "", regex=False)
    plain[european] = number[european].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    parens = m["open"].notna().to_numpy(bool)
    balanced = parens == m["close"].notna().to_numpy(bool)
    sign_columns = m[["sign1", "sign2", "sign3"]]
    signs = sign_columns.notna().sum(axis=1).to_numpy() + parens
    minus = (sign_columns == "-").any(axis=1).to_numpy(bool) | parens
    # Tokens repeat (a batch holds a handful of currencies): each distinct pair is read once.
    first_codes, firsts = pd.factorize(m["cur1"])
    second_codes, seconds = pd.factorize(m["cur2"])
    pair_ids, pair_codes = np.unique((first_codes + 1) * (len(seconds) + 1) + second_codes + 1, return_inverse=True)
    first_of = np.array([None, *firsts], dtype=object)[pair_ids // (len(seconds) + 1)]
    second_of = np.array([None, *seconds], dtype=object)[pair_ids % (len(seconds) + 1)]
    read = [(_meaning(a, b, default), _meaning(b, a, default)) for a, b in zip(first_of, second_of, strict=True)]
    before = np.array([r[0] for r in read], dtype=object)[pair_codes]
    after = np.array([r[1] for r in read], dtype=object)[pair_codes]
    has_before, has_after = m["cur1"].notna().to_numpy(bool), m["cur2"].notna().to_numpy(bool)
    unsettled = (has_before & pd.isna(before)) | (has_after & pd.isna(after))
    conflict = ~unsettled & pd.notna(before) & pd.notna(after) & (before != after)
    currency = np.where(pd.notna(before), before, after)
    if default:
        currency = np.where(has_before | has_after, currency, default)
    no_currency = pd.isna(currency)
    parsed = (european | us) & balanced & (signs <= 1)
    ok = parsed & ~unsettled & ~conflict & ~no_currency
    amount = ("-" + plain).where(minus, plain)
    values = np.full(len(u), pd.NA, dtype=object)
    values[ok] = [Decimal(a).quantize(_CENTS) for a in amount[ok]]
    reasons = nones(len(u))
    reasons[~parsed] = [f"not an amount of money: {v!r}" for v in u[~parsed]]
    unknown = parsed & unsettled
    reasons[unknown] = [
        f"the currency sign or code in {v!r} does not name one currency"
        + (f" and is not how {default} is written" if default else " and the field has no default currency")
        for v in u[unknown]
    ]
    conflicting = parsed & ~unsettled & conflict
    reasons[conflicting] = [f"conflicting currencies in {v!r}" for v in u[conflicting]]
    missing = parsed & ~unsettled & ~conflict & no_currency
    reasons[missing] = [f"no currency in {v!r} and the field has no default currency" for v in u[missing]]
    # numpy's stub takes no None as a fill; at runtime it is the object None (an object array)
    currency_out = pd.array(np.where(ok, currency, None), dtype=STRING)  # type: ignore[call-overload]
    return result(raw, codes, values, reasons, extra={f"{field.name}_currency": currency_out})
