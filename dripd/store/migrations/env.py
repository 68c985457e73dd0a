"""Alembic's environment: migrations run on the engine dripd hands over."""

from __future__ import annotations

from alembic import context

from dripd.store import schema

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    context.run_migrations()
