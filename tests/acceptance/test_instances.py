"""Several `dripd run` on one PostgreSQL database, as a team runs them (docs/operator.md, "Running
several instances"; issue 7).

- Three instances, three mailboxes, 1,000 due emails: each arrives exactly once. Then SIGKILL
  the instance holding mike's mailbox in the middle of a second batch: the survivors finish,
  only an email the killed instance had in flight may arrive twice (the crash rule), a
  survivor takes mike's mailbox, and a reply delivered during the handover stops its sequence.
- A mailbox's rate limit holds across the fleet, and across a takeover after SIGKILL.
- A digest slot is served once with three instances running (and not again after a handover).
- `dripd status` lists the live instances and what each holds; a clean stop hands its
  mailboxes on within seconds; an instance running other campaign files is reported.
- `dripd migrate` while instances run: the schema is current, nothing stops.

Every `dripd` is a subprocess of the installed console script. PostgreSQL on 127.0.0.1 (a
clone of the migrated template per test), the aiosmtpd sink in its own process, a private
Dovecot for mike's inbox (`tests/servers/`). No mocks. The tests read the database
directly (read-only) to find who holds what at the moment of a kill.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import servers.imap
import servers.loopback
import servers.smtp_sink
import sqlalchemy as sa
import userfiles

from dripd.store import engine as store_engine
from dripd.store import membership

pytestmark = pytest.mark.postgres

IMAP_PASSWORD_ENV = "DRIPD_TEST_IMAP_PASSWORD"
START = 30.0  # seconds a dripd process may take to get going on a loaded machine
TAKEOVER = 30.0  # seconds: the bound for a survivor to take a dead holder's mailbox
CLEAN_HANDOVER = 5.0  # seconds: after SIGTERM, leases are released at once, taken within a tick
TICK = membership.TICK  # seconds between lease renewals and looks for free mailboxes
FIRST_BATCH = 1000
SECOND_BATCH = 600
REPS = ("mike", "sam", "kim")

INTRO = userfiles.campaign(
    "Intro",
    userfiles.hello_step(),
    userfiles.email_step(
        "follow-up",
        wait="10 minutes",
        subject="Following up",
        body="Hi {{ contact.first_name }}, any questions about {{ contact.company }}?\n",
    ),
    stage="prospect",
    promote_on_reply="lead",
    send_window="daily 00:00-24:00",
)

MEETING = """\
name = "Meeting"
stage = "prospect"

[[steps]]
id = "call"
kind = "call"
wait = "0m"
note = "Call {{ contact.first_name }} at {{ contact.company }} about the meeting."
"""


# -- servers and the database ----------------------------------------------------


# -- the fleet -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Rep:
    id: str
    max_per_hour: int = 1_000_000
    digest: str | None = None  # None: a daily slot hours away (no digest during the test)
    imap: servers.imap.ImapAccount | None = None

    @property
    def email(self) -> str:
        return f"{self.id}@example.com"


@dataclass(slots=True)
class Instance:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _slot(offset: timedelta) -> str:
    """`daily HH:MM` at now + offset (UTC, the reps' zone here)."""
    return f"daily {datetime.now(UTC) + offset:%H:%M}"


class Fleet:
    """One database, one config (and campaigns folder), the `dripd run` processes on it."""

    def __init__(
        self,
        folder: Path,
        database: str,
        sink: servers.smtp_sink.SmtpSinkProcess,
        reps: list[Rep],
        campaigns: dict[str, str],
    ) -> None:
        self.folder = folder
        self.database = database
        self.sink = sink
        self.reps = reps
        self.instances: list[Instance] = []
        self.imported = 0
        self.owners: dict[str, str] = {}  # contact address -> rep id
        (folder / "attachments").mkdir(exist_ok=True)
        self.config = self.write_config("config.toml", "campaigns", campaigns)
        self.engine = sa.create_engine(store_engine.engine_url(database), pool_size=2)
        passwords = [r.imap.password for r in reps if r.imap is not None]
        assert len(passwords) <= 1, "one IMAP account per fleet in these tests"
        self.env = userfiles.dripd_env(DRIPD_LOG_LEVEL="INFO")
        if passwords:
            self.env[IMAP_PASSWORD_ENV] = passwords[0]

    def write_config(self, name: str, campaigns_folder: str, campaigns: dict[str, str]) -> Path:
        folder = self.folder / campaigns_folder
        folder.mkdir(exist_ok=True)
        for campaign, text in campaigns.items():
            (folder / f"{campaign}.toml").write_text(text, encoding="utf-8")
        text = userfiles.config(
            self.database,
            folder,
            *(self._rep_toml(rep) for rep in self.reps),
            attachments=self.folder / "attachments",
            send_window="daily 00:00-24:00",
        )
        path = self.folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def _rep_toml(self, rep: Rep) -> str:
        smtp = userfiles.smtp_mailbox(
            self.sink.port, max_per_hour=rep.max_per_hour, max_per_day=rep.max_per_hour * 24
        )
        imap = None
        if rep.imap is not None:
            imap = userfiles.imap_mailbox(
                rep.imap.address,
                rep.imap.port,
                password_env=IMAP_PASSWORD_ENV,
                sent_folder="Sent",
            )
        return userfiles.rep(
            rep.id,
            name=f"{rep.id.title()} Rep",
            email=rep.email,
            digest=rep.digest or _slot(timedelta(hours=6)),
            smtp=smtp,
            imap=imap,
        )

    # -- commands

    def argv(self, *args: str, config: Path | None = None) -> list[str]:
        return [userfiles.DRIPD, "--config", str(config or self.config), *args]

    def dripd(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args, config=config),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )

    def import_contacts(self, count: int, campaign: str = "intro") -> dict[str, str]:
        """Import `count` new contacts, owners spread over the reps, enrolled; address -> owner."""
        first = self.imported
        owners = {
            f"c{i}@example.org": self.reps[i % len(self.reps)].id
            for i in range(first, first + count)
        }
        lines = ["email,first_name,company,owner"]
        lines += [f"{a},First{i},Company {i},{o}" for i, (a, o) in enumerate(owners.items(), first)]
        csv = self.folder / f"contacts-{first}.csv"
        csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
        result = self.dripd("contacts", "import", str(csv), "--enroll", campaign)
        assert result.returncode == 0, result.stderr
        assert f"{count} created" in result.stdout, result.stdout
        self.imported += count
        self.owners.update(owners)
        return owners

    def status(self, config: Path | None = None) -> dict[str, Any]:
        result = self.dripd("status", "--json", config=config)
        assert result.returncode == 0, result.stderr
        health: dict[str, Any] = json.loads(result.stdout)["health"]
        return health

    def status_text(self) -> str:
        result = self.dripd("status")
        assert result.returncode == 0, result.stderr
        return result.stdout

    # -- processes

    def start(self, name: str, config: Path | None = None) -> Instance:
        log = self.folder / f"{name}.stderr"
        with log.open("ab") as stderr:
            proc = subprocess.Popen(
                self.argv("run", config=config),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=self.env,
            )
        instance = Instance(name=name, proc=proc, log=log)
        self.instances.append(instance)
        return instance

    def wait_running(self, *instances: Instance) -> None:
        """Until each has registered and is alive in the database."""
        pending = list(instances)

        def started() -> bool:
            alive = self.alive_pids()
            return all(i.pid in alive or i.proc.poll() is not None for i in pending)

        _wait(started, START, f"{', '.join(i.name for i in pending)} to start")
        for instance in pending:
            assert instance.proc.poll() is None, instance.text()

    def kill(self, instance: Instance) -> None:
        instance.proc.send_signal(signal.SIGKILL)
        assert instance.proc.wait(10) == -signal.SIGKILL, instance.text()

    def terminate(self, instance: Instance) -> None:
        instance.proc.send_signal(signal.SIGTERM)
        assert instance.proc.wait(20) == 0, instance.text()

    def by_id(self, instance_id: str) -> Instance:
        pid = self.query("select pid from instances where id = :id", id=instance_id)[0][0]
        return next(i for i in self.instances if i.pid == pid)

    def stop_all(self) -> None:
        for instance in self.instances:
            if instance.proc.poll() is None:
                instance.proc.kill()
                instance.proc.wait()
        self.engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"== {i.name} (pid {i.pid})\n{i.text()}" for i in self.instances)

    # -- the database (read-only)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]

    def alive_pids(self) -> set[int]:
        rows = self.query(
            "select pid from instances where stopped_at is null "
            "and expires_at > extract(epoch from clock_timestamp())"
        )
        return {pid for (pid,) in rows}

    def holder(self, rep: str) -> str | None:
        """The live instance holding `rep`'s mailbox, if any."""
        rows = self.query(
            "select l.holder from leases l join instances i on i.id = l.holder "
            "where l.name = :rep and i.stopped_at is null "
            "and i.expires_at > extract(epoch from clock_timestamp())",
            rep=rep,
        )
        return rows[0][0] if rows else None

    def leases(self) -> list[tuple[Any, ...]]:
        """(rep, holder's pid, holder alive) for each lease."""
        return self.query(
            "select l.name, i.pid, i.stopped_at is null "
            "and i.expires_at > extract(epoch from clock_timestamp()) "
            "from leases l left join instances i on i.id = l.holder order by l.name"
        )

    def outbox(self, where: str = "true", **params: Any) -> list[tuple[str, str, str, str]]:
        """(message_id, recipient, rep, status) of campaign emails (contact_id set)."""
        return [
            (m, r, rep, s)
            for m, r, rep, s in self.query(
                "select message_id, recipient, rep, status from outbox "
                f"where contact_id is not null and ({where})",
                **params,
            )
        ]

    def statuses(self) -> dict[str, int]:
        return dict(
            self.query(
                "select status, count(*) from outbox where contact_id is not null group by status"
            )
        )

    def to_contacts(self) -> list[servers.smtp_sink.SinkRecord]:
        """What the sink received for contacts (not digests to the reps)."""
        return [r for r in self.sink.records() if r.rcpt_tos[0] in self.owners]


@pytest.fixture
def fleet_of(
    tmp_path: Path, postgres_url: str, smtp_sink: servers.smtp_sink.SmtpSinkProcess
) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(reps: list[Rep], campaigns: dict[str, str] | None = None) -> Fleet:
        fleet = Fleet(tmp_path, postgres_url, smtp_sink, reps, campaigns or {"intro": INTRO})
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.stop_all()


def _wait(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    detail: Callable[[], object] | None = None,
) -> float:
    """Poll until `predicate()`; the seconds it took (AssertionError after `timeout`)."""
    started = time.monotonic()
    if not servers.loopback.wait_until(predicate, timeout, interval=0.05):
        seen = f"; seen: {detail()}" if detail is not None else ""
        raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
    return time.monotonic() - started


def _settled(fleet: Fleet, instances: list[Instance], timeout: float) -> dict[int, list[str]]:
    """Wait until `dripd status` shows exactly `instances` alive, each rep held once, shared
    fairly; pid -> mailboxes held."""
    pids = {i.pid for i in instances}
    share = -(-len(fleet.reps) // len(instances))  # ceil: the most one instance may hold
    last: dict[int, list[str]] = {}

    def settled() -> bool:
        nonlocal last
        last = _holds(fleet.status())
        return (
            set(last) == pids
            and _held(last) == sorted(r.id for r in fleet.reps)
            and all(len(held) <= share for held in last.values())
        )

    _wait(
        settled,
        timeout,
        "the mailboxes to be shared by the live instances",
        lambda: f"status {last}, leases {fleet.leases()}",
    )
    return last


def _no_traceback(fleet: Fleet) -> None:
    for instance in fleet.instances:
        assert "Traceback" not in instance.text(), f"{instance.name}:\n{instance.text()}"


def _holds(health: dict[str, Any]) -> dict[int, list[str]]:
    """pid -> mailboxes held, for the live instances in `dripd status --json`."""
    return {i["pid"]: sorted(i["holds"]) for i in health["instances"] if i["alive"]}


def _held(holds: dict[int, list[str]]) -> list[str]:
    """Every mailbox held by some instance, sorted (a mailbox held twice appears twice)."""
    return sorted(rep for reps in holds.values() for rep in reps)


def _reply(contact: str, rep: str, to_msgid: str, *, msgid: str) -> bytes:
    return (
        f"From: Contact <{contact}>\r\nTo: {rep}\r\nSubject: Re: Hello\r\n"
        f"Date: {datetime.now(UTC):%a, %d %b %Y %H:%M:%S +0000}\r\n"
        f"Message-ID: {msgid}\r\nIn-Reply-To: {to_msgid}\r\nReferences: {to_msgid}\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Yes, let's talk next week. Call me on Tuesday.\r\n\r\n"
        f"On a weekday, {rep} wrote:\r\n> Hi,\r\n> A short note.\r\n"
    ).encode()


# -- 1. three instances, 1,000 emails, one killed ----------------------------------


@pytest.mark.timeout(300)
def test_three_instances_send_every_email_once_and_survive_losing_one(
    fleet_of: Callable[..., Fleet], private_dovecot: servers.imap.Dovecot
) -> None:
    began = time.monotonic()
    mike_box = private_dovecot.new_user("mike")
    fleet = fleet_of([Rep(id="mike", imap=mike_box), Rep(id="sam"), Rep(id="kim")])
    first = fleet.import_contacts(FIRST_BATCH)
    trio = [fleet.start(name) for name in ("a", "b", "c")]
    fleet.wait_running(*trio)

    def delivered() -> set[str]:
        return {r.message_id for r in fleet.to_contacts()}

    _wait(lambda: len(delivered()) >= FIRST_BATCH, 90, f"{FIRST_BATCH} first emails")
    _wait(lambda: fleet.statuses() == {"sent": FIRST_BATCH}, 30, "every row to be sent")
    first_wave = time.monotonic() - began
    arrivals = Counter(r.message_id for r in fleet.to_contacts())
    expected = {m for m, _, _, _ in fleet.outbox()}
    assert len(expected) == FIRST_BATCH
    assert set(arrivals) == expected, "lost or unknown Message-IDs"
    twice = {m: n for m, n in arrivals.items() if n > 1}
    assert twice == {}, f"sent more than once with no instance lost: {twice}"
    assert sorted(r.rcpt_tos[0] for r in fleet.to_contacts()) == sorted(first)
    # Each email went from its owner's mailbox (the rep the contact belongs to).
    assert all(first[recipient] == rep for _, recipient, rep, _ in fleet.outbox())

    # Fair share: with three live instances, one mailbox each.
    _settled(fleet, trio, 3 * TICK)

    # A second batch; while mike's emails of it go out, SIGKILL the holder of mike's mailbox.
    second = fleet.import_contacts(SECOND_BATCH)
    mikes = {a for a, owner in second.items() if owner == "mike"}

    def mike_arrived() -> int:
        return len({r.message_id for r in fleet.to_contacts() if r.rcpt_tos[0] in mikes})

    _wait(lambda: mike_arrived() >= 5, 60, "mike's emails of the second batch")
    holder_id = fleet.holder("mike")
    assert holder_id is not None
    victim = fleet.by_id(holder_id)
    fleet.kill(victim)
    killed_at = time.monotonic()
    arrived_at_kill = mike_arrived()
    # The killed instance's claims, frozen until a survivor reconciles them (after its TTL).
    in_flight = {
        m
        for (m,) in fleet.query(
            "select message_id from outbox where status = 'sending' and claimed_by = :id",
            id=holder_id,
        )
    }
    assert arrived_at_kill < len(mikes), "the kill came after mike's emails were all sent"

    # Right after the kill, one of mike's contacts answers its first email.
    replier = next(a for a, owner in first.items() if owner == "mike")
    control = [a for a, owner in first.items() if owner == "mike"][1]
    ((first_msgid,),) = fleet.query(
        "select message_id from outbox where recipient = :a and step = 'hello'", a=replier
    )
    private_dovecot.deliver(
        mike_box.address, _reply(replier, "mike@example.com", first_msgid, msgid="<r1@x.org>")
    )

    survivors = [i for i in trio if i is not victim]
    taken = _wait(
        lambda: (h := fleet.holder("mike")) is not None and h != holder_id,
        TAKEOVER,
        "a survivor to take mike's mailbox",
    )
    assert fleet.by_id(fleet.holder("mike") or "") in survivors

    def replies() -> int:
        return int(
            fleet.query(
                "select count(*) from events e join contacts c on c.id = e.contact_id "
                "where c.email = :a and e.kind = 'replied'",
                a=replier,
            )[0][0]
        )

    # The new holder's watcher reads from the checkpoint the dead one left: the reply.
    _wait(lambda: replies() > 0, TAKEOVER + START - taken, "the reply to be handled")
    replied_in = time.monotonic() - killed_at

    total = FIRST_BATCH + SECOND_BATCH
    _wait(
        lambda: fleet.statuses() == {"sent": total} and len(delivered()) >= total,
        60,
        "the survivors to finish every email",
        fleet.statuses,
    )

    # Nothing lost; a duplicate only for an email the killed instance had in flight.
    records = fleet.to_contacts()
    arrivals = Counter(r.message_id for r in records)
    expected = {m for m, _, _, _ in fleet.outbox()}
    assert len(expected) == total
    assert set(arrivals) == expected, "lost or unknown Message-IDs"
    twice = {m: n for m, n in arrivals.items() if n > 1}
    assert set(twice) <= in_flight, f"duplicates not explained by the crash rule: {twice}"
    assert all(n == 2 for n in twice.values()), twice
    by_recipient: dict[str, set[str]] = {}
    for record in records:
        assert len(record.rcpt_tos) == 1
        by_recipient.setdefault(record.rcpt_tos[0], set()).add(record.message_id)
    assert sorted(by_recipient) == sorted(fleet.owners)
    assert all(len(ids) == 1 for ids in by_recipient.values())

    # The reply stopped its sequence and promoted the contact; the others go on.
    enrollments = dict(
        fleet.query(
            "select c.email, e.status from enrollments e join contacts c on c.id = e.contact_id "
            "where c.email in (:a, :b)",
            a=replier,
            b=control,
        )
    )
    assert enrollments == {replier: "stopped", control: "active"}
    assert replies() == 1  # handled once, not again by another holder
    assert fleet.query("select count(*) from inbox_messages where rep = 'mike'") == [(1,)]
    assert fleet.query("select stage from contacts where email = :a", a=replier) == [("lead",)]
    assert fleet.outbox("recipient = :a and step <> 'hello'", a=replier) == []

    _settled(fleet, survivors, 3 * TICK)
    dead = next(i for i in fleet.status()["instances"] if i["pid"] == victim.pid)
    assert dead["alive"] is False and dead["holds"] == []
    for instance in survivors:
        fleet.terminate(instance)
    _no_traceback(fleet)
    print(
        f"\nfirst {FIRST_BATCH} in {first_wave:.1f} s; killed {victim.name} with "
        f"{len(in_flight)} in flight ({arrived_at_kill}/{len(mikes)} of mike's second batch "
        f"sent); mike's mailbox taken after {taken:.1f} s; reply handled {replied_in:.1f} s "
        f"after the kill; duplicates {len(twice)}; total {time.monotonic() - began:.1f} s"
    )


# -- 2. a mailbox's rate limit across the fleet ------------------------------------


def test_a_rate_limit_holds_across_instances_and_a_takeover(
    fleet_of: Callable[..., Fleet],
) -> None:
    # 60 an hour allows 10 in any 10 minutes (dripd.plan.ratelimit): 30 due, 10 may go.
    fleet = fleet_of([Rep(id="mike", max_per_hour=60)])
    fleet.import_contacts(30)
    trio = [fleet.start(name) for name in ("a", "b", "c")]
    fleet.wait_running(*trio)
    fleet.sink.wait_for(10, timeout=60)
    _wait(
        lambda: fleet.statuses() == {"sent": 10, "queued": 20},
        30,
        "30 rows, 10 sent",
        fleet.statuses,
    )
    time.sleep(2 * TICK)  # more would have gone by now if any instance could send
    assert len(fleet.sink.records()) == 10

    holder_id = fleet.holder("mike")
    assert holder_id is not None
    victim = fleet.by_id(holder_id)
    fleet.kill(victim)
    _wait(
        lambda: (h := fleet.holder("mike")) is not None and h != holder_id,
        TAKEOVER,
        "a survivor to take mike's mailbox",
    )
    heir = fleet.by_id(fleet.holder("mike") or "")
    time.sleep(3 * TICK)  # the new holder has loaded the history and would send by now
    assert heir.proc.poll() is None, heir.text()
    assert len(fleet.sink.records()) == 10, "the new holder sent past the hour's allowance"
    assert fleet.statuses() == {"sent": 10, "queued": 20}
    for instance in trio:
        if instance is not victim:
            fleet.terminate(instance)
    _no_traceback(fleet)


# -- 3. a digest once per slot -------------------------------------------------------


def test_a_digest_slot_is_served_once_by_three_instances(
    fleet_of: Callable[..., Fleet],
) -> None:
    slot = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=3)
    mike = Rep(id="mike", digest=f"daily {slot:%H:%M}")
    fleet = fleet_of([mike], {"meeting": MEETING})
    fleet.import_contacts(3, campaign="meeting")  # a call each, due now: the digest has news
    trio = [fleet.start(name) for name in ("a", "b", "c")]
    fleet.wait_running(*trio)

    def digests() -> list[servers.smtp_sink.SinkRecord]:
        return [r for r in fleet.sink.records() if r.rcpt_tos == (mike.email,)]

    _wait(
        lambda: digests(),
        START,
        "the digest",
        lambda: (
            f"digests {fleet.query('select slot_at, message_id from digests')}, "
            f"tasks {fleet.query('select id, due_at, created_at from tasks')}"
        ),
    )
    time.sleep(3 * TICK)
    assert len(digests()) == 1, digests()
    rows = fleet.query("select slot_at, message_id from digests where rep = 'mike'")
    assert rows == [(slot.replace(tzinfo=None), digests()[0].message_id)]
    assert fleet.query("select count(*) from tasks where status = 'open'") == [(3,)]

    # Its holder stops; the next holder does not serve the slot again.
    holder_id = fleet.holder("mike")
    assert holder_id is not None
    leaving = fleet.by_id(holder_id)
    fleet.terminate(leaving)
    _wait(
        lambda: (h := fleet.holder("mike")) is not None and h != holder_id,
        CLEAN_HANDOVER,
        "another instance to take mike's mailbox",
    )
    time.sleep(2 * TICK)
    assert len(digests()) == 1, digests()
    assert len(fleet.sink.records()) == 1  # nothing to the contacts: call steps only
    for instance in trio:
        if instance is not leaving:
            fleet.terminate(instance)
    _no_traceback(fleet)


# -- 4. dripd status: instances, holds, handover, campaign mismatch ----------------


def test_status_lists_the_instances_and_reports_a_campaign_mismatch(
    fleet_of: Callable[..., Fleet],
) -> None:
    fleet = fleet_of([Rep(id=r) for r in REPS])
    trio = [fleet.start(name) for name in ("a", "b", "c")]
    fleet.wait_running(*trio)
    holds = _settled(fleet, trio, 15)
    health = fleet.status()
    assert len({i["campaigns"] for i in health["instances"] if i["alive"]}) == 1
    assert not any("campaign" in line for line in health["attention"]), health["attention"]

    text = fleet.status_text()
    assert "daemon: 3 instances running" in text, text
    table = text.split("instances", 1)[1]
    for instance in trio:
        (line,) = [ln for ln in table.splitlines() if f" {instance.pid} " in ln]
        assert holds[instance.pid][0] in line, text

    # A clean stop releases its mailbox at once; another instance takes it within a tick.
    leaving = trio[1]
    released = holds[leaving.pid]
    stopped_at = time.monotonic()
    fleet.terminate(leaving)
    _wait(
        lambda: all(fleet.holder(rep) is not None for rep in released),
        CLEAN_HANDOVER,
        f"{released} to be taken over",
        fleet.leases,
    )
    handover = time.monotonic() - stopped_at  # from the SIGTERM: its exit included
    assert handover < CLEAN_HANDOVER, f"{released} taken {handover:.1f} s after the SIGTERM"
    _settled(fleet, [trio[0], trio[2]], 2 * TICK)
    gone = next(i for i in fleet.status()["instances"] if i["pid"] == leaving.pid)
    assert gone["alive"] is False and gone["stopped_at"] is not None and gone["holds"] == []
    assert "daemon: 2 instances running" in fleet.status_text()

    # An instance with other campaign files: reported in status and in the log.
    other = fleet.write_config("other.toml", "campaigns-other", {"intro": INTRO})
    edited = fleet.folder / "campaigns-other" / "intro.toml"
    edited.write_text(INTRO.replace("A short note", "A shorter note"), encoding="utf-8")
    odd = fleet.start("odd", config=other)
    fleet.wait_running(odd)

    def mismatch() -> list[str]:
        return [line for line in fleet.status()["attention"] if "campaign" in line]

    _wait(mismatch, 10, "the campaign mismatch in status")
    (line,) = mismatch()
    health = fleet.status()
    (odd_hash,) = [i["campaigns"] for i in health["instances"] if i["pid"] == odd.pid]
    assert odd_hash not in {i["campaigns"] for i in health["instances"] if i["pid"] != odd.pid}
    assert str(odd.pid) in line and odd_hash in line, line
    # The text says it too (rich wraps lines; the instances may be listed in another order).
    flat = " ".join(fleet.status_text().split())
    assert " ".join(line.split("(")[0].split()) in flat, flat
    assert f"{odd.pid}: {odd_hash}" in flat, flat
    _wait(
        lambda: any(
            ln.startswith("warning") and "campaign" in ln
            for instance in fleet.instances
            for ln in instance.text().splitlines()
        ),
        10,
        "a warning about the campaigns in a log",
    )
    fleet.terminate(odd)
    _wait(lambda: not mismatch(), 10, "the mismatch to clear once the odd instance stopped")
    for instance in (trio[0], trio[2]):
        fleet.terminate(instance)
    _no_traceback(fleet)
    print(f"\nhandover after SIGTERM: {handover:.1f} s")


# -- 5. dripd migrate beside running instances --------------------------------------


def test_migrate_while_instances_run_says_the_schema_is_current(
    fleet_of: Callable[..., Fleet],
) -> None:
    fleet = fleet_of([Rep(id="mike")])
    pair = [fleet.start(name) for name in ("a", "b")]
    fleet.wait_running(*pair)
    result = fleet.dripd("migrate")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    said = (result.stdout + result.stderr).lower()
    assert store_engine.HEAD in said, said
    assert any(word in said for word in ("current", "up to date")), said
    result = fleet.dripd("migrate", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "before": store_engine.HEAD,
        "after": store_engine.HEAD,
        "migrated": False,
    }
    time.sleep(TICK)
    assert fleet.alive_pids() == {i.pid for i in pair}
    for instance in pair:
        fleet.terminate(instance)
    _no_traceback(fleet)


# -- 6. the database goes away under running instances ---------------------------------


def test_instances_exit_with_one_line_when_the_database_goes_away(
    fleet_of: Callable[..., Fleet], postgres_template: tuple[sa.Engine, str]
) -> None:
    """PostgreSQL stops taking connections: each instance exits with one line (systemd restarts)."""
    fleet = fleet_of([Rep(id="mike"), Rep(id="sam")])
    pair = [fleet.start(name) for name in ("a", "b")]
    fleet.wait_running(*pair)
    fleet.engine.dispose()
    admin, _ = postgres_template
    name = sa.engine.make_url(fleet.database).database
    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n"),
            {"n": name},
        )
    try:
        for instance in pair:
            code = instance.proc.wait(60)
            lines = [line for line in instance.text().splitlines() if line.startswith("dripd:")]
            assert code == 75, instance.text()
            assert len(lines) == 1 and lines[0].startswith("dripd: database unavailable: "), lines
            assert "Traceback" not in instance.text()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
