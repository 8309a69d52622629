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
import pyarrow as pa
import pyarrow.compute as pc
from email_validator import EmailNotValidError, validate_email
from pandas.api.extensions import ExtensionArray
from phonenumbers import PhoneMetadata, PhoneNumberDesc

from bpo.spec import FieldSpec, ProcessSpec

STRING = pd.StringDtype()

# Python's \s spelled out: with \s pandas falls back from pyarrow's RE2 to a slow per-value re loop.
_WHITESPACE = "[ \t\n\r\f\v\x1c-\x1f\x85\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"

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


# Regexes run on pyarrow's RE2 kernels: pandas' str.extract loops in Python (~15x slower on 100k values),
# and pandas' other str methods silently switch to Python's re, whose \d also matches non-ASCII digits.


def _arrow(s: pd.Series) -> pa.Array:
    """The values of a string Series as a pyarrow array."""
    return pa.array(s.array, type=pa.large_string())


def _extract(s: pd.Series, pattern: str) -> pd.DataFrame:
    """Named regex groups as string columns, NA where the value does not match or a group is empty."""
    groups = pc.extract_regex(_arrow(s), pattern)
    columns = {f.name: pd.arrays.ArrowStringArray(c) for f, c in zip(groups.type, groups.flatten(), strict=True)}
    return pd.DataFrame(columns, index=s.index).replace("", pd.NA)


def _matches(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask of values in which ``pattern`` matches (False for NA); anchor the pattern as needed."""
    found = pc.fill_null(pc.match_substring_regex(_arrow(s), pattern), False)
    return found.to_numpy(zero_copy_only=False).astype(bool)


def _mask(s: pd.Series, pattern: str) -> np.ndarray:
    """Boolean mask of values matching ``pattern`` in full."""
    return _matches(s, f"^(?:{pattern})$")


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


_INTEGER = r"^(?P<sign>[+-]?)(?P<digits>\d{1,3}(?:,\d{3})+|\d+)(?:\.0+)?$"
_MAX_INT_DIGITS = 18  # always fits in int64


def normalize_integer(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Whole numbers as Int64; thousands commas and a zero fraction ("12.0", as spreadsheets write) allowed."""
    codes, u = _distinct(clean(raw))
    parts = _extract(u, _INTEGER)
    digits = parts["digits"].str.replace(",", "", regex=False)
    matched = parts["digits"].notna().to_numpy(bool)
    fits = matched & (digits.str.len() <= _MAX_INT_DIGITS).fillna(False).to_numpy(bool)
    values = pd.Series(pd.NA, index=u.index, dtype="Int64")
    sign = parts["sign"].fillna("").str.replace("+", "", regex=False)  # pyarrow's int cast rejects a plus sign
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

# The number types phonenumbers tries in _number_type_helper; matching any one makes a number valid.
_PHONE_TYPES = [
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
]


def _matches_desc(nsn: pd.Series, desc: PhoneNumberDesc | None) -> np.ndarray:
    """Vectorized phonenumbers ``_is_number_matching_desc``: possible length, then the full pattern."""
    if desc is None or not desc.national_number_pattern:
        return np.zeros(len(nsn), dtype=bool)
    fits = nsn.str.len().isin(desc.possible_length).to_numpy(bool) if desc.possible_length else True
    return fits & _mask(nsn, desc.national_number_pattern)


def _valid_for(nsn: pd.Series, meta: PhoneMetadata) -> np.ndarray:
    """Vectorized ``_number_type_helper(nsn, meta) != UNKNOWN``."""
    typed = np.logical_or.reduce([_matches_desc(nsn, getattr(meta, t)) for t in _PHONE_TYPES])
    return _matches_desc(nsn, meta.general_desc) & typed


def _plain_national(u: pd.Series, meta: PhoneMetadata) -> np.ndarray:
    """Digit strings phonenumbers.parse takes verbatim as the national number in ``meta``'s region."""
    # Nothing the parser could strip or reinterpret: a leading 0, the country code, IDD or national prefix.
    plain = _mask(u, r"[1-9]\d+") & ~u.str.startswith(str(meta.country_code)).to_numpy(bool)
    for prefix in (meta.national_prefix_for_parsing, meta.international_prefix):
        if prefix:
            plain &= ~_matches(u, f"^(?:{prefix})")
    return plain


def _fast_e164(u: pd.Series, region: str) -> tuple[np.ndarray, np.ndarray]:
    """(decided, E.164 or None) for plain national numbers, settled without per-number library calls.

    phonenumbers costs 20-60 us a number, too slow for 100k distinct numbers. For digit strings the
    parser takes verbatim, parse + is_valid_number is replayed here, vectorized, from the library's own
    metadata: the first region of the country code that claims the number (by leading digits, else by
    a valid pattern) must find it valid. The tests check this against the library.
    """
    decided = np.zeros(len(u), dtype=bool)
    values = np.full(len(u), None, dtype=object)
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None:
        return decided, values
    positions = np.flatnonzero(_plain_national(u, meta))
    nsn = u.iloc[positions].reset_index(drop=True)
    valid = np.zeros(len(nsn), dtype=bool)
    open_ = np.ones(len(nsn), dtype=bool)  # no region has claimed the number yet
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(meta.country_code, ()):
        candidate = PhoneMetadata.metadata_for_region(code)
        if candidate is None or not open_.any():
            continue
        rows = np.flatnonzero(open_)
        if candidate.leading_digits is not None:
            claimed = _matches(nsn.iloc[rows], f"^(?:{candidate.leading_digits})")
            valid[rows[claimed]] = _valid_for(nsn.iloc[rows[claimed]], candidate)
        else:
            claimed = _valid_for(nsn.iloc[rows], candidate)
            valid[rows[claimed]] = True
        open_[rows[claimed]] = False
    decided[positions] = True
    values[positions[valid]] = ("+" + str(meta.country_code) + nsn[valid]).to_numpy(object)
    return decided, values


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
    canonical = clean(raw).str.replace(r"[ .()/-]", "", regex=True).str.replace(r"^00", "+", regex=True)
    codes, u = _distinct(canonical)
    region = spec.default_region
    decided, values = _fast_e164(u, region)
    for i in np.flatnonzero(~decided):
        values[i] = _phone_e164(u[i], region)
    international = u.str.startswith("+").to_numpy(bool)
    invalid = pd.isna(values)
    reasons = _nones(len(u))
    reasons[invalid & international] = "not a valid international phone number"
    reasons[invalid & ~international] = f"not a valid {region} phone number"
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
    codes, u = _distinct(clean(raw))
    low = u.str.lower()
    parts = pd.DataFrame(np.nan, index=u.index, columns=_DATE_COLUMNS)
    recognized = np.zeros(len(u), dtype=bool)
    ambiguous = np.zeros(len(u), dtype=bool)
    for pattern, read in _DATE_FORMS:
        found = _extract(low[~recognized], pattern).dropna(how="all")
        if found.empty:
            continue
        got = read(found, field.date_order)
        parts.loc[got.index, _DATE_COLUMNS] = got[_DATE_COLUMNS].to_numpy(float)
        recognized[got.index] = True
        if "ambiguous" in got:
            ambiguous[got.index[got["ambiguous"].to_numpy(bool)]] = True
    dates = pd.to_datetime(parts, errors="coerce").where(~ambiguous)
    values = dates.dt.strftime("%Y-%m-%d").astype(STRING)
    reasons = _nones(len(u))
    flags = _nones(len(u))
    reasons[~recognized] = [f"not a date: {v!r}" for v in u[~recognized]]
    impossible = recognized & ~ambiguous & dates.isna().to_numpy(bool)
    reasons[impossible] = [f"not a date: {v!r} (no such day)" for v in u[impossible]]
    reasons[ambiguous] = [
        f"ambiguous day/month: {v!r} could be {_iso(y, m, d)} or {_iso(y, d, m)}"
        for v, y, m, d in zip(u[ambiguous], *parts[ambiguous].to_numpy(int).T, strict=True)
    ]
    flags[ambiguous] = "ambiguous_date"
    return _result(raw, codes, values.array, reasons, flags)


# ---------------------------------------------------------------------------------------------
# money

_CURRENCY_SYMBOLS = {"$": "USD", "£": "GBP", "€": "EUR", "¥": "JPY", "₹": "INR"}
_CURRENCY = "[$£€¥₹]|[A-Z]{3}"
_MONEY = (
    rf"^(?P<open>\()? ?(?P<sign1>[-+])? ?(?P<cur1>{_CURRENCY})? ?(?P<sign2>[-+])? ?(?P<number>\d[\d.,]*)"
    rf" ?(?P<cur2>{_CURRENCY})? ?(?P<sign3>-)?(?P<close>\))?$"
)
# Amounts with 3+ decimals are refused rather than rounded: "1.234" is as likely European thousands.
_AMOUNT_EUROPEAN = r"\d{1,3}(?:\.\d{3})+,\d{2}|\d+,\d{2}"
_AMOUNT_US = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_CENTS = Decimal("0.01")


def _currency_code(token: pd.Series) -> pd.Series:
    """ISO code for a currency symbol or 3-letter code."""
    return token.replace(_CURRENCY_SYMBOLS)


def normalize_money(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Decimal amounts (2 places) plus a ``<name>_currency`` ISO code column."""
    codes, u = _distinct(clean(raw))
    m = _extract(u.str.upper(), _MONEY)
    number = m["number"]
    european = _mask(number, _AMOUNT_EUROPEAN)
    us = _mask(number, _AMOUNT_US)
    plain = number.str.replace(",", "", regex=False)
    plain[european] = number[european].str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    parens = m["open"].notna().to_numpy(bool)
    balanced = parens == m["close"].notna().to_numpy(bool)
    sign_columns = m[["sign1", "sign2", "sign3"]]
    signs = sign_columns.notna().sum(axis=1).to_numpy() + parens
    minus = (sign_columns == "-").any(axis=1).to_numpy(bool) | parens
    before, after = _currency_code(m["cur1"]), _currency_code(m["cur2"])
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

# country -> (pattern with a "head" and optional "tail" group, separator placed between them)
_POSTAL: dict[str, tuple[str, str]] = {
    "US": (r"^(?P<head>\d{5})(?:[- ]?(?P<tail>\d{4}))?$", "-"),
    "CA": (r"^(?P<head>[A-Z]\d[A-Z]) ?(?P<tail>\d[A-Z]\d)$", " "),
    "GB": (r"^(?P<head>[A-Z]{1,2}\d[A-Z\d]?) ?(?P<tail>\d[A-Z]{2})$", " "),
    "DE": (r"^(?P<head>\d{5})$", ""),
    "FR": (r"^(?P<head>\d{5})$", ""),
    "IN": (r"^(?P<head>\d{3}) ?(?P<tail>\d{3})$", ""),
    "AU": (r"^(?P<head>\d{4})$", ""),
    "NL": (r"^(?P<head>\d{4}) ?(?P<tail>[A-Z]{2})$", " "),
}


def _postal_country(field: FieldSpec, frame: pd.DataFrame, index: pd.Index) -> pd.Series:
    """Per-row ISO country for a postal code field (NA where unknown)."""
    if field.country_field:
        return frame[field.country_field].astype(STRING).str.upper()
    return pd.Series(field.country.upper() if field.country else pd.NA, index=index, dtype=STRING)


def _canonical_postal(codes: pd.Series, country: str) -> tuple[pd.Series, np.ndarray]:
    """Canonical postal codes of one country, and a mask of those that match its pattern."""
    pattern, separator = _POSTAL[country]
    groups = _extract(codes, pattern)
    joined = groups["head"]
    if "tail" in groups:
        joined = joined + (separator + groups["tail"]).fillna("")
    return joined, groups["head"].notna().to_numpy(bool)


def normalize_postal_code(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Postal codes validated and formatted per country; other countries are kept upper-cased."""
    s = clean(raw)
    country = _postal_country(field, frame, raw.index)
    values = s.str.upper().rename(raw.name)
    reasons = _nones(len(s))
    for name in _POSTAL:
        rows = np.flatnonzero((country == name).fillna(False).to_numpy(bool))
        if not len(rows):
            continue
        codes, u = _distinct(s.iloc[rows])
        canonical, matches = _canonical_postal(u.str.upper(), name)
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
