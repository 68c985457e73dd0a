"""The events table: what happened to a contact, and the per-step statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store import statements
from dripd.store.schema import events

_INSERT_EVENT = sa.insert(events)


def add_event(conn: sa.Connection, **values: Any) -> None:
    statements.prepared(_INSERT_EVENT, values).execute(conn, values)


def add_events(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert events that all set the same columns, in one executemany."""
    if rows:
        statements.prepared(_INSERT_EVENT, rows[0]).executemany(conn, rows)


def event_times(conn: sa.Connection, contact_id: int, kind: str) -> list[datetime]:
    """When the contact's events of one kind happened, oldest first."""
    query = (
        sa.select(events.c.at)
        .where(events.c.contact_id == contact_id, events.c.kind == kind)
        .order_by(events.c.at)
    )
    return list(conn.execute(query).scalars())


def history(conn: sa.Connection, contact_id: int) -> list[dict[str, Any]]:
    query = (
        sa.select(events)
        .where(events.c.contact_id == contact_id)
        .order_by(events.c.at, events.c.id)
    )
    return [dict(row._mapping) for row in conn.execute(query)]


def step_counts(conn: sa.Connection) -> dict[tuple[str, str, str], int]:
    """(campaign, step, kind) → number of events, for the per-step statistics."""
    query = (
        sa.select(events.c.campaign, events.c.step, events.c.kind, sa.func.count())
        .where(events.c.step.is_not(None))
        .group_by(events.c.campaign, events.c.step, events.c.kind)
    )
    return {(c, s, k): n for c, s, k, n in conn.execute(query)}
