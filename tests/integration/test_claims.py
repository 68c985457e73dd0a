"""The claims on PostgreSQL, several at once on the event loop's connections (daemon/claims.py).

Against the real server and the aiosmtpd of the test: many workers of
several mailboxes claiming together send each email once; the rate limit
holds while claims are in flight; a worker cancelled while its claim runs
leaves nothing lost or sent twice once the sender starts again.
Each claim is slowed down a little here, so that they do overlap.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import dates
import psycopg
import pytest
import servers.loopback
import sqlalchemy as sa
import worlds

from dripd.daemon import claims, planner, sender, sent_copies
from dripd.mailbox import smtp
from dripd.store import engine as store_engine
from dripd.store import outbox, reps

pytestmark = pytest.mark.postgres

WINDOW = "daily 00:00-24:00"
SLOW = 0.02  # seconds added to each claim, so that the workers' claims overlap


class Overlap:
    """Wraps the claims' statements (OnLoop.run_on): how many claims ran at once, at most.

    `before(n)` is awaited ahead of the n-th claim; other statements (a
    worker's last `sent`) pass through.
    """

    def __init__(self, before: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.real = claims.OnLoop.run_on
        self.before = before
        self.calls = 0
        self.running = 0
        self.most = 0

    def __get__(self, on_loop: claims.OnLoop, _owner: Any) -> Callable[..., Awaitable[int]]:
        return functools.partial(self.__call__, on_loop)  # set on the class: a method

    async def __call__(self, on_loop: claims.OnLoop, conn: Any, sql: str, params: Any) -> int:
        if "oid" not in params:  # not a claim
            return await self.real(on_loop, conn, sql, params)
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            if self.before is not None:
                await self.before(self.calls)
            await asyncio.sleep(SLOW)
            return await self.real(on_loop, conn, sql, params)
        finally:
            self.running -= 1


def _to_contacts(world: Any) -> list[str]:
    return [to for m in world.smtp.messages() for to in m.rcpt_tos if to.endswith("@example.org")]


def test_many_workers_of_several_mailboxes_claiming_together_send_each_email_once(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reps = ("ann", "bob", "cat")
    world = make_world(
        database=postgres_url,
        window=WINDOW,
        extra=worlds.more_reps(reps, smtp_options={"connections": 3}),
    )
    owners = ("mike", *reps)  # 2 + 3 x 3 = 11 SMTP connections, 11 workers
    expected = [f"c{i}@example.org" for i in range(60)]
    for i, address in enumerate(expected):
        world.add(address, first_name=f"C{i}", company="X", owner=owners[i % len(owners)])
    overlap = Overlap()
    monkeypatch.setattr(claims.OnLoop, "run_on", overlap)
    world.run()
    assert sorted(_to_contacts(world)) == sorted(expected)  # every one, none twice
    assert {r.status for r in world.rows()} == {"sent"}
    assert 2 <= overlap.most <= claims.SIZE  # in flight together, no more than the connections


def test_the_rate_limit_holds_with_claims_in_flight(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six workers decide while others' claims are in flight: reserved, the limit still holds.

    12 an hour allows 2 in ten minutes; counted only once claimed, all six
    would have gone at once.
    """
    world = make_world(
        database=postgres_url, window=WINDOW, limits=(12, 40), smtp_options={"connections": 6}
    )
    for i in range(20):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    overlap = Overlap()
    monkeypatch.setattr(claims.OnLoop, "run_on", overlap)
    world.run()
    assert len(_to_contacts(world)) == 2
    world.clock.advance(timedelta(minutes=10, seconds=1))
    world.run()
    assert len(_to_contacts(world)) == 4
    assert sorted(Counter(_to_contacts(world)).values()) == [1] * 4


def test_a_worker_cancelled_during_its_claim_leaves_nothing_lost_or_doubled(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its claim runs (its emails accepted in it, the next claimed).

    The claim commits after the cancellation; the restarted sender finds
    the row `sending` by itself and sends it again: it had not gone. One
    SMTP connection: a second worker cancelled while its server was taking
    an email's data would leave that email uncertain, the crash rule's one
    duplicate per connection (sent_copies), which is not what is tested here.
    """
    world = make_world(database=postgres_url, window=WINDOW, smtp_options={"connections": 1})
    expected = [f"c{i}@example.org" for i in range(8)]
    for i, address in enumerate(expected):
        world.add(address, first_name=f"C{i}", company="X")
    planner.advance_due(world.app, world.clock.now())
    entered, proceed = asyncio.Event(), asyncio.Event()

    async def hold_the_fifth(n: int) -> None:
        if n == 5:
            entered.set()
            await asyncio.wait_for(proceed.wait(), 10)

    monkeypatch.setattr(claims.OnLoop, "run_on", Overlap(hold_the_fifth))
    rep = world.app.config.reps[0]

    async def cancelled_then_restarted() -> None:
        box = sender.Sender(world.app, rep, asyncio.Event())
        box.load_history()
        drain = asyncio.ensure_future(box.drain())
        while not entered.is_set():
            await asyncio.sleep(0.005)
        drain.cancel()
        asyncio.get_running_loop().call_later(0.1, proceed.set)  # commits after the cancel
        with pytest.raises(asyncio.CancelledError):
            await drain
        assert not box._accepted  # committed in the claim, not given back
        # as the daemon's supervisor does (daemon._sending): reconcile, then send
        await sent_copies.reconcile(world.app, [rep.id])
        box.load_history()
        await box.drain()
        await box.close()

    servers.loopback.run_client(cancelled_then_restarted())
    assert sorted(_to_contacts(world)) == sorted(expected)  # every one, none twice
    assert {r.status for r in world.rows()} == {"sent"}


def test_each_email_is_committed_sent_before_the_next_goes_on_its_connection(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash rule's bound: at most one email of a connection is uncertain at a time.

    Claims of uneven length (some three times slower) overtake each other;
    a claim that marked sent another connection's email would let that
    connection send on while its previous email's `sent` was still in flight.
    Checked at each DATA: every email sent before on that connection is `sent`.
    """
    world = make_world(database=postgres_url, window=WINDOW, smtp_options={"connections": 4})
    for i in range(40):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")

    async def uneven(n: int) -> None:
        await asyncio.sleep(SLOW * 2 * (n % 3))

    monkeypatch.setattr(claims.OnLoop, "run_on", Overlap(uneven))
    real_send = smtp.Connection.send
    went_on: dict[int, list[str]] = {}
    uncertain: list[tuple[str, list[str]]] = []

    async def checked_send(self: smtp.Connection, sender: str, recipient: str, data: bytes) -> None:
        earlier = went_on.setdefault(id(self), [])
        if earlier:
            status = {r.recipient: r.status for r in world.rows()}
            not_yet = [to for to in earlier if status[to] != "sent"]
            if not_yet:
                uncertain.append((recipient, not_yet))
        await real_send(self, sender, recipient, data)
        earlier.append(recipient)

    monkeypatch.setattr(smtp.Connection, "send", checked_send)
    world.run()
    assert len(_to_contacts(world)) == 40
    assert uncertain == []


def test_a_workers_last_email_is_committed_sent_on_a_claims_connection_before_its_drain_ends(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a worker's queue runs out, its last email's `sent` does not hold up the loop.

    One statement on a claims connection (the loop goes on while it
    commits), and awaited: slowed down here, it is still committed when the
    drain returns, before anything is recorded. Nothing is marked sent on
    the loop's own pool.
    """
    world = make_world(database=postgres_url, window=WINDOW, smtp_options={"connections": 2})
    for i in range(6):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    planner.advance_due(world.app, world.clock.now())
    real_run_on = claims.OnLoop.run_on
    flushed: list[int] = []

    async def slow_flush(on_loop: claims.OnLoop, conn: Any, sql: str, params: Any) -> int:
        if "oid" not in params:
            await asyncio.sleep(SLOW)
            flushed.append(len(params["sent_ids"]))
        return await real_run_on(on_loop, conn, sql, params)

    monkeypatch.setattr(claims.OnLoop, "run_on", slow_flush)
    on_the_pool: list[int] = []
    real_mark_sent = outbox.mark_sent

    def mark_sent(conn: sa.Connection, row: outbox.Row, at: Any) -> None:
        on_the_pool.append(row.id)
        real_mark_sent(conn, row, at)

    monkeypatch.setattr(outbox, "mark_sent", mark_sent)
    box = sender.Sender(world.app, world.app.config.reps[0], asyncio.Event())
    statuses: list[str] = []

    async def drain() -> None:
        box.load_history()
        assert await box.drain() == 6
        statuses.extend(r.status for r in world.rows())
        await box.close()

    servers.loopback.run_client(drain())
    assert statuses == ["sent"] * 6
    assert flushed == [1, 1]  # one per worker: the others went with the next claim
    assert on_the_pool == []


def test_the_claims_connections_are_opened_once_for_many_claims(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 claims on at most SIZE connections, each opened once and kept from claim to claim."""
    world = make_world(database=postgres_url, window=WINDOW, smtp_options={"connections": 4})
    for i in range(30):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    overlap = Overlap()
    monkeypatch.setattr(claims.OnLoop, "run_on", overlap)
    real_connect = psycopg.AsyncConnection.connect
    opened: list[int] = []

    async def connect(*args: Any, **kwargs: Any) -> Any:
        opened.append(1)
        return await real_connect(*args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect)
    world.run()
    assert len(_to_contacts(world)) == 30 and overlap.calls == 30
    assert 1 <= len(opened) <= claims.SIZE, opened


def _add_emails(engine: sa.Engine, first: int, last: int) -> None:
    """Emails `first`..`last` queued, each to its own contact and sequence (no ANALYZE after)."""
    now = "now()::timestamp"
    with engine.begin() as conn:
        for statement in (
            "insert into contacts (id, email, email_key, created_at, updated_at)"
            f" select g, 'c' || g || '@example.org', 'c' || g || '@example.org', {now}, {now}"
            " from generate_series(%(first)s::int, %(last)s::int) g",
            "insert into enrollments (id, contact_id, campaign, enrolled_at)"
            f" select g, g, 'test', {now} from generate_series(%(first)s::int, %(last)s::int) g",
            "insert into outbox (id, message_id, contact_id, enrollment_id, rep, recipient,"
            " due_at, next_attempt_at, created_at)"
            f" select g, 'm' || g, g, g, 'mike', 'c' || g || '@example.org', {now}, {now}, {now}"
            " from generate_series(%(first)s::int, %(last)s::int) g",
            "insert into outbox_bodies (message_id, data)"
            " select 'm' || g, 'x'::bytea from generate_series(%(first)s::int, %(last)s::int) g",
        ):
            conn.exec_driver_sql(statement, {"first": first, "last": last})


def test_the_claims_plan_never_scans_the_outbox_it_was_prepared_small(postgres_url: str) -> None:
    # psycopg prepares the claim at its fifth run; PostgreSQL keeps that plan
    # for the connection's life (no ANALYZE to invalidate it). Prepared on a
    # page of outbox, a plan reading it whole would then read thousands of rows.
    engine = store_engine.create_engine(postgres_url)
    threads = store_engine.claims_engine(engine, 1)
    try:
        _add_emails(engine, 1, 20)
        with engine.connect() as conn:
            rows = [outbox._row(r) for r in conn.execute(outbox._ROWS.order_by(outbox._t.c.id))]
        now, last = dates.local(dates.today(), 10), None
        with threads.connect() as conn:
            for row in rows:  # each claim marks the previous email sent
                with conn.begin():
                    assert outbox.claim(conn, row, now, "me", sent=[(last, now)] if last else [])
                last = row
            _add_emails(engine, 21, 3000)
            plan = _prepared_plan(conn, "WITH marked")
    finally:
        threads.dispose()
        engine.dispose()
    assert "Seq Scan on outbox" not in plan, plan


def _prepared_plan(conn: sa.Connection, starting: str) -> str:
    """EXPLAIN of this connection's prepared statement whose text starts with `starting`."""
    name, types = conn.exec_driver_sql(
        "select name, parameter_types::text[] from pg_prepared_statements"
        " where starts_with(statement, %(starting)s)",
        {"starting": starting},
    ).one()
    dummies = {"timestamp without time zone": "now()::timestamp"}
    dummies |= dict.fromkeys(("smallint", "integer", "bigint"), "0")
    values = ", ".join("'{}'" if t.endswith("[]") else dummies.get(t, "'x'") for t in types)
    return "\n".join(conn.exec_driver_sql(f"explain execute {name}({values})").scalars())


def test_a_drains_reads_are_awaited_on_the_claims_connections_not_on_the_loop(
    make_world, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mailbox's pauses and its ready emails: read while the other workers' claims run.

    Read synchronously, each held up every other mailbox's workers for its
    round trip. No SELECT runs on the loop's own pool during the drain.
    """
    world = make_world(database=postgres_url, window=WINDOW)
    for i in range(4):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    planner.advance_due(world.app, world.clock.now())
    real_fetch_on = claims.OnLoop.fetch_on
    fetched: list[str] = []

    async def fetch_on(on_loop: claims.OnLoop, conn: Any, sql: str, params: Any) -> Any:
        fetched.append(sql)
        return await real_fetch_on(on_loop, conn, sql, params)

    monkeypatch.setattr(claims.OnLoop, "fetch_on", fetch_on)
    on_the_loop: list[str] = []
    loop_thread = threading.get_ident()

    def before(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if threading.get_ident() == loop_thread and sql.lstrip().upper().startswith("SELECT"):
            on_the_loop.append(sql)

    box = sender.Sender(world.app, world.app.config.reps[0], asyncio.Event())
    found: list[Any] = []

    async def drain() -> None:
        box.load_history()
        sa.event.listen(world.app.engine, "before_cursor_execute", before)
        try:
            found.append(await box.drain())
        finally:
            sa.event.remove(world.app.engine, "before_cursor_execute", before)
        await box.close()

    servers.loopback.run_client(drain())
    assert found == [4]
    assert on_the_loop == []
    # the pauses, the ready emails (fewer than a batch: no second read)
    assert [sql.split("FROM")[1].split()[0] for sql in fetched] == ["mailboxes", "outbox"]


def test_a_read_on_the_claims_connections_gives_what_sqlalchemy_gives(
    make_world, postgres_url: str
) -> None:
    """The same values and types, times aware UTC, as through the reader."""
    world = make_world(database=postgres_url, window=WINDOW)
    for i in range(3):
        world.add(f"c{i}@example.org", first_name=f"C{i}", company="X")
    planner.advance_due(world.app, world.clock.now())
    now = world.clock.now()
    with world.app.engine.begin() as conn:
        outbox.pause_mailbox(conn, "mike", now + timedelta(hours=1), "test", now)
        reps.set_rep_pause(conn, "mike", now + timedelta(days=2), now)
    queries = [
        outbox.ready_query("mike", now, 2),
        outbox.pauses_query("mike"),
        outbox.pauses_query("ann"),
    ]
    with world.app.reader.connect() as conn:
        expected = [query.run(conn) for query in queries]
    connections = claims.of(world.app.engine)
    assert connections is not None

    async def read() -> list[Any]:
        return [await connections.on_loop().fetch(query) for query in queries]

    found = servers.loopback.run_client(read())
    assert found == expected
    ready, (mailbox, rep), *_ = found
    assert len(ready) == 2 and ready[0].wait is None and isinstance(ready[0].message, bytes)
    assert mailbox == now + timedelta(hours=1) and rep == now + timedelta(days=2)
    for at in (ready[0].due_at, ready[0].next_attempt_at, mailbox, rep):
        assert at.utcoffset() == timedelta(0)
