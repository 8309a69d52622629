"""``bpo review`` on the ops database directly, for an engineer's local use (no token, no console).

The review service's rules hold (a decision is taken once, a claimed item is its holder's, a
correction is validated again, four-eyes), but not the console's: no sign-in, no groups; the actor
is whoever ``--as`` names. Its answers have the console API's shapes (``bpo.console.views``).
"""

from __future__ import annotations

from typing import Any

from bpo import review, runs
from bpo.cli.review_backend import Refused, Row
from bpo.console.views import item_detail, item_row, item_stored
from bpo.db.models import ReviewItem
from bpo.settings import Settings


class DatabaseBackend:
    def __init__(self, settings: Settings, actor: str) -> None:
        self.settings = settings
        self.actor = actor
        self.where = "the ops database"

    def _run_status(self, item: ReviewItem) -> str | None:
        return runs.run_statuses(self.settings, [item.flow_run_id]).get(item.flow_run_id)

    def queue(self, *, status: str | None, process: str | None, run: str | None, queue: str | None,
              limit: int) -> tuple[list[Row], int]:
        f = review.QueueFilter(status=status, process=process, flow_run_id=run, queue=queue)
        rows, total = review.queue_page(self.settings, f, limit=limit)
        # an item of an ended run waits for the batch's next run (`bpo runs retry`), not for this one
        swept = runs.sweep_dead_runs(self.settings, flow_run_ids={i.flow_run_id for i, _ in rows})
        ended = {s.flow_run_id: s.status for s in swept}
        return [item_stored(i, ended.get(i.flow_run_id, st)) for i, st in rows], total

    def item(self, item_id: int) -> Row:
        try:
            item = review.get_item(self.settings, item_id)
            return item_detail(item, self._run_status(item))
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None

    def claim(self, item_id: int) -> Row:
        try:
            item = review.claim(self.settings, item_id, self.actor)
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None
        return item_row(item, self._run_status(item))

    def unclaim(self, item_id: int) -> Row:
        try:
            item = review.unclaim(self.settings, item_id, self.actor)
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None
        return item_row(item, self._run_status(item))

    def next(self) -> Row | None:
        try:
            item = review.claim_next(self.settings, self.actor)
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None
        return None if item is None else item_detail(item, self._run_status(item))

    def resolve(self, item_id: int, *, approve: bool | None, sets: dict[str, str], reason: str | None,
                decision: dict[str, Any] | None) -> Row:
        try:
            done = review.resolve(self.settings, item_id, actor=self.actor, approve=approve, sets=sets,
                                  reason=reason, decision=decision)
        except review.CorrectionRefused as exc:
            raise Refused(str(exc), exc.failures) from None
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None
        return dict(done.__dict__)

    def open_ids(self, *, process: str | None, run: str | None) -> list[int]:
        return [i.id for i in review.list_items(self.settings, status="open", process=process, flow_run_id=run,
                                                limit=None)]

    def resolve_many(self, ids: list[int], *, approve: bool | None, reason: str | None,
                     decision: dict[str, Any] | None) -> Row:
        try:
            done = review.resolve_many(self.settings, ids, actor=self.actor, approve=approve, reason=reason,
                                       decision=decision)
        except review.ReviewError as exc:
            raise Refused(str(exc)) from None
        return {"decided": done.decided, "left_open": done.left_open, "refused": done.refused,
                "resumed": done.resumed}

    def close(self) -> None:
        pass
