"""Test hooks loaded by the `dripd run` subprocesses of the tests (never by users' dripd).

tests/conftest.py puts this folder on PYTHONPATH for the test session. In a
`dripd ... run` process it installs, when their variables are set:
- DRIPD_DBGUARD: tests/dbguard.py, writing violations to the file it names
  (and with DRIPD_DBGUARD_PEAKS, its peak counts at exit);
- DRIPD_TEST_FAULT: tests/faults.py, one injected unexpected failure.
Other commands are left alone: they start faster without them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if "run" in sys.argv[1:] and sys.argv[0].endswith("dripd"):
    if os.environ.get("DRIPD_DBGUARD"):
        import dbguard

        peaks = os.environ.get("DRIPD_DBGUARD_PEAKS")  # bench/mailboxes.py
        dbguard.install(Path(os.environ["DRIPD_DBGUARD"]), Path(peaks) if peaks else None)
    if os.environ.get("DRIPD_TEST_FAULT"):
        import faults

        faults.install(os.environ["DRIPD_TEST_FAULT"])
