"""One value of a research field, read as its type reads it: normalized, or refused with a reason.

For a value a person enters (a reviewer's answer), one at a time: phones, emails, dates, money and
names through the platform's normalizers (the same verdicts as a whole column gets), URLs, years
and counts by simple checks. A reason never repeats the value: it may be client data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import urlsplit

import pandas as pd

from bpo.normalizers import NORMALIZERS
from bpo.research.brief import FieldType
from bpo.spec import FieldSpec, ProcessSpec, TargetSpec

# the platform normalizer that reads each research type; url, year and count are checked here
_NORMALIZER_OF: dict[str, str] = {"text": "text", "name": "name", "organisation": "text", "email": "email",
                                  "phone": "phone", "date": "date", "money": "money"}
_REFUSED: dict[str, str] = {
    "email": "not a valid email address",
    "date": "not a date (write it as YYYY-MM-DD)",
    "money": "not an amount of money with its currency (e.g. 1200.50 EUR)",
    "name": "not a name",
    "text": "empty",
    "organisation": "empty",
}
_COUNT = re.compile(r"\d{1,3}(?:[,  ]\d{3})+|\d+")


@dataclass(frozen=True)
class Checked:
    """A value as its field type reads it: ``normalized`` when it passes, else ``reason`` says why not."""

    normalized: str | None
    reason: str | None = None


def check_value(value: str, type_: FieldType, *, country: str | None = None, currency: str | None = None,
                minimum: int | None = None, maximum: int | None = None) -> Checked:
    """Read ``value`` as a field of ``type_`` (``country``: a phone's region without a country code;
    ``currency``: money's without a symbol; ``minimum``/``maximum``: a year's or count's range)."""
    text = value.strip()
    if not text:
        return Checked(None, "empty")
    if type_ == "url":
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", text):
            return Checked(None, "not an http(s) URL")
        return Checked(text)
    if type_ in ("year", "count"):
        return _number(text, type_, minimum, maximum)
    return _normalized(text, type_, country, currency)


def _number(text: str, type_: str, minimum: int | None, maximum: int | None) -> Checked:
    if type_ == "year":
        if not re.fullmatch(r"\d{4}", text):
            return Checked(None, "not a year (four digits)")
        number = int(text)
    else:
        if not _COUNT.fullmatch(text):
            return Checked(None, "not a count (a whole number, 0 or more)")
        number = int(re.sub(r"\D", "", text))
    if minimum is not None and number < minimum:
        return Checked(None, f"below the field's minimum {minimum}")
    if maximum is not None and number > maximum:
        return Checked(None, f"above the field's maximum {maximum}")
    return Checked(str(number))


def _normalized(text: str, type_: str, country: str | None, currency: str | None) -> Checked:
    kind = _NORMALIZER_OF[type_]
    field = FieldSpec(name="value", type=kind, default_currency=currency)  # type: ignore[arg-type]
    spec = ProcessSpec(name="research", target=TargetSpec(table="research", key=["value"]), suite="",
                       fields={"value": field}, default_region=(country or "US").upper())
    raw = pd.Series([text], name="value", dtype="string")
    result = NORMALIZERS[kind](raw, spec.fields["value"], pd.DataFrame(index=raw.index), spec)
    got = result.values.iloc[0]
    if got is None or got is pd.NA:
        if type_ == "phone":
            return Checked(None, f"not a valid phone number in region {spec.default_region} "
                                 "(write it with its country code, +…)")
        if result.flags.iloc[0] == "ambiguous_date":
            return Checked(None, "an ambiguous day/month date (write it as YYYY-MM-DD)")
        return Checked(None, _REFUSED.get(type_, f"not a valid {type_}"))
    if isinstance(got, Decimal):
        code = result.extra.get("value_currency")
        unit = None if code is None else code.iloc[0]
        return Checked(f"{got} {unit}" if isinstance(unit, str) else str(got))
    return Checked(str(got))
