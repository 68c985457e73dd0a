"""In `dripd run` subprocesses of the tests: install tests/dbguard.py (see there).

On PYTHONPATH only while the tests run (tests/conftest.py), with DRIPD_DBGUARD
naming the file violations are written to. Other commands are left alone:
they await no network while holding anything, and start faster without it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if os.environ.get("DRIPD_DBGUARD") and "run" in sys.argv[1:] and sys.argv[0].endswith("dripd"):
    import dbguard

    dbguard.install(Path(os.environ["DRIPD_DBGUARD"]))
