"""Several `dripd run` instances on one PostgreSQL: sending throughput and takeover (issue 7).

Throughput: EMAILS due emails (the send benchmark's ~2 KB email) from six
reps' mailboxes (contacts spread over them by `owner`, two SMTP connections
per mailbox, twelve in all), every mailbox pointing at one aiosmtpd sink in
its own process. One `dripd run` on SQLite is the baseline; beside it, in the
same run and interleaved over the repeats, 1, 2 and 3 `dripd run` on one
PostgreSQL database. Each trial starts from a copy of one imported database
(a file copy, or CREATE DATABASE ... TEMPLATE) and is timed from starting the
instances to the outbox having every email `sent` (polled in the database);
the first-to-last arrival at the sink is shown beside it. Also shown: the
CPU the instances used (their rusage), that of the PostgreSQL backends
serving them (read from /proc), and how busy the whole machine was.

Takeover: FLEET instances on PostgreSQL, the six mailboxes, one of them
(WATCHED) also read over IMAP on a private Dovecot. The instance holding that
mailbox's lease is SIGKILLed and a reply from one of the rep's contacts is
APPENDed to the INBOX at once; measured from the kill until a live instance
holds the lease, and until the reply has stopped the contact's enrollment.
After each kill a replacement instance is started and the fleet left to
settle (every mailbox held, each instance its fair share).

Environment: DRIPD_TEST_POSTGRES_URL (an admin URL, as for the tests),
BENCH_INSTANCES_EMAILS, BENCH_INSTANCES_REPEATS, BENCH_INSTANCES_KILLS, and
BENCH_INSTANCES_ONLY=throughput or takeover to run one part,
BENCH_INSTANCES_PG (the most PostgreSQL instances tried, 3) to run fewer configurations,
and BENCH_INSTANCES_SINK=c for throughput against Postfix's smtp-sink (bench/c_sink.py,
fetched from Debian's package) instead of aiosmtpd: a sink that leaves the two cores
here to dripd and PostgreSQL, as a mailbox's real server (another host) does.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import servers.imap  # the test harness's SMTP sink, Dovecot and PostgreSQL databases
import servers.postgres
import servers.smtp_sink
import sqlalchemy as sa
import userfiles

from bench import c_sink, common, inbox, send

ISSUE_EMAILS = 10_000  # what issue 7 asks for
EMAILS = int(os.environ.get("BENCH_INSTANCES_EMAILS", str(ISSUE_EMAILS)))
REPEATS = int(os.environ.get("BENCH_INSTANCES_REPEATS", "3"))
SINK = "smtp-sink (C)" if os.environ.get("BENCH_INSTANCES_SINK") == "c" else "aiosmtpd"
KILLS = int(os.environ.get("BENCH_INSTANCES_KILLS", "10"))
PARTS = os.environ.get("BENCH_INSTANCES_ONLY", "throughput,takeover").split(",")
REPS = tuple(f"rep{n}" for n in range(1, 7))
WATCHED = REPS[0]  # the rep whose inbox is watched in the takeover trials
FLEET = 3  # instances in the takeover trials
# SQLite with one instance (the baseline, first), PostgreSQL with 1, 2, 3;
# BENCH_INSTANCES_PG=1 runs the baseline and PostgreSQL with one instance only.
PG_MOST = int(os.environ.get("BENCH_INSTANCES_PG", "3"))
CONFIGS = (("sqlite", 1), *(("postgresql", n) for n in range(1, PG_MOST + 1)))
SEND_POLL = 0.1  # seconds between looks at the outbox while sending
TAKEOVER_POLL = 0.02  # seconds between looks at the leases after a kill
SEND_TIMEOUT = 900.0  # seconds a trial may take before it is called stuck
TAKEOVER_TIMEOUT = 90.0  # seconds
SETTLE_TIMEOUT = 60.0  # seconds for a fleet to spread its mailboxes
STOP_TIMEOUT = 60.0  # seconds a SIGTERMed instance may take to drain
IMAP_PASSWORD_ENV = "BENCH_IMAP_PASSWORD"

TAKEOVER_CAMPAIGN = inbox.CAMPAIGN  # a first email now, a follow-up a month later


# -- databases --------------------------------------------------------------------


class Database:
    """Read-only looks at one trial's database (a SQLite file or a PostgreSQL URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pg: psycopg.Connection[Any] | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:///"):
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
                return db.execute(sql).fetchall()
        if self._pg is None:
            self._pg = psycopg.connect(self.url, autocommit=True)
        return self._pg.execute(sql.encode()).fetchall()

    def backend_pid(self) -> int | None:
        """The PostgreSQL backend serving this benchmark's own queries (None on SQLite)."""
        return None if self.url.startswith("sqlite") else int(self.value("select pg_backend_pid()"))

    def value(self, sql: str) -> Any:
        return self.rows(sql)[0][0]

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def alive_sql() -> str:
    """Live instances (design: not stopped, `expires_at` ahead of the database's clock)."""
    return (
        "select id, pid from instances where stopped_at is null "
        "and expires_at > extract(epoch from clock_timestamp())"
    )


def lease_holders(db: Database) -> dict[str, str | None]:
    """rep id -> the instance id holding its mailbox's lease (None: free)."""
    holders: dict[str, str | None] = {}
    for name, holder in db.rows("select name, holder from leases"):
        rep = str(name).rsplit(":", 1)[-1]
        if rep in REPS:
            holders[rep] = holder
    return holders


# -- files ------------------------------------------------------------------------


def quiet_digest() -> str:
    """A digest slot neither today nor in the 12 hours before: no digest during the run."""
    day = (datetime.now(UTC) + timedelta(days=3)).strftime("%a").lower()
    return f"{day} 12:00"


def rep_block(rep: str, sink_port: int, imap: servers.imap.ImapAccount | None) -> str:
    mailbox = None
    if imap is not None:
        mailbox = userfiles.imap_mailbox(
            imap.address, imap.port, password_env=IMAP_PASSWORD_ENV, sent_folder=""
        )
    return userfiles.rep(
        rep,
        name=f"Rep {rep}",
        digest=quiet_digest(),
        smtp=userfiles.smtp_mailbox(sink_port),
        imap=mailbox,
    )


def write_config(
    path: Path,
    database: str,
    campaigns: Path,
    sink_port: int,
    imap: servers.imap.ImapAccount | None = None,
) -> Path:
    reps = [rep_block(rep, sink_port, imap if rep == WATCHED else None) for rep in REPS]
    path.write_text(userfiles.config(database, campaigns, *reps), encoding="utf-8")
    return path


def write_campaigns(folder: Path, campaign: str, template: str | None) -> Path:
    templates = {} if template is None else {"bench/hello.md": template}
    userfiles.write_campaign(folder, "bench", campaign, templates)
    return folder


def import_contacts(config: Path, folder: Path, count: int) -> None:
    """`count` contacts, owners round-robin over REPS, enrolled in the campaign."""
    csv_path = folder / "contacts.csv"
    lines = ["email,first_name,last_name,company,owner"]
    lines += [
        f"c{i}@example.com,First{i},Last{i},Company {i % 97},{REPS[i % len(REPS)]}"
        for i in range(count)
    ]
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    common.run_dripd("contacts", "import", str(csv_path), "--enroll", "bench", config=config)


# -- processes --------------------------------------------------------------------


class Fleet:
    """`dripd run` subprocesses on one config; each one's stderr in its own file."""

    def __init__(self, config: Path, logs: Path, level: str) -> None:
        self.config = config
        self.logs = logs
        self.level = level
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = self.logs / f"dripd-{len(self.procs) + 1}.log"
        with log.open("ab") as stderr:
            proc = subprocess.Popen(
                [common.DRIPD, "--config", str(self.config), "run"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=userfiles.dripd_env(DRIPD_LOG_LEVEL=self.level),
            )
        self.procs.append(proc)
        return proc

    def by_pid(self, pid: int) -> subprocess.Popen[bytes]:
        return next(p for p in self.procs if p.pid == pid)

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def exited(self) -> list[subprocess.Popen[bytes]]:
        """Instances that ended without being told to (not SIGKILLed by the benchmark)."""
        return [p for p in self.procs if p.poll() is not None and p.returncode != -signal.SIGKILL]

    def stop(self) -> None:
        """SIGTERM every running instance and wait for each (SIGKILL after STOP_TIMEOUT)."""
        running = self.running()
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def problems(self) -> list[str]:
        """Lines of the instances' logs at WARNING or above, and tracebacks."""
        found = []
        for log in sorted(self.logs.glob("dripd-*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(("warning", "error", "critical", "Traceback")):
                    found.append(f"{log.parent.name}/{log.name}: {line[:200]}")
        return found

    def log_tail(self, lines: int = 15) -> str:
        out = []
        for log in sorted(self.logs.glob("dripd-*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def children_cpu() -> float:
    """CPU seconds (user + system) of the children this process has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backends_cpu(url: str, exclude: int | None) -> float:
    """CPU seconds of the PostgreSQL server processes now serving database `url`.

    Read from /proc (the server runs on this machine): backends show their
    database in their title. `exclude` is the benchmark's own polling backend.
    The server's shared processes (WAL writer, checkpointer) are not counted.
    """
    wanted = f" {sa.engine.make_url(url).database} ".encode()
    ticks = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == exclude:
            continue
        with contextlib.suppress(OSError):
            title = (proc / "cmdline").read_bytes()
            if title.startswith(b"postgres:") and wanted in title:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


# -- throughput -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    label: str
    seconds: float  # instances started -> every email `sent` in the outbox
    sink_span: float  # first -> last arrival at the sink
    cpu: float  # seconds of CPU the instances used, all together
    server_cpu: float  # seconds of CPU of the PostgreSQL backends serving them
    load: float  # the machine's 1-minute load average as the trial began
    busy: float  # the machine's CPU use over the trial, 0..1 of all cores
    arrived: int
    distinct: int
    per_instance: tuple[int, ...]  # emails each instance claimed, most first
    problems: tuple[str, ...]  # warnings and errors the instances logged


def label(kind: str, count: int) -> str:
    return f"{'SQLite' if kind == 'sqlite' else 'PostgreSQL'}, {count}"


def send_trial(
    kind: str,
    count: int,
    url: str,
    config: Path,
    sink: servers.smtp_sink.SmtpSinkProcess | c_sink.CSinkProcess,
    logs: Path,
) -> Trial:
    db = Database(url)
    fleet = Fleet(config, logs, "WARNING")
    sink.log_path.write_text("")
    poller = db.backend_pid()
    load = os.getloadavg()[0]
    cpu_before, (busy0, total0) = children_cpu(), machine_ticks()
    start = time.perf_counter()
    try:
        for _ in range(count):
            fleet.start()
        done = wait_until(lambda: _all_sent(db) or bool(fleet.exited()), SEND_TIMEOUT, SEND_POLL)
        seconds = time.perf_counter() - start
        busy1, total1 = machine_ticks()
        server_cpu = 0.0 if poller is None else backends_cpu(url, poller)
        if not done or fleet.exited() or not _all_sent(db):
            raise SystemExit(f"{label(kind, count)}: not every email sent\n{fleet.log_tail()}")
    finally:
        fleet.stop()
        spread = _per_instance(db)
        db.close()
    records = [r for r in sink.records() if not r.rcpt_tos[0].startswith("rep")]
    arrivals = [r.arrived for r in records]
    return Trial(
        label=label(kind, count),
        seconds=seconds,
        sink_span=max(arrivals) - min(arrivals),
        cpu=children_cpu() - cpu_before,
        server_cpu=server_cpu,
        load=load,
        busy=(busy1 - busy0) / max(1, total1 - total0),
        arrived=len(records),
        distinct=len({r.message_id for r in records}),
        per_instance=spread,
        problems=tuple(fleet.problems()),
    )


def _all_sent(db: Database) -> bool:
    return int(db.value("select count(*) from outbox where status = 'sent'")) >= EMAILS


def _per_instance(db: Database) -> tuple[int, ...]:
    try:
        rows = db.rows("select claimed_by, count(*) from outbox group by claimed_by")
    except (sqlite3.Error, psycopg.Error):
        return ()
    return tuple(sorted((int(n) for _, n in rows), reverse=True))


@dataclass(slots=True)
class Templates:
    """One imported database per kind; each trial runs on a fresh copy."""

    folder: Path
    campaigns: Path
    sink_port: int
    postgres: servers.postgres.Server
    sqlite_file: Path | None = None
    pg_name: str | None = None

    def prepare(self) -> None:
        self.sqlite_file = self.folder / "template.db"
        config = write_config(
            self.folder / "template-sqlite.toml",
            f"sqlite:///{self.sqlite_file}",
            self.campaigns,
            self.sink_port,
        )
        import_contacts(config, self.folder, EMAILS)
        url = self.postgres.create()
        self.pg_name = str(sa.engine.make_url(url).database)
        config = write_config(self.folder / "template-pg.toml", url, self.campaigns, self.sink_port)
        import_contacts(config, self.folder, EMAILS)

    @contextlib.contextmanager
    def copy(self, kind: str, trial_dir: Path) -> Iterator[str]:
        """A fresh copy of the imported database for one trial; its URL."""
        if kind == "sqlite":
            assert self.sqlite_file is not None
            target = trial_dir / "dripd.db"
            shutil.copyfile(self.sqlite_file, target)
            yield f"sqlite:///{target}"
            return
        url = self.postgres.create(template=self.pg_name)
        try:
            yield url
        finally:
            self.postgres.drop(url)


def throughput(folder: Path, postgres: servers.postgres.Server) -> list[Trial]:
    campaigns = write_campaigns(folder / "campaigns", send.CAMPAIGN, send.TEMPLATE)
    trials: list[Trial] = []
    print(
        f"sending {EMAILS:,} due emails from {len(REPS)} mailboxes (2 SMTP connections each) "
        f"to one {SINK} sink; SQLite with 1 `dripd run`, PostgreSQL with 1, 2, 3; "
        f"{REPEATS} repeats, configurations interleaved",
        flush=True,
    )
    if EMAILS != ISSUE_EMAILS:
        print(f"  ({EMAILS:,} emails, not the issue's {ISSUE_EMAILS:,}: BENCH_INSTANCES_EMAILS)")
    with _sink(folder / "sink.log") as sink:
        templates = Templates(folder, campaigns, sink.port, postgres)
        templates.prepare()
        for repeat in range(REPEATS):
            order = CONFIGS[repeat % len(CONFIGS) :] + CONFIGS[: repeat % len(CONFIGS)]
            for kind, count in order:
                trial_dir = folder / f"trial-{repeat + 1}-{kind}-{count}"
                trial_dir.mkdir()
                with templates.copy(kind, trial_dir) as url:
                    config = write_config(trial_dir / "config.toml", url, campaigns, sink.port)
                    trials.append(send_trial(kind, count, url, config, sink, trial_dir))
                print(f"  repeat {repeat + 1}: {_trial_line(trials[-1])}", flush=True)
    return trials


def _sink(log: Path) -> servers.smtp_sink.SmtpSinkProcess | c_sink.CSinkProcess:
    if SINK == "smtp-sink (C)":
        return c_sink.CSinkProcess(log)
    return servers.smtp_sink.SmtpSinkProcess(log)


def _trial_line(trial: Trial) -> str:
    spread = "/".join(str(n) for n in trial.per_instance) if len(trial.per_instance) > 1 else ""
    return (
        f"{trial.label:<14} {trial.seconds:6.1f} s  sink {trial.sink_span:6.1f} s  "
        f"CPU dripd {trial.cpu:5.1f} s  PG {trial.server_cpu:5.1f} s  "
        f"machine {trial.busy:4.0%}  load before {trial.load:3.1f}"
        + (f"  per instance {spread}" if spread else "")
    )


def report_throughput(trials: list[Trial]) -> None:
    by_label: dict[str, list[Trial]] = {}
    for trial in trials:
        by_label.setdefault(trial.label, []).append(trial)
    base = statistics.median(t.seconds for t in by_label[label(*CONFIGS[0])])
    print(f"medians of {REPEATS} (ratio: SQLite-1's time over this configuration's)")
    print(
        "  configuration    start->all sent  emails/s  ratio  sink first->last"
        "   CPU ms/email: dripd  PG backends  machine busy"
    )
    for name, group in by_label.items():
        seconds = _median(group, "seconds")
        print(
            f"  {name:<16} {seconds:10.1f} s  {EMAILS / seconds:9.0f}  {base / seconds:5.2f}"
            f"  {_median(group, 'sink_span'):12.1f} s  {_per_email(group, 'cpu'):15.2f}"
            f"  {_per_email(group, 'server_cpu'):11.2f}  {_median(group, 'busy'):12.0%}"
        )
    _report_cost(by_label)
    _report_delivery(trials)


def _median(group: list[Trial], field: str) -> float:
    return statistics.median(float(getattr(t, field)) for t in group)


def _per_email(group: list[Trial], field: str) -> float:
    """The median of `field` (seconds), in milliseconds an email."""
    return _median(group, field) / EMAILS * 1000


def _report_cost(by_label: dict[str, list[Trial]]) -> None:
    sqlite = by_label[label(*CONFIGS[0])]
    pg = by_label[label(*CONFIGS[1])]
    wall = [_per_email(g, "seconds") for g in (sqlite, pg)]
    cpu = [_per_email(g, "cpu") + _per_email(g, "server_cpu") for g in (sqlite, pg)]
    print(
        f"  PostgreSQL's cost, one instance: {wall[0]:.2f} -> {wall[1]:.2f} ms an email "
        f"({wall[1] - wall[0]:+.2f} ms, {wall[1] / wall[0]:.2f}x); CPU (dripd + PG backends) "
        f"{cpu[0]:.2f} -> {cpu[1]:.2f} ms an email ({cpu[1] - cpu[0]:+.2f} ms)"
    )


def _report_delivery(trials: list[Trial]) -> None:
    wrong = [t for t in trials if t.arrived != EMAILS or t.distinct != EMAILS]
    if not wrong:
        print(f"  arrived: every trial {EMAILS:,} messages, {EMAILS:,} distinct")
    for t in wrong:
        print(f"  arrived ({t.label}): {t.arrived:,} messages, {t.distinct:,} distinct  <-- wrong")
    _report_problems([line for t in trials for line in t.problems])


def _report_problems(lines: list[str], shown: int = 5) -> None:
    print(f"  warnings or errors logged by dripd: {len(lines)}")
    for line in lines[:shown]:
        print(f"    {line}")


# -- takeover ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Kill:
    lease: float  # seconds from SIGKILL until a live instance holds the watched mailbox
    reply: float  # seconds from SIGKILL until the reply APPENDed then stopped its enrollment
    settle: float  # seconds from starting the replacement until the fleet spread its mailboxes
    killed_held: int  # mailboxes the killed instance held


def settled(db: Database, fleet_size: int) -> bool:
    """Every mailbox held by a live instance; each live instance holds its fair share."""
    alive = {str(i) for i, _ in db.rows(alive_sql())}
    holders = lease_holders(db)
    if len(alive) != fleet_size or set(holders) != set(REPS):
        return False
    if any(h not in alive for h in holders.values()):
        return False
    share = Counter(holders.values())
    return len(share) == fleet_size and max(share.values()) <= math.ceil(len(REPS) / fleet_size)


def reply(address: str, message_id: str, n: int) -> bytes:
    return (
        f"From: <{address}>\r\nTo: {WATCHED}@example.com\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <bench-takeover-{n}@example.org>\r\nIn-Reply-To: {message_id}\r\n"
        "Date: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\nYes, call me tomorrow.\r\n"
    ).encode()


def one_kill(
    n: int,
    db: Database,
    fleet: Fleet,
    dovecot: servers.imap.Dovecot,
    account: servers.imap.ImapAccount,
    target: tuple[str, int, str],
) -> Kill:
    holder = lease_holders(db)[WATCHED]
    assert holder is not None  # the fleet settled: every mailbox held
    pids = dict(db.rows(alive_sql()))
    held = sum(1 for h in lease_holders(db).values() if h == holder)
    victim = fleet.by_pid(int(pids[holder]))
    address, contact_id, message_id = target
    victim.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    appending = threading.Thread(
        target=dovecot.append, args=(account.address, "INBOX", reply(address, message_id, n))
    )
    appending.start()
    victim.wait()
    lease_at = reply_at = None
    deadline = killed + TAKEOVER_TIMEOUT
    while (lease_at is None or reply_at is None) and time.perf_counter() < deadline:
        now = time.perf_counter()
        if lease_at is None and _taken_over(db, holder):
            lease_at = now
        if reply_at is None and _stopped(db, contact_id):
            reply_at = now
        time.sleep(TAKEOVER_POLL)
    appending.join()
    if lease_at is None or reply_at is None:
        raise SystemExit(
            f"kill {n + 1}: no takeover within {TAKEOVER_TIMEOUT} s\n{fleet.log_tail()}"
        )
    started = time.perf_counter()
    fleet.start()
    if not wait_until(lambda: settled(db, FLEET), SETTLE_TIMEOUT, 0.1):
        raise SystemExit(f"kill {n + 1}: the fleet did not settle\n{fleet.log_tail()}")
    return Kill(
        lease=lease_at - killed,
        reply=reply_at - killed,
        settle=time.perf_counter() - started,
        killed_held=held,
    )


def _taken_over(db: Database, dead: str) -> bool:
    holder = lease_holders(db).get(WATCHED)
    alive = {str(i) for i, _ in db.rows(alive_sql())}
    return holder is not None and holder != dead and holder in alive


def _stopped(db: Database, contact_id: int) -> bool:
    active = db.value(
        f"select count(*) from enrollments where contact_id = {contact_id} and status = 'active'"
    )
    return int(active) == 0


def watched_targets(db: Database) -> list[tuple[str, int, str]]:
    """(address, contact id, Message-ID sent) of the watched rep's contacts."""
    rows = db.rows(
        "select recipient, contact_id, message_id from outbox "
        f"where rep = '{WATCHED}' and status = 'sent' and contact_id is not null order by id"
    )
    return [(str(a), int(c), str(m)) for a, c, m in rows]


def takeover(folder: Path, postgres: servers.postgres.Server) -> tuple[list[Kill], list[str]]:
    """The kills' timings, and the warnings and errors the instances logged."""
    campaigns = write_campaigns(folder / "campaigns", TAKEOVER_CAMPAIGN, None)
    contacts = len(REPS) * (KILLS + 2)
    print(
        f"takeover: {FLEET} instances on PostgreSQL, {WATCHED}'s inbox on Dovecot (IDLE); "
        f"SIGKILL the holder of its mailbox, APPEND a reply at once; {KILLS} kills",
        flush=True,
    )
    with (
        servers.smtp_sink.SmtpSinkProcess(folder / "sink.log") as sink,
        servers.imap.Dovecot() as dovecot,
    ):
        account = dovecot.new_user(WATCHED)
        dovecot.fetch_all(account.address)  # the first login creates the Maildir
        os.environ[IMAP_PASSWORD_ENV] = account.password
        url = postgres.create()
        config = write_config(folder / "config.toml", url, campaigns, sink.port, account)
        import_contacts(config, folder, contacts)
        db = Database(url)
        fleet = Fleet(config, folder, "INFO")
        try:
            for _ in range(FLEET):
                fleet.start()
            ready = wait_until(
                lambda: (
                    int(db.value("select count(*) from outbox where status = 'sent'")) >= contacts
                    and settled(db, FLEET)
                ),
                SETTLE_TIMEOUT * 2,
                0.2,
            )
            if not ready:
                raise SystemExit(f"takeover: the fleet did not get going\n{fleet.log_tail()}")
            targets = watched_targets(db)
            kills = []
            for n in range(KILLS):
                time.sleep(1.0)  # the new holder's watcher logs in and IDLEs
                kills.append(one_kill(n, db, fleet, dovecot, account, targets[n]))
                print(f"  kill {n + 1}: {_kill_line(kills[-1])}", flush=True)
        finally:
            fleet.stop()
            db.close()
    return kills, fleet.problems()


def _kill_line(kill: Kill) -> str:
    return (
        f"lease {kill.lease:5.2f} s  reply handled {kill.reply:5.2f} s  "
        f"(it held {kill.killed_held} mailboxes; replacement settled in {kill.settle:4.1f} s)"
    )


def report_takeover(kills: list[Kill], problems: list[str]) -> None:
    print(
        f"takeover after SIGKILL of the instance holding {WATCHED}'s mailbox "
        f"({FLEET} instances on PostgreSQL, IMAP IDLE on Dovecot), {len(kills)} kills"
    )
    for name, values in (
        ("a live instance holds the mailbox", [k.lease for k in kills]),
        ("reply APPENDed at the kill handled", [k.reply for k in kills]),
        ("replacement instance has its share", [k.settle for k in kills]),
    ):
        print(
            f"  {name + ':':<37} median {statistics.median(values):5.1f} s   "
            f"max {max(values):5.1f} s"
        )
    print("  (design: a dead holder's leases are free within TTL + TICK = 10 + 2 s)")
    _report_problems(problems)


# -- main -------------------------------------------------------------------------


def main() -> None:
    folder = common.workdir("instances")
    began = time.perf_counter()
    postgres = servers.postgres.Server.connect(prefix="dripd_bench_")
    if postgres is None:
        raise SystemExit(f"no PostgreSQL at {servers.postgres.URL} (DRIPD_TEST_POSTGRES_URL)")
    try:
        if "throughput" in PARTS:
            report_throughput(throughput(folder / "throughput", postgres))
        if "takeover" in PARTS:
            report_takeover(*takeover(folder / "takeover", postgres))
    finally:
        postgres.close()
    print(f"(whole benchmark: {(time.perf_counter() - began) / 60:.1f} min; files in {folder})")
