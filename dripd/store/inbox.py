"""The inbox tables: each folder's checkpoint, and every message handled (once)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store import schema

_messages = schema.inbox_messages
_folders = schema.inbox_folders
_HANDLED = sa.select(_messages.c.id).where(
    _messages.c.rep == sa.bindparam("rep"), _messages.c.message_key == sa.bindparam("key")
)


def handled(conn: sa.Connection, rep: str, key: str) -> bool:
    """Whether the message with this key (Message-ID, or its headers) was handled for `rep`."""
    return conn.execute(_HANDLED, {"rep": rep, "key": key}).first() is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A handled message as stored; the text fields are cut to their column's size."""

    rep: str
    key: str
    uid: int | None
    contact_id: int | None
    sender: str
    subject: str
    summary: str
    reasons: str
    cls: str
    received_at: datetime
    outcome: schema.MessageOutcome = schema.MessageOutcome.HANDLED


def record(conn: sa.Connection, message: Message) -> None:
    conn.execute(
        sa.insert(_messages).values(
            rep=message.rep,
            message_key=message.key[:255],
            uid=message.uid,
            contact_id=message.contact_id,
            sender=message.sender[:254],
            subject=message.subject[:500],
            summary=message.summary[:1000],
            reasons=message.reasons[:1000],
            received_at=message.received_at,
            outcome=message.outcome,
            **{"class": message.cls},
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    uidvalidity: int
    last_uid: int
    checked_at: datetime


def checkpoint(conn: sa.Connection, rep: str, folder: str) -> Checkpoint | None:
    row = conn.execute(
        sa.select(_folders.c.uidvalidity, _folders.c.last_uid, _folders.c.checked_at).where(
            _folders.c.rep == rep, _folders.c.folder == folder
        )
    ).first()
    return Checkpoint(**row._mapping) if row else None


def save_checkpoint(
    conn: sa.Connection, rep: str, folder: str, uidvalidity: int, last_uid: int, now: datetime
) -> None:
    values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "checked_at": now}
    done = conn.execute(
        sa.update(_folders).where(_folders.c.rep == rep, _folders.c.folder == folder), values
    ).rowcount
    if not done:
        conn.execute(sa.insert(_folders), {"rep": rep, "folder": folder, **values})


def inbox_stats(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Per rep: when the inbox was last read, and how many messages of each class it held."""
    stats: dict[str, dict[str, Any]] = {}
    checked = sa.select(
        _folders.c.rep, sa.func.max(_folders.c.checked_at, type_=schema.UTCDateTime())
    )
    for rep, at in conn.execute(checked.group_by(_folders.c.rep)):
        stats.setdefault(rep, {})["checked_at"] = at
    kind = _messages.c["class"]
    counts = sa.select(_messages.c.rep, kind, sa.func.count()).group_by(_messages.c.rep, kind)
    for rep, cls, count in conn.execute(counts):
        stats.setdefault(rep, {})[cls] = count
    return stats


def unreadable(conn: sa.Connection) -> list[Any]:
    """Messages that could not be handled (rep, sender, reasons), newest first."""
    query = (
        sa.select(_messages.c.rep, _messages.c.sender, _messages.c.reasons)
        .where(_messages.c.outcome == schema.MessageOutcome.FAILED)
        .order_by(_messages.c.id.desc())
    )
    return list(conn.execute(query).all())
