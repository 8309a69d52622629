"""The review service with its item kinds; ``bpo.review`` is what the rest of the code imports.

Importing it registers the kinds delivered here: ``record`` (data-entry corrections), ``gate``
(a whole batch approved or rejected), ``pair`` (two rows of a table: the same entity?),
``conflict`` (a row a cleanup left alone because it changed since the snapshot), ``reformat`` (a value
change a cleanup proposes that is more than a reformat) and ``candidates`` (which value of a research
field is right, each candidate with its citations).
"""

from bpo.review.candidates import CandidatesDecision, candidates_item
from bpo.review.conflict import ConflictDecision, conflict_item
from bpo.review.gate import GateDecision, open_gate
from bpo.review.kinds import (
    CorrectionRefused,
    Display,
    InvalidDecision,
    Kind,
    Outcome,
    ReviewError,
    kind_of,
    register,
    registered,
)
from bpo.review.pair import PairDecision, pair_item
from bpo.review.record import RecordDecision, fields_to_recheck, revalidate
from bpo.review.reformat import ReformatDecision, reformat_item
from bpo.review.service import (
    SORTS,
    BulkResolution,
    QueueFilter,
    Resolution,
    add_items,
    assign,
    audit_of,
    claim,
    claim_next,
    escalate,
    expire_overdue,
    get_item,
    list_items,
    open_count,
    queue_counts,
    queue_page,
    resolve,
    resolve_many,
    resume_if_done,
    set_run_status,
    unclaim,
)
from bpo.review.values import json_safe

__all__ = ["BulkResolution", "CandidatesDecision", "ConflictDecision", "CorrectionRefused", "Display", "GateDecision",
           "InvalidDecision", "Kind", "Outcome", "PairDecision", "QueueFilter", "RecordDecision", "ReformatDecision",
           "Resolution", "ReviewError", "SORTS", "add_items", "assign", "audit_of", "candidates_item", "claim",
           "claim_next", "conflict_item", "escalate", "expire_overdue", "get_item", "json_safe", "kind_of",
           "list_items", "open_count", "open_gate", "pair_item", "queue_counts", "queue_page", "reformat_item",
           "register", "registered", "resolve", "resolve_many", "resume_if_done", "fields_to_recheck", "revalidate",
           "set_run_status", "unclaim"]
