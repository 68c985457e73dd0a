"""The daemon's heartbeat in the database: which `dripd run` is alive, and what it holds.

A row per running instance, written at start (dripd.leases.Membership), its
`seen_at` and `expires_at` refreshed every few seconds, `stopped_at` set on a
clean stop. An instance whose `expires_at` has passed (by the database's
clock) is dead: killed, its host lost, or stuck.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dripd import leases
from dripd.store import schema

KEEP = timedelta(days=7)  # stopped or dead instances are shown this long

_t = schema.instances


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
    troubles: tuple[str, ...] = ()  # its tasks that failed and were restarted (dripd.supervise)

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
    conn.execute(sa.delete(_t).where(_t.c.seen_at < now - KEEP))


def beat(engine: sa.Engine, instance_id: str, now: datetime) -> None:
    """The main loop made a pass (`seen_at`; the lease on life is renewed apart)."""
    with engine.begin() as conn:
        conn.execute(sa.update(_t).where(_t.c.id == instance_id).values(seen_at=now))


def note_troubles(engine: sa.Engine, instance_id: str, lines: list[str]) -> None:
    """Keep what went wrong in this instance's tasks, for `dripd status`."""
    with engine.begin() as conn:
        conn.execute(sa.update(_t).where(_t.c.id == instance_id).values(troubles="\n".join(lines)))


def listed(conn: sa.Connection) -> list[Instance]:
    """Every instance of the last week, newest first."""
    query = sa.select(
        _t.c.id,
        _t.c.host,
        _t.c.pid,
        _t.c.started_at,
        _t.c.seen_at,
        _t.c.stopped_at,
        _t.c.campaigns,
        _t.c.troubles,
        sa.case((leases.alive_clause(), 1), else_=0).label("alive"),
    ).order_by(_t.c.seen_at.desc())
    held: dict[str, list[str]] = {}
    for name, holder in leases.holders(conn).items():
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
