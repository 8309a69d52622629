"""Ops database models. The review_items table, not Prefect, is the source of truth for review."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Run(Base):
    """One flow run of a process over one batch: where its artifacts are and how it ended."""

    __tablename__ = "runs"

    flow_run_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    process: Mapped[str] = mapped_column(String(100))
    batch: Mapped[str] = mapped_column(Text)
    # running | waiting_review | completed | failed | crashed | cancelled
    status: Mapped[str] = mapped_column(String(20))
    s3_prefix: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # the process running it, so a sweep can tell a run whose process died (SIGKILL) from a live one
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    pid_started: Mapped[int | None] = mapped_column(BigInteger, default=None)  # guards against a reused pid
    message: Mapped[str | None] = mapped_column(Text, default=None)  # how it ended, for a person


class Batch(Base):
    """An inbox batch claimed by a run, so that each batch is processed once."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("process", "batch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process: Mapped[str] = mapped_column(String(100))
    batch: Mapped[str] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ActiveBatch(Base):
    """The run that holds a batch now: one run per batch at a time (a row exists only while it runs)."""

    __tablename__ = "active_batches"

    process: Mapped[str] = mapped_column(String(100), primary_key=True)
    batch: Mapped[str] = mapped_column(Text, primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(36))
    since: Mapped[datetime] = mapped_column(default=utcnow)


class ReviewItem(Base):
    """Something automation could not settle, waiting for a review agent's decision."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("flow_run_id", "step", "record_key"),
        Index("ix_review_items_queue", "status", "queue", "due_at"),
        Index("ix_review_items_run_step_status", "flow_run_id", "step", "status"),
        Index("ix_review_items_process_hash", "process", "record_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(36))
    process: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))  # the review step (its pause key) within the run
    kind: Mapped[str] = mapped_column(String(20))  # record | pair | candidates | gate
    record_key: Mapped[str] = mapped_column(Text)  # identity of the item within the step
    # what the decision is about, across runs: sha256 of the process and the record's source values
    # (of every record, for records sharing a natural key); a later run asks again only if it changed
    record_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    source: Mapped[dict[str, Any]] = mapped_column()  # where it came from: file, row, raw values
    failed_checks: Mapped[list[Any]] = mapped_column()  # [{field, check, reason}]
    proposed: Mapped[dict[str, Any]] = mapped_column()  # the values automation proposes
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | approved | rejected
    queue: Mapped[str] = mapped_column(String(40), default="default")  # default | supervisor
    assignee: Mapped[str | None] = mapped_column(String(100), default=None)
    due_at: Mapped[datetime] = mapped_column()
    on_timeout: Mapped[str] = mapped_column(String(20))  # escalate | reject
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # accepted values
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(100), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # four-eyes: the first approval ({by, at, decision, reason}) of an item that needs a second approver
    first_approval: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # a quality sample: a record that passed every check, sent to review to measure straight-through
    # accuracy; blind (never shown to the agent as a sample)
    sample: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # a sample's outcome, once a person decided it: correct (approved as proposed) | corrected | rejected
    sample_outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    # how urgent the item is, from its process's spec (higher first when an agent asks for the next item)
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def resolved(self) -> bool:
        return self.status in ("approved", "rejected")


class AuditEvent(Base):
    """Who did what to which item, and when; written beside every change, never updated."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("review_items.id"), default=None, index=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class User(Base):
    """A person who signs in to the console or uses the API: an agent, a supervisor or an engineer."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))  # agent | supervisor | engineer
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, with its parameters and salt
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A user's membership of a group (a team); a process names the groups that review it."""

    __tablename__ = "memberships"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    group: Mapped[str] = mapped_column(String(100), primary_key=True)


class ApiToken(Base):
    """A token for the CLI and scripts; only its sha256 is kept, the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A signed-in browser: the cookie holds a random secret, the table its sha256, expiry and CSRF token."""

    __tablename__ = "web_sessions"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class SignInFailure(Base):
    """A refused sign-in, by the name tried and the address it came from: repeated ones are slowed down."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (Index("ix_sign_in_failures_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)



class Team(Base):
    """A group of agents, as far as the product needs more than its name: where it is told of its work."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    webhook: Mapped[str | None] = mapped_column(Text, default=None)  # a URL told of assignments and overdue items
    email: Mapped[str | None] = mapped_column(Text, default=None)  # an address told of the same


class Notification(Base):
    """One message to send (an outbox row): written in the transaction of the event, delivered apart from it.

    A failed delivery is retried with backoff until ``MAX_ATTEMPTS`` (``bpo.notify``); it never holds
    up the decision or assignment that caused it.
    """

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "delivered_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(40))  # assigned | overdue | escalated
    channel: Mapped[str] = mapped_column(String(20))  # webhook | email
    target: Mapped[str] = mapped_column(Text)  # the URL or the address
    payload: Mapped[dict[str, Any]] = mapped_column()  # ids, process, step, due time: never record values
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)  # given up after the last attempt
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class GateLink(Base):
    """A signed, expiring, single-use link through which a named approver without an account answers a gate."""

    __tablename__ = "gate_links"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)  # in the signed token; used once
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    approver: Mapped[str] = mapped_column(String(100))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    used_from: Mapped[str | None] = mapped_column(Text, default=None)  # the address (and browser) it was used from


class CleanupChange(Base):
    """One row a database cleanup changes (or found changed under it): enough to apply it once and undo it exactly.

    ``before``/``after`` are the whole row in the exact encoding of ``bpo.cleanup.rows`` (types kept), and their
    content hashes; a row deleted by a merge has no ``after``, a row the cleanup inserts (undo of a delete) no
    ``before``.
    """

    __tablename__ = "cleanup_changes"
    __table_args__ = (UniqueConstraint("flow_run_id", "seq"),
                      Index("ix_cleanup_changes_run_status", "flow_run_id", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)  # the order of application within the run; undo goes backwards
    chunk: Mapped[int] = mapped_column(Integer)  # the transaction it is applied in
    table_name: Mapped[str] = mapped_column(Text)
    row_key: Mapped[str] = mapped_column(Text)  # the row's primary key, encoded (JSON)
    action: Mapped[str] = mapped_column(String(20))  # update | delete | soft_delete | repoint
    # safe (a reformat) | auto (auto-merge) | review (a person said same) | accepted (a change a person accepted)
    how: Mapped[str] = mapped_column(String(20))
    cluster: Mapped[str | None] = mapped_column(Text, default=None)  # the survivor's key, for merges and repoints
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    before_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    after_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    # planned | applied | conflict (changed since the snapshot: not overwritten) | undone | undo_refused
    status: Mapped[str] = mapped_column(String(20), default="planned")
    applied_at: Mapped[datetime | None] = mapped_column(default=None)
    undone_at: Mapped[datetime | None] = mapped_column(default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)  # why a row was refused (no values)
