"""The daemon's heartbeat in the database: which `dripd run` is alive, and since when.

A row per running instance, written at start, its `seen_at` refreshed at
every pass of the main loop, `stopped_at` set on a clean stop. An instance
not seen for `STALE` is taken for dead (killed, host lost, or stuck).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dripd.store import schema

STALE = timedelta(seconds=60)  # four of the loop's longest sleeps without a pass
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

    def alive(self, now: datetime) -> bool:
        return self.stopped_at is None and now - self.seen_at < STALE

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "stopped_at": self.stopped_at.isoformat() if self.stopped_at else None,
            "alive": self.alive(now),
        }


def register(engine: sa.Engine, now: datetime) -> str:
    """A new row for this process; its id. Old rows of stopped or dead instances are pruned."""
    host = socket.gethostname()
    instance_id = f"{host[:40]}.{os.getpid()}.{secrets.token_hex(4)}"
    with engine.begin() as conn:
        conn.execute(sa.delete(_t).where(_t.c.seen_at < now - KEEP))
        conn.execute(
            sa.insert(_t).values(
                id=instance_id, host=host, pid=os.getpid(), started_at=now, seen_at=now
            )
        )
    return instance_id


def beat(engine: sa.Engine, instance_id: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(_t).where(_t.c.id == instance_id).values(seen_at=now))


def stopped(engine: sa.Engine, instance_id: str, now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.update(_t).where(_t.c.id == instance_id).values(seen_at=now, stopped_at=now)
        )


def listed(conn: sa.Connection) -> list[Instance]:
    """Every instance of the last week, newest first."""
    rows = conn.execute(sa.select(_t).order_by(_t.c.seen_at.desc())).all()
    return [Instance(**row._mapping) for row in rows]
