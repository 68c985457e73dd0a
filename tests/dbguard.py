"""A guard for the tests: no pooled database connection is held across SMTP or IMAP waits.

dripd's code runs in one event loop. When one of its tasks awaits the
network (an SMTP command, an IMAP round trip), any connection still
checked out of the pool at that moment belongs to a task suspended at an
await: it is held across a network wait, and with one such holder per
mailbox the pool's size becomes the number of mailboxes that work (issue
22). The guard follows the pool's checkout and checkin events (per thread:
other threads' connections are their own business) and looks before and
after each call of `dripd.smtp.Connection` and `dripd.imap.Session`.

In the tests' own process (tests/conftest.py installs it) a violation fails
the test that met it; in `dripd run` subprocesses (tests/sitehooks) each
is appended to the file named by DRIPD_DBGUARD, which conftest reads after
each test.
"""

from __future__ import annotations

import functools
import inspect
import threading
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import sqlalchemy as sa

_checked_out: dict[int, tuple[int, str]] = {}  # id(connection record) -> (thread, where)
violations: list[str] = []
_report: Path | None = None


def _where() -> str:
    """The innermost dripd frames of the checkout: where the connection was taken."""
    frames = [f for f in traceback.extract_stack() if "/dripd/" in f.filename]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in frames[::-1][:4])


def _on_checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
    _checked_out[id(record)] = (threading.get_ident(), _where())


def _on_checkin(_dbapi: Any, record: Any) -> None:
    _checked_out.pop(id(record), None)


def held() -> list[str]:
    """Where each connection this thread has checked out now was taken."""
    me = threading.get_ident()
    return [where for thread, where in list(_checked_out.values()) if thread == me]


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


def install(report: Path | None = None) -> None:
    """Watch every pool, and the network calls of dripd's SMTP and IMAP clients."""
    global _report
    _report = report
    from dripd import imap, smtp

    if not sa.event.contains(sa.pool.Pool, "checkout", _on_checkout):
        sa.event.listen(sa.pool.Pool, "checkout", _on_checkout)
        sa.event.listen(sa.pool.Pool, "checkin", _on_checkin)
    _guard_class(smtp.Connection)
    _guard_class(imap.Session)
