"""Person names: title-cased word by word, and refused where the value holds what no name holds."""

from __future__ import annotations

import unicodedata

import pandas as pd

from bpo.normalizers.common import STRING, Normalized, clean, distinct, limit_length, matches, nones, result
from bpo.spec import FieldSpec, ProcessSpec

# What no person's name holds, in the order the reasons are given. Letters of any script, marks,
# apostrophes, hyphens, dots and spaces stay fine; these catch keyed-in junk and cells meant to
# do something when a spreadsheet or a web page opens them.
_REFUSED = [
    # A spreadsheet runs a cell starting =, + or @ as a formula; a leading "-" only before a
    # non-letter or a function call (-2+3, -@SUM, -HYPERLINK(…)), since "-" never starts a real name.
    (r"^(?:[=+@]|-[^\p{L}\s]|-\p{L}+\()", "looks like a spreadsheet formula, not a name"),
    (
        r"(?i)</?\p{L}[^>]*>|<!--|&(?:#\d+|#x[0-9a-f]+|\p{L}+);"
        r"|\[/?(?:b|i|u|s|url|img|quote|code|color|size|font|list|\*|center|email|sup|sub)(?:=[^\]]*)?\]|\[/\p{L}+\]",
        "contains markup, not a name",
    ),
    (r"\p{N}", "contains digits, not a name"),
]


def _recase_word(word: str) -> str:
    """Title-case an all-lower or all-upper word; leave deliberate mixed case (DeAndre) alone."""
    return _title(word) if word.islower() or word.isupper() else word


def _title(word: str) -> str:
    """``str.title`` except that a combining mark belongs to its letter ("garci\u0301a" -> "Garci\u0301a", where
    ``str.title`` starts a new word after the mark: "Garci\u0301A")."""
    out, starts = [], True
    for ch in word:
        if ch.isalpha():
            out.append(ch.title() if starts else ch.lower())
            starts = False
        else:
            out.append(ch)
            starts = starts or not unicodedata.category(ch).startswith("M")
    return "".join(out)


def normalize_name(raw: pd.Series, field: FieldSpec, frame: pd.DataFrame, spec: ProcessSpec) -> Normalized:
    """Person names title-cased word by word ("JOHN o'neil" -> "John O'Neil"); markup, formulas, digits refused."""
    codes, u = distinct(clean(raw))
    reasons = nones(len(u))
    for pattern, reason in _REFUSED:
        hit = matches(u, pattern) & pd.isna(reasons)
        reasons[hit] = reason
    refused = pd.notna(reasons)
    # composed (NFC) first: "José" keyed with a combining accent is the same name as with "é"
    recased = pd.Series([" ".join(_recase_word(w) for w in unicodedata.normalize("NFC", v).split(" ")) for v in u],
                        dtype=STRING).mask(refused)
    recased = limit_length(recased, field, reasons)
    return result(raw, codes, recased.array, reasons)
