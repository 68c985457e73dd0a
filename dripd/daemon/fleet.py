"""The rep mailboxes this instance works, among all the instances on one database.

Every TICK: renew this instance's lease on life, let go of what it no
longer holds, hand over its surplus, and take free mailboxes up to its fair
share (ceil(mailboxes / live instances)), so a new instance gets work within
a few ticks and the mailboxes of a dead one are taken within TTL + TICK.

The work itself belongs to the caller (the daemon, or `run --once`):
`start(rep, previous_holder)` begins a mailbox's work and `stop(rep)` ends
it once the email or message in flight is done. Neither may block a tick:
the renewals must go on meanwhile, so both run as tasks.

On SQLite only one instance can run (lockfile.single_instance); it takes
every mailbox at once, and other rows in `instances` are dead by definition.
"""

from __future__ import annotations

import asyncio
import logging
import math
import zlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import sqlalchemy as sa

from dripd import errors
from dripd.daemon import supervise
from dripd.pipeline.app import App
from dripd.store import membership

logger = logging.getLogger("dripd.fleet")

Start = Callable[[str, str | None], None]
Stop = Callable[[str], Awaitable[None]]


def mailboxes(app: App) -> list[str]:
    """The reps with a mailbox to work (sending or inbox)."""
    return sorted(rep.id for rep in app.config.reps if rep.smtp is not None or rep.imap)


class Fleet:
    """This instance's membership and the mailboxes it holds."""

    def __init__(
        self, app: App, member: membership.Membership, *, start: Start, stop: Stop, greedy: bool
    ) -> None:
        self.app = app
        self.member = member
        self.start = start
        self.stop = stop
        self.greedy = greedy  # take every free mailbox (`run --once`, or SQLite)
        self.held: set[str] = set()
        self._leaving: dict[str, asyncio.Task[None]] = {}
        self._versions: frozenset[str] = frozenset()
        self._unreachable = False
        self._version_of: tuple[App | None, str] = (None, "")

    @classmethod
    def join(cls, app: App, *, start: Start, stop: Stop, greedy: bool = False) -> Fleet:
        """Register this instance; on SQLite, the instances before it are gone for sure.

        `greedy`: `run --once`, which takes every free mailbox for its run and
        is not counted when daemons work out their fair shares.
        """
        now = app.clock.now()
        version = membership.campaigns_version(app.config.campaigns_dir)
        role = "once" if greedy else "daemon"
        member = membership.Membership.register(app.engine, now, version, role)
        single = app.engine.dialect.name == "sqlite"
        if single:
            with app.engine.begin() as conn:
                membership.bury_others(conn, member.id)
        return cls(app, member, start=start, stop=stop, greedy=greedy or single)

    def may_work(self, rep: str) -> bool:
        """Whether work on `rep`'s mailbox may start now (checked before each email)."""
        return rep in self.held and rep not in self._leaving and self.member.valid()

    async def tick(self, *, take: bool = True) -> None:
        """Renew, then let go of what must go and take what is free (see the module)."""
        if not await self._renew():
            return
        with self.app.reader.connect() as conn:
            live = membership.live_instances(conn)
            holders = membership.holders(conn)
        self._check_versions(live)
        names = mailboxes(self.app)
        for rep in sorted(self.held):
            if rep not in names:
                self._let_go(rep, "removed")
            elif holders.get(rep) != self.member.id:
                self._let_go(rep, "lost")
        if take:
            daemons = sum(1 for i in live if i["role"] == "daemon")
            target = len(names) if self.greedy else math.ceil(len(names) / max(1, daemons))
            self._rebalance(self.app.clock.now(), names, holders, target)

    async def _renew(self) -> bool:
        """Push this instance's lease on life ahead; False if the database can't be reached."""
        version = self._version()
        try:
            renewed = self.member.renew(version)
        except sa.exc.DBAPIError as exc:
            await self._unreachable_database(exc)
            return False
        if not renewed:
            raise errors.DripdError(
                f"this instance ({self.member.id}) was marked stopped in the database; exiting"
            )
        if self._unreachable:
            logger.warning("database reachable again", extra={"action": "database_back"})
            self._unreachable = False
        return True

    def _rebalance(
        self, now: datetime, names: list[str], holders: dict[str, str], target: int
    ) -> None:
        """Hand over what is beyond `target` mailboxes, take free ones up to it."""
        for rep in sorted(self.held - set(self._leaving), reverse=True):
            if len(self.held) - len(self._leaving) <= target:
                break
            self._let_go(rep, "surplus")
        for rep in self._preference(names):
            if len(self.held) >= target:
                break
            if rep in self.held or holders.get(rep, self.member.id) != self.member.id:
                continue  # (one still in this instance's name: let go while unreachable)
            previous = self.member.take(rep, now)
            if previous is False:
                continue
            self.held.add(rep)
            # Worth a line where instances share the mailboxes (PostgreSQL); on
            # SQLite the one instance takes them all at every start (and every
            # `run --once` from cron): noise.
            shared = self.app.engine.dialect.name == "postgresql"
            logger.log(
                logging.INFO if shared or previous else logging.DEBUG,
                "took mailbox",
                extra={"action": "mailbox_taken", "rep": rep, "from": previous or "nobody"},
            )
            self.start(rep, previous if isinstance(previous, str) else None)

    def _version(self) -> str:
        """The version of the campaigns this instance runs (worked out again after a reload)."""
        if self._version_of[0] is not self.app:
            folder = self.app.config.campaigns_dir
            self._version_of = (self.app, membership.campaigns_version(folder))
        return self._version_of[1]

    def _preference(self, names: list[str]) -> list[str]:
        """`names` from an offset of this instance's own: starters don't all race for one."""
        if not names:
            return []
        offset = zlib.crc32(self.member.id.encode()) % len(names)
        return names[offset:] + names[:offset]

    def _let_go(self, rep: str, reason: str) -> None:
        """End the work on `rep` (the email in flight finishes); then free its lease.

        `reason`: "surplus" or "removed" (freed for another instance), "lost"
        (another holds it already), "unreachable" (it will lapse), "stopping"
        (freed with all the others by `leave_all`).
        """
        if rep in self._leaving:
            return

        async def leave() -> None:
            try:
                await self.stop(rep)
                if reason in ("surplus", "removed"):
                    self.member.release(rep)
                    logger.info(
                        "released mailbox",
                        extra={"action": "mailbox_released", "rep": rep, "reason": reason},
                    )
                elif reason != "stopping":
                    logger.warning(
                        "stopped working a mailbox this instance no longer holds",
                        extra={"action": "mailbox_lost", "rep": rep, "reason": reason},
                    )
            except Exception as exc:  # nobody awaits this task: say it here
                # Its lease lapses with this instance's or is taken back at the next tick.
                logger.error(
                    "could not let go of a mailbox: %s",
                    supervise.describe(exc),
                    extra={"action": "mailbox_release_failed", "rep": rep},
                )
            finally:
                self.held.discard(rep)
                self._leaving.pop(rep, None)

        self._leaving[rep] = asyncio.create_task(leave(), name=f"leave-{rep}")

    async def _unreachable_database(self, exc: Exception) -> None:
        """No renewal: once the lease could lapse, stop all mailbox work (others may take it)."""
        if not self._unreachable:
            logger.error(
                "cannot reach the database: %s",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                extra={"action": "database_unreachable"},
            )
            self._unreachable = True
        if not self.member.valid():
            for rep in sorted(self.held):
                self._let_go(rep, "unreachable")

    def _check_versions(self, live: list[dict[str, object]]) -> None:
        versions = frozenset(str(i["campaigns"]) for i in live)
        if versions != self._versions and len(versions) > 1:
            listed = ", ".join(f"{i['host']} pid {i['pid']}: {i['campaigns']}" for i in live)
            logger.warning(
                "instances run different campaigns: give every host the same files",
                extra={"action": "campaigns_mismatch", "instances": listed},
            )
        self._versions = versions

    async def leave_all(self, *, forget: bool = False) -> None:
        """A clean stop: end every mailbox's work, then free every lease at once.

        `forget`: delete this instance's row (`run --once`: `dripd status`
        speaks of the daemon, not of each cron run).
        """
        for rep in sorted(self.held):
            self._let_go(rep, "stopping")
        if self._leaving:
            await asyncio.wait(list(self._leaving.values()))
        self.member.stop(self.app.clock.now(), forget=forget)

    async def keep_alive(self, stop: asyncio.Event, *, take: bool = True) -> None:
        """Tick every TICK until `stop`."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), membership.TICK)
            except TimeoutError:
                await self.tick(take=take)
