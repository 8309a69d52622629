"""Email addresses checked by email_validator, one call per distinct domain where that is enough."""

from __future__ import annotations

import numpy as np
import pandas as pd
from email_validator import EmailNotValidError, validate_email

from bpo.normalizers.common import STRING, Normalized, clean, distinct, mask, nones, result
from bpo.spec import FieldSpec, ProcessSpec

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
    codes, u = distinct(clean(raw).str.lower())
    values = np.full(len(u), None, dtype=object)
    reasons = nones(len(u))
    # For a plain local part the library's verdict depends only on the domain, and domains repeat
    # (gmail.com, the client's own domain), so validate each distinct domain once.
    plain = mask(u, _PLAIN_EMAIL) & (u.str.len() <= _EMAIL_MAX_LENGTH).to_numpy(bool)
    domain_codes, domains = distinct(u[plain].str.replace(r"^[^@]*@", "", regex=True))
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
    return result(raw, codes, pd.array(values, dtype=STRING), reasons)
