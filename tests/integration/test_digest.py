"""The rep's digest and commands by email, against the real aiosmtpd and Dovecot.

The digest goes out at the rep's slot (a fake clock moves the day along),
once per slot across runs and restarts; the rep's reply is delivered to
the real INBOX over LMTP, read by the watcher, carried out line by line
and confirmed by email. Forged and misaddressed commands change nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import threading
import tomllib
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import dates
import icalendar
import pytest
import servers.imap
import servers.loopback
import servers.smtp
import sqlalchemy as sa
from worlds import DAY, World

from dripd import clock
from dripd.daemon import daemon, planner
from dripd.pipeline import app as app_mod
from dripd.pipeline import digest, lifecycle, reports
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import enrollments, schema, tasks

MEETING = """
name = "Meeting"
stage = "prospect"
[[steps]]
id = "confirm-call"
kind = "call"
wait = "0m"
note = "Confirm the demo with {{ contact.first_name }} at {{ contact.company }}."
[[steps]]
id = "thank-card"
kind = "card"
wait = "0m"
note = "Thank {{ contact.first_name }} for the meeting."
[[steps]]
id = "recap"
kind = "email"
wait = "3 days"
subject = "Good to meet you"
body = "Hi {{ contact.first_name }}, good to meet you."
"""

MONDAY_6AM = dates.local(DAY, 6)  # 06:00 in New York, on the world's quiet Monday
SLOT = dates.local(DAY, 7, 30)  # mike's digest: mon-fri 07:30 New York
APPOINTMENT = DAY + timedelta(days=10)  # Thursday next week


def digest_world(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> World:
    world: World = make_world(imap=imap_user, dovecot=dovecot, campaigns={"meeting": MEETING})
    world.clock.set(MONDAY_6AM)
    world.add(
        "bob@example.org",
        "meeting",
        first_name="Bob",
        last_name="Smith",
        company="Acme",
        phone="+1 (555) 0100",
    )
    world.add("ann@example.org", "meeting", first_name="Ann", last_name="Lee", company="Lee & Co")
    summary = world.run()
    assert summary.tasks == 4 and summary.digests == 0  # Friday's slot is long gone
    return world


def the_digest(world: World) -> servers.smtp.ReceivedMessage:
    """Run at mike's slot; the digest that arrives."""
    world.clock.set(SLOT)
    world.run()
    (digest,) = to_mike(world)
    return digest


def to_mike(world: World) -> list[servers.smtp.ReceivedMessage]:
    return [m for m in world.smtp.messages() if m.rcpt_tos == ("mike@example.com",)]


def digest_rows(world: World) -> list[dict[str, object]]:
    with world.app.engine.connect() as conn:
        query = sa.select(schema.digests).order_by(schema.digests.c.id)
        return [dict(r._mapping) for r in conn.execute(query)]


def task_numbers(world: World) -> dict[tuple[str, str], int]:
    """(contact email, kind) → the number the digest gave the task."""
    (row,) = [r for r in digest_rows(world) if r["message_id"]]
    numbers = {}
    with world.app.engine.connect() as conn:
        for number, task_id in enumerate(json.loads(str(row["tasks"])), start=1):
            task = tasks.task_by_id(conn, task_id)
            assert task is not None
            email = store_contacts.contact_by_id(conn, task.contact_id).email
            numbers[(email, task.kind)] = number
    return numbers


def tasks_of(world: World, email: str) -> list[dict[str, object]]:
    contact = world.contact(email)
    with world.app.engine.connect() as conn:
        query = sa.select(schema.tasks).where(schema.tasks.c.contact_id == contact.id)
        return [dict(r._mapping) for r in conn.execute(query.order_by(schema.tasks.c.id))]


def parts(message: EmailMessage, content_type: str) -> list[EmailMessage]:
    return [p for p in message.walk() if p.get_content_type() == content_type]  # type: ignore[misc]


def command_reply(
    digest: servers.smtp.ReceivedMessage,
    text: str,
    *,
    msgid: str = "<cmd.1@mail.gmail.com>",
    sender: str = "Mike Gulitz <mike@example.com>",
    in_reply_to: str | None = None,
    extra: str = "",
) -> bytes:
    """A reply to the digest as Gmail writes it: commands on top, the digest quoted below."""
    parent = in_reply_to or str(digest.message_id)
    quoted = "\r\n".join(
        "> " + line for line in digest.message.get_body(("plain",)).get_content().splitlines()
    )
    return (
        f"From: {sender}\r\nTo: Mike Gulitz <mike@example.com>\r\n"
        f"Subject: Re: {digest.message['Subject']}\r\n"
        f"Date: {email.utils.format_datetime(SLOT + timedelta(minutes=32))}\r\n"
        f"Message-ID: {msgid}\r\nIn-Reply-To: {parent}\r\nReferences: {parent}\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{text}\r\n\r\n"
        f"On {dates.fmt_us(DAY)} at 7:30 AM Mike Gulitz <mike@example.com> wrote:\r\n"
        f"{quoted}\r\n"
    ).encode()


def test_the_digest_arrives_at_its_slot_once_with_calls_on_the_calendar(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = digest_world(make_world, dovecot, imap_user)
    world.clock.set(SLOT - timedelta(minutes=1))
    assert world.run().digests == 0 and to_mike(world) == []

    world.clock.set(SLOT)
    summary = world.run()
    assert (summary.digests, summary.to_rep, summary.sent) == (1, 1, 0)
    (digest,) = to_mike(world)
    message = digest.message
    assert message["From"] == "Mike Gulitz <mike@example.com>"
    assert "2 calls" in message["Subject"] and "2 cards" in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    for expected in ("Bob Smith", "Acme", "+1 (555) 0100", "Confirm the demo with Bob at Acme."):
        assert expected in text
    assert "Thank Ann for the meeting." in text
    html = message.get_body(("html",)).get_content()
    assert 'href="tel:+15550100"' in html and "Lee &amp; Co" in html

    calls = parts(message, "text/calendar")
    assert len(calls) == 2  # the cards are not calendar events
    events = [
        next(iter(icalendar.Calendar.from_ical(p.get_payload(decode=True)).walk("VEVENT")))
        for p in calls
    ]
    by_summary = {str(e["SUMMARY"]): e for e in events}
    assert set(by_summary) == {"Call Bob Smith (Acme)", "Call Ann Lee (Lee & Co)"}
    assert by_summary["Call Bob Smith (Acme)"].decoded("DTSTART") == MONDAY_6AM

    with world.app.reader.connect() as conn:
        (mike,) = reports.status(world.app, conn).mailboxes
    assert mike.last_digest_at == SLOT

    # Once per slot: a later run, and a restarted dripd, send nothing more.
    world.clock.set(SLOT + timedelta(minutes=15))
    assert world.run().digests == 0
    restarted = app_mod.open_app(str(world.app.config.path), the_clock=world.clock)
    try:
        assert servers.loopback.run_client(daemon.run_once(restarted)).digests == 0
    finally:
        restarted.engine.dispose()
    assert len(to_mike(world)) == 1

    # The next business day's slot: the tasks are still open, so they come again.
    world.clock.set(SLOT + timedelta(days=1))
    assert world.run().digests == 1
    assert len(to_mike(world)) == 2


def test_commands_in_a_reply_are_carried_out_and_confirmed_line_by_line(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = digest_world(make_world, dovecot, imap_user)
    digest = the_digest(world)
    dovecot.deliver(imap_user.address, digest.raw)  # the rep's inbox gets it, as in life
    number = task_numbers(world)
    text = "\r\n".join(
        [
            f"Done {number[('bob@example.org', 'call')]}",
            f"snooze {number[('ann@example.org', 'call')]} 2d",
            "skip 99",
            "stage bob@example.org lead",
            f'set bob@example.org appointment_at="{dates.stamp(APPOINTMENT)}"',
            "referral carl@example.org from bob@example.org Carl Jones",
            "stop nobody@example.org",
            "frobnicate 3",
        ]
    )
    dovecot.deliver(imap_user.address, command_reply(digest, text))

    world.clock.set(SLOT + timedelta(minutes=30))  # 08:00 in New York
    summary = world.run()
    assert summary.inbox == 2  # the digest itself (other) and the commands

    bob_call, bob_card, thanks = tasks_of(world, "bob@example.org")
    assert bob_call["status"] == "done" and bob_card["status"] == "open"
    bob = world.contact("bob@example.org")
    assert bob.touches == 1 and bob.stage == "lead"
    assert bob.fields["appointment_at"].startswith(APPOINTMENT.isoformat())
    ann_call, _ = tasks_of(world, "ann@example.org")
    assert ann_call["status"] == "open"
    assert ann_call["due_at"] == dates.local(DAY + timedelta(days=2), 8)  # Wed 08:00 New York
    carl = world.contact("carl@example.org")
    assert (carl.first_name, carl.last_name, carl.referred_by, carl.stage, carl.owner) == (
        "Carl",
        "Jones",
        "bob@example.org",
        "suspect",
        "mike",
    )
    assert (thanks["kind"], thanks["status"]) == ("card", "open")
    assert "Carl Jones" in str(thanks["note"])

    digest_and_confirmation = to_mike(world)
    assert len(digest_and_confirmation) == 2
    confirmation = digest_and_confirmation[1].message
    assert confirmation["In-Reply-To"] == "<cmd.1@mail.gmail.com>"
    assert confirmation["Subject"].startswith("Re: ")
    answer = confirmation.get_body(("plain",)).get_content()
    assert "carried out 5 of 8 lines" in answer
    assert answer.count("NOT DONE") == 3
    for line in ("skip 99", "stop nobody@example.org", "frobnicate 3"):
        after = answer.split(line, 1)[1].splitlines()[1]
        assert "NOT DONE" in after, line

    # The confirmation lands in the rep's inbox too: it is not read as commands.
    dovecot.deliver(imap_user.address, digest_and_confirmation[1].raw)
    world.clock.advance(timedelta(minutes=5))
    assert world.run().inbox == 1
    assert len(to_mike(world)) == 2


def test_commands_not_from_the_rep_in_reply_to_a_digest_change_nothing(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = digest_world(make_world, dovecot, imap_user)
    digest = the_digest(world)
    number = task_numbers(world)[("bob@example.org", "call")]
    text = f"done {number}\r\nstop bob@example.org\r\nstage bob@example.org customer"
    with world.app.engine.connect() as conn:
        install = conn.execute(
            sa.select(schema.settings.c.value).where(schema.settings.c.key == "install_id")
        ).scalar_one()
    guessed = f"<dripd.{install}.digest.mike.{'0' * 32}@example.com>"
    forged = [
        command_reply(digest, text, msgid="<f1@x>", sender="Eve <eve@evil.example>"),
        command_reply(digest, text, msgid="<f2@x>", in_reply_to="<some-other-thread@x>"),
        command_reply(digest, text, msgid="<f3@x>", in_reply_to=guessed),
        command_reply(
            digest,
            text,
            msgid="<f4@x>",
            extra="Authentication-Results: mx.example.com; dmarc=fail header.from=example.com\r\n",
        ),
    ]
    for raw in forged:
        dovecot.deliver(imap_user.address, raw)

    world.clock.set(SLOT + timedelta(minutes=30))
    assert world.run().inbox == 4
    assert all(t["status"] == "open" for t in tasks_of(world, "bob@example.org"))
    bob = world.contact("bob@example.org")
    assert (bob.status, bob.stage, bob.touches) == ("active", "prospect", 0)
    with world.app.engine.connect() as conn:
        assert len(enrollments.active_enrollments(conn, bob.id)) == 1
        classes = conn.execute(sa.select(schema.inbox_messages.c["class"])).scalars().all()
    assert classes == ["other"] * 4
    assert len(to_mike(world)) == 1  # the digest; no confirmation


CORPUS = Path(__file__).parents[1] / "corpus" / "commands"
CORPUS_DIGEST_ID = "<dripd.test.digest.mike.Zq3x9@example.com>"


@pytest.mark.parametrize("name", ["gmail-web.eml", "outlook-desktop-html.eml", "apple-mail.eml"])
def test_replies_as_real_clients_quote_them_are_read_as_commands(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, name: str
) -> None:
    """Gmail, Outlook (HTML only, no `>` quoting) and Apple Mail replies, through the real inbox."""
    expected = tomllib.loads((CORPUS / "expected.toml").read_text())["files"][name]
    world = digest_world(make_world, dovecot, imap_user)
    digest = the_digest(world)
    raw = (
        (CORPUS / name).read_bytes().replace(CORPUS_DIGEST_ID.encode(), digest.message_id.encode())
    )
    assert digest.message_id.encode() in raw
    dovecot.deliver(imap_user.address, raw)

    world.clock.set(SLOT + timedelta(minutes=30))
    world.run()
    _, confirmation = to_mike(world)
    answer = confirmation.message.get_body(("plain",)).get_content()
    lines = len(expected["commands"]) + expected["errors"]
    assert f" of {lines} line" in answer.splitlines()[0], answer
    # Every line the rep wrote is answered; nothing from the quoted digest is.
    assert answer.count("\n    done: ") + answer.count("\n    NOT DONE: ") == lines, answer
    assert "Today and overdue" not in answer and "mark tasks done" not in answer


SAM_MAILBOX = """
[reps.smtp]
host = "127.0.0.1"
port = 2525
security = "none"
"""


def test_a_slot_waits_for_the_steps_due_by_it(make_world) -> None:
    """dripd starting after the slot: the morning's calls become tasks before the digest.

    Otherwise the slot would be used up by a digest that leaves them out.
    """
    world: World = make_world(campaigns={"meeting": MEETING})
    world.clock.set(MONDAY_6AM)
    world.add("bob@example.org", "meeting", first_name="Bob", company="Acme")
    world.clock.set(SLOT + timedelta(minutes=20))  # dripd was down through the slot
    summary = world.run()  # one pass: the steps, then the digest
    assert (summary.tasks, summary.digests) == (2, 1)
    (mail,) = to_mike(world)
    text = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Confirm the demo with Bob at Acme." in text and "Thank Bob" in text


def test_a_slot_waits_for_the_engine_only_so_long(make_world) -> None:
    """Steps due by the slot not done yet (another instance has them in hand): wait, a while."""
    world: World = make_world(campaigns={"meeting": MEETING})
    world.clock.set(MONDAY_6AM)
    world.add("bob@example.org", "meeting", first_name="Bob", company="Acme")
    world.clock.set(SLOT + digest.CATCH_UP - timedelta(seconds=1))
    assert digest.queue_due(world.app, world.clock.now()) == 0 and digest_rows(world) == []
    world.clock.set(SLOT + digest.CATCH_UP)  # still behind (say, a huge backlog): go anyway
    digest.queue_due(world.app, world.clock.now())
    assert [row["slot_at"] for row in digest_rows(world)] == [SLOT]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # several instances
def test_a_slot_waits_while_another_instance_advances_the_steps(
    make_config, database_url: str, tmp_path: Path
) -> None:
    """Another instance holds the rep's due enrollment (its engine at work): the digest waits.

    The steps fell due after the slot (dripd started a little after 07:30).
    """
    now = SLOT + timedelta(minutes=2)
    folder = tmp_path / "meeting-campaigns"
    folder.mkdir()
    (folder / "meeting.toml").write_text(MEETING, encoding="utf-8")
    path = make_config(database=database_url, campaigns=folder, extra=SAM_MAILBOX)
    holder, other = (app_mod.open_app(str(path), the_clock=clock.FakeClock(now)) for _ in "ab")
    try:
        with holder.engine.begin() as conn:
            values = contacts.validate(
                {"email": "zoe@example.org", "owner": "sam"}, holder.contact_rules()
            )
            cid = lifecycle.create_contact(holder, conn, "zoe@example.org", values, now, cause="t")
            zoe = store_contacts.contact_by_id(conn, cid)
            lifecycle.enroll(holder, conn, zoe, "meeting", now, cause="t")
        with other.engine.begin() as conn:  # the other instance's engine, mid-transaction
            assert len(enrollments.due_enrollments(conn, now, 10, lock=True)) == 1
            assert digest.queue_due(holder, now) == 0
            with holder.reader.connect() as peek:
                assert peek.execute(sa.select(schema.digests)).all() == []  # slot not used up
        daemon_pass = asyncio.run(planner.advance(holder, now))  # (or the other one's, committed)
        assert daemon_pass.tasks == 2
        assert digest.queue_due(holder, now) == 1
        with holder.reader.connect() as conn:
            (row,) = conn.execute(sa.select(schema.digests)).all()
        assert len(json.loads(row.tasks)) == 2  # the call and the card, in the digest
    finally:
        holder.engine.dispose()
        other.engine.dispose()


def test_two_instances_at_the_same_slot_queue_one_digest(make_config, database_url: str) -> None:
    """Two dripd processes reaching sam's slot at the same moment: one digest (SQLite and PG)."""
    path = make_config(database=database_url, extra=SAM_MAILBOX)  # sam is the last [[reps]]
    slot = SLOT  # 07:30 in New York; sam's default digest is "mon-fri 07:30"
    apps = [app_mod.open_app(str(path), the_clock=clock.FakeClock(slot)) for _ in range(3)]
    try:
        first = apps[0]
        values = contacts.validate(
            {"email": "zoe@example.org", "owner": "sam"}, first.contact_rules()
        )
        with first.engine.begin() as conn:
            cid = lifecycle.create_contact(first, conn, "zoe@example.org", values, slot, cause="t")
            lifecycle.create_task(
                conn, contact_id=cid, kind="call", rep="sam", due_at=slot, note="Call Zoe", now=slot
            )
        barrier = threading.Barrier(len(apps))

        def race(app: app_mod.App) -> int:
            barrier.wait()
            return digest.queue_due(app, slot)

        with concurrent.futures.ThreadPoolExecutor(len(apps)) as pool:
            queued = list(pool.map(race, apps))
        assert sorted(queued) == [0, 0, 1]
        with first.engine.connect() as conn:
            rows = conn.execute(sa.select(schema.digests)).all()
            mails = (
                conn.execute(
                    sa.select(schema.outbox.c.message_id).where(schema.outbox.c.step == "digest")
                )
                .scalars()
                .all()
            )
        assert [(r.rep, r.slot_at) for r in rows] == [("sam", slot)]
        assert mails == [rows[0].message_id]
    finally:
        for app in apps:
            app.engine.dispose()


def test_a_lost_sign_in_is_in_the_reps_digest_until_renewed(make_config, sqlite_url) -> None:  # type: ignore[no-untyped-def]
    """Issue 17, item 4: the rep hears of it in the digest, with the command to run."""
    from dripd import clock
    from dripd.pipeline import app as app_mod
    from dripd.store import oauth_tokens

    config = make_config(
        database=sqlite_url,
        extra='\n[reps.oauth2]\nprovider = "custom"\nclient_id = "app"\n'
        'token_url = "http://127.0.0.1:9/token"\n'
        'device_authorization_url = "http://127.0.0.1:9/device"\n',
    )
    now = dates.local(dates.today() + timedelta(days=5 * 365), 7)  # any instant, years ahead
    app = app_mod.open_app(str(config), the_clock=clock.FakeClock(now))
    sam = app.config.rep("sam")
    try:
        with app.engine.begin() as conn:
            token = {"refresh_token": "r-1", "access_token": "a-1", "expires_in": 60}
            oauth_tokens.save_sign_in(conn, "sam", sam.email, token, now)
            assert not [i for i in digest.gather(app, conn, sam, now).content.news]
            assert oauth_tokens.mark_lost(conn, "sam", "r-1", "invalid_grant: revoked", now)
            (item,) = digest.gather(app, conn, sam, now).content.news
            assert item.kind == "signin" and "`dripd auth sam`" in item.summary
            assert "invalid_grant: revoked" in item.summary
            assert digest.gather(app, conn, sam, now).says_something
            oauth_tokens.save_sign_in(conn, "sam", sam.email, {"refresh_token": "r-2"}, now)
            assert not digest.gather(app, conn, sam, now).content.news
    finally:
        app.engine.dispose()
