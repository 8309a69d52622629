"""How a process's items are reviewed (groups, due hours, four-eyes, notifications), whichever spec declares it.

A data-entry process declares it in its process spec; a table cleanup in its cleanup spec (its items'
``process`` is the cleanup spec's name); a research compilation in its brief. The review service, the
console's authorization and the notifications read it here, so a cleanup's pairs and a research run's
candidates follow the same rules as a record.
"""

from __future__ import annotations

from bpo.cleanup.spec import load_cleanup_spec
from bpo.research.brief import BriefError, load_brief
from bpo.spec import ReviewSpec, load_spec


def review_of(process: str) -> ReviewSpec:
    """The review section of ``process``'s spec; FileNotFoundError or ValueError when there is none to read."""
    try:
        return load_spec(process).review
    except ValueError as not_a_process:  # it may be a cleanup spec, whose review section is the same model
        try:
            return load_cleanup_spec(process).review
        except ValueError:
            pass
        try:  # or a research brief, whose review section extends the same model
            return load_brief(process).review
        except BriefError:
            raise not_a_process from None
