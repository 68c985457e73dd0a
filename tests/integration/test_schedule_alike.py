"""`schedule` shares a projection between enrollments at an anchored step whose last times differ.

`reports._Projections._projected`: enrollments at the same step, in the same
zone, of the same rep and with the same anchor values are projected once when
`schedule.reads_last_due` says their last step's time changes nothing. Those
that differ in any of these, or whose last time is past the anchor's, must
keep their own items.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dates
import projected
import pytest
import userfiles

from dripd.pipeline import app as app_mod
from dripd.pipeline import reports
from dripd.plan import schedule
from dripd.store import listing, reps, schema, statements

NOW = dates.local(dates.quiet_monday(), 9)
CONTACTS = 96
ZONES = ("America/New_York", "Asia/Tokyo")
OWNERS = ("mike", None)
# Demos from the day after tomorrow to next week, on the hour: confirm-call and
# confirm-email (24 hours before) fall in a 3-day window for some of them.
DEMOS = tuple(NOW + timedelta(days=2, hours=h) for h in (0, 5, 29, 100))


def fill(app: app_mod.App) -> None:
    """Contacts past the qualification's card: the next step hangs on the demo.

    Their last step's time differs (hours apart), and for every fifth it is
    after the confirmation's time (the floor then moves the step). Mike is
    paused for two and a half days: his contacts' emails wait.
    """
    campaign = app.catalog.get("qualification")
    people: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i in range(CONTACTS):
        zone, owner = ZONES[i % 2], OWNERS[i // 2 % 2]
        demo = DEMOS[i // 4 % len(DEMOS)]
        email = f"a{i:03d}@example.com"
        fields = {"appointment_at": f"{demo:%Y-%m-%d %H:%M}"}  # one text, read in each zone
        last = NOW - timedelta(hours=i) if i % 5 else demo - timedelta(hours=2)
        progress = schedule.Progress(done=("thank-you", "thank-you-card"), last_due_at=last)
        people.append({"id": i + 1, "email": email, "email_key": email, "first_name": f"F{i}",
                       "timezone": zone, "owner": owner, "fields": json.dumps(fields),
                       "created_at": NOW, "updated_at": NOW})  # fmt: skip
        tz = app.contact_tz(zone, owner)
        ctx = schedule.Context(tz=tz, holidays=app.config.holidays_for(owner), enrolled_at=NOW,
                               window=campaign.send_window, fields=fields)  # fmt: skip
        pending = schedule.pending(campaign.plans, progress, ctx)
        rows.append({"id": i + 1, "contact_id": i + 1, "campaign": campaign.id,
                     "status": "active", "enrolled_at": NOW - timedelta(days=i),
                     "progress": progress.to_text(),
                     "next_due_at": pending.next_due_at})  # fmt: skip
    with app.engine.begin() as conn:
        statements.bulk_insert(conn, schema.contacts, people)
        statements.bulk_insert(conn, schema.enrollments, rows)
        reps.set_rep_pause(conn, "mike", NOW + timedelta(hours=60), NOW)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[app_mod.App]:
    mike = userfiles.rep("mike", name="Mike Gulitz", timezone="Europe/Berlin")
    with projected.book(tmp_path_factory.mktemp("alike"), NOW, [mike]) as app:
        fill(app)
        yield app


@pytest.mark.parametrize("days", [3, 30])
def test_enrollments_alike_but_for_their_last_time_are_shown_their_own_items(
    book: app_mod.App, days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    project = schedule.project

    def counted(*args: Any, **kwargs: Any) -> list[schedule.Due]:
        calls.append(1)
        return project(*args, **kwargs)

    monkeypatch.setattr(schedule, "project", counted)
    expected = projected.reference(book, days, CONTACTS)
    calls.clear()
    with book.reader.connect() as conn:
        items = list(reports.upcoming(book, conn, days))
        texts = list(reports.upcoming_json(book, conn, days))
    assert items == expected
    assert texts == [listing.encode(i.to_json()) for i in expected]
    assert len({(i.step, i.at) for i in expected}) > 8  # demos, zones and late floors apart
    # 96 enrollments, each its own last time: 4 demos x 2 zones x 2 reps projected
    # once each (twice: items, then texts), and the late floors one by one.
    assert sum(calls) < CONTACTS
