"""`dripd contacts import`: add and update contacts from a CSV, optionally enrolling them.

Bad rows are reported by line and skipped; good rows are imported in one
transaction. New contacts are written in bulk (100,000 rows in seconds);
contacts that already exist go through the ordinary field-update path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dripd import campaigns, csvfile, dates, errors, pipeline, schedule, stages
from dripd.app import App
from dripd.store import queries, schema

Tick = Callable[[int], None]
CHUNK = 2000  # rows per bulk statement
UTC_ZONE = ZoneInfo("UTC")


@dataclass(slots=True, kw_only=True)
class Report:
    created: int = 0
    updated: int = 0
    enrolled: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def import_csv(
    app: App, path: Path, *, enroll: str | None = None, tick: Tick | None = None
) -> Report:
    """Import `path`; `tick(n)` is called as rows are processed (for a progress bar)."""
    campaign = app.catalog.get(enroll) if enroll else None
    rows, problems = csvfile.read(path, app.contact_rules())
    report = Report(problems=[str(p) for p in problems])
    now = app.clock.now()
    with app.engine.begin() as conn:
        existing = queries.existing_keys(conn, [r.key for r in rows])
        new = [r for r in rows if r.key not in existing]
        old = [r for r in rows if r.key in existing]
        new_ids = _create(app, conn, new, now, cause=f"imported from {path.name}", tick=tick)
        report.created = len(new_ids)
        _update(app, conn, old, existing, now, report, cause=f"imported from {path.name}", tick=tick)
        if campaign is not None:
            _enroll_all(app, conn, campaign, new, new_ids, old, existing, now, report)
    return report


def _create(app: App, conn: sa.Connection, rows: Sequence[csvfile.Row], now: datetime,
            *, cause: str, tick: Tick | None) -> list[int]:
    default_owner = app.config.reps[0].id if app.config.reps else None
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        queries.insert_contacts(conn, [_new_contact(r, now, default_owner) for r in chunk])
        if tick:
            tick(len(chunk))
    keys = [r.key for r in rows]
    ids_by_key = queries.existing_keys(conn, keys)
    ids = [ids_by_key[key] for key in keys]
    events = [
        {"contact_id": cid, "at": now, "kind": "created", "detail": "contact created",
         "cause": cause}
        for cid in ids
    ]  # fmt: skip
    for start in range(0, len(events), CHUNK):
        queries.add_events(conn, events[start : start + CHUNK])
    return ids


def _new_contact(row: csvfile.Row, now: datetime, default_owner: str | None) -> dict[str, Any]:
    values = row.values
    assert values.email is not None
    std = values.standard
    created = std.get("created_at")
    return {
        "email": values.email,
        "email_key": values.email.lower(),
        "first_name": std.get("first_name") or "",
        "last_name": std.get("last_name") or "",
        "company": std.get("company") or "",
        "phone": std.get("phone") or "",
        "timezone": std.get("timezone"),
        "owner": std.get("owner") or default_owner,
        "stage": std.get("stage") or "suspect",
        "status": std.get("status") or "active",
        "referred_by": std.get("referred_by"),
        "fields": json.dumps({k: v for k, v in values.custom.items() if v is not None},
                             sort_keys=True),
        "created_at": _created_at(created, now),
        "updated_at": now,
    }


def _created_at(text: str | None, now: datetime) -> datetime:
    if not text:
        return now
    return dates.parse_when(text, UTC_ZONE)


def _update(app: App, conn: sa.Connection, rows: Sequence[csvfile.Row], ids: dict[str, int],
            now: datetime, report: Report, *, cause: str, tick: Tick | None) -> None:
    for row in rows:
        contact = queries.contact_by_id(conn, ids[row.key])
        pipeline.set_fields(app, conn, contact, row.values, now, cause=cause)
        report.updated += 1
        if tick:
            tick(1)


def _enroll_all(
    app: App,
    conn: sa.Connection,
    campaign: campaigns.Campaign,
    new: Sequence[csvfile.Row],
    new_ids: Sequence[int],
    old: Sequence[csvfile.Row],
    existing: dict[str, int],
    now: datetime,
    report: Report,
) -> None:
    if _needs_slow_path(app, campaign):
        targets = [(row, cid) for row, cid in zip(new, new_ids, strict=True)]
        targets += [(row, existing[row.key]) for row in old]
        _enroll_each(app, conn, campaign, targets, now, report)
        return
    report.enrolled += _enroll_bulk(app, conn, campaign, new_ids, now)
    targets = [(row, existing[row.key]) for row in old]
    _enroll_each(app, conn, campaign, targets, now, report)


def _needs_slow_path(app: App, campaign: campaigns.Campaign) -> bool:
    """Bulk enrolling skips starts_when chains; use the careful path when one could fire."""
    stage = campaign.stage
    return stage is not None and any(
        c.starts_at_stage is not None and c.id != campaign.id
        and stages.rank(c.starts_at_stage) <= stages.rank(stage)
        for c in app.catalog.campaigns.values()
    )


def _enroll_each(app: App, conn: sa.Connection, campaign: campaigns.Campaign,
                 targets: Sequence[tuple[csvfile.Row, int]], now: datetime,
                 report: Report) -> None:
    for row, contact_id in targets:
        contact = queries.contact_by_id(conn, contact_id)
        try:
            with conn.begin_nested():
                pipeline.enroll(app, conn, contact, campaign.id, now, cause="contacts import --enroll")
        except errors.ContactError as exc:
            report.problems.append(f"line {row.line}: not enrolled: {exc}")
        else:
            report.enrolled += 1


def _enroll_bulk(app: App, conn: sa.Connection, campaign: campaigns.Campaign,
                 ids: Sequence[int], now: datetime) -> int:
    """Enroll freshly created contacts (no enrollments yet) in bulk."""
    pauses = queries.rep_pauses(conn)
    enrolled = 0
    for start in range(0, len(ids), CHUNK):
        chunk = queries.contacts_by_ids(conn, ids[start : start + CHUNK])
        rows, events, promoted = [], [], []
        for contact in chunk.values():
            if contact.status != "active":
                continue
            where = pipeline.plan(app, contact, campaign, now, schedule.Progress(), pauses)
            rows.append(pipeline.enrollment_row(contact, campaign, now, where))
            events.append({"contact_id": contact.id, "at": now, "kind": "enrolled",
                           "campaign": campaign.id, "detail": f"enrolled in {campaign.name}",
                           "cause": "contacts import --enroll"})
            if campaign.stage and stages.forward(contact.stage, campaign.stage) != contact.stage:
                promoted.append(contact)
        queries.insert_enrollments(conn, rows)
        queries.add_events(conn, events)
        _promote_bulk(conn, promoted, campaign, now)
        enrolled += len(rows)
    return enrolled


def _promote_bulk(conn: sa.Connection, promoted: Sequence[queries.Contact],
                  campaign: campaigns.Campaign, now: datetime) -> None:
    if not promoted or campaign.stage is None:
        return
    table = schema.contacts
    ids = [c.id for c in promoted]
    conn.execute(sa.update(table).where(table.c.id.in_(ids)).values(stage=campaign.stage))
    queries.add_events(conn, [
        {"contact_id": c.id, "at": now, "kind": "promoted",
         "detail": f"stage {c.stage} → {campaign.stage}", "cause": f"enrolled in {campaign.id}"}
        for c in promoted
    ])  # fmt: skip
