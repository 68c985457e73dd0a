"""The cyclic garbage collector over a command's start-up and exit.

A command's start-up (SQLAlchemy, pydantic, the config and the campaigns)
makes a few hundred thousand objects and no garbage. At Python's default
threshold the collector passed over them some hundreds of times while they
were made, and the interpreter's last collection at exit went over them all
once more: ~0.1 s of every command, ~0.2 s of `schedule --days 1` at 1M.

So the console script (`cli.entry`) starts with the passes rare (`begin`).
Once the command has its app (`loaded`, from `cli.main.open_app`), what
start-up made is frozen (`gc.freeze`: never scanned again, the long-lived
set it is) and the collector is as it was. At the end everything is frozen
(`end`), so the last collection has nothing to scan; the objects are still
freed.

A frozen object in a reference cycle is never collected: a daemon that
reloads its campaigns keeps the cycles of its first catalog (once, not per
reload). Only the `dripd` process does this: code that runs the commands in
a process of its own (the tests) keeps its collector as it is.
"""

from __future__ import annotations

import gc

START_UP_THRESHOLD = 100_000  # allocations between passes while starting (Python: 700)

_thresholds: list[tuple[int, int, int]] = []  # the collector's own, while start-up runs


def begin() -> None:
    """The process starts (`cli.entry`): the collector's passes rare until `loaded`."""
    thresholds = gc.get_threshold()
    _thresholds.append(thresholds)
    gc.set_threshold(START_UP_THRESHOLD, thresholds[1], thresholds[2])


def loaded() -> None:
    """The command's app is loaded: freeze what start-up made, the collector back as it was."""
    if _thresholds:
        gc.freeze()
        gc.set_threshold(*_thresholds.pop())


def end() -> None:
    """The command is done: all frozen, so the interpreter's last collection scans nothing."""
    gc.freeze()
