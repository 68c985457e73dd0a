"""The enrollments table: a contact in a campaign, what is due, what waits."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from dripd.store import statements
from dripd.store.contacts import ADDRESSEE_COLUMNS, Addressee, stored_time
from dripd.store.schema import UTCDateTime, contacts, enrollments


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


_ENROLLMENT_BY_ID = sa.select(enrollments).where(enrollments.c.id == sa.bindparam("eid"))


_UPDATE_ENROLLMENT = sa.update(enrollments).where(enrollments.c.id == sa.bindparam("eid"))


_ACTIVE_ENROLLMENTS = (
    sa.select(enrollments)
    .where(enrollments.c.contact_id == sa.bindparam("cid"), enrollments.c.status == "active")
    .order_by(enrollments.c.id)
)


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


_ENROLLMENT_COLUMNS = tuple(column.name for column in enrollments.columns)


def _enrollment(row: sa.Row[Any]) -> Enrollment:
    """An enrollment from a row of the enrollments table (all its columns, in order)."""
    return Enrollment(**dict(zip(_ENROLLMENT_COLUMNS, row, strict=True)))


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
    statements.prepared(_UPDATE_ENROLLMENT, changes).execute(
        conn, {"eid": enrollment_id, **changes}
    )


def update_enrollments(conn: sa.Connection, rows: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
    """`update_enrollment` of each (id, changes), one executemany per set of columns changed.

    The rows of different sets are not written in their given order: each
    enrollment at most once.
    """
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for enrollment_id, changes in rows:
        by_columns.setdefault(tuple(changes), []).append({"eid": enrollment_id, **changes})
    for columns, params in by_columns.items():
        statements.prepared(_UPDATE_ENROLLMENT, columns).executemany(conn, params)


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


class Due(NamedTuple):
    """An active enrollment due by a time, as `schedule` reads it, with its contact.

    A named tuple (immutable, built by position): a schedule builds one per
    due enrollment, and a frozen dataclass cost three times as much. Its
    times are kept as the driver hands them (`stored_time`) and made aware
    only when asked: `schedule` compares or keys most of them as they are.
    """

    id: int
    campaign: str
    enrolled_stored: Any  # enrolled_at as stored (SQLite: ISO text; PostgreSQL: naive UTC)
    progress: str
    next_due_stored: Any  # next_due_at as stored
    contact: Addressee

    @property
    def enrolled_at(self) -> datetime:
        return stored_time(self.enrolled_stored)

    @property
    def next_due_at(self) -> datetime:
        return stored_time(self.next_due_stored)


def _as_stored(column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    """`column` read as the driver hands it, without SQLAlchemy's per-value processing.

    UTCDateTime's processing ends in `datetime.replace(tzinfo=UTC)`, ~3 µs a
    value here, three a due row; `stored_time` makes one aware when it is used.
    """
    return sa.type_coerce(column, sa.String)


def _due_query(*, after: bool, contact: bool) -> statements.Prepared:
    """The due page's statement: `until`, `limit`, and `after_at`/`after_id`, `cid` if asked."""
    e = enrollments
    query = (
        sa.select(
            e.c.id,
            e.c.campaign,
            _as_stored(e.c.enrolled_at),
            e.c.progress,
            _as_stored(e.c.next_due_at),
            *ADDRESSEE_COLUMNS[:-1],
            _as_stored(ADDRESSEE_COLUMNS[-1]),  # the contact's created_at (Addressee's last field)
        )
        .join(contacts, contacts.c.id == e.c.contact_id)
        .where(e.c.next_due_at <= sa.bindparam("until"), e.c.status == "active")
        .order_by(e.c.next_due_at, e.c.id)
        .limit(sa.bindparam("limit"))
    )
    if contact:
        query = query.where(e.c.contact_id == sa.bindparam("cid"))
    if after:
        # A row value: SQLite and PostgreSQL start the index scan at it (an OR
        # of the two cases rescans every tie of the same instant, each page).
        query = query.where(
            sa.tuple_(e.c.next_due_at, e.c.id)
            > sa.tuple_(sa.bindparam("after_at", type_=UTCDateTime()), sa.bindparam("after_id"))
        )
    return statements.Prepared(query)


# By (after, contact): compiled once per dialect.
_DUE_PAGE = {
    (after, contact): _due_query(after=after, contact=contact)
    for after in (False, True)
    for contact in (False, True)
}


def due_page(
    conn: sa.Connection,
    until: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
    contact_id: int | None = None,
) -> list[Due]:
    """Up to `limit` active enrollments due by `until`, in (next_due_at, id) order after `after`.

    Keyset paging over the due index: `schedule` reads what falls in its
    window only. Each comes with its contact, joined in the same query and
    read by position (a second query by ids, and full rows built by name,
    cost ~26 µs a row against ~8), the page in one fetch of the driver's rows.
    """
    params: dict[str, Any] = {"until": until, "limit": limit}
    if after is not None:
        params["after_at"], params["after_id"] = after
    if contact_id is not None:
        params["cid"] = contact_id
    statement = _DUE_PAGE[after is not None, contact_id is not None]
    # tuple.__new__: the named tuples' own __new__ is a Python function, 3x the cost.
    new = tuple.__new__
    return [new(Due, (*row[:5], new(Addressee, row[5:]))) for row in statement.rows(conn, params)]


WAITING_PAGE = 1000  # rows per query of waiting_enrollments


def waiting_enrollments(
    conn: sa.Connection, known: Collection[str], contact_id: int | None = None
) -> Iterator[tuple[str, str, str]]:
    """(email, campaign, waiting) of the active enrollments waiting on something, by id.

    An enrollment of a campaign not in `known` (its file is gone) counts too.
    Read a page at a time, from indexes: `campaign NOT IN known` would read
    every enrollment (0.15 s at a million), so the campaigns present are
    found first (`campaign_names`) and the gone ones asked for by name.
    """
    e = enrollments
    gone = sorted(set(campaign_names(conn)) - set(known))
    held = e.c.waiting.is_not(None)
    query = (
        sa.select(e.c.id, contacts.c.email, e.c.campaign, e.c.waiting)
        .join(contacts, contacts.c.id == e.c.contact_id)
        .where(e.c.status == "active", sa.or_(held, e.c.campaign.in_(gone)) if gone else held)
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


def campaign_names(conn: sa.Connection) -> list[str]:
    """Every campaign any enrollment names, in order: one seek of the campaign index each."""
    e = enrollments
    names: list[str] = []
    while True:
        query = sa.select(sa.func.min(e.c.campaign))
        if names:
            query = query.where(e.c.campaign > names[-1])
        name = conn.execute(query).scalar()
        if name is None:
            return names
        names.append(name)


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


def enrollment_counts(conn: sa.Connection) -> dict[tuple[str, str], int]:
    query = sa.select(enrollments.c.campaign, enrollments.c.status, sa.func.count()).group_by(
        enrollments.c.campaign, enrollments.c.status
    )
    return {(campaign, status): count for campaign, status, count in conn.execute(query)}


def due_count(conn: sa.Connection, now: datetime, cap: int) -> int:
    """How many enrollments are due at `now`, counted up to `cap` (the due index's head)."""
    head = sa.select(enrollments.c.id).where(enrollments.c.next_due_at <= now).limit(cap)
    return int(conn.execute(sa.select(sa.func.count()).select_from(head.subquery())).scalar_one())


def enrollment_by_id(conn: sa.Connection, enrollment_id: int) -> Enrollment | None:
    row = conn.execute(_ENROLLMENT_BY_ID, {"eid": enrollment_id}).first()
    return _enrollment(row) if row else None


def held_steps(conn: sa.Connection) -> list[Any]:
    """Active enrollments held at a step, and why (email, campaign, waiting), oldest first."""
    query = (
        sa.select(contacts.c.email, enrollments.c.campaign, enrollments.c.waiting)
        .join(contacts, contacts.c.id == enrollments.c.contact_id)
        .where(
            enrollments.c.status == "active",
            enrollments.c.waiting.is_not(None),
            enrollments.c.next_due_at.is_not(None),
        )
        .order_by(enrollments.c.id)
    )
    return list(conn.execute(query).all())
