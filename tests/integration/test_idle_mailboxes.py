"""A daemon's idle mailboxes cost it one read a look, not one a mailbox (issue 21).

`dripd run` in this process, with MAILBOXES reps on the test's aiosmtpd and
the daemon's POLL shortened: while nothing is due, the database is read a
few times a look whatever the number of mailboxes (each sender had read its
pauses, its ready emails and its next attempt every look: 1,000 idle
mailboxes took 5% of a core); and an email queued straight into the outbox,
as another instance queues one, with no sender woken, still goes, once.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import servers.loopback
import sqlalchemy as sa
import userfiles
import worlds
from worlds import World

from dripd.daemon import daemon
from dripd.store import schema

MAILBOXES = 20
LOOK = 0.2  # seconds: the daemon's POLL here (15 s in dripd)
LOOKS = 10  # looks watched while idle
SETTLE = 1.5  # seconds for every sender's first drain and the engine's first pass
SENT_WITHIN = 5.0  # seconds for the email queued by "another instance" to arrive


def test_idle_mailboxes_are_read_once_a_look_and_an_email_queued_elsewhere_goes(
    make_world: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(daemon, "POLL", LOOK)
    others = [f"rep{i:02d}" for i in range(1, MAILBOXES)]  # and mike
    quiet = userfiles.quiet_digest()
    world: World = make_world(
        extra=worlds.more_reps(others, digest=quiet), rep_options={"digest": quiet}
    )
    assert len(world.app.config.reps) == MAILBOXES
    checkouts: list[int] = []
    sa.event.listen(world.app.engine.pool, "checkout", lambda *_: checkouts.append(0))

    idle = servers.loopback.run_client(_scenario(world, checkouts))

    # A few reads a look (the outbox's look; the engine's pass and the instance's beat,
    # which wait POLL at most too), not several per mailbox: ~60 a look before.
    assert idle <= 8 * LOOKS, f"{idle} reads in {LOOKS} looks of {MAILBOXES} idle mailboxes"
    arrived = [m for m in world.smtp.messages() if m.rcpt_tos == ("rep07@example.com",)]
    assert [m.message_id for m in arrived] == ["<elsewhere@example.com>"]


async def _scenario(world: World, checkouts: list[int]) -> int:
    running = daemon.Daemon(world.app)
    task = asyncio.ensure_future(running.run())
    try:
        await asyncio.sleep(SETTLE)
        before = len(checkouts)
        await asyncio.sleep(LOOK * LOOKS)
        idle = len(checkouts) - before
        _queue_as_another_instance(world, "rep07")
        deadline = time.monotonic() + SENT_WITHIN
        while not world.smtp.messages() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(LOOK * 2)  # time enough to send it twice, were it to go twice
    finally:
        running.stop.set()
        await task
    return idle


def _queue_as_another_instance(world: World, rep: str) -> None:
    """An email to `rep` itself, queued in the outbox with no sender of this daemon woken."""
    now = world.clock.now()
    mid = "<elsewhere@example.com>"
    message = (
        f"From: {rep}@example.com\r\nTo: {rep}@example.com\r\nSubject: queued elsewhere\r\n"
        f"Message-ID: {mid}\r\n\r\nQueued by another instance.\r\n"
    ).encode()
    with world.app.engine.begin() as conn:
        conn.execute(sa.insert(schema.outbox_bodies).values(message_id=mid, data=message))
        conn.execute(
            sa.insert(schema.outbox).values(
                message_id=mid,
                rep=rep,
                recipient=f"{rep}@example.com",
                subject="queued elsewhere",
                due_at=now,
                next_attempt_at=now - timedelta(seconds=1),
                created_at=now,
            )
        )
