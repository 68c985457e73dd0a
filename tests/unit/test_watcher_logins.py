"""The daemon's inboxes log in a few at a time, not all at once (a thousand would be a herd)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from dripd.daemon import watcher

WATCHERS = 12
AT_ONCE = 3


class FakeSession:
    can_idle = True

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    async def examine(self, folder: str) -> str:
        return folder

    async def idle(self, timeout: float, stop: asyncio.Event) -> bool:
        await self.stop.wait()
        return False


def test_watchers_take_turns_to_log_in(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[int, int]:
        stop = asyncio.Event()
        logins = asyncio.Semaphore(AT_ONCE)
        busy, most = 0, 0

        @contextlib.asynccontextmanager
        async def session(self: watcher.Watcher) -> AsyncIterator[FakeSession]:
            nonlocal busy, most
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.01)  # connect, greeting, login
            yield FakeSession(stop)

        async def catch_up(self: watcher.Watcher, session: Any, folder: Any) -> int:
            nonlocal busy
            await asyncio.sleep(0.01)
            busy -= 1  # caught up: the next inbox may log in
            return 0

        monkeypatch.setattr(watcher.Watcher, "_session", session)
        monkeypatch.setattr(watcher.Watcher, "catch_up", catch_up)
        rep = cast(Any, SimpleNamespace(id="mike", imap=SimpleNamespace(folder="INBOX", idle=True)))
        boxes = [
            watcher.Watcher(cast(Any, None), rep, stop, logins=logins) for _ in range(WATCHERS)
        ]
        tasks = [asyncio.ensure_future(box._watch()) for box in boxes]
        await asyncio.wait_for(asyncio.gather(*(b.connected.wait() for b in boxes)), timeout=10)
        stop.set()
        await asyncio.gather(*tasks)
        return most, sum(box.connected.is_set() for box in boxes)

    most, connected = asyncio.run(scenario())
    assert connected == WATCHERS
    assert most == AT_ONCE
