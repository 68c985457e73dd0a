"""The plain way to `schedule`: every due enrollment projected on its own.

What `reports.upcoming` must show whatever it shares between enrollments
(tests/integration/test_schedule_alike.py, test_schedule_window.py), and the book
both fill: the shipped campaigns, New York's clock frozen at a moment.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import userfiles

from dripd import clock
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle, reports
from dripd.plan import schedule
from dripd.store import contacts, enrollments, reps


def reference(app: app_mod.App, days: int, count: int) -> list[reports.Scheduled]:
    """Every due enrollment projected on its own, the items in time, then due-index, order.

    `count`: the contacts, with ids 1 to `count`, at most one enrollment each.
    """
    now = app.clock.now()
    until = now + timedelta(days=days)
    with app.reader.connect() as conn:
        pauses = reps.rep_pauses(conn)
        due = enrollments.due_page(conn, until, None, count)
        people = {c.email: c for c in contacts.contacts_by_ids(conn, range(1, count + 1)).values()}
    found: list[tuple[datetime, int, reports.Scheduled]] = []
    for enrollment in due:
        contact = people[enrollment.contact.email]
        campaign = app.catalog.get(enrollment.campaign)
        ctx = lifecycle.context(app, contact, campaign, enrollment.enrolled_at, pauses)
        progress = schedule.Progress.from_text(enrollment.progress)
        for d in schedule.project(campaign.plans, progress, ctx, until=until):
            kind = campaign.step(d.step_id).kind
            item = reports._scheduled(d, contact, kind, campaign.id, ctx, now, app.config.max_late)
            found.append((item.at, len(found), item))
    return [item for *_, item in sorted(found)]


@contextlib.contextmanager
def book(
    folder: Path,
    now: datetime,
    reps_: Sequence[userfiles.Table],
    campaigns: Mapping[str, userfiles.Table] | None = None,
    database: str | None = None,
) -> Iterator[app_mod.App]:
    """An app on a new book (SQLite in `folder`, or `database`): the shipped campaigns and
    `campaigns`, at `now`."""
    shutil.copytree(userfiles.SHIPPED_CAMPAIGNS, folder / "campaigns")
    for name, campaign in (campaigns or {}).items():
        userfiles.write_campaign(folder / "campaigns", name, campaign)
    config = folder / "config.toml"
    url = database or f"sqlite:///{folder}/dripd.db"
    text = userfiles.config(url, folder / "campaigns", *reps_, timezone="America/New_York")
    config.write_text(text, encoding="utf-8")
    app = app_mod.open_app(str(config), the_clock=clock.FakeClock(now))
    try:
        yield app
    finally:
        app.engine.dispose()
