"""The round-1 schema: every table it is missing, created; the legacy marker moved on.

A round-1 registry (`mfstore_meta.schema_version` 1 or 2) already has some of these tables;
only the missing ones are created, so the same revision starts a fresh database and adopts an
old one. `schema_version` becomes 3, which a round-1 mfstore refuses to open.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> list[tuple[str, list[sa.Column | sa.UniqueConstraint]]]:
    now = sa.DateTime(timezone=True)
    return [
        ("mfstore_meta", [sa.Column("key", sa.String(64), primary_key=True),
                          sa.Column("value", sa.String(256), nullable=False)]),
        ("datasets", [
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
            sa.Column("source", sa.String(2000), nullable=False),
            sa.Column("format", sa.String(32), nullable=False),
            sa.Column("input_shape", sa.JSON, nullable=False),
            sa.Column("classes", sa.Integer, nullable=False),
            sa.Column("counts", sa.JSON, nullable=False),
            sa.Column("normalizer", sa.JSON, nullable=False),
            sa.Column("stream_id", sa.String(64), nullable=False),
            sa.Column("options", sa.JSON, nullable=False),
            sa.Column("class_names", sa.JSON, nullable=True),
            sa.Column("created", now, nullable=False)]),
        ("layer_versions", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(200), nullable=False, index=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("block_sha256", sa.String(64), nullable=False, index=True),
            sa.Column("digest", sa.String(64), nullable=False, index=True),
            sa.Column("spec", sa.JSON, nullable=False),
            sa.Column("signature", sa.JSON, nullable=False),
            sa.Column("dataset", sa.String(200), nullable=False),
            sa.Column("config", sa.JSON, nullable=False),
            sa.Column("metrics", sa.JSON, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("repairs", sa.Integer, nullable=True),
            sa.Column("note", sa.String(2000), nullable=False),
            sa.Column("created", now, nullable=False),
            sa.UniqueConstraint("name", "version")]),
        ("aliases", [sa.Column("kind", sa.String(16), primary_key=True),
                     sa.Column("name", sa.String(200), primary_key=True),
                     sa.Column("alias", sa.String(100), primary_key=True),
                     sa.Column("version", sa.Integer, nullable=False)]),
        ("networks", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(200), nullable=False, index=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("layers", sa.JSON, nullable=False),
            sa.Column("mode", sa.String(8), nullable=False),
            sa.Column("dataset", sa.String(200), nullable=False),
            sa.Column("forced", sa.Boolean, nullable=False),
            sa.Column("note", sa.String(2000), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created", now, nullable=False),
            sa.UniqueConstraint("name", "version")]),
        ("streams", [sa.Column("id", sa.String(64), primary_key=True),
                     sa.Column("dataset_fingerprint", sa.String(64), nullable=False, index=True),
                     sa.Column("chain", sa.JSON, nullable=False),
                     sa.Column("bytes", sa.Integer, nullable=False),
                     sa.Column("created", now, nullable=False)]),
        ("exports", [
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("network", sa.String(200), nullable=False, index=True),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("mode", sa.String(8), nullable=False),
            sa.Column("upto", sa.Integer, nullable=True),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("path", sa.String(2000), nullable=False),
            sa.Column("target", sa.String(2000), nullable=False),
            sa.Column("created", now, nullable=False)]),
    ]


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in _tables():
        if name not in present:
            op.create_table(name, *columns)
    meta = sa.table("mfstore_meta", sa.column("key", sa.String), sa.column("value", sa.String))
    op.execute(sa.delete(meta).where(meta.c.key == "schema_version"))
    op.bulk_insert(meta, [{"key": "schema_version", "value": "3"}])


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
