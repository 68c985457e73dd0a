"""The reps table: a rep's pause."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from dripd.store.schema import reps

_REP_PAUSES = sa.select(reps.c.id, reps.c.paused_until).where(reps.c.paused_until.is_not(None))


def rep_pauses(conn: sa.Connection) -> dict[str, datetime]:
    return {rep_id: until for rep_id, until in conn.execute(_REP_PAUSES)}


def set_rep_pause(conn: sa.Connection, rep_id: str, until: datetime | None, now: datetime) -> None:
    updated = conn.execute(
        sa.update(reps).where(reps.c.id == rep_id).values(paused_until=until, updated_at=now)
    )
    if updated.rowcount == 0:
        conn.execute(sa.insert(reps).values(id=rep_id, paused_until=until, updated_at=now))
