"""A rep's OAuth2 tokens: kept in the database, shared by the fleet, refreshed before expiry.

The refresh token is the rep's sign-in; it lives in `oauth_tokens` (never in
the config, a log line or any output), so every instance of a PostgreSQL
fleet finds it. The access token it last gave is kept beside it, so the
instances share one until it is nearly expired.

Refreshing, with providers that rotate refresh tokens (Microsoft: each use
returns a new one, and the old one may stop working), must never lock the rep
out:
1. one refresher at a time: an instance claims the row (`refreshing_by`, a
   short claim) by compare-and-swap on the refresh token it read; the others
   wait and read what it saved;
2. the new refresh token is saved by compare-and-swap on the old one before
   anything uses it; the old one is simply overwritten;
3. a refusal (`invalid_grant`) marks the sign-in lost only if the stored
   refresh token is still the one refused (else a newer one is tried).

Every database step is its own short transaction: none spans a call to the
provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from dripd import errors
from dripd.clock import Clock
from dripd.files import config
from dripd.store import schema

if TYPE_CHECKING:  # authlib and requests load only when a token is refreshed
    from dripd.mailbox import oauth

logger = logging.getLogger("dripd.tokens")

CLAIM = timedelta(seconds=60)  # how long a refresher holds the row (longer than the provider call)
MARGIN = timedelta(minutes=5)  # an access token is refreshed this long before it expires…
MARGIN_SHARE = 0.2  # …or this share of its lifetime before, for short-lived ones
WAIT_STEP = 0.2  # seconds between looks while another instance refreshes
ATTEMPTS = 400  # looks (x WAIT_STEP: well past CLAIM) before giving up for now

_table = schema.oauth_tokens
_instance_ids = itertools.count(1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stored:
    """A rep's row in `oauth_tokens`."""

    rep: str
    subject: str
    refresh_token: str | None = field(repr=False)  # secrets: never in a repr or a traceback
    access_token: str | None = field(repr=False)
    access_fresh_until: datetime | None
    signed_in_at: datetime
    refreshed_at: datetime | None
    refreshing_by: str | None
    refreshing_until: datetime | None
    lost_at: datetime | None
    lost_reason: str | None

    def fresh_access(self, now: datetime) -> str | None:
        if self.access_token and self.access_fresh_until and self.access_fresh_until > now:
            return self.access_token
        return None

    @property
    def lost(self) -> bool:
        return self.lost_at is not None or not self.refresh_token


def fresh_until(token: dict[str, Any], now: datetime) -> datetime:
    """Until when an access token is used: its expiry, less a margin."""
    lifetime = timedelta(seconds=float(token.get("expires_in") or 3600))
    return now + lifetime - min(MARGIN, lifetime * MARGIN_SHARE)


# ---------------------------------------------------------------- the table


def read(conn: sa.Connection, rep: str) -> Stored | None:
    row = conn.execute(sa.select(_table).where(_table.c.rep == rep)).mappings().first()
    return Stored(**row) if row is not None else None


def read_all(conn: sa.Connection) -> dict[str, Stored]:
    rows = conn.execute(sa.select(_table)).mappings().all()
    return {row["rep"]: Stored(**row) for row in rows}


def save_sign_in(
    conn: sa.Connection, rep: str, subject: str, token: dict[str, Any], now: datetime
) -> None:
    """A new sign-in replaces whatever the rep had (also a lost one)."""
    conn.execute(sa.delete(_table).where(_table.c.rep == rep))
    conn.execute(
        sa.insert(_table).values(
            rep=rep,
            subject=subject,
            refresh_token=token.get("refresh_token"),
            access_token=token.get("access_token"),
            access_fresh_until=fresh_until(token, now),
            signed_in_at=now,
        )
    )


def forget(conn: sa.Connection, rep: str) -> Stored | None:
    stored = read(conn, rep)
    conn.execute(sa.delete(_table).where(_table.c.rep == rep))
    return stored


def _held_by(rep: str, refresh_token: str) -> sa.ColumnElement[bool]:
    return sa.and_(_table.c.rep == rep, _table.c.refresh_token == refresh_token)


def claim(conn: sa.Connection, rep: str, refresh_token: str, me: str, now: datetime) -> bool:
    """Become the one refreshing `refresh_token`, unless another instance is; whether we are."""
    free = sa.or_(
        _table.c.refreshing_until.is_(None),
        _table.c.refreshing_until < now,
        _table.c.refreshing_by == me,
    )
    result = conn.execute(
        sa.update(_table)
        .where(_held_by(rep, refresh_token), _table.c.lost_at.is_(None), free)
        .values(refreshing_by=me, refreshing_until=now + CLAIM)
    )
    return result.rowcount == 1


def save_refreshed(
    conn: sa.Connection, rep: str, old: str, token: dict[str, Any], now: datetime
) -> bool:
    """Store what a refresh of `old` gave (compare-and-swap on `old`); whether it was stored."""
    result = conn.execute(
        sa.update(_table)
        .where(_held_by(rep, old))
        .values(
            refresh_token=token.get("refresh_token") or old,  # not rotated: the old one stays
            access_token=token["access_token"],
            access_fresh_until=fresh_until(token, now),
            refreshed_at=now,
            refreshing_by=None,
            refreshing_until=None,
        )
    )
    return result.rowcount == 1


def release(conn: sa.Connection, rep: str, me: str) -> None:
    conn.execute(
        sa.update(_table)
        .where(_table.c.rep == rep, _table.c.refreshing_by == me)
        .values(refreshing_by=None, refreshing_until=None)
    )


def mark_lost(conn: sa.Connection, rep: str, refused: str, reason: str, now: datetime) -> bool:
    """The provider refused `refused`: the sign-in is lost, unless a newer one replaced it."""
    result = conn.execute(
        sa.update(_table)
        .where(_held_by(rep, refused))
        .values(
            lost_at=now,
            lost_reason=reason,
            access_token=None,
            access_fresh_until=None,
            refreshing_by=None,
            refreshing_until=None,
        )
    )
    return result.rowcount == 1


def reject_access(conn: sa.Connection, rep: str, access_token: str) -> None:
    """A mail server refused this access token: no instance uses it again."""
    conn.execute(
        sa.update(_table)
        .where(_table.c.rep == rep, _table.c.access_token == access_token)
        .values(access_fresh_until=None)
    )


# ---------------------------------------------------------------- in the daemon


def not_signed_in(rep: str) -> errors.SignInError:
    return errors.SignInError(f"rep {rep} is not signed in: run `dripd auth {rep}`")


def lost_error(rep: str, stored: Stored) -> errors.SignInError:
    reason = f" ({stored.lost_reason})" if stored.lost_reason else ""
    return errors.SignInError(
        f"sign-in of rep {rep} stopped working{reason}: run `dripd auth {rep}`"
    )


def problem(rep: config.RepConfig, stored: Stored | None) -> str | None:
    """Why an OAuth2 rep cannot log in (not signed in, sign-in lost), or None."""
    if not rep.uses_oauth2:
        return None
    if stored is None:
        return str(not_signed_in(rep.id))
    if stored.lost:
        return str(lost_error(rep.id, stored))
    return None


class TokenSource:
    """Access tokens for one rep's mailboxes; `await access_token()` before each login.

    Raises errors.SignInError when the rep must sign in again (never signed
    in, or the provider refused the refresh token), and
    errors.SignInUnavailable when the provider can't be reached for now.
    """

    def __init__(
        self, engine: sa.Engine, rep: config.RepConfig, clock: Clock, provider: oauth.Provider
    ) -> None:
        self.engine = engine
        self.rep = rep.id
        self.login = rep.login
        self.clock = clock
        self.provider = provider
        self.me = f"{socket.gethostname()}:{os.getpid()}:{next(_instance_ids)}"[:64]
        self._cached: tuple[str, datetime] | None = None
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self.refreshes = 0  # refreshes this source made (tests and logs)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            yield conn

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    async def access_token(self) -> str:
        """A token good for a login now: cached, another instance's, or a fresh refresh."""
        cached = self._cached
        if cached is not None and cached[1] > self.clock.now():
            return cached[0]
        async with self._lock():  # one refresh per process; the database orders the fleet
            for _ in range(ATTEMPTS):
                token = await self._attempt()
                if token is not None:
                    return token
                await asyncio.sleep(WAIT_STEP)
        raise errors.SignInUnavailable(
            f"rep {self.rep}: another instance has been refreshing the sign-in for too long"
        )

    async def _attempt(self) -> str | None:
        """One look: a usable token, or None to look again (another instance is refreshing)."""
        now = self.clock.now()
        with self._transaction() as conn:
            stored = read(conn, self.rep)
            if stored is None:
                raise not_signed_in(self.rep)
            if stored.lost or stored.refresh_token is None:
                raise lost_error(self.rep, stored)
            fresh = stored.fresh_access(now)
            if fresh is not None:
                assert stored.access_fresh_until is not None
                self._cached = (fresh, stored.access_fresh_until)
                return fresh
            if not claim(conn, self.rep, stored.refresh_token, self.me, now):
                return None
        return await self._refresh(stored.refresh_token)

    async def _refresh(self, old: str) -> str | None:
        """Refresh with `old` (this instance holds the claim); None to look again."""
        from dripd.mailbox import oauth

        try:
            token = await asyncio.to_thread(self.provider.refresh, old)
        except oauth.Refused as exc:
            return self._refused(old, exc)
        except BaseException:
            with self._transaction() as conn:
                release(conn, self.rep, self.me)
            raise
        now = self.clock.now()
        with self._transaction() as conn:
            saved = save_refreshed(conn, self.rep, old, token, now)
        self.refreshes += 1
        if not saved:  # signed in again meanwhile (`dripd auth`): use that sign-in
            return None
        rotated = bool(token.get("refresh_token")) and token.get("refresh_token") != old
        logger.debug(
            "access token refreshed",
            extra={"action": "token_refreshed", "rep": self.rep, "rotated": rotated},
        )
        self._cached = (str(token["access_token"]), fresh_until(token, now))
        return self._cached[0]

    def _refused(self, old: str, exc: oauth.Refused) -> str | None:
        now = self.clock.now()
        with self._transaction() as conn:
            if not exc.final:
                release(conn, self.rep, self.me)
                raise errors.SignInUnavailable(
                    f"rep {self.rep}: the provider could not refresh the sign-in: {exc}"
                )
            if not mark_lost(conn, self.rep, old, str(exc), now):
                return None  # a newer sign-in replaced the refused one: use it
            stored = read(conn, self.rep)
        assert stored is not None
        raise lost_error(self.rep, stored)

    def reject(self, access_token: str) -> None:
        """A mail server refused `access_token`: the next login refreshes first."""
        if self._cached is not None and self._cached[0] == access_token:
            self._cached = None
        with self._transaction() as conn:
            reject_access(conn, self.rep, access_token)


_sources: weakref.WeakKeyDictionary[sa.Engine, dict[tuple[str, str], TokenSource]] = (
    weakref.WeakKeyDictionary()
)


def source(
    engine: sa.Engine,
    rep: config.RepConfig,
    clock: Clock,
    box: config.SmtpConfig | config.ImapConfig | None,
) -> TokenSource | None:
    """The TokenSource of a mailbox with auth = "oauth2" (else None).

    One per rep in this process: its SMTP and IMAP share it (and its cache).
    """
    if box is None or box.auth != "oauth2" or rep.oauth2 is None:
        return None
    by_rep = _sources.setdefault(engine, {})
    key = (rep.id, rep.oauth2.model_dump_json() + rep.login)
    found = by_rep.get(key)
    if found is None:
        from dripd.mailbox import oauth

        found = by_rep[key] = TokenSource(engine, rep, clock, oauth.Provider(rep.oauth2))
    return found
