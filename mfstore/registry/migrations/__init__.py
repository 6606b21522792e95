"""Alembic migrations of the registry schema (run by `mfstore.registry.schema`)."""
