"""An instance's membership: which `dripd run` is alive, and which mailboxes it works.

Several `dripd run` on one PostgreSQL share the engine's work row by row
(`FOR UPDATE SKIP LOCKED`), but a mailbox is worked by one instance at a
time: its sender (so its rate limits and connection count hold), its inbox
watcher (each message handled once), its digests and its Sent copies. The
`leases` table says who holds which mailbox.

An instance lives by its row in `instances`: `expires_at`, by the database's
clock, is pushed TTL ahead every TICK. A lease whose holder has expired or
stopped is free; any live instance may take it in one conditional UPDATE
(PostgreSQL's row lock makes two takers agree). A holder that could not
renew stops taking new work MARGIN before its lease could have lapsed
(`Membership.valid`, on the monotonic clock), so the next holder never
overlaps it.

The instances, as `dripd instances` shows them: a row per running instance,
written at start by `Membership`, its `seen_at` and `expires_at` refreshed every
few seconds, `stopped_at` set on a clean stop. An instance whose `expires_at`
has passed (by the database's clock) is dead: killed, its host lost, or stuck.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from dripd.store import schema, statements

logger = logging.getLogger("dripd.leases")

TTL = 10.0  # seconds an instance lives without renewing
TICK = 2.0  # seconds between renewals (and looks for free mailboxes)
MARGIN = 2.0  # seconds before its lease could lapse that a holder stops starting work

_instances = schema.instances
_leases = schema.leases


class db_epoch(FunctionElement[float]):
    """The database server's clock in seconds since the epoch (one clock for every host)."""

    type = sa.Float()
    inherit_cache = True


@compiles(db_epoch, "postgresql")
def _pg_epoch(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_epoch, "sqlite")
def _sqlite_epoch(_element: Any, _compiler: Any, **_kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


def alive_clause(table: sa.Table = _instances) -> sa.ColumnElement[bool]:
    """An instance row that is alive now: not stopped, not expired."""
    return sa.and_(table.c.stopped_at.is_(None), table.c.expires_at > db_epoch())


def _holder_alive() -> sa.ColumnElement[bool]:
    return sa.exists().where(_instances.c.id == _leases.c.holder, alive_clause()).correlate(_leases)


class Membership:
    """This process's row in `instances` and the leases it holds."""

    def __init__(self, engine: sa.Engine, instance_id: str) -> None:
        self.engine = engine
        self.id = instance_id
        self._renewed = float("-inf")  # monotonic time a successful renewal started

    @classmethod
    def register(
        cls, engine: sa.Engine, now: datetime, campaigns: str, role: str = "daemon"
    ) -> Membership:
        """A new row for this process, alive from now on (`role`: "daemon" or "once")."""

        host = socket.gethostname()
        instance_id = f"{host[:40]}.{os.getpid()}.{secrets.token_hex(4)}"
        member = cls(engine, instance_id)
        started = time.monotonic()
        with engine.begin() as conn:
            prune(conn, now)
            conn.execute(
                sa.insert(_instances).values(
                    id=instance_id,
                    host=host,
                    pid=os.getpid(),
                    started_at=now,
                    seen_at=now,
                    expires_at=db_epoch() + TTL,
                    campaigns=campaigns,
                    role=role,
                )
            )
        member._renewed = started
        return member

    def valid(self) -> bool:
        """Whether this instance may still start work on its mailboxes (see MARGIN)."""
        return time.monotonic() < self._renewed + TTL - MARGIN

    def renew(self, campaigns: str | None = None) -> bool:
        """Push the lease on life ahead; False if the row is gone or was marked stopped."""
        started = time.monotonic()
        # (`seen_at` stays the main loop's: `dripd status` tells a stuck loop by it)
        values: dict[str, Any] = {"expires_at": db_epoch() + TTL}
        if campaigns is not None:
            values["campaigns"] = campaigns
        with self.engine.begin() as conn:
            query = (
                sa.update(_instances)
                .where(_instances.c.id == self.id, _instances.c.stopped_at.is_(None))
                .values(**values)
            )
            renewed = conn.execute(query).rowcount == 1
        if renewed:
            self._renewed = started
        return renewed

    def take(self, name: str, now: datetime) -> str | bool | None:
        """Try to take the lease `name`: False if another live instance holds it.

        On success, returns the previous holder's id (None if it had none), so
        the caller knows whether that one died with work in flight.
        """
        with self.engine.begin() as conn:
            statements.bulk_insert(
                conn,
                _leases,
                [{"name": name, "holder": None, "taken_at": None}],
                ignore_conflicts=True,
            )
            previous = conn.execute(
                sa.select(_leases.c.holder).where(_leases.c.name == name)
            ).scalar()
            taken = conn.execute(
                sa.update(_leases)
                .where(
                    _leases.c.name == name,
                    sa.or_(
                        _leases.c.holder.is_(None),
                        _leases.c.holder == self.id,
                        ~_holder_alive(),
                    ),
                )
                .values(holder=self.id, taken_at=now)
            ).rowcount
        if taken != 1:
            return False
        return previous if previous != self.id else None

    def still_holds(self, conn: sa.Connection, name: str) -> bool:
        """Inside a transaction: whether `name` is still this instance's (a fence for its work)."""
        # FOR SHARE on PostgreSQL: a taker's UPDATE waits until this transaction ends.
        query = sa.select(_leases.c.holder).where(_leases.c.name == name).with_for_update(read=True)
        return bool(conn.execute(query).scalar() == self.id)

    def release(self, name: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(_leases)
                .where(_leases.c.name == name, _leases.c.holder == self.id)
                .values(holder=None)
            )

    def stop(self, now: datetime, *, forget: bool = False) -> None:
        """A clean stop: every lease free at once, the row marked stopped (or deleted)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(_leases).where(_leases.c.holder == self.id).values(holder=None))
            row = _instances.c.id == self.id
            if forget:
                conn.execute(sa.delete(_instances).where(row))
            else:
                conn.execute(
                    sa.update(_instances)
                    .where(row)
                    .values(seen_at=now, stopped_at=now, expires_at=0.0)
                )
        self._renewed = float("-inf")


def live_instances(conn: sa.Connection) -> list[dict[str, Any]]:
    """The instances alive now: id, host, pid, campaigns version, role."""
    rows = conn.execute(
        sa.select(
            _instances.c.id,
            _instances.c.host,
            _instances.c.pid,
            _instances.c.campaigns,
            _instances.c.role,
        )
        .where(alive_clause())
        .order_by(_instances.c.started_at)
    )
    return [dict(row._mapping) for row in rows]


def holders(conn: sa.Connection) -> dict[str, str]:
    """Lease name → the live instance holding it (free leases are left out)."""
    rows = conn.execute(
        sa.select(_leases.c.name, _leases.c.holder).where(
            _leases.c.holder.is_not(None), _holder_alive()
        )
    )
    return {name: holder for name, holder in rows}


def instance_alive(conn: sa.Connection, instance_id: str) -> bool:
    row = conn.execute(
        sa.select(sa.literal(1)).where(_instances.c.id == instance_id, alive_clause())
    ).first()
    return row is not None


def bury_others(conn: sa.Connection, me: str) -> None:
    """Every other instance is dead (SQLite: the file lock proves it): free what they held."""
    conn.execute(
        sa.update(_instances)
        .where(_instances.c.id != me, _instances.c.expires_at > 0)
        .values(expires_at=0.0)
    )


KEEP = timedelta(days=7)  # stopped or dead instances are shown this long


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    id: str
    host: str
    pid: int
    started_at: datetime
    seen_at: datetime
    stopped_at: datetime | None
    alive: bool
    holds: tuple[str, ...]
    campaigns: str
    # its tasks that failed and were restarted (dripd.daemon.supervise)
    troubles: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "alive": self.alive,
            "holds": list(self.holds),
            "campaigns": self.campaigns,
            "troubles": list(self.troubles),
        }


def prune(conn: sa.Connection, now: datetime) -> None:
    """Forget instances stopped or dead for longer than KEEP."""
    conn.execute(sa.delete(_instances).where(_instances.c.seen_at < now - KEEP))


def beat(engine: sa.Engine, instance_id: str, now: datetime) -> None:
    """The main loop made a pass (`seen_at`; the lease on life is renewed apart)."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(_instances).where(_instances.c.id == instance_id).values(seen_at=now)
        )


def note_troubles(engine: sa.Engine, instance_id: str, lines: list[str]) -> None:
    """Keep what went wrong in this instance's tasks, for `dripd status`."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(_instances)
            .where(_instances.c.id == instance_id)
            .values(troubles="\n".join(lines))
        )


def listed(conn: sa.Connection) -> list[Instance]:
    """Every instance of the last week, newest first."""
    query = sa.select(
        _instances.c.id,
        _instances.c.host,
        _instances.c.pid,
        _instances.c.started_at,
        _instances.c.seen_at,
        _instances.c.stopped_at,
        _instances.c.campaigns,
        _instances.c.troubles,
        sa.case((alive_clause(), 1), else_=0).label("alive"),
    ).order_by(_instances.c.seen_at.desc())
    held: dict[str, list[str]] = {}
    for name, holder in holders(conn).items():
        held.setdefault(holder, []).append(name)
    found = []
    for row in conn.execute(query):
        values = dict(row._mapping)
        alive = bool(values.pop("alive"))
        values["troubles"] = tuple(values["troubles"].splitlines()) if alive else ()
        holds = tuple(sorted(held.get(values["id"], []))) if alive else ()
        found.append(Instance(**values, alive=alive, holds=holds))
    return found


def campaigns_version(folder: Path) -> str:
    """A short hash of every file in the campaigns folder (campaigns and templates).

    Stored with each instance: live instances with different versions are
    reported (`dripd status`, the log), never silently mixed.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # editors' swap files, .git
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:12]
