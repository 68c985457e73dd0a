"""The store on SQLite and a real PostgreSQL: migrations, and the enrollment rules."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import dates
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from dripd import clock, errors
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle
from dripd.plan import contacts, decide, schedule
from dripd.store import contacts as store_contacts
from dripd.store import engine as store_engine
from dripd.store import enrollments, events, outbox, schema
from dripd.store import statements as store_statements

# A Monday starting two weeks without a holiday or a clock change, next year, New York on EST
DAY = dates.quiet_monday(weeks=2)
NOW = dates.local(DAY, 10)  # 10:00 in New York


@pytest.fixture
def app(make_config, database_url: str) -> Iterator[app_mod.App]:
    path = make_config(database=database_url)
    the_app = app_mod.open_app(str(path), the_clock=clock.FakeClock(NOW))
    yield the_app
    the_app.engine.dispose()


@pytest.fixture
def opened(database_url: str) -> Iterator[sa.Engine]:
    engine = store_engine.open_engine(database_url)
    yield engine
    engine.dispose()


def add_contact(app: app_mod.App, email: str, **fields: str) -> store_contacts.Contact:
    values = contacts.validate({"email": email, **fields}, app.contact_rules())
    with app.engine.begin() as conn:
        contact_id = lifecycle.create_contact(app, conn, email, values, NOW, cause="test")
        return store_contacts.contact_by_id(conn, contact_id)


def test_migrations_build_exactly_the_schema(opened: sa.Engine) -> None:
    with opened.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), schema.metadata)
    assert diff == []
    assert store_engine.is_current(opened)


def test_head_constant_matches_the_migrations_folder() -> None:
    assert store_engine.alembic_head() == store_engine.HEAD


def test_queued_emails_keep_to_their_owners_holidays_after_0012(database_url: str) -> None:
    # 0012 gives the emails queued before it the calendar the planner used (plan.decide):
    # their contact's owner's, whichever rep sends them; sent ones are history, left alone.
    from alembic import command

    engine = store_engine.create_engine(database_url)
    try:
        command.upgrade(store_engine.alembic_config(engine), "head")  # a cloned template: at HEAD
        command.downgrade(store_engine.alembic_config(engine), "0011")
        with engine.begin() as conn:
            _before_0012(conn)
        command.upgrade(store_engine.alembic_config(engine), "0012")
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("select id, holidays_of, planned_at from outbox order by id")
            )
            assert found.all() == [(1, "mike", None), (2, None, None), (3, None, None)]
    finally:
        engine.dispose()


def _before_0012(conn: sa.Connection) -> None:
    conn.execute(
        sa.text(
            "insert into contacts (id, email, email_key, owner, created_at, updated_at)"
            " values (1, 'ann@example.com', 'ann@example.com', 'mike', :at, :at)"
        ),
        {"at": NOW.replace(tzinfo=None)},
    )
    for oid, status, contact in ((1, "queued", 1), (2, "sent", 1), (3, "queued", None)):
        conn.execute(
            sa.text(
                "insert into outbox (id, message_id, contact_id, rep, recipient, status,"
                " due_at, next_attempt_at, created_at)"
                " values (:id, :mid, :cid, 'sam', 'x@example.com', :status, :at, :at, :at)"
            ),
            {
                "id": oid,
                "mid": f"<m{oid}@x>",
                "cid": contact,
                "status": status,
                "at": NOW.replace(tzinfo=None),
            },
        )


def test_opening_twice_does_not_migrate_again(opened: sa.Engine, database_url: str) -> None:
    store_engine.open_engine(database_url).dispose()
    with opened.connect() as conn:
        versions = conn.execute(sa.text("select version_num from alembic_version")).all()
    assert versions == [(store_engine.HEAD,)]


OUTBOX_0010 = ("message_id", "rep", "recipient", "due_at", "next_attempt_at", "created_at",
               "last_error")  # fmt: skip
INBOX_0010 = ("rep", "message_key", "class", "reasons", "received_at")


def _at_revision(url: str, revision: str) -> sa.Engine:
    """A database at an older revision: migrated to HEAD, then taken back.

    (PostgreSQL's test databases are copies of one at HEAD.)
    """
    engine = store_engine.create_engine(url)
    config = store_engine.alembic_config(engine)
    command.upgrade(config, "head")
    command.downgrade(config, revision)
    return engine


def _pairs(conn: sa.Connection, key: sa.Column[Any], value: sa.Column[Any]) -> dict[Any, Any]:
    return {k: v for k, v in conn.execute(sa.select(key, value))}


def test_0011_reads_waits_and_failed_messages_from_their_old_text(database_url: str) -> None:
    engine = _at_revision(database_url, "0010")
    old = NOW.replace(tzinfo=None)
    errors_before = {
        "window@example.com": "waiting for the sending window",
        "away@example.com": "the contact is out of office",
        "down@example.com": "mailbox unreachable: connection refused",
        "new@example.com": None,
    }
    reasons_before = {"a": "could not be handled: a bug", "b": "a reply to step one"}
    # The tables as revision 0010 had them (schema.py is the newest).
    emails = sa.table("outbox", *map(sa.column, OUTBOX_0010))
    messages = sa.table("inbox_messages", *map(sa.column, INBOX_0010))
    with engine.begin() as conn:
        for number, (recipient, error) in enumerate(errors_before.items()):
            times = dict.fromkeys(("due_at", "next_attempt_at", "created_at"), old)
            conn.execute(
                emails.insert().values(
                    message_id=f"<{number}@x>", rep="ann", recipient=recipient,
                    last_error=error, **times,
                )
            )  # fmt: skip
        for key, reasons in reasons_before.items():
            values = {"rep": "ann", "message_key": key, "class": "other", "reasons": reasons}
            conn.execute(messages.insert().values(received_at=old, **values))
    store_engine.migrate(engine)
    with engine.connect() as conn:
        box, inbox = schema.outbox.c, schema.inbox_messages.c
        waits = _pairs(conn, box.recipient, box.wait)
        errors_after = _pairs(conn, box.recipient, box.last_error)
        outcomes = _pairs(conn, inbox.message_key, inbox.outcome)
    engine.dispose()
    assert waits == {
        "window@example.com": schema.Wait.WINDOW,
        "away@example.com": schema.Wait.AWAY,
        "down@example.com": None,
        "new@example.com": None,
    }
    assert errors_after == errors_before  # the text people read stays
    assert outcomes == {"a": schema.MessageOutcome.FAILED, "b": schema.MessageOutcome.HANDLED}


def test_0011_goes_back_to_0010(database_url: str) -> None:
    engine = _at_revision(database_url, "0010")
    with engine.connect() as conn:
        outbox_columns = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
        inbox_columns = {c["name"] for c in sa.inspect(conn).get_columns("inbox_messages")}
    engine.dispose()
    assert "wait" not in outbox_columns and "last_error" in outbox_columns
    assert "outcome" not in inbox_columns and "reasons" in inbox_columns


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(errors.StoreError, match="does not exist"):
        store_engine.open_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(errors.StoreError, match="cannot open database") as caught:
        store_engine.open_engine("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value)


def test_times_round_trip_as_aware_utc(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com", first_name="Ann")
    assert contact.created_at == NOW
    assert contact.created_at.tzinfo is not None


def test_email_is_unique_case_insensitively(app: app_mod.App) -> None:
    add_contact(app, "Ann@Example.com")
    with pytest.raises(sa.exc.IntegrityError), app.engine.begin() as conn:
        store_contacts.insert_contact(
            conn,
            {"email": "ann@example.com", "email_key": "ann@example.com", "created_at": NOW,
             "updated_at": NOW},
        )  # fmt: skip
    with app.engine.connect() as conn:
        assert store_contacts.contact_by_email(conn, "ANN@EXAMPLE.COM") is not None


def test_enroll_promotes_and_records_history(app: app_mod.App) -> None:
    contact = add_contact(
        app, "ann@example.com", appointment_at=dates.stamp(DAY + timedelta(days=3))
    )
    with app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
        stored = store_contacts.contact_by_id(conn, contact.id)
        kinds = [event.kind for event in events.history(conn, contact.id)]
        (enrollment,) = enrollments.active_enrollments(conn, contact.id)
    assert stored.stage == "prospect"
    assert kinds == ["created", "enrolled", "promoted"]
    assert enrollment.next_due_at == NOW  # thank-you: wait 0m, inside the window


def test_exclusive_enrollment_ends_the_current_one(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com")
    with app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
        lifecycle.enroll(app, conn, contact, "presentation", NOW, cause="test")
        active = [e.campaign for e in enrollments.active_enrollments(conn, contact.id)]
        ended = [e for e in enrollments.enrollments_of(conn, contact.id) if e.status == "stopped"]
    assert active == ["presentation"]
    assert [e.campaign for e in ended] == ["qualification"]
    assert ended[0].next_due_at is None


def test_non_exclusive_campaign_runs_beside(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com", stage="customer")
    with app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "drip", NOW, cause="test")
        lifecycle.enroll(app, conn, contact, "close", NOW, cause="test")
        active = sorted(e.campaign for e in enrollments.active_enrollments(conn, contact.id))
    assert active == ["close", "drip"]


def test_reaching_customer_starts_welcome_once(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com")
    with app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "close", NOW, cause="test")
        values = contacts.validate({"stage": "customer"}, app.contact_rules(), require_email=False)
        lifecycle.set_fields(app, conn, contact, values, NOW, cause="test")
        lifecycle.set_fields(app, conn, store_contacts.contact_by_id(conn, contact.id), values, NOW,
                            cause="test again")  # fmt: skip
        active = [e.campaign for e in enrollments.active_enrollments(conn, contact.id)]
    assert active == ["welcome"]


def test_automatic_promotion_never_moves_backwards(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com", stage="customer")
    with app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
        assert store_contacts.contact_by_id(conn, contact.id).stage == "customer"


def test_unsubscribed_contact_cannot_be_enrolled(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com", status="unsubscribed")
    with pytest.raises(errors.ContactError, match="unsubscribed"), app.engine.begin() as conn:
        lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
    with app.engine.connect() as conn:
        assert enrollments.enrollments_of(conn, contact.id) == []


def test_changing_the_anchor_moves_the_due_time(app: app_mod.App) -> None:
    contact = add_contact(
        app, "ann@example.com", appointment_at=dates.stamp(DAY + timedelta(weeks=1))
    )
    with app.engine.begin() as conn:
        enrollment_id = lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
        # Pretend the first two steps ran, so the anchored call is next.
        progress = schedule.Progress(done=("thank-you", "thank-you-card"), last_due_at=NOW)
        enrollments.update_enrollment(conn, enrollment_id, {"progress": progress.to_text()})
        lifecycle.reschedule(app, conn, contact.id, NOW)
        before = enrollments.active_enrollments(conn, contact.id)[0].next_due_at
        moved = dates.stamp(DAY + timedelta(days=9), 15)  # Wednesday week, 15:00
        values = contacts.validate({"appointment_at": moved}, app.contact_rules(),
                                   require_email=False)  # fmt: skip
        lifecycle.set_fields(app, conn, contact, values, NOW, cause="test")
        after = enrollments.active_enrollments(conn, contact.id)[0].next_due_at
    assert before == dates.local(DAY + timedelta(days=6), 10)  # 24 h before Monday 10:00 EST
    assert after == dates.local(DAY + timedelta(days=8), 15)


def test_missing_anchor_waits_with_a_reason(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com")
    with app.engine.begin() as conn:
        enrollment_id = lifecycle.enroll(app, conn, contact, "qualification", NOW, cause="test")
        progress = schedule.Progress(done=("thank-you", "thank-you-card"), last_due_at=NOW)
        enrollments.update_enrollment(conn, enrollment_id, {"progress": progress.to_text()})
        lifecycle.reschedule(app, conn, contact.id, NOW)
        (enrollment,) = enrollments.active_enrollments(conn, contact.id)
    assert enrollment.next_due_at is None
    assert enrollment.waiting is not None and "appointment_at" in enrollment.waiting


def test_due_query_returns_only_what_is_due(app: app_mod.App) -> None:
    for i in range(5):
        contact = add_contact(app, f"c{i}@example.com")
        with app.engine.begin() as conn:
            lifecycle.enroll(app, conn, contact, "qualification", NOW + timedelta(hours=i),
                            cause="test")  # fmt: skip
    with app.engine.connect() as conn:
        due = enrollments.due_enrollments(conn, NOW + timedelta(hours=2), 100)
    assert len(due) == 3
    assert [e.next_due_at for e in due] == sorted(e.next_due_at for e in due)  # type: ignore[type-var]


def test_custom_fields_are_stored_as_text(app: app_mod.App) -> None:
    contact = add_contact(app, "ann@example.com", hot_buttons="speed; price", birthday="1980-03-14")
    with app.engine.connect() as conn:
        row = conn.execute(sa.select(schema.contacts.c.fields)).scalar_one()
    assert json.loads(row) == {"birthday": "1980-03-14", "hot_buttons": "speed; price"}
    assert contact.values()["hot_buttons"] == "speed; price"


def test_bulk_insert_stores_exactly_what_insert_stores(app: app_mod.App) -> None:
    stamp = dates.local(dates.today(), 12, tz=UTC)  # any instant
    row = {"email": "b@x.com", "email_key": "b@x.com", "created_at": stamp, "updated_at": stamp}
    with app.engine.begin() as conn:
        store_statements.bulk_insert(conn, schema.contacts, [row])
        store_contacts.insert_contact(conn, {**row, "email": "c@x.com", "email_key": "c@x.com"})
        raw = conn.execute(sa.text("select created_at from contacts order by id")).scalars().all()
        assert raw[0] == raw[1]  # same storage format, so comparisons in SQL agree
        assert store_contacts.contact_by_email(conn, "b@x.com").created_at == stamp


def test_a_reader_is_not_blocked_by_an_open_write(app: app_mod.App) -> None:
    add_contact(app, "ann@example.com")
    with app.engine.begin() as writer:  # the daemon in the middle of a batch
        store_contacts.insert_contact(
            writer,
            {"email": "bob@x.com", "email_key": "bob@x.com", "created_at": NOW, "updated_at": NOW},
        )
        started = time.monotonic()
        with app.reader.connect() as conn:  # `dripd status` meanwhile
            assert store_contacts.contact_counts(conn).stages == {"suspect": 1}
        assert time.monotonic() - started < 2


def test_a_second_writer_waits_then_gets_sqlalchemys_error(tmp_path: Path) -> None:
    # BEGIN IMMEDIATE goes straight to the driver (engine._sqlite_begin); a
    # lock it cannot get must still surface as sa.exc.OperationalError, which
    # the CLI reports in one line and store.retry understands.
    url = f"sqlite:///{tmp_path / 'dripd.db'}"
    first, second = store_engine.open_engine(url), store_engine.open_engine(url)
    try:
        with first.begin(), second.connect() as conn:
            conn.connection.driver_connection.execute("PRAGMA busy_timeout=50")
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"), conn.begin():
                pass
            assert time.monotonic() - started >= 0.04  # it waited for the lock
        with second.begin() as conn:  # free again: the same engine writes
            conn.exec_driver_sql("select 1")
    finally:
        first.dispose()
        second.dispose()


def test_prepared_statements_store_exactly_what_execute_stores(app: app_mod.App) -> None:
    # statements.Prepared runs the per-email statements on the DBAPI connection:
    # same SQL, same bind processing (UTCDateTime), rowcounts as the driver gives.
    ann = add_contact(app, "ann@example.com")
    bob = add_contact(app, "bob@example.com")
    stamp = dates.local(dates.today(), 3, 4, tz=UTC) + timedelta(seconds=5, microseconds=678901)
    update = sa.update(schema.contacts).where(schema.contacts.c.id == sa.bindparam("cid"))
    with app.engine.begin() as conn:
        conn.execute(update, {"cid": ann.id, "last_touch_at": stamp})
        changed = store_statements.prepared(update, ["last_touch_at"]).execute(
            conn, {"cid": bob.id, "last_touch_at": stamp}
        )
        missing = store_statements.prepared(update, ["last_touch_at"]).execute(
            conn, {"cid": 999_999, "last_touch_at": stamp}
        )
        store_contacts.count_touches(conn, [(ann.id, stamp), (bob.id, stamp), (ann.id, stamp)])
        raw = conn.execute(sa.text("select last_touch_at, touches from contacts order by id")).all()
        assert (changed, missing) == (1, 0)
        assert raw[0] == (raw[1][0], 2) and raw[1][1] == 1  # same stored form
        assert store_contacts.contact_by_id(conn, ann.id).last_touch_at == stamp
        events.add_events(
            conn,
            [{"contact_id": c.id, "at": stamp, "kind": "note", "detail": "x"} for c in (ann, bob)],
        )
        assert [e.at for e in events.history(conn, bob.id) if e.kind == "note"] == [stamp]


def _outbox_row(contact: store_contacts.Contact, message_id: str) -> dict[str, object]:
    return {
        "message_id": message_id,
        "enrollment_id": None,
        "contact_id": contact.id,
        "campaign": "c",
        "step": "s",
        "occurrence": 1,
        "rep": "mike",
        "recipient": contact.email,
        "subject": "Hi",
        "message": b"Subject: Hi\r\n\r\nHi\r\n",
        "status": "queued",
        "priority": 1,
        "due_at": NOW,
        "attempts": 0,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }


def test_recording_by_id_records_just_those(app: app_mod.App) -> None:
    # The sender records what it sent by id; the search by state (every email
    # ever sent) is left for catching up, which finds the rest.
    people = [add_contact(app, f"c{i}@example.com") for i in range(3)]
    with app.engine.begin() as conn:
        outbox.insert_many(conn, [_outbox_row(c, f"<m{c.id}@example.com>") for c in people])
        rows = outbox.ready(conn, "mike", NOW, 10)
        for row in rows:
            assert outbox.claim(conn, row, NOW)
            outbox.mark_sent(conn, row, NOW)
        assert outbox.record_sent(conn, NOW, ids=[rows[0].id, rows[2].id]) == 2
        assert outbox.record_sent(conn, NOW, ids=[rows[0].id]) == 0  # not twice
        touched = [store_contacts.contact_by_id(conn, c.id).touches for c in people]
        assert sorted(touched) == [0, 1, 1]
        assert outbox.record_sent(conn, NOW) == 1  # the one left over
        assert [store_contacts.contact_by_id(conn, c.id).touches for c in people] == [1, 1, 1]


def test_catching_up_reads_the_few_rows_not_the_history(make_config, sqlite_url: str) -> None:
    # What a daemon runs when it takes a mailbox (emails left in flight, the
    # rate limit's last day, sent emails left unrecorded) and what the sender
    # records by id must not read every email ever sent. SQLite's planner has
    # no statistics, so each query is checked for the index it goes through.
    app = app_mod.open_app(str(make_config(database=sqlite_url)), the_clock=clock.FakeClock(NOW))
    ann = add_contact(app, "ann@example.com")
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    try:
        with app.engine.begin() as conn:
            outbox.insert_many(conn, [_outbox_row(ann, "<m1@example.com>")])
            (row,) = outbox.ready(conn, "mike", NOW, 10)
            assert outbox.claim(conn, row, NOW)
            outbox.mark_sent(conn, row, NOW)
            sa.event.listen(conn, "before_cursor_execute", capture)
            outbox.orphaned(conn, ["mike"])
            outbox.sent_since(conn, "mike", NOW - timedelta(days=1))
            outbox.record_sent(conn, NOW, ids=[row.id])
            outbox.stuck(conn, NOW)  # what `status` says of each mailbox
            outbox.uncopied_count(conn, "mike", NOW)
            sa.event.remove(conn, "before_cursor_execute", capture)
            plans = [
                " | ".join(r[3] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", args))
                for sql, args in statements
            ]
    finally:
        app.engine.dispose()
    assert len(plans) == 6, plans
    assert "ix_outbox_status_next_attempt_at (status=?)" in plans[0]  # orphaned
    assert "ix_outbox_rep_sent_at (rep=? AND sent_at>?)" in plans[1]  # sent_since: sent
    assert "ix_outbox_status_next_attempt_at (status=?)" in plans[2]  # ... and sending
    assert "INTEGER PRIMARY KEY" in plans[3]  # record_sent by id
    assert "ix_outbox_status_next_attempt_at (status=?)" in plans[4]  # stuck: the queue
    assert "ix_outbox_uncopied (rep=?)" in plans[5]  # uncopied_count
    assert not any("ix_outbox_rep_sent_at (rep=?)" in plan for plan in plans), plans


def test_outbox_claim_and_marks_on_both_databases(app: app_mod.App) -> None:
    ann = add_contact(app, "ann@example.com")
    row = _outbox_row(ann, "<m1@example.com>")
    with app.engine.begin() as conn:
        outbox.insert_many(conn, [row])
        (queued,) = outbox.ready(conn, "mike", NOW, 10)
        assert outbox.claim(conn, queued, NOW) and not outbox.claim(conn, queued, NOW)
        outbox.mark_sent(conn, queued, NOW + timedelta(seconds=1))
        assert outbox.record_sent(conn, NOW) == 1
        (sent,) = outbox.in_state(conn, "sent")
        assert (sent.sending_at, sent.sent_at) == (NOW, NOW + timedelta(seconds=1))
        assert store_contacts.contact_by_id(conn, ann.id).touches == 1
        assert outbox.sent_since(conn, "mike", NOW) == [NOW + timedelta(seconds=1)]
    with app.engine.begin() as conn:  # an unsubscribed contact's email is not claimed
        outbox.insert_many(conn, [{**row, "message_id": "<m2@example.com>"}])
        store_contacts.update_contact(conn, ann.id, {"status": "unsubscribed", "updated_at": NOW})
        (second,) = outbox.ready(conn, "mike", NOW, 10)
        assert not outbox.claim(conn, second, NOW)
        found = outbox.recipient(conn, second)
        assert found == outbox.Recipient(status="unsubscribed", stopped=False, away_until=None)
        assert found is not None
        verdict = decide.decide(NOW, status=found.status, stopped=found.stopped)
        assert verdict == decide.Stop(reason="contact is unsubscribed")


def test_check_connect_reads_the_database_without_changing_it(tmp_path: Path) -> None:
    # `dripd check --connect` says whether `dripd run` could open the database
    # and what it would find; it creates nothing, and never shows a password.
    from dripd.mailbox import probe

    db = tmp_path / "dripd.db"
    url = f"sqlite:///{db}"
    assert str(probe.database(url)) == f"database {url}: not created yet; dripd run creates it"
    assert not db.exists()
    missing = probe.database(f"sqlite:///{tmp_path}/nope/dripd.db")
    assert not missing.ok and missing.detail == f"its folder {tmp_path}/nope does not exist"

    engine = store_engine.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table t (x int)"))
    engine.dispose()
    assert probe.database(url).detail == "empty; dripd run creates the tables"
    store_engine.open_engine(url).dispose()
    assert probe.database(url).detail == f"schema {store_engine.HEAD}, up to date"
    engine = store_engine.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '9999'"))
    engine.dispose()
    newer = probe.database(url)
    assert not newer.ok and "newer than this dripd knows" in newer.detail

    closed = probe.database("postgresql://dripd:s3cret@127.0.0.1:1/dripd")
    assert not closed.ok and closed.detail.startswith("cannot open: ")
    assert (
        "s3cret" not in str(closed)
        and closed.what == "database postgresql://dripd:***@127.0.0.1:1/dripd"
    )
