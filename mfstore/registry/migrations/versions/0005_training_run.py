"""How each layer version was trained beyond its configuration (schedule, processes, device),
so a retrain can say whether it gives the same weights back. Null for versions registered
before: unknown.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("layer_versions") as batch:
        batch.add_column(sa.Column("run", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("layer_versions") as batch:
        batch.drop_column("run")
