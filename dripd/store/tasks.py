"""The tasks table: the rep's open tasks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store.schema import tasks


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """A call, card or to-do for a rep."""

    id: int
    contact_id: int
    enrollment_id: int | None
    campaign: str | None
    step: str | None
    occurrence: int
    kind: str
    rep: str | None
    due_at: datetime
    note: str
    status: str
    created_at: datetime
    done_at: datetime | None


_TASK_EXISTS = sa.select(tasks.c.id).where(
    tasks.c.enrollment_id == sa.bindparam("eid"),
    tasks.c.step == sa.bindparam("step"),
    tasks.c.occurrence == sa.bindparam("occurrence"),
)


def task_exists(conn: sa.Connection, enrollment_id: int, step: str, occurrence: int) -> bool:
    """Whether the task of this step occurrence was made already (a pass run again)."""
    key = {"eid": enrollment_id, "step": step, "occurrence": occurrence}
    return conn.execute(_TASK_EXISTS, key).first() is not None


def open_tasks(conn: sa.Connection, rep: str | None = None) -> list[Task]:
    query = sa.select(tasks).where(tasks.c.status == "open").order_by(tasks.c.due_at, tasks.c.id)
    if rep:
        query = query.where(tasks.c.rep == rep)
    return [Task(**dict(row._mapping)) for row in conn.execute(query)]


def task_by_id(conn: sa.Connection, task_id: int) -> Task | None:
    row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).first()
    return Task(**dict(row._mapping)) if row else None


def insert_task(conn: sa.Connection, row: Mapping[str, Any]) -> None:
    conn.execute(sa.insert(tasks), dict(row))


def update_task(conn: sa.Connection, task_id: int, changes: Mapping[str, Any]) -> None:
    conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**changes))
