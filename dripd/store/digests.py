"""The digests table, and what a rep's digest reads: open tasks, news, stuck contacts.

`rep_id` with `unowned`: the rep's rows, and when `unowned` those of no owner
too (a contact with no owner belongs to the first rep).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store import schema, tasks

_digests, _tasks, _contacts, _events = schema.digests, schema.tasks, schema.contacts, schema.events
_enrollments = schema.enrollments


def handled(conn: sa.Connection, rep: str, slot: datetime) -> bool:
    """Whether the rep's digest slot was handled (a digest sent, or found to say nothing)."""
    query = sa.select(_digests.c.id).where(_digests.c.rep == rep, _digests.c.slot_at == slot)
    return conn.execute(query).first() is not None


def add(
    conn: sa.Connection,
    *,
    rep: str,
    slot: datetime,
    message_id: str | None,
    task_ids: Collection[int],
    now: datetime,
) -> None:
    """Record a handled slot (unique per rep and slot: a second instance's fails)."""
    conn.execute(
        sa.insert(_digests).values(
            rep=rep,
            slot_at=slot,
            message_id=message_id,
            tasks=json.dumps(list(task_ids)),
            covers_until=now,
            created_at=now,
        )
    )


def covered_until(conn: sa.Connection, rep_id: str) -> datetime | None:
    """Up to when the rep's digests told the news."""
    query = sa.select(sa.func.max(_digests.c.covers_until)).where(_digests.c.rep == rep_id)
    value = conn.execute(query).scalar()
    return schema.UTCDateTime().process_result_value(value, conn.dialect) if value else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """A digest dripd sent: whom to, and its tasks by number."""

    id: int
    rep: str
    message_id: str
    task_ids: tuple[int, ...]

    def task_id(self, number: int) -> int | None:
        return self.task_ids[number - 1] if 1 <= number <= len(self.task_ids) else None


def sent_digest(conn: sa.Connection, message_id: str) -> Sent | None:
    query = sa.select(_digests.c.id, _digests.c.rep, _digests.c.tasks).where(
        _digests.c.message_id == message_id
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    return Sent(id=row.id, rep=row.rep, message_id=message_id, task_ids=_task_ids(row.tasks))


def _task_ids(text: str) -> tuple[int, ...]:
    value = json.loads(text or "[]")
    return tuple(int(v) for v in value) if isinstance(value, list) else ()


def last_digests(conn: sa.Connection) -> dict[str, datetime]:
    """When each rep's last digest was queued (for `dripd status`)."""
    query = (
        sa.select(_digests.c.rep, sa.func.max(_digests.c.created_at))
        .where(_digests.c.message_id.is_not(None))
        .group_by(_digests.c.rep)
    )
    decode = schema.UTCDateTime().process_result_value
    times = {rep: decode(at, conn.dialect) for rep, at in conn.execute(query)}
    return {rep: at for rep, at in times.items() if at is not None}


# -- what a digest reads ---------------------------------------------------------------


def _mine(column: sa.ColumnElement[Any], rep_id: str, unowned: bool) -> sa.ColumnElement[bool]:
    if unowned:
        return sa.or_(column == rep_id, column.is_(None))
    return column == rep_id


def steps_due(conn: sa.Connection, rep_id: str, unowned: bool, now: datetime) -> bool:
    """Whether active enrollments of the rep's contacts are due by `now` (not yet advanced)."""
    query = (
        sa.select(sa.literal(1))
        .select_from(_enrollments.join(_contacts, _contacts.c.id == _enrollments.c.contact_id))
        .where(
            _enrollments.c.status == "active",
            _enrollments.c.next_due_at <= now,
            _mine(_contacts.c.owner, rep_id, unowned),
        )
        .limit(1)
    )
    return conn.execute(query).first() is not None


def open_tasks(
    conn: sa.Connection, rep_id: str, unowned: bool, until: datetime, limit: int
) -> list[tasks.Task]:
    """The rep's open tasks due before `until`, soonest first."""
    query = (
        sa.select(_tasks)
        .where(
            _tasks.c.status == "open", _mine(_tasks.c.rep, rep_id, unowned), _tasks.c.due_at < until
        )
        .order_by(_tasks.c.due_at, _tasks.c.id)
        .limit(limit)
    )
    return [tasks.Task(**dict(row._mapping)) for row in conn.execute(query)]


def news(
    conn: sa.Connection,
    rep_id: str,
    unowned: bool,
    *,
    since: datetime,
    kinds: Collection[str],
    limit: int,
) -> list[sa.Row[Any]]:
    """Events of `kinds` after `since` on the rep's contacts, oldest first: kind, at, detail,
    and the contact's first_name, last_name and email."""
    query = (
        sa.select(
            _events.c.kind,
            _events.c.at,
            _events.c.detail,
            _contacts.c.first_name,
            _contacts.c.last_name,
            _contacts.c.email,
        )
        .join(_contacts, _contacts.c.id == _events.c.contact_id)
        .where(
            _events.c.at > since,
            _events.c.kind.in_(kinds),
            _mine(_contacts.c.owner, rep_id, unowned),
        )
        .order_by(_events.c.at, _events.c.id)
        .limit(limit)
    )
    return list(conn.execute(query))


def stuck_contacts(
    conn: sa.Connection, rep_id: str, unowned: bool, *, few: int, limit: int
) -> list[dict[str, Any]]:
    """The rep's active contacts touched 1 to few-1 times, in no campaign, with no reply,
    least recently touched first; each with `ended_at`, when its last enrollment ended."""
    ended = (
        sa.select(sa.func.max(_enrollments.c.ended_at))
        .where(_enrollments.c.contact_id == _contacts.c.id)
        .scalar_subquery()
    )
    running = sa.exists().where(
        _enrollments.c.contact_id == _contacts.c.id, _enrollments.c.status == "active"
    )
    replied = sa.exists().where(_events.c.contact_id == _contacts.c.id, _events.c.kind == "replied")
    query = (
        sa.select(_contacts, ended.label("ended_at"))
        .where(
            _mine(_contacts.c.owner, rep_id, unowned),
            _contacts.c.status == "active",
            _contacts.c.touches.between(1, few - 1),
            ~running,
            ~replied,
        )
        .order_by(_contacts.c.last_touch_at, _contacts.c.id)
        .limit(limit)
    )
    decode = schema.UTCDateTime().process_result_value
    return [
        {**row._mapping, "ended_at": decode(row.ended_at, conn.dialect) if row.ended_at else None}
        for row in conn.execute(query)
    ]
