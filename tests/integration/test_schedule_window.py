"""`schedule`'s items are each enrollment's projection, merged in time order (issue 21).

`reports.upcoming` shares a projection between enrollments alike, reads the
due index in pages and spills what it holds back to disk past a bound; none
of it may change what it shows. The reference here is the plain way: every
due enrollment projected on its own with `lifecycle.context`, the items
sorted by time, then due-index order, then their order in the projection
(`schedule.project` to the end, without its early stop).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dates
import projected
import pytest
import sqlalchemy as sa
import userfiles

from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle, reports
from dripd.plan import schedule
from dripd.store import contacts, enrollments, listing, reps, schema, statements

# A year with the calendar of every Thursday-year (tests/dates.py): Friday 27 November,
# 09:30 in New York on EST, the day after Thanksgiving; the window's weekend comes in, and
# the 30-day window holds Christmas, not the turn of the year.
Y = dates.thursday_year()
NOW = datetime(Y, 11, 27, 14, 30, tzinfo=UTC)
CONTACTS = 600
ZONES = ("America/New_York", "Europe/Berlin", "Asia/Tokyo", None)
OWNERS = ("mike", "sam", None)
CAMPAIGNS = ("qualification", "drip", "welcome", "presentation", "quick")
# Steps close together, so that a day holds several of a contact's items and the
# early stop (`schedule.project(stop_early=True)`) is taken and declined by turns:
# hours between emails, business days, an anchor, a window across midnight.
QUICK = """\
name = "Quick"
send_window = "mon-fri 22:00-02:00; sat 10:00-12:00"

[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hello"
body = "Hello."

[[steps]]
id = "nudge"
kind = "email"
wait = "3 hours"
subject = "Nudge"
body = "Nudge."

[[steps]]
id = "ring"
kind = "call"
wait = "1 business day"
note = "Call."

[[steps]]
id = "brief"
kind = "task"
before = "2 hours"
anchor = "appointment_at"
note = "Prepare."

[[steps]]
id = "late"
kind = "email"
wait = "20 hours"
subject = "Later"
body = "Later."

[[steps]]
id = "tick"
kind = "task"
every = "17 hours"
count = 4
note = "Tick."
"""
SHARED_LAST = NOW - timedelta(hours=2)  # the last step of every third contact: see fill


ALIKE = 105  # contacts i and i + ALIKE differ in zone or owner only (or in neither)


def _fields(r: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    if r % 10:
        fields["appointment_at"] = f"{NOW + timedelta(days=r % 3 - 1, hours=r % 5):%Y-%m-%d %H:00}"
    if r % 17 == 0:
        fields["appointment_at"] = "not a date"
    fields["birthday"] = f"{NOW + timedelta(days=3 * (r % 5)):%m-%d}"
    return fields


def fill(app: app_mod.App) -> None:
    """Contacts in four zones, three owners (sam paused), four campaigns, at several steps.

    Enrollments come in groups alike (five enrollment times, three places in
    the campaign), as an import makes them, some differing only in the
    contact's zone or owner: what a projection shared between them must tell apart.
    """
    people: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i in range(CONTACTS):
        r, g = i % ALIKE, i // ALIKE
        zone, owner = ZONES[g % 4], OWNERS[(r + g // 4) % 3]
        tz = app.contact_tz(zone, owner)
        email = f"p{i:04d}@example.com"
        fields = _fields(r)
        people.append({"id": i + 1, "email": email, "email_key": email, "first_name": f"F{i}",
                       "last_name": f"L{i % 7}", "timezone": zone, "owner": owner,
                       "fields": json.dumps(fields), "created_at": NOW - timedelta(days=30),
                       "updated_at": NOW})  # fmt: skip
        campaign = app.catalog.get(CAMPAIGNS[r % len(CAMPAIGNS)])
        enrolled = NOW - timedelta(hours=13 * (r // 5 % 5))  # not tied to the campaign
        ctx = schedule.Context(tz=tz, holidays=app.config.holidays_for(owner), enrolled_at=enrolled,
                               window=campaign.send_window or lifecycle.default_window(app),
                               fields={**fields, "email": email})  # fmt: skip
        progress = schedule.Progress()
        for due in schedule.project(campaign.plans, progress, ctx, until=NOW)[: (r // 7) % 3]:
            progress = schedule.advance(progress, campaign.plans, due)
        if i % 3 == 0:
            # The same progress for contacts enrolled at other times: where the
            # timing still reads the enrollment's time (repeating steps, no step
            # done), a projection shared between them would be wrong.
            progress = dataclasses.replace(progress, last_due_at=SHARED_LAST)
        pending = schedule.pending(campaign.plans, progress, ctx)
        rows.append({"id": i + 1, "contact_id": i + 1, "campaign": campaign.id,
                     "status": "active", "enrolled_at": enrolled, "progress": progress.to_text(),
                     "next_due_at": pending.next_due_at})  # fmt: skip
    with app.engine.begin() as conn:
        statements.bulk_insert(conn, schema.contacts, people)
        statements.bulk_insert(conn, schema.enrollments, rows)
        reps.set_rep_pause(conn, "sam", NOW + timedelta(hours=20), NOW)


REPS = [userfiles.rep("mike", name="Mike Gulitz"), userfiles.rep("sam", name="Sam Rivera")]


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[app_mod.App]:
    with projected.book(tmp_path_factory.mktemp("window"), NOW, REPS, {"quick": QUICK}) as app:
        fill(app)
        yield app


def reference(app: app_mod.App, days: int) -> list[reports.Scheduled]:
    return projected.reference(app, days, CONTACTS)


def shown(app: app_mod.App, days: int) -> list[reports.Scheduled]:
    with app.reader.connect() as conn:
        return list(reports.upcoming(app, conn, days))


@pytest.mark.parametrize("days", [1, 3, 30])
def test_schedule_shows_each_enrollments_own_projection(book: app_mod.App, days: int) -> None:
    expected = reference(book, days)
    assert len({i.email for i in expected}) > 100  # many contacts, several steps and campaigns
    assert len({(i.campaign, i.step) for i in expected}) > 5
    assert any(i.note.startswith("will be skipped") for i in expected) or days == 1
    assert shown(book, days) == expected
    # `--json`'s text, spliced from each projection's parts, is the items' own encoding.
    with book.reader.connect() as conn:
        texts = list(reports.upcoming_json(book, conn, days))
    assert texts == [listing.encode(i.to_json()) for i in expected]


def test_the_due_pages_of_one_reading_see_one_snapshot(tmp_path: Path) -> None:
    """A change committed between two pages is not seen by the second (SQLite, WAL)."""
    with projected.book(tmp_path, NOW, REPS) as app:
        people = [{"id": i, "email": f"s{i}@example.com", "email_key": f"s{i}@example.com",
                   "created_at": NOW, "updated_at": NOW} for i in (1, 2)]  # fmt: skip
        rows = [{"id": i, "contact_id": i, "campaign": "qualification", "status": "active",
                 "enrolled_at": NOW, "progress": "{}", "next_due_at": NOW + timedelta(hours=i)}
                for i in (1, 2)]  # fmt: skip
        with app.engine.begin() as conn:
            statements.bulk_insert(conn, schema.contacts, people)
            statements.bulk_insert(conn, schema.enrollments, rows)
        until = NOW + timedelta(days=1)
        with app.reader.connect() as reader:
            first = enrollments.due_page(reader, until, None, 1)
            assert [d.id for d in first] == [1]
            with app.engine.begin() as conn:  # the daemon moves the second one meanwhile
                conn.execute(sa.update(schema.enrollments).values(next_due_at=None))
            after = (first[0].next_due_at, first[0].id)
            assert [d.id for d in enrollments.due_page(reader, until, after, 1)] == [2]
        with app.reader.connect() as reader:
            assert enrollments.due_page(reader, until, None, 2) == []


@pytest.mark.postgres
def test_schedule_on_postgresql_is_each_enrollments_own_projection(
    postgres_url: str, tmp_path: Path
) -> None:
    """The due rows read on PostgreSQL's driver, its time values and paging by key."""
    with projected.book(tmp_path, NOW, REPS, {"quick": QUICK}, database=postgres_url) as app:
        fill(app)
        expected = reference(app, 3)
        assert len({i.email for i in expected}) > 100
        assert shown(app, 3) == expected
        with app.reader.connect() as conn:
            texts = list(reports.upcoming_json(app, conn, 3))
        assert texts == [listing.encode(i.to_json()) for i in expected]


def test_the_early_stop_is_taken_and_declined_and_would_show_a_wrong_bound(
    book: app_mod.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`upcoming` stops most projections after their first item; each stop is checked above.

    The early stop is met both ways here (the next step past the window, and
    within it: hours apart, a business day, an anchor), in every campaign;
    and a stop taken where it should not be would change what `schedule` shows.
    """
    taken: dict[tuple[str, bool], int] = {}
    nothing_more = schedule._nothing_more

    def noted(*args: Any) -> bool:
        found = nothing_more(*args)
        key = (args[2][args[1]].id, found)
        taken[key] = taken.get(key, 0) + 1
        return found

    monkeypatch.setattr(schedule, "_nothing_more", noted)
    for days in (1, 3):
        assert shown(book, days) == reference(book, days)
    stopped = {step for (step, found), _ in taken.items() if found}
    declined = {step for (step, found), _ in taken.items() if not found}
    assert {"hello", "nudge", "ring", "brief"} <= declined
    assert {"hello", "ring", "brief", "late", "thank-you-card", "debrief"} <= stopped
    monkeypatch.setattr(schedule, "_nothing_more", lambda *args: True)
    assert shown(book, 3) != reference(book, 3)


def test_paging_and_spilling_change_nothing(
    book: app_mod.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = reference(book, 30)
    monkeypatch.setattr(reports, "SCHEDULE_PAGE", 7)
    monkeypatch.setattr(reports, "HELD_IN_MEMORY", 5)
    monkeypatch.setattr(reports, "SPILL_CHUNK", 3)
    monkeypatch.setattr(reports, "PROJECTIONS_KEPT", 4)
    assert shown(book, 30) == expected


def test_held_items_stay_within_the_bound(
    book: app_mod.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `upcoming` holds in memory stops at HELD_IN_MEMORY, whatever the window holds."""
    most: list[int] = []
    push = reports._Held.push

    def noted(self: reports._Held, item: reports.Scheduled) -> None:
        push(self, item)
        most.append(len(self._heap))

    monkeypatch.setattr(reports, "HELD_IN_MEMORY", 20)
    monkeypatch.setattr(reports._Held, "push", noted)
    items = shown(book, 30)
    assert len(items) > 20 * 10
    assert max(most) < 20


def test_a_contacts_value_is_its_values_entry(book: app_mod.App) -> None:
    """Contact.value and the due page's Addressee.value say what Contact.values() does."""
    with book.reader.connect() as conn:
        people = contacts.contacts_by_ids(conn, range(1, CONTACTS + 1))
        due = enrollments.due_page(conn, NOW + timedelta(days=30), None, 40)
    by_email = {c.email: c for c in people.values()}
    for enrollment in due:
        person = by_email[enrollment.contact.email]
        values = person.values()
        for key in [*values, "missing", "appointment_at"]:
            assert person.value(key) == enrollment.contact.value(key) == values.get(key)


def test_waiting_reads_indexes_and_lists_gone_campaigns(book: app_mod.App) -> None:
    """`schedule`'s waiting list: the held steps and a gone campaign's, without a table scan."""
    retired, held = CONTACTS + 1, CONTACTS + 2
    with book.engine.begin() as conn:
        statements.bulk_insert(conn, schema.enrollments, [
            {"id": retired, "contact_id": 1, "campaign": "retired", "status": "active",
             "enrolled_at": NOW, "progress": "{}", "next_due_at": None, "waiting": None},
            {"id": held, "contact_id": 2, "campaign": "drip", "status": "active",
             "enrolled_at": NOW, "progress": "{}", "next_due_at": None,
             "waiting": "birthday not set"},
        ])  # fmt: skip
    ran: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
        ran.append((sql, params))

    with book.reader.connect() as conn:
        assert enrollments.campaign_names(conn) == sorted({*CAMPAIGNS, "retired"})
        shown = [w.to_json() for w in reports.waiting(book, conn)]
        known = book.catalog.campaigns
        sa.event.listen(conn, "before_cursor_execute", note)
        assert list(enrollments.waiting_enrollments(conn, [*known, "retired"])) == [
            ("p0001@example.com", "drip", "birthday not set")
        ]
        sa.event.remove(conn, "before_cursor_execute", note)
        raw = conn.connection.driver_connection
        assert raw is not None
        plans = [d for sql, p in ran for *_, d in raw.execute(f"EXPLAIN QUERY PLAN {sql}", p)]
    assert shown == [
        {"contact": "p0000@example.com", "campaign": "retired", "reason": "campaign file is gone"},
        {"contact": "p0001@example.com", "campaign": "drip", "reason": "birthday not set"},
    ]
    assert any("ix_enrollments_waiting" in p for p in plans)
    assert not [p for p in plans if p.startswith("SCAN") and "INDEX" not in p]
