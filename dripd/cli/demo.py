"""`dripd demo`: a simulated week of one rep's follow-up, on this machine, with nothing set up.

Mail servers run inside this process on 127.0.0.1: aiosmtpd takes what dripd
sends, pymap (a pure-Python IMAP server, with IDLE) holds the rep's INBOX
and Sent folders. dripd itself runs its real code paths against them: the
daemon's pass (`daemon.run_once`: inbox watcher, engine, digest, SMTP
senders, Sent copies) once a simulated hour, on a fake clock that jumps an
hour at a time, so a week takes seconds.

A small scripted world answers like people do: one contact replies, one is
out of office, one address bounces, one unsubscribes, one stays quiet and
gets the whole sequence; the rep reads the morning digest and answers
`done` with the card numbers. Every email is saved as an `.eml` file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from email import message_from_bytes, policy, utils
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dripd import clock, errors
from dripd.daemon import daemon
from dripd.files import campaigns
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle, reports
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import events as store_events

TZ = ZoneInfo("America/New_York")
# The simulated week is fixed, not "the coming Monday": every date the story shows (the
# appointment, the out-of-office's return, the Date of every email, the digest's day) is
# worked out from START on the demo's own clock, so the story and its numbers are the same
# whenever and wherever it runs. A moving week would cross holidays and clock changes.
START = datetime(2026, 11, 30, 6, 30, tzinfo=TZ)  # a Monday morning; steps land on :30
DAYS = 7
STEP = timedelta(hours=1)
REP = "mike@example.com"
IMAP_PASSWORD = "demo-imap-password"  # the in-process server's only account
CAMPAIGN = "qualification"
# Thursday 10:00: the qualification sequence times its calls by it
APPOINTMENT = datetime.combine(START.date() + timedelta(days=3), time(10, 0), tzinfo=TZ)
BACK = START.date() + timedelta(days=2)  # Wednesday: when the out-of-office says Bob is back


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    email: str
    first_name: str
    last_name: str
    company: str
    phone: str
    role: str  # what the scripted world does when this person gets an email


PEOPLE = (
    Person(
        email="ann.lee@acme.example",
        first_name="Ann",
        last_name="Lee",
        company="Acme",
        phone="+1 555 0101",
        role="replies",
    ),
    Person(
        email="bob.stone@stone.example",
        first_name="Bob",
        last_name="Stone",
        company="Stone & Sons",
        phone="+1 555 0102",
        role="away",
    ),
    Person(
        email="carl.diaz@gone.example",
        first_name="Carl",
        last_name="Diaz",
        company="Diaz Ltd",
        phone="+1 555 0103",
        role="bounces",
    ),
    Person(
        email="dora.eve@evco.example",
        first_name="Dora",
        last_name="Eve",
        company="Evco",
        phone="+1 555 0104",
        role="unsubscribes",
    ),
    Person(
        email="erin.fox@fox.example",
        first_name="Erin",
        last_name="Fox",
        company="Fox Realty",
        phone="+1 555 0105",
        role="quiet",
    ),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    folder: Path
    summary: reports.Status  # the pipeline after the week
    emails_sent: int  # every email the SMTP server received, to contacts and to the rep
    inbox_messages: int  # what the people of the demo wrote to the rep


class DemoError(errors.DripdError):
    """The demo cannot start (a missing optional package, a busy folder)."""


# -- the mail servers -------------------------------------------------------------------


class Sink:
    """aiosmtpd in a thread of this process: keeps every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[tuple[tuple[str, ...], bytes]] = []
        self._lock = threading.Lock()
        self.port = _free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append((tuple(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"

    def start(self) -> int:
        self._controller.start()
        return self.port

    def stop(self) -> None:
        self._controller.stop()

    def take(self) -> list[tuple[tuple[str, ...], bytes]]:
        with self._lock:
            taken, self.received = self.received, []
        return taken


@contextlib.asynccontextmanager
async def imap_server(port: int) -> Any:
    """pymap's in-memory backend on a loopback port, one account (the rep's)."""
    import argparse

    from pymap.backend.dict import DictBackend
    from pymap.imap import IMAPService
    from pysasl.hashing import BuiltinHash

    args = argparse.Namespace(
        debug=False,
        demo_data=False,
        demo_user=REP,
        demo_password=IMAP_PASSWORD,
        passlib_cfg=None,
        host="127.0.0.1",
        port=port,
        cert=None,
        key=None,
        tls=False,
        proxy_protocol=None,
        inherited_sockets=None,
        skip_services=[],
        token_file=None,
    )
    # The account's password is a throwaway: hash it cheaply (the default costs 0.1 s a login).
    backend, config = await DictBackend.init(args, hash_context=BuiltinHash(rounds=1000))
    config.apply_context()
    async with contextlib.AsyncExitStack() as stack:
        await backend.start(stack)
        service = IMAPService(backend, config)
        await service.start(stack)
        yield service


# -- the world ---------------------------------------------------------------------------


@dataclass(slots=True)
class World:
    """What the people in the demo do, and when."""

    app: app_mod.App
    clock: clock.FakeClock
    sink: Sink
    imap_port: int
    out: Path
    say: Callable[[str], None]
    pending: list[tuple[datetime, str, bytes]] = field(default_factory=list)
    saved: int = 0
    answered_digest: bool = False
    answered: set[str] = field(default_factory=set)
    last_event: int = 0

    def when(self, at: datetime | None = None) -> str:
        local = (at or self.clock.now()).astimezone(TZ)
        return f"{local:%a %d %b %H:%M}"

    def save(self, folder: str, label: str, raw: bytes) -> Path:
        self.saved += 1
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:40]
        path = self.out / folder / f"{self.saved:03d}-{slug}.eml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        return path

    def react(self) -> None:
        """Read what the SMTP server got since the last hour, and answer it as people would."""
        # in the order of the recipients, not of the SMTP connections: the same story each run
        for recipients, raw in sorted(self.sink.take(), key=lambda item: item[0]):
            message = message_from_bytes(raw, policy=policy.default)
            assert isinstance(message, EmailMessage)
            to = recipients[0]
            subject = str(message["Subject"] or "")
            self.save("sent", f"to-{to}-{subject}", raw)
            if to == REP:
                self._to_rep(message, subject)
                continue
            self.say(f"{self.when()}  sent    → {to}: {subject}")
            person = next((p for p in PEOPLE if p.email == to), None)
            if person is not None:
                self._answer(person, message)

    def _to_rep(self, message: EmailMessage, subject: str) -> None:
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        if "confirm" in str(message["Message-ID"]):
            self.say(f"{self.when()}  dripd   → mike: {subject}")
            for line in text.strip().splitlines():
                self.say(f"                   | {line}")
            return
        calls = sum(1 for part in message.walk() if part.get_content_type() == "text/calendar")
        events = f" (+{calls} calendar event{'s' if calls != 1 else ''})" if calls else ""
        self.say(f"{self.when()}  digest  → mike: {subject}{events}")
        numbers = re.findall(r"^\s+(\d+)\. Card:", text, flags=re.MULTILINE)
        if numbers and not self.answered_digest:
            self.answered_digest = True
            command = "done " + " ".join(numbers[:2])
            self.later(
                timedelta(hours=1),
                f'mike answers the digest: "{command}" (the cards are written)',
                lambda at: _reply(
                    REP, message, f"{command}\r\n\r\n-- \r\nMike", at, sender_name="Mike Gulitz"
                ),
            )

    def _answer(self, person: Person, message: EmailMessage) -> None:
        if person.email in self.answered or person.role == "quiet":
            return  # people (and their autoresponders) answer the first email only
        self.answered.add(person.email)
        if person.role == "replies" and "Thank you" in str(message["Subject"]):
            text = "Thanks Mike, Thursday works. Could you bring the rate sheet?"
            self.later(
                timedelta(hours=5),
                f"{person.email} replies: {text}",
                lambda at: _reply(person.email, message, text, at, sender_name=person.first_name),
            )
        elif person.role == "away":
            self.later(
                timedelta(minutes=1),
                f"{person.email} is away: an out-of-office until {BACK:%A}",
                lambda at: _out_of_office(person, message, at),
            )
        elif person.role == "bounces":
            self.later(
                timedelta(minutes=1),
                f"the mail server of {person.email} bounces it (user unknown)",
                lambda at: _bounce(person, message, at),
            )
        elif person.role == "unsubscribes":
            self.later(
                timedelta(hours=2),
                f"{person.email} clicks unsubscribe",
                lambda at: _unsubscribe(person, at),
            )

    def later(self, delay: timedelta, note: str, write: Callable[[datetime], bytes]) -> None:
        """Deliver what `write` makes, dated when it is written: `delay` from now."""
        at = self.clock.now() + delay
        self.pending.append((at, note, write(at)))

    async def deliver_due(self) -> None:
        """Put into the rep's INBOX what people have written by now."""
        due = [item for item in self.pending if item[0] <= self.clock.now()]
        if not due:
            return
        self.pending = [item for item in self.pending if item[0] > self.clock.now()]
        import aioimaplib

        client = aioimaplib.IMAP4(host="127.0.0.1", port=self.imap_port, timeout=10)
        await client.wait_hello_from_server()
        await client.login(REP, IMAP_PASSWORD)
        for at, note, raw in due:
            self.say(f"{self.when(at)}  inbox   ← {note}")
            self.save("inbox", note, raw)
            await client.append(raw, mailbox="INBOX")
        await client.logout()

    def report_history(self) -> None:
        """What dripd recorded since the last hour: what it made of the replies, tasks, stops."""
        with self.app.reader.connect() as conn:
            rows = store_events.events_after(conn, self.last_event)
        for row in rows:
            self.last_event = row.id
            line = _history_line(row.kind, row.detail, row.step)
            if line:
                self.say(f"{self.when(row.at)}  dripd   {row.email}: {line}")


_SHOWN = {
    "task_created": "a {step} task for mike",
    "replied": "replied: sequence stopped",
    "promoted": "{detail}",
    "out_of_office": "{detail} — not a reply, nothing stops",
    "bounced": "bounced: every sequence stopped",
    "unsubscribed": "unsubscribed: every sequence stopped",
    "task_done": "{detail} (a touch)",
    "skipped": "skipped: {detail}",
    "enrolled": "enrolled in {detail}",
}


def _history_line(kind: str, detail: str, step: str | None) -> str | None:
    shown = _SHOWN.get(kind)
    return shown.format(detail=detail, step=step or "") if shown else None


def _headers(sender: str, to: str, subject: str, message: EmailMessage | None, at: datetime) -> str:
    """The headers of a message someone in the demo writes at `at` (the demo's clock)."""
    parent = str(message["Message-ID"]) if message is not None else None
    thread = f"In-Reply-To: {parent}\r\nReferences: {parent}\r\n" if parent else ""
    stamp = utils.format_datetime(at.astimezone(TZ))
    token = os.urandom(6).hex()
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {stamp}\r\n"
        f"Message-ID: <demo.{token}@example.org>\r\n{thread}"
    )


def _written(message: EmailMessage) -> datetime:
    """When dripd dated `message` (its Date header), in the demo's zone."""
    return utils.parsedate_to_datetime(str(message["Date"])).astimezone(TZ)


def _reply(
    address: str, message: EmailMessage, text: str, at: datetime, *, sender_name: str
) -> bytes:
    subject = f"Re: {message['Subject']}"
    body = message.get_body(("plain",))
    quoted = "\r\n".join("> " + line for line in (body.get_content() if body else "").splitlines())
    return (
        _headers(f"{sender_name} <{address}>", REP, subject, message, at)
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"{text}\r\n\r\nOn {_written(message):%A}, Mike Gulitz <{REP}> wrote:\r\n{quoted}\r\n"
    ).encode()


def _out_of_office(person: Person, message: EmailMessage, at: datetime) -> bytes:
    back = f"{BACK:%A} {BACK.day} {BACK:%B %Y}"  # "Wednesday 2 December 2026"
    return (
        _headers(person.email, REP, f"Automatic reply: {message['Subject']}", message, at)
        + "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        + "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + f"I am out of the office and will be back on {back}.\r\n"
    ).encode()


def _bounce(person: Person, message: EmailMessage, at: datetime) -> bytes:
    subject = "Undelivered Mail Returned to Sender"
    return (
        _headers("MAILER-DAEMON@mx.gone.example", REP, subject, None, at)
        + "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        + 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        + "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        + "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        + "Reporting-MTA: dns; mx.gone.example\r\n\r\n"
        + f"Final-Recipient: rfc822; {person.email}\r\n"
        + f"Original-Recipient: rfc822;{person.email}\r\n"
        + "Action: failed\r\nStatus: 5.1.1\r\n"
        + "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        + "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        + f"From: {REP}\r\nTo: {person.email}\r\nMessage-ID: {message['Message-ID']}\r\n\r\n"
        + "--B--\r\n"
    ).encode()


def _unsubscribe(person: Person, at: datetime) -> bytes:
    return (
        _headers(person.email, REP, "unsubscribe", None, at)
        + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\r\n"
    ).encode()


# -- running it ----------------------------------------------------------------------------


def write_config(folder: Path, campaigns: Path, smtp_port: int, imap_port: int) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f"""# The demo's config: servers inside the demo's own process, on 127.0.0.1.
[dripd]
database = "sqlite:///{folder / "dripd.db"}"
campaigns = "{campaigns}"
attachments = "{folder / "attachments"}"
timezone = "America/New_York"

[roles]
associate = "sam"

[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "{REP}"
digest = "mon-fri 07:30"
signature = "Mike Gulitz\\nMPC Mortgage Planner"

[reps.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"

[reps.imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{REP}"
password_env = "DRIPD_DEMO_IMAP_PASSWORD"
sent_folder = "Sent"

[[reps]]
id = "sam"
name = "Sam Rivera"
email = "sam@example.com"
signature = "Sam Rivera\\nSales associate"

[reps.smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
""",
        encoding="utf-8",
    )
    (folder / "attachments").mkdir(exist_ok=True)
    return path


def shipped_campaigns() -> Path:
    folder = campaigns.shipped_folder()
    if folder is None:
        raise DemoError(
            f"the shipped campaigns are not at {campaigns.SHIPPED}: "
            "run the demo from the repository"
        )
    return folder


def run(out: Path | None, say: Callable[[str], None]) -> Result:
    """The whole demo, told line by line through `say`."""
    _require_packages()
    folder = out or Path(tempfile.mkdtemp(prefix="dripd-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "dripd.db").exists():
        raise DemoError(f"{folder} already holds a demo; give an empty --out folder")
    with _quiet_logs():
        return asyncio.run(_run(folder, say))


def _require_packages() -> None:
    missing = [name for name in ("aiosmtpd", "pymap") if not _importable(name)]
    if missing:
        raise DemoError(
            f"the demo needs {' and '.join(missing)}: "
            "pip install 'dripd[demo]' (./dev demo does it)"
        )


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


async def _run(folder: Path, say: Callable[[str], None]) -> Result:
    sink = Sink()
    smtp_port = sink.start()
    try:
        imap_port = _free_port()
        async with imap_server(imap_port):
            os.environ["DRIPD_DEMO_IMAP_PASSWORD"] = IMAP_PASSWORD
            await _create_sent_folder(imap_port)
            config = write_config(folder, shipped_campaigns(), smtp_port, imap_port)
            fake = clock.FakeClock(START)
            app = app_mod.open_app(str(config), the_clock=fake)
            try:
                say(
                    f"dripd demo: a week of Mike Gulitz's follow-up, simulated hour by hour.\n"
                    f"Mail servers inside this process: SMTP 127.0.0.1:{smtp_port} (aiosmtpd), "
                    f"IMAP 127.0.0.1:{imap_port} (pymap). Files: {folder}\n"
                )
                world = World(
                    app=app, clock=fake, sink=sink, imap_port=imap_port, out=folder, say=say
                )
                _enroll_people(app, fake.now(), say, world)
                await _week(world)
                with app.reader.connect() as conn:
                    summary = reports.status(app, conn)
            finally:
                app.engine.dispose()
    finally:
        sink.stop()
    return Result(
        folder=folder,
        summary=summary,
        emails_sent=len(list((folder / "sent").glob("*.eml"))),
        inbox_messages=len(list((folder / "inbox").glob("*.eml"))),
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _create_sent_folder(port: int) -> None:
    import aioimaplib

    client = aioimaplib.IMAP4(host="127.0.0.1", port=port, timeout=10)
    await client.wait_hello_from_server()
    await client.login(REP, IMAP_PASSWORD)
    await client.create("Sent")
    await client.logout()


def _enroll_people(
    app: app_mod.App, now: datetime, say: Callable[[str], None], world: World
) -> None:
    rules = app.contact_rules()
    with app.engine.begin() as conn:
        for person in PEOPLE:
            raw = {
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "company": person.company,
                "phone": person.phone,
                "owner": "mike",
                "appointment_at": f"{APPOINTMENT:%Y-%m-%d %H:%M}",
            }
            values = contacts.validate(raw, rules)
            cid = lifecycle.create_contact(app, conn, person.email, values, now, cause="demo")
            contact = store_contacts.contact_by_id(conn, cid)
            lifecycle.enroll(app, conn, contact, CAMPAIGN, now, cause="demo")
        world.last_event = store_events.last_event_id(conn)
    say(
        f"{world.when(now)}  {len(PEOPLE)} contacts enrolled in {CAMPAIGN} "
        f"(their demo is {APPOINTMENT:%a} {APPOINTMENT.day} {APPOINTMENT:%b %H:%M}): "
        + ", ".join(p.first_name for p in PEOPLE)
    )


async def _week(world: World) -> None:
    end = START + timedelta(days=DAYS)
    while world.clock.now() < end:
        await world.deliver_due()
        await daemon.run_once(world.app)
        world.report_history()
        world.react()
        world.clock.advance(STEP)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """The demo tells its own story; dripd's log lines would drown it."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(before)
