"""`cli.startup`: the collector's passes are rare while a command starts, as they were after."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from dripd.cli import startup

# Run as the `dripd` script runs, with the command replaced by one that reports the collector.
SCRIPT = """
import gc, json
from dripd.cli import entry, main as cli_main, startup
seen = {}
made = []
def command():
    seen["starting"] = gc.get_threshold()
    before = gc.get_freeze_count()
    startup.loaded()  # as cli.main.open_app does
    seen["loaded"] = gc.get_threshold()
    seen["frozen"] = gc.get_freeze_count() - before
    seen["frozen_then"] = gc.get_freeze_count()
    made.extend([] for _ in range(1000))  # the command's own objects, alive at its end
    raise SystemExit(3)
cli_main.main = command
default = gc.get_threshold()
try:
    entry.main()
except SystemExit as exc:
    seen["exit"] = exc.code
print(json.dumps({**seen, "default": default, "frozen_at_end": gc.get_freeze_count()}))
"""


def test_a_command_starts_with_rare_passes_and_runs_with_the_default() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    default = seen["default"]
    assert seen["starting"] == [startup.START_UP_THRESHOLD, *default[1:]]
    assert seen["loaded"] == default
    assert seen["frozen"] > 10_000  # what start-up made: the modules, the config, the campaigns
    assert seen["exit"] == 3  # the command's exit code goes through
    # frozen at the end too, so the last collection skips them (a frozen object freed
    # since start-up leaves the count, hence the slack)
    assert seen["frozen_at_end"] > seen["frozen_then"] + 900


def test_outside_the_dripd_process_loading_changes_nothing() -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    startup.loaded()
    assert (gc.get_threshold(), gc.get_freeze_count()) == (thresholds, frozen)
