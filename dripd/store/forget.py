"""The contact's right to be forgotten: erase a person, keep only a keyed hash.

`erase` removes the contact and everything that is theirs (enrollments,
history, tasks, queued and sent emails, inbox records), then looks through
every text column of every table for the address (another contact's
`referred_by`, a history line that names them, a digest that listed them)
and blanks it there. What remains is an HMAC of the address under this
database's own key: a later import, referral or `contacts set` of the same
address is refused as "asked to be forgotten". One transaction: every
instance sharing the database sees the person gone at once.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dripd.mail.addresses import address_key
from dripd.store import schema, settings

FORGOTTEN = "(forgotten)"
KEY_SETTING = "forget_key"
BATCH = 500  # rows read at once while looking for the address


@dataclass(frozen=True, slots=True, kw_only=True)
class Erased:
    contact: bool  # the address was a contact
    rows: int  # rows deleted
    blanked: int  # other rows that named the address, blanked there


def erase(conn: sa.Connection, address: str, now: datetime) -> Erased:
    """Erase `address` from the database; idempotent."""
    key = address_key(address)
    if conn.dialect.name == "sqlite":  # deleted rows are zeroed, not left in free pages
        conn.exec_driver_sql("PRAGMA secure_delete = ON")
    contact_id = conn.execute(
        sa.select(schema.contacts.c.id).where(schema.contacts.c.email_key == key)
    ).scalar()
    rows = _delete_contact(conn, int(contact_id)) if contact_id is not None else 0
    conn.execute(
        sa.update(schema.contacts).where(schema.contacts.c.referred_by.ilike(key)),
        {"referred_by": None},
    )
    blanked = sum(_blank_text(conn, table, key) for table in schema.metadata.sorted_tables)
    blanked += _blank_bodies(conn, key)
    digest = hash_of(conn, key)
    known = sa.select(schema.forgotten.c.hash).where(schema.forgotten.c.hash == digest)
    if conn.execute(known).first() is None:
        conn.execute(sa.insert(schema.forgotten), {"hash": digest, "at": now})
    return Erased(contact=contact_id is not None, rows=rows, blanked=blanked)


def flush(engine: sa.Engine) -> None:
    """After `erase` on SQLite: the write-ahead log, which still holds the old pages, emptied."""
    if engine.dialect.name == "sqlite":
        raw = engine.raw_connection()  # outside any transaction, which a checkpoint needs
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            raw.close()


def forgotten(conn: sa.Connection, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` (as keys) asked to be forgotten.

    Imports ask for every row: with nobody forgotten it is one indexed read.
    """
    keys = {address_key(a) for a in addresses}
    if not keys or conn.execute(sa.select(schema.forgotten.c.hash).limit(1)).first() is None:
        return set()
    secret = _secret(conn)
    by_hash = {_keyed(secret, key): key for key in keys}
    found = conn.execute(
        sa.select(schema.forgotten.c.hash).where(schema.forgotten.c.hash.in_(list(by_hash)))
    ).scalars()
    return {by_hash[h] for h in found}


def hash_of(conn: sa.Connection, key: str) -> str:
    """HMAC-SHA256 of an address key under this database's own random key."""
    return _keyed(_secret(conn), key)


def _keyed(secret: str, key: str) -> str:
    return hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def _secret(conn: sa.Connection) -> str:
    value = settings.setting(conn, KEY_SETTING)
    if value is None:
        value = secrets.token_hex(32)
        settings.add_setting(conn, KEY_SETTING, value)
    return value


def _delete_contact(conn: sa.Connection, contact_id: int) -> int:
    """Delete the contact and every row that is theirs; how many rows went."""
    outbox, bodies = schema.outbox, schema.outbox_bodies
    theirs = outbox.c.contact_id == contact_id
    message_ids = list(conn.execute(sa.select(outbox.c.message_id).where(theirs)).scalars())
    deleted = 0
    for start in range(0, len(message_ids), BATCH):
        chunk = message_ids[start : start + BATCH]
        deleted += conn.execute(sa.delete(bodies).where(bodies.c.message_id.in_(chunk))).rowcount
    for table, column in (
        (outbox, outbox.c.contact_id),
        (schema.tasks, schema.tasks.c.contact_id),
        (schema.events, schema.events.c.contact_id),
        (schema.inbox_messages, schema.inbox_messages.c.contact_id),
        (schema.enrollments, schema.enrollments.c.contact_id),
        (schema.contacts, schema.contacts.c.id),
    ):
        deleted += conn.execute(sa.delete(table).where(column == contact_id)).rowcount
    return deleted


def _blank_text(conn: sa.Connection, table: sa.Table, key: str) -> int:
    """Rows of `table` whose text names the address: the address blanked there."""
    columns = [c for c in table.columns if _is_text(c) and not c.primary_key]
    keys = list(table.primary_key.columns)
    if not columns or not keys:
        return 0
    named = sa.or_(*(sa.func.lower(c).contains(key, autoescape=True) for c in columns))
    found = conn.execute(sa.select(*keys, *columns).where(named)).all()
    pattern = re.compile(re.escape(key), re.IGNORECASE)
    for row in found:
        values = {c.name: _blank(row._mapping[c.name], pattern) for c in columns}
        where = sa.and_(*(k == row._mapping[k.name] for k in keys))
        conn.execute(sa.update(table).where(where).values(**values))
    return len(found)


def _blank(value: object, pattern: re.Pattern[str]) -> object:
    return pattern.sub(FORGOTTEN, value) if isinstance(value, str) else value


def _is_text(column: sa.Column[object]) -> bool:
    return isinstance(column.type, sa.String) and not isinstance(column.type, sa.Enum)


def _blank_bodies(conn: sa.Connection, key: str) -> int:
    """Email bytes (digests that listed them, a note that named them): the address blanked."""
    bodies = schema.outbox_bodies
    needle = re.compile(re.escape(key).encode(), re.IGNORECASE)
    changed: list[tuple[str, bytes]] = []
    last = ""
    while True:
        batch = conn.execute(
            sa.select(bodies.c.message_id, bodies.c.data)
            .where(bodies.c.message_id > last)
            .order_by(bodies.c.message_id)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        last = str(batch[-1][0])
        for message_id, data in batch:
            if needle.search(data):
                changed.append((str(message_id), needle.sub(FORGOTTEN.encode(), data)))
    for message_id, data in changed:
        conn.execute(sa.update(bodies).where(bodies.c.message_id == message_id).values(data=data))
    return len(changed)
