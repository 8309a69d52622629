"""The review service with its item kinds; ``bpo.review`` is what the rest of the code imports.

Importing it registers the kinds delivered here: ``record`` (data-entry corrections) and ``gate``
(a whole batch approved or rejected).
"""

from bpo.review.gate import GateDecision, open_gate
from bpo.review.kinds import CorrectionRefused, Display, Kind, Outcome, ReviewError, kind_of, register, registered
from bpo.review.record import RecordDecision, revalidate
from bpo.review.service import (
    BulkResolution,
    Resolution,
    add_items,
    claim,
    expire_overdue,
    get_item,
    list_items,
    open_count,
    resolve,
    resolve_many,
    resume_if_done,
    set_run_status,
)
from bpo.review.values import json_safe

__all__ = ["BulkResolution", "CorrectionRefused", "Display", "GateDecision", "Kind", "Outcome", "RecordDecision",
           "Resolution", "ReviewError", "add_items", "claim", "expire_overdue", "get_item", "json_safe", "kind_of",
           "list_items", "open_count", "open_gate", "register", "registered", "resolve", "resolve_many",
           "resume_if_done", "revalidate", "set_run_status"]
