"""Stream sizes as 64-bit integers: a stream over 2 GiB fits.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.alter_column("bytes", type_=sa.BigInteger, existing_type=sa.Integer,
                           existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("streams") as batch:
        batch.alter_column("bytes", type_=sa.Integer, existing_type=sa.BigInteger,
                           existing_nullable=False)
