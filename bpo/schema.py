"""The record schema every step shares: how records and the reasons they need a person are laid out.

A chunk of records is a table with one column per spec field (money adds ``<field>_currency``) and
underscore columns the product adds: ``_row`` (the record's number within the batch, which every
check maps back to), ``_source_file`` and ``_source_row`` (where it was read). A reason is one row of
``CHECK_COLUMNS``: the record's ``_row``, the field, the check and a sentence an agent understands.
"""

from __future__ import annotations

ROW = "_row"
SOURCE_FILE = "_source_file"
SOURCE_ROW = "_source_row"
CHECK_COLUMNS = ["row", "field", "check", "reason"]
CHECK_TYPES = {"row": "int64", "field": str, "check": str, "reason": str}
