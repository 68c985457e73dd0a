"""The engine on both databases, with a fake clock: due steps become outbox rows and tasks."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import dates
import pytest

from dripd import clock
from dripd.daemon import planner
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle, plans
from dripd.plan import contacts, schedule
from dripd.store import contacts as store_contacts
from dripd.store import enrollments, events, outbox, schema, tasks

# A Monday starting two weeks without a holiday or a clock change, next year, New York on EST
DAY = dates.quiet_monday(weeks=2)
MONDAY = dates.local(DAY, 9)  # 09:00 in New York

CAMPAIGN = """
name = "Test"
stage = "prospect"
thread = true
next = "after"
[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hello {{ contact.first_name }}"
body = "Hi {{ contact.first_name }}, nice to meet you."
[[steps]]
id = "call"
kind = "call"
wait = "1 day"
note = "Call {{ contact.first_name }} at {{ contact.phone }}."
[[steps]]
id = "follow-up"
kind = "email"
wait = "1 day"
wait_for_task = true
subject = "Following up"
body = "Hi again {{ contact.first_name }}."
[[steps]]
id = "confirm"
kind = "email"
before = "24 hours"
anchor = "appointment_at"
subject = "See you tomorrow"
body = "See you {{ contact.appointment_at | datetime }}."
"""

FIELDS = """
name = "Needs a field"
[[steps]]
id = "pitch"
kind = "email"
wait = "0m"
subject = "About {{ contact.hot_buttons }}"
body = "Hi"
"""

AFTER = """
name = "After"
[[steps]]
id = "only"
kind = "task"
wait = "1 week"
note = "Check in with {{ contact.first_name }}."
"""


@pytest.fixture
def world(
    make_config, database_url: str, tmp_path: Path
) -> Iterator[tuple[app_mod.App, clock.FakeClock]]:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "test.toml").write_text(CAMPAIGN, encoding="utf-8")
    (folder / "after.toml").write_text(AFTER, encoding="utf-8")
    (folder / "fields.toml").write_text(FIELDS, encoding="utf-8")
    fake = clock.FakeClock(MONDAY)
    path = make_config(database=database_url, campaigns=folder)
    app = app_mod.open_app(str(path), the_clock=fake)
    yield app, fake
    app.engine.dispose()


def add(app: app_mod.App, address: str, **fields: str) -> store_contacts.Contact:
    values = contacts.validate({"email": address, **fields}, app.contact_rules())
    with app.engine.begin() as conn:
        cid = lifecycle.create_contact(app, conn, address, values, app.clock.now(), cause="test")
        contact = store_contacts.contact_by_id(conn, cid)
        lifecycle.enroll(app, conn, contact, "test", app.clock.now(), cause="test")
        return contact


def rows(app: app_mod.App) -> list[outbox.Row]:
    with app.engine.connect() as conn:
        return [outbox._row(r) for r in conn.execute(outbox._ROWS.order_by(schema.outbox.c.id))]


def open_tasks(app: app_mod.App) -> list[tasks.Task]:
    with app.engine.connect() as conn:
        return tasks.open_tasks(conn)


def _advance_due(app: app_mod.App, now: datetime) -> planner.Result:
    return planner.advance_due(app, now)


def _advance(app: app_mod.App, now: datetime) -> planner.Result:
    """The daemon's way: emails rendered ahead, the event loop running in between."""
    return asyncio.run(planner.advance(app, now))


@pytest.mark.parametrize("advance", [_advance_due, _advance], ids=["advance_due", "advance"])
def test_a_sequence_runs_step_by_step(world, advance) -> None:
    app, fake = world
    add(
        app,
        "ann@example.com",
        first_name="Ann",
        phone="555-0101",
        appointment_at=dates.stamp(DAY + timedelta(days=9)),  # Wednesday week
    )
    assert advance(app, fake.now()).queued == 1
    (hello,) = rows(app)
    message = email.message_from_bytes(hello.message, policy=email.policy.default)
    assert message["Subject"] == "Hello Ann" and hello.priority == 1
    assert advance(app, fake.now()).enrollments == 0  # nothing more is due yet

    fake.advance(timedelta(days=1))
    assert advance(app, fake.now()).tasks == 1
    (task,) = open_tasks(app)
    assert task.note == "Call Ann at 555-0101." and task.kind == "call"

    fake.advance(timedelta(days=3))  # the follow-up waits for the call to be done
    assert advance(app, fake.now()).queued == 0
    with app.engine.begin() as conn:
        lifecycle.finish_task(app, conn, task.id, fake.now(), status="done", cause="test")
        assert store_contacts.contact_by_email(conn, "ann@example.com").touches == 1
    fake.advance(timedelta(days=1))  # Saturday: outside the mon-fri window
    assert advance(app, fake.now()).queued == 0
    fake.set(dates.local(DAY + timedelta(weeks=1), 9))  # Monday 09:00 in New York
    assert advance(app, fake.now()).queued == 1
    follow = rows(app)[1]
    parsed = email.message_from_bytes(follow.message, policy=email.policy.default)
    assert parsed["Subject"] == "Re: Hello Ann"  # thread = true
    assert parsed["In-Reply-To"] == hello.message_id and follow.priority == 0


def test_stale_anchor_is_skipped_not_sent_late(world) -> None:
    app, fake = world
    contact = add(
        app,
        "ann@example.com",
        first_name="Ann",
        phone="1",
        appointment_at=dates.stamp(DAY + timedelta(days=1)),
    )
    with app.engine.begin() as conn:  # jump straight to the anchored step
        (enrollment,) = enrollments.active_enrollments(conn, contact.id)
        from dripd.plan import schedule

        progress = schedule.Progress(done=("hello", "call", "follow-up"), last_due_at=MONDAY)
        enrollments.update_enrollment(
            conn, enrollment.id, {"progress": progress.to_text(), "next_due_at": MONDAY}
        )
    fake.set(dates.local(DAY + timedelta(days=1), 11))  # after the 10:00 appointment
    result = planner.advance_due(app, fake.now())
    assert result.skipped == 1 and result.queued == 0
    with app.engine.connect() as conn:
        kinds = [e.kind for e in events.history(conn, contact.id)]
    assert "skipped" in kinds


def test_outside_the_window_waits_for_it(world) -> None:
    app, fake = world
    fake.set(dates.local(DAY + timedelta(days=5), 10))  # a Saturday
    contact = add(app, "ann@example.com", first_name="Ann")
    assert planner.advance_due(app, fake.now()).queued == 0
    with app.engine.connect() as conn:
        (enrollment,) = enrollments.active_enrollments(conn, contact.id)
    # Monday 09:00 New York
    assert enrollment.next_due_at == dates.local(DAY + timedelta(weeks=1), 9)


def test_unsubscribed_contact_gets_nothing(world) -> None:
    app, fake = world
    contact = add(app, "ann@example.com", first_name="Ann")
    with app.engine.begin() as conn:
        store_contacts.update_contact(conn, contact.id, {"status": "unsubscribed"})
    result = planner.advance_due(app, fake.now())
    assert result.queued == 0 and rows(app) == []
    with app.engine.connect() as conn:
        assert enrollments.active_enrollments(conn, contact.id) == []


def test_missing_field_holds_the_step_with_a_reason(world) -> None:
    app, fake = world
    values = contacts.validate({"email": "ann@example.com"}, app.contact_rules())
    with app.engine.begin() as conn:
        cid = lifecycle.create_contact(app, conn, "ann@example.com", values, fake.now(), cause="t")
        lifecycle.enroll(
            app, conn, store_contacts.contact_by_id(conn, cid), "fields", fake.now(), cause="t"
        )
    result = planner.advance_due(app, fake.now())
    assert result.held == 1 and rows(app) == []
    with app.engine.connect() as conn:
        (enrollment,) = enrollments.active_enrollments(conn, cid)
        history = events.history(conn, cid)
    assert enrollment.waiting is not None and "hot_buttons" in enrollment.waiting
    assert enrollment.next_due_at == fake.now() + planner.HOLD_RETRY
    assert [h.kind for h in history].count("held") == 1
    # once the field is there, the email goes out
    with app.engine.begin() as conn:
        extra = contacts.validate(
            {"hot_buttons": "speed"}, app.contact_rules(), require_email=False
        )
        lifecycle.set_fields(
            app, conn, store_contacts.contact_by_id(conn, cid), extra, fake.now(), cause="t"
        )
    fake.advance(planner.HOLD_RETRY)
    assert planner.advance_due(app, fake.now()).queued == 1


def test_completion_enrolls_the_next_campaign(world) -> None:
    app, fake = world
    contact = add(
        app,
        "ann@example.com",
        first_name="Ann",
        phone="1",
        appointment_at=dates.stamp(DAY + timedelta(weeks=1)),
    )
    planner.advance_due(app, fake.now())
    fake.advance(timedelta(days=1))
    planner.advance_due(app, fake.now())
    (task,) = open_tasks(app)
    with app.engine.begin() as conn:
        lifecycle.finish_task(app, conn, task.id, fake.now(), status="skipped", cause="test")
    fake.set(dates.local(DAY + timedelta(days=6), 11))  # Sunday: confirm is due 10:00 Sun
    planner.advance_due(app, fake.now())
    fake.set(dates.local(DAY + timedelta(weeks=1), 9, 30))
    planner.advance_due(app, fake.now())
    with app.engine.connect() as conn:
        states = {e.campaign: e.status for e in enrollments.enrollments_of(conn, contact.id)}
    assert states == {"test": "completed", "after": "active"}


def test_a_change_after_rendering_ahead_is_not_sent_from_the_old_rendering(world) -> None:
    # planner.advance renders before its transaction; the transaction uses a
    # rendering only if the enrollment and the contact are as they were.
    app, fake = world
    ann = add(app, "ann@example.com", first_name="Ann")
    bob = add(app, "bob@example.com", first_name="Bob")
    cy = add(app, "cy@example.com", first_name="Cy")
    ahead: planner.Prerendered = {}
    assert len(list(planner.prerender(app, fake.now(), 100, ahead))) == 3
    with app.engine.begin() as conn:
        store_contacts.update_contact(
            conn, ann.id, {"first_name": "Annie", "updated_at": fake.now()}
        )
        store_contacts.update_contact(
            conn, bob.id, {"status": "unsubscribed", "updated_at": fake.now()}
        )
    result = planner.advance_due(app, fake.now(), rendered=ahead)
    assert (result.queued, result.enrollments) == (2, 3)
    sent = {row.recipient: row for row in rows(app)}
    assert set(sent) == {"ann@example.com", "cy@example.com"}
    subject = email.message_from_bytes(sent["ann@example.com"].message)["Subject"]
    assert subject == "Hello Annie"  # rendered again
    (cy_enrollment,) = {r.enrollment_id for r in rows(app) if r.contact_id == cy.id}
    assert sent["cy@example.com"].message == ahead[cy_enrollment].message.data  # used as is


# -- campaign files edited while dripd was stopped (plans.replan_changed) ----------


def _next_due(app: app_mod.App) -> dict[str, datetime | None]:
    with app.engine.connect() as conn:
        return {e.campaign: e.next_due_at for e in enrollments.all_active_enrollments(conn)}


def test_a_start_plans_again_what_files_edited_since_the_last_run_concern(world) -> None:
    app, fake = world
    add(app, "ann@example.com", first_name="Ann")
    values = contacts.validate({"email": "bob@example.com"}, app.contact_rules())
    with app.engine.begin() as conn:
        cid = lifecycle.create_contact(app, conn, "bob@example.com", values, fake.now(), cause="t")
        bob = store_contacts.contact_by_id(conn, cid)
        lifecycle.enroll(app, conn, bob, "after", fake.now(), cause="test")
    # A database without the record (new, or from an older dripd): everything, once.
    assert plans.replan_changed(app) == 2
    assert plans.replan_changed(app) == 0
    planner.advance_due(app, fake.now())
    planned = _next_due(app)
    assert planned["after"] == MONDAY + timedelta(weeks=1)

    fake.advance(timedelta(hours=1))
    folder = app.config.campaigns_dir
    text = (folder / "test.toml").read_text(encoding="utf-8")
    (folder / "test.toml").write_text(text.replace('wait = "1 day"', 'wait = "2 days"', 1))
    edited = app_mod.open_app(str(app.config.path), the_clock=fake)
    try:
        assert plans.replan_changed(edited) == 1  # the edited campaign's enrollments only
        assert _next_due(edited) == {**planned, "test": fake.now()}
        assert plans.replan_changed(edited) == 0

        config = app.config.path.read_text(encoding="utf-8")
        app.config.path.write_text(config.replace("09:00-17:00", "08:00-18:00", 1))
        widened = app_mod.open_app(str(app.config.path), the_clock=fake)
        try:
            assert plans.replan_changed(widened) == 2  # a schedule setting: every one
        finally:
            widened.engine.dispose()
    finally:
        edited.engine.dispose()


def enroll_in(app: app_mod.App, address: str, campaign: str, **fields: str) -> int:
    values = contacts.validate({"email": address, **fields}, app.contact_rules())
    with app.engine.begin() as conn:
        cid = lifecycle.create_contact(app, conn, address, values, app.clock.now(), cause="t")
        contact = store_contacts.contact_by_id(conn, cid)
        lifecycle.enroll(app, conn, contact, campaign, app.clock.now(), cause="t")
        return cid


def test_one_pass_ending_enrollments_in_every_way_keeps_each_history_in_order(world) -> None:
    # The pass writes its enrollment changes and events together (planner._Writes);
    # completing into a next campaign writes what came before it first.
    app, fake = world
    yesterday = dates.stamp(DAY - timedelta(days=1))
    ann = add(app, "ann@example.com", first_name="Ann", phone="1", appointment_at=yesterday)
    with app.engine.begin() as conn:  # her anchored step only, already stale: skipped, then done
        (enrollment,) = enrollments.active_enrollments(conn, ann.id)
        progress = schedule.Progress(done=("hello", "call", "follow-up"), last_due_at=MONDAY)
        changes = {"progress": progress.to_text(), "next_due_at": MONDAY}
        enrollments.update_enrollment(conn, enrollment.id, changes)
    bob = enroll_in(app, "bob@example.com", "fields", hot_buttons="speed")  # sent, completed
    cid = enroll_in(app, "cid@example.com", "fields")  # no hot_buttons: held
    dee = add(app, "dee@example.com", first_name="Dee")
    with app.engine.begin() as conn:
        store_contacts.update_contact(conn, dee.id, {"status": "unsubscribed"})

    result = planner.advance_due(app, fake.now())

    assert (result.enrollments, result.queued, result.held) == (4, 1, 1)
    assert (result.skipped, result.completed) == (1, 2)
    with app.engine.connect() as conn:
        kinds = {c: [e.kind for e in events.history(conn, c)] for c in (ann.id, bob, cid, dee.id)}
        states = {
            c: sorted((e.campaign, e.status) for e in enrollments.enrollments_of(conn, c))
            for c in (ann.id, bob, cid, dee.id)
        }
    assert kinds[ann.id][-3:] == ["skipped", "completed", "enrolled"]
    assert states[ann.id] == [("after", "active"), ("test", "completed")]
    assert kinds[bob][-1] == "completed" and states[bob] == [("fields", "completed")]
    assert kinds[cid][-1] == "held" and states[cid] == [("fields", "active")]
    assert kinds[dee.id][-1] == "stopped" and states[dee.id] == [("test", "stopped")]
