"""The contact commands at size: 10k, 100k and 1M contacts enrolled in qualification (issue 21).

Each command runs as a subprocess of its own; the bench reports its wall time,
the time to its first line of output, and its peak RSS (from wait4), beside a
bare-SQL baseline run the same way in the same run (the floor: Python, sqlite3
and the query, no dripd). `--quick` runs 100k only; `--import` runs only the import.

Note on `schedule --days 1`: every imported contact's first step (thank-you) is
due at once, so the window holds one item per contact; what it shows is that
the command streams in bounded memory, not a window with little in it (the
test `test_schedule_reads_only_due_rows` shows that).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import common

# BENCH_SIZE=1000000 runs one size (a 1M run takes ~10 minutes, most of it `schedule`)
SIZES = tuple(int(n) for n in os.environ.get("BENCH_SIZE", "10000,100000,1000000").split(","))
QUICK = (100_000,)

# Each baseline: the same work as the command in bare SQL, printed to stdout.
BASELINES = {
    "import": (
        "import csv, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.execute('create table c (email text unique, first text, last text, company text,"
        " phone text, tz text, appt text)')\n"
        "db.execute('create table e (cid integer, campaign text, due text)')\n"
        "rows = csv.reader(open(sys.argv[2], encoding='utf-8')); next(rows)\n"
        "cur = db.cursor()\n"
        "while chunk := [r for _, r in zip(range(5000), rows)]:\n"
        "    cur.executemany('insert into c values (?,?,?,?,?,?,?)', chunk)\n"
        '    cur.executemany(\'insert into e values (?, "q", "2026")\','
        " [(i,) for i in range(len(chunk))])\n"
        "db.commit()\n"
    ),
    "status": (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "print(db.execute('select stage, count(*) from contacts group by stage').fetchall())\n"
        "print(db.execute('select status, count(*), sum(touches) from contacts"
        " group by status').fetchall())\n"
        "print(db.execute('select campaign, status, count(*) from enrollments"
        " group by campaign, status').fetchall())\n"
    ),
    "list-head": (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "for row in db.execute(\"select email, stage from contacts where stage = 'prospect'"
        ' order by email_key limit 10"):\n'
        "    print(*row)\n"
    ),
    "list-json": (
        "import json, sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "db.row_factory = sqlite3.Row\n"
        "for row in db.execute('select * from contacts order by email_key'):\n"
        "    sys.stdout.write(json.dumps(dict(row)) + '\\n')\n"
    ),
    "schedule": (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        'for row in db.execute("select e.next_due_at, c.email, e.campaign from enrollments e'
        " join contacts c on c.id = e.contact_id where e.status = 'active'"
        " and e.next_due_at <= '9999-12-31 00:00:00' order by e.next_due_at, e.id\"):\n"
        "    print(*row)\n"
    ),
}


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    first_line: float  # seconds to the first line of output
    peak_mb: float
    cpu: float  # user + system seconds: steadier than wall time on a shared host


def measure(argv: Sequence[str], *, head: int | None = None) -> Run:
    """Run `argv`; its wall time, time to first output line and peak RSS.

    `head`: read only that many lines, then close the pipe (like `| head`).
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    first_at = time.perf_counter() - start
    if head is None:
        while proc.stdout.read(1 << 16):
            pass
    else:
        for _ in range(head - 1):
            proc.stdout.readline()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if head is None and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode})")
    return Run(seconds=seconds, first_line=first_at if first else seconds,
               peak_mb=usage.ru_maxrss / 1024,
               cpu=usage.ru_utime + usage.ru_stime)  # fmt: skip


def baseline(name: str, *args: str) -> Run:
    return measure([sys.executable, "-c", BASELINES[name], *args])


def dripd(config: Path, *args: str, head: int | None = None) -> Run:
    return measure([common.DRIPD, "--config", str(config), *args], head=head)


def first_start_retimes(config: Path) -> int:
    """Enrollments the first `dripd run` would time again (0: the import recorded its plans)."""
    code = (
        "import sys; from dripd.pipeline import app, plans\n"
        "print(plans.replan_changed(app.open_app(sys.argv[1])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(config)], capture_output=True, text=True, check=True
    )
    return int(result.stdout.strip().splitlines()[-1])


def line(label: str, run: Run, floor: Run) -> None:
    ratio = run.seconds / floor.seconds if floor.seconds else float("inf")
    print(
        f"  {label:<34} {run.seconds:7.2f} s (CPU {run.cpu:6.2f} s)  first line"
        f" {run.first_line:6.2f} s  {run.peak_mb:6.0f} MB | bare SQL {floor.seconds:6.2f} s"
        f" (CPU {floor.cpu:5.2f} s) {floor.peak_mb:5.0f} MB"
        f" | ratio {ratio:5.1f}x"
    )


def at_size(count: int, *, only_import: bool = False) -> None:
    folder = common.workdir(f"size{count}")
    csv_path = folder / "contacts.csv"
    common.write_contacts_csv(csv_path, count)
    config = common.write_config(folder / "dripd")
    db = str(folder / "dripd" / "dripd.db")
    print(f"{count:,} contacts (SQLite, enrolled in qualification):")
    imported = dripd(config, "contacts", "import", str(csv_path), "--enroll", "qualification")
    line("contacts import --enroll", imported, baseline("import", str(folder / "raw.db"),
                                                        str(csv_path)))  # fmt: skip
    if only_import:
        shutil.rmtree(folder, ignore_errors=True)
        return
    line("status --json", dripd(config, "status", "--json"), baseline("status", db))
    line(
        "contacts list --stage prospect | head",
        dripd(config, "contacts", "list", "--stage", "prospect", head=10),
        baseline("list-head", db),
    )
    line("contacts list --jsonl", dripd(config, "contacts", "list", "--jsonl"),
         baseline("list-json", db))  # fmt: skip
    line("schedule --days 1 --json", dripd(config, "schedule", "--days", "1", "--json"),
         baseline("schedule", db))  # fmt: skip
    print(f"  first `dripd run` re-times {first_start_retimes(config):,} enrollments")
    shutil.rmtree(folder, ignore_errors=True)  # 1.4 GB at 1M


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for count in QUICK if "--quick" in args else SIZES:
        at_size(count, only_import="--import" in args)
