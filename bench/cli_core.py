"""The core commands at size: import 100k with --enroll, check, schedule for 10k contacts.

Goals (issue 2): `contacts import --enroll qualification` of 100,000 contacts
under 10 s; `dripd check` of the shipped campaigns under 1 s; `dripd schedule
--days 30` for 10,000 contacts under 5 s. Baselines measured in the same run:
the raw SQLite insert of the same rows (the floor for import), the bare
interpreter start with dripd imported (the floor for any command), and
schedule at 1,000 contacts (linear scaling means a 10x ratio).
"""

from __future__ import annotations

import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import common

IMPORT_ROWS = 100_000
SCHEDULE_SMALL, SCHEDULE_LARGE = 1_000, 10_000
REPEAT = 3


def raw_insert(csv_path: Path, folder: Path) -> float:
    """Floor: read the CSV and executemany the rows into a bare table, no validation."""
    start = time.perf_counter()
    db = sqlite3.connect(folder / "raw.db")
    db.execute(
        "create table c (email text unique, first text, last text, company text,"
        " phone text, tz text, appt text)"
    )
    with csv_path.open(encoding="utf-8") as handle:
        next(handle)
        db.executemany(
            "insert into c values (?,?,?,?,?,?,?)",
            (line.rstrip("\n").split(",") for line in handle),
        )
    db.commit()
    db.close()
    return time.perf_counter() - start


def bench_import() -> None:
    folder = common.workdir("import")
    csv_path = folder / "contacts.csv"
    common.write_contacts_csv(csv_path, IMPORT_ROWS)
    floor = raw_insert(csv_path, folder)
    runs = []
    for attempt in range(REPEAT):  # a fresh database each time
        config = common.write_config(folder / f"run{attempt}")
        runs.append(
            common.run_dripd(
                "contacts", "import", str(csv_path), "--enroll", "qualification", config=config
            )
        )
    seconds = statistics.median(runs)
    print(
        f"import --enroll qualification, {IMPORT_ROWS:,} contacts: {seconds:6.2f} s  (goal < 10 s)"
    )
    print(
        f"  baseline raw sqlite insert of the same rows:    {floor:6.2f} s  "
        f"ratio {seconds / floor:5.1f}x"
    )


def bench_check() -> None:
    folder = common.workdir("check")
    config = common.write_config(folder)
    check = statistics.median(common.run_dripd("check", config=config) for _ in range(5))
    start_cmd = [sys.executable, "-c", "import dripd.cli.main"]
    floor = statistics.median(_timed(start_cmd) for _ in range(5))
    print(f"check of the shipped campaigns (median of 5):   {check:6.2f} s  (goal < 1 s)")
    print(
        f"  baseline interpreter start + import dripd.cli.main: {floor:6.2f} s  "
        f"ratio {check / floor:5.1f}x"
    )


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_schedule() -> None:
    results = {}
    for count in (SCHEDULE_SMALL, SCHEDULE_LARGE):
        folder = common.workdir(f"schedule{count}")
        csv_path = folder / "contacts.csv"
        common.write_contacts_csv(csv_path, count)
        config = common.write_config(folder)
        common.run_dripd(
            "contacts", "import", str(csv_path), "--enroll", "qualification", config=config
        )
        results[count] = statistics.median(
            common.run_dripd("schedule", "--days", "30", "--json", config=config)
            for _ in range(REPEAT)
        )
    small, large = results[SCHEDULE_SMALL], results[SCHEDULE_LARGE]
    print(
        f"schedule --days 30, {SCHEDULE_LARGE:,} contacts (median of {REPEAT}): "
        f"{large:6.2f} s  (goal < 5 s)"
    )
    print(
        f"  baseline {SCHEDULE_SMALL:,} contacts:                   {small:6.2f} s  "
        f"ratio {large / small:5.1f}x (10x = linear)"
    )


def main() -> None:
    bench_check()
    bench_import()
    bench_schedule()
