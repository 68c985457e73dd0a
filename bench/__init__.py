"""dripd's benchmarks: `python -m bench NAME` (or `./dev bench NAME`)."""

import sys
from pathlib import Path

# The tests' harness serves the benchmarks too: the real servers (tests/servers/) and
# the config and campaign factories (tests/userfiles.py), imported as `servers`, `userfiles`.
_TESTS = str(Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
