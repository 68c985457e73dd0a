"""An unexpected failure injected into a `dripd run` subprocess, to test its supervision.

Set DRIPD_TEST_FAULT (tests/sitehooks loads this module):
- "send:REP": the sender of REP's mailbox raises RuntimeError at its first
  email, claimed (`sending`) but not yet handed to the server; the others
  are untouched;
- "fleet": the fleet's lease renewal raises RuntimeError at its first tick
  after the start, in the supervised `fleet` task.
"""

from __future__ import annotations

from typing import Any

MESSAGE = "injected fault"


def install(spec: str) -> None:
    kind, _, target = spec.partition(":")
    if kind == "send":
        _fail_sender(target)
    elif kind == "fleet":
        _fail_fleet()
    else:
        raise SystemExit(f"unknown DRIPD_TEST_FAULT {spec!r}")


def _fail_sender(rep: str) -> None:
    from dripd.mailbox import smtp

    send = smtp.Connection.send
    failed: list[str] = []

    async def failing(self: smtp.Connection, sender: str, recipient: str, data: bytes) -> None:
        if sender.startswith(f"{rep}@") and not failed:
            failed.append(rep)
            raise RuntimeError(MESSAGE)
        await send(self, sender, recipient, data)

    smtp.Connection.send = failing  # type: ignore[method-assign]


def _fail_fleet() -> None:
    from dripd.daemon import fleet

    tick = fleet.Fleet.tick
    ticks: list[int] = []

    async def failing(self: fleet.Fleet, **options: Any) -> None:
        ticks.append(1)
        if len(ticks) > 1:  # the first is the start's, outside the supervised task
            raise RuntimeError(MESSAGE)
        await tick(self, **options)

    fleet.Fleet.tick = failing  # type: ignore[method-assign]
