"""quality samples (review_items.sample, sample_outcome), item priority, teams with notification targets, the
notification outbox, gate links

Revision ID: 0006_sampling_notify_links
Revises: 0005_four_eyes
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_sampling_notify_links"
down_revision = "0005_four_eyes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sample", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("sample_outcome", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "teams",
        sa.Column("name", sa.String(length=100), primary_key=True),
        sa.Column("webhook", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_notifications_pending", "notifications", ["delivered_at", "next_attempt_at"])
    op.create_table(
        "gate_links",
        sa.Column("nonce", sa.String(length=64), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("review_items.id"), nullable=False),
        sa.Column("approver", sa.String(length=100), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_from", sa.Text(), nullable=True),
    )
    op.create_index("ix_gate_links_item_id", "gate_links", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_gate_links_item_id", table_name="gate_links")
    op.drop_table("gate_links")
    op.drop_index("ix_notifications_pending", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("teams")
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_column("priority")
        batch_op.drop_column("sample_outcome")
        batch_op.drop_column("sample")
