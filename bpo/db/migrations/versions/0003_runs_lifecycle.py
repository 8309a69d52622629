"""runs: the process that runs each run (host, pid) and the message it ended with

Revision ID: 0003_runs
Revises: 0002_carry
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_runs"
down_revision = "0002_carry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pid_started', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('message', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('message')
        batch_op.drop_column('pid_started')
        batch_op.drop_column('pid')
        batch_op.drop_column('host')
