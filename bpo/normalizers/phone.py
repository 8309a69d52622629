"""Phone numbers in E.164: phonenumbers' verdicts, replayed vectorized where the parser has nothing to decide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberDesc

from bpo.normalizers.common import STRING, Normalized, clean, distinct, mask, matches, nones, result
from bpo.normalizers.country import country_codes
from bpo.spec import FieldSpec, ProcessSpec

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
    return fits & mask(nsn, desc.national_number_pattern)


def _valid_for(nsn: pd.Series, meta: PhoneMetadata) -> np.ndarray:
    """Vectorized ``_number_type_helper(nsn, meta) != UNKNOWN``."""
    # Each pattern is compiled per call (a millisecond for the long ones): only test what can still pass.
    valid = _matches_desc(nsn, meta.general_desc)
    rows = np.flatnonzero(valid)
    typed = np.zeros(len(rows), dtype=bool)
    for t in _PHONE_TYPES:
        untyped = np.flatnonzero(~typed)
        if not len(untyped):
            break
        typed[untyped] = _matches_desc(nsn.iloc[rows[untyped]], getattr(meta, t))
    valid[rows] = typed
    return valid


def _plain_national(u: pd.Series, meta: PhoneMetadata) -> np.ndarray:
    """Digit strings phonenumbers.parse takes verbatim as the national number in ``meta``'s region."""
    # Nothing the parser could strip or reinterpret: a leading 0, the country code, IDD or national prefix.
    plain = mask(u, r"[1-9]\d+") & ~u.str.startswith(str(meta.country_code)).to_numpy(bool)
    for prefix in (meta.national_prefix_for_parsing, meta.international_prefix):
        if prefix:
            plain &= ~matches(u, f"^(?:{prefix})")
    return plain


def _valid_in_country(nsn: pd.Series, country_code: int) -> np.ndarray:
    """Vectorized ``is_valid_number`` for national significant numbers of one country code: the first
    region of the code that claims a number (by leading digits, else by a valid pattern) must find it valid."""
    valid = np.zeros(len(nsn), dtype=bool)
    open_ = np.ones(len(nsn), dtype=bool)  # no region has claimed the number yet
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        if not open_.any():
            break
        candidate = PhoneMetadata.metadata_for_region(code)
        if candidate is None:
            continue
        rows = np.flatnonzero(open_)
        if candidate.leading_digits is not None:
            claimed = matches(nsn.iloc[rows], f"^(?:{candidate.leading_digits})")
            if not claimed.any():
                continue
            valid[rows[claimed]] = _valid_for(nsn.iloc[rows[claimed]], candidate)
        else:
            claimed = _valid_for(nsn.iloc[rows], candidate)
            valid[rows[claimed]] = True
        open_[rows[claimed]] = False
    return valid


def _settle(nsn: pd.Series, positions: np.ndarray, country_code: int, decided: np.ndarray,
            values: np.ndarray) -> None:
    """Mark ``positions`` decided; those whose national number is valid get their E.164 form."""
    nsn = nsn.reset_index(drop=True)
    valid = _valid_in_country(nsn, country_code)
    decided[positions] = True
    values[positions[valid]] = ("+" + str(country_code) + nsn[valid]).to_numpy(object)


def _country_codes(digits: pd.Series) -> np.ndarray:
    """phonenumbers' ``_extract_country_code``: the shortest prefix (1-3 digits) that is a country code, else 0."""
    known = pd.Index([str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE])
    codes = np.zeros(len(digits), dtype=np.int64)
    for length in (1, 2, 3):
        head = digits.str[:length]
        found = (codes == 0) & head.isin(known).to_numpy(bool) & (digits.str.len() > length).to_numpy(bool)
        codes[found] = head[found].astype(int).to_numpy()
    return codes


def fast_e164(u: pd.Series, region: str) -> tuple[np.ndarray, np.ndarray]:
    """(decided, E.164 or None) for numbers the parser takes verbatim, settled without per-number library calls.

    phonenumbers costs 20-60 us a number, too slow for 100k distinct numbers. Two shapes are replayed
    here, vectorized, from the library's own metadata (parse + is_valid_number):
    - plain national digit strings in ``region`` (nothing the parser could strip or reinterpret);
    - ``+`` and digits of a geographic country code whose national number starts with no national
      prefix the parser would strip.
    Everything else goes to the library. The tests check this against it in every region.
    """
    decided = np.zeros(len(u), dtype=bool)
    values = np.full(len(u), None, dtype=object)
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is not None and meta.country_code is not None:
        positions = np.flatnonzero(_plain_national(u, meta))
        _settle(u.iloc[positions], positions, meta.country_code, decided, values)
    plus = np.flatnonzero(mask(u, r"\+[1-9]\d+"))
    digits = u.iloc[plus].str[1:].reset_index(drop=True)
    codes = _country_codes(digits)
    for code in np.unique(codes[codes > 0]):
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)]
        main = PhoneMetadata.metadata_for_region(regions[0]) if regions and regions[0] != "001" else None
        if main is None:  # a non-geographic code (+800 ...): the library decides
            continue
        rows = np.flatnonzero(codes == code)
        nsn = digits.iloc[rows].str[len(str(code)):].reset_index(drop=True)
        plain = mask(nsn, r"[1-9]\d+")
        if main.national_prefix_for_parsing:
            plain &= ~matches(nsn, f"^(?:{main.national_prefix_for_parsing})")
        _settle(nsn[plain], plus[rows[plain]], int(code), decided, values)
    return decided, values


def library_e164(number: str, region: str) -> str | None:
    """The E.164 form of a valid number, else None (phonenumbers itself, one number)."""
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def canonical_phone(raw: pd.Series) -> pd.Series:
    """Cheap canonical form (no punctuation, IDD 00 as +), so one number written several ways costs one call."""
    return clean(raw).str.replace(r"[ .()/-]", "", regex=True).str.replace(r"^00", "+", regex=True)


def regions(field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec, index: pd.Index) -> pd.Series:
    """The region each row's national number is read in: its country field's country (an ISO code, or an English
    name such as "France": ``country_codes``) where phonenumbers knows it, else the field's fixed country, else
    the spec's default region."""
    fallback = (field.country or spec.default_region).upper()
    if not field.country_field or field.country_field not in frame:
        return pd.Series(fallback, index=index, dtype=STRING)
    country = country_codes(frame[field.country_field].astype(STRING))
    known = country.isin(phonenumbers.SUPPORTED_REGIONS).to_numpy(bool)
    return pd.Series(np.where(known, country.to_numpy(object, na_value=fallback), fallback), index=index,
                     dtype=STRING)


def normalize_phone(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """E.164 numbers; a national number is read in its row's region (``regions``)."""
    canonical = canonical_phone(raw)
    if not field.country_field:  # one region: the distinct numbers read once
        return _in_region(raw, canonical, (field.country or spec.default_region).upper())
    region_of = regions(field, frame, spec, raw.index)
    if region_of.nunique() == 1:
        return _in_region(raw, canonical, str(region_of.iloc[0]))
    values = pd.array([pd.NA] * len(raw), dtype=STRING)
    reasons = nones(len(raw))
    for region in region_of.unique():
        rows = np.flatnonzero((region_of == region).to_numpy(bool))
        part = _in_region(raw.iloc[rows], canonical.iloc[rows], str(region))
        values[rows] = part.values.array
        reasons[rows] = part.reasons.to_numpy(object)
    return Normalized(values=pd.Series(values, index=raw.index, name=raw.name),
                      reasons=pd.Series(reasons, index=raw.index, dtype=object),
                      flags=pd.Series(nones(len(raw)), index=raw.index, dtype=object))


def _in_region(raw: pd.Series, canonical: pd.Series, region: str) -> Normalized:
    codes, u = distinct(canonical)
    decided, values = fast_e164(u, region)
    for i in np.flatnonzero(~decided):
        values[i] = library_e164(u[i], region)
    international = u.str.startswith("+").to_numpy(bool)
    invalid = pd.isna(values)
    reasons = nones(len(u))
    reasons[invalid & international] = "not a valid international phone number"
    reasons[invalid & ~international] = f"not a valid {region} phone number"
    return result(raw, codes, pd.array(values, dtype=STRING), reasons)
