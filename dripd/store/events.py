"""The events table: what happened to a contact, and the per-step statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dripd.store import statements
from dripd.store.schema import contacts, events, outbox

_INSERT_EVENT = sa.insert(events)
# A contact created and enrolled by a bulk import: one row stands for its
# `created`, `enrolled` and (when the campaign moved its stage) `promoted`
# events, and `history` shows the three. A 1M import writes a third of the
# rows it did (its events were half of the database's bytes).
IMPORTED = "imported"
CREATED_DETAIL = "contact created"
IMPORT_ENROLL_CAUSE = "contacts import --enroll"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One line of a contact's history."""

    id: int
    contact_id: int
    at: datetime
    kind: str
    campaign: str | None
    step: str | None
    detail: str
    cause: str | None
    message_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind,
            "campaign": self.campaign,
            "step": self.step,
            "detail": self.detail,
            "cause": self.cause,
            "message_id": self.message_id,
        }


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


def history(conn: sa.Connection, contact_id: int) -> list[Event]:
    query = (
        sa.select(events)
        .where(events.c.contact_id == contact_id)
        .order_by(events.c.at, events.c.id)
    )
    return [line for row in conn.execute(query) for line in _lines(Event(**dict(row._mapping)))]


def imported_detail(enrolled: str, promoted: str | None) -> str:
    """An `imported` row's detail: the enrolled event's, then the promotion's ("" if none) last."""
    return f"{enrolled}\n{promoted or ''}"


def _lines(event: Event) -> list[Event]:
    """The history lines one stored event stands for: an `imported` row is three (two)."""
    if event.kind != IMPORTED:
        return [event]
    enrolled, _, promoted = event.detail.rpartition("\n")
    lines = [
        replace(event, kind="created", campaign=None, detail=CREATED_DETAIL),
        replace(event, kind="enrolled", detail=enrolled, cause=IMPORT_ENROLL_CAUSE),
    ]
    if promoted:
        because = f"enrolled in {event.campaign}"
        lines.append(replace(event, kind="promoted", campaign=None, detail=promoted, cause=because))
    return lines


def events_after(conn: sa.Connection, after_id: int) -> list[sa.Row[Any]]:
    """Every event with an id above `after_id`, with its contact's email, in id order."""
    query = (
        sa.select(events, contacts.c.email)
        .join(contacts, contacts.c.id == events.c.contact_id)
        .where(events.c.id > after_id)
        .order_by(events.c.id)
    )
    return list(conn.execute(query).all())


def last_event_id(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.max(events.c.id))).scalar() or 0)


def step_counts(conn: sa.Connection) -> dict[tuple[str, str, str], int]:
    """(campaign, step, kind) → number of events, for the per-step statistics."""
    query = (
        sa.select(events.c.campaign, events.c.step, events.c.kind, sa.func.count())
        .where(events.c.step.is_not(None))
        .group_by(events.c.campaign, events.c.step, events.c.kind)
    )
    return {(c, s, k): n for c, s, k, n in conn.execute(query)}


VariantKey = tuple[str, str, str]  # campaign, step, variant


def variant_counts(conn: sa.Connection) -> tuple[dict[VariantKey, int], dict[VariantKey, int]]:
    """Per version of a step: the contacts sent it, and those of them who replied to that step."""
    key = (outbox.c.campaign, outbox.c.step, outbox.c.variant)
    sent_to = (outbox.c.status == "sent", outbox.c.variant.is_not(None))
    sent = {
        (campaign, step, variant): count
        for campaign, step, variant, count in conn.execute(
            sa.select(*key, sa.func.count(sa.distinct(outbox.c.contact_id)))
            .where(*sent_to, outbox.c.contact_id.is_not(None))
            .group_by(*key)
        )
    }
    answered = sa.and_(
        events.c.contact_id == outbox.c.contact_id,
        events.c.campaign == outbox.c.campaign,
        events.c.step == outbox.c.step,
    )
    replied = {
        (campaign, step, variant): count
        for campaign, step, variant, count in conn.execute(
            sa.select(*key, sa.func.count(sa.distinct(events.c.contact_id)))
            .select_from(outbox.join(events, answered))
            .where(*sent_to, events.c.kind == "replied")
            .group_by(*key)
        )
    }
    return sent, replied
