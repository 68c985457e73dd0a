"""Several instances on one database: leases, fair shares, orphaned claims, retries, migrations.

Against real databases: SQLite and PostgreSQL (`database_url`). The
processes of a fleet are played by several `Membership`s / `Fleet`s in one
process, each with its own engine (its own connections), so races are real
database races. The end-to-end behaviour with `dripd run` processes is in
tests/acceptance/test_instances.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import dates
import pytest
import servers.postgres
import sqlalchemy as sa
import userfiles

from dripd import clock, errors
from dripd.daemon import fleet
from dripd.pipeline import app as app_mod
from dripd.pipeline import reports
from dripd.store import engine as store_engine
from dripd.store import membership, outbox, retry, schema

NOW = dates.local(dates.today(), 15, tz=UTC)  # any instant: leases expire by the database's clock
REPS = 6


def _mailboxes(count: int) -> str:
    """`count` more reps (r0, r1, …), each with a sending mailbox."""
    smtp = userfiles.smtp_mailbox(2525, max_per_hour=None, max_per_day=None)
    return "".join("\n" + userfiles.rep(f"r{i}", name=f"Rep {i}", smtp=smtp) for i in range(count))


@pytest.fixture
def apps(make_config, database_url: str) -> Iterator[list[app_mod.App]]:
    """Four apps on one database, as four instances would open it."""
    path = make_config(database=database_url, extra=_mailboxes(REPS))
    opened = [app_mod.open_app(str(path), the_clock=clock.FakeClock(NOW)) for _ in range(4)]
    yield opened
    for app in opened:
        app.engine.dispose()


def _member(app: app_mod.App, version: str = "v1") -> membership.Membership:
    return membership.Membership.register(app.engine, NOW, version)


def _expire(app: app_mod.App, member: membership.Membership) -> None:
    """What SIGKILL amounts to once TTL has passed: the row stops being renewed."""
    with app.engine.begin() as conn:
        conn.execute(
            sa.update(schema.instances)
            .where(schema.instances.c.id == member.id)
            .values(expires_at=0.0)
        )


@pytest.fixture
def empty_postgres_url(postgres_server: servers.postgres.Server) -> Iterator[str]:
    """A new PostgreSQL database with no schema at all."""
    url = postgres_server.create(prefix="dripd_e_")
    yield url
    postgres_server.drop(url)


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    return empty_postgres_url


# -- leases ------------------------------------------------------------------------


def test_a_mailbox_has_one_holder_until_that_holder_dies(apps: list[app_mod.App]) -> None:
    a, b = _member(apps[0]), _member(apps[1])
    assert a.take("r0", NOW) is None  # nobody held it before
    assert b.take("r0", NOW) is False
    assert a.take("r0", NOW) is None  # taking again what it holds: fine
    with apps[0].engine.begin() as conn:
        assert a.still_holds(conn, "r0")
    _expire(apps[0], a)
    assert b.take("r0", NOW) == a.id  # the dead holder is named: its claims get reconciled
    with apps[0].engine.begin() as conn:
        assert not a.still_holds(conn, "r0")
    with apps[2].reader.connect() as conn:
        assert membership.holders(conn) == {"r0": b.id}


def test_a_clean_stop_frees_every_lease_at_once(apps: list[app_mod.App]) -> None:
    a, b = _member(apps[0]), _member(apps[1])
    assert a.take("r0", NOW) is None and a.take("r1", NOW) is None
    a.stop(NOW)
    assert b.take("r0", NOW) is None and b.take("r1", NOW) is None
    with apps[2].reader.connect() as conn:
        listed = {i.id: i for i in membership.listed(conn)}
    assert not listed[a.id].alive and listed[a.id].stopped_at == NOW
    assert listed[b.id].alive


def test_racing_takers_agree_on_one_holder(apps: list[app_mod.App]) -> None:
    members = [_member(app) for app in apps]
    barrier = threading.Barrier(len(members))

    def race(member: membership.Membership) -> bool:
        barrier.wait()
        return member.take("r3", NOW) is not False

    for _ in range(5):
        with concurrent.futures.ThreadPoolExecutor(len(members)) as pool:
            won = list(pool.map(race, members))
        assert won.count(True) == 1, won
        winner = members[won.index(True)]
        winner.release("r3")


def test_renewal_keeps_an_instance_alive_and_a_stopped_one_cannot_renew(
    apps: list[app_mod.App],
) -> None:
    a = _member(apps[0])
    assert a.valid()
    _expire(apps[0], a)
    with apps[1].reader.connect() as conn:
        assert not membership.instance_alive(conn, a.id)
    assert a.renew()
    with apps[1].reader.connect() as conn:
        assert membership.instance_alive(conn, a.id)
    a.stop(NOW)
    assert not a.renew() and not a.valid()


# -- claims left behind -----------------------------------------------------------------


def test_only_claims_of_gone_instances_are_reconciled(apps: list[app_mod.App]) -> None:
    app = apps[0]
    alive, dead = _member(app), _member(apps[1])
    _expire(apps[1], dead)
    rows = {"alive": alive.id, "dead": dead.id, "unknown": "host.1.gone", "none": None}
    with app.engine.begin() as conn:
        for key, claimer in rows.items():
            mid = f"<{key}@example.com>"
            conn.execute(sa.insert(schema.outbox_bodies).values(message_id=mid, data=b"x"))
            conn.execute(
                sa.insert(schema.outbox).values(
                    message_id=mid,
                    rep="r0",
                    recipient="c@example.org",
                    status="sending",
                    due_at=NOW,
                    next_attempt_at=NOW,
                    created_at=NOW,
                    sending_at=NOW,
                    claimed_by=claimer,
                )
            )
    with app.reader.connect() as conn:
        found = {row.message_id for row in outbox.orphaned(conn, ["r0"])}
        assert outbox.orphaned(conn, ["r1"]) == []
    assert found == {"<dead@example.com>", "<unknown@example.com>", "<none@example.com>"}


# -- fair shares -----------------------------------------------------------------------


def test_mailboxes_spread_over_the_instances_and_come_back_when_one_dies(
    apps: list[app_mod.App],
) -> None:
    asyncio.run(_spread(apps[:3]))


async def _spread(apps: list[app_mod.App]) -> None:
    working: dict[str, set[str]] = {}

    def fleet_of(app: app_mod.App) -> fleet.Fleet:
        def start(rep: str, _previous: str | None) -> None:
            assert all(rep not in held for held in working.values()), f"{rep} worked twice"
            working[member_id()].add(rep)

        async def stop(rep: str) -> None:
            working[member_id()].discard(rep)

        made = fleet.Fleet.join(app, start=start, stop=stop)
        made.greedy = False  # SQLite joins greedy (one instance); here a fleet is played

        def member_id() -> str:
            return made.member.id

        working[made.member.id] = set()
        return made

    async def settle(fleets: list[fleet.Fleet]) -> None:
        for _ in range(4):
            for each in fleets:
                await each.tick()
                await asyncio.sleep(0)  # the hand-overs run as tasks

    first = fleet_of(apps[0])
    await settle([first])
    assert len(working[first.member.id]) == REPS  # alone, it takes everything
    fleets = [first, fleet_of(apps[1]), fleet_of(apps[2])]
    await settle(fleets)
    shares = sorted(len(working[f.member.id]) for f in fleets)
    assert shares == [2, 2, 2], working
    everything = set().union(*working.values())
    assert everything == {f"r{i}" for i in range(REPS)}

    # One dies (its row expires): the other two take its mailboxes, three each.
    dead = fleets.pop(0)
    _expire(apps[0], dead.member)
    orphans = set(working.pop(dead.member.id))
    await settle(fleets)
    assert sorted(len(working[f.member.id]) for f in fleets) == [3, 3]
    assert orphans <= set().union(*working.values())


# -- versions -------------------------------------------------------------------------


def test_instances_running_different_campaigns_are_reported(apps: list[app_mod.App]) -> None:
    _member(apps[0], "aaaa11112222")
    _member(apps[1], "aaaa11112222")
    with apps[2].reader.connect() as conn:
        assert reports.health(apps[2], conn).campaign_mismatch is False
    _member(apps[1], "bbbb33334444")
    with apps[2].reader.connect() as conn:
        health = reports.health(apps[2], conn)
    assert health.campaign_mismatch is True
    assert "different campaigns" in health.attention[0]
    assert "aaaa11112222" in health.attention[0] and "bbbb33334444" in health.attention[0]


def test_the_campaigns_version_follows_any_file_in_the_folder(tmp_path) -> None:
    folder = tmp_path / "campaigns"
    (folder / "t").mkdir(parents=True)
    (folder / "a.toml").write_text('name = "A"\n')
    (folder / "t" / "hello.md").write_text("Hi\n")
    first = membership.campaigns_version(folder)
    (folder / ".a.toml.swp").write_text("editor noise")
    assert membership.campaigns_version(folder) == first
    (folder / "t" / "hello.md").write_text("Hello\n")
    assert membership.campaigns_version(folder) != first


# -- PostgreSQL: concurrent transactions and migrations ----------------------------------


@pytest.mark.postgres
def test_a_deadlocked_transaction_is_run_again(postgres_url: str) -> None:
    """Two transactions locking two rows in opposite orders: PostgreSQL aborts one; both end."""
    engine = store_engine.open_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("create table pair (id int primary key, n int not null)"))
            conn.execute(sa.text("insert into pair values (1, 0), (2, 0)"))
        barrier = threading.Barrier(2)
        aborted: list[str] = []

        def work(first: int, second: int) -> None:
            attempt = 0

            def transaction() -> None:
                nonlocal attempt
                attempt += 1
                with engine.begin() as conn:
                    conn.execute(sa.text("update pair set n = n + 1 where id = :i"), {"i": first})
                    if attempt == 1:
                        barrier.wait(5)
                    conn.execute(sa.text("update pair set n = n + 1 where id = :i"), {"i": second})

            retry.retrying(transaction, "test")
            if attempt > 1:
                aborted.append(f"{first}-{second}")

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda pair: work(*pair), [(1, 2), (2, 1)]))
        with engine.connect() as conn:
            assert conn.execute(sa.text("select n from pair order by id")).scalars().all() == [2, 2]
        assert len(aborted) == 1  # exactly one was chosen as the deadlock victim, and re-ran
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_instances_starting_together_migrate_once(make_config, empty_postgres_url: str) -> None:
    """Five `dripd migrate` at the same moment on a new database: one migrates, four wait."""
    path = make_config(database=empty_postgres_url)
    dripd = str(Path(sys.executable).with_name("dripd"))
    runs = [
        subprocess.Popen(
            [dripd, "--config", str(path), "migrate", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(5)
    ]
    results = [run.communicate(timeout=120) for run in runs]
    assert all(run.returncode == 0 for run in runs), results
    found = [json.loads(out)["before"] for out, _ in results]
    assert sorted(found, key=str) == [store_engine.HEAD] * 4 + [None], found
    engine = store_engine.create_engine(empty_postgres_url)
    try:
        assert store_engine.schema_version(engine) == store_engine.HEAD
    finally:
        engine.dispose()


def test_a_schema_newer_than_this_dripd_is_refused(database_url: str) -> None:
    engine = store_engine.open_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("update alembic_version set version_num = '0099'"))
        with pytest.raises(errors.StoreError) as caught:
            store_engine.open_engine(database_url)
        assert "schema is at 0099, newer than this dripd knows" in str(caught.value)
        assert "upgrade dripd" in str(caught.value)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_instance_cut_off_from_the_database_stops_working_its_mailboxes(
    make_config, postgres_template, empty_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No renewal for TTL - MARGIN: its mailboxes' work ends; back, it resumes them."""
    monkeypatch.setattr(membership, "TTL", 3.0)
    monkeypatch.setattr(membership, "MARGIN", 1.0)
    admin, _ = postgres_template
    name = sa.engine.make_url(empty_postgres_url).database
    path = make_config(database=empty_postgres_url, extra=_mailboxes(2))
    app = app_mod.open_app(str(path), the_clock=clock.FakeClock(NOW))
    try:
        asyncio.run(_cut_off(app, admin, str(name)))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        app.engine.dispose()


async def _cut_off(app: app_mod.App, admin: sa.Engine, name: str) -> None:
    working: set[str] = set()

    def start(rep: str, _previous: str | None) -> None:
        working.add(rep)

    async def stop(rep: str) -> None:
        working.discard(rep)

    member = fleet.Fleet.join(app, start=start, stop=stop)
    member.greedy = False
    await member.tick()
    assert working == {"r0", "r1"} and member.may_work("r0")

    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(
            sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n"),
            {"n": name},
        )
    await member.tick()  # renewal fails: still inside its lease, work goes on
    assert working == {"r0", "r1"}
    await asyncio.sleep(membership.TTL - membership.MARGIN + 0.2)
    assert not member.may_work("r0")  # the fence, before the work is even let go
    await member.tick()
    await asyncio.sleep(0)
    assert working == set()

    with admin.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
    await member.tick()  # renewed; the leases still in its name are its own again
    assert working == {"r0", "r1"} and member.may_work("r1")


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)  # SQLite: one at a time
def test_a_run_once_beside_a_daemon_takes_nothing_from_it(apps: list[app_mod.App]) -> None:
    """`run --once` (cron) is not counted in the daemons' shares, and takes only what is free."""
    asyncio.run(_beside(apps[0], apps[1]))


async def _beside(daemon_app: app_mod.App, once_app: app_mod.App) -> None:
    daemon_took: list[str] = []
    once_took: list[str] = []

    async def stop(_rep: str) -> None:
        pass

    daemon = fleet.Fleet.join(daemon_app, start=lambda rep, _p: daemon_took.append(rep), stop=stop)
    daemon.greedy = False  # a fleet of daemons is played on SQLite too
    await daemon.tick()
    assert len(daemon.held) == REPS
    once = fleet.Fleet.join(
        once_app, start=lambda rep, _p: once_took.append(rep), stop=stop, greedy=True
    )
    await once.tick()
    assert once_took == []  # everything is held by a live daemon
    for _ in range(3):
        await daemon.tick()  # the cron run is alive: the daemon still works every mailbox
        await asyncio.sleep(0)
    assert len(daemon.held) == REPS and len(daemon_took) == REPS
    await once.leave_all(forget=True)
    with once_app.reader.connect() as conn:
        assert [i.id for i in membership.listed(conn)] == [daemon.member.id]
