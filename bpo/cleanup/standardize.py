"""Standardize: proposed value changes per column role, made by the data-entry normalizers.

Each role is read by the normalizer of the matching field type (a person name by the name normalizer,
a phone by the phone one …) through a process spec built from the cleanup spec, so there is one copy of
every normalizer. A proposal is **safe** when it only reformats the value — the same letters and digits
in another case, spacing or punctuation, a phone number written in E.164, a date written in ISO, a
country name written as its code — and such a proposal applies without review. A value a normalizer
refuses (an invalid email, an ambiguous date) is left as it is and counted in the report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import phonenumbers
from phonenumbers import PhoneMetadata

from bpo.cleanup.spec import CleanupSpec, ColumnSpec
from bpo.normalizers import NORMALIZERS
from bpo.normalizers.common import STRING
from bpo.normalizers.country import country_codes, fold
from bpo.spec import FieldSpec, ProcessSpec, TargetSpec

FIELD_TYPE = {"person_name": "name", "organisation_name": "text", "email": "email", "phone": "phone",
              "street_address": "text", "city": "text", "postal_code": "postal_code", "country": "text",
              "date_of_birth": "date", "free_text": "text", "identifier": "text"}
PROPOSAL_COLUMNS = ["position", "column", "old", "new", "safe"]


def process_spec(spec: CleanupSpec) -> ProcessSpec:
    """The cleanup's columns as data-entry fields, so the normalizers read them as they read keyed-in data."""
    fields = {name: FieldSpec(type=FIELD_TYPE[c.role], date_order=c.date_order,  # type: ignore[arg-type]
                              country=c.country, country_field=c.country_column)
              for name, c in spec.columns.items() if c.standardize}
    fields[spec.key] = FieldSpec(type="text")
    return ProcessSpec(name=spec.name, target=TargetSpec(table=spec.table or "t", key=[spec.key]), suite="",
                       default_region=spec.default_country, fields=fields)


def _is_reformat(role: str, old: str, new: str) -> bool:
    if role in ("date_of_birth", "country"):  # the normalizer read one meaning and wrote it canonically
        return True
    a, b = fold(old), fold(new)
    if role == "phone":  # the same digits, a country code, IDD prefix and national (trunk) prefix aside
        return len(min(a, b, key=len)) >= 7 and (a.endswith(b) or b.endswith(a) or _trunk_dialled(a, new))
    return a == b


def _trunk_dialled(digits: str, e164: str) -> bool:
    """Whether ``digits`` are the E.164 number's national number dialled with its country's national prefix
    (the UK's 0 in 020 7946 0958, +442079460958); nothing else before or after it."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    national = str(number.national_number)
    prefix = digits.removesuffix(national)
    if not prefix or prefix == digits or number.extension:
        return False
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(number.country_code or 0, ())
    return any((meta := PhoneMetadata.metadata_for_region(r)) is not None and meta.national_prefix == prefix
               for r in regions)


def standardize(frame: pd.DataFrame, spec: CleanupSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The standardized values (every column of the spec, text or NA) and the long-form proposals.

    ``frame`` holds the columns' values as text (``rows.as_text``); proposals name the row by its
    position in ``frame``. A standardized value is the proposal where there is one, else the original.
    """
    pspec = process_spec(spec)
    standardized = pd.DataFrame(index=frame.index)
    pieces: list[pd.DataFrame] = []
    ordered = sorted(spec.columns.values(), key=lambda c: c.country_column is not None)  # countries first
    for col in ordered:
        raw = frame[col.name].astype(STRING) if col.name in frame else pd.Series(pd.NA, index=frame.index,
                                                                                  dtype=STRING)
        new = _standardized(col, raw, pspec, standardized)
        if new is None:
            standardized[col.name] = raw
            continue
        old = raw.to_numpy(object, na_value=None)
        proposed = new.to_numpy(object, na_value=None)
        changed = np.array([n is not None and o is not None and n != o for o, n in zip(old, proposed, strict=True)],
                           dtype=bool)
        positions = np.flatnonzero(changed)
        if len(positions):
            olds, news = old[positions], proposed[positions]
            pieces.append(pd.DataFrame({
                "position": positions, "column": col.name, "old": olds, "new": news,
                "safe": [_is_reformat(col.role, o, n) for o, n in zip(olds, news, strict=True)]}))
        standardized[col.name] = pd.array(np.where(changed, proposed, old), dtype=STRING)
    proposals = (pd.concat(pieces, ignore_index=True) if pieces
                 else pd.DataFrame({c: pd.Series([], dtype=object) for c in PROPOSAL_COLUMNS}))
    return standardized[[c for c in spec.columns]], proposals


def _standardized(col: ColumnSpec, raw: pd.Series, pspec: ProcessSpec, done: pd.DataFrame) -> pd.Series | None:
    if not col.standardize:
        return None
    if col.role == "country":
        return country_codes(raw)  # NA for what it does not know: left unchanged
    field = pspec.fields[col.name]
    result = NORMALIZERS[field.type](raw.rename(col.name), field, done, pspec)
    refused = result.reasons.notna().to_numpy(bool) | result.flags.notna().to_numpy(bool)
    return result.values.astype(STRING).mask(refused)
