"""A server a test needs: skipped when it is missing, a failure when CI requires it.

CI (`.ci/run`) sets DRIPD_TEST_REQUIRE_POSTGRES, DRIPD_TEST_REQUIRE_IMAP and
DRIPD_TEST_REQUIRE_BROWSER: there a missing server fails the run, never skips
quietly. The one module of this package that uses pytest (the others serve the
benchmarks too).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal, NoReturn

import pytest
from servers import browser, imap, postgres

Kind = Literal["POSTGRES", "IMAP", "BROWSER"]


def is_required(kind: Kind) -> bool:
    return os.environ.get(f"DRIPD_TEST_REQUIRE_{kind}", "") not in ("", "0")


def missing(kind: Kind, reason: str) -> NoReturn:
    """Skip the test for `reason`, or fail it when DRIPD_TEST_REQUIRE_<kind> is set."""
    if is_required(kind):
        pytest.fail(f"DRIPD_TEST_REQUIRE_{kind} is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def postgres_server() -> postgres.Server:
    server = postgres.Server.connect()
    if server is None:
        missing("POSTGRES", f"no PostgreSQL at {postgres.URL}")
    return server


@contextlib.contextmanager
def dovecot(**options: Any) -> Iterator[imap.Dovecot]:
    """A started `imap.Dovecot(**options)`, removed afterwards."""
    if not imap.Dovecot.available():
        missing("IMAP", f"Dovecot is not installed ({imap.DOVECOT}); `./dev test` installs it")
    with imap.Dovecot(**options) as instance:
        yield instance


def browser_tools() -> browser.Tools:
    found = browser.find()
    if isinstance(found, str):
        missing("BROWSER", f"{found} not installed (apt-get install chromium poppler-utils)")
    return found
