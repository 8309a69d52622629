"""Field normalizers: turn keyed-in strings into canonical values, one function per field type.

Pure functions over pandas objects: no Prefect, no I/O. Every normalizer cleans the column, works on
its distinct values and broadcasts the results back to the rows, so per-value library calls
(email_validator, phonenumbers, difflib) run once per distinct value, not once per row.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pandas as pd
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pandas.api.extensions import ExtensionArray

from bpo.spec import FieldSpec, ProcessSpec

STRING = pd.StringDtype()

# Written with literal characters so the pattern means the same to RE2 (pyarrow) and to Python's re.
_WHITESPACE = "[\\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"

ISSUE_COLUMNS = ["row", "field", "check", "reason"]


@dataclasses.dataclass(frozen=True)
class Normalized:
    """One field's normalized values; ``reasons`` also explains any raised flag."""

    values: pd.Series
    reasons: pd.Series
    flags: pd.Series
    extra: dict[str, pd.Series] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class NormalizedFrame:
    """All fields of a spec normalized, plus the long-form table of problems found."""

    data: pd.DataFrame
    issues: pd.DataFrame


Normalizer = Callable[[pd.Series, FieldSpec, pd.DataFrame, ProcessSpec], Normalized]
Array = ExtensionArray | np.ndarray


# ---------------------------------------------------------------------------------------------
# shared plumbing


def clean(raw: pd.Series) -> pd.Series:
    """Trim and collapse whitespace; missing or blank values become NA (nullable string dtype)."""
    s = raw.astype(STRING).str.replace(_WHITESPACE, " ", regex=True).str.strip()
    return s.where(s.str.len() > 0)


def _distinct(s: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes per row (-1 for NA) and the distinct non-NA values as a 0..k-1 indexed Series."""
    codes, uniques = pd.factorize(s)
    return codes, pd.Series(uniques.array, dtype=STRING)


def _nones(n: int) -> np.ndarray:
    """An object array of ``n`` Nones (no reason / no flag)."""
    return np.full(n, None, dtype=object)


def _spread(per_value: Array, codes: np.ndarray, fill: object) -> Array:
    """Broadcast per-distinct-value results to rows; rows with code -1 (blank) get ``fill``."""
    if isinstance(per_value, ExtensionArray):
        return per_value.take(codes, allow_fill=True)
    padded = np.empty(len(per_value) + 1, dtype=object)
    padded[:-1] = per_value
    padded[-1] = fill  # code -1 indexes this last slot
    return padded[codes]


def _result(
    raw: pd.Series,
    codes: np.ndarray,
    values: Array,
    reasons: np.ndarray,
    flags: np.ndarray | None = None,
    extra: dict[str, Array] | None = None,
) -> Normalized:
    """Assemble a Normalized from per-distinct-value results."""
    index = raw.index
    flags = _nones(len(reasons)) if flags is None else flags
    return Normalized(
        values=pd.Series(_spread(values, codes, pd.NA), index=index, name=raw.name),
        reasons=pd.Series(_spread(reasons, codes, None), index=index, dtype=object),
        flags=pd.Series(_spread(flags, codes, None), index=index, dtype=object),
        extra={
            name: pd.Series(_spread(col, codes, pd.NA), index=index, name=name) for name, col in (extra or {}).items()
        },
    )


def _mask(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean numpy mask of values fully matching ``pattern``."""
    return s.str.fullmatch(pattern).fillna(False).to_numpy(bool)


def _limit_length(u: pd.Series, field: FieldSpec, reasons: np.ndarray) -> pd.Series:
    """Blank out and explain values longer than ``field.max_length``."""
    if field.max_length is None:
        return u
    too_long = (u.str.len() > field.max_length).to_numpy(bool)
    reasons[too_long] = [f"longer than {field.max_length} characters ({len(v)})" for v in u[too_long]]
    return u.mask(too_long)


# ---------------------------------------------------------------------------------------------
# text, name, integer


def normalize_text(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Whitespace-normalized text, checked against ``max_length``."""
    codes, u = _distinct(clean(raw))
    reasons = _nones(len(u))
    u = _limit_length(u, field, reasons)
    return _result(raw, codes, u.array, reasons)


def _recase_word(word: str) -> str:
    """Title-case an all-lower or all-upper word; leave deliberate mixed case (DeAndre) alone."""
    return word.title() if word.islower() or word.isupper() else word


def normalize_name(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Person names title-cased word by word: "JOHN o'neil" -> "John O'Neil"."""
    codes, u = _distinct(clean(raw))
    recased = pd.Series([" ".join(_recase_word(w) for w in v.split(" ")) for v in u], dtype=STRING)
    reasons = _nones(len(u))
    recased = _limit_length(recased, field, reasons)
    return _result(raw, codes, recased.array, reasons)


_INTEGER = r"^([+-]?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?$"
_MAX_INT_DIGITS = 18  # always fits in int64


def normalize_integer(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Whole numbers as Int64; thousands commas and a zero fraction ("12.0", as spreadsheets write) allowed."""
    codes, u = _distinct(clean(raw))
    parts = u.str.extract(_INTEGER)
    digits = parts[1].str.replace(",", "", regex=False)
    matched = parts[1].notna().to_numpy(bool)
    fits = matched & (digits.str.len() <= _MAX_INT_DIGITS).fillna(False).to_numpy(bool)
    values = pd.Series(pd.NA, index=u.index, dtype="Int64")
    sign = parts[0].str.replace("+", "", regex=False)  # pyarrow's int cast rejects a plus sign
    values[fits] = (sign[fits] + digits[fits]).astype("Int64")
    reasons = _nones(len(u))
    reasons[~matched] = [f"not an integer: {v!r}" for v in u[~matched]]
    reasons[matched & ~fits] = [f"integer too large: {v!r}" for v in u[matched & ~fits]]
    return _result(raw, codes, values.array, reasons)


# ---------------------------------------------------------------------------------------------
# email

_ATEXT = r"a-z0-9_!#$%&'*+/=?^`{|}~-"
# An unquoted ASCII local part that email_validator accepts as is (its DOT_ATOM_TEXT rule).
_PLAIN_EMAIL = rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@[a-z0-9.-]+"
_EMAIL_MAX_LENGTH = 254


def _validate_email(address: str) -> tuple[str | None, str | None]:
    """(normalized lower-case address, None) or (None, the library's message)."""
    try:
        return validate_email(address, check_deliverability=False).normalized.lower(), None
    except EmailNotValidError as exc:
        return None, str(exc)


def normalize_email(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Lower-cased addresses that pass email_validator's syntax check."""
    codes, u = _distinct(clean(raw).str.lower())
    values = np.full(len(u), None, dtype=object)
    reasons = _nones(len(u))
    # For a plain local part the library's verdict depends only on the domain, and domains repeat
    # (gmail.com, the client's own domain), so validate each distinct domain once.
    plain = _mask(u, _PLAIN_EMAIL) & (u.str.len() <= _EMAIL_MAX_LENGTH).to_numpy(bool)
    domain_codes, domains = _distinct(u[plain].str.replace(r"^[^@]*@", "", regex=True))
    verdicts = [_validate_email("x@" + d) for d in domains]
    unchanged = np.array([ok == "x@" + d for (ok, _), d in zip(verdicts, domains, strict=True)], dtype=bool)
    domain_errors = np.array([err for _, err in verdicts], dtype=object)
    positions = np.flatnonzero(plain)
    good = unchanged[domain_codes]
    values[positions[good]] = u.to_numpy(object)[positions[good]]
    bad = pd.notna(domain_errors[domain_codes])
    reasons[positions[bad]] = domain_errors[domain_codes][bad]
    # The rest (quoted or international local parts, IDNA domains) goes through the library whole.
    slow = np.ones(len(u), dtype=bool)
    slow[positions[good | bad]] = False
    for i in np.flatnonzero(slow):
        values[i], reasons[i] = _validate_email(u[i])
    return _result(raw, codes, pd.array(values, dtype=STRING), reasons)


# ---------------------------------------------------------------------------------------------
# phone


def _phone_e164(number: str, region: str) -> str | None:
    """The E.164 form of a valid number, else None."""
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """E.164 numbers; national numbers are read in ``spec.default_region``."""
    # Canonicalize cheaply first so one number written several ways costs one library call.
    canonical = clean(raw).str.replace(r"[\s.()/-]", "", regex=True).str.replace(r"^00", "+", regex=True)
    codes, u = _distinct(canonical)
    region = spec.default_region
    values = [_phone_e164(v, region) for v in u]
    reasons = _nones(len(u))
    for i, (number, value) in enumerate(zip(u, values, strict=True)):
        if value is None:
            reasons[i] = f"not a valid {'international' if number.startswith('+') else region} phone number"
    return _result(raw, codes, pd.array(values, dtype=STRING), reasons)


# ---------------------------------------------------------------------------------------------
# date

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
_YEAR = r"(\d{4}|\d{2})"
_TIME = r"(?:[ t]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
# Each pattern captures (year, month, day) in that order, except _DATE_NUMERIC: (first, second, year).
_DATE_YMD = [r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})" + _TIME + "$", r"^(\d{4})(\d{2})(\d{2})$"]
_DATE_NUMERIC = r"^(\d{1,2})[-/.](\d{1,2})[-/.]" + _YEAR + "$"
_DATE_DAY_MONTH = rf"^{_WEEKDAY}(\d{{1,2}}){_ORDINAL}[ -]([a-z]+)\.?,?[ -]{_YEAR}$"
_DATE_MONTH_DAY = rf"^{_WEEKDAY}([a-z]+)\.?[ -](\d{{1,2}}){_ORDINAL},? {_YEAR}$"


def _full_year(year: pd.Series) -> pd.Series:
    """Four-digit years; two-digit 00-69 are 2000s, 70-99 are 1900s."""
    number = pd.to_numeric(year, errors="coerce").astype(float)
    short = (year.str.len() == 2).fillna(False).to_numpy(bool)
    return number.where(~short, number + np.where(number < 70, 2000, 1900))


def _numeric_month_day(first: pd.Series, second: pd.Series, order: str | None) -> tuple[pd.Series, pd.Series]:
    """Month and day of ``first/second`` numeric dates; NaN where no single reading exists."""
    a, b = first.astype(float), second.astype(float)
    nan = np.full(len(a), np.nan)
    month_first = ((b > 12) & (a <= 12)) | (a == b) | ((a <= 12) & (b <= 12) & (order == "MDY"))
    day_first = ((a > 12) & (b <= 12)) | ((a <= 12) & (b <= 12) & (a != b) & (order == "DMY"))
    month = np.select([month_first, day_first], [a, b], nan)
    day = np.select([month_first, day_first], [b, a], nan)
    return pd.Series(month, index=a.index), pd.Series(day, index=a.index)


def _ambiguity(value: str, year: float, first: float, second: float) -> str:
    """The reason text listing both readings of an ambiguous numeric date."""
    y, a, b = int(year), int(first), int(second)
    return f"ambiguous day/month: {value!r} could be {y:04d}-{a:02d}-{b:02d} or {y:04d}-{b:02d}-{a:02d}"


def normalize_date(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """ISO dates (YYYY-MM-DD) from the common written forms; ambiguous day/month is flagged, not guessed."""
    codes, u = _distinct(clean(raw))
    low = u.str.lower()
    parts = pd.DataFrame(np.nan, index=u.index, columns=["year", "month", "day"])
    recognized = np.zeros(len(u), dtype=bool)
    ambiguous = np.zeros(len(u), dtype=bool)
    numeric: pd.DataFrame | None = None
    for pattern, kind in [*((p, "ymd") for p in _DATE_YMD), (_DATE_NUMERIC, "numeric"),
                          (_DATE_DAY_MONTH, "day_month"), (_DATE_MONTH_DAY, "month_day")]:  # fmt: skip
        todo = ~recognized
        if not todo.any():
            break
        found = low[todo].str.extract(pattern)
        hit = found[0].notna()
        found = found[hit]
        rows = found.index
        recognized[rows] = True
        if kind == "ymd":
            parts.loc[rows, ["year", "month", "day"]] = found[[0, 1, 2]].astype(float).to_numpy()
        elif kind == "numeric":
            year = _full_year(found[2])
            month, day = _numeric_month_day(found[0], found[1], field.date_order)
            parts.loc[rows, ["year", "month", "day"]] = np.column_stack([year, month, day])
            numeric = pd.DataFrame({"year": year, "a": found[0].astype(float), "b": found[1].astype(float)})
            ambiguous[rows] = ((numeric.a <= 12) & (numeric.b <= 12) & (numeric.a != numeric.b)).to_numpy(bool) & (
                field.date_order is None
            )
        else:
            day_col, month_col = (0, 1) if kind == "day_month" else (1, 0)
            month = found[month_col].map(_MONTHS).astype(float)
            parts.loc[rows, ["year", "month", "day"]] = np.column_stack(
                [_full_year(found[2]), month, found[day_col].astype(float)]
            )
    dates = pd.to_datetime(parts, errors="coerce")
    values = dates.dt.strftime("%Y-%m-%d").astype(STRING)
    reasons = _nones(len(u))
    flags = _nones(len(u))
    reasons[~recognized] = [f"not a date: {v!r}" for v in u[~recognized]]
    impossible = recognized & ~ambiguous & dates.isna().to_numpy(bool)
    reasons[impossible] = [f"not a date: {v!r} (no such day)" for v in u[impossible]]
    if ambiguous.any() and numeric is not None:
        amb = numeric.loc[np.flatnonzero(ambiguous)]
        reasons[ambiguous] = [_ambiguity(u[r.Index], r.year, r.a, r.b) for r in amb.itertuples()]
        flags[ambiguous] = "ambiguous_date"
    return _result(raw, codes, values.array, reasons, flags)


# ---------------------------------------------------------------------------------------------
# money

_CURRENCY_SYMBOLS = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY", "₹": "INR"}
_CURRENCY = "([$£€¥₹]|[A-Z]{3})"
_MONEY = rf"^(\()? ?([-+])? ?{_CURRENCY}? ?([-+])? ?(\d[\d.,]*) ?{_CURRENCY}? ?(-)?(\))?$"
# Amounts with 3+ decimals are refused rather than rounded: "1.234" is as likely European thousands.
_AMOUNT_EUROPEAN = r"\d{1,3}(?:\.\d{3})+,\d{2}|\d+,\d{2}"
_AMOUNT_US = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_CENTS = Decimal("0.01")


def _currency_code(token: pd.Series) -> pd.Series:
    """ISO code for a currency symbol or 3-letter code."""
    return token.replace(_CURRENCY_SYMBOLS)


def normalize_money(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Decimal amounts (2 places) plus a ``<name>_currency`` ISO code column."""
    codes, u = _distinct(clean(raw).str.upper())
    m = u.str.extract(_MONEY)
    number = m[4]
    european = _mask(number, _AMOUNT_EUROPEAN)
    us = _mask(number, _AMOUNT_US)
    plain = number.str.replace(",", "", regex=False)
    plain[european] = number[european].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    parens = m[0].notna().to_numpy(bool)
    balanced = parens == m[7].notna().to_numpy(bool)
    signs = m[[1, 3, 6]].notna().sum(axis=1).to_numpy() + parens
    minus = ((m[[1, 3, 6]] == "-").any(axis=1).to_numpy(bool)) | parens
    before, after = _currency_code(m[2]), _currency_code(m[5])
    conflict = (before.notna() & after.notna() & (before != after)).fillna(False).to_numpy(bool)
    currency = before.fillna(after)
    if field.default_currency:
        currency = currency.fillna(field.default_currency.upper())
    no_currency = currency.isna().to_numpy(bool)
    parsed = (european | us) & balanced & (signs <= 1)
    ok = parsed & ~conflict & ~no_currency
    amount = ("-" + plain).where(minus, plain)
    values = np.full(len(u), pd.NA, dtype=object)
    values[ok] = [Decimal(a).quantize(_CENTS) for a in amount[ok]]
    reasons = _nones(len(u))
    reasons[~parsed] = [f"not an amount of money: {v!r}" for v in u[~parsed]]
    conflicting = parsed & conflict
    reasons[conflicting] = [f"conflicting currencies in {v!r}" for v in u[conflicting]]
    missing = parsed & ~conflict & no_currency
    reasons[missing] = [f"no currency in {v!r} and the field has no default currency" for v in u[missing]]
    currency_out = currency.astype(STRING).where(ok)
    return _result(raw, codes, values, reasons, extra={f"{field.name}_currency": currency_out.array})


# ---------------------------------------------------------------------------------------------
# postal code

# country -> (pattern with one or two groups, separator placed between the groups)
_POSTAL: dict[str, tuple[str, str]] = {
    "US": (r"^(\d{5})(?:[- ]?(\d{4}))?$", "-"),
    "CA": (r"^([A-Z]\d[A-Z]) ?(\d[A-Z]\d)$", " "),
    "GB": (r"^([A-Z]{1,2}\d[A-Z\d]?) ?(\d[A-Z]{2})$", " "),
    "DE": (r"^(\d{5})$", ""),
    "FR": (r"^(\d{5})$", ""),
    "IN": (r"^(\d{3}) ?(\d{3})$", ""),
    "AU": (r"^(\d{4})$", ""),
    "NL": (r"^(\d{4}) ?([A-Z]{2})$", " "),
}


def _postal_country(field: FieldSpec, frame: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Per-row ISO country for a postal code field (NA where unknown)."""
    if field.country_field:
        return frame[field.country_field].astype(STRING).str.upper()
    return pd.Series(field.country.upper() if field.country else pd.NA, index=index, dtype=STRING)


def _canonical_postal(codes: pd.Series, country: str) -> tuple[pd.Series, np.ndarray]:
    """Canonical postal codes of one country, and a mask of those that match its pattern."""
    pattern, separator = _POSTAL[country]
    groups = codes.str.extract(pattern)
    joined = groups[0]
    if groups.shape[1] > 1:
        joined = joined + (separator + groups[1]).fillna("")
    return joined, groups[0].notna().to_numpy(bool)


def normalize_postal_code(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Postal codes validated and formatted per country; other countries are kept upper-cased."""
    s = clean(raw).str.upper()
    country = _postal_country(field, frame, raw.index)
    values = s.rename(raw.name)
    reasons = _nones(len(s))
    for name in _POSTAL:
        rows = np.flatnonzero((country == name).fillna(False).to_numpy(bool))
        if not len(rows):
            continue
        codes, u = _distinct(s.iloc[rows])
        canonical, matches = _canonical_postal(u, name)
        why = _nones(len(u))
        why[~matches] = [f"{v!r} is not a {name} postal code" for v in u[~matches]]
        values.iloc[rows] = _spread(canonical.where(matches).array, codes, pd.NA)
        reasons[rows] = _spread(why, codes, None)
    return Normalized(
        values=values,
        reasons=pd.Series(reasons, index=raw.index, dtype=object),
        flags=pd.Series(_nones(len(s)), index=raw.index, dtype=object),
    )


# ---------------------------------------------------------------------------------------------
# enum

_FUZZY_CUTOFF = 0.8


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
    codes, u = _distinct(clean(raw))
    lookup = _enum_lookup(field)
    keys = list(lookup)
    values = np.full(len(u), None, dtype=object)
    reasons = _nones(len(u))
    flags = _nones(len(u))
    allowed = ", ".join(field.values)
    for i, v in enumerate(u):
        key = _enum_key(v)
        if key in lookup:
            values[i] = lookup[key]
            continue
        close = difflib.get_close_matches(key, keys, n=1, cutoff=_FUZZY_CUTOFF)
        if close:
            values[i] = lookup[close[0]]
            flags[i] = "low_confidence_mapping"
            reasons[i] = f"{v!r} mapped to {values[i]!r} with low confidence"
        else:
            reasons[i] = f"{v!r} is not one of the allowed values: {allowed}"
    return _result(raw, codes, pd.array(values, dtype=STRING), reasons, flags)


# ---------------------------------------------------------------------------------------------
# whole frame

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
        done = pd.DataFrame({name: r.values.array for name, r in results.items()}, index=raw.index)
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
