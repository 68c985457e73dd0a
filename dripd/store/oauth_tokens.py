"""The oauth_tokens table: each rep's sign-in, and the compare-and-swap steps of a refresh.

The refresh protocol (one refresher at a time, the new token saved before it
is used, a refusal marks the sign-in lost only if it is still the one refused)
is described in dripd/mailbox/tokens.py, which runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dripd.store import schema

CLAIM = timedelta(seconds=60)  # how long a refresher holds the row (longer than the provider call)
MARGIN = timedelta(minutes=5)  # an access token is refreshed this long before it expires…
MARGIN_SHARE = 0.2  # …or this share of its lifetime before, for short-lived ones

_table = schema.oauth_tokens


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
