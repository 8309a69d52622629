"""decisions carry over (record_hash), one run per batch (active_batches)

Revision ID: 0002_carry
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_carry"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items") as batch:
        batch.add_column(sa.Column("record_hash", sa.String(length=64), nullable=True))
        batch.create_index("ix_review_items_process_hash", ["process", "record_hash"])
    op.create_table(
        "active_batches",
        sa.Column("process", sa.String(length=100), nullable=False),
        sa.Column("batch", sa.Text(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=36), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process", "batch"),
    )


def downgrade() -> None:
    op.drop_table("active_batches")
    with op.batch_alter_table("review_items") as batch:
        batch.drop_index("ix_review_items_process_hash")
        batch.drop_column("record_hash")
