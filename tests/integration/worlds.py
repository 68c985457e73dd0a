"""The world of the integration tests that send and read mail: a config, campaigns, an app.

`make_world` (a fixture, registered in conftest.py) writes a config with one
rep, mike, whose mailbox is the test's aiosmtpd (STARTTLS or implicit TLS,
with AUTH) and, when given, a Dovecot account (Sent folder and INBOX), and
opens the app on a fake clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dates
import pytest
import servers.imap
import servers.loopback
import servers.smtp
import userfiles

from dripd import clock
from dripd.daemon import daemon
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import events, outbox, schema

# A Monday starting three weeks without a holiday or a clock change, New York on EST, in
# the year before today: a world reading a Dovecot inbox searches it from the fake clock's
# day, and Dovecot stamps what it receives with the real clock, so the fake clock must not
# be ahead of the real one.
DAY = dates.quiet_monday(weeks=3, years=-1)
assert DAY + timedelta(weeks=3) <= dates.today(), DAY
MONDAY = dates.local(DAY, 10)  # 10:00 in New York
PASSWORD = "s3cret-smtp-pass"

CAMPAIGN = """
name = "Intro"
stage = "prospect"
thread = true
promote_on_reply = "lead"
[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hello {{ contact.first_name }} at {{ contact.company }}"
template = "intro/hello.md"
attach = ["brochure.pdf"]
[[steps]]
id = "follow-up"
kind = "email"
wait = "2 days"
subject = "Following up"
body = "Hi {{ contact.first_name }}, questions about **{{ contact.get('topic', 'it') }}**?"
"""

TEMPLATE = "Hi {{ contact.first_name }},\n\nThanks for meeting me. Here is the *brochure*.\n"


@dataclass
class World:
    app: app_mod.App
    clock: clock.FakeClock
    smtp: servers.smtp.SmtpServer
    imap: servers.imap.ImapAccount | None
    dovecot: servers.imap.Dovecot | None

    def run(self) -> daemon.Summary:
        return servers.loopback.run_client(daemon.run_once(self.app))

    def add(self, address: str, campaign: str = "intro", **fields: str) -> store_contacts.Contact:
        values = contacts.validate({"email": address, **fields}, self.app.contact_rules())
        with self.app.engine.begin() as conn:
            cid = lifecycle.create_contact(
                self.app, conn, address, values, self.clock.now(), cause="test"
            )
            contact = store_contacts.contact_by_id(conn, cid)
            lifecycle.enroll(self.app, conn, contact, campaign, self.clock.now(), cause="test")
            return contact

    def rows(self) -> list[outbox.Row]:
        with self.app.engine.connect() as conn:
            return [outbox._row(r) for r in conn.execute(outbox._ROWS.order_by(schema.outbox.c.id))]

    def contact(self, address: str) -> store_contacts.Contact:
        with self.app.engine.connect() as conn:
            found = store_contacts.contact_by_email(conn, address)
            assert found is not None
            return found

    def history(self, address: str) -> list[str]:
        with self.app.engine.connect() as conn:
            return [e.kind for e in events.history(conn, self.contact(address).id)]


def write_world(
    tmp_path: Path,
    smtp: servers.smtp.SmtpServer,
    imap: servers.imap.ImapAccount | None,
    *,
    window: str = "mon-fri 09:00-17:00",
    limits: tuple[int, int] = (1000, 5000),
    security: str = "starttls",
    imap_options: dict[str, object] | None = None,
    campaigns: dict[str, str] | None = None,
    rep_options: dict[str, object] | None = None,
    smtp_options: dict[str, object] | None = None,  # more of mike's `[reps.smtp]`
    extra: Callable[[servers.smtp.SmtpServer], str] | None = None,  # more config, given the server
    database: str | None = None,  # a database URL; None: SQLite in tmp_path
) -> Path:
    folder = tmp_path / "campaigns"
    userfiles.write_campaign(folder, "intro", CAMPAIGN, {"intro/hello.md": TEMPLATE})
    for name, text in (campaigns or {}).items():
        userfiles.write_campaign(folder, name, text)
    attachments = tmp_path / "attachments"
    attachments.mkdir(exist_ok=True)
    (attachments / "brochure.pdf").write_bytes(b"%PDF-1.4 brochure")
    mailbox = userfiles.smtp_mailbox(
        smtp.port,
        security=security,
        username="mike@example.com",
        password_env="DRIPD_TEST_SMTP_PASSWORD",
        ca_file=smtp.ca_file,
        max_per_hour=limits[0],
        max_per_day=limits[1],
        **(smtp_options or {}),
    )
    inbox = None
    if imap is not None:
        inbox = userfiles.imap_mailbox(
            imap.address,
            imap.tls_port,
            security="tls",
            password_env="DRIPD_TEST_IMAP_PASSWORD",
            # None: the key is left out (its default applies)
            **({"ca_file": imap.ca_file, "sent_folder": "Sent"} | (imap_options or {})),
        )
    mike = userfiles.rep(
        "mike",
        name="Mike Gulitz",
        signature="Mike Gulitz\nMPC Mortgage Planner",
        smtp=mailbox,
        imap=inbox,
        **(rep_options or {}),
    )
    config = tmp_path / "config.toml"
    text = userfiles.config(
        database or f"sqlite:///{tmp_path / 'dripd.db'}",
        folder,
        mike,
        attachments=attachments,
        timezone="America/New_York",
        send_window=window,
    )
    if extra is not None:
        text += extra(smtp)
    config.write_text(text, encoding="utf-8")
    return config


def more_reps(
    ids: Sequence[str], *, smtp_options: Mapping[str, object] | None = None, **settings: object
) -> Callable[[servers.smtp.SmtpServer], str]:
    """`write_world`'s `extra`: more reps, sending through the test's server with mike's login.

    `smtp_options`: more of each one's `[reps.smtp]`; `settings`: more of its `[[reps]]`.
    """

    def text(smtp: servers.smtp.SmtpServer) -> str:
        mailbox = userfiles.smtp_mailbox(
            smtp.port,
            security="starttls",
            username="mike@example.com",
            password_env="DRIPD_TEST_SMTP_PASSWORD",
            ca_file=smtp.ca_file,
            **(smtp_options or {}),
        )
        return "".join("\n" + userfiles.rep(rep, smtp=mailbox, **settings) for rep in ids)

    return text


@pytest.fixture
def make_world(tmp_path: Path, smtp_server, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    opened: list[app_mod.App] = []
    monkeypatch.setenv("DRIPD_TEST_SMTP_PASSWORD", PASSWORD)

    def make(
        *,
        imap: servers.imap.ImapAccount | None = None,
        dovecot: servers.imap.Dovecot | None = None,
        tls: str = "starttls",
        **options,
    ) -> World:
        smtp = smtp_server(tls=tls, auth={"mike@example.com": PASSWORD})
        if imap is not None:
            monkeypatch.setenv("DRIPD_TEST_IMAP_PASSWORD", imap.password)
        security = {"starttls": "starttls", "implicit": "tls"}[tls]
        config = write_world(tmp_path, smtp, imap, security=security, **options)
        fake = clock.FakeClock(MONDAY)
        app = app_mod.open_app(str(config), the_clock=fake)
        opened.append(app)
        return World(app=app, clock=fake, smtp=smtp, imap=imap, dovecot=dovecot)

    yield make
    for app in opened:
        app.engine.dispose()
