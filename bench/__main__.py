"""`python -m bench NAME`: run one benchmark, or `all`."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("due_query", "cli_core", "send", "inbox", "instances", "mailboxes")


def main() -> None:
    names = sys.argv[1:] or ["all"]
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
