"""the database cleanup's change log (cleanup_changes): every row a cleanup run changes, to apply once and undo

Revision ID: 0007_cleanup_changes
Revises: 0006_sampling_notify_links
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_cleanup_changes"
down_revision = "0006_sampling_notify_links"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cleanup_changes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_key", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("how", sa.String(length=20), nullable=False),
        sa.Column("cluster", sa.Text(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("before_hash", sa.String(length=64), nullable=True),
        sa.Column("after_hash", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.UniqueConstraint("flow_run_id", "seq"),
    )
    op.create_index("ix_cleanup_changes_run_status", "cleanup_changes", ["flow_run_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_cleanup_changes_run_status", table_name="cleanup_changes")
    op.drop_table("cleanup_changes")
