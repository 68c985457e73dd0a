"""Helpers shared by the benchmarks: timing, medians, temporary setups."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import userfiles  # on sys.path: bench/__init__.py

REPO = Path(__file__).resolve().parent.parent
DRIPD = userfiles.DRIPD


def median_time(func: Callable[[], object], repeat: int) -> float:
    """Median wall time of `func` in seconds over `repeat` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_dripd(*args: str, config: Path, check: bool = True) -> float:
    """Run the dripd CLI in a subprocess; its wall time in seconds."""
    start = time.perf_counter()
    result = subprocess.run(
        [DRIPD, "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    elapsed = time.perf_counter() - start
    if check and result.returncode not in (0,):
        raise SystemExit(f"dripd {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return elapsed


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def workdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"dripd-bench-{prefix}-"))


def write_config(folder: Path, database: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    db = database or f"sqlite:///{folder / 'dripd.db'}"
    config = folder / "config.toml"
    config.write_text(userfiles.shipped_config(db), encoding="utf-8")
    return config


def write_contacts_csv(path: Path, count: int) -> None:
    zones = ("America/New_York", "Europe/Berlin", "America/Los_Angeles", "Asia/Tokyo")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("email,first_name,last_name,company,phone,timezone,appointment_at\n")
        for i in range(count):
            day = 1 + i % 27
            handle.write(
                f"c{i}@example.com,First{i},Last{i},Company {i % 97},555-{i % 10000:04d},"
                f"{zones[i % 4]},2027-01-{day:02d} {9 + i % 8:02d}:00\n"
            )
