"""`dripd contacts import`: add and update contacts from a CSV, optionally enrolling them.

Bad rows are reported by line and skipped; good rows are imported in one
transaction. New contacts are written in bulk (100,000 rows in seconds);
contacts that already exist go through the ordinary field-update path.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from dripd import errors
from dripd.files import campaigns, csvfile
from dripd.pipeline import lifecycle, plans
from dripd.pipeline.app import App
from dripd.plan import schedule, stages
from dripd.store import contacts, enrollments, events, forget, reps, schema, settings, statements

Tick = Callable[[int], None]
T = TypeVar("T")
CHUNK = 5000  # rows per bulk statement
# What the bulk path writes: tuples in these columns' order (no dict per row).
# A new contact's columns as `lifecycle.contact_row` names them, its two
# instants last (converted to the driver's form apart).
_INSTANTS = ("created_at", "updated_at")
CONTACT_COLUMNS = tuple(
    c.name for c in schema.contacts.c if c.name not in ("id", "paused_until", *_INSTANTS)
)
_CONTACT_INSERT = (*CONTACT_COLUMNS, *_INSTANTS)
_contact_values = operator.itemgetter(*CONTACT_COLUMNS)
EVENT_COLUMNS = ("contact_id", "at", "kind", "campaign", "detail", "cause")
ENROLLMENT_COLUMNS = (
    "contact_id",
    "campaign",
    "status",
    "enrolled_at",
    "progress",
    "next_due_at",
    "waiting",
)


@dataclass(slots=True, kw_only=True)
class Report:
    created: int = 0
    updated: int = 0
    enrolled: int = 0
    problems: list[str] = field(default_factory=list)


def import_csv(
    app: App, path: Path, *, enroll: str | None = None, tick: Tick | None = None
) -> Report:
    """Import `path`; `tick(n)` is called as rows are processed (for a progress bar).

    The file is read as a stream and written `CHUNK` rows at a time, one
    statement per table per chunk, all in one transaction: memory follows the
    chunk, not the file (but for the emails seen, kept to report duplicates).
    """
    campaign = app.catalog.get(enroll) if enroll else None
    results = csvfile.stream(path, app.contact_rules())
    report = Report()
    late: list[str] = []  # enrollment problems, reported after the file's own
    now = app.clock.now()
    with app.engine.begin() as conn, _no_cycle_collection():
        sole_writer = conn.dialect.name == "sqlite"
        batch = Batch(
            now=now,
            stamp=statements.driver_value(conn, schema.events.c.at, now),
            cause=f"imported from {path.name}",
            campaign=campaign,
            bulk=campaign is not None and not _needs_slow_path(app, campaign),
            sole_writer=sole_writer,
            empty_before=sole_writer and contacts.max_contact_id(conn) == 0,
        )
        fresh = campaign is not None and _plans_recordable(app, conn)
        for chunk in _chunks(results, CHUNK):
            rows = [r for r in chunk if isinstance(r, csvfile.Row)]
            report.problems += [str(p) for p in chunk if isinstance(p, csvfile.Problem)]
            _import_chunk(app, conn, rows, batch, report, late, tick)
        if fresh:
            plans.remember_plans(app, conn)
    report.problems += late
    return report


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector (not reference counting) for the import.

    A 1M-row import allocates tens of millions of short-lived tuples and dicts,
    none in a reference cycle; the collector's passes over them were about a
    tenth of its CPU. Memory still follows the chunk: each is freed by
    reference counting when the next replaces it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (itertools.batched, Python 3.12)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """What every chunk of one import shares."""

    now: datetime
    stamp: Any  # `now` as the driver takes it, converted once for every row
    cause: str
    campaign: campaigns.Campaign | None
    bulk: bool  # new contacts enrolled in bulk (no starts_when chain can fire)
    # SQLite: the import's transaction holds the write lock (BEGIN IMMEDIATE)
    # from start to end, so no one else inserts contacts meanwhile
    sole_writer: bool
    # and the database had no contact when it began: none of the file's can
    # exist but its own earlier rows, which csvfile reports as duplicates
    empty_before: bool


def _import_chunk(
    app: App,
    conn: sa.Connection,
    rows: Sequence[csvfile.Row],
    batch: Batch,
    report: Report,
    late: list[str],
    tick: Tick | None,
) -> None:
    now, cause, campaign = batch.now, batch.cause, batch.campaign
    erased = forget.forgotten(conn, [r.key for r in rows])
    if erased:  # `contacts forget`: never back by an import
        report.problems += [
            f"line {r.line}: {r.key} asked to be forgotten: not imported"
            for r in rows
            if r.key in erased
        ]
        rows = [r for r in rows if r.key not in erased]
    existing = {} if batch.empty_before else contacts.existing_keys(conn, [r.key for r in rows])
    new = [r for r in rows if r.key not in existing]
    old = [r for r in rows if r.key in existing]
    created = _create(app, conn, new, batch, tick=tick)
    report.created += len(created)
    _update(app, conn, old, existing, now, cause=cause, tick=tick)
    report.updated += len(old)
    if batch.bulk:
        assert campaign is not None
        report.enrolled += _enroll_bulk(app, conn, campaign, created, batch)
        targets = [(row, existing[row.key]) for row in old]
    else:
        _insert_events(conn, _one_by_one(created, batch))
        if campaign is None:
            return
        targets = [(p.row, p.id) for p in created]
        targets += [(row, existing[row.key]) for row in old]
    report.enrolled += _enroll_each(app, conn, campaign, targets, now, late)


def _plans_recordable(app: App, conn: sa.Connection) -> bool:
    """Whether the enrollments after this import are all planned under `app`'s files.

    True when the database has no active enrollment yet and no record of
    what plans were made under: the import then records it, so the first
    `dripd run` does not time every enrollment again. (A record that differs
    is left alone: older enrollments may need planning again.)
    """
    return settings.setting(conn, plans.PLANNED_UNDER) is None and not enrollments.any_active(conn)


def _needs_slow_path(app: App, campaign: campaigns.Campaign) -> bool:
    """Bulk enrolling skips starts_when chains; use the careful path when one could fire."""
    stage = campaign.stage
    return stage is not None and any(
        c.starts_at_stage is not None
        and c.id != campaign.id
        and stages.rank(c.starts_at_stage) <= stages.rank(stage)
        for c in app.catalog.campaigns.values()
    )


def _create(
    app: App,
    conn: sa.Connection,
    rows: Sequence[csvfile.Row],
    batch: Batch,
    *,
    tick: Tick | None,
) -> list[New]:
    """Insert new contacts in bulk, promoted to the bulk campaign's stage (events: the caller's)."""
    now, stamp = batch.now, batch.stamp
    campaign = batch.campaign if batch.bulk else None
    default_owner = app.config.reps[0].id if app.config.reps else None
    records = [_new_contact(row, now, default_owner) for row in rows]
    given = [record["stage"] for record in records]
    if campaign is not None and campaign.stage:
        for record in records:
            record["stage"] = stages.forward(record["stage"], campaign.stage)
    before = contacts.max_contact_id(conn)
    values = [(*_contact_values(r), _stamp(conn, batch, r["created_at"]), stamp) for r in records]
    if batch.sole_writer:  # the ids SQLite gives: one above the highest, in order
        ids: Sequence[int] = range(before + 1, before + 1 + len(values))
        with_ids = list(map(_with_id, ids, values))
        statements.insert_tuples(conn, schema.contacts, ("id", *_CONTACT_INSERT), with_ids)
    else:  # PostgreSQL's sequence may interleave others' inserts: read the ids back
        statements.insert_tuples(conn, schema.contacts, _CONTACT_INSERT, values)
        by_key = contacts.contact_ids_after(conn, before)
        ids = [by_key[r["email_key"]] for r in records]
    if tick:
        tick(len(records))
    return list(map(New, ids, records, rows, given))


def _with_id(contact_id: int, values: tuple[Any, ...]) -> tuple[Any, ...]:
    return (contact_id, *values)


def _stamp(conn: sa.Connection, batch: Batch, at: datetime) -> Any:
    """`at` as the driver takes it: the batch's own instant is converted once."""
    if at is batch.now:
        return batch.stamp
    return statements.driver_value(conn, schema.contacts.c.created_at, at)


class New(NamedTuple):
    """A contact just inserted in bulk: its id, stored values, CSV row and the stage given."""

    id: int
    record: dict[str, Any]
    row: csvfile.Row
    given_stage: str

    def contact(self) -> contacts.Contact:
        values = {k: v for k, v in self.record.items() if k not in ("email_key", "fields")}
        custom = {k: v for k, v in self.row.values.custom.items() if v is not None}
        return contacts.Contact(id=self.id, fields=custom, **values)

    def promotion(self) -> str | None:
        """The promoted event's detail when the bulk campaign moved the stage."""
        stage = self.record["stage"]
        return f"stage {self.given_stage} → {stage}" if stage != self.given_stage else None


def _one_by_one(people: Sequence[New], batch: Batch) -> list[tuple[Any, ...]]:
    """The `created` event of each of `people`, then `promoted` where the campaign moved them."""
    created = "created", None, events.CREATED_DETAIL, batch.cause
    rows = [(p.id, batch.stamp, *created) for p in people]
    if batch.campaign is not None:
        because = f"enrolled in {batch.campaign.id}"
        rows += [
            (p.id, batch.stamp, "promoted", None, promotion, because)
            for p in people
            if (promotion := p.promotion()) is not None
        ]
    return rows


def _insert_events(conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    statements.insert_tuples(conn, schema.events, EVENT_COLUMNS, rows)


def _new_contact(row: csvfile.Row, now: datetime, default_owner: str | None) -> dict[str, Any]:
    assert row.values.email is not None
    return lifecycle.contact_row(row.values.email, row.values, now, default_owner)


def _update(
    app: App,
    conn: sa.Connection,
    rows: Sequence[csvfile.Row],
    ids: dict[str, int],
    now: datetime,
    *,
    cause: str,
    tick: Tick | None,
) -> None:
    for row in rows:
        contact = contacts.contact_by_id(conn, ids[row.key])
        lifecycle.set_fields(app, conn, contact, row.values, now, cause=cause)
        if tick:
            tick(1)


def _enroll_each(
    app: App,
    conn: sa.Connection,
    campaign: campaigns.Campaign,
    targets: Sequence[tuple[csvfile.Row, int]],
    now: datetime,
    problems: list[str],
) -> int:
    """Enroll contacts one by one (chains may fire); how many were enrolled."""
    enrolled = 0
    for row, contact_id in targets:
        contact = contacts.contact_by_id(conn, contact_id)
        try:
            with conn.begin_nested():
                lifecycle.enroll(
                    app, conn, contact, campaign.id, now, cause="contacts import --enroll"
                )
        except errors.ContactError as exc:
            problems.append(f"line {row.line}: not enrolled: {exc}")
        else:
            enrolled += 1
    return enrolled


def _enroll_bulk(
    app: App,
    conn: sa.Connection,
    campaign: campaigns.Campaign,
    people: Sequence[New],
    batch: Batch,
) -> int:
    """Enroll freshly created contacts (they have no enrollments yet) in bulk, with their events.

    An enrolled contact's created, enrolled and promoted events are one
    `imported` row (`events.history` shows the three); one not enrolled (not
    active) gets its created and promoted events as rows of their own.
    """
    pauses = reps.rep_pauses(conn)
    rows: list[tuple[Any, ...]] = []
    stories: list[tuple[Any, ...]] = []
    # (time zone, owner) → the plan's first due time (as the driver takes it) and waits
    plans: dict[tuple[str | None, str | None], tuple[Any, str | None]] = {}
    details: dict[str | None, str] = {}  # promotion → the imported row's detail
    shared = not _depends_on_fields(campaign)
    start = (campaign.id, "active", batch.stamp, lifecycle.EMPTY_PROGRESS)
    imported = (batch.stamp, events.IMPORTED, campaign.id)
    enrolled = f"enrolled in {campaign.name}"
    for new in people:
        record = new.record
        if record["status"] != "active":
            continue
        key = (record["timezone"], record["owner"])
        where = plans.get(key) if shared else None
        if where is None:
            where = plans[key] = _first_due(app, conn, campaign, new, batch.now, pauses)
        rows.append((new.id, *start, *where))
        promotion = new.promotion()
        detail = details.get(promotion)
        if detail is None:
            detail = details[promotion] = events.imported_detail(enrolled, promotion)
        stories.append((new.id, *imported, detail, batch.cause))
    statements.insert_tuples(conn, schema.enrollments, ENROLLMENT_COLUMNS, rows)
    _insert_events(conn, stories)
    if len(rows) < len(people):
        _insert_events(
            conn, _one_by_one([p for p in people if p.record["status"] != "active"], batch)
        )
    return len(rows)


def _first_due(
    app: App,
    conn: sa.Connection,
    campaign: campaigns.Campaign,
    new: New,
    now: datetime,
    pauses: dict[str, datetime],
) -> tuple[Any, str | None]:
    """A new enrollment's next due time (as the driver takes it) and what it waits for."""
    where = lifecycle.plan(app, new.contact(), campaign, now, schedule.Progress(), pauses)
    due = statements.driver_value(conn, schema.enrollments.c.next_due_at, where.next_due_at)
    return due, where.waiting


def _depends_on_fields(campaign: campaigns.Campaign) -> bool:
    """Whether a new enrollment's first due times depend on the contact's fields.

    When they don't, every contact with the same time zone and owner (whose
    vacation may hold emails) gets the same plan: computed once per group.
    """
    first = next((p for p in campaign.plans if p.sequential), None)
    if first is not None and not isinstance(first.timing, schedule.Wait):
        return True
    return any(isinstance(p.timing, schedule.Yearly) and p.timing.field for p in campaign.plans)
