"""The contacts table: a contact, found, listed, counted, inserted and updated."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store import statements
from dripd.store.contact_rows import Addressee as Addressee
from dripd.store.contact_rows import Contact as Contact
from dripd.store.contact_rows import stored_time as stored_time
from dripd.store.schema import contacts, enrollments

# The columns of an Addressee, in its order (its last two: fields, created_at).
ADDRESSEE_COLUMNS = tuple(
    getattr(contacts.c, name) for name in (*Addressee._fields[:-2], "fields", "created_at")
)


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


# Run by the engine once per chunk of enrollments.
_CONTACTS_BY_IDS = sa.select(contacts).where(contacts.c.id.in_(sa.bindparam("ids", expanding=True)))


_COUNT_TOUCH_PREPARED = statements.Prepared(_COUNT_TOUCH)


def contact_from_row(row: sa.Row[Any]) -> Contact:
    """A contact from a row of the contacts table."""
    return _contact(row)


_COLUMNS = tuple(column.name for column in contacts.columns)


def _contact(row: sa.Row[Any]) -> Contact:
    return contact_of_values(row)


def contact_of_values(values: Sequence[Any]) -> Contact:
    """A contact from the contacts table's columns in table order (a row, or part of a join's).

    By position: a row's `_mapping` costs more than the rest of building one.
    """
    data = dict(zip(_COLUMNS, values, strict=True))
    del data["email_key"]
    data["fields"] = json.loads(data["fields"] or "{}")
    return Contact(**data)


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
        statements.prepared(_UPDATE_CONTACT, changes).execute(conn, {"cid": contact_id, **changes})


def count_touch(conn: sa.Connection, contact_id: int, at: datetime) -> None:
    _COUNT_TOUCH_PREPARED.execute(conn, {"cid": contact_id, "at": at})


def count_touches(conn: sa.Connection, touches: Sequence[tuple[int, datetime]]) -> None:
    """count_touch for many contacts in one executemany (a contact may come twice)."""
    rows = [{"cid": contact_id, "at": at} for contact_id, at in touches]
    _COUNT_TOUCH_PREPARED.executemany(conn, rows)


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


_BRIEF = sa.select(contacts.c.id, contacts.c.email, contacts.c.owner, contacts.c.status).where(
    contacts.c.email_key == sa.bindparam("key")
)


def brief_by_key(conn: sa.Connection, email_key: str) -> dict[str, Any] | None:
    """id, email, owner and status of the contact with this email_key (what classify needs)."""
    row = conn.execute(_BRIEF, {"key": email_key}).first()
    return dict(row._mapping) if row else None
