"""Named queries: every read and write of dripd's tables, in one place."""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from dripd.store.schema import (
    UTCDateTime,
    contacts,
    enrollments,
    events,
    outbox,
    reps,
    settings,
    tasks,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    phone: str = ""
    timezone: str | None = None
    owner: str | None = None
    stage: str = "suspect"
    status: str = "active"
    referred_by: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    touches: int = 0
    last_touch_at: datetime | None = None
    paused_until: datetime | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def values(self) -> dict[str, str]:
        """Every field as text, standard and custom, as templates and anchors see them.

        Every standard field is there, empty when unset: a template may test
        `{% if contact.referred_by %}` for any contact. A custom field is there
        only when the contact has it.
        """
        result = {key: str(value) for key, value in self.fields.items()}
        for key in ("email", "first_name", "last_name", "company", "phone", "stage", "status"):
            result[key] = getattr(self, key)
        for key in ("timezone", "owner", "referred_by"):
            result[key] = getattr(self, key) or ""
        result["created_at"] = self.created_at.isoformat()
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrollment:
    id: int
    contact_id: int
    campaign: str
    status: str
    enrolled_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    progress: str
    next_due_at: datetime | None
    waiting: str | None


class Prepared:
    """A statement compiled once per dialect and run straight on the DBAPI connection.

    For the statements run once or more per email (the outbox's claim and
    marks, the engine's enrollment updates and events). `Connection.execute`
    spends ~100 µs a call around a ~10 µs SQLite statement: cache-key and
    parameter processing, result set-up, events. This keeps SQLAlchemy for
    what it is good at (the SQL of each dialect, the columns' bind processors,
    so stored values are exactly what `Connection.execute` stores) and does
    the per-call part by hand. Runs inside the caller's transaction.

    `keys`: for an UPDATE or INSERT without `.values()`, the columns it sets.
    """

    def __init__(self, statement: Any, keys: Sequence[str] = ()) -> None:
        self.statement = statement
        self.keys = tuple(keys)
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, conn: sa.Connection) -> _Compiled:
        # Outside SQLAlchemy's transaction, psycopg would open one SQLAlchemy
        # doesn't know of, and returning the connection to the pool rolls it back.
        if not conn.in_transaction():
            raise RuntimeError("a Prepared statement runs inside a transaction (engine.begin())")
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _Compiled.of(
                self.statement, self.keys, dialect
            )
        return compiled

    def execute(self, conn: sa.Connection, params: Mapping[str, Any]) -> int:
        """Run once; the number of rows it changed."""
        compiled = self._for(conn)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, compiled.parameters(params))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def executemany(self, conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        compiled = self._for(conn)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(compiled.sql, [compiled.parameters(row) for row in rows])
        finally:
            cursor.close()


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...] | None  # parameter order (qmark), None for named parameters
    static: dict[str, Any]  # values written in the statement (`status == "queued"`)
    processors: tuple[tuple[str, Any], ...]  # bind name, the column type's bind processor

    @classmethod
    def of(cls, statement: Any, keys: tuple[str, ...], dialect: sa.Dialect) -> _Compiled:
        # for_executemany: no implicit RETURNING of the new id on PostgreSQL
        compiled = statement.compile(
            dialect=dialect, column_keys=list(keys) or None, for_executemany=True
        )
        binds = {name: bind for bind, name in compiled.bind_names.items()}
        processors = tuple(
            (name, fn)
            for name, bind in binds.items()
            if (fn := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        )
        return cls(
            sql=str(compiled),
            names=tuple(compiled.positiontup) if compiled.positional else None,
            static={name: b.effective_value for name, b in binds.items() if not b.required},
            processors=processors,
        )

    def parameters(self, params: Mapping[str, Any]) -> Any:
        values = {**self.static, **params}
        for name, process in self.processors:
            if name in values:
                values[name] = process(values[name])
        if self.names is None:
            return values
        return tuple([values[name] for name in self.names])


# Statements on the sending hot path are built once: building one costs
# ~200 µs, five times the cost of executing it (SQLAlchemy's per-call
# coercion and cache-key work). UPDATEs without .values() set the columns
# named by the parameters given.
_CONTACT_BY_ID = sa.select(contacts).where(contacts.c.id == sa.bindparam("cid"))
_UPDATE_CONTACT = sa.update(contacts).where(contacts.c.id == sa.bindparam("cid"))
_COUNT_TOUCH = (
    sa.update(contacts)
    .where(contacts.c.id == sa.bindparam("cid"))
    .values(
        touches=contacts.c.touches + 1,
        last_touch_at=sa.bindparam("at"),
        updated_at=sa.bindparam("at"),
    )
)
_ENROLLMENT_BY_ID = sa.select(enrollments).where(enrollments.c.id == sa.bindparam("eid"))
_UPDATE_ENROLLMENT = sa.update(enrollments).where(enrollments.c.id == sa.bindparam("eid"))
_ACTIVE_ENROLLMENTS = (
    sa.select(enrollments)
    .where(enrollments.c.contact_id == sa.bindparam("cid"), enrollments.c.status == "active")
    .order_by(enrollments.c.id)
)
_INSERT_EVENT = sa.insert(events)
# Run by the engine once per chunk of enrollments.
_CONTACTS_BY_IDS = sa.select(contacts).where(contacts.c.id.in_(sa.bindparam("ids", expanding=True)))
_DUE = (
    sa.select(enrollments)
    .where(enrollments.c.next_due_at <= sa.bindparam("now"))
    .order_by(enrollments.c.next_due_at)
    .limit(sa.bindparam("limit"))
)
# The engine's form: several instances on one PostgreSQL each take due
# enrollments no other transaction holds, so none is advanced twice
# (SQLite, one writer at a time, has no FOR UPDATE and needs none).
_DUE_LOCKED = _DUE.with_for_update(skip_locked=True)
_REP_PAUSES = sa.select(reps.c.id, reps.c.paused_until).where(reps.c.paused_until.is_not(None))
_COUNT_TOUCH_PREPARED = Prepared(_COUNT_TOUCH)
_PREPARED: dict[tuple[int, tuple[str, ...]], Prepared] = {}


def prepared(statement: Any, keys: Iterable[str]) -> Prepared:
    """The Prepared form of `statement` setting the columns `keys` (a few sets are used).

    Keyed by the statement's id: only for the module's own statement constants.
    """
    cache_key = (id(statement), tuple(keys))
    found = _PREPARED.get(cache_key)
    if found is None:
        found = _PREPARED[cache_key] = Prepared(statement, cache_key[1])
    return found


def contact_from_row(row: sa.Row[Any]) -> Contact:
    """A contact from a row of the contacts table."""
    return _contact(row)


def _contact(row: sa.Row[Any]) -> Contact:
    data = dict(row._mapping)
    data.pop("email_key", None)
    data["fields"] = json.loads(data["fields"] or "{}")
    return Contact(**data)


def _enrollment(row: sa.Row[Any]) -> Enrollment:
    return Enrollment(**dict(row._mapping))


# -- contacts ---------------------------------------------------------------


def contact_by_email(conn: sa.Connection, email: str) -> Contact | None:
    row = conn.execute(
        sa.select(contacts).where(contacts.c.email_key == email.strip().lower())
    ).first()
    return _contact(row) if row else None


def contact_by_id(conn: sa.Connection, contact_id: int) -> Contact:
    return _contact(conn.execute(_CONTACT_BY_ID, {"cid": contact_id}).one())


def contacts_by_ids(conn: sa.Connection, ids: Iterable[int]) -> dict[int, Contact]:
    result: dict[int, Contact] = {}
    id_list = list(ids)
    for start in range(0, len(id_list), 500):
        chunk = id_list[start : start + 500]
        for row in conn.execute(_CONTACTS_BY_IDS, {"ids": chunk}):
            contact = _contact(row)
            result[contact.id] = contact
    return result


def list_contacts(
    conn: sa.Connection, *, stage: str | None = None, campaign: str | None = None
) -> list[Contact]:
    query = sa.select(contacts).order_by(contacts.c.email_key)
    if stage:
        query = query.where(contacts.c.stage == stage)
    if campaign:
        active = sa.select(enrollments.c.contact_id).where(
            enrollments.c.campaign == campaign, enrollments.c.status == "active"
        )
        query = query.where(contacts.c.id.in_(active))
    return [_contact(row) for row in conn.execute(query)]


def contacts_page(
    conn: sa.Connection,
    *,
    after: str | None,
    limit: int,
    stage: str | None = None,
    campaign: str | None = None,
) -> list[Contact]:
    """Up to `limit` contacts with an email_key past `after`, in email_key order.

    Keyset paging: each page reads the email_key index from where the last
    one stopped, so the first page of a million contacts costs what the
    first page of ten does.
    """
    query = sa.select(contacts).order_by(contacts.c.email_key).limit(limit)
    if after is not None:
        query = query.where(contacts.c.email_key > after)
    if stage:
        # `stage || ''`: not the stage index (which would sort every contact
        # of the stage before the first row), the email_key order's.
        query = query.where(sa.func.coalesce(contacts.c.stage, "").op("||")("") == stage)
    if campaign:
        query = query.where(
            sa.exists().where(
                enrollments.c.contact_id == contacts.c.id,
                enrollments.c.status == "active",
                enrollments.c.campaign == campaign,
            )
        )
    return [_contact(row) for row in conn.execute(query)]


def active_campaigns(conn: sa.Connection, ids: Collection[int]) -> dict[int, list[str]]:
    """contact id → its active enrollments' campaigns (in enrollment order), for a page."""
    query = (
        sa.select(enrollments.c.contact_id, enrollments.c.campaign)
        .where(
            enrollments.c.contact_id.in_(sorted(ids)),
            enrollments.c.status == "active",
        )
        .order_by(enrollments.c.id)
    )
    found: dict[int, list[str]] = {}
    for contact_id, name in conn.execute(query):
        found.setdefault(contact_id, []).append(name)
    return found


def contact_ids_owned_by(conn: sa.Connection, rep_id: str, page: int = 1000) -> Iterator[int]:
    """The ids of a rep's contacts, in id order, read a page at a time (the owner index)."""
    query = (
        sa.select(contacts.c.id)
        .where(contacts.c.owner == rep_id)
        .order_by(contacts.c.id)
        .limit(page)
    )
    last = 0
    while ids := list(conn.execute(query.where(contacts.c.id > last)).scalars()):
        yield from ids
        last = ids[-1]


def existing_keys(conn: sa.Connection, keys: Sequence[str]) -> dict[str, int]:
    """email_key → contact id for those of `keys` already stored."""
    found: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        query = sa.select(contacts.c.email_key, contacts.c.id).where(
            contacts.c.email_key.in_(chunk)
        )
        found.update({key: cid for key, cid in conn.execute(query)})
    return found


def max_contact_id(conn: sa.Connection) -> int:
    return int(
        conn.execute(sa.select(sa.func.coalesce(sa.func.max(contacts.c.id), 0))).scalar_one()
    )


def contact_ids_after(conn: sa.Connection, after: int) -> dict[str, int]:
    """email_key → id of the contacts with an id above `after` (just inserted in bulk)."""
    query = sa.select(contacts.c.email_key, contacts.c.id).where(contacts.c.id > after)
    return {key: cid for key, cid in conn.execute(query)}


def insert_contact(conn: sa.Connection, row: dict[str, Any]) -> int:
    result = conn.execute(sa.insert(contacts).returning(contacts.c.id), row)
    return int(result.scalar_one())


def update_contact(conn: sa.Connection, contact_id: int, changes: Mapping[str, Any]) -> None:
    if changes:
        prepared(_UPDATE_CONTACT, changes).execute(conn, {"cid": contact_id, **changes})


def count_touch(conn: sa.Connection, contact_id: int, at: datetime) -> None:
    _COUNT_TOUCH_PREPARED.execute(conn, {"cid": contact_id, "at": at})


def count_touches(conn: sa.Connection, touches: Sequence[tuple[int, datetime]]) -> None:
    """count_touch for many contacts in one executemany (a contact may come twice)."""
    rows = [{"cid": contact_id, "at": at} for contact_id, at in touches]
    _COUNT_TOUCH_PREPARED.executemany(conn, rows)


# -- enrollments ------------------------------------------------------------


def active_enrollments(conn: sa.Connection, contact_id: int) -> list[Enrollment]:
    return [_enrollment(row) for row in conn.execute(_ACTIVE_ENROLLMENTS, {"cid": contact_id})]


def enrollments_of(conn: sa.Connection, contact_id: int) -> list[Enrollment]:
    query = sa.select(enrollments).where(enrollments.c.contact_id == contact_id)
    return [_enrollment(row) for row in conn.execute(query.order_by(enrollments.c.id))]


def all_active_enrollments(conn: sa.Connection) -> list[Enrollment]:
    query = sa.select(enrollments).where(enrollments.c.status == "active")
    return [_enrollment(row) for row in conn.execute(query.order_by(enrollments.c.id))]


def any_active(conn: sa.Connection) -> bool:
    """Whether any enrollment is active."""
    query = sa.select(enrollments.c.id).where(enrollments.c.status == "active").limit(1)
    return conn.execute(query).first() is not None


def insert_enrollment(conn: sa.Connection, row: dict[str, Any]) -> int:
    result = conn.execute(sa.insert(enrollments).returning(enrollments.c.id), row)
    return int(result.scalar_one())


def update_enrollment(conn: sa.Connection, enrollment_id: int, changes: Mapping[str, Any]) -> None:
    prepared(_UPDATE_ENROLLMENT, changes).execute(conn, {"eid": enrollment_id, **changes})


def due_enrollments(
    conn: sa.Connection, now: datetime, limit: int, *, lock: bool = False
) -> list[Enrollment]:
    """The active enrollments with something due at `now`, earliest first.

    Served by the next_due_at index alone: its cost grows with what is due.
    `lock`: for advancing them, row-locked until the transaction ends, and
    those another instance is advancing left out.
    """
    query = _DUE_LOCKED if lock else _DUE
    return [_enrollment(row) for row in conn.execute(query, {"now": now, "limit": limit})]


def due_page(
    conn: sa.Connection, until: datetime, after: tuple[datetime, int] | None, limit: int
) -> list[Enrollment]:
    """Up to `limit` active enrollments due by `until`, in (next_due_at, id) order after `after`.

    Keyset paging over the due index: `schedule` reads what falls in its window only.
    """
    e = enrollments
    query = (
        sa.select(e)
        .where(e.c.next_due_at <= until, e.c.status == "active")
        .order_by(e.c.next_due_at, e.c.id)
        .limit(limit)
    )
    if after is not None:
        # A row value: SQLite and PostgreSQL start the index scan at it (an OR
        # of the two cases rescans every tie of the same instant, each page).
        at, last_id = after
        query = query.where(
            sa.tuple_(e.c.next_due_at, e.c.id)
            > sa.tuple_(sa.literal(at, UTCDateTime()), sa.literal(last_id))
        )
    return [_enrollment(row) for row in conn.execute(query)]


WAITING_PAGE = 1000  # rows per query of waiting_enrollments


def waiting_enrollments(
    conn: sa.Connection, known: Collection[str], contact_id: int | None = None
) -> Iterator[tuple[str, str, str]]:
    """(email, campaign, waiting) of the active enrollments waiting on something, by id.

    An enrollment of a campaign not in `known` (its file is gone) counts too.
    Read a page at a time.
    """
    e = enrollments
    query = (
        sa.select(e.c.id, contacts.c.email, e.c.campaign, e.c.waiting)
        .join(contacts, contacts.c.id == e.c.contact_id)
        .where(
            e.c.status == "active",
            sa.or_(e.c.waiting.is_not(None), e.c.campaign.not_in(sorted(known))),
        )
        .order_by(e.c.id)
        .limit(WAITING_PAGE)
    )
    if contact_id is not None:
        query = query.where(e.c.contact_id == contact_id)
    last = 0
    while True:
        rows = conn.execute(query.where(e.c.id > last)).all()
        for _, email, campaign, waiting in rows:
            yield email, campaign, waiting or ""
        if len(rows) < WAITING_PAGE:
            return
        last = rows[-1][0]


def setting(conn: sa.Connection, key: str) -> str | None:
    query = sa.select(settings.c.value).where(settings.c.key == key)
    value = conn.execute(query).scalar()
    return None if value is None else str(value)


def put_setting(conn: sa.Connection, key: str, value: str) -> None:
    """Write a setting (an upsert: two instances starting at once both succeed)."""
    dialect = sa.dialects.postgresql if conn.dialect.name == "postgresql" else sa.dialects.sqlite
    insert = dialect.insert(settings).values(key=key, value=value)
    conn.execute(insert.on_conflict_do_update(index_elements=["key"], set_={"value": value}))


def recheck_enrollments(
    conn: sa.Connection, now: datetime, campaigns: Collection[str] | None = None
) -> int:
    """Make active enrollments (of `campaigns`, or all) due at `now`; how many.

    After a reload the engine then plans each of them again from its progress
    (step ids done) under the new campaign files and config.
    """
    query = sa.update(enrollments).where(enrollments.c.status == "active")
    if campaigns is not None:
        query = query.where(enrollments.c.campaign.in_(sorted(campaigns)))
    return conn.execute(query.values(next_due_at=now)).rowcount


def outbox_backlog(conn: sa.Connection) -> int:
    """Emails waiting to be sent (queued, including those retried later)."""
    query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "queued")
    return int(conn.execute(query).scalar_one())


def enrollment_counts(conn: sa.Connection) -> dict[tuple[str, str], int]:
    query = sa.select(enrollments.c.campaign, enrollments.c.status, sa.func.count()).group_by(
        enrollments.c.campaign, enrollments.c.status
    )
    return {(campaign, status): count for campaign, status, count in conn.execute(query)}


# -- events -----------------------------------------------------------------


def add_event(conn: sa.Connection, **values: Any) -> None:
    prepared(_INSERT_EVENT, values).execute(conn, values)


def add_events(conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert events that all set the same columns, in one executemany."""
    if rows:
        prepared(_INSERT_EVENT, rows[0]).executemany(conn, rows)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactCounts:
    stages: dict[str, int]
    statuses: dict[str, int]
    touches: int


def contact_counts(conn: sa.Connection) -> ContactCounts:
    """Contacts per stage and per status, and the touches of all.

    One pass over the index on (status, stage, touches), never the table: at
    a million contacts the table scan took most of `status`'s time.
    """
    query = sa.select(
        contacts.c.status,
        contacts.c.stage,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(contacts.c.touches), 0),
    ).group_by(contacts.c.status, contacts.c.stage)
    stages: dict[str, int] = {}
    statuses: dict[str, int] = {}
    touches = 0
    for status, stage, count, touched in conn.execute(query):
        stages[stage] = stages.get(stage, 0) + count
        statuses[status] = statuses.get(status, 0) + count
        touches += int(touched)
    return ContactCounts(stages=stages, statuses=statuses, touches=touches)


def due_count(conn: sa.Connection, now: datetime, cap: int) -> int:
    """How many enrollments are due at `now`, counted up to `cap` (the due index's head)."""
    head = sa.select(enrollments.c.id).where(enrollments.c.next_due_at <= now).limit(cap)
    return int(conn.execute(sa.select(sa.func.count()).select_from(head.subquery())).scalar_one())


# -- tasks ------------------------------------------------------------------


def open_tasks(conn: sa.Connection, rep: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(tasks).where(tasks.c.status == "open").order_by(tasks.c.due_at, tasks.c.id)
    if rep:
        query = query.where(tasks.c.rep == rep)
    return [dict(row._mapping) for row in conn.execute(query)]


def task_by_id(conn: sa.Connection, task_id: int) -> dict[str, Any] | None:
    row = conn.execute(sa.select(tasks).where(tasks.c.id == task_id)).first()
    return dict(row._mapping) if row else None


def update_task(conn: sa.Connection, task_id: int, changes: Mapping[str, Any]) -> None:
    conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**changes))


def enrollment_by_id(conn: sa.Connection, enrollment_id: int) -> Enrollment | None:
    row = conn.execute(_ENROLLMENT_BY_ID, {"eid": enrollment_id}).first()
    return _enrollment(row) if row else None


# -- reps -------------------------------------------------------------------


def rep_pauses(conn: sa.Connection) -> dict[str, datetime]:
    return {rep_id: until for rep_id, until in conn.execute(_REP_PAUSES)}


def set_rep_pause(conn: sa.Connection, rep_id: str, until: datetime | None, now: datetime) -> None:
    updated = conn.execute(
        sa.update(reps).where(reps.c.id == rep_id).values(paused_until=until, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(reps).values(id=rep_id, paused_until=until, updated_at=now))


# -- bulk -------------------------------------------------------------------


def bulk_insert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    ignore_conflicts: bool = False,
) -> None:
    """Insert many rows with one driver-level executemany.

    Imports of 100,000 contacts spent most of their time in SQLAlchemy's
    per-row parameter processing. This compiles the INSERT once for the
    connection's dialect and hands the driver plain values, converted by the
    columns' own bind processors (so stored values are exactly what
    `sa.insert` would store), with each distinct value converted once.
    """
    if not rows:
        return
    plan = _bulk_plan(conn.dialect, table, tuple(rows[0]), ignore_conflicts)
    getter = operator.itemgetter(*plan.order)
    values: list[Any] = (
        [getter(row) for row in rows]
        if len(plan.order) > 1
        else [(row[plan.order[0]],) for row in rows]
    )
    if plan.convert:
        values = _apply(values, plan.convert)
    params: Sequence[Any] = (
        values if plan.positional else [dict(zip(plan.order, v, strict=True)) for v in values]
    )
    conn.exec_driver_sql(plan.sql, params)


@dataclass(frozen=True, slots=True)
class _BulkPlan:
    sql: str
    positional: bool
    order: tuple[str, ...]  # the columns in parameter order
    convert: list[tuple[int, Any]]  # parameter index, converter


@functools.lru_cache(maxsize=64)
def _bulk_plan(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...], ignore_conflicts: bool
) -> _BulkPlan:
    """The INSERT of `columns`, compiled once (~1 ms each time: the engine inserts per chunk)."""
    statement = _insert_for(dialect.name, table, ignore_conflicts)
    compiled = statement.values({name: sa.bindparam(name) for name in columns}).compile(
        dialect=dialect
    )
    order = tuple(compiled.positiontup or columns) if compiled.positional else columns
    convert = [
        (i, fn)
        for i, name in enumerate(order)
        if (fn := _converter(table.c[name].type, dialect)) is not None
    ]
    return _BulkPlan(
        sql=str(compiled), positional=compiled.positional, order=order, convert=convert
    )


def _insert_for(dialect: str, table: sa.Table, ignore_conflicts: bool) -> Any:
    """INSERT, or INSERT that skips rows violating a unique constraint."""
    if not ignore_conflicts:
        return sa.insert(table)
    if dialect == "postgresql":
        return sa.dialects.postgresql.insert(table).on_conflict_do_nothing()
    return sa.dialects.sqlite.insert(table).on_conflict_do_nothing()


def _apply(values: list[tuple[Any, ...]], convert: list[tuple[int, Any]]) -> list[Any]:
    """`values` with the converted columns replaced, column by column (zip is C, a row loop not)."""
    columns: list[Any] = list(zip(*values, strict=True))
    for i, fn in convert:
        columns[i] = [fn(value) for value in columns[i]]
    return list(zip(*columns, strict=True))


def _converter(column_type: Any, dialect: Any) -> Any:
    """A cached bind processor for a column type, or None when values pass as they are."""
    if not isinstance(column_type, UTCDateTime):
        return None
    process = column_type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return None
    # A bulk import stamps most rows with the same instant: convert it once.
    return functools.lru_cache(maxsize=4096)(process)
