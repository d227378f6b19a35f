"""Alembic environment: runs migrations on the engine the caller passes."""

from __future__ import annotations

from alembic import context

from dashboard.db import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    context.run_migrations()
