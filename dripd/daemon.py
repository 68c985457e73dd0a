"""`dripd run`: the daemon that turns due steps into sent emails and rep tasks.

The loop waits on whichever comes first: the next due time in the database,
a poll interval (for changes made by other `dripd` commands), or stop. Each
mailbox has its own sender task. APScheduler runs the periodic jobs (copies
to the Sent folder). SIGTERM/SIGINT: stop taking new work, let the SMTP
transaction in flight finish and commit, exit 0 within `STOP_GRACE`.

Crash rule (documented in the README): an email whose state is `sending` at
start was in flight when dripd died. If the rep's Sent folder (IMAP) has its
Message-ID, it went out and is marked sent; otherwise it is sent again. A
duplicate is therefore possible only for an email whose data had reached the
server before dripd recorded the server's answer (at most one per SMTP
connection per crash), and only when the server keeps no copy in Sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO

import sqlalchemy as sa
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from dripd import config, digest, engine, errors, imap, outbox, sender, watcher
from dripd.app import App
from dripd.store import queries

logger = logging.getLogger("dripd.daemon")

POLL = 15.0  # seconds: the longest sleep, so other commands' changes are seen
STOP_GRACE = 8.0  # seconds the in-flight sends get after SIGTERM
COPY_INTERVAL = 30  # seconds between Sent-folder copy runs
COPY_BATCH = 100
# Enrollments per engine transaction while senders run: small, because the
# replies of SMTP servers wait while a chunk renders (and an email whose
# reply waits is one a crash could leave uncertain).
ADVANCE_CHUNK = 10


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


@contextlib.contextmanager
def single_instance(app: App) -> Iterator[None]:
    """Refuse a second `dripd run` on the same SQLite database (it would send twice)."""
    url = sa.engine.make_url(app.config.database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        yield
        return
    path = Path(url.database + ".lock")
    handle: IO[str] = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise errors.DripdError(
            f"another dripd run ({holder}) is using {url.database}; one instance per SQLite "
            "database — for several instances use PostgreSQL"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def senders(app: App, stop: asyncio.Event) -> dict[str, sender.Sender]:
    return {rep.id: sender.Sender(app, rep, stop) for rep in app.config.reps if rep.smtp}


def watchers(
    app: App, stop: asyncio.Event, on_change: Callable[[], None] | None = None
) -> dict[str, watcher.Watcher]:
    return {
        rep.id: watcher.Watcher(app, rep, stop, on_change=on_change)
        for rep in app.config.reps
        if rep.imap
    }


async def read_inboxes(app: App) -> int:
    """Read what arrived in every rep's inbox since the last look; how many messages were new.

    `run --once` does this before anything else, so a reply that came in
    since the last run stops its sequence before the next email goes out. An
    unreachable inbox is logged and skipped (the next run catches up).
    """
    handled = 0
    for box in watchers(app, asyncio.Event()).values():
        try:
            handled += await box.read_once()
        except imap.ImapError as exc:
            logger.warning(
                "inbox unreachable",
                extra={"action": "inbox_error", "rep": box.rep.id, "error": str(exc)},
            )
    return handled


# -- crash recovery ---------------------------------------------------------------


async def reconcile(app: App) -> dict[str, int]:
    """Decide the emails left `sending` by a crash: sent (found in Sent) or queued again."""
    with app.reader.connect() as conn:
        uncertain = outbox.in_state(conn, "sending")
    counts = {"found_sent": 0, "requeued": 0}
    for row in uncertain:
        found = await _in_sent_folder(app, row)
        now = app.clock.now()
        with app.engine.begin() as conn:
            if found:
                outbox.mark_sent(conn, row, now)
                outbox.mark_copied(conn, [row.id], now)
                counts["found_sent"] += 1
            else:
                outbox.requeue(conn, row, now, "in flight at a crash; not in the Sent folder")
                counts["requeued"] += 1
    with app.engine.begin() as conn:
        while outbox.record_sent(conn, app.clock.now()):
            pass
    if uncertain:
        logger.warning(
            "reconciled emails in flight at the last stop", extra={"action": "reconciled", **counts}
        )
    return counts


async def _in_sent_folder(app: App, row: outbox.Row) -> bool:
    rep = next((r for r in app.config.reps if r.id == row.rep), None)
    if rep is None or rep.imap is None or not rep.imap.sent_folder:
        return False
    try:
        async with imap.Session(rep.imap, rep.imap.password()) as session:
            return await session.find_message_id(rep.imap.sent_folder, row.message_id)
    except (imap.ImapError, errors.ConfigError) as exc:
        logger.warning("cannot check the Sent folder: %s", exc, extra={"rep": rep.id})
        return False


# -- Sent-folder copies ---------------------------------------------------------


async def copy_sent(app: App) -> int:
    """Save a copy of each sent email in its rep's Sent folder; how many were copied."""
    copied = 0
    for rep in app.config.reps:
        if rep.imap is None or not rep.imap.sent_folder:
            continue
        with app.reader.connect() as conn:
            rows = outbox.uncopied(conn, rep.id, COPY_BATCH)
        if rows:
            copied += await _copy_rows(app, rep.imap, rows)
    return copied


async def _copy_rows(app: App, settings: config.ImapConfig, rows: list[outbox.Row]) -> int:
    done: list[int] = []
    try:
        async with imap.Session(settings, settings.password()) as session:
            for row in rows:
                await session.append(settings.sent_folder or "Sent", row.message)
                done.append(row.id)
    except (imap.ImapError, errors.ConfigError) as exc:
        logger.warning("cannot copy to the Sent folder: %s", exc, extra={"action": "copy_failed"})
    with app.engine.begin() as conn:
        outbox.mark_copied(conn, done, app.clock.now())
    return len(done)


# -- the loop -------------------------------------------------------------------


async def advance_all(
    app: App, summary: Summary, on_queued: Callable[[], None] | None = None
) -> None:
    """Advance every enrollment that is due now, in small transactions.

    Between two chunks the event loop runs: the senders send what was just
    queued while the next chunk renders, so rendering overlaps the time spent
    waiting for the SMTP server. A chunk never spans an await (SQLite allows
    one writer: a transaction held across an await would block the senders).
    """
    while True:
        result = engine.advance_due(app, app.clock.now(), limit=ADVANCE_CHUNK)
        for name in ("queued", "tasks", "skipped", "held", "completed"):
            setattr(summary, name, getattr(summary, name) + getattr(result, name))
        if on_queued is not None and result.queued:
            on_queued()
        if result.enrollments < ADVANCE_CHUNK:
            return
        await asyncio.sleep(0)


async def run_once(app: App) -> Summary:
    """Do what is due now: queue due steps, send what may go, copy to Sent; then return."""
    summary = Summary()
    with single_instance(app):
        summary.reconciled = await reconcile(app)
        summary.inbox = await read_inboxes(app)
        summary.digests = digest.queue_due(app, app.clock.now())
        stop, queued, advanced = asyncio.Event(), asyncio.Event(), asyncio.Event()
        mailboxes = senders(app, stop)

        async def produce() -> None:
            try:
                await advance_all(app, summary, queued.set)
            finally:
                advanced.set()
                queued.set()

        await asyncio.gather(
            produce(), *(_send_all(box, queued, advanced) for box in mailboxes.values())
        )
        for box in mailboxes.values():
            _add_stats(summary, box.stats)
        await copy_sent(app)
    return summary


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
    """The long-running loop."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.stop = asyncio.Event()
        self.summary = Summary()
        self.mailboxes = senders(app, self.stop)
        self.inboxes = watchers(app, self.stop, on_change=self._inbox_changed)
        # one per mailbox: a sender clearing its own never hides work from another
        self.wakes = {rep: asyncio.Event() for rep in self.mailboxes}
        self.scheduler = AsyncIOScheduler()
        self._advance = asyncio.Event()

    async def run(self) -> Summary:
        with single_instance(self.app), on_stop(self.stop):
            self.summary.reconciled = await reconcile(self.app)
            for box in self.mailboxes.values():
                box.load_history()
            self.scheduler.add_job(
                copy_sent,
                "interval",
                args=[self.app],
                seconds=COPY_INTERVAL,
                id="copy-sent",
                max_instances=1,
                coalesce=True,
            )
            self.scheduler.start()
            logger.info(
                "dripd running",
                extra={"action": "started", "mailboxes": ",".join(self.mailboxes) or "none"},
            )
            tasks = [
                asyncio.create_task(self._send_loop(box), name=f"send-{rep}")
                for rep, box in self.mailboxes.items()
            ]
            tasks += [
                asyncio.create_task(box.run(), name=f"inbox-{rep}")
                for rep, box in self.inboxes.items()
            ]
            try:
                await self._main_loop(tasks)
            finally:
                await self._shutdown(tasks)
        return self.summary

    async def _main_loop(self, tasks: list[asyncio.Task[None]]) -> None:
        while not self.stop.is_set():
            self.summary.digests += digest.queue_due(self.app, self.app.clock.now())
            await advance_all(self.app, self.summary, self._wake_senders)
            self._wake_senders()
            _raise_if_crashed(tasks)
            self._advance.clear()
            await _wait_any(self.stop, self._seconds_to_next_due(), self._advance)

    def _seconds_to_next_due(self) -> float:
        """Until the next due step or digest slot, at most POLL."""
        now = self.app.clock.now()
        with self.app.reader.connect() as conn:
            upcoming = queries.due_enrollments(conn, now + timedelta(seconds=POLL), 1)
        times = [now + timedelta(seconds=POLL)]
        if upcoming and upcoming[0].next_due_at is not None:
            times.append(upcoming[0].next_due_at)
        if (slot := digest.next_slot(self.app, now)) is not None:
            times.append(slot)
        return max(0.05, (min(times) - now).total_seconds())

    def _inbox_changed(self) -> None:
        """A reply may have stopped a sequence: let the main loop look again."""
        self._advance.set()

    def _wake_senders(self) -> None:
        for event in self.wakes.values():
            event.set()

    async def _send_loop(self, box: sender.Sender) -> None:
        wake = self.wakes[box.rep.id]
        while not self.stop.is_set():
            wake.clear()
            await box.drain()
            _add_stats(self.summary, box.stats)
            box.stats = sender.Stats()
            await _wait_any(self.stop, self._sender_sleep(box), wake)

    def _sender_sleep(self, box: sender.Sender) -> float:
        now = self.app.clock.now()
        candidates = [now + timedelta(seconds=POLL)]
        if box.resume_at and box.resume_at > now:
            return (box.resume_at - now).total_seconds()
        with self.app.reader.connect() as conn:
            nxt = outbox.next_attempt(conn, box.rep.id)
        if nxt is not None:
            candidates.append(max(nxt, now))
        return max(0.01, (min(candidates) - now).total_seconds())

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        self.stop.set()
        self._wake_senders()
        logger.info("stopping", extra={"action": "stopping"})
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for box in self.mailboxes.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(box.close(), 1.0)
        self.scheduler.shutdown(wait=False)


def _raise_if_crashed(tasks: list[asyncio.Task[None]]) -> None:
    """A side task that died takes the daemon down (systemd restarts it)."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _wait_any(stop: asyncio.Event, seconds: float, *events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop, *events)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@contextlib.contextmanager
def on_stop(stop: asyncio.Event) -> Iterator[None]:
    """Set `stop` on SIGTERM or SIGINT while inside; restore the handlers after.

    asyncio's add_signal_handler runs the callback in the loop, so setting the
    event is safe; the default handlers come back on exit.
    """
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
