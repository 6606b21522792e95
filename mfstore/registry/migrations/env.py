"""Alembic environment: always handed an open connection inside the caller's transaction
(which holds the schema lock), never a URL of its own."""

from alembic import context

from mfstore.registry.rows import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
