"""dripd.supervise: a task that fails is restarted with backoff and noted; a fatal one stops all."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa

from dripd import errors
from dripd.daemon import supervise


@pytest.fixture(autouse=True)
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervise, "RESTART", (0.01, 0.04))


def failing(times: int, exc: Exception, runs: list[int]) -> supervise.Work:
    """Work that raises `exc` its first `times` runs, then returns."""

    async def work() -> None:
        runs.append(1)
        if len(runs) <= times:
            raise exc

    return work


def test_a_failing_task_is_restarted_logged_once_each_time_and_noted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    noted: list[supervise.Failure] = []
    runs: list[int] = []

    async def main() -> supervise.Supervisor:
        boss = supervise.Supervisor(asyncio.Event(), on_failure=noted.append)
        await boss.start("send-sam", failing(2, RuntimeError("boom\nsecond line"), runs), rep="sam")
        return boss

    with caplog.at_level(logging.INFO, logger="dripd.supervise"):
        boss = asyncio.run(main())
    assert len(runs) == 3
    assert [f.count for f in noted] == [1, 2]
    assert boss.failures["send-sam"] == supervise.Failure(
        task="send-sam", rep="sam", count=2, error="RuntimeError: boom"
    )
    assert boss.failures["send-sam"].line() == (
        "task send-sam failed 2 times and was restarted (last: RuntimeError: boom)"
    )
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 2
    assert all(getattr(r, "rep") == "sam" for r in errors_logged)  # noqa: B009
    assert boss.fatal is None and not boss.failed.is_set()


@pytest.mark.parametrize(
    ("essential", "exc"),
    [
        (True, RuntimeError("lease lost")),
        (False, errors.DripdError("instance marked stopped")),
        (False, sa.exc.OperationalError("select 1", None, Exception("database is gone"))),
    ],
)
def test_a_failure_the_daemon_cannot_go_on_without_stops_it(
    essential: bool, exc: Exception
) -> None:
    runs: list[int] = []

    async def main() -> supervise.Supervisor:
        boss = supervise.Supervisor(asyncio.Event())
        await boss.start("fleet", failing(5, exc, runs), essential=essential)
        return boss

    boss = asyncio.run(main())
    assert runs == [1]  # not restarted
    assert boss.failed.is_set() and boss.fatal is exc
    with pytest.raises(type(exc)):
        boss.raise_if_failed()


def test_no_restart_once_the_task_or_the_daemon_is_stopping() -> None:
    runs: list[int] = []

    async def main() -> None:
        halt = asyncio.Event()

        async def work() -> None:
            runs.append(1)
            halt.set()  # a reload replaces it while it fails
            raise RuntimeError("boom")

        boss = supervise.Supervisor(asyncio.Event())
        await asyncio.wait_for(boss.start("inbox-sam", work, halt=halt), 1)

    asyncio.run(main())
    assert runs == [1]


def test_a_replacement_starts_after_the_task_it_replaces_and_cancel_is_not_a_failure() -> None:
    order: list[str] = []

    async def main() -> supervise.Supervisor:
        boss = supervise.Supervisor(asyncio.Event())
        release = asyncio.Event()

        async def old() -> None:
            order.append("old starts")
            await release.wait()
            order.append("old ends")

        async def new() -> None:
            order.append("new starts")
            await asyncio.sleep(10)

        boss.start("send-sam", old)
        replacement = boss.start("send-sam", new)
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.sleep(0.01)
        replacement.cancel()
        await asyncio.wait([replacement])
        return boss

    boss = asyncio.run(main())
    assert order == ["old starts", "old ends", "new starts"]
    assert boss.failures == {} and boss.fatal is None
