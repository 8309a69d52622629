"""One value of a research field, read as its type reads it: normalized, or refused with a reason.

For a value a person enters (a reviewer's answer): the same normalizers as the extracted candidates
(``bpo.research.normalize``), so an entered value and a source's are compared in one form, plus the
field's range for years and counts. A reason never repeats the value: it may be client data.
"""

from __future__ import annotations

from dataclasses import dataclass

from bpo.research.brief import FieldType, ResearchField
from bpo.research.normalize import normalize_values

_REFUSED: dict[str, str] = {
    "email": "not a valid email address",
    "date": "not a date, or an ambiguous day/month one (write it as YYYY-MM-DD)",
    "money": "not an amount of money with its currency (e.g. 1200.50 EUR)",
    "name": "not a name",
    "url": "not an http(s) URL",
    "year": "not a year (four digits)",
    "count": "not a count (a whole number, 0 or more)",
}


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
    field = ResearchField(name="value", type=type_, country=country, currency=currency)
    normalized = normalize_values(field, [text])[0]
    if normalized is None or (type_ == "count" and int(normalized) < 0):
        if type_ == "phone":
            return Checked(None, f"not a valid phone number in region {(country or 'US').upper()} "
                                 "(write it with its country code, +…)")
        return Checked(None, _REFUSED.get(type_, f"not a valid {type_}"))
    if type_ in ("year", "count"):
        number = int(normalized)
        if minimum is not None and number < minimum:
            return Checked(None, f"below the field's minimum {minimum}")
        if maximum is not None and number > maximum:
            return Checked(None, f"above the field's maximum {maximum}")
    return Checked(normalized)
