"""A status per stream (`ok` or `damaged`), so that verify, repair and gc agree on it.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False,
                                   server_default="ok"))


def downgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.drop_column("status")
