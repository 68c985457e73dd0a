"""The settings table: one value per key."""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from dripd.store.schema import settings


def setting(conn: sa.Connection, key: str) -> str | None:
    query = sa.select(settings.c.value).where(settings.c.key == key)
    value = conn.execute(query).scalar()
    return None if value is None else str(value)


def add_setting(conn: sa.Connection, key: str, value: str) -> None:
    """Write a new setting (the key must not be there yet)."""
    conn.execute(sa.insert(settings), {"key": key, "value": value})


def put_setting(conn: sa.Connection, key: str, value: str) -> None:
    """Write a setting (an upsert: two instances starting at once both succeed)."""
    dialect = sa.dialects.postgresql if conn.dialect.name == "postgresql" else sa.dialects.sqlite
    insert = dialect.insert(settings).values(key=key, value=value)
    conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
