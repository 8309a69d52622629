"""review_items.first_approval: the first of two approvals an item needs (four-eyes)

Revision ID: 0005_four_eyes
Revises: 0004_users
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_four_eyes"
down_revision = "0004_users"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("first_approval", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_items", schema=None) as batch_op:
        batch_op.drop_column("first_approval")
