"""Alembic's environment: migrations run on the engine dripd hands over.

On PostgreSQL, several instances may start at once: the first to take the
advisory lock migrates, the others wait for it and then find nothing to do
(alembic reads the schema's version after the lock, in the same transaction).
"""

from __future__ import annotations

from alembic import context

from dripd.store import schema

MIGRATION_LOCK = 0x64726970  # "drip": the advisory lock key held while migrating

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    # Read under the lock: what this process found (another may have just migrated).
    context.config.attributes["before"] = context.get_context().get_current_revision()
    context.run_migrations()
