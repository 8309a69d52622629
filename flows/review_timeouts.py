"""Review timeouts: apply the declared action to every review item past its due time.

Inputs: open review items in the ops database.
Outputs: overdue items escalated to the supervisor queue (with a new due time) or rejected
("review timed out"), each with an audit event; runs whose last item was rejected are resumed.
Schedule: every five minutes (``prefect.yaml``, deployment ``review-timeouts``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from bpo.review import expire_overdue
from bpo.settings import get_settings


@flow(name="review-timeouts", log_prints=False)
def review_timeouts() -> dict[str, int]:
    """Escalate or reject what is overdue, as each item's process declares."""
    done = expire_overdue(get_settings())
    get_run_logger().info("review timeouts: %s", done)
    return done
