"""The inbox against a real Dovecot: replies, auto-replies, bounces and unsubscribes steer.

Messages reach the rep's INBOX the way delivery does (LMTP, or APPEND with
flags to check they are left alone). The watcher runs in-process on the
test's event loop; `run --once` reads the inbox before it sends.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dates
import pytest
import servers.imap
import servers.loopback
import sqlalchemy as sa
from worlds import DAY, MONDAY, World

from dripd.daemon import watcher
from dripd.pipeline import digest, reports
from dripd.store import contacts, enrollments, outbox, schema


def _sent_at(minutes: int) -> str:
    """A Date header `minutes` past an hour after the world's Monday 10:00 (mike's emails)."""
    return email.utils.format_datetime(MONDAY + timedelta(hours=1, minutes=minutes))


# The quoted header of mike's email, as a mail client writes it: "On Mon, Nov 23, 2026 at …"
QUOTED = f"On {dates.fmt_us(DAY)} at 10:00 AM Mike Gulitz <mike@example.com>"


def reply(
    contact: str, to_msgid: str, text: str, *, msgid: str, subject: str = "Re: Hello"
) -> bytes:
    return (
        f"From: Contact <{contact}>\r\nTo: Mike Gulitz <mike@example.com>\r\n"
        f"Subject: {subject}\r\nDate: {_sent_at(0)}\r\n"
        f"Message-ID: {msgid}\r\nIn-Reply-To: {to_msgid}\r\nReferences: {to_msgid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n\r\n{QUOTED} wrote:\r\n"
        "> Hi,\r\n> Thanks for meeting me.\r\n"
    ).encode()


def out_of_office(contact: str, to_msgid: str, *, back: str) -> bytes:
    return (
        f"From: Bob <{contact}>\r\nTo: mike@example.com\r\n"
        f"Subject: Automatic reply: Hello Bob\r\nDate: {_sent_at(1)}\r\n"
        f"Message-ID: <ooo.1@example.org>\r\nIn-Reply-To: {to_msgid}\r\n"
        "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"I am out of the office and will be back on {back}. I will reply when I return.\r\n"
    ).encode()


def dsn(recipient: str, msgid: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: mike@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {_sent_at(2)}\r\nMessage-ID: <dsn.1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.example.org.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        f"<{recipient}>: host mx.example.org said: 550 5.1.1 <{recipient}>: "
        "Recipient address rejected: User unknown in local recipient table\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown in local recipient table\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Mike Gulitz <mike@example.com>\r\nTo: {recipient}\r\nMessage-ID: {msgid}\r\n"
        "Subject: Hello\r\n\r\n--B--\r\n"
    ).encode()


def unsubscribe_click(contact: str) -> bytes:
    return (
        f"From: {contact}\r\nTo: mike@example.com\r\nSubject: unsubscribe\r\n"
        f"Date: {_sent_at(3)}\r\nMessage-ID: <unsub.1@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
    ).encode()


def statuses(world: World) -> dict[str, tuple[str, str]]:
    """Each contact's (status, stage)."""
    with world.app.engine.connect() as conn:
        return {c.email: (c.status, c.stage) for c in contacts.list_contacts(conn)}


def sent_ids(world: World, address: str) -> list[str]:
    return [r.message_id for r in world.rows() if r.recipient == address and r.status == "sent"]


def test_reply_auto_reply_bounce_and_unsubscribe_steer_the_sequences(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    people = ["ann@example.org", "bob@example.org", "carl@example.org", "dora@example.org"]
    for address in people:
        world.add(address, first_name=address.split("@")[0].title(), company="Acme")
    assert world.run().sent == 4
    first = {address: sent_ids(world, address)[0] for address in people}

    user = imap_user.address
    dovecot.append(
        user,
        "INBOX",
        reply("ann@example.org", first["ann@example.org"], "Yes, let's talk.", msgid="<r1@x>"),
        flags=["\\Flagged"],
    )
    dovecot.deliver(
        user,
        out_of_office(
            "bob@example.org",
            first["bob@example.org"],
            back=dates.fmt_long(DAY + timedelta(days=3)),
        ),
    )
    dovecot.deliver(user, dsn("carl@example.org", first["carl@example.org"]))
    dovecot.append(user, "INBOX", unsubscribe_click("dora@example.org"))
    flags_before = {m.uid: m.flags for m in dovecot.fetch_all(user)}

    world.clock.advance(timedelta(days=2, hours=1))
    summary = world.run()
    assert summary.inbox == 4
    assert statuses(world) == {
        "ann@example.org": ("active", "lead"),
        "bob@example.org": ("active", "prospect"),
        "carl@example.org": ("bounced", "prospect"),
        "dora@example.org": ("unsubscribed", "prospect"),
    }
    assert summary.sent == 0  # ann replied, bob is away, carl bounced, dora left
    assert "replied" in world.history("ann@example.org")
    assert "out_of_office" in world.history("bob@example.org")
    assert "bounced" in world.history("carl@example.org")
    assert "unsubscribed" in world.history("dora@example.org")
    with world.app.reader.connect() as conn:
        status = reports.status(world.app, conn)
    (mike,) = status.mailboxes
    assert mike.replies == 1 and mike.inbox_checked_at == world.clock.now()
    # Each answer counts for the step it answers: `dripd status` shows which touches work.
    hello = next(s.to_json() for s in status.steps if s.step == "hello")
    assert (hello["sent"], hello["replied"], hello["auto_replied"], hello["bounced"]) == (
        4,
        1,
        1,
        1,
    )
    # The rep's mailbox is untouched: same messages, same flags, nothing marked read.
    assert {m.uid: m.flags for m in dovecot.fetch_all(user)} == flags_before

    world.clock.advance(timedelta(days=1))  # Thursday: bob is back
    summary = world.run()
    assert summary.inbox == 0  # nothing new, nothing handled twice
    assert [len(sent_ids(world, a)) for a in people] == [1, 2, 1, 1]


# -- the watcher: IDLE, polling, restarts, renumbering -------------------------------


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def _watch(world: World, body: Callable[[watcher.Watcher], Awaitable[None]]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        rep = world.app.config.rep("mike")
        box = watcher.Watcher(world.app, rep, stop)
        task = asyncio.create_task(box.run())
        try:
            await asyncio.wait_for(box.connected.wait(), 10)
            await body(box)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    servers.loopback.run_client(main())


def _enrolled(world: World, address: str) -> str:
    with world.app.engine.connect() as conn:
        contact = contacts.contact_by_email(conn, address)
        assert contact is not None
        return ",".join(e.status for e in enrollments.enrollments_of(conn, contact.id))


@pytest.mark.parametrize("idle", [True, False], ids=["idle", "polling"])
def test_a_reply_stops_the_sequence_within_seconds(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, idle: bool
) -> None:
    world = make_world(
        imap=imap_user, dovecot=dovecot, imap_options={"idle": idle, "poll_interval": 1}
    )
    world.add("ann@example.org", first_name="Ann")
    world.run()
    msgid = sent_ids(world, "ann@example.org")[0]

    async def body(box: watcher.Watcher) -> None:
        await asyncio.to_thread(
            dovecot.deliver,
            imap_user.address,
            reply("ann@example.org", msgid, "Call me", msgid="<r@x>"),
        )
        took = await _until(lambda: _enrolled(world, "ann@example.org") == "stopped")
        assert took < (2.0 if idle else 3.0)

    _watch(world, body)


def test_mail_that_came_while_down_or_during_a_server_restart_is_read_once(
    make_world, private_dovecot: servers.imap.Dovecot
) -> None:
    account = private_dovecot.new_user()
    world = make_world(imap=account, dovecot=private_dovecot, imap_options={"poll_interval": 1})
    for name in ("ann", "bob", "cat"):
        world.add(f"{name}@example.org", first_name=name.title())
    world.run()
    ids = {
        a: sent_ids(world, a)[0] for a in ("ann@example.org", "bob@example.org", "cat@example.org")
    }
    # Arrives while dripd is not running: read at the next start.
    private_dovecot.deliver(
        account.address, reply("ann@example.org", ids["ann@example.org"], "Yes", msgid="<a@x>")
    )

    async def body(box: watcher.Watcher) -> None:
        await _until(lambda: _enrolled(world, "ann@example.org") == "stopped")
        private_dovecot.kill()
        await asyncio.sleep(0.3)
        private_dovecot.start()
        private_dovecot.deliver(
            account.address, reply("bob@example.org", ids["bob@example.org"], "Sure", msgid="<b@x>")
        )
        await _until(lambda: _enrolled(world, "bob@example.org") == "stopped", timeout=20)

    _watch(world, body)
    assert _enrolled(world, "cat@example.org") == "active"
    assert _handled(world) == {"<a@x>": 1, "<b@x>": 1}


def _handled(world: World) -> dict[str, int]:
    with world.app.engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.inbox_messages.c.message_key, sa.func.count()).group_by(
                schema.inbox_messages.c.message_key
            )
        ).all()
    return {key: count for key, count in rows}


def test_a_uidvalidity_change_reads_the_folder_again_without_repeating_anything(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add("ann@example.org", first_name="Ann")
    world.add("bob@example.org", first_name="Bob")
    world.run()
    ann, bob = sent_ids(world, "ann@example.org")[0], sent_ids(world, "bob@example.org")[0]
    with world.app.engine.connect() as conn:  # where a first start would begin reading
        assert outbox.first_sent_at(conn, "mike") == world.clock.now()
    dovecot.deliver(imap_user.address, reply("ann@example.org", ann, "Yes", msgid="<a@x>"))
    assert world.run().inbox == 1
    dovecot.change_uidvalidity(imap_user.address)
    dovecot.deliver(imap_user.address, reply("bob@example.org", bob, "Me too", msgid="<b@x>"))
    assert world.run().inbox == 1  # bob's, read by Message-ID; ann's not again
    assert _handled(world) == {"<a@x>": 1, "<b@x>": 1}
    assert world.history("ann@example.org").count("replied") == 1
    assert _enrolled(world, "bob@example.org") == "stopped"


def _poison_then_good(world: World, dovecot: servers.imap.Dovecot, address: str) -> dict[str, Any]:
    """A reply that breaks something (`<poison@x>`) then a good one; each message's outcome
    and reasons by its key. The good one must stop ann's sequence."""
    ann = sent_ids(world, "ann@example.org")[0]
    dovecot.deliver(address, reply("ann@example.org", ann, "Hmm", msgid="<poison@x>"))
    dovecot.deliver(address, reply("ann@example.org", ann, "Yes", msgid="<good@x>"))
    assert world.run().inbox == 1
    assert _enrolled(world, "ann@example.org") == "stopped"
    messages = schema.inbox_messages.c
    query = sa.select(messages.message_key, messages.outcome, messages.reasons)
    with world.app.engine.connect() as conn:
        return {key: (outcome, reasons) for key, outcome, reasons in conn.execute(query)}


def test_a_message_that_breaks_the_classifier_does_not_block_the_next(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, monkeypatch
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add("ann@example.org", first_name="Ann")
    world.run()
    from dripd.mail import classify

    real = classify.classify

    def fragile(mail, known, *, received):
        if mail.message_id == "<poison@x>":
            raise RuntimeError("a bug")
        return real(mail, known, received=received)

    monkeypatch.setattr(classify, "classify", fragile)
    recorded = _poison_then_good(world, dovecot, imap_user.address)
    assert recorded["<poison@x>"] == (schema.MessageOutcome.FAILED, "could not be handled: a bug")
    assert recorded["<good@x>"][0] == schema.MessageOutcome.HANDLED
    with world.app.engine.connect() as conn:
        health = reports.health(world.app, conn)
    assert health.unreadable_messages == 1
    problem = "a message from ann@example.org to mike: could not be handled: a bug"
    assert problem in health.attention


def test_a_message_the_parser_fails_on_does_not_block_the_next(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, monkeypatch
) -> None:
    """`incoming.parse` is not to raise; if a bug makes it, the message stays and is noted."""
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add("ann@example.org", first_name="Ann")
    world.run()
    from dripd.mail import incoming

    real = incoming.parse

    def fragile(raw: bytes) -> incoming.Incoming:
        if b"<poison@x>" in raw:
            raise IndexError("a bug")
        return real(raw)

    monkeypatch.setattr(incoming, "parse", fragile)
    recorded = _poison_then_good(world, dovecot, imap_user.address)
    failed = {key: reasons for key, (outcome, reasons) in recorded.items() if outcome == "failed"}
    assert list(failed.values()) == ["could not be handled: a bug"]
    assert next(iter(failed)).startswith("sha256:")  # kept by its bytes: not read again
    assert recorded["<good@x>"][0] == schema.MessageOutcome.HANDLED


def test_out_of_office_without_a_date_pauses_then_skips_what_went_stale(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add("bob@example.org", first_name="Bob")
    world.run()
    hello = sent_ids(world, "bob@example.org")[0]
    notice = out_of_office("bob@example.org", hello, back="soon").replace(
        b"will be back on soon.", b"have limited access to email."
    )
    dovecot.deliver(imap_user.address, notice)
    assert world.run().inbox == 1  # paused for out_of_office_days (3), no date given
    world.clock.advance(timedelta(days=2, hours=1))  # the follow-up falls due while away
    assert world.run().sent == 0
    world.clock.advance(timedelta(days=3))  # back, but the follow-up is > max_late (2 days) late
    summary = world.run()
    assert (summary.sent, summary.skipped) == (0, 1)
    assert "out_of_office" in world.history("bob@example.org")
    assert "skipped" in world.history("bob@example.org")


def test_an_inbox_password_that_is_missing_waits_and_the_rest_goes_on(
    make_world,
    dovecot: servers.imap.Dovecot,
    imap_user: servers.imap.ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # `dripd check` calls this a warning; at run time it once ended `run --once`
    # before anything was sent, and took the whole daemon down with the watcher.
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add("ann@example.org", first_name="Ann")
    monkeypatch.delenv("DRIPD_TEST_IMAP_PASSWORD")

    summary = world.run()  # run --once: the inbox is skipped, the email goes
    assert summary.sent == 1
    assert "DRIPD_TEST_IMAP_PASSWORD" in caplog.text and "inbox unreachable" in caplog.text

    async def main() -> None:
        stop = asyncio.Event()
        box = watcher.Watcher(world.app, world.app.config.rep("mike"), stop)
        task = asyncio.create_task(box.run())
        try:
            await _until(lambda: caplog.text.count("inbox unreachable, retrying") >= 1)
            assert not task.done() and not box.connected.is_set()
            monkeypatch.setenv("DRIPD_TEST_IMAP_PASSWORD", imap_user.password)  # fixed
            await asyncio.wait_for(box.connected.wait(), 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)

    servers.loopback.run_client(main())


# -- someone else answering in the thread (SPEC §11) ------------------------------------


NOTE_ONLY = """
name = "Gentle"
colleague_replies = "note"
[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hello {{ contact.first_name }}"
body = "Hi {{ contact.first_name }}"
[[steps]]
id = "again"
kind = "email"
wait = "2 days"
subject = "Again"
body = "Hi again"
"""


def test_a_colleagues_reply_stops_the_sequence_and_a_strangers_does_not(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot, campaigns={"gentle": NOTE_ONLY})
    world.add("ann@northwind.example", first_name="Ann", company="Northwind")
    world.add("bob@contoso.example", first_name="Bob", company="Contoso")
    world.add("cleo@fabrikam.example", first_name="Cleo", company="Fabrikam", campaign="gentle")
    assert world.run().sent == 3
    ann, bob, cleo = (
        sent_ids(world, a)[0]
        for a in ("ann@northwind.example", "bob@contoso.example", "cleo@fabrikam.example")
    )
    user = imap_user.address
    # Ann's colleague takes over; someone at another company answers Bob's; Cleo's
    # colleague answers where the campaign says colleague_replies = "note".
    dovecot.deliver(
        user,
        reply("carl@northwind.example", ann, "Ann is on leave, I handle this now.", msgid="<c1@x>"),
    )
    dovecot.deliver(
        user, reply("jo@ridgeline.example", bob, "Bob asked me to look.", msgid="<c2@x>")
    )
    dovecot.deliver(
        user, reply("dan@fabrikam.example", cleo, "Cleo is travelling.", msgid="<c3@x>")
    )

    world.clock.advance(timedelta(days=2, hours=1))
    summary = world.run()
    assert summary.inbox == 3
    assert statuses(world) == {
        "ann@northwind.example": ("active", "lead"),  # promoted like her own reply
        "bob@contoso.example": ("active", "prospect"),
        "cleo@fabrikam.example": ("active", "suspect"),
    }
    # Ann's sequence stopped; Bob's and Cleo's go on with their second email.
    assert [len(sent_ids(world, a)) for a in ("ann@northwind.example", "bob@contoso.example",
                                              "cleo@fabrikam.example")] == [1, 2, 2]  # fmt: skip
    assert "replied" in world.history("ann@northwind.example")
    assert "someone_answered" in world.history("bob@contoso.example")
    assert "colleague_replied" in world.history("cleo@fabrikam.example")

    # The rep's digest says who answered, with the command that adds them.
    (digest_email,) = [m for m in world.smtp.messages() if m.rcpt_tos == ("mike@example.com",)]
    body = digest_email.message.get_body(("plain",))
    assert body is not None
    lines = [line.strip().removeprefix("> ") for line in body.get_content().splitlines()]
    text = " ".join(" ".join(lines).split())
    assert "carl@northwind.example answered: Ann is on leave, I handle this now." in text
    assert "    > referral carl@northwind.example from ann@northwind.example" in (
        body.get_content()  # a line of its own: the rep copies it into a reply
    )
    assert "Someone else answered" in text and "jo@ridgeline.example answered" in text
    assert "A colleague answered" in text and "dan@fabrikam.example answered" in text


# -- meetings from calendar emails (SPEC §11) ----------------------------------------------

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "messages"
# The corpus's real invitations keep their own dates (data, not test time): sent on Tuesday
# 24 November 2026 for a meeting at 10:00 Eastern on 3 December (Outlook) and one at 15:00
# Berlin on 10 December (Google). The test's clock starts on the Monday of that week, before
# the real today (Dovecot stamps what it receives with the real clock).
CORPUS_MONDAY = dates.local(date(2026, 11, 23), 10)
OUTLOOK_MEETING = datetime(2026, 12, 3, 10, 0, tzinfo=dates.NY)
GOOGLE_MEETING = datetime(2026, 12, 10, 15, 0, tzinfo=dates.BERLIN)
MEET = """
name = "Meet"
[[steps]]
id = "confirm"
kind = "email"
before = "24 hours"
anchor = "appointment_at"
subject = "See you tomorrow"
body = "Hi {{ contact.first_name }}, see you {{ contact.appointment_at | time }}."
"""


def _next_due(world: World, address: str) -> datetime | None:
    with world.app.engine.connect() as conn:
        contact = contacts.contact_by_email(conn, address)
        assert contact is not None
        (enrollment,) = enrollments.active_enrollments(conn, contact.id)
        return enrollment.next_due_at


def _field(world: World, address: str, name: str) -> str | None:
    with world.app.engine.connect() as conn:
        contact = contacts.contact_by_email(conn, address)
        assert contact is not None
        return contact.fields.get(name)


def test_a_meeting_accepted_or_sent_sets_the_appointment_and_a_cancel_clears_it(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    """Real Outlook and Google Calendar emails (tests/corpus/messages) through Dovecot."""
    world = make_world(imap=imap_user, dovecot=dovecot, campaigns={"meet": MEET})
    world.clock.set(CORPUS_MONDAY)
    ann = "ann@northwind.example"  # accepts in Outlook, then declines
    bob = "bob@contoso.example"  # invites from Google Calendar, then cancels
    for address, zone in ((ann, "America/New_York"), (bob, "Europe/Berlin")):
        world.add(address, campaign="meet", first_name=address[:3].title(), timezone=zone)
    assert _next_due(world, ann) is None  # no appointment yet: the confirm step waits
    world.add("carl@example.org", first_name="Carl", company="Acme")
    assert world.run().sent == 1  # the inbox is read from the day before the first email
    user = imap_user.address
    dovecot.deliver(user, (CORPUS / "meeting-outlook-accepted.eml").read_bytes())
    dovecot.deliver(user, (CORPUS / "meeting-google-invitation.eml").read_bytes())
    assert world.run().inbox == 2
    assert _field(world, ann, "appointment_at") == f"{OUTLOOK_MEETING:%Y-%m-%d %H:%M}"  # Eastern
    assert _field(world, bob, "appointment_at") == f"{GOOGLE_MEETING:%Y-%m-%d %H:%M}"  # Berlin
    # The anchored step moved with it: 24 hours before each meeting.
    assert _next_due(world, ann) == OUTLOOK_MEETING - timedelta(hours=24)
    assert _next_due(world, bob) == GOOGLE_MEETING - timedelta(hours=24)
    assert "meeting" in world.history(ann)

    dovecot.deliver(user, (CORPUS / "meeting-outlook-declined.eml").read_bytes())
    dovecot.deliver(user, (CORPUS / "meeting-google-cancelled.eml").read_bytes())
    world.clock.advance(timedelta(hours=1))
    assert world.run().inbox == 2
    assert _field(world, ann, "appointment_at") is None
    assert _field(world, bob, "appointment_at") is None
    assert _next_due(world, ann) is None and _next_due(world, bob) is None
    with world.app.engine.connect() as conn:
        contact = contacts.contact_by_email(conn, ann)
        assert contact is not None and contact.status == "active"  # nothing stopped


def dsn_for(recipient: str, msgid: str, *, status: str, said: str, action: str = "failed") -> bytes:
    """A Postfix-like DSN about one recipient of one of our messages, with its own code."""
    digest_of = hashlib.sha256(f"{recipient} {status} {said} {action}".encode()).hexdigest()
    report_id = f"<dsn.{digest_of[:16]}@mx.example.org>"
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: mike@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {_sent_at(2)}\r\nMessage-ID: {report_id}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.org.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {said}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Mike Gulitz <mike@example.com>\r\nTo: {recipient}\r\nMessage-ID: {msgid}\r\n"
        "Subject: Hello\r\n\r\n--B--\r\n"
    ).encode()


def _one_sent(world: World, address: str) -> str:
    """Add one contact, send its first email; that email's Message-ID."""
    world.add(address, first_name=address.split("@")[0].title(), company="Acme")
    assert world.run().sent == 1
    (first,) = sent_ids(world, address)
    return first


def test_a_policy_block_bounces_nobody_and_the_digest_names_it(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    first = _one_sent(world, "erin@example.org")
    said = "550 5.7.1 Message rejected: not accepted for policy reasons (sender IP listed)"
    dovecot.deliver(
        imap_user.address, dsn_for("erin@example.org", first, status="5.7.1", said=said)
    )
    world.clock.advance(timedelta(hours=1))
    assert world.run().inbox == 1
    assert statuses(world)["erin@example.org"][0] == "active"
    assert "bounced" not in world.history("erin@example.org")
    assert "delivery_blocked" in world.history("erin@example.org")
    with world.app.engine.connect() as conn:
        gathered = digest.gather(world.app, conn, world.app.config.rep("mike"), world.clock.now())
    (item,) = [n for n in gathered.content.news if n.email == "erin@example.org"]
    assert item.kind == "blocked" and "5.7.1" in item.summary


def test_a_mailbox_full_for_a_week_becomes_a_bounce(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    first = _one_sent(world, "finn@example.org")
    finn, said = "finn@example.org", "452 4.2.2 Mailbox full"
    for day in range(3):  # day 0, day 4, day 8: the third report, eight days after the first
        report = dsn_for(finn, first, status="4.2.2", said=f"{said} {day}", action="delayed")
        dovecot.deliver(imap_user.address, report)
        world.run()
        expected = "bounced" if day == 2 else "active"
        assert statuses(world)[finn][0] == expected, day
        world.clock.advance(timedelta(days=4))
    assert world.history(finn).count("delivery_delayed") == 3
