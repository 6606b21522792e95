"""A registry id (so a store knows the registry it belongs to), aliases as long as names, and
notes of any length.

Revision ID: 0004
Revises: 0003
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = sa.table("mfstore_meta", sa.column("key", sa.String), sa.column("value", sa.String))
    op.bulk_insert(meta, [{"key": "registry_id", "value": uuid.uuid4().hex}])
    with op.batch_alter_table("aliases") as batch:
        batch.alter_column("alias", type_=sa.String(200), existing_type=sa.String(100))
    for table in ("layer_versions", "networks"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("note", type_=sa.Text, existing_type=sa.String(2000),
                               existing_nullable=False)


def downgrade() -> None:
    raise NotImplementedError("not downgraded")
