"""Many mailboxes in one `dripd run` (issues 22, 21): N = 1, 10, 100, 500, 1,000 reps.

Each rep has an SMTP mailbox (one aiosmtpd sink in its own process, shared)
and an inbox on one private Dovecot (a user each). For each N, a fresh
SQLite database and one `dripd run`:

- IDLE: seconds from the start until every watcher has read its inbox and
  written its checkpoint (it sends IDLE next);
- idle: RSS and CPU over IDLE_SECONDS while every inbox waits in IDLE;
- send: 10 due emails per mailbox imported while it runs; emails/s over the
  span of their arrivals at the sink (first to last), and the peak RSS;
- reply-to-stop: REPLIES replies delivered (LMTP) to random inboxes one after
  another, each timed from delivery to its contact's sequence stopped in the
  database: median and p95;
- stop: seconds from SIGTERM to exit.

N = 1 is the baseline: every line prints its ratio to it. The test guard
(tests/dbguard.py) runs in each dripd: it counts the database connections
checked out and open at once, and any held across an SMTP or IMAP wait.
Goals: reply-to-stop p95 at 200 within 1.2x of N = 1, RSS under 300 MB
(issue 22); at 1,000: p95 under 1 s, RSS under 1 GB, idle CPU under 5% (issue 21).
`BENCH_MAILBOXES=1,200` picks the sizes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import servers.imap  # the test harness's Dovecot and SMTP sink
import servers.loopback
import servers.smtp_sink
import sqlalchemy as sa
import userfiles

from bench import common, inbox

SIZES = tuple(int(n) for n in os.environ.get("BENCH_MAILBOXES", "1,10,100,500,1000").split(","))
PER_MAILBOX = 10  # due emails per mailbox
REPLIES = 20
IDLE_SECONDS = 30.0  # two of the daemon's POLL (15 s): what it does each POLL counts in full
PASSWORD = "bench-imap-secret"
PASSWORD_ENV = "BENCH_MAILBOXES_PASSWORD"
START = 120.0  # seconds allowed for any phase, and PHASE_PER_MAILBOX more per mailbox
PHASE_PER_MAILBOX = 0.5  # N = 1,000 sends 10,000 emails at ~50/s on a busy 2-core host
SEED = 22
INOTIFY = Path("/proc/sys/fs/inotify/max_user_instances")

CAMPAIGN = inbox.CAMPAIGN  # a first email now, a follow-up a month later


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    size: int
    to_idle: float  # seconds
    rss_idle: float  # MB
    cpu_idle: float  # percent of one core
    rate: float  # emails/s
    rss_peak: float  # MB
    stop_median: float  # seconds
    stop_p95: float
    shutdown: float  # seconds
    checked_out: int  # most database connections checked out at once
    opened: int  # most open at once
    violations: int  # connections held across a network wait


class Run:
    """One `dripd run` with `size` reps, its database and its mailboxes."""

    def __init__(
        self,
        folder: Path,
        size: int,
        sink: servers.smtp_sink.SmtpSinkProcess,
        dovecot: servers.imap.Dovecot,
    ) -> None:
        self.folder = folder
        self.size = size
        self.sink = sink
        self.dovecot = dovecot
        self.reps = [f"rep{i:03d}" for i in range(size)]
        self.inboxes = {rep: dovecot.new_user(f"n{size}-{rep}", PASSWORD) for rep in self.reps}
        self.db = folder / "dripd.db"
        self.config = self._write_config()
        self.engine = sa.create_engine(f"sqlite:///{self.db}", poolclass=sa.NullPool)
        self.guard, self.peaks = folder / "guard.txt", folder / "peaks.json"
        self.guard.touch()
        self.env = {
            **os.environ,
            PASSWORD_ENV: PASSWORD,
            "DRIPD_LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(
                [str(common.REPO / "tests" / "sitehooks"), str(common.REPO / "tests")]
            ),
            "DRIPD_DBGUARD": str(self.guard),
            "DRIPD_DBGUARD_PEAKS": str(self.peaks),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> Path:
        campaigns = self.folder / "campaigns"
        userfiles.write_campaign(campaigns, "bench", CAMPAIGN)
        reps = [
            userfiles.rep(
                rep,
                name=rep,
                smtp=userfiles.smtp_mailbox(self.sink.port, max_per_hour=100000),
                imap=userfiles.imap_mailbox(
                    self.inboxes[rep].address, self.inboxes[rep].port, password_env=PASSWORD_ENV
                ),
            )
            for rep in self.reps
        ]
        text = userfiles.config(
            f"sqlite:///{self.db}", campaigns, *reps, send_window="daily 00:00-24:00"
        )
        config = self.folder / "config.toml"
        config.write_text(text, encoding="utf-8")
        return config

    def dripd(self, *args: str) -> None:
        result = subprocess.run(
            [common.DRIPD, "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
        )
        if result.returncode != 0:
            raise SystemExit(f"dripd {' '.join(args)} failed: {result.stderr}")

    def query(self, sql: str) -> list[tuple[object, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql))]

    def import_contacts(self, per_rep: int, batch: str) -> None:
        lines = ["email,first_name,company,owner"]
        for n in range(per_rep):
            lines += [f"c{batch}{n}.{rep}@example.org,First,Company,{rep}" for rep in self.reps]
        csv = self.folder / f"contacts-{batch}.csv"
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.dripd("contacts", "import", str(csv), "--enroll", "bench")

    def start(self) -> float:
        """Start `dripd run`; seconds until every inbox was read (IDLE next)."""
        self.dripd("migrate")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            [common.DRIPD, "--config", str(self.config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            env=self.env,
        )
        _wait(lambda: self.count("select count(*) from inbox_folders") >= self.size, "IDLE")
        return time.perf_counter() - start

    def count(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar_one())

    def idle(self) -> tuple[float, float]:
        """RSS (MB) and CPU (% of a core) while every inbox waits in IDLE."""
        assert self.proc is not None
        time.sleep(1.0)
        before = common.process_cpu(self.proc.pid)
        time.sleep(IDLE_SECONDS)
        cpu = (common.process_cpu(self.proc.pid) - before) / IDLE_SECONDS * 100
        return _memory(self.proc.pid, "VmRSS"), cpu

    def send(self) -> float:
        """Emails/s while 10 due emails per mailbox go out (first to last arrival)."""
        before = len(self.sink.records())
        self.import_contacts(PER_MAILBOX, "a")
        total = before + self.size * PER_MAILBOX
        _wait(lambda: len(self.sink.records()) >= total, "every email")
        arrived = sorted(r.arrived for r in self.sink.records()[before:])
        span = arrived[-1] - arrived[0]
        return (len(arrived) - 1) / span if span > 0 else float("nan")

    def replies(self) -> list[float]:
        """Seconds from each reply's delivery to its contact's sequence stopped."""
        if self.size * PER_MAILBOX < REPLIES:  # N = 1: contacts enough to reply
            self.import_contacts(-(-REPLIES // self.size) - PER_MAILBOX, "b")
        wanted = max(REPLIES, self.size * PER_MAILBOX)
        sent_sql = "select count(*) from outbox where step = 'hello' and status = 'sent'"
        _wait(lambda: self.count(sent_sql) >= wanted, "every email recorded as sent")
        sent = self.query(
            "select o.recipient, o.message_id, o.rep, o.contact_id from outbox o "
            "where o.step = 'hello' and o.status = 'sent' order by o.id"
        )
        times = []
        for n, (address, msgid, rep, contact) in enumerate(
            random.Random(SEED).sample(sent, REPLIES)
        ):
            time.sleep(0.2)  # let the watcher settle back into IDLE
            raw = _reply(str(address), str(msgid), n)
            start = time.perf_counter()
            self.dovecot.deliver(self.inboxes[str(rep)].address, raw)
            _wait(lambda c=contact: self._stopped(c), "the reply handled", interval=0.005)
            times.append(time.perf_counter() - start)
        return times

    def _stopped(self, contact: object) -> bool:
        active = (
            f"select count(*) from enrollments where contact_id = {contact} and status = 'active'"
        )
        return self.count(active) == 0

    def stop(self) -> float:
        assert self.proc is not None
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        if self.proc.wait(60) != 0:
            raise SystemExit(f"dripd run with {self.size} mailboxes exited {self.proc.returncode}")
        return time.perf_counter() - start

    def guard_counts(self) -> tuple[int, int, int]:
        peaks = json.loads(self.peaks.read_text(encoding="utf-8"))
        held = len(self.guard.read_text(encoding="utf-8").splitlines())
        return peaks["checked_out"], peaks["open"], held


def _memory(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait(predicate: Callable[[], object], what: str, interval: float = 0.05) -> None:
    limit = START + PHASE_PER_MAILBOX * max(SIZES)
    if not servers.loopback.wait_until(predicate, limit, interval=interval):
        raise SystemExit(f"timed out after {limit:.0f} s waiting for {what}")


def _reply(address: str, msgid: str, n: int) -> bytes:
    return (
        f"From: <{address}>\r\nTo: rep@example.com\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <bench-mailboxes-{n}@example.org>\r\nIn-Reply-To: {msgid}\r\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n\r\n"
        "Yes, call me tomorrow.\r\n"
    ).encode()


def measure(
    size: int, sink: servers.smtp_sink.SmtpSinkProcess, dovecot: servers.imap.Dovecot
) -> Result:
    run = Run(common.workdir(f"mailboxes-{size}"), size, sink, dovecot)
    try:
        to_idle = run.start()
        rss_idle, cpu_idle = run.idle()
        rate = run.send()
        assert run.proc is not None
        rss_peak = _memory(run.proc.pid, "VmHWM")
        stops = run.replies()
    finally:
        shutdown = run.stop()
    checked_out, opened, held = run.guard_counts()
    return Result(
        size=size,
        to_idle=to_idle,
        rss_idle=rss_idle,
        cpu_idle=cpu_idle,
        rate=rate,
        rss_peak=rss_peak,
        stop_median=statistics.median(stops),
        stop_p95=statistics.quantiles(stops, n=20)[18],
        shutdown=shutdown,
        checked_out=checked_out,
        opened=opened,
        violations=held,
    )


def main() -> None:
    folder = common.workdir("mailboxes")
    results = []
    # A uid per Dovecot user: past 128 per uid, Linux refuses inotify instances and
    # Dovecot's IDLE polls every second instead (a limit of this test server).
    dovecot = servers.imap.Dovecot(uid_per_user=True)
    with servers.smtp_sink.SmtpSinkProcess(folder / "sink.log") as sink, dovecot:
        dovecot.start()
        for size in SIZES:
            results.append(measure(size, sink, dovecot))
            print(f"  (N = {size} done: {results[-1]})", flush=True)  # kept if a later N fails
        fallbacks = dovecot.log_path.read_text(errors="replace").count("notify instance limit")
    report(results)
    if fallbacks:
        print(
            f"  Dovecot: the inotify instance limit ({INOTIFY.read_text().strip()} per user) was "
            f"reached {fallbacks} time(s): those inboxes' IDLE polls every second instead"
        )


def report(results: list[Result]) -> None:
    base = results[0]
    print(
        f"one dripd run, N mailboxes (SMTP to one aiosmtpd sink, IMAP IDLE on one Dovecot), "
        f"SQLite; {PER_MAILBOX} due emails per mailbox; {REPLIES} replies in random inboxes"
    )
    print(
        "     N  to IDLE  RSS idle  CPU idle  emails/s  RSS peak  reply-to-stop "
        "median / p95   SIGTERM  db conns out/open  held"
    )
    for r in results:
        print(
            f"  {r.size:4d}  {r.to_idle:5.2f} s  {r.rss_idle:5.0f} MB  {r.cpu_idle:6.1f} %  "
            f"{r.rate:8.0f}  {r.rss_peak:5.0f} MB  {r.stop_median * 1000:8.0f} / "
            f"{r.stop_p95 * 1000:5.0f} ms   {r.shutdown:5.2f} s  {r.checked_out:8d} / "
            f"{r.opened:d}    {r.violations}"
        )
    print("  ratios to N = 1:")
    for r in results[1:]:
        print(
            f"  {r.size:4d}  to IDLE {r.to_idle / base.to_idle:5.2f}x  RSS idle "
            f"{r.rss_idle / base.rss_idle:4.2f}x  emails/s {r.rate / base.rate:5.2f}x  "
            f"reply-to-stop median {r.stop_median / base.stop_median:4.2f}x  "
            f"p95 {r.stop_p95 / base.stop_p95:4.2f}x"
        )
    last = results[-1]
    print(
        f"  goals at N = {last.size}: p95 within 1.2x of N = 1: "
        f"{last.stop_p95 / base.stop_p95:4.2f}x; p95 under 1 s: {last.stop_p95 * 1000:.0f} ms; "
        f"RSS under 1 GB: peak {last.rss_peak:.0f} MB; idle CPU under 5%: {last.cpu_idle:.1f} %"
    )
