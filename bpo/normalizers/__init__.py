"""Field normalizers: turn keyed-in strings into canonical values, one module per field type.

Pure functions over pandas objects: no Prefect, no I/O.
"""

from bpo.normalizers.common import Normalized, NormalizedFrame, Normalizer
from bpo.normalizers.frame import ISSUE_COLUMNS, NORMALIZERS, normalize_frame

__all__ = ["ISSUE_COLUMNS", "NORMALIZERS", "Normalized", "NormalizedFrame", "Normalizer", "normalize_frame"]
