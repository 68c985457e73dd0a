"""A sales team in one `dripd run` (issue 22): many mailboxes sending and watching at once.

- 60 reps, one Dovecot user each and one aiosmtpd sink (SQLite, then
  PostgreSQL): every rep's email arrives once, a reply in 10 random inboxes
  stops its contact within 2 s, SIGTERM with emails in flight exits 0 within
  10 s with every email the server accepted recorded as sent, and the log
  holds no error line.
- 100 reps' inboxes watched in one process (issue 21), a uid each on Dovecot:
  a reply lands in every inbox, one after another, and each stops its contact
  (median within 2 s, the slowest within 5 s).
- A sender that fails unexpectedly (with an email claimed) is restarted while
  the others send, and that email still goes, once;
  `dripd status` and the STATUS= line say so. A failure the daemon cannot go
  on without (its fleet's leases) ends `dripd run` at once, non-zero.

Faults are injected into the subprocess by tests/faults.py (DRIPD_TEST_FAULT).
The guard of tests/dbguard.py runs in every `dripd run` here too.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faults
import pytest
import servers.imap
import servers.loopback
import servers.required
import servers.smtp_sink
import sqlalchemy as sa
import userfiles

from dripd.store import engine as store_engine
from dripd.store import membership

PASSWORD_ENV = "DRIPD_TEST_TEAM_PASSWORD"
PASSWORD = "team-imap-secret"
TEAM = 60
REPLIES = 10
REPLY_STOPS = 2.0  # seconds from delivery to the contact's sequence stopped
STOP_WITHIN = 10.0  # seconds from SIGTERM to exit 0
IN_FLIGHT = 5  # emails per rep queued while dripd runs, then SIGTERM mid-way
START = 60.0  # seconds 60 mailboxes may take to send their first emails on a loaded host
SEED = int(os.environ.get("DRIPD_TEST_TEAM_SEED", "22"))

INTRO = userfiles.campaign(
    "Intro",
    userfiles.hello_step(),
    userfiles.email_step(
        "follow-up",
        wait="2 days",
        subject="Following up",
        body="Hi {{ contact.first_name }}, any questions?\n",
    ),
    stage="prospect",
    send_window="daily 00:00-24:00",
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[servers.imap.Dovecot]:
    """One private Dovecot for every team of this module (each test adds its own users)."""
    with servers.required.dovecot() as instance:
        yield instance


class Team:
    """A config with `size` reps (rep00, rep01, ...), their mailboxes, one database."""

    def __init__(
        self,
        folder: Path,
        database: str,
        sink: servers.smtp_sink.SmtpSinkProcess,
        size: int,
        dovecot: servers.imap.Dovecot | None = None,
    ) -> None:
        self.folder = folder
        self.database = database
        self.reps = [f"rep{i:02d}" for i in range(size)]
        self.inboxes = {
            rep: dovecot.new_user(rep, PASSWORD) for rep in self.reps if dovecot is not None
        }
        campaigns = folder / "campaigns"
        userfiles.write_campaign(campaigns, "intro", INTRO)
        reps = [
            userfiles.rep(
                rep,
                digest=userfiles.quiet_digest(),  # only contacts' emails are counted
                smtp=userfiles.smtp_mailbox(sink.port, max_per_hour=100000),
                imap=self._imap(rep),
            )
            for rep in self.reps
        ]
        text = userfiles.config(database, campaigns, *reps, send_window="daily 00:00-24:00")
        self.config = folder / "config.toml"
        self.config.write_text(text, encoding="utf-8")
        self.env = userfiles.dripd_env(**{PASSWORD_ENV: PASSWORD, "DRIPD_LOG_LEVEL": "INFO"})
        self.engine = sa.create_engine(store_engine.engine_url(database), poolclass=sa.NullPool)
        self.log = folder / "dripd.stderr"
        self.imported = 0

    def _imap(self, rep: str) -> userfiles.Table | None:
        account = self.inboxes.get(rep)
        if account is None:
            return None
        return userfiles.imap_mailbox(account.address, account.port, password_env=PASSWORD_ENV)

    def dripd(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [userfiles.DRIPD, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    def import_contacts(self, per_rep: int) -> dict[str, str]:
        """`per_rep` new contacts owned by each rep, enrolled in Intro; address -> owner."""
        owners = {}
        for n in range(per_rep):
            for rep in self.reps:
                owners[f"c{self.imported + n}.{rep}@example.org"] = rep
        lines = ["email,first_name,company,owner"]
        lines += [f"{a},First,Company of {o},{o}" for a, o in owners.items()]
        csv = self.folder / f"contacts-{self.imported}.csv"
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = self.dripd("contacts", "import", str(csv), "--enroll", "intro")
        assert result.returncode == 0, result.stderr
        self.imported += per_rep
        return owners

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as stderr:
            return subprocess.Popen(
                [userfiles.DRIPD, "--config", str(self.config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**self.env, **env},
            )

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]

    def statuses(self) -> dict[str, int]:
        return dict(self.query("select status, count(*) from outbox group by status"))

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until `predicate()` held; AssertionError after `timeout`."""
    start = time.monotonic()
    if not servers.loopback.wait_until(predicate, timeout, interval=0.02):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return time.monotonic() - start


def _clean_log(text: str) -> None:
    """No error line, no traceback, no task that died unseen."""
    errors = [line for line in text.splitlines() if line.startswith(("error ", "critical "))]
    assert not errors, "\n".join(errors[:10])
    assert "Traceback" not in text
    assert "never retrieved" not in text


def _reply(contact: str, rep: str, to_msgid: str, n: int) -> bytes:
    return (
        f"From: Contact <{contact}>\r\nTo: {rep}@example.com\r\nSubject: Re: Hello\r\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"Message-ID: <reply-{n}@example.org>\r\nIn-Reply-To: {to_msgid}\r\n"
        f"References: {to_msgid}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Yes, let's talk next week. Call me on Tuesday.\r\n"
    ).encode()


def _replies_stop(
    team: Team, dovecot: servers.imap.Dovecot, owners: dict[str, str], repliers: list[str]
) -> tuple[list[float], set[str]]:
    """Once every inbox is read, a reply from each of `repliers`, one after another.

    Returns the seconds from each delivery to its contact's sequence stopped
    (sorted), and every contact stopped by then.
    """
    _wait(
        lambda: team.query("select count(*) from inbox_folders")[0][0] == len(team.reps),
        START,
        "every inbox read",
    )
    time.sleep(0.5)  # the checkpoint is written just before IDLE is sent
    sent = dict(team.query("select recipient, message_id from outbox where step = 'hello'"))
    delivered: dict[str, float] = {}
    for n, contact in enumerate(repliers):
        dovecot.deliver(
            team.inboxes[owners[contact]].address,
            _reply(contact, owners[contact], sent[contact], n),
        )
        delivered[contact] = time.monotonic()
    stopped: dict[str, float] = {}

    def all_stopped() -> bool:
        rows = team.query(
            "select c.email from contacts c join enrollments e on e.contact_id = c.id "
            "where e.status = 'stopped'"
        )
        for (email,) in rows:
            stopped.setdefault(email, time.monotonic())
        return set(repliers) <= set(stopped)

    _wait(all_stopped, 60, f"the {len(repliers)} replies to stop their contacts")
    return sorted(stopped[c] - delivered[c] for c in repliers), set(stopped)


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'dripd.db'}"


# -- 1. sixty reps ---------------------------------------------------------------


@pytest.mark.timeout(240)
def test_sixty_reps_send_once_stop_on_replies_and_stop_cleanly(
    tmp_path: Path,
    database_url: str,
    dovecot: servers.imap.Dovecot,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    team = Team(tmp_path, database_url, smtp_sink, TEAM, dovecot)
    owners = team.import_contacts(1)
    proc = team.start()
    procs.append(proc)

    _wait(lambda: len(smtp_sink.records()) >= TEAM or proc.poll(), START, "60 first emails")
    _wait(lambda: team.statuses() == {"sent": TEAM}, 10, "60 emails recorded as sent")
    arrived = Counter(r.rcpt_tos for r in smtp_sink.records())
    assert sorted(to for (to,) in arrived) == sorted(owners)
    assert set(arrived.values()) == {1}

    repliers = random.Random(SEED).sample(sorted(owners), REPLIES)
    took, stopped = _replies_stop(team, dovecot, owners, repliers)
    assert took[-1] <= REPLY_STOPS, f"reply to stop: {', '.join(f'{t:.2f}' for t in took)} s"
    assert stopped == set(repliers)

    # SIGTERM while the next emails go out: exit 0 in time, every accepted email recorded.
    before = len(smtp_sink.records())
    team.import_contacts(IN_FLIGHT)
    proc.send_signal(signal.SIGHUP)  # a reload: it looks now, not at its next poll (15 s)
    _wait(lambda: len(smtp_sink.records()) > before + TEAM // 2, START, "the next emails")
    proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    code = proc.wait(STOP_WITHIN + 5)
    stopped_in = time.monotonic() - signalled
    assert code == 0, team.text()[-3000:]
    assert stopped_in <= STOP_WITHIN
    ids = smtp_sink.message_ids()
    assert len(ids) == len(set(ids)), "an email arrived twice"
    recorded = {mid for (mid,) in team.query("select message_id from outbox where status = 'sent'")}
    assert set(ids) <= recorded, "an email the server accepted is not recorded as sent"
    assert "sending" not in team.statuses()
    _clean_log(team.text())


# -- 1b. a hundred inboxes (issue 21) ----------------------------------------------

HUNDRED = 100  # inboxes watched in one process, a reply in each
BURST_STOPS = 5.0  # seconds for the slowest of 100 replies landing one after another


@pytest.mark.timeout(240)
def test_a_hundred_inboxes_in_one_process_each_reply_stops_its_contact(
    tmp_path: Path,
    sqlite_url: str,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    # A Dovecot of its own, a uid per user: past 128 IDLE processes of one uid
    # Linux refuses inotify and Dovecot would poll, which is not what a rep's server does.
    with servers.required.dovecot(uid_per_user=True) as dovecot:
        team = Team(tmp_path, sqlite_url, smtp_sink, HUNDRED, dovecot)
        owners = team.import_contacts(1)
        proc = team.start()
        procs.append(proc)
        _wait(lambda: team.statuses() == {"sent": HUNDRED} or proc.poll(), START, "100 emails")
        assert proc.poll() is None, team.text()[-3000:]
        took, stopped = _replies_stop(team, dovecot, owners, sorted(owners))
        said = f"reply to stop: median {took[HUNDRED // 2]:.2f} s, slowest {took[-1]:.2f} s"
        assert took[HUNDRED // 2] <= REPLY_STOPS, said
        assert took[-1] <= BURST_STOPS, said
        assert stopped == set(owners)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_WITHIN + 5) == 0, team.text()[-3000:]
        _clean_log(team.text())


# -- 2. supervision ----------------------------------------------------------------


class NotifySocket:
    """A datagram socket standing for systemd's notify socket; keeps the STATUS= lines."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="dripd-notify-", dir="/tmp")  # paths <= 108 bytes
        self.path = os.path.join(self.folder, "notify.sock")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.05)
        self.statuses: list[str] = []

    def status_with(self, text: str) -> bool:
        """Whether a STATUS= line holding `text` came (reads what is waiting)."""
        while True:
            try:
                message = self.socket.recv(65536).decode()
            except TimeoutError:
                break
            self.statuses += [m[7:] for m in message.splitlines() if m.startswith("STATUS=")]
        return any(text in status for status in self.statuses)

    def close(self) -> None:
        self.socket.close()
        os.unlink(self.path)
        os.rmdir(self.folder)


@pytest.mark.timeout(120)
def test_a_sender_that_fails_is_restarted_and_status_says_so(
    tmp_path: Path,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    team = Team(tmp_path, _sqlite(tmp_path), smtp_sink, 5)
    owners = team.import_contacts(2)
    notify = NotifySocket()
    try:
        proc = team.start(DRIPD_TEST_FAULT="send:rep02", NOTIFY_SOCKET=notify.path)
        procs.append(proc)
        # The others send at once; rep02's sender is restarted after its first rest (1 s).
        _wait(lambda: len(smtp_sink.records()) >= len(owners) or proc.poll(), START, "every email")
        _wait(lambda: notify.status_with("restarted: send-rep02"), 10, "STATUS= to say so")
    finally:
        notify.close()
    # Its email claimed when it failed is decided as after a crash: not in a Sent
    # folder (none here), so sent again; nothing stays `sending`, nothing twice.
    assert sorted(to for r in smtp_sink.records() for to in r.rcpt_tos) == sorted(owners)
    _wait(lambda: team.statuses() == {"sent": len(owners)}, 10, "every email recorded")
    first = min(r.arrived for r in smtp_sink.records())
    late = [r.arrived - first for r in smtp_sink.records() if "rep02" in r.rcpt_tos[0]]
    assert min(late) >= 0.5, "rep02's emails went before its sender was restarted"
    status = team.dripd("status")
    assert status.returncode == 0, status.stderr
    expected = (
        f"task send-rep02 failed once and was restarted (last: RuntimeError: {faults.MESSAGE})"
    )
    assert expected in " ".join(status.stdout.split())
    health = json.loads(team.dripd("status", "--json").stdout)["health"]
    assert [i["troubles"] for i in health["instances"] if i["alive"]] == [[expected]]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(STOP_WITHIN) == 0
    errors = [line for line in team.text().splitlines() if line.startswith("error ")]
    assert len(errors) == 1, errors
    assert "task failed, restarting it" in errors[0] and "rep=rep02" in errors[0]
    assert "never retrieved" not in team.text() and "Traceback" not in team.text()


@pytest.mark.timeout(120)
def test_a_failure_dripd_cannot_go_on_without_ends_it_at_once_non_zero(
    tmp_path: Path,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    team = Team(tmp_path, _sqlite(tmp_path), smtp_sink, 3)
    proc = team.start(DRIPD_TEST_FAULT="fleet")
    procs.append(proc)
    _wait(lambda: "dripd running" in team.text() or proc.poll() is not None, START, "the start")
    started = time.monotonic()
    code = proc.wait(membership.TICK + 5)  # the fault comes at the fleet's first tick
    ended_in = time.monotonic() - started
    text = team.text()
    assert code == 70, text
    assert ended_in <= membership.TICK + 3, f"{ended_in:.1f} s"
    assert "task failed: dripd stops" in text and "task=fleet" in text
    assert f"dripd: internal error: RuntimeError: {faults.MESSAGE}" in text
    assert "never retrieved" not in text and "Traceback" not in text
