"""Web addresses: http(s) URLs with the scheme and host lower-cased, default port and fragment dropped."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from bpo.normalizers.common import STRING, Normalized, clean, distinct, nones, result
from bpo.spec import FieldSpec, ProcessSpec

_DEFAULT_PORTS = {"http": 80, "https": 443}


def canonical_url(value: str) -> str | None:
    """The canonical form of one http(s) URL ("www.x.com" reads as http://www.x.com/), else None."""
    if value.lower().startswith("www."):
        value = "http://" + value
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a bad port or an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or " " in value:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def normalize_url(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Canonical http(s) URLs; anything else (mailto:, a bare word, a space inside) is refused."""
    codes, u = distinct(clean(raw))
    values = np.array([canonical_url(v) for v in u], dtype=object)
    reasons = nones(len(u))
    reasons[pd.isna(values)] = "not an http(s) URL"
    return result(raw, codes, pd.array(values, dtype=STRING), reasons)
