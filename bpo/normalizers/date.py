"""Dates in ISO form from the common written forms; an ambiguous day/month is flagged, never guessed."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from bpo.normalizers.common import STRING, Normalized, clean, distinct, extract, nones, result
from bpo.spec import FieldSpec, ProcessSpec

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_WEEKDAY = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,? )?"
_ORDINAL = r"(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4}|\d{2})"
_TIME = r"(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_DATE_COLUMNS = ["year", "month", "day"]


def _full_year(year: pd.Series) -> pd.Series:
    """Four-digit years; two-digit 00-69 are 2000s, 70-99 are 1900s."""
    number = year.astype(float)
    short = (year.str.len() == 2).to_numpy(bool)
    return number.where(~short, number + np.where(number < 70, 2000, 1900))


def _read_ymd(found: pd.DataFrame, order: str | None) -> pd.DataFrame:
    """Year-first forms: 2024-03-05, 2024/03/05, 20240305."""
    return found[_DATE_COLUMNS].astype(float)


def _read_numeric(found: pd.DataFrame, order: str | None) -> pd.DataFrame:
    """Day/month forms (03/05/2024, 5.3.24); ambiguous rows carry the month-first reading."""
    a, b = found["first"].astype(float), found["second"].astype(float)
    both_small, differ = (a <= 12) & (b <= 12), a != b
    day_first = ((a > 12) & (b <= 12)) | (both_small & differ & (order == "DMY"))
    possible = (a <= 12) | (b <= 12)
    return pd.DataFrame(
        {
            "year": _full_year(found["year"]),
            "month": b.where(day_first, a).where(possible),
            "day": a.where(day_first, b).where(possible),
            "ambiguous": both_small & differ & (order is None),
        }
    )


def _read_named(found: pd.DataFrame, order: str | None) -> pd.DataFrame:
    """Month-name forms; rows whose word is not an English month are not dates of this form."""
    known = found[found["month"].isin(_MONTHS)]
    month = known["month"].map(_MONTHS).astype(float)
    return pd.DataFrame({"year": _full_year(known["year"]), "month": month, "day": known["day"].astype(float)})


_DATE_FORMS: list[tuple[str, Callable[[pd.DataFrame, str | None], pd.DataFrame]]] = [
    (r"^(?P<year>\d{4})[-/.](?P<month>\d{1,2})[-/.](?P<day>\d{1,2})" + _TIME + "$", _read_ymd),
    (r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})$", _read_ymd),
    (r"^(?P<first>\d{1,2})[-/.](?P<second>\d{1,2})[-/.]" + _YEAR + "$", _read_numeric),
    (rf"^{_WEEKDAY}(?P<day>\d{{1,2}}){_ORDINAL}[ -](?P<month>[a-z]+)\.?,?[ -]{_YEAR}$", _read_named),
    (rf"^{_WEEKDAY}(?P<month>[a-z]+)\.?[ -](?P<day>\d{{1,2}}){_ORDINAL},? {_YEAR}$", _read_named),
]


def _iso(year: int, month: int, day: int) -> str:
    """YYYY-MM-DD."""
    return f"{year:04d}-{month:02d}-{day:02d}"


def normalize_date(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """ISO dates (YYYY-MM-DD) from the common written forms; ambiguous day/month is flagged, not guessed."""
    codes, u = distinct(clean(raw))
    low = u.str.lower()
    parts = pd.DataFrame(np.nan, index=u.index, columns=_DATE_COLUMNS)
    recognized = np.zeros(len(u), dtype=bool)
    ambiguous = np.zeros(len(u), dtype=bool)
    for pattern, read in _DATE_FORMS:
        found = extract(low[~recognized], pattern).dropna(how="all")
        if found.empty:
            continue
        got = read(found, field.date_order)
        parts.loc[got.index, _DATE_COLUMNS] = got[_DATE_COLUMNS].to_numpy(float)
        recognized[got.index] = True
        if "ambiguous" in got:
            ambiguous[got.index[got["ambiguous"].to_numpy(bool)]] = True
    dates = pd.to_datetime(parts, errors="coerce").where(~ambiguous)
    values = dates.dt.strftime("%Y-%m-%d").astype(STRING)
    reasons = nones(len(u))
    flags = nones(len(u))
    reasons[~recognized] = [f"not a date: {v!r}" for v in u[~recognized]]
    impossible = recognized & ~ambiguous & dates.isna().to_numpy(bool)
    reasons[impossible] = [f"not a date: {v!r} (no such day)" for v in u[impossible]]
    reasons[ambiguous] = [
        f"ambiguous day/month: {v!r} could be {_iso(y, m, d)} or {_iso(y, d, m)}"
        for v, y, m, d in zip(u[ambiguous], *parts[ambiguous].to_numpy(int).T, strict=True)
    ]
    flags[ambiguous] = "ambiguous_date"
    return result(raw, codes, values.array, reasons, flags)
