"""`dripd contacts export`: every contact as the CSV that `contacts import` reads back.

Columns: the standard fields, then what dripd recorded (`touches`,
`last_touch_at`, `campaigns`: the active ones, `;`-separated; import passes
over these three), then every custom field, by name. Contacts are read a
page at a time in email order (dripd.store.listing), so memory stays flat however
many there are.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

import sqlalchemy as sa

from dripd.plan import contacts as contacts_mod
from dripd.store import contacts as store_contacts
from dripd.store import listing

RECORDED = contacts_mod.RECORDED  # dripd's records: import passes over these
STANDARD = contacts_mod.STANDARD


def write_csv(conn: sa.Connection, out: TextIO, *, stage: str | None, campaign: str | None) -> int:
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
    conn: sa.Connection, out: TextIO, *, stage: str | None, campaign: str | None
) -> int:
    """One JSON object a line (JSON Lines): fields, recorded values, custom fields."""
    return listing.write_json_lines(out, rows(conn, stage=stage, campaign=campaign))


def rows(
    conn: sa.Connection, *, stage: str | None, campaign: str | None
) -> Iterator[dict[str, Any]]:
    """Each contact as a flat mapping of text, in email order, a page at a time."""
    for listed in listing.contacts(conn, listing.Filter(stage=stage, campaign=campaign)):
        yield _row(listed.contact, listed.campaigns)


def custom_fields(conn: sa.Connection, *, stage: str | None, campaign: str | None) -> list[str]:
    """Every custom field name the selected contacts have, sorted."""
    names: set[str] = set()
    for listed in listing.contacts(conn, listing.Filter(stage=stage, campaign=campaign)):
        names.update(listed.contact.fields)
    return sorted(names - set(STANDARD) - set(RECORDED))


def _row(contact: store_contacts.Contact, campaigns: Sequence[str]) -> dict[str, Any]:
    standard = {name: getattr(contact, name) or "" for name in STANDARD}
    standard["created_at"] = contact.created_at.isoformat()
    return {
        **standard,
        "touches": contact.touches,
        "last_touch_at": contact.last_touch_at.isoformat() if contact.last_touch_at else "",
        "campaigns": ";".join(campaigns),
        **dict(contact.fields),
    }
