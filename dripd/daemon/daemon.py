"""`dripd run`: the daemon that turns due steps into sent emails and rep tasks.

The loop waits on whichever comes first: the next due time in the database,
a poll interval (for changes made by other `dripd` commands), or stop. Each
mailbox has its own sender task; a periodic task copies to the Sent folder.
Every task is supervised (dripd.daemon.supervise): one that fails is logged and
restarted, one the daemon cannot do without stops it, non-zero.
SIGTERM/SIGINT: stop taking new work, let the SMTP transaction in flight
finish and commit, exit 0 within `STOP_GRACE`.
SIGHUP or a saved campaign file: reload between two passes (dripd.daemon.reload).
Under systemd it says READY/RELOADING/STOPPING, what it is doing (STATUS=),
and pings the watchdog while its loop makes progress (dripd.daemon.heartbeat).

Crash rule: dripd.daemon.sent_copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dripd import errors
from dripd.daemon import (
    heartbeat,
    lockfile,
    notify,
    planner,
    reload,
    sender,
    sent_copies,
    supervise,
    watcher,
)
from dripd.daemon.fleet import Fleet
from dripd.files import config
from dripd.mailbox import imap
from dripd.pipeline import digest, plans
from dripd.pipeline.app import App
from dripd.store import enrollments, membership, outbox

logger = logging.getLogger("dripd.daemon")

POLL = 15.0  # seconds: the longest sleep, so other commands' changes are seen
STOP_GRACE = 8.0  # seconds the in-flight sends get after SIGTERM
# seconds, twice: for the tasks cancelled after STOP_GRACE to end, then for the
# mailboxes' SMTP connections to close (all at once): exit well within 10 s
CLOSE_GRACE = 0.5
# Enrollments per engine transaction while senders run. The replies of SMTP
# servers wait while a transaction runs (~12 ms for 100 in session 3: ~30 for 250; its emails are
# rendered before it; and an email whose reply waits is one a crash could leave
# uncertain), but each commit rewrites every index page it touched: at 10 a
# chunk, commits and per-chunk queries were a third of the engine's time
# (docs/developer.md, "Performance history", session 3); on PostgreSQL each
# chunk's round trips stop the loop too: 250 sent 8% more than 100 there
# (3% on SQLite; session 14).
ADVANCE_CHUNK = 250
INBOXES_LISTED = 10  # inboxes named one by one in STATUS=; past that, counted
PASS_STALL = 30.0  # seconds a pass may go without progress before the watchdog pings stop


@dataclass(slots=True)
class Summary:
    queued: int = 0
    tasks: int = 0
    skipped: int = 0
    held: int = 0
    completed: int = 0
    sent: int = 0  # campaign emails
    to_rep: int = 0  # digests and confirmations sent to the reps
    failed: int = 0
    bounced: int = 0
    retried: int = 0
    inbox: int = 0  # incoming messages handled
    digests: int = 0  # digests queued
    reconciled: dict[str, int] = field(default_factory=dict)


def senders(app: App, stop: asyncio.Event, fleet: Fleet) -> dict[str, sender.Sender]:
    """A sender for each mailbox `fleet` holds that sends."""
    return {
        rep.id: _sender(app, rep, stop, fleet)
        for rep in app.config.reps
        if rep.smtp and rep.id in fleet.held
    }


def _sender(app: App, rep: config.RepConfig, stop: asyncio.Event, fleet: Fleet) -> sender.Sender:
    return sender.Sender(
        app, rep, stop, instance=fleet.member.id, may_claim=lambda: fleet.may_work(rep.id)
    )


async def read_inboxes(app: App, reps: Collection[str]) -> int:
    """Read what arrived in the inboxes of `reps` since the last look; how many were new.

    `run --once` does this before anything else, so a reply that came in
    since the last run stops its sequence before the next email goes out. An
    inbox that cannot be read (unreachable, its password missing) is logged
    and skipped: the next run catches up.
    """
    handled = 0
    for rep in app.config.reps:
        if rep.imap is None or rep.id not in reps:
            continue
        box = watcher.Watcher(app, rep, asyncio.Event())
        try:
            handled += await box.read_once()
        except (imap.ImapError, errors.DripdError) as exc:  # its password file missing, no sign-in
            logger.warning(
                "inbox unreachable",
                extra={"action": "inbox_error", "rep": box.rep.id, "error": str(exc)},
            )
    return handled


# -- the loop -------------------------------------------------------------------


async def advance_all(
    app: App,
    summary: Summary,
    on_queued: Callable[[set[str]], None] | None = None,
    on_chunk: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Advance every enrollment that is due now, in small transactions.

    The event loop runs between two chunks and between the emails a chunk
    renders (planner.advance renders before its transaction): the senders send
    what was just queued while the next chunk renders, so rendering overlaps
    the time spent waiting for the SMTP server. A transaction never spans an
    await (SQLite allows one writer: one held across an await would block the
    senders). Once `stop` is set, no new chunk is started: a backlog of tens
    of thousands would otherwise keep SIGTERM waiting past its 10 s.
    """
    while stop is None or not stop.is_set():
        result = await planner.advance(app, app.clock.now(), limit=ADVANCE_CHUNK)
        for name in ("queued", "tasks", "skipped", "held", "completed"):
            setattr(summary, name, getattr(summary, name) + getattr(result, name))
        if on_queued is not None and result.queued:
            on_queued(result.senders)  # the mailboxes with new emails: the others sleep on
        if on_chunk is not None:
            on_chunk()
        if result.enrollments < ADVANCE_CHUNK:
            return
        await asyncio.sleep(0)


async def run_once(app: App) -> Summary:
    """Do what is due now: queue due steps, send what may go, copy to Sent; then return.

    It works the mailboxes no running instance holds (all of them, unless
    daemons run on the same PostgreSQL), and shares the engine's work.
    """
    summary = Summary()
    with lockfile.single_instance(app):
        taken: list[str] = []
        fleet = Fleet.join(
            app, start=lambda rep, _previous: taken.append(rep), stop=_nothing, greedy=True
        )
        done = asyncio.Event()
        keeper = asyncio.create_task(fleet.keep_alive(done, take=False), name="fleet")
        try:
            await fleet.tick()
            summary.reconciled = await sent_copies.reconcile(app, taken)
            plans.replan_changed(app)  # files edited since the last run
            summary.inbox = await read_inboxes(app, taken)
            stop, queued, advanced = asyncio.Event(), asyncio.Event(), asyncio.Event()
            mailboxes = senders(app, stop, fleet)

            async def produce() -> None:
                try:
                    await advance_all(app, summary, lambda _senders: queued.set())
                    # After the engine: the calls and cards due by a slot are tasks by now.
                    summary.digests = digest.queue_due(app, app.clock.now(), taken)
                    queued.set()
                finally:
                    advanced.set()
                    queued.set()

            await asyncio.gather(
                produce(), *(_send_all(box, queued, advanced) for box in mailboxes.values())
            )
            for box in mailboxes.values():
                _add_stats(summary, box.stats)
            await sent_copies.copy_sent(app, taken)
        finally:
            done.set()
            await keeper
            await fleet.leave_all(forget=True)
    return summary


async def _nothing(_rep: str) -> None:
    """`run --once` ends its mailboxes' work itself before it leaves."""


async def _send_all(box: sender.Sender, queued: asyncio.Event, advanced: asyncio.Event) -> None:
    """Send what becomes ready while the engine queues it, then what is left; then close."""
    box.load_history()
    try:
        while True:
            queued.clear()
            finished = advanced.is_set()
            sent = await box.drain()
            if finished and sent == 0:
                return
            if sent == 0:
                await queued.wait()
    finally:
        await box.close()


def _add_stats(summary: Summary, stats: sender.Stats) -> None:
    summary.sent += stats.sent
    summary.to_rep += stats.to_rep
    summary.failed += stats.failed
    summary.bounced += stats.bounced
    summary.retried += stats.retried
    summary.skipped += stats.skipped


class Daemon:
    """The long-running loop, its side tasks, and reloads between its passes.

    Side tasks, all supervised: one sender per rep mailbox (`send-REP`), one
    watcher per rep inbox (`inbox-REP`), the fleet's leases, the
    campaigns-folder watch, the Sent-folder copies, and the service task
    (watchdog and status, under systemd). Each sender and watcher has its own
    halt event, so a reload can replace one: the new one starts once the old
    one has finished the email or message in flight.
    """

    def __init__(self, app: App, notifier: notify.Notifier | None = None) -> None:
        self.app = app
        self.stop = asyncio.Event()
        self.summary = Summary()
        self.notifier = notifier or notify.Notifier.from_environment()
        self.heartbeat = heartbeat.Heartbeat()
        self.mailboxes: dict[str, sender.Sender] = {}
        self.inboxes: dict[str, watcher.Watcher] = {}
        self._logins = asyncio.Semaphore(watcher.LOGINS_AT_ONCE)  # the watchers take turns
        # one per mailbox: a sender clearing its own never hides work from another
        self.wakes: dict[str, asyncio.Event] = {}
        self.supervisor = supervise.Supervisor(self.stop, on_failure=self._note_failure)
        self._tasks = self.supervisor.tasks
        self._halts: dict[str, asyncio.Event] = {}
        self._advance = asyncio.Event()
        self._reload = asyncio.Event()
        self.instance = ""  # its row in the instances table, once running
        self.fleet: Fleet | None = None  # which mailboxes it works, once running
        self._watch = reload.FolderWatch(app.config.campaigns_dir)
        self._rate = heartbeat.SentRate()

    async def run(self) -> Summary:
        with lockfile.single_instance(self.app), on_signals(self.stop, self._reload):
            plans.replan_changed(self.app)  # files edited while dripd was stopped
            fleet = Fleet.join(self.app, start=self._take_mailbox, stop=self._leave_mailbox)
            self.fleet, self.instance = fleet, fleet.member.id
            await fleet.tick()  # the first mailboxes: reconciled, then worked
            taking = [t for name, t in self._tasks.items() if name.startswith("mailbox-")]
            if taking:  # READY means sending and watching (systemd), so wait for them
                await asyncio.wait(taking)
            self._start_task("fleet", lambda: fleet.keep_alive(self.stop), essential=True)
            self._start_task("watch-campaigns", self._watch_campaigns)
            self._start_task("copy-sent", self._copy_sent_every)
            self._start_task("wake-senders", self._wake_when_ready)
            logger.info(
                "dripd running",
                extra={
                    "action": "started",
                    "instance": self.instance,
                    # more may come from other instances (`took mailbox` lines follow)
                    "mailboxes": ",".join(sorted(self._held())) or "none yet",
                },
            )
            self._ready()
            if self.notifier.enabled:
                self._start_task("service", self._tend)
            try:
                await self._main_loop()
            finally:
                await self._shutdown()
        return self.summary

    def _start_task(
        self,
        name: str,
        work: supervise.Work,
        *,
        rep: str | None = None,
        essential: bool = False,
        halt: asyncio.Event | None = None,
    ) -> None:
        self.supervisor.start(name, work, rep=rep, essential=essential, halt=halt)

    def _note_failure(self, _failure: supervise.Failure) -> None:
        """A task failed and will be restarted: `dripd status` and STATUS= say so at once."""
        if self.notifier.enabled:
            self.notifier.status(self.status_line())
        lines = [failure.line() for failure in self.supervisor.failures.values()]
        membership.note_troubles(self.app.engine, self.instance, lines)

    async def _tend(self) -> None:
        await heartbeat.tend(
            self.notifier,
            self.heartbeat,
            self.status_line,
            self.stop,
            ping_every=notify.watchdog_interval(),
        )

    async def _copy_sent_every(self) -> None:
        """Copy the sent emails to the Sent folders every sent_copies.COPY_INTERVAL."""
        while not self.stop.is_set():
            await _wait_any(self.stop, sent_copies.COPY_INTERVAL)
            if not self.stop.is_set():  # the app of the moment: reloads apply too
                await sent_copies.copy_sent(self.app, self._held())

    def _held(self) -> set[str]:
        return set(self.fleet.held) if self.fleet is not None else set()

    async def _main_loop(self) -> None:
        while not self.stop.is_set():
            self.heartbeat.expect_within(PASS_STALL)
            membership.beat(self.app.engine, self.instance, self.app.clock.now())
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()
            await advance_all(self.app, self.summary, self._wake_senders, self._progress, self.stop)
            # After the engine: the calls and cards due by a slot are tasks by now.
            digests = digest.queue_due(self.app, self.app.clock.now(), self._held())
            self.summary.digests += digests
            if digests:
                self._wake_senders()
            # Else each sender sleeps on: emails queued here woke theirs (advance_all),
            # and `_wake_when_ready` finds what other instances queued.
            self.supervisor.raise_if_failed()
            self._advance.clear()
            wait = self._seconds_to_next_due()
            self.heartbeat.expect_within(wait + PASS_STALL)
            await _wait_any(self.stop, wait, self._advance, self._reload, self.supervisor.failed)
        self.supervisor.raise_if_failed()

    def _progress(self) -> None:
        """A chunk of a long pass is done: the loop is alive."""
        self.heartbeat.expect_within(PASS_STALL)

    def _seconds_to_next_due(self) -> float:
        """Until the next due step or digest slot, at most POLL."""
        now = self.app.clock.now()
        with self.app.reader.connect() as conn:
            upcoming = enrollments.due_enrollments(conn, now + timedelta(seconds=POLL), 1)
        times = [now + timedelta(seconds=POLL)]
        if upcoming and upcoming[0].next_due_at is not None:
            times.append(upcoming[0].next_due_at)
        if (slot := digest.next_slot(self.app, now)) is not None:
            times.append(slot)
        return max(0.05, (min(times) - now).total_seconds())

    def _inbox_changed(self, rep_id: str) -> None:
        """A reply may have stopped a sequence: let the main loop look again.

        A command by email may have queued its confirmation: its sender looks too.
        """
        self._advance.set()
        self._wake_senders([rep_id])

    def _wake_senders(self, reps: Collection[str] | None = None) -> None:
        """Let the senders of `reps` (None: all) look for ready emails now."""
        for rep, event in self.wakes.items():
            if reps is None or rep in reps:
                event.set()

    # -- senders and watchers --------------------------------------------------

    def _take_mailbox(self, rep_id: str, previous: str | None) -> None:
        """`rep_id`'s mailbox is now this instance's: reconcile what was left, then work it."""

        async def take() -> None:
            counts = await sent_copies.reconcile(self.app, [rep_id])
            for key, count in counts.items():
                self.summary.reconciled[key] = self.summary.reconciled.get(key, 0) + count
            rep = next((r for r in self.app.config.reps if r.id == rep_id), None)
            if rep is not None and not self.stop.is_set():
                self._start_sender(rep)
                self._start_watcher(rep)

        self._start_task(f"mailbox-{rep_id}", take, rep=rep_id)

    async def _leave_mailbox(self, rep_id: str) -> None:
        """Stop working `rep_id`'s mailbox; returns once the email or message in flight is done."""
        names = (f"mailbox-{rep_id}", f"send-{rep_id}", f"inbox-{rep_id}")
        if (taking := self._tasks.get(names[0])) is not None:
            await asyncio.wait([taking])
        for name in names[1:]:
            self._halt(name)
        self._wake_senders()
        running = [t for name in names[1:] if (t := self._tasks.get(name)) is not None]
        if running:
            await asyncio.wait(running)
        if (box := self.mailboxes.pop(rep_id, None)) is not None:
            self._collect(box)
        self.inboxes.pop(rep_id, None)

    def _start_sender(self, rep: config.RepConfig) -> None:
        if rep.smtp is None or self.fleet is None:
            return
        name = f"send-{rep.id}"
        halt = self._halts[name] = asyncio.Event()
        box = self.mailboxes[rep.id] = _sender(self.app, rep, halt, self.fleet)
        self.wakes.setdefault(rep.id, asyncio.Event())
        self._start_task(name, self._sending(box, halt), rep=rep.id, halt=halt)

    def _start_watcher(self, rep: config.RepConfig) -> None:
        if rep.imap is None or self.fleet is None:
            return
        name = f"inbox-{rep.id}"
        halt = self._halts[name] = asyncio.Event()
        member = self.fleet.member
        box = self.inboxes[rep.id] = watcher.Watcher(
            self.app,
            rep,
            halt,
            on_change=lambda: self._inbox_changed(rep.id),
            fence=lambda conn: member.still_holds(conn, rep.id),
            logins=self._logins,
        )
        self._start_task(name, box.run, rep=rep.id, halt=halt)

    def _sending(self, box: sender.Sender, halt: asyncio.Event) -> supervise.Work:
        """The sender's task; run again after a failure, it first decides what it left `sending`.

        An email it had claimed when it failed was in flight as at a crash:
        found in the Sent folder it is marked sent, else it is sent again.
        """
        runs = 0

        async def work() -> None:
            nonlocal runs
            runs += 1
            if runs > 1:
                await sent_copies.reconcile(self.app, [box.rep.id], instance=self.instance)
            await self._send_loop(box, halt)

        return work

    async def _send_loop(self, box: sender.Sender, halt: asyncio.Event) -> None:
        """Send as emails become ready until `halt`; run again (same box) after a failure.

        Between drains a sender sleeps until it is woken (`_wake_senders`) or
        its mailbox's rest ends: it reads nothing while its mailbox is idle.
        """
        box.load_history()
        wake = self.wakes[box.rep.id]
        while not halt.is_set():
            wake.clear()
            await box.drain()
            self._collect(box)
            await _wait_any(halt, _resting(box, self.app.clock.now()), wake)
        await box.close()

    def _collect(self, box: sender.Sender) -> None:
        _add_stats(self.summary, box.stats)
        box.stats = sender.Stats()

    async def _wake_when_ready(self) -> None:
        """Wake the senders whose mailbox has an email to try now: one read for all mailboxes.

        The engine here wakes the senders it queued for, and so do commands;
        this finds what only the outbox tells: emails queued by other
        instances, and the time come for a retry or a window that opens.
        It looks every POLL, or sooner when the next attempt it saw is sooner.
        (Each sender had read its pauses, its ready emails and its next
        attempt every POLL: at 1,000 idle mailboxes, 5% of a core.)
        """
        while not self.stop.is_set():
            now = self.app.clock.now()
            with self.app.reader.connect() as conn:
                attempts = outbox.next_attempts(conn, now + timedelta(seconds=POLL))
            attempts = {rep: at for rep, at in attempts.items() if rep in self.wakes}
            self._wake_senders([rep for rep, at in attempts.items() if at <= now])
            sooner = [(at - now).total_seconds() for at in attempts.values() if at > now]
            await _wait_any(self.stop, max(0.01, min([POLL, *sooner])))

    def _halt(self, name: str) -> None:
        if (halt := self._halts.pop(name, None)) is not None:
            halt.set()

    # -- reload ----------------------------------------------------------------

    async def _watch_campaigns(self) -> None:
        """Ask for a reload when a file in the campaigns folder is saved, added or removed."""
        while not self.stop.is_set():
            await _wait_any(self.stop, reload.WATCH_INTERVAL)
            if self._watch.folder != self.app.config.campaigns_dir:  # moved by a reload
                self._watch = reload.FolderWatch(self.app.config.campaigns_dir)
            elif self._watch.changed():
                logger.info("campaigns folder changed", extra={"action": "campaigns_changed"})
                self._reload.set()

    def _apply_reload(self) -> None:
        """Read config and campaigns again and switch to them (between two passes)."""
        self.notifier.reloading("reloading config and campaigns")
        self._watch.rebase()
        change = reload.load(self.app)
        if change is not None:
            self._switch(change)
        self._ready()

    def _switch(self, change: reload.Change) -> None:
        """Run on the reloaded app from now on.

        Called between passes: no engine transaction is open, and a sender or
        watcher only uses its app inside synchronous steps, so none sees both.
        Those whose mailbox settings changed are replaced, the others follow.
        """
        self.app = change.app
        if self.fleet is not None:
            self.fleet.app = self.app
        for box in self.mailboxes.values():
            box.app = self.app
        for inbox in self.inboxes.values():
            inbox.app = self.app
        # Mailboxes this instance holds restart on their new settings; a new
        # rep's mailbox is taken by the next tick of the fleet, a removed one let go.
        reps = {rep.id: rep for rep in self.app.config.reps if rep.id in self._held()}
        for rep_id in change.senders:
            self._halt(f"send-{rep_id}")
            self.mailboxes.pop(rep_id, None)
            if rep_id in reps:
                self._start_sender(reps[rep_id])
        for rep_id in change.inboxes:
            self._halt(f"inbox-{rep_id}")
            self.inboxes.pop(rep_id, None)
            if rep_id in reps:
                self._start_watcher(reps[rep_id])
        replanned = self._replan(change)
        logger.info(
            "reloaded config and campaigns",
            extra={"action": "reloaded", **change.summary, "replanned": replanned},
        )

    def _replan(self, change: reload.Change) -> int:
        """Make the enrollments the change concerns due now: the next pass plans them again."""
        if not change.schedule and not change.campaigns:
            return 0
        with self.app.engine.begin() as conn:
            plans.remember_plans(self.app, conn)  # so the next start does not do it again
            return enrollments.recheck_enrollments(
                conn, self.app.clock.now(), None if change.schedule else change.campaigns
            )

    # -- status and stop ---------------------------------------------------------

    def _ready(self) -> None:
        if self.notifier.enabled:
            self.notifier.ready(self.status_line())

    def status_line(self) -> str:
        """What the daemon is doing, for STATUS= (`systemctl status dripd`)."""
        with self.app.reader.connect() as conn:
            backlog = outbox.outbox_backlog(conn)
        total = self.summary.sent + self.summary.to_rep
        total += sum(box.stats.sent + box.stats.to_rep for box in self.mailboxes.values())
        sent = self._rate.last_window(total)
        sending = (
            f"sending: {backlog} queued, {sent} sent in the last minute"
            if self.mailboxes
            else "sending: no mailbox"
        )
        line = f"{sending}; inboxes: {self._inboxes_line()}"
        if failures := self.supervisor.failures:  # first: a long line may be cut
            restarted = ", ".join(
                f"{name} ({f.count}x: {f.error})" for name, f in sorted(failures.items())
            )
            line = f"restarted: {restarted}; {line}"
        return line

    def _inboxes_line(self) -> str:
        """Each inbox and its state; past INBOXES_LISTED, counts and the ones connecting."""
        connecting = sorted(rep for rep, box in self.inboxes.items() if not box.connected.is_set())
        if len(self.inboxes) > INBOXES_LISTED:
            watching = len(self.inboxes) - len(connecting)
            waiting = f", {len(connecting)} connecting ({', '.join(connecting[:5])}" + (
                ", ...)" if len(connecting) > 5 else ")"
            )
            return f"{watching} watching" + (waiting if connecting else "")
        listed = ", ".join(
            f"{rep} {'connecting' if rep in connecting else 'watching'}"
            for rep in sorted(self.inboxes)
        )
        return listed or "none"

    async def _shutdown(self) -> None:
        self.stop.set()
        self.notifier.stopping()
        for name in list(self._halts):
            self._halt(name)
        self._wake_senders()
        logger.info("stopping", extra={"action": "stopping"})
        tasks = list(self._tasks.values())
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_GRACE)
        closing = [asyncio.wait_for(box.close(), CLOSE_GRACE) for box in self.mailboxes.values()]
        for result in await asyncio.gather(*closing, return_exceptions=True):
            if isinstance(result, Exception):
                logger.warning("could not close a mailbox: %s", supervise.describe(result))
        self.notifier.close()
        if self.fleet is not None:
            await self.fleet.leave_all()  # every mailbox free for the other instances at once


def _resting(box: sender.Sender, now: datetime) -> float | None:
    """Seconds until the mailbox's rest ends (a pause, a limit, a failure); None: not resting."""
    if box.resume_at and box.resume_at > now:
        return (box.resume_at - now).total_seconds()
    return None


async def _wait_any(stop: asyncio.Event, seconds: float | None, *events: asyncio.Event) -> None:
    """Until `stop` or one of `events` is set, or `seconds` have passed (None: no limit)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, *events)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@contextlib.contextmanager
def on_signals(stop: asyncio.Event, reload_asked: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM or SIGINT, `reload_asked` on SIGHUP, while inside.

    asyncio's add_signal_handler runs the callback in the loop, so setting the
    events is safe; the default handlers come back on exit.
    """
    loop = asyncio.get_running_loop()
    handlers = {signal.SIGTERM: stop.set, signal.SIGINT: stop.set, signal.SIGHUP: reload_asked.set}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        yield
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)
