"""One `dripd run` per SQLite database: a lock file beside it, with the holder's pid.

SQLite allows one writer; two daemons on one database would each send what
they found due. PostgreSQL needs no lock: its instances share the work by
leases (dripd.store.membership).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import sqlalchemy as sa

from dripd import errors
from dripd.pipeline.app import App

logger = logging.getLogger("dripd.daemon")


@contextlib.contextmanager
def single_instance(app: App) -> Iterator[None]:
    """Refuse a second `dripd run` on the same SQLite database (it would send twice)."""
    url = sa.engine.make_url(app.config.database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        yield
        return
    path = Path(url.database + ".lock")
    try:  # not O_APPEND (as "a+" would be): the pid is written at the start
        handle: IO[str] = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o666), "r+")
    except OSError as exc:
        raise errors.StoreError(f"cannot open the lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise errors.DripdError(
            f"another dripd run ({holder}) is using {url.database}; one instance per SQLite "
            "database — for several instances use PostgreSQL"
        ) from None
    _note_holder(handle, path)
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _note_holder(handle: IO[str], path: Path) -> None:
    """Write this process's pid into the lock file, for the message a second run gets.

    Only a courtesy: the lock is the flock. On a full disk the write fails,
    and dripd still runs (SQLite can go on inside the pages it has).
    """
    holder = f"pid {os.getpid()}".encode()
    try:  # unbuffered: a failed write must not be tried again at close
        os.pwrite(handle.fileno(), holder, 0)
        os.ftruncate(handle.fileno(), len(holder))
    except OSError as exc:
        logger.warning(
            "cannot write the lock file %s: %s",
            path,
            exc.strerror,
            extra={"action": "lock_file"},
        )
