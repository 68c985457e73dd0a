"""Sending against real servers: aiosmtpd (STARTTLS + AUTH, faults) and Dovecot (Sent folder).

The daemon's work runs in-process (`daemon.run_once`) with a fake clock, so
windows, retries and rate limits are tested over simulated days in seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
import gc
import json
import logging
import time
from datetime import datetime, timedelta
from pathlib import Path

import dates
import pytest
import servers.imap
import servers.loopback
import servers.smtp
import sqlalchemy as sa
from click.testing import CliRunner
from worlds import DAY

from dripd.cli import main as cli
from dripd.daemon import daemon, sent_copies
from dripd.files import config
from dripd.mailbox import imap, smtp
from dripd.pipeline import app as app_mod
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import engine as store_engine
from dripd.store import enrollments, outbox, reps, schema


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def test_campaign_emails_arrive_once_threaded_with_parts_and_a_sent_copy(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add(
        "ann@example.org", first_name="Ann", last_name="Lee", company="Lee Bakery", topic="rates"
    )
    summary = world.run()
    assert (summary.queued, summary.sent) == (1, 1)
    first = world.smtp.wait_for(1)[0]
    assert (first.tls and first.login == b"mike@example.com") or first.login == "mike@example.com"
    message = first.message
    assert message["From"] == "Mike Gulitz <mike@example.com>"
    assert message["To"] == "Ann Lee <ann@example.org>"
    assert message["Subject"] == "Hello Ann at Lee Bakery"
    assert message["Date"] and message["Message-ID"].startswith("<dripd.")
    assert message["List-Unsubscribe"] == "<mailto:mike@example.com?subject=unsubscribe>"
    assert message.get_body(("plain",)).get_content().startswith("Hi Ann,")
    assert "<em>brochure</em>" in message.get_body(("html",)).get_content()
    assert "Mike Gulitz" in message.get_body(("plain",)).get_content()  # the signature
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == "brochure.pdf"
    assert attachment.get_content_type() == "application/pdf"

    assert world.run().sent == 0  # nothing twice
    world.clock.advance(timedelta(days=2))
    assert world.run().sent == 1
    # (Wednesday morning: mike's digest, with the call that fell due, goes out too.)
    to_ann = [m for m in world.smtp.wait_for(2) if m.rcpt_tos == ("ann@example.org",)]
    second = to_ann[1].message
    assert second["Subject"] == "Re: Hello Ann at Lee Bakery"
    assert second["In-Reply-To"] == message["Message-ID"]
    assert second["References"] == message["Message-ID"]
    assert "<strong>rates</strong>" in second.get_body(("html",)).get_content()

    sent_folder = dovecot.fetch_all(imap_user.address, "Sent")
    ids = sorted(parse(m.raw)["Message-ID"] for m in sent_folder)
    digests = [m.message_id for m in world.smtp.messages() if m.rcpt_tos == ("mike@example.com",)]
    assert ids == sorted([message["Message-ID"], second["Message-ID"], *digests])
    assert len(world.smtp.messages()) == 2 + len(digests)
    assert world.contact("ann@example.org").touches == 2
    assert world.history("ann@example.org").count("email_sent") == 2


def test_run_once_copies_every_email_it_sent_to_the_sent_folder(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, monkeypatch
) -> None:
    # Copies go a batch at a time; `run --once` (cron) used to copy one batch
    # and leave the rest for the next run.
    monkeypatch.setattr(sent_copies, "COPY_BATCH", 2)
    world = make_world(window="daily 00:00-24:00", imap=imap_user, dovecot=dovecot)
    for i in range(5):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    assert world.run().sent == 5
    copies = dovecot.fetch_all(imap_user.address, "Sent")
    assert sorted(parse(c.raw)["Message-ID"] for c in copies) == sorted(
        r.message_id for r in world.rows()
    )
    assert all(r.copied_at is not None for r in world.rows())


def test_a_server_that_files_sent_mail_itself_gets_no_second_copy(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    # Gmail and Microsoft 365 put what they send in the Sent folder themselves:
    # with save_copy = false dripd appends nothing there (the rep would see every
    # email twice), and does not try again at each pass.
    world = make_world(imap=imap_user, dovecot=dovecot, imap_options={"save_copy": False})
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1
    assert dovecot.fetch_all(imap_user.address, "Sent") == []
    (row,) = world.rows()
    assert row.status == "sent" and row.copied_at is not None


def test_a_sent_folder_with_a_non_ascii_name(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    # French Outlook's Sent folder. IMAP names folders in modified UTF-7 (RFC 3501
    # 5.1.3); sent as UTF-8, Dovecot refused the name and no copy was ever saved.
    assert imap.mailbox("Éléments envoyés") == '"&AMk-l&AOk-ments envoy&AOk-s"'
    assert imap.mailbox("R&D") == '"R&-D"'
    with dovecot.imap(imap_user.address) as conn:
        assert conn.create('"&AMk-l&AOk-ments envoy&AOk-s"')[0] == "OK"
    options = {"sent_folder": "Éléments envoyés"}
    world = make_world(imap=imap_user, dovecot=dovecot, imap_options=options)
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1
    (copy,) = dovecot.fetch_all(imap_user.address, "&AMk-l&AOk-ments envoy&AOk-s")
    assert parse(copy.raw)["Message-ID"] == world.rows()[0].message_id
    assert world.rows()[0].copied_at is not None


def test_nothing_goes_out_outside_the_window(make_world) -> None:
    world = make_world()
    world.clock.set(dates.local(DAY + timedelta(days=5), 10))  # Saturday
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 0
    world.clock.set(dates.local(DAY + timedelta(weeks=1), 8, 59))  # Monday 08:59 New York
    assert world.run().sent == 0
    world.clock.set(dates.local(DAY + timedelta(weeks=1), 9))  # 09:00
    assert world.run().sent == 1
    assert len(world.smtp.messages()) == 1


def test_an_email_queued_as_the_window_closes_waits_for_it_and_is_not_stuck(make_world) -> None:
    from dripd.daemon import planner
    from dripd.pipeline import reports

    world = make_world()
    world.clock.set(dates.local(DAY + timedelta(weeks=1), 16, 59))  # Monday 16:59 New York
    world.add("ann@example.org", first_name="Ann", company="X")
    planner.advance_due(world.app, world.clock.now())  # queued; the window closes at 17:00
    world.clock.set(dates.local(DAY + timedelta(weeks=1), 17, 30))
    assert world.run().sent == 0
    (row,) = world.rows()
    assert (row.wait, row.last_error) == (schema.Wait.WINDOW, "waiting for the sending window")
    world.clock.advance(outbox.STUCK * 2)
    with world.app.reader.connect() as conn:  # a wait, not a mailbox problem
        (mike,) = reports.status(world.app, conn).mailboxes
    assert mike.waiting == 1 and mike.notes == ()
    world.clock.set(dates.local(DAY + timedelta(days=8), 9))  # Tuesday 09:00
    assert world.run().sent == 1


ASSOCIATE_CAMPAIGN = """
name = "Coaching"
[[steps]]
id = "coaching"
kind = "email"
wait = "0m"
from = "associate"
subject = "Coaching, {{ contact.first_name }}"
body = "Hi {{ contact.first_name }}, about your coaching."
"""


def _associate(smtp: servers.smtp.SmtpServer, holidays: str) -> str:
    """sam, the associate who sends the coaching email, on the same test server."""
    return f"""
[[reps]]
id = "sam"
name = "Sam Rivera"
email = "sam@example.com"
holidays = {holidays}

[reps.smtp]
host = "127.0.0.1"
port = {smtp.port}
username = "mike@example.com"
password_env = "DRIPD_TEST_SMTP_PASSWORD"
ca_file = "{smtp.ca_file}"

[roles]
associate = "sam"
"""


@pytest.mark.parametrize(
    ("owner_holidays", "associate_holidays", "sent_on_monday"),
    [([DAY.isoformat()], "[]", 0), ([], f'["{DAY}"]', 1)],  # the world's Monday
    ids=["owner-holiday-holds-it", "associate-holiday-does-not"],
)
def test_an_email_from_the_associate_keeps_to_the_owners_holidays(
    make_world, owner_holidays: list[str], associate_holidays: str, sent_on_monday: int
) -> None:
    # The send window is the contact's (their zone, their owner's holidays), whichever
    # mailbox it leaves from: the planner and the sender use that one calendar (plan.decide).
    # Before, the sender held it to sam's holidays: queued Monday, sent Tuesday.
    world = make_world(
        campaigns={"coaching": ASSOCIATE_CAMPAIGN},
        rep_options={"holidays": owner_holidays},
        extra=lambda smtp: _associate(smtp, associate_holidays),
    )
    world.add("ann@example.org", campaign="coaching", first_name="Ann")  # Monday 10:00 New York
    assert world.run().sent == sent_on_monday
    if not sent_on_monday:
        world.clock.set(dates.local(DAY + timedelta(days=1), 9))  # Tuesday 09:00
        assert world.run().sent == 1
    (row,) = world.rows()
    assert (row.rep, row.holidays_of, row.status) == ("sam", "mike", "sent")
    (message,) = world.smtp.messages()
    assert (message.mail_from, message.message["From"].addresses[0].addr_spec) == (
        "sam@example.com",
        "sam@example.com",
    )


def test_queued_email_is_not_sent_to_a_contact_who_unsubscribed(make_world) -> None:
    world = make_world(window="mon-fri 00:00-24:00")
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    from dripd.daemon import planner

    planner.advance_due(world.app, world.clock.now())  # both queued
    ann_id = world.contact("ann@example.org").id
    with world.app.engine.begin() as conn:
        store_contacts.update_contact(conn, ann_id, {"status": "unsubscribed"})
    summary = world.run()
    assert (summary.sent, summary.skipped) == (1, 1)
    assert [m.rcpt_tos for m in world.smtp.messages()] == [("bob@example.org",)]


def test_temporary_failure_is_retried_later(make_world) -> None:
    world = make_world(window="mon-fri 00:00-24:00")
    world.smtp.faults.reply("DATA", servers.smtp.TEMPFAIL)
    world.add("ann@example.org", first_name="Ann", company="X")
    summary = world.run()
    assert (summary.sent, summary.retried) == (0, 1)
    (row,) = world.rows()
    assert row.status == "queued" and row.attempts == 1 and row.last_error
    assert row.next_attempt_at > world.clock.now() + timedelta(seconds=20)  # backoff
    from dripd.pipeline import reports

    with world.app.reader.connect() as conn:  # what `run --once` says is next
        upcoming = reports.next_up(world.app, conn)
    assert upcoming is not None
    assert (upcoming.email, upcoming.kind, upcoming.at) == (
        "ann@example.org",
        "email",
        row.next_attempt_at,
    )
    assert upcoming.note == row.last_error
    assert world.run().sent == 0  # not before its time
    world.clock.set(row.next_attempt_at)
    assert world.run().sent == 1
    assert len(world.smtp.messages()) == 1


@pytest.mark.parametrize("down", ["421 4.3.2 Service not available", "connection dropped"])
def test_a_mailbox_down_for_a_day_and_a_half_fails_no_email(make_world, down: str) -> None:
    # The server answers every session with 421 (or hangs up) for 36 hours; dripd
    # tries every half hour. That is the mailbox's problem, not the emails': it
    # must not use up their 12 tries (after which an email fails for good).
    # Both go once it is back, inside max_late (2 days).
    world = make_world(window="daily 00:00-24:00")
    if down.startswith("421"):
        world.smtp.faults.reply("RCPT", down, times=10_000)
    else:
        world.smtp.faults.drop("RCPT", times=10_000)
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    for _ in range(72):
        assert world.run().sent == 0
        world.clock.advance(timedelta(minutes=30))
    assert [r.status for r in world.rows()] == ["queued", "queued"]
    world.smtp.faults.clear()
    world.clock.advance(timedelta(hours=7))  # past any backoff
    assert world.run().sent == 2
    assert sorted(m.rcpt_tos[0] for m in world.smtp.messages()) == [
        "ann@example.org",
        "bob@example.org",
    ]


def test_an_email_held_by_a_vacation_then_by_its_mailbox_is_skipped_once_stale(make_world) -> None:
    # Planned Monday 10:00; the rep is away until Tuesday 10:00, when it is queued (a day
    # late: not stale). Its mailbox then refuses until Wednesday 10:30, more than max_late
    # (2 days) after the plan: the sender counts lateness from the plan, as the planner
    # does (plan.decide). It counted from the end of the vacation before, and sent it.
    world = make_world(window="daily 00:00-24:00")
    monday = world.clock.now()
    with world.app.engine.begin() as conn:
        reps.set_rep_pause(conn, "mike", monday + timedelta(days=1), monday)
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 0
    world.smtp.faults.reply("RCPT", "421 4.3.2 Service not available", times=10_000)
    world.clock.set(monday + timedelta(days=1))
    assert world.run().sent == 0
    (row,) = world.rows()
    assert (row.status, row.planned_at, row.due_at) == (
        "queued",
        monday,
        monday + timedelta(days=1),
    )
    world.smtp.faults.clear()
    world.clock.set(monday + timedelta(days=2, minutes=30))
    summary = world.run()
    assert (summary.sent, summary.skipped) == (0, 1)
    (row,) = world.rows()
    assert (row.status, row.last_error) == ("skipped", "due 2 days ago, more than max_late 2 days")


def test_a_mailbox_reads_its_own_reps_pause_not_every_reps(make_world) -> None:
    """One statement by primary key a drain: reading every rep's pause, drains grew with reps."""
    world = make_world(window="daily 00:00-24:00")
    now = world.clock.now()
    with world.app.engine.begin() as conn:
        for rep in ("ann", "bob", "zed"):
            reps.set_rep_pause(conn, rep, now + timedelta(days=1), now)
    world.add("ann@example.org", first_name="Ann", company="X")
    read: list[tuple[str, object]] = []

    def before(conn: object, cursor: object, sql: str, params: object, *args: object) -> None:
        if "FROM reps" in sql:
            read.append((sql, params))

    sa.event.listen(world.app.engine, "before_cursor_execute", before)
    try:
        assert world.run().sent == 1  # the others' vacations hold up no one else
    finally:
        sa.event.remove(world.app.engine, "before_cursor_execute", before)
    drains = [params for sql, params in read if "mailboxes" in sql]
    assert drains and all("mike" in params for params in drains)  # type: ignore[operator]


def test_an_email_the_server_hangs_up_on_holds_up_no_other(make_world) -> None:
    # The server drops the connection at one recipient's RCPT, every time. That
    # looks like the mailbox's problem (no try is used up), but it must not keep
    # the next email waiting behind it.
    world = make_world(window="daily 00:00-24:00")
    for name in ("bob", "cy"):  # one for each of the mailbox's two connections
        world.smtp.faults.drop("RCPT", recipient=f"{name}@example.org", times=1000)
        world.add(f"{name}@example.org", first_name=name.title(), company="Y")
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 0  # bob and cy first: the mailbox rests 30 s
    world.clock.advance(timedelta(seconds=45))
    assert world.run().sent == 1
    assert [m.rcpt_tos for m in world.smtp.messages()] == [("ann@example.org",)]
    held = [r for r in world.rows() if r.recipient != "ann@example.org"]
    assert [(r.status, r.attempts) for r in held] == [("queued", 0), ("queued", 0)]


def test_a_server_deferring_the_mailbox_is_left_alone_for_a_while(make_world) -> None:
    # Postfix's rate limit (anvil) answers MAIL FROM with "450 4.7.1 Error: too
    # much mail from …". Before the recipient is even named, a 4xx is about the
    # mailbox: the email keeps its tries, the mailbox rests, and the other
    # queued emails are not each sent to be refused in turn.
    world = make_world(window="daily 00:00-24:00")
    deferred = world.smtp.faults.reply(
        "MAIL", "450 4.7.1 Error: too much mail from 127.0.0.1", times=100
    )
    for name in ("ann", "bob", "cy", "dee", "eve"):
        world.add(f"{name}@example.org", first_name=name.title(), company="X")
    summary = world.run()
    assert (summary.sent, summary.failed) == (0, 0)
    assert deferred.used <= 2  # once per connection at most, not once per email
    assert {(r.status, r.attempts) for r in world.rows()} == {("queued", 0)}
    # Both connections refused at once are one rest of 30 s, not 30 then 60.
    later = [r.next_attempt_at - world.clock.now() for r in world.rows() if r.last_error]
    assert len(later) == deferred.used == 2
    assert all(wait <= timedelta(seconds=60) for wait in later), later
    world.smtp.faults.clear()
    # The next run (cron's next `run --once`) sends those not tried; the
    # deferred ones wait behind the mailbox's rest, their tries unused.
    assert world.run().sent == 5 - deferred.used
    world.clock.advance(timedelta(minutes=2))
    assert world.run().sent == deferred.used
    assert len(world.smtp.messages()) == 5


def test_unknown_recipient_bounces_the_contact(make_world) -> None:
    world = make_world(window="mon-fri 00:00-24:00")
    world.smtp.faults.reply("RCPT", servers.smtp.NO_SUCH_USER, recipient="gone@example.org")
    world.add("gone@example.org", first_name="Gone", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    summary = world.run()
    assert (summary.sent, summary.bounced) == (1, 1)
    gone = world.contact("gone@example.org")
    assert gone.status == "bounced"
    assert "bounced" in world.history("gone@example.org")
    with world.app.engine.connect() as conn:
        assert enrollments.active_enrollments(conn, gone.id) == []
    world.clock.advance(timedelta(days=3))
    world.run()
    assert all(m.rcpt_tos != ("gone@example.org",) for m in world.smtp.messages())


def test_envelope_after_a_refusal_and_for_an_idn_domain(make_world) -> None:
    # dripd writes MAIL FROM / RCPT TO itself: a refused RCPT resets the envelope
    # (RSET) so the next email on that connection goes out; an IDN domain is in
    # punycode on the wire, as in the To header.
    world = make_world(window="mon-fri 00:00-24:00")
    world.smtp.faults.reply("RCPT", servers.smtp.NO_SUCH_USER, recipient="gone@example.org")
    world.add("gone@example.org", first_name="Gone", company="X")
    world.add("jo@bücher.example", first_name="Jo", company="Y")
    world.add("bob@example.org", first_name="Bob", company="Z")
    world.add("cy@example.org", first_name="Cy", company="W")
    summary = world.run()
    assert (summary.sent, summary.bounced, summary.retried) == (3, 1, 0)
    received = {m.rcpt_tos: m for m in world.smtp.messages()}
    assert set(received) == {
        ("jo@xn--bcher-kva.example",),
        ("bob@example.org",),
        ("cy@example.org",),
    }
    assert {m.mail_from for m in received.values()} == {"mike@example.com"}
    assert received[("jo@xn--bcher-kva.example",)].message["To"] == "Jo <jo@xn--bcher-kva.example>"


def test_daily_quota_rests_the_mailbox_without_bouncing(make_world) -> None:
    world = make_world(window="mon-fri 00:00-24:00")
    # A quota refuses everything from then on (both connections' emails).
    world.smtp.faults.reply("DATA", servers.smtp.QUOTA_EXCEEDED, times=2)
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    world.add("cat@example.org", first_name="Cat", company="Z")
    summary = world.run()
    assert summary.sent == 0 and summary.bounced == 0
    assert world.contact("ann@example.org").status == "active"
    assert {r.status for r in world.rows()} == {"queued"}
    world.clock.advance(timedelta(hours=2))
    assert world.run().sent == 0  # still resting
    world.clock.set(dates.local(DAY + timedelta(days=1), 0, 10))  # after midnight in New York
    assert world.run().sent == 3


def test_message_rejected_fails_only_that_email(make_world) -> None:
    world = make_world(window="mon-fri 00:00-24:00")
    world.smtp.faults.reply("DATA", "554 5.6.0 Message content rejected")
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    summary = world.run()
    assert (summary.sent, summary.failed) == (1, 1)
    statuses = sorted(r.status for r in world.rows())
    assert statuses == ["failed", "sent"]
    assert world.run().sent == 0  # the failed one is not re-sent


def test_rate_limits_hold_over_a_simulated_day_with_a_backlog(make_world) -> None:
    world = make_world(window="daily 00:00-24:00", limits=(12, 40))
    for i in range(60):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    sent_times: list[datetime] = []
    for _ in range(int(30 * 60 / 5)):  # 30 simulated hours, every 5 minutes
        world.run()
        world.clock.advance(timedelta(minutes=5))
    sent_times = sorted(r.sent_at for r in world.rows() if r.sent_at)  # type: ignore[misc]
    assert len(world.smtp.messages()) == len(sent_times)

    def most_in(span: timedelta) -> int:
        return max(sum(1 for t in sent_times if s <= t < s + span) for s in sent_times)

    assert most_in(timedelta(hours=1)) <= 12
    assert most_in(timedelta(days=1)) <= 40
    assert most_in(timedelta(minutes=10)) <= 2  # a backlog is spread out, not bursted
    assert len(sent_times) >= 40  # and the limits were actually used


def test_a_mailbox_at_its_limit_says_so_in_the_log_and_in_status(make_world, caplog) -> None:
    # Emails due and none going out, for minutes: the user must be able to
    # see it is the limit (the log once, `status` while it lasts), not a fault.
    from dripd.pipeline import reports

    world = make_world(window="daily 00:00-24:00", limits=(12, 40))
    for i in range(5):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    with caplog.at_level(logging.INFO, logger="dripd.sender"):
        assert world.run().sent == 2  # a sixth of 12 an hour in any ten minutes
    held = [r for r in caplog.records if getattr(r, "action", "") == "rate_limited"]
    assert len(held) == 1, [r.getMessage() for r in held]
    assert held[0].limit == "2 sent in the last 10 minutes (a backlog is spread over the hour)"
    with world.app.reader.connect() as conn:
        (mike,) = reports.status(world.app, conn).mailboxes
    free = world.clock.now() + timedelta(minutes=10)
    assert list(mike.notes) == [
        "at its limit, 2 sent in the last 10 minutes (a backlog is spread over the hour): "
        f"the next email at {free:%H:%M} UTC"
    ]
    world.clock.advance(timedelta(minutes=10))
    assert world.run().sent == 2
    with world.app.reader.connect() as conn:
        assert reports.status(world.app, conn).mailboxes[0].notes != ()  # held again
    world.clock.advance(timedelta(hours=2))
    assert world.run().sent == 1  # the last one; nothing waits, nothing said
    with world.app.reader.connect() as conn:
        assert reports.status(world.app, conn).mailboxes[0].notes == ()


def test_an_email_that_waited_in_the_queue_is_dated_when_it_is_sent(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    # Queued together, sent hours apart under the rate limit: each arrives
    # dated when it went, not when it was queued (clients sort by Date, spam
    # filters score an old one), and its Sent-folder copy is the same bytes.
    world = make_world(window="daily 00:00-24:00", limits=(1, 100), imap=imap_user, dovecot=dovecot)
    queued_at = world.clock.now()
    for name in ("ann", "bob", "cy"):
        world.add(f"{name}@example.org", first_name=name.title(), company="X")
    for _ in range(4 * 12):  # four hours, every five minutes
        world.run()
        world.clock.advance(timedelta(minutes=5))
    arrived = [m for m in world.smtp.messages() if m.rcpt_tos[0].endswith("@example.org")]
    assert len(arrived) == 3
    rows = {r.message_id: r for r in world.rows()}
    dates = []
    for message in arrived:
        row = rows[message.message_id]
        assert row.sending_at is not None
        date = message.message["Date"].datetime
        assert abs(date - row.sending_at) < timedelta(seconds=1)
        dates.append(date)
    assert dates[0] - queued_at < timedelta(minutes=1)
    assert dates[2] - queued_at >= timedelta(hours=2)  # the third waited two hours
    copies = {
        parse(c.raw)["Message-ID"]: c.raw for c in dovecot.fetch_all(imap_user.address, "Sent")
    }
    for message in arrived:
        assert copies[message.message_id] == message.raw


def test_follow_ups_go_before_first_emails_under_a_limit(make_world) -> None:
    # No digest on these days: it would take the one email the burst allows.
    world = make_world(
        window="daily 00:00-24:00", limits=(6, 100), rep_options={"digest": "sat 07:30"}
    )
    world.add("early@example.org", first_name="Early", company="X")
    world.run()  # its first email
    world.clock.advance(timedelta(days=2))
    for i in range(5):
        world.add(f"new{i}@example.org", first_name=f"N{i}", company="X")
    world.run()  # the burst allowance: one email
    received = [m.rcpt_tos[0] for m in world.smtp.messages()]
    assert received[:2] == ["early@example.org", "early@example.org"]


def test_crash_while_sending_is_reconciled_against_the_sent_folder(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot, window="daily 00:00-24:00")
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    from dripd.daemon import planner

    planner.advance_due(world.app, world.clock.now())
    ann, bob = world.rows()
    with world.app.engine.begin() as conn:  # as a crash mid-send would leave them
        for row in (ann, bob):
            conn.execute(
                sa.update(schema.outbox)
                .where(schema.outbox.c.id == row.id)
                .values(status="sending", sending_at=world.clock.now())
            )
    # Ann's email did go out (the server kept it in Sent); Bob's did not.
    dovecot.append(imap_user.address, "Sent", ann.message)
    summary = world.run()
    assert summary.reconciled == {"found_sent": 1, "requeued": 1}
    assert [m.rcpt_tos for m in world.smtp.messages()] == [("bob@example.org",)]
    assert {r.recipient: r.status for r in world.rows()} == {
        "ann@example.org": "sent",
        "bob@example.org": "sent",
    }


def test_hostile_field_values_never_become_headers(make_world) -> None:
    world = make_world(window="daily 00:00-24:00")
    with pytest.raises(ValueError):
        contacts.validate(
            {"email": "x@example.org", "first_name": "Ann\r\nBcc: evil@example.com"},
            world.app.contact_rules(),
        )
    # Custom fields may hold line breaks (notes); one used in a subject is flattened.
    with pytest.raises(ValueError):
        contacts.validate(
            {"email": "x@example.org", "company": "Acme\tCorp"}, world.app.contact_rules()
        )
    world.add(
        "ann@example.org", first_name="Ann", company="Acme", topic="rates\nBcc: evil@example.com"
    )
    world.run()
    message = world.smtp.wait_for(1)[0]
    assert message.rcpt_tos == ("ann@example.org",)
    assert message.message["Bcc"] is None
    assert b"\nBcc:" not in message.raw.split(b"\r\n\r\n", 1)[0]


def test_implicit_tls_mailbox(make_world) -> None:
    world = make_world(tls="implicit", window="daily 00:00-24:00")
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1
    assert world.smtp.wait_for(1)[0].tls


def test_missing_attachment_holds_the_step_and_says_why(make_world) -> None:
    world = make_world(window="daily 00:00-24:00")
    (world.app.config.attachments_dir / "brochure.pdf").unlink()
    world.add("ann@example.org", first_name="Ann", company="X")
    summary = world.run()
    assert (summary.queued, summary.sent, summary.held) == (0, 0, 1)
    assert world.smtp.messages() == [] and world.rows() == []
    assert "held" in world.history("ann@example.org")
    with world.app.engine.connect() as conn:
        (enrollment,) = enrollments.active_enrollments(conn, world.contact("ann@example.org").id)
    assert enrollment.waiting is not None and "brochure.pdf" in enrollment.waiting
    (world.app.config.attachments_dir / "brochure.pdf").write_bytes(b"%PDF-1.4 again")
    world.clock.advance(timedelta(hours=1))
    assert world.run().sent == 1


def test_wrong_password_sends_nothing_and_keeps_the_email(make_world, monkeypatch) -> None:
    world = make_world(window="daily 00:00-24:00")
    monkeypatch.setenv("DRIPD_TEST_SMTP_PASSWORD", "not-the-password")
    world.add("ann@example.org", first_name="Ann", company="X")
    summary = world.run()
    assert summary.sent == 0 and world.smtp.messages() == []
    assert [r.status for r in world.rows()] == ["queued"]


def test_status_reports_each_mailbox(make_world) -> None:
    from dripd.pipeline import reports

    world = make_world(window="daily 00:00-24:00")
    world.smtp.faults.reply("DATA", "554 5.6.0 Message content rejected")
    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    world.run()
    with world.app.reader.connect() as conn:
        status = reports.status(world.app, conn)
    (mike,) = status.mailboxes
    assert (mike.rep, mike.sent, mike.failed, mike.waiting) == ("mike", 1, 1, 0)
    assert mike.last_sent_at == world.clock.now() and mike.notes == ()
    # The daemon's health: no `dripd run` yet (run --once registers none), and the one
    # failure is named for the person to look at.
    health = status.health
    assert health.instances == () and health.last_sent_at == world.clock.now()
    assert (health.queued, health.failed_emails, health.held_steps) == (0, 1, 0)
    (problem,) = health.attention
    assert "failed" in problem and "554 5.6.0 Message content rejected" in problem


def test_status_names_what_keeps_a_mailbox_from_sending_and_copying(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    # The daemon's rests live in its memory; `dripd status` runs in another
    # process. What it can see: emails that could go and carry an error, and
    # copies that are not in the Sent folder (here: a folder that isn't there).
    from dripd.pipeline import reports

    options = {"sent_folder": "Sent Items"}
    world = make_world(
        window="daily 00:00-24:00", imap=imap_user, dovecot=dovecot, imap_options=options
    )
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1  # sent; its copy fails (no such folder)
    world.smtp.faults.reply("RCPT", "421 4.3.2 Service not available", times=100)
    world.add("bob@example.org", first_name="Bob", company="Y")
    assert world.run().sent == 0

    def notes() -> list[str]:
        with world.app.reader.connect() as conn:
            (mike,) = reports.status(world.app, conn).mailboxes
        return list(mike.notes)

    assert notes() == []  # a few minutes: not yet worth a word
    world.clock.advance(timedelta(minutes=11))
    assert world.run().sent == 0
    waiting, copies = notes()
    assert waiting.startswith("1 waiting since ")
    assert waiting.endswith("last try: 421 4.3.2 Service not available")
    assert copies == "1 sent not yet copied to 'Sent Items' (the log says why)"


def test_a_server_that_stops_answering_times_out_and_the_next_email_reconnects(
    smtp_server,
) -> None:
    # smtp.Connection keeps its own per-command timeout (one asyncio.timeout for
    # the transaction): a stalled reply fails that email as temporary and closes
    # the session, which is out of step; the next email opens a new one.
    server = smtp_server(tls="none")
    settings = config.SmtpConfig(host=server.host, port=server.port, security="none", timeout=0.3)
    server.faults.stall("RCPT", 2.0)
    message = b"Subject: hi\r\nMessage-ID: <t1@example.com>\r\n\r\nHello.\r\n"

    async def scenario() -> tuple[smtp.SendError, float]:
        connection = smtp.Connection(settings, None)
        started = time.monotonic()
        with pytest.raises(smtp.SendError) as caught:
            await connection.send("mike@example.com", "ann@example.org", message)
        took = time.monotonic() - started
        assert not connection.is_open
        await connection.send("mike@example.com", "bob@example.org", message)
        await connection.close()
        return caught.value, took

    error, took = asyncio.run(scenario())
    assert error.kind == "temporary" and "no reply in 0.3 s" in str(error)
    assert took < 1.5
    assert [m.rcpt_tos for m in server.wait_for(1)] == [("bob@example.org",)]


def test_which_failures_are_the_mailboxs_and_which_the_emails(smtp_server) -> None:
    # The mailbox's: nothing of the message reached the server, and trying the
    # same email later is right. The email's: a 4xx about it, or the
    # connection lost once DATA was under way (the message may be the cause).
    server = smtp_server(tls="none")
    # A second per reply: short, yet far from what a loaded CI host takes to answer.
    settings = config.SmtpConfig(host=server.host, port=server.port, security="none", timeout=1.0)
    message = b"Subject: hi\r\nMessage-ID: <t2@example.com>\r\n\r\nHello.\r\n"
    server.faults.reply("MAIL", "451 4.7.1 Too much mail, slow down")
    server.faults.reply("RCPT", "421 4.3.2 Closing: too busy")
    server.faults.drop("RCPT")
    server.faults.stall("RCPT", 4.0)
    server.faults.reply("RCPT", servers.smtp.TEMPFAIL)
    server.faults.drop("DATA")
    server.faults.stall("DATA", 4.0)

    async def scenario() -> list[tuple[int, bool]]:
        connection = smtp.Connection(settings, None)
        seen = []
        for _ in range(7):
            with pytest.raises(smtp.SendError) as caught:
                await connection.send("mike@example.com", "ann@example.org", message)
            assert caught.value.kind == "temporary"
            seen.append((caught.value.code, caught.value.mailbox))
        await connection.close()
        closed = smtp.Connection(settings.model_copy(update={"port": _closed_port()}), None)
        with pytest.raises(smtp.SendError) as caught:
            await closed.send("mike@example.com", "ann@example.org", message)
        seen.append((caught.value.code, caught.value.mailbox))
        return seen

    expected = [
        (451, True),  # a 4xx at MAIL: before any recipient, about the mailbox
        (421, True),  # 421 at RCPT
        (0, True),  # dropped at RCPT
        (0, True),  # silent at RCPT
        (int(servers.smtp.TEMPFAIL[:3]), False),  # 4xx about this recipient
        (0, False),  # dropped after the message
        (0, False),  # silent after the message
        (0, True),  # no connection at all
    ]
    assert asyncio.run(scenario()) == expected


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_ca_file_that_cannot_be_read_rests_that_mailbox_only(
    make_world, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    # It ended `run --once` with "internal error: FileNotFoundError" (and would
    # have taken the daemon down): now it is the mailbox's problem, said in the
    # log and by `dripd check`, and the email goes once the file is there.
    world = make_world(window="mon-fri 00:00-24:00")
    ca_copy = tmp_path / "private-ca.pem"
    ca_copy.write_bytes(Path(world.smtp.ca_file).read_bytes())
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        config_path.read_text(encoding="utf-8").replace(str(world.smtp.ca_file), str(ca_copy)),
        encoding="utf-8",
    )
    world = dataclasses.replace(
        world, app=app_mod.open_app(str(config_path), the_clock=world.clock)
    )
    try:
        world.add("ann@example.org", first_name="Ann", company="X")
        for broken, reason in ((None, "No such file or directory"), (b"junk\n", "no PEM")):
            if broken is None:
                ca_copy.unlink()
            else:
                ca_copy.write_bytes(broken)
            assert world.run().sent == 0
            assert f"cannot send: ca_file {ca_copy}" in caplog.text and reason in caplog.text
            assert [r.status for r in world.rows()] == ["queued"]
            caplog.clear()
        result = CliRunner().invoke(cli.cli, ["--config", str(config_path), "check"])
        assert f"warning rep mike smtp: ca_file {ca_copy}: no PEM" in result.output
        ca_copy.write_bytes(Path(world.smtp.ca_file).read_bytes())
        assert world.run().sent == 1
    finally:
        world.app.engine.dispose()


def test_check_connect_tries_every_mailbox_and_names_what_fails(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, monkeypatch
) -> None:
    # A new user's first question: are host, port, TLS, password and folders
    # right? `check --connect` logs in to each mailbox and opens its folders,
    # sending nothing; exit 1 with one line per mailbox that fails.
    world = make_world(imap=imap_user, dovecot=dovecot)
    config_path = str(world.app.config.path)

    def check() -> tuple[int, list[str], dict[str, object]]:
        runner = CliRunner()
        shown = runner.invoke(cli.cli, ["--config", config_path, "check", "--connect"])
        data = runner.invoke(cli.cli, ["--config", config_path, "check", "--connect", "--json"])
        lines = [line for line in shown.output.splitlines() if line.startswith(("ok ", "error "))]
        assert shown.exit_code == data.exit_code
        gc.collect()  # a connection left open would warn here (an error), not in a later test
        return shown.exit_code, lines, json.loads(data.output)

    code, lines, data = check()
    assert code == 0, lines
    port = world.smtp.port
    database = lines.pop(0)
    url, head = world.app.config.database_url, store_engine.HEAD
    assert database == f"ok database {url}: schema {head}, up to date"
    assert lines[0] == (
        f"ok rep mike smtp: 127.0.0.1:{port} (starttls), logged in as mike@example.com, "
        "may send as mike@example.com"
    )
    assert lines[1] == (
        f"ok rep mike imap: 127.0.0.1:{imap_user.tls_port}, opened 'INBOX', "
        "Sent folder 'Sent' (sent_folder)"
    )
    assert data["ok"] is True and [t["ok"] for t in data["connections"]] == [True, True, True]
    assert world.smtp.messages() == [] and dovecot.fetch_all(imap_user.address, "Sent") == []

    # A login that may not send as the rep's address: Postfix's
    # reject_sender_login_mismatch answers at RCPT. Asked without sending.
    not_owned = "553 5.7.1 <mike@example.com>: Sender address rejected: not owned by user"
    world.smtp.faults.reply("RCPT", not_owned, times=2)  # check() runs it twice
    code, lines, data = check()
    assert code == 1 and data["ok"] is False
    assert lines[1] == (
        f"error rep mike smtp: 127.0.0.1:{port} (starttls): mail from mike@example.com "
        f"refused: {not_owned}"
    )
    assert lines[2].startswith("ok rep mike imap: ")
    assert world.smtp.messages() == []

    monkeypatch.setenv("DRIPD_TEST_SMTP_PASSWORD", "wrong")
    monkeypatch.setenv("DRIPD_TEST_IMAP_PASSWORD", "wrong too")
    code, lines, data = check()
    assert code == 1 and data["ok"] is False
    assert lines.pop(0).startswith("ok database ")
    assert lines[0].startswith(
        f"error rep mike smtp: 127.0.0.1:{port} (starttls): 535 login refused"
    )
    assert lines[1].startswith(
        f"error rep mike imap: 127.0.0.1:{imap_user.tls_port}: login refused"
    )
    assert all("wrong" not in line for line in lines)  # never a password

    # The test servers' certificates come from the tests' own CA: without
    # ca_file they are untrusted, and the line says what to set.
    text = world.app.config.path.read_text(encoding="utf-8")
    untrusted = "\n".join(line for line in text.splitlines() if not line.startswith("ca_file"))
    world.app.config.path.write_text(untrusted, encoding="utf-8")
    code, lines, data = check()
    assert code == 1 and len(lines) == 3, lines
    for line in lines[1:]:
        assert "certificate verify failed" in line, line
        assert line.endswith("if the server's certificate is from a private CA, set ca_file")


def test_a_stop_ends_the_engine_pass_between_chunks(make_world, monkeypatch) -> None:
    # SIGTERM during a backlog of 30,000 due enrollments took 11.8 s to exit
    # (the promise is 10 s; systemd kills at 20): the pass went on to the end.
    monkeypatch.setattr(daemon, "ADVANCE_CHUNK", 2)
    world = make_world(window="mon-fri 00:00-24:00")
    for i in range(5):
        world.add(f"c{i}@example.org", first_name="C", company="X")
    stop, summary = asyncio.Event(), daemon.Summary()
    servers.loopback.run_client(
        daemon.advance_all(world.app, summary, on_chunk=stop.set, stop=stop)
    )
    assert summary.queued == 2  # one chunk, then it stopped
    servers.loopback.run_client(daemon.advance_all(world.app, summary))
    assert summary.queued == 5  # the rest waited for the next pass
