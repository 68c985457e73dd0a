"""`dripd contacts export`: every contact as the CSV that `contacts import` reads back.

Columns: the standard fields, then what dripd recorded (`touches`,
`last_touch_at`, `campaigns`: the active ones, `;`-separated; import passes
over these three), then every custom field, by name. Contacts are read a
page at a time by id, so memory stays flat however many there are.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO, Any

import sqlalchemy as sa

from dripd import contacts as contacts_mod
from dripd.store import queries, schema

PAGE = 1000  # contacts read at once
RECORDED = ("touches", "last_touch_at", "campaigns")  # import passes over these
STANDARD = tuple(name for name in contacts_mod.STANDARD)

_contacts, _enrollments = schema.contacts, schema.enrollments


def write_csv(
    conn: sa.Connection, out: IO[str], *, stage: str | None, campaign: str | None
) -> int:
    """Write the CSV to `out`; how many contacts."""
    custom = custom_fields(conn, stage=stage, campaign=campaign)
    writer = csv.DictWriter(out, fieldnames=[*STANDARD, *RECORDED, *custom], lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows(conn, stage=stage, campaign=campaign):
        writer.writerow(row)
        count += 1
    return count


def write_json_lines(
    conn: sa.Connection, out: IO[str], *, stage: str | None, campaign: str | None
) -> int:
    """One JSON object a line (JSON Lines): fields, recorded values, custom fields."""
    count = 0
    for row in rows(conn, stage=stage, campaign=campaign):
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


def rows(
    conn: sa.Connection, *, stage: str | None, campaign: str | None
) -> Iterator[dict[str, Any]]:
    """Each contact as a flat mapping of text, in id order."""
    for page in _pages(conn, stage=stage, campaign=campaign):
        active = _active_campaigns(conn, [c.id for c in page])
        for contact in page:
            yield _row(contact, active.get(contact.id, []))


def custom_fields(conn: sa.Connection, *, stage: str | None, campaign: str | None) -> list[str]:
    """Every custom field name the selected contacts have, sorted."""
    names: set[str] = set()
    for page in _pages(conn, stage=stage, campaign=campaign):
        for contact in page:
            names.update(contact.fields)
    return sorted(names - set(STANDARD) - set(RECORDED))


def _pages(
    conn: sa.Connection, *, stage: str | None, campaign: str | None
) -> Iterator[list[queries.Contact]]:
    last = 0
    while True:
        query = sa.select(_contacts).where(_contacts.c.id > last)
        if stage:
            query = query.where(_contacts.c.stage == stage)
        if campaign:
            query = query.where(
                sa.exists().where(
                    _enrollments.c.contact_id == _contacts.c.id,
                    _enrollments.c.campaign == campaign,
                    _enrollments.c.status == "active",
                )
            )
        page = [
            queries.contact_from_row(r)
            for r in conn.execute(query.order_by(_contacts.c.id).limit(PAGE))
        ]
        if not page:
            return
        yield page
        last = page[-1].id


def _active_campaigns(conn: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    query = (
        sa.select(_enrollments.c.contact_id, _enrollments.c.campaign)
        .where(_enrollments.c.contact_id.in_(ids), _enrollments.c.status == "active")
        .order_by(_enrollments.c.contact_id, _enrollments.c.id)
    )
    for contact_id, name in conn.execute(query):
        found.setdefault(contact_id, []).append(name)
    return found


def _row(contact: queries.Contact, campaigns: list[str]) -> dict[str, Any]:
    standard = {name: getattr(contact, name) or "" for name in STANDARD}
    standard["created_at"] = contact.created_at.isoformat()
    return {
        **standard,
        "touches": contact.touches,
        "last_touch_at": contact.last_touch_at.isoformat() if contact.last_touch_at else "",
        "campaigns": ";".join(campaigns),
        **dict(contact.fields),
    }
