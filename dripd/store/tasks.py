"""The tasks table: the rep's open tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dripd.store.schema import tasks


def open_tasks(conn: sa.Connection, rep: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(tasks).where(tasks.c.status == "open").order_by(tasks.c.due_at, tasks.c.id)
    if rep:
        query = query.where(tasks.c.rep == rep)
    return [dict(row._mapping) for row in conn.execute(query)]


def task_by_id(conn: sa.Connection, task_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).first()
    return dict(row._mapping) if row else None


def insert_task(conn: sa.Connection, row: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(tasks), dict(row))


def update_task(conn: sa.Connection, task_id: int, changes: Mapping[str, Any]) -> None:
    conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**changes))
