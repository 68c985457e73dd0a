"""Sending on PostgreSQL while its connections are lost: every email still goes exactly once.

The pool no longer pings a connection at every checkout (store/engine.py),
and the claim is one statement that commits itself (outbox.claim), so a
lost connection meets the sender in three places, each played here against
a real server with `pg_terminate_backend`: while the connection waits in
the pool, during the claim's statement, and after the claim was committed
but before its answer arrived. The claims run on the event loop's own
connections, several at once (dripd/daemon/claims.py): a kill ends the
other claims in flight too, which are run again as well.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from dripd.daemon import claims
from dripd.store import engine as store_engine

pytestmark = pytest.mark.postgres

CONTACTS = 6
WINDOW = "daily 00:00-24:00"


def _terminate_all(admin: sa.Engine, url: str) -> int:
    """End every session on `url`'s database (waiting until they are gone); how many."""
    name = sa.engine.make_url(url).database
    with admin.connect() as conn:
        ended = conn.execute(
            sa.text(
                "select count(*) filter (where pg_terminate_backend(pid, 5000))"
                " from pg_stat_activity where datname = :n and pid <> pg_backend_pid()"
            ),
            {"n": name},
        ).scalar_one()
    return int(ended)


def _send_all(world, claim: Callable[..., Awaitable[int]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Enroll CONTACTS contacts, run the daemon once with `claim` in place of the claims' run_on."""
    for i in range(CONTACTS):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    monkeypatch.setattr(claims.OnLoop, "run_on", claim)
    world.run()


def _assert_each_sent_once(world) -> None:
    recipients = [m.rcpt_tos for m in world.smtp.messages()]
    expected = sorted((f"c{i}@example.org",) for i in range(CONTACTS))
    assert sorted(recipients) == expected  # all of them, none twice
    assert {r.status for r in world.rows()} == {"sent"}


def test_backends_killed_between_claims_and_during_one(
    make_world, postgres_url: str, postgres_template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while idle in the pool (after claim 2) and under a claim's statement (claim 4)."""
    admin, _ = postgres_template
    world = make_world(database=postgres_url, window=WINDOW)
    real_run_on = claims.OnLoop.run_on
    calls: list[int] = []
    ended: list[int] = []

    async def claim(on_loop: claims.OnLoop, conn: Any, sql: str, params: Any) -> int:
        if "oid" not in params:  # a worker's last `sent`
            return await real_run_on(on_loop, conn, sql, params)
        calls.append(params["oid"])
        n = len(calls)
        if n == 4:  # this connection is taken: its statement meets the loss
            ended.append(_terminate_all(admin, postgres_url))
        taken = await real_run_on(on_loop, conn, sql, params)
        if n == 2:  # back among the idle ones, the connection is dead when next taken
            ended.append(_terminate_all(admin, postgres_url))
        return taken

    _send_all(world, claim, monkeypatch)
    assert len(ended) == 2 and all(n >= 1 for n in ended), ended
    _assert_each_sent_once(world)
    assert Counter(calls)[calls[3]] == 2  # the claim under which the connection was lost ran again


def test_a_claim_committed_but_its_answer_lost_is_sent_once(
    make_world, postgres_url: str, postgres_template, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server committed the claim, then the connection died before the answer came back.

    Running the claim again finds the row claimed by this instance at this
    moment: it is claimed again and sent once (not left `sending` until a
    restart, not sent twice).
    """
    admin, _ = postgres_template
    world = make_world(database=postgres_url, window=WINDOW)
    real_run_on = claims.OnLoop.run_on
    calls: list[int] = []

    async def claim(on_loop: claims.OnLoop, conn: Any, sql: str, params: Any) -> int:
        if "oid" not in params:
            return await real_run_on(on_loop, conn, sql, params)
        calls.append(params["oid"])
        n = len(calls)  # before the await: the other workers' claims run meanwhile
        taken = await real_run_on(on_loop, conn, sql, params)
        if n == 3:  # committed (autocommit); the answer never reaches dripd
            _terminate_all(admin, postgres_url)
            await conn.execute("select 1")  # raises: the connection is gone
        return taken

    _send_all(world, claim, monkeypatch)
    _assert_each_sent_once(world)
    assert Counter(calls)[calls[2]] == 2  # the same email's claim, run again


def test_a_pooled_connection_ended_by_the_server_is_replaced_without_a_ping_each_time(
    postgres_url: str, postgres_template
) -> None:
    """Back in the pool a moment ago, then ended: the next checkout sees it and opens another."""
    admin, _ = postgres_template
    engine = store_engine.open_engine(postgres_url)
    try:
        with engine.connect() as conn:
            first = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
        assert _terminate_all(admin, postgres_url) >= 1
        with engine.connect() as conn:  # well inside PING_AFTER_IDLE: no time-based ping
            second = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
        assert second != first
    finally:
        engine.dispose()
