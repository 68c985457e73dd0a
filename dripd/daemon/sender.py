"""Sending one mailbox's queued emails: within its limits and windows, exactly once.

For each email: re-check that it may still go (contact active, sequence
running, window open, not stale), commit `sending`, run the SMTP
transaction, commit `sent` on the server's 250. Every failure is classified
(smtp.classify) and acted on: retry later, bounce the contact, rest the
mailbox until tomorrow, or fail this one email and tell the rep.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dripd import errors
from dripd.daemon import claims
from dripd.files import config
from dripd.mail import mime
from dripd.mailbox import smtp, tls, tokens
from dripd.pipeline import lifecycle
from dripd.pipeline.app import App
from dripd.plan import decide, ratelimit
from dripd.plan import windows as windows_mod
from dripd.store import contacts, oauth_tokens, outbox, retry, statements

logger = logging.getLogger("dripd.sender")
T = TypeVar("T")

BATCH = 500  # queued emails read at once (choosing them sorts the backlog: ~5 ms for 10,000)
RECORD_EVERY = timedelta(seconds=1)  # while sending goes on, history is written this often
RECORD_LIMIT = 1000  # sent emails recorded per transaction
CONNECT_BACKOFF = (30.0, 15 * 60.0)  # seconds: first and longest rest of an unreachable mailbox
AUTH_BACKOFF = 15 * 60.0  # seconds to wait after the server refused the login
SIGNIN_RECHECK = 5.0  # seconds between looks for a new sign-in (`dripd auth`): a database read


@dataclass(frozen=True, slots=True, kw_only=True)
class _Rules:
    """What the send decision at claim time reads from the config, worked out once per app.

    `Config.max_late` parses the setting at each call: ~60 µs an email. A
    reload swaps the sender's app, so this follows it. The holidays are those
    the planner used: the contact's owner's (`Row.holidays_of`), also for an
    email sent `from` another rep (see plan.decide for why); the config works
    them out once per rep at load.
    """

    app: App
    max_late: timedelta
    threads: claims.Claims | None  # PostgreSQL: the claims run in threads; SQLite: None

    @classmethod
    def of(cls, app: App) -> _Rules:
        return cls(app=app, max_late=app.config.max_late, threads=claims.of(app.engine))

    def holidays(self, rep_id: str | None) -> Container[date]:
        return self.app.config.holidays_for(rep_id)


Claimed = Literal["claimed", "passed", "stop"]  # passed: skipped, put back or taken


@dataclass(slots=True)
class Stats:
    sent: int = 0  # to contacts
    to_rep: int = 0  # digests and confirmations
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0


class Sender:
    """The sending side of one rep's mailbox."""

    def __init__(
        self,
        app: App,
        rep: config.RepConfig,
        stop: asyncio.Event,
        *,
        instance: str | None = None,
        may_claim: Callable[[], bool] | None = None,
    ) -> None:
        assert rep.smtp is not None
        self.app = app
        self.instance = instance  # recorded with each claim (instances.id)
        # False once this instance may no longer work the mailbox (its lease, dripd.daemon.fleet)
        self.may_claim = may_claim or (lambda: True)
        self.rep = rep
        self.settings = rep.smtp
        self.stop = stop
        self.limit = ratelimit.RateLimit(
            per_hour=rep.smtp.max_per_hour, per_day=rep.smtp.max_per_day
        )
        self.stats = Stats()
        self.resume_at: datetime | None = None  # when this mailbox may be tried again
        self._connect_failures = 0
        self._signin_lost: str | None = None  # why the rep must sign in again (logged once)
        self._password: str | None = None
        self._connections: list[smtp.Connection] = []
        self._accepted: list[tuple[outbox.Row, datetime]] = []  # 250 received, not yet committed
        self._rules_cache: _Rules | None = None
        self._unrecorded: list[int] = []  # outbox ids sent since the last record()
        self._recorded_at = datetime.min.replace(tzinfo=UTC)
        self._limit_logged_at = datetime.min.replace(tzinfo=UTC)

    def _now(self) -> datetime:
        return self.app.clock.now()

    def _rules(self) -> _Rules:
        rules = self._rules_cache
        if rules is None or rules.app is not self.app:
            rules = self._rules_cache = _Rules.of(self.app)
        return rules

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A short transaction that first commits the `sent` of the emails accepted since the last.

        Its connection goes back to the pool when it ends: none is held while
        an SMTP server answers (one per mailbox made the pool's size the
        number of mailboxes that could send).
        """
        with self._taking_accepted() as accepted, self.app.engine.begin() as conn:
            for row, at in accepted:
                outbox.mark_sent(conn, row, at)
            yield conn

    @contextlib.contextmanager
    def _taking_accepted(self) -> Iterator[list[tuple[outbox.Row, datetime]]]:
        """The emails accepted and not yet marked sent, for a transaction that marks them.

        Given back if it fails: not committed, the next one will.
        """
        accepted, self._accepted = self._accepted, []
        try:
            yield accepted
        except BaseException:
            self._accepted = accepted + self._accepted
            raise

    def _flush(self) -> None:
        """Commit the emails the server accepted that are not yet marked sent."""
        if self._accepted:
            with self._transaction():
                pass

    async def _flush_last(self) -> None:
        """`_flush` when a worker's queue runs out; on PostgreSQL on a claims connection.

        About one email in ten ends a worker's queue (a drain's batch is what
        the engine queued since the last): its commit, with its WAL flush,
        held up every mailbox's loop (3.7 ms each, a ninth of the loop's time).
        The worker returns only once it is committed, so the connection's next
        email (in a later batch) goes after it. Setting `sent` again changes
        nothing: it is run again after a lost connection.
        """
        threads = self._rules().threads
        if threads is None or not self._accepted:
            self._flush()
            return
        await self._on_loop_with_accepted(
            threads.on_loop(),
            lambda accepted: outbox.mark_sent_statement(self.app.engine.dialect, accepted),
            "flush",
        )

    def load_history(self) -> None:
        """Read what this mailbox sent in the last day (its rate limit).

        After a failure of this sender's task (dripd.daemon.supervise), the emails the
        server accepted that were not committed yet are committed first.
        """
        self._flush()
        now = self._now()
        with self.app.reader.connect() as conn:
            self.limit.load(outbox.sent_since(conn, self.rep.id, now - ratelimit.DAY))

    def _connection_pool(self) -> list[smtp.Connection]:
        """The mailbox's connections; ConfigError if its password or CA file can't be read."""
        if not self._connections:
            self._password = self.settings.password()
            context = tls.for_mailbox(self.settings)
            source = tokens.source(self.app.engine, self.rep, self.app.clock, self.settings)
            self._connections = [
                smtp.Connection(self.settings, self._password, context, token_source=source)
                for _ in range(self.settings.connections)
            ]
        return self._connections

    async def drain(self) -> int:
        """Send what is ready now; returns how many went out. Stops early on `stop`."""
        now = self._now()
        if self.resume_at and self.resume_at > now:
            return 0
        if await self._paused(now) or not self._signed_in(now):
            return 0
        try:
            pool = self._connection_pool()
        except errors.ConfigError as exc:
            logger.error(
                "cannot send: %s", exc, extra={"action": "mailbox_error", "rep": self.rep.id}
            )
            self.resume_at = now + timedelta(seconds=AUTH_BACKOFF)
            return 0
        sent_before = self.stats.sent + self.stats.to_rep
        while not self.stop.is_set():
            rows = await self._read(outbox.ready_query(self.rep.id, self._now(), BATCH))
            if not rows:
                break
            queue: asyncio.Queue[outbox.Row] = asyncio.Queue()
            for row in rows:
                queue.put_nowait(row)
            results = await self._work(pool, queue)
            if not all(results) or len(rows) < BATCH:
                break
        sent = self.stats.sent + self.stats.to_rep - sent_before
        if self._unrecorded and (sent == 0 or self._record_due()):
            await self.record()
        return sent

    async def _work(
        self, pool: list[smtp.Connection], queue: asyncio.Queue[outbox.Row]
    ) -> list[bool]:
        """One worker per connection on `queue`; if one fails, the others stop with it.

        Left running, they would share their connections with the workers of
        the sender its supervisor starts again (dripd.daemon.supervise).
        """
        workers = [asyncio.ensure_future(self._worker(c, queue)) for c in pool]
        try:
            return list(await asyncio.gather(*workers))
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.wait(workers)
            raise

    def _record_due(self) -> bool:
        """Whether to write history and touches now rather than after the next drain.

        While `run --once` queues and sends, drains come every few emails:
        one transaction each would rewrite the same pages again and again.
        """
        since = self._now() - self._recorded_at
        return len(self._unrecorded) >= RECORD_LIMIT or since >= RECORD_EVERY

    def _signed_in(self, now: datetime) -> bool:
        """False while an OAuth2 mailbox waits for `dripd auth` (nothing is claimed meanwhile)."""
        if self.settings.auth != "oauth2":
            return True
        with self.app.reader.connect() as conn:
            problem = tokens.problem(self.rep, oauth_tokens.read(conn, self.rep.id))
        if problem is None:
            if self._signin_lost is not None:
                self._signin_lost = None
                self.resume_at = None
                logger.info(
                    "mailbox signed in again: its waiting emails go out",
                    extra={"action": "signin_back", "rep": self.rep.id},
                )
            return True
        self._sign_in_needed(problem, now)
        return False

    def _sign_in_needed(self, problem: str, now: datetime) -> None:
        """Rest the mailbox until the rep signs in again; one log line per loss."""
        self.resume_at = now + timedelta(seconds=SIGNIN_RECHECK)
        if self._signin_lost is None:
            self._signin_lost = problem
            logger.error(
                "mailbox needs a sign-in: its emails wait",
                extra={"action": "signin_lost", "rep": self.rep.id, "error": problem},
            )

    async def _paused(self, now: datetime) -> bool:
        """Whether the mailbox, or its rep (a vacation), is paused; if so it rests until then."""
        for stop_until in await self._read(outbox.pauses_query(self.rep.id)):
            if stop_until is not None and stop_until > now:
                self.resume_at = stop_until
                return True
        return False

    async def _read(self, query: statements.Query[T]) -> T:
        """`query` on the reader; on PostgreSQL awaited on a claims connection.

        A drain read three times (its pauses twice, its ready emails), each a
        round trip during which no other mailbox's worker ran
        (docs/developer.md, session 14). A read is run again after a lost
        connection.
        """
        threads = self._rules().threads
        if threads is None:  # SQLite: a read costs no round trip
            with self.app.reader.connect() as conn:
                return query.run(conn)
        connections = threads.on_loop()
        return await retry.retrying_async(lambda: connections.fetch(query), "read", idempotent=True)

    async def _worker(self, connection: smtp.Connection, queue: asyncio.Queue[outbox.Row]) -> bool:
        """Send rows from `queue`; False when the mailbox must stop for now."""
        try:
            while not self.stop.is_set():
                try:
                    row = queue.get_nowait()
                except asyncio.QueueEmpty:
                    await self._flush_last()
                    return True
                if not await self._send_one(connection, row):
                    return False
            return False
        finally:
            self._flush()

    async def _send_one(self, connection: smtp.Connection, row: outbox.Row) -> bool:
        now = self._now()
        claimed = await self._claim(row, now)
        if claimed != "claimed":
            return claimed == "passed"
        try:  # dated as claimed (sending_at): the Sent-folder copy carries the same Date
            await connection.send(self.rep.email, row.recipient, mime.dated(row.message, now))
        except smtp.SendError as exc:
            return self._failed(row, exc)
        # Committed as sent in the very next transaction (this worker's claim
        # of its next email, or the flush when it stops), with no await in
        # between: one commit per email instead of two.
        self._accepted.append((row, self._now()))
        self._unrecorded.append(row.id)
        self._connect_failures = 0
        if row.contact_id is None:
            self.stats.to_rep += 1
        else:
            self.stats.sent += 1
        logger.info(
            "email sent",
            extra={
                "action": "email_sent",
                "rep": self.rep.id,
                "contact": row.recipient,
                "step": f"{row.campaign}/{row.step}" if row.campaign else row.step,
                "message_id": row.message_id,
            },
        )
        return True

    async def _claim(self, row: outbox.Row, now: datetime) -> Claimed:
        """The send decision at the moment of sending (plan.decide), and the claim.

        "stop": the mailbox may not send now (its rate limit, a rest another
        connection met); "passed": the row was skipped (contact no longer
        active, sequence stopped, stale), put back (window closed, out of
        office) or taken by someone else. Whatever is written also commits
        the `sent` of the emails the server accepted since the last write
        (this connection's previous email).

        The send is counted in the rate limit before the claim, so that the
        decisions of the other workers, taken while this claim is in flight
        (PostgreSQL), count it; a refused claim gives it back. If the claim
        fails, the sender fails and `load_history` counts again from the database.
        """
        if self.resume_at and self.resume_at > now:
            return "stop"
        if not self.may_claim():
            return "stop"
        verdict = self._decide(row, now)
        if isinstance(verdict, decide.Wait) and verdict.reason is decide.WaitReason.LIMIT:
            self._limited(now, verdict.until)  # no contact was asked of
            return "stop"
        if isinstance(verdict, decide.Skip | decide.Wait):
            self._in_transaction(lambda conn: self._not_now(conn, row, now, verdict), "claim")
            return "passed"
        self.limit.record(now)
        if await self._take(row, now):
            return "claimed"
        self.limit.release(now)
        self._in_transaction(lambda conn: self._refused(conn, row, now), "claim")
        return "passed"

    async def _take(self, row: outbox.Row, now: datetime) -> bool:
        """The claim, with the `sent` of the emails accepted since the last: one statement.

        On PostgreSQL it commits itself (one round trip), so a connection lost
        during it leaves unknown whether it was committed; it is run again
        (retry.retrying(idempotent=True)), which outbox.claim makes safe.
        """
        threads = self._rules().threads
        if threads is not None:
            return await self._take_on_loop(threads.on_loop(), row, now)
        with self._taking_accepted() as accepted:
            return retry.retrying(
                lambda: self._claim_in_transaction(row, now, accepted),
                "claim",
                idempotent=True,
            )

    async def _take_on_loop(
        self, connections: claims.OnLoop, row: outbox.Row, now: datetime
    ) -> bool:
        """`_take` on a claims connection (PostgreSQL): the other workers go on while it commits.

        The emails accepted are taken when it starts and given back only if
        the claim failed. They are this worker's own (its last email): a
        worker takes what it appends with no await in between (`_send_one`),
        so no claim in flight holds another connection's, whose next email
        could then go before their `sent` is committed (the crash rule's
        bound of one uncertain email per connection; test_claims checks it
        at each DATA). A worker cancelled meanwhile waits for the claim, so
        whatever it committed is known (claims.settled). A row it claimed
        then is `sending` and was not sent: the sender's restart, or the
        next holder of the mailbox, puts it back (outbox.orphaned).
        """
        changed = await self._on_loop_with_accepted(
            connections,
            lambda accepted: outbox.claim_statement(
                self.app.engine.dialect, row, now, self.instance, sent=accepted
            ),
            "claim",
        )
        return changed == 1

    async def _on_loop_with_accepted(
        self,
        connections: claims.OnLoop,
        statement: Callable[[list[tuple[outbox.Row, datetime]]], tuple[str, Any]],
        what: str,
    ) -> int:
        """`statement(accepted)` on a claims connection, the accepted emails taken now.

        Run again after a lost connection (it must be idempotent); the
        accepted emails are given back only if it failed (not committed: the
        next transaction marks them); waited for even through a cancellation
        (claims.settled). The rows it changed.
        """
        with self._taking_accepted() as accepted:  # given back if it cannot start
            sql, params = statement(accepted)
            task = asyncio.ensure_future(
                retry.retrying_async(
                    lambda: connections.execute(sql, params), what, idempotent=True
                )
            )
        try:
            await claims.settled(task)
        finally:
            if task.exception() is not None:
                self._accepted = accepted + self._accepted
        return task.result()

    def _claim_in_transaction(
        self, row: outbox.Row, now: datetime, accepted: list[tuple[outbox.Row, datetime]]
    ) -> bool:
        with self.app.engine.begin() as conn:
            return outbox.claim(conn, row, now, self.instance, sent=accepted)

    def _in_transaction(self, work: Callable[[sa.Connection], None], what: str) -> None:
        """`work` in a `_transaction`, run again after a transient abort."""

        def transaction() -> None:
            with self._transaction() as conn:
                work(conn)

        retry.retrying(transaction, what)

    def _not_now(
        self,
        conn: sa.Connection,
        row: outbox.Row,
        now: datetime,
        verdict: decide.Skip | decide.Wait,
    ) -> None:
        """Skip `row` for good (stale), or put it back until its window opens."""
        if isinstance(verdict, decide.Skip):
            self._skip(conn, row, now, verdict.reason)
        else:
            outbox.wait_for_window(conn, row, verdict.until)

    def _decide(self, row: outbox.Row, now: datetime) -> decide.Decision:
        """The decision on the email itself; the claim's SQL checks its contact."""
        rules = self._rules()
        return decide.decide(
            now,
            planned_at=row.planned_at or row.due_at,
            deadline=row.not_after,
            anchor=self._anchor(row) if row.not_after is not None else None,
            max_late=rules.max_late,
            window=_window(row.send_window),
            tz=ZoneInfo(row.timezone),
            holidays=rules.holidays(row.holidays_of),
            free_at=self.limit.next_free(now),
        )

    def _anchor(self, row: outbox.Row) -> str | None:
        """The date field the email's step hangs on, for the reason a stale one is skipped."""
        campaign = self.app.catalog.campaigns.get(row.campaign) if row.campaign else None
        step = next((s for s in campaign.steps if s.id == row.step), None) if campaign else None
        return step.date_field if step is not None else None

    def _refused(self, conn: sa.Connection, row: outbox.Row, now: datetime) -> None:
        """The claim refused `row`: skip it, put it back until the contact is back, or leave it.

        Left alone, it was taken by another connection or instance.
        """
        found = outbox.recipient(conn, row)
        if found is None:
            return
        verdict = decide.decide(
            now, status=found.status, stopped=found.stopped, away_until=found.away_until
        )
        if isinstance(verdict, decide.Stop):
            self._skip(conn, row, now, verdict.reason)
        elif isinstance(verdict, decide.Wait):
            outbox.wait_for_contact(conn, row, verdict.until)

    def _limited(self, now: datetime, allowed: datetime) -> None:
        """The mailbox is at its sending limit until `allowed`: rest it, and say so."""
        self.resume_at = allowed
        if now - self._limit_logged_at >= ratelimit.BURST_SPAN:  # not once per email
            self._limit_logged_at = now
            logger.info(
                "mailbox at its sending limit: the next email waits",
                extra={
                    "action": "rate_limited",
                    "rep": self.rep.id,
                    "limit": self.limit.holding(now),
                    "next_at": allowed.isoformat(),
                },
            )

    def _skip(self, conn: sa.Connection, row: outbox.Row, now: datetime, reason: str) -> None:
        outbox.give_up(conn, row, now, status="skipped", kind="skipped", reason=reason)
        self.stats.skipped += 1

    async def record(self) -> None:
        """Write the history and touches of what this sender sent (see outbox.record_sent).

        By id: finding them by state instead read every email ever sent.
        Any left unrecorded (a crash, a database error) are found by state
        when a mailbox is next taken (sent_copies.reconcile). On PostgreSQL
        in the history thread (dripd.daemon.claims): its statements and its
        commit's flush (~50 ms a time on a busy host) no longer hold up every
        mailbox's loop.
        """
        self._flush()  # they are recorded once marked sent
        threads = self._rules().threads
        while self._unrecorded:
            ids = self._unrecorded[:RECORD_LIMIT]
            if threads is None:
                self._record_on(self.app.engine.begin, ids)
            else:
                await threads.run(functools.partial(self._record_on, threads.transaction, ids))
            del self._unrecorded[: len(ids)]
        self._recorded_at = self._now()

    def _record_on(
        self,
        transaction: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
        ids: list[int],
    ) -> None:
        with transaction() as conn:
            outbox.record_sent(conn, self._now(), ids=ids)

    def _failed(self, row: outbox.Row, exc: smtp.SendError) -> bool:
        now = self._now()
        log = {
            "rep": self.rep.id,
            "contact": row.recipient,
            "message_id": row.message_id,
            "error": str(exc),
        }
        with self._transaction() as conn:
            if exc.kind == "temporary":
                return self._temporary(conn, row, exc, now, log)
            if exc.kind == "recipient" and row.contact_id is not None:
                self._bounce(conn, row, exc, now)
                logger.warning(
                    "recipient refused: contact bounced", extra={"action": "bounced", **log}
                )
                return True
            if exc.kind in ("message", "recipient"):  # a recipient refused here is the rep
                outbox.give_up(conn, row, now, status="failed", kind="send_failed", reason=str(exc))
                self.stats.failed += 1
                logger.warning("email refused", extra={"action": "send_failed", **log})
                return True
            outbox.requeue(conn, row, now, str(exc))
            if exc.kind == "signin":
                self._sign_in_needed(str(exc), now)
            else:
                self._rest_mailbox(conn, exc, now)
        return False

    def _rest_mailbox(self, conn: sa.Connection, exc: smtp.SendError, now: datetime) -> None:
        """A problem of the mailbox, not of one email: stop sending from it for a while.

        Logged once per rest, whichever connection met it first.
        """
        already = self.resume_at is not None and self.resume_at > now
        mailbox = {"rep": self.rep.id, "error": str(exc)}
        if exc.kind == "sender":
            until = _tomorrow(now, self.app.config.rep_timezone(self.rep.id))
            outbox.pause_mailbox(conn, self.rep.id, until, str(exc), now)
            self.resume_at = until
            message, action = "mailbox refused to send: paused until tomorrow", "mailbox_paused"
        else:
            self.resume_at = now + timedelta(seconds=AUTH_BACKOFF)
            message, action = "mailbox login refused", "mailbox_error"
        if not already:
            logger.error(message, extra={"action": action, **mailbox})

    def _temporary(
        self,
        conn: sa.Connection,
        row: outbox.Row,
        exc: smtp.SendError,
        now: datetime,
        log: dict[str, str],
    ) -> bool:
        if exc.mailbox:  # the session failed before the email went: not one of its tries
            resume_at = self._rest_after_connection_failure(now)
            # Back in the queue behind the rest: after it, another email is tried
            # first, so one that alone makes the server hang up holds up no other.
            outbox.requeue(conn, row, resume_at + (resume_at - now), str(exc))
            self.stats.retried += 1
            message, action = "mailbox unreachable, resting", "mailbox_unreachable"
            if exc.code not in (0, 421):  # a 4xx to MAIL FROM: a rate limit, most often
                message, action = "server defers the mailbox's mail, resting", "mailbox_deferred"
            logger.warning(
                message, extra={"action": action, "retry_at": resume_at.isoformat(), **log}
            )
            return False
        if row.attempts + 1 >= outbox.MAX_ATTEMPTS:
            outbox.give_up(
                conn,
                row,
                now,
                status="failed",
                kind="send_failed",
                reason=f"gave up after {outbox.MAX_ATTEMPTS} tries: {exc}",
            )
            self.stats.failed += 1
            return True
        when = outbox.retry_later(conn, row, now, str(exc))
        self.stats.retried += 1
        logger.warning(
            "temporary failure, retrying",
            extra={"action": "send_retry", "retry_at": when.isoformat(), **log},
        )
        if exc.code == 0:  # the connection was lost with the message on its way
            self._rest_after_connection_failure(now)
            return False
        return True

    def _rest_after_connection_failure(self, now: datetime) -> datetime:
        """Rest the mailbox, longer after each failure in a row; when it is tried again.

        A failure met while the mailbox already rests (its other connection
        failed at the same moment) is the same failure: the rest stays.
        """
        if self.resume_at is not None and self.resume_at > now:
            return self.resume_at
        self._connect_failures += 1
        first, longest = CONNECT_BACKOFF
        rest = min(first * 2 ** (self._connect_failures - 1), longest)
        self.resume_at = now + timedelta(seconds=rest)
        return self.resume_at

    def _bounce(
        self, conn: sa.Connection, row: outbox.Row, exc: smtp.SendError, now: datetime
    ) -> None:
        assert row.contact_id is not None, "an email to the rep is failed, not bounced"
        outbox.give_up(conn, row, now, status="failed", kind="bounced", reason=str(exc))
        contacts.update_contact(conn, row.contact_id, {"status": "bounced", "updated_at": now})
        contact = contacts.contact_by_id(conn, row.contact_id)
        lifecycle.stop(self.app, conn, contact, now, cause=f"bounced: {exc}")
        self.stats.bounced += 1

    async def close(self) -> None:
        """Commit what the server accepted and record it; then close the SMTP connections."""
        self._flush()
        if self._unrecorded:
            await self.record()
        for connection in self._connections:
            await connection.close()


def _window(text: str | None) -> windows_mod.Window | None:
    return lifecycle.parse_window(text) if text else None


def _tomorrow(now: datetime, tz: ZoneInfo) -> datetime:
    """The next local midnight, plus a few minutes: when daily quotas reset."""
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0, 5), tzinfo=tz)
    return midnight.astimezone(now.tzinfo)
