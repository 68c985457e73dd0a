"""`dripd run`, the sending daemon, as a user runs it: real processes, real SMTP servers.

- SIGKILL at random moments while it sends, restart, finish: nothing lost, nothing
  sent twice unless the documented crash rule explains it (docs/operator.md, "Sending").
- SIGTERM while an SMTP transaction is in flight: it finishes, is committed, exit 0.
- A second `dripd run` on the same SQLite database is refused.
- `dripd run --once`: its summary line and `--json`.
- A refused SMTP login: nothing sent, one error line, the password never shown.

Every `dripd` is a subprocess of the installed console script; the SMTP servers
listen on 127.0.0.1 (`tests/servers/`). No mocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import servers.loopback
import servers.smtp
import servers.smtp_sink
import userfiles

REP_EMAIL = "mike@example.com"
CAMPAIGN = userfiles.campaign(
    "Blast",
    userfiles.email_step(
        "hello", subject="Hello {{ contact.first_name }}", template="blast/hello.md"
    ),
    send_window="daily 00:00-24:00",
)
TEMPLATE = "Hi {{ contact.first_name }},\n\nA short note about {{ contact.company }}.\n"
START = 30.0  # seconds a dripd process may take to get going on a loaded machine
KILLS = 6
KILL_SEED = int(os.environ.get("DRIPD_TEST_KILL_SEED", "20260611"))  # vary to explore
KILL_EMAILS = 300
CONNECTIONS = 2


# -- fixtures and helpers ---------------------------------------------------------


class Setup:
    """A config with one rep (mike) whose mailbox is `port`, a one-step campaign, a DB."""

    def __init__(self, folder: Path, port: int, **smtp: object) -> None:
        """`smtp`: more settings of mike's `[reps.smtp]`."""
        self.folder = folder
        self.db = folder / "dripd.db"
        campaigns = folder / "campaigns"
        userfiles.write_campaign(campaigns, "blast", CAMPAIGN, {"blast/hello.md": TEMPLATE})
        mailbox = userfiles.smtp_mailbox(port, **smtp)
        mike = userfiles.rep(
            "mike",
            name="Mike Gulitz",
            email=REP_EMAIL,
            smtp=mailbox,
            digest=userfiles.quiet_digest(),  # only contacts' emails are counted
        )
        self.config = folder / "config.toml"
        self.config.write_text(
            userfiles.config(f"sqlite:///{self.db}", campaigns, mike), encoding="utf-8"
        )
        self.imported = 0

    def argv(self, *args: str) -> list[str]:
        return [userfiles.DRIPD, "--config", str(self.config), *args]

    def dripd(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=env or userfiles.dripd_env(),
            timeout=120,
        )

    def import_contacts(self, count: int) -> list[str]:
        """Import `count` new contacts enrolled in the campaign; their addresses."""
        first = self.imported
        addresses = [f"c{i}@example.com" for i in range(first, first + count)]
        csv = self.folder / f"contacts-{first}.csv"
        lines = ["email,first_name,company"]
        lines += [f"{a},First{i},Company {i}" for i, a in enumerate(addresses, first)]
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = self.dripd("contacts", "import", str(csv), "--enroll", "blast")
        assert result.returncode == 0, result.stderr
        self.imported += count
        return addresses

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the database (read-only; safe while dripd runs or after it was killed)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 10000")
            return db.execute(sql).fetchall()

    def statuses(self) -> dict[str, int]:
        return dict(self.query("select status, count(*) from outbox group by status"))

    def in_state(self, status: str) -> set[str]:
        rows = self.query(f"select message_id from outbox where status = '{status}'")
        return {mid for (mid,) in rows}


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    if not servers.loopback.wait_until(predicate, timeout, interval=0.005):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


def _start(
    setup: Setup, procs: list[subprocess.Popen[bytes]], stderr: IO[bytes], **env: str
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        setup.argv("run"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        env=userfiles.dripd_env(**env),
    )
    procs.append(proc)
    return proc


def _sending(
    sink: servers.smtp_sink.SmtpSinkProcess, before: int, proc: subprocess.Popen[bytes]
) -> Callable[[], bool]:
    """True once `sink` has more than `before` messages (or `proc` has exited)."""
    return lambda: len(sink.records()) > before or proc.poll() is not None


# -- 1. kill -9 at random moments: nothing lost, nothing twice ---------------------


def test_sigkill_while_sending_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    setup = Setup(tmp_path, smtp_sink.port, connections=CONNECTIONS)
    recipients = setup.import_contacts(KILL_EMAILS)
    rng = random.Random(KILL_SEED)
    log = tmp_path / "dripd.stderr"
    sending_at_kill: list[set[str]] = []
    sent_per_run: list[int] = []

    with log.open("ab") as stderr:
        for _ in range(KILLS):
            if setup.statuses() == {"sent": KILL_EMAILS}:
                break  # a fast machine sent everything before the last kill
            before = len(smtp_sink.records())
            proc = _start(setup, procs, stderr, DRIPD_LOG_LEVEL="WARNING")
            # The moment is drawn from when this run's first email arrives: the ~1 s
            # of interpreter start-up before it would swallow any fixed delay.
            _wait(_sending(smtp_sink, before, proc), START, "the daemon to send")
            time.sleep(rng.uniform(0.0, 0.08))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL, log.read_text()
            sending_at_kill.append(setup.in_state("sending"))
            sent_per_run.append(len(smtp_sink.records()) - before)

        # Restart once more and let it finish: every row sent, then SIGTERM (once
        # the daemon runs: on a fast machine everything may be sent already).
        proc = _start(setup, procs, stderr, DRIPD_LOG_LEVEL="INFO")
        _wait(
            lambda: (
                (
                    setup.statuses() == {"sent": KILL_EMAILS}
                    and "dripd running" in log.read_text(encoding="utf-8", errors="replace")
                )
                or proc.poll() is not None
            ),
            60,
            "every email to be sent",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, log.read_text()

    errors = log.read_text(encoding="utf-8", errors="replace")
    _no_traceback(errors)
    assert setup.statuses() == {"sent": KILL_EMAILS}, errors

    records = smtp_sink.records()
    arrivals = Counter(r.message_id for r in records)
    expected = {mid for (mid,) in setup.query("select message_id from outbox")}
    assert len(expected) == KILL_EMAILS
    assert set(arrivals) == expected, "lost or unknown Message-IDs"
    # One Message-ID per contact, to that contact.
    by_recipient: dict[str, set[str]] = {}
    for record in records:
        assert len(record.rcpt_tos) == 1
        by_recipient.setdefault(record.rcpt_tos[0], set()).add(record.message_id)
    assert sorted(by_recipient) == sorted(recipients)
    assert all(len(ids) == 1 for ids in by_recipient.values())

    # The crash rule: only an email in flight (`sending`) at a kill may arrive twice,
    # and at most once more per kill that caught it in flight. Each worker holds one
    # claim at a time, so a kill catches at most `connections` emails in flight. The
    # server has a message once its final "." is written (the sink even logs one it
    # reads from its socket after dripd died), so about half of those arrive twice:
    # more duplicates than kills is normal with 2 connections.
    assert all(len(rows) <= CONNECTIONS for rows in sending_at_kill), sending_at_kill
    in_flight = Counter(mid for rows in sending_at_kill for mid in rows)
    twice = {mid: n - 1 for mid, n in arrivals.items() if n > 1}
    for mid, extra in twice.items():
        assert extra <= in_flight[mid], f"{mid} arrived {extra + 1} times, not explained"
    kills = len(sending_at_kill)
    assert kills >= 2, "too few kills landed while emails were being sent"
    assert sum(twice.values()) <= kills * CONNECTIONS
    print(
        f"\nseed={KILL_SEED} kills={kills} sent per killed run={sent_per_run} "
        f"in flight at kills={sum(map(len, sending_at_kill))} duplicates={sum(twice.values())}"
    )


# -- 2. SIGTERM: the transaction in flight finishes, exit 0 ----------------------


def _terminate(proc: subprocess.Popen[bytes], log: Path) -> tuple[float, str]:
    """SIGTERM `proc`; the seconds it took to exit 0 (asserted), and its log."""
    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(20)
    took = time.monotonic() - stopped_at
    errors = log.read_text(encoding="utf-8")
    assert code == 0, errors
    _no_traceback(errors)
    return took, errors


def test_sigterm_finishes_the_email_in_flight_and_exits_cleanly(
    tmp_path: Path,
    smtp_server: Callable[..., servers.smtp.SmtpServer],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    server = smtp_server()
    stall = server.faults.stall("DATA", 2.0)
    setup = Setup(tmp_path, server.port, connections=1)
    setup.import_contacts(3)
    log = tmp_path / "dripd.stderr"
    with log.open("ab") as stderr:
        proc = _start(setup, procs, stderr)
        _wait(lambda: stall.used >= 1 or proc.poll() is not None, START, "the DATA command")
        assert proc.poll() is None, log.read_text()
        time.sleep(0.3)  # well inside the 2 s stall
        took, errors = _terminate(proc, log)
    assert took < 10
    assert any(line.startswith("info stopping") for line in errors.splitlines()), errors

    # The stalled email was delivered and committed as sent; no new one was started.
    delivered = server.messages()
    assert len(delivered) == 1
    assert setup.in_state("sent") == {delivered[0].message_id}
    assert setup.statuses() == {"sent": 1, "queued": 2}
    assert not server.faults.pending()


def test_sigterm_during_a_big_backlog_stops_between_engine_chunks(
    tmp_path: Path,
    smtp_sink: servers.smtp_sink.SmtpSinkProcess,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    # The engine's pass over a backlog went on to its end after SIGTERM: with
    # 30,000 due enrollments dripd took 11.8 s to exit. It stops between chunks.
    backlog = 20_000
    setup = Setup(tmp_path, smtp_sink.port, connections=CONNECTIONS)
    setup.import_contacts(backlog)
    log = tmp_path / "dripd.stderr"
    with log.open("ab") as stderr:
        proc = _start(setup, procs, stderr)
        _wait(_sending(smtp_sink, 0, proc), START, "the daemon to send")
        took, _ = _terminate(proc, log)
    assert took < 3, f"{took:.1f} s to stop"
    statuses = setup.statuses()
    assert "sending" not in statuses, statuses
    assert sum(statuses.values()) < backlog  # the pass stopped: the rest is still due
    (due,) = setup.query("select count(*) from enrollments where next_due_at is not null")
    assert due[0] == backlog - sum(statuses.values())


# -- 3. a second instance on one SQLite database is refused ----------------------


def test_second_instance_on_sqlite_is_refused(
    tmp_path: Path,
    smtp_server: Callable[..., servers.smtp.SmtpServer],
    procs: list[subprocess.Popen[bytes]],
) -> None:
    server = smtp_server()
    setup = Setup(tmp_path, server.port)
    setup.import_contacts(1)
    # Left by an earlier run: the holder's pid replaces it, whatever its length.
    Path(f"{setup.db}.lock").write_text("pid 4194304999", encoding="utf-8")
    log = tmp_path / "first.stderr"
    with log.open("ab") as stderr:
        first = _start(setup, procs, stderr)
        _wait(
            lambda: "dripd running" in log.read_text() or first.poll() is not None,
            START,
            "the first daemon to start",
        )
        assert first.poll() is None, log.read_text()
        server.wait_for(1, timeout=START)
        # `dripd status` sees the running daemon through its heartbeat in the database.
        health = json.loads(setup.dripd("status", "--json").stdout)["health"]
        (instance,) = health["instances"]
        assert (instance["pid"], instance["alive"]) == (first.pid, True)
        assert f"daemon: running (pid {first.pid} on " in setup.dripd("status").stdout

        seconds = []
        for args in (["run"], ["run", "--once"]):
            started = time.monotonic()
            result = setup.dripd(*args)
            seconds.append(time.monotonic() - started)
            assert result.returncode != 0, result
            _no_traceback(result.stdout, result.stderr)
            assert result.stdout == ""
            lines = result.stderr.splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith("dripd: another dripd run"), lines
            assert f"pid {first.pid}" in lines[0]
            assert "PostgreSQL" in lines[0]
        assert all(s < START for s in seconds), seconds
        assert len(server.messages()) == 1  # the refused ones sent nothing

        first.send_signal(signal.SIGTERM)
        assert first.wait(10) == 0, log.read_text()
    _no_traceback(log.read_text())
    assert "daemon: not running: stopped " in setup.dripd("status").stdout
    # Once the first has stopped, the lock is free again.
    result = setup.dripd("run", "--once")
    assert result.returncode == 0, result.stderr


def test_a_lock_file_that_cannot_be_written_does_not_stop_sending(
    tmp_path: Path, smtp_server: Callable[..., servers.smtp.SmtpServer]
) -> None:
    """A full disk: the pid can't be written into the lock file (here it is /dev/full).

    It was an internal error (exit 70) and nothing went out, though SQLite can
    go on inside the pages it has. The lock is the flock; the pid a courtesy.
    """
    server = smtp_server()
    setup = Setup(tmp_path, server.port)
    setup.import_contacts(2)
    lock = Path(f"{setup.db}.lock")
    lock.unlink(missing_ok=True)
    lock.symlink_to("/dev/full")

    result = setup.dripd("run", "--once")
    assert result.returncode == 0, result.stderr
    _no_traceback(result.stdout, result.stderr)
    warnings = [line for line in result.stderr.splitlines() if "action=lock_file" in line]
    assert len(warnings) == 1, result.stderr
    assert f"cannot write the lock file {lock}: No space left on device" in warnings[0]
    assert len(server.messages()) == 2
    assert setup.statuses() == {"sent": 2}


# -- 4. `dripd run --once`: summary line and JSON --------------------------------


def test_run_once_sends_what_is_due_and_reports(
    tmp_path: Path, smtp_server: Callable[..., servers.smtp.SmtpServer]
) -> None:
    server = smtp_server()
    setup = Setup(tmp_path, server.port)
    first = setup.import_contacts(3)

    result = setup.dripd("run", "--once")
    assert result.returncode == 0, result.stderr
    _no_traceback(result.stdout, result.stderr)
    assert result.stdout.splitlines() == [
        "queued 3, sent 3, tasks 0, skipped 0, held 0, retrying 0, failed 0, bounced 0, inbox 0, "
        "digests 0",
        "next: nothing scheduled",
    ]
    assert sorted(m.rcpt_tos[0] for m in server.messages()) == sorted(first)
    assert {m.mail_from for m in server.messages()} == {REP_EMAIL}
    assert setup.statuses() == {"sent": 3}
    assert setup.in_state("sent") == {m.message_id for m in server.messages()}
    sent_lines = [line for line in result.stderr.splitlines() if "action=email_sent" in line]
    assert len(sent_lines) == 3, result.stderr
    assert "action=mailbox_taken" not in result.stderr  # one instance on SQLite: no news

    # Nothing due: nothing sent, still exit 0.
    idle = setup.dripd("run", "--once", "--json")
    assert idle.returncode == 0, idle.stderr
    assert json.loads(idle.stdout)["sent"] == 0
    assert json.loads(idle.stdout)["next"] is None

    second = setup.import_contacts(2)
    result = setup.dripd("run", "--once", "--json")
    assert result.returncode == 0, result.stderr
    _no_traceback(result.stdout, result.stderr)
    summary = json.loads(result.stdout)
    assert summary["queued"] == 2
    assert summary["sent"] == 2
    assert summary["failed"] == 0
    assert sorted(m.rcpt_tos[0] for m in server.messages()[3:]) == sorted(second)
    assert len(server.messages()) == 5
    assert setup.statuses() == {"sent": 5}


def test_a_campaign_edited_between_two_runs_is_planned_again(
    tmp_path: Path, smtp_server: Callable[..., servers.smtp.SmtpServer]
) -> None:
    """Files edited while dripd is stopped count from the next start, as a reload would.

    The window first opens the day after tomorrow: `run --once` sends nothing
    and says when the email will go. Widened to every day, the next `run
    --once` sends it, not two days later.
    """
    server = smtp_server()
    setup = Setup(tmp_path, server.port)
    later = datetime.now(UTC) + timedelta(days=2)
    campaign = setup.folder / "campaigns" / "blast.toml"
    daily = 'send_window = "daily 00:00-24:00"'
    campaign.write_text(CAMPAIGN.replace(daily, f'send_window = "{later:%a} 00:00-24:00"'))
    [address] = setup.import_contacts(1)

    waiting = setup.dripd("run", "--once")
    assert waiting.returncode == 0, waiting.stderr
    assert server.messages() == []
    assert waiting.stdout.splitlines()[1].startswith(
        f"next: email blast/hello to {address}, {later:%a %Y-%m-%d} 00:00 UTC (in 1 d"
    ), waiting.stdout
    data = json.loads(setup.dripd("run", "--once", "--json").stdout)
    assert (data["sent"], data["next"]["step"], data["next"]["contact"]) == (0, "hello", address)
    assert data["next"]["at"] == f"{later:%Y-%m-%d}T00:00:00+00:00"

    campaign.write_text(CAMPAIGN)  # dripd is not running: no reload sees this
    result = setup.dripd("run", "--once")
    assert result.returncode == 0, result.stderr
    _no_traceback(result.stdout, result.stderr)
    assert [m.rcpt_tos[0] for m in server.messages()] == [address]
    assert "action=replanned enrollments=1" in result.stderr
    assert result.stdout.splitlines()[1] == "next: nothing scheduled"

    again = setup.dripd("run", "--once")  # nothing changed since: nothing planned again
    assert "action=replanned" not in again.stderr
    assert len(server.messages()) == 1


# -- 5. a wrong SMTP password ----------------------------------------------------


def test_refused_login_sends_nothing_and_never_shows_the_password(
    tmp_path: Path, smtp_server: Callable[..., servers.smtp.SmtpServer]
) -> None:
    wrong = "Wr0ng-pa55word-7c1d"
    server = smtp_server(auth={REP_EMAIL: "right"})
    setup = Setup(
        tmp_path, server.port, username=REP_EMAIL, password_env="DRIPD_TEST_SMTP_PASSWORD"
    )
    setup.import_contacts(1)

    result = setup.dripd("run", "--once", env=userfiles.dripd_env(DRIPD_TEST_SMTP_PASSWORD=wrong))
    assert result.returncode == 0, result.stderr
    _no_traceback(result.stdout, result.stderr)
    assert wrong not in result.stdout
    assert wrong not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert len(errors) == 1, result.stderr
    assert "login refused" in errors[0]
    assert "rep=mike" in errors[0]
    assert "sent 0" in result.stdout
    assert server.messages() == []
    assert setup.statuses() == {"queued": 1}
