"""The `dripd` console script: the command line with the collector set for its start-up."""

from __future__ import annotations

from dripd.cli import startup


def main() -> None:
    startup.begin()
    try:
        from dripd.cli.main import main as run  # its imports are start-up too

        run()
    finally:
        startup.end()
