"""Watching one rep's inbox over IMAP: every new message read once, none missed.

The folder is opened read-only (EXAMINE) and messages are read with
BODY.PEEK, so the rep's mailbox looks untouched. The last UID handled is
kept per folder and UIDVALIDITY, advanced in the same transaction as the
message's effects. New mail is announced by IDLE where the server offers it
(re-issued every IDLE_RENEW, before servers drop a quiet connection), else
found by polling. After any failure the watcher reconnects with backoff and
catches up from its checkpoint.

When the folder's UIDVALIDITY changes, the UIDs dripd knew mean nothing:
the folder is read again from a little before the last check, and messages
already handled are recognised by Message-ID (inbox.handle), not by UID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa

from dripd import errors
from dripd.files import config
from dripd.mail import incoming
from dripd.mailbox import imap, tokens
from dripd.pipeline import inbox
from dripd.pipeline.app import App
from dripd.store import inbox as store_inbox
from dripd.store import outbox, retry

logger = logging.getLogger("dripd.watcher")

IDLE_RENEW = 25 * 60.0  # seconds: servers may end an IDLE after 29 minutes (RFC 2177)
FETCH_BATCH = 50  # messages fetched per round trip
RECONNECT = (1.0, 60.0)  # seconds: first and longest wait before reconnecting
SIGNIN_RECHECK = 5.0  # seconds between looks for a new sign-in (`dripd auth`)
# Inboxes logging in (connect, login, first catch-up) at once, per daemon: a
# thousand at once left 15% of them without a greeting within TIMEOUT (bench
# mailboxes), and a provider sees a herd where it should see a queue.
LOGINS_AT_ONCE = 20
RESCAN_MARGIN = timedelta(days=2)  # how far before the last check a UIDVALIDITY change re-reads
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Watcher:
    """The inbox side of one rep's mailbox."""

    def __init__(
        self,
        app: App,
        rep: config.RepConfig,
        stop: asyncio.Event,
        *,
        on_change: Callable[[], None] | None = None,
        fence: Callable[[sa.Connection], bool] | None = None,
        logins: asyncio.Semaphore | None = None,
    ) -> None:
        assert rep.imap is not None
        self.app = app
        # Inside each message's transaction: False once another instance holds this mailbox.
        self.fence = fence
        self.rep = rep
        self.settings = rep.imap
        self.folder = rep.imap.folder
        self.stop = stop
        self.on_change = on_change  # called after messages were handled (e.g. wake the senders)
        # Shared by the daemon's watchers: held from connecting until caught up.
        self.logins = logins
        self.handled = 0
        self.connected = asyncio.Event()  # set while a session is open and caught up
        self._failures = 0
        self._signin_lost = False  # logged once per loss

    def _session(self) -> imap.Session:
        source = tokens.source(self.app.engine, self.rep, self.app.clock, self.settings)
        return imap.Session(self.settings, self.settings.password(), token_source=source)

    async def run(self) -> None:
        """Watch until `stop`; reconnects after every failure.

        A password that cannot be read (its file or variable missing) is
        such a failure too: this rep's inbox waits for it, and the daemon's
        other work goes on.
        """
        while not self.stop.is_set():
            try:
                await self._watch()
            except errors.SignInError as exc:
                self.connected.clear()
                self._sign_in_needed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), SIGNIN_RECHECK)
            except (imap.ImapError, errors.ConfigError, errors.SignInUnavailable) as exc:
                ended = self.connected.is_set()  # a working session ended, not a failed start
                self.connected.clear()
                self._failures += 1
                wait = min(RECONNECT[0] * 2 ** (self._failures - 1), RECONNECT[1])
                log = {"rep": self.rep.id, "error": str(exc), "retry_in": f"{wait:.0f}s"}
                if ended:  # the server's BYE at an OAuth2 token's expiry, every hour: routine
                    logger.info(
                        "inbox session ended, reconnecting",
                        extra={"action": "inbox_reconnect", **log},
                    )
                else:
                    logger.warning(
                        "inbox unreachable, retrying", extra={"action": "inbox_error", **log}
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), wait)
        self.connected.clear()

    def _sign_in_needed(self, exc: errors.SignInError) -> None:
        if not self._signin_lost:
            self._signin_lost = True
            logger.error(
                "inbox needs a sign-in: it is not watched until then",
                extra={"action": "signin_lost", "rep": self.rep.id, "error": str(exc)},
            )

    async def read_once(self) -> int:
        """Connect, handle what is new, disconnect; how many messages were new."""
        async with self._session() as session:
            folder = await session.examine(self.folder)
            return await self.catch_up(session, folder)

    async def _watch(self) -> None:
        """One session: catch up, then IDLE (or poll) until it ends.

        A session that ends (the server's BYE when an OAuth2 access token
        expires, a dropped connection) is an ImapError: `run` opens the next
        one, which logs in with a fresh token.
        """
        async with contextlib.AsyncExitStack() as stack:
            async with self.logins or contextlib.nullcontext():
                session = await stack.enter_async_context(self._session())
                folder = await session.examine(self.folder)
                await self.catch_up(session, folder)
            self._failures = 0
            if self._signin_lost:
                self._signin_lost = False
                logger.info(
                    "inbox signed in again", extra={"action": "signin_back", "rep": self.rep.id}
                )
            self.connected.set()
            idle = self.settings.idle and session.can_idle
            while not self.stop.is_set():
                if idle:
                    await session.idle(IDLE_RENEW, self.stop)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), self.settings.poll_interval)
                    await session.noop()
                if not self.stop.is_set():
                    await self.catch_up(session, folder)

    async def catch_up(self, session: imap.Session, folder: imap.Folder) -> int:
        """Handle every message after the checkpoint; how many were new."""
        uids = await self._unread(session, folder)
        if not uids:
            self._touch(folder)
            return 0
        handled = 0
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            for uid, raw in await session.fetch(batch):
                if self.stop.is_set() and self.fence is not None:
                    break  # handed over (see _handle): the new holder reads from the checkpoint
                handled += self._handle(folder, uid, raw)
        if handled and self.on_change is not None:
            self.on_change()
        return handled

    async def _unread(self, session: imap.Session, folder: imap.Folder) -> list[int]:
        """UIDs to read: after the checkpoint, or a rescan when the folder was renumbered."""
        with self.app.reader.connect() as conn:
            mark = store_inbox.checkpoint(conn, self.rep.id, self.folder)
            first_sent = outbox.first_sent_at(conn, self.rep.id) if mark is None else None
        if mark is not None and mark.uidvalidity == folder.uidvalidity:
            uids = await session.search_uids("UID", f"{mark.last_uid + 1}:*")
            return [uid for uid in uids if uid > mark.last_uid]
        if mark is not None:
            logger.warning(
                "inbox renumbered (UIDVALIDITY changed): reading it again by Message-ID",
                extra={"action": "inbox_uidvalidity", "rep": self.rep.id, "folder": self.folder},
            )
            since = mark.checked_at - RESCAN_MARGIN
        elif first_sent is not None:  # first start: what could answer an email already sent
            since = first_sent - timedelta(days=1)
        else:  # first start, nothing sent yet: from now on
            self._save(folder, max(folder.uidnext - 1, 0))
            return []
        uids = await session.search_uids("SINCE", _imap_date(since))
        if not uids:
            self._save(folder, max(folder.uidnext - 1, 0))
        return uids

    def _handle(self, folder: imap.Folder, uid: int, raw: bytes) -> int:
        """One message, its effects and the checkpoint in one transaction; 1 if it was new."""
        try:
            mail = incoming.parse(raw)
        except Exception as exc:  # a bug: the readers raise nothing on hostile mail
            return self._failed(folder, uid, incoming.unreadable(raw), exc)
        now = self.app.clock.now()

        def handle() -> inbox.Outcome:
            with self.app.engine.begin() as conn:
                if self.fence is not None and not self.fence(conn):
                    raise _Lost()
                outcome = inbox.handle(self.app, conn, self.rep.id, mail, now, uid=uid)
                self._checkpoint(conn, folder, uid, now)
                return outcome

        try:
            outcome = retry.retrying(handle, "inbox")
        except _Lost:
            logger.warning(
                "another instance holds this mailbox now: this watcher stops",
                extra={"action": "inbox_handed_over", "rep": self.rep.id, "uid": uid},
            )
            self.stop.set()
            return 0
        except Exception as exc:
            return self._failed(folder, uid, mail, exc)
        if outcome.verdict is None:
            return 0
        self.handled += 1
        return 1

    def _failed(
        self, folder: imap.Folder, uid: int, mail: incoming.Incoming, exc: Exception
    ) -> int:
        """The per-message boundary, the one broad guard on incoming mail (called in `except`).

        The readers (dripd.mail.reading, incoming.parse) raise nothing on
        hostile mail, so what lands here is a bug or the database refusing the
        message; it costs this message, never the watcher. 0: nothing handled.
        """
        logger.exception(
            "could not handle an inbox message; it stays in the mailbox",
            extra={
                "action": "inbox_failed",
                "rep": self.rep.id,
                "uid": uid,
                "message_id": mail.message_id,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )
        self._save_failure(folder, uid, mail, exc)
        return 0

    def _checkpoint(
        self, conn: sa.Connection, folder: imap.Folder, uid: int, now: datetime
    ) -> None:
        store_inbox.save_checkpoint(conn, self.rep.id, self.folder, folder.uidvalidity, uid, now)

    def _save(self, folder: imap.Folder, uid: int) -> None:
        now = self.app.clock.now()
        with self.app.engine.begin() as conn:
            self._checkpoint(conn, folder, uid, now)

    def _save_failure(
        self, folder: imap.Folder, uid: int, mail: incoming.Incoming, exc: Exception
    ) -> None:
        """Move past a message that could not be handled, and keep a note of it for the rep."""
        now = self.app.clock.now()
        with self.app.engine.begin() as conn:
            inbox.record_failure(conn, self.rep.id, mail, now, uid=uid, error=str(exc))
            self._checkpoint(conn, folder, uid, now)

    def _touch(self, folder: imap.Folder) -> None:
        """Record the check (dripd status shows when each inbox was last read)."""
        with self.app.reader.connect() as conn:
            mark = store_inbox.checkpoint(conn, self.rep.id, self.folder)
        if mark is not None and mark.uidvalidity == folder.uidvalidity:
            self._save(folder, mark.last_uid)


class _Lost(Exception):
    """The mailbox's lease went to another instance (dripd.daemon.fleet): handle nothing more."""


def _imap_date(when: datetime) -> str:
    """A date as IMAP SEARCH wants it: 3-Dec-2026."""
    return f"{when.day}-{_MONTHS[when.month - 1]}-{when.year}"
