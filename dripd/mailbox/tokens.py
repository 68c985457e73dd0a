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
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from dripd import errors
from dripd.clock import Clock
from dripd.files import config
from dripd.store import oauth_tokens

if TYPE_CHECKING:  # authlib and requests load only when a token is refreshed
    from dripd.mailbox import oauth

logger = logging.getLogger("dripd.tokens")

WAIT_STEP = 0.2  # seconds between looks while another instance refreshes
ATTEMPTS = 400  # looks (x WAIT_STEP: well past CLAIM) before giving up for now

_instance_ids = itertools.count(1)


# ---------------------------------------------------------------- in the daemon


def not_signed_in(rep: str) -> errors.SignInError:
    return errors.SignInError(f"rep {rep} is not signed in: run `dripd auth {rep}`")


def lost_error(rep: str, stored: oauth_tokens.Stored) -> errors.SignInError:
    reason = f" ({stored.lost_reason})" if stored.lost_reason else ""
    return errors.SignInError(
        f"sign-in of rep {rep} stopped working{reason}: run `dripd auth {rep}`"
    )


def problem(rep: config.RepConfig, stored: oauth_tokens.Stored | None) -> str | None:
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
            stored = oauth_tokens.read(conn, self.rep)
            if stored is None:
                raise not_signed_in(self.rep)
            if stored.lost or stored.refresh_token is None:
                raise lost_error(self.rep, stored)
            fresh = stored.fresh_access(now)
            if fresh is not None:
                assert stored.access_fresh_until is not None
                self._cached = (fresh, stored.access_fresh_until)
                return fresh
            if not oauth_tokens.claim(conn, self.rep, stored.refresh_token, self.me, now):
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
                oauth_tokens.release(conn, self.rep, self.me)
            raise
        now = self.clock.now()
        with self._transaction() as conn:
            saved = oauth_tokens.save_refreshed(conn, self.rep, old, token, now)
        self.refreshes += 1
        if not saved:  # signed in again meanwhile (`dripd auth`): use that sign-in
            return None
        rotated = bool(token.get("refresh_token")) and token.get("refresh_token") != old
        logger.debug(
            "access token refreshed",
            extra={"action": "token_refreshed", "rep": self.rep, "rotated": rotated},
        )
        self._cached = (str(token["access_token"]), oauth_tokens.fresh_until(token, now))
        return self._cached[0]

    def _refused(self, old: str, exc: oauth.Refused) -> str | None:
        now = self.clock.now()
        with self._transaction() as conn:
            if not exc.final:
                oauth_tokens.release(conn, self.rep, self.me)
                raise errors.SignInUnavailable(
                    f"rep {self.rep}: the provider could not refresh the sign-in: {exc}"
                )
            if not oauth_tokens.mark_lost(conn, self.rep, old, str(exc), now):
                return None  # a newer sign-in replaced the refused one: use it
            stored = oauth_tokens.read(conn, self.rep)
        assert stored is not None
        raise lost_error(self.rep, stored)

    def reject(self, access_token: str) -> None:
        """A mail server refused `access_token`: the next login refreshes first."""
        if self._cached is not None and self._cached[0] == access_token:
            self._cached = None
        with self._transaction() as conn:
            oauth_tokens.reject_access(conn, self.rep, access_token)


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
