"""`python -m bench NAME`: run one benchmark, or `all`."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "due_query",
    "cli_core",
    "send",
    "inbox",
    "instances",
    "bounces",
    "size",
    "mailboxes",
    "idle",
)


def main() -> None:
    names = sys.argv[1:] or ["all"]
    if names[0] == "bounces":  # the one that takes options: python -m bench bounces --corpus P
        importlib.import_module("bench.bounces").main(names[1:])
        return
    # Other options (--quick) are read by the benchmarks themselves from sys.argv.
    names = [arg for arg in names if not arg.startswith("--")] or ["all"]
    if names == ["all"]:
        names = list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r} (benchmarks: {', '.join(BENCHMARKS)})")
        print(f"== {name}")
        importlib.import_module(f"bench.{name}").main()  # type: ignore[attr-defined]
        print()


if __name__ == "__main__":
    main()
