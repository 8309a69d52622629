"""Review timeouts: apply the declared action to every review item past its due time.

Inputs: open review items in the ops database.
Outputs: overdue items escalated to the supervisor queue (with a new due time) or rejected
("review timed out"), each with an audit event; runs whose last item was rejected are resumed;
runs whose process died are marked ended (``bpo.runs.sweep_dead_runs``); the notifications due are sent
(``bpo.notify``: overdue items, assignments), failures retried on a later round.
Schedule: every five minutes (``prefect.yaml``, deployment ``review-timeouts``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from bpo.notify import deliver_due
from bpo.review import expire_overdue
from bpo.runs import sweep_dead_runs
from bpo.settings import get_settings


@flow(name="review-timeouts", log_prints=False)
def review_timeouts() -> dict[str, int]:
    """Escalate or reject what is overdue, as each item's process declares."""
    settings = get_settings()
    swept = sweep_dead_runs(settings)  # first, so no item of a dead run is "resumed"
    done = {**expire_overdue(settings), "runs_ended": len(swept)}
    sent = deliver_due(settings)
    done |= {"notified": sent.sent, "notify_retrying": sent.retrying, "notify_given_up": sent.given_up}
    get_run_logger().info("review timeouts: %s", done)
    return done
