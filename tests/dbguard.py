"""A guard for the tests: no pooled database connection is held across SMTP or IMAP waits.

dripd's code runs in one event loop. When one of its tasks awaits the
network (an SMTP command, an IMAP round trip), any connection still
checked out of the pool at that moment belongs to a task suspended at an
await: it is held across a network wait, and with one such holder per
mailbox the pool's size becomes the number of mailboxes that work (issue
22). The guard follows the pool's checkout and checkin events (per thread:
other threads' connections are their own business) and looks before and
after each call of `dripd.mailbox.smtp.Connection` and `dripd.mailbox.imap.Session`.

In the tests' own process (tests/conftest.py installs it) a violation fails
the test that met it; in `dripd run` subprocesses (tests/sitehooks) each
is appended to the file named by DRIPD_DBGUARD, which conftest reads after
each test.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import sqlalchemy as sa

Where = tuple[tuple[str, int, str], ...]  # (file, line, function) from the innermost
_checked_out: dict[int, tuple[int, Where]] = {}  # id(connection record) -> (thread, where)
violations: list[str] = []
_report: Path | None = None
# The most connections checked out at once, and open at once (bench/mailboxes.py prints them)
peak = {"checked_out": 0, "open": 0}
_open: set[int] = set()


def _where() -> Where:
    """The innermost dripd frames of the checkout: where the connection was taken.

    Walked by hand (traceback.extract_stack reads source lines: a third of a
    busy daemon's time); formatted only for a violation.
    """
    frames = []
    frame = sys._getframe(1)
    while frame is not None and len(frames) < 4:
        code = frame.f_code
        if "/dripd/" in code.co_filename:
            frames.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back  # type: ignore[assignment]
    return tuple(frames)


def _format(where: Where) -> str:
    return " <- ".join(f"{Path(name).name}:{line} {func}" for name, line, func in where)


def _on_checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
    _checked_out[id(record)] = (threading.get_ident(), _where())
    peak["checked_out"] = max(peak["checked_out"], len(_checked_out))


def _on_connect(dbapi: Any, _record: Any) -> None:
    _open.add(id(dbapi))
    peak["open"] = max(peak["open"], len(_open))


def _on_close(dbapi: Any, _record: Any) -> None:
    _open.discard(id(dbapi))


def _on_checkin(_dbapi: Any, record: Any) -> None:
    _checked_out.pop(id(record), None)


def held() -> list[str]:
    """Where each connection this thread has checked out now was taken."""
    me = threading.get_ident()
    return [_format(where) for thread, where in list(_checked_out.values()) if thread == me]


def check(what: str) -> None:
    """Note a violation if a connection is checked out while `what` waits on the network."""
    for where in held():
        message = f"{what} awaited while a database connection was checked out (at {where})"
        violations.append(message)
        if _report is not None:
            with _report.open("a", encoding="utf-8") as out:
                out.write(message + "\n")


def _guarded(
    name: str, call: Callable[..., Coroutine[Any, Any, Any]]
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(call)
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        check(name)
        try:
            return await call(*args, **kwargs)
        finally:
            check(name)

    return guarded


def _guard_class(cls: type) -> None:
    for attr, value in list(vars(cls).items()):
        if inspect.iscoroutinefunction(value) and not getattr(value, "_dbguard", False):
            wrapped = _guarded(f"{cls.__module__}.{cls.__qualname__}.{attr}", value)
            wrapped._dbguard = True  # type: ignore[attr-defined]
            setattr(cls, attr, wrapped)


def install(report: Path | None = None, peaks: Path | None = None) -> None:
    """Watch every pool, and the network calls of dripd's SMTP and IMAP clients.

    `peaks`: a file to write the `peak` counts to when the process exits.
    """
    global _report
    _report = report
    from dripd.mailbox import imap, smtp

    if not sa.event.contains(sa.pool.Pool, "checkout", _on_checkout):
        sa.event.listen(sa.pool.Pool, "checkout", _on_checkout)
        sa.event.listen(sa.pool.Pool, "checkin", _on_checkin)
        sa.event.listen(sa.pool.Pool, "connect", _on_connect)
        sa.event.listen(sa.pool.Pool, "close", _on_close)
    if peaks is not None:
        atexit.register(lambda: peaks.write_text(json.dumps(peak), encoding="utf-8"))
    _guard_class(smtp.Connection)
    _guard_class(imap.Session)
