"""The contact commands at size: 10k, 100k and 1M contacts enrolled in qualification (issue 21).

Each command runs as a subprocess of its own; the bench reports its wall time,
the time to its first line of output, and its peak RSS (from wait4), beside a
bare-SQL baseline run the same way in the same run (the floor: Python, sqlite3
and the query, no dripd). `--quick` runs 100k only; `--import` runs only the import.

`schedule --days 1` runs twice. On the imported database every contact's
first steps (the thank-you at once, the card a day later) fall in the one-day
window: 1.5 items per contact, a measure of throughput (items/s) and memory.
Then on the same contacts spread in time as a book of business is
(`spread_in_time`: enrolled over the past SPREAD_DAYS days, each at its own
step), where one day holds a few percent of them: the goal (< 1 s at 1M).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common
from dripd.pipeline import app as app_mod
from dripd.pipeline import lifecycle
from dripd.plan import schedule

# BENCH_SIZE=1000000 runs one size (a 1M run takes ~15 minutes: the import, spreading it, `list`)
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
        ' and e.next_due_at <= ? order by e.next_due_at, e.id", (sys.argv[2],)):\n'
        "    print(*row)\n"
    ),
    # The same rows with every column `schedule` reads (enrollments.due_page), each written
    # as a schedule item's JSON at its next_due_at: reading and writing, no projection.
    "schedule-items": (
        "import json, sqlite3, sys\n"
        "from datetime import UTC, datetime\n"
        "db = sqlite3.connect(sys.argv[1])\n"
        "encode = json.JSONEncoder(ensure_ascii=False).encode\n"
        "rows = db.execute('select e.id, e.campaign, e.enrolled_at, e.progress, e.next_due_at,"
        " c.email, c.first_name, c.last_name, c.company, c.phone, c.timezone, c.owner, c.stage,"
        " c.status, c.referred_by, c.fields, c.created_at from enrollments e join contacts c"
        " on c.id = e.contact_id where e.status = \\'active\\' and e.next_due_at <= ?"
        " order by e.next_due_at, e.id', (sys.argv[2],))\n"
        "sys.stdout.write('{\"items\": [')\n"
        "sep = ''\n"
        "while page := rows.fetchmany(1000):\n"
        "    items = []\n"
        "    for r in page:\n"
        "        at = datetime.fromisoformat(r[4]).replace(tzinfo=UTC).isoformat()\n"
        "        items.append(encode({'at': at, 'local': at, 'contact': r[5],"
        " 'name': f'{r[6]} {r[7]}', 'campaign': r[1], 'step': 's', 'kind': 'email',"
        " 'occurrence': 1, 'note': ''}))\n"
        "    sys.stdout.write(sep + ',\\n  '.join(items))\n"
        "    sep = ',\\n  '\n"
        "sys.stdout.write(']}\\n')\n"
    ),
}


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    first_line: float  # seconds to the first line of output
    peak_mb: float
    cpu: float  # user + system seconds: steadier than wall time on a shared host
    marks: int  # times `mark` was in the output


def measure(argv: Sequence[str], *, head: int | None = None, mark: bytes = b"\n") -> Run:
    """Run `argv`; its wall time, time to first output line and peak RSS.

    `head`: read only that many lines, then close the pipe (like `| head`).
    `mark`: what to count in the output (with `head`: in the first line only).
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
    marks, tail = 0, first
    if head is None:
        while chunk := proc.stdout.read(1 << 16):
            seen = tail + chunk
            marks += seen.count(mark)
            tail = seen[len(seen) - len(mark) + 1 :]  # a mark split between two chunks
    else:
        for _ in range(head - 1):
            proc.stdout.readline()
    marks += tail.count(mark)  # the first line, when nothing followed (else too short for one)
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if head is None and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode})")
    return Run(seconds=seconds, first_line=first_at if first else seconds,
               peak_mb=usage.ru_maxrss / 1024,
               cpu=usage.ru_utime + usage.ru_stime, marks=marks)  # fmt: skip


def baseline(name: str, *args: str) -> Run:
    return measure([sys.executable, "-c", BASELINES[name], *args])


def dripd(config: Path, *args: str, head: int | None = None, mark: bytes = b"\n") -> Run:
    return measure([common.DRIPD, "--config", str(config), *args], head=head, mark=mark)


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
    print(f"  first `dripd run` re-times {first_start_retimes(config):,} enrollments")
    schedule_day(config, db, "schedule --days 1 --json (all due)")
    spread_apart(config, db)
    schedule_day(config, db, "schedule --days 1 --json (spread)")
    shutil.rmtree(folder, ignore_errors=True)  # 1.4 GB at 1M


def schedule_day(config: Path, db: str, label: str) -> None:
    """`schedule --days 1 --json` beside the due rows of the day in bare SQL; items/s."""
    until = datetime.now(UTC) + timedelta(days=1)
    run = dripd(config, "schedule", "--days", "1", "--json", mark=b'{"at": ')
    line(label, run, baseline("schedule", db, _stored(until)))
    print(f"  {'':<34} {run.marks:,} items, {run.marks / run.cpu:,.0f} items per CPU second")
    # start-up and the fixed cost: a contact with nothing due (the lookup of the address, no item)
    nobody = "nobody@example.invalid"
    fixed = dripd(config, "schedule", "--days", "0", "--json", "--contact", nobody)
    floor = baseline("schedule-items", db, _stored(until))
    print(
        f"  {'':<34} the floor: dripd's start-up {fixed.seconds:.2f} s"
        f" (CPU {fixed.cpu:.2f}) + the rows written as items in bare Python"
        f" {floor.seconds:.2f} s (CPU {floor.cpu:.2f}) = {fixed.seconds + floor.seconds:.2f} s"
    )


def spread_apart(config: Path, db: str) -> None:
    """`spread_in_time` in a process of its own.

    It holds every enrollment's row (~440 MB at 1M), and a child forked from
    a process that large reports that as its own peak RSS (Linux counts the
    pages it shared before its exec): every command measured after it did.
    """
    code = "import sys; from pathlib import Path; from bench import size\n"
    code += "size.spread_in_time(Path(sys.argv[1]), sys.argv[2])\n"
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code, str(config), db], check=True, cwd=root)


SPREAD_DAYS = 90  # enrolled over this many days before now, each at its own moment
SPREAD_CHUNK = 10_000


def spread_in_time(config: Path, db: str) -> None:
    """The imported contacts made a book of business: enrolled over the past SPREAD_DAYS days.

    Each enrollment gets its own moment and a demo (appointment_at) 3 to 21
    days after it at a round local hour; its progress, next_due_at and status
    are what the planner would have left had `dripd run` run all along and
    the rep done each task when due: the steps due before now advanced (as
    the daemon advances them, `schedule.advance`), the rest timed by
    `schedule.pending`, the finished ones completed. (Tasks, the outbox and
    the history are left as the import made them: `schedule` reads none.)
    """
    app = app_mod.open_app(str(config))
    now = app.clock.now()
    campaign = app.catalog.get("qualification")
    window = campaign.send_window or lifecycle.default_window(app)
    rng = random.Random(21)
    raw = sqlite3.connect(db)
    people = raw.execute(
        "select e.id, c.id, c.timezone, c.owner, c.fields from enrollments e"
        " join contacts c on c.id = e.contact_id order by e.id"
    ).fetchall()
    for start in range(0, len(people), SPREAD_CHUNK):
        plans, fields = [], []
        for eid, cid, zone, owner, stored in people[start : start + SPREAD_CHUNK]:
            tz = app.contact_tz(zone, owner)
            enrolled = now - timedelta(seconds=rng.uniform(0, SPREAD_DAYS * 86_400))
            demo = (enrolled.astimezone(tz) + timedelta(days=rng.randint(3, 21))).replace(
                hour=rng.randint(9, 17), minute=0, second=0, microsecond=0
            )
            values = {**json.loads(stored), "appointment_at": f"{demo:%Y-%m-%d %H:%M}"}
            ctx = schedule.Context(tz=tz, holidays=app.config.holidays_for(owner), window=window,
                                   enrolled_at=enrolled, fields=values)  # fmt: skip
            plans.append((*_planned(campaign.plans, ctx, now), _stored(enrolled), eid))
            fields.append((json.dumps(values), cid))
        raw.executemany(
            "update enrollments set progress = ?, next_due_at = ?, status = ?, ended_at = ?,"
            " end_reason = ?, waiting = ?, enrolled_at = ? where id = ?",
            plans,
        )
        raw.executemany("update contacts set fields = ? where id = ?", fields)
    raw.commit()
    counts = dict(raw.execute("select status, count(*) from enrollments group by status"))
    raw.close()
    print(f"  spread over {SPREAD_DAYS} days: {counts}")


def _planned(
    plans: Sequence[schedule.StepPlan], ctx: schedule.Context, now: datetime
) -> tuple[Any, ...]:
    """(progress, next_due_at, status, ended_at, end_reason, waiting) of an enrollment at `now`."""
    progress = schedule.Progress()
    last = ctx.enrolled_at
    for due in schedule.project(plans, progress, ctx, until=now):
        progress = schedule.advance(progress, plans, due)
        step = next(p for p in plans if p.id == due.step_id)
        if step.is_task and step.sequential:
            progress = schedule.finish_task(progress, due.due_at)
        last = due.due_at
    pending = schedule.pending(plans, progress, ctx)
    if pending.complete:
        return progress.to_text(), None, "completed", _stored(last), "last step done", None
    waiting = "; ".join(f"{w.step_id}: {w.reason}" for w in pending.waiting) or None
    return progress.to_text(), _stored(pending.next_due_at), "active", None, None, waiting


def _stored(at: datetime | None) -> str | None:
    """A time as the database keeps it (naive UTC, with microseconds)."""
    return None if at is None else f"{at.astimezone(UTC).replace(tzinfo=None):%Y-%m-%d %H:%M:%S.%f}"


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    for count in QUICK if "--quick" in args else SIZES:
        at_size(count, only_import="--import" in args)
