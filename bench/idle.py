"""An idle `dripd run` at 10k and 1M enrollments: its memory and CPU (issue 21, goal 3).

For each size, a fresh SQLite database gets N contacts enrolled in
qualification, inserted in bulk with their first step due in 30 days (so
nothing is due while it runs) and the plans recorded, as an import leaves
them. Then `dripd run` (two reps without mailboxes: nothing to send or
watch) is timed to its `started` line, and sampled while idle: RSS at the
start and end of SAMPLE seconds, CPU over them (% of one core), and its
peak RSS. The 10k run is the baseline: the 1M line prints its ratio.
Goal: < 150 MB and < 1% CPU at 1M. `BENCH_IDLE_SIZES`, `BENCH_IDLE_SECONDS`
change the sizes and the sampling time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import common
from dripd.pipeline import app as app_mod
from dripd.pipeline import plans
from dripd.store import schema, statements

SIZES = tuple(int(n) for n in os.environ.get("BENCH_IDLE_SIZES", "10000,1000000").split(","))
SAMPLE = float(os.environ.get("BENCH_IDLE_SECONDS", "180"))
SETTLE = 5.0  # seconds after `started` before sampling (the first passes)
START_LIMIT = 600.0  # seconds allowed to reach `started`


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    size: int
    start: float  # seconds to the `started` line
    rss_start: float  # MB when sampling begins
    rss_end: float  # MB when it ends
    rss_peak: float  # MB (VmHWM)
    cpu: float  # % of one core over SAMPLE


def fill(config: Path, count: int) -> None:
    """`count` contacts enrolled in qualification, nothing due for 30 days, plans recorded."""
    app = app_mod.open_app(str(config))
    now = datetime.now(UTC).replace(microsecond=0)
    with app.engine.begin() as conn:
        for start in range(0, count, 10_000):
            numbers = range(start, min(start + 10_000, count))
            statements.bulk_insert(conn, schema.contacts, [_contact(i, now) for i in numbers])
            statements.bulk_insert(conn, schema.enrollments, [_enrollment(i, now) for i in numbers])
        plans.remember_plans(app, conn)
    app.engine.dispose()


def _contact(i: int, now: datetime) -> dict[str, Any]:
    email = f"c{i:07d}@example.com"
    return {"id": i + 1, "email": email, "email_key": email, "first_name": f"F{i}",
            "last_name": f"L{i}", "company": f"Co {i % 97}", "owner": ("mike", "sam")[i % 2],
            "stage": "prospect", "fields": "{}", "created_at": now,
            "updated_at": now}  # fmt: skip


def _enrollment(i: int, now: datetime) -> dict[str, Any]:
    at = now + timedelta(days=30, seconds=i)
    return {"contact_id": i + 1, "campaign": "qualification", "status": "active",
            "enrolled_at": now, "progress": "{}", "next_due_at": at}  # fmt: skip


def _memory(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(count: int) -> Result:
    folder = common.workdir(f"idle{count}")
    config = common.write_config(folder)
    fill(config, count)
    log = folder / "dripd.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [common.DRIPD, "--config", str(config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            env={**os.environ, "DRIPD_LOG_LEVEL": "INFO"},
        )
        try:
            while "action=started" not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.perf_counter() - started > START_LIMIT:
                    raise SystemExit(f"dripd run did not start:\n{log.read_text()[-2000:]}")
                time.sleep(0.05)
            start = time.perf_counter() - started
            time.sleep(SETTLE)
            rss_start, before = _memory(proc.pid, "VmRSS"), common.process_cpu(proc.pid)
            time.sleep(SAMPLE)
            cpu = (common.process_cpu(proc.pid) - before) / SAMPLE * 100
            rss_end, peak = _memory(proc.pid, "VmRSS"), _memory(proc.pid, "VmHWM")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    shutil.rmtree(folder, ignore_errors=True)
    return Result(size=count, start=start, rss_start=rss_start, rss_end=rss_end,
                  rss_peak=peak, cpu=cpu)  # fmt: skip


def main() -> None:
    print(
        f"idle `dripd run` (SQLite, nothing due for 30 days, no mailboxes), sampled over "
        f"{SAMPLE:.0f} s after a {SETTLE:.0f} s settle"
    )
    results = []
    for count in SIZES:
        r = measure(count)
        results.append(r)
        print(
            f"  {count:>9,} enrollments: started in {r.start:5.2f} s  RSS {r.rss_start:4.0f} MB"
            f" -> {r.rss_end:4.0f} MB (peak {r.rss_peak:4.0f} MB)  CPU {r.cpu:5.2f} %",
            flush=True,
        )
    base = results[0]
    for r in results[1:]:
        print(
            f"  ratio {r.size:,} / {base.size:,}: start {r.start / base.start:4.2f}x"
            f"  RSS {r.rss_end / base.rss_end:4.2f}x  peak {r.rss_peak / base.rss_peak:4.2f}x"
            f"  CPU {r.cpu / base.cpu if base.cpu else float('nan'):4.2f}x"
        )
    last = results[-1]
    print(
        f"  goal at {last.size:,}: RSS < 150 MB: {last.rss_end:.0f} MB (peak {last.rss_peak:.0f});"
        f" CPU < 1%: {last.cpu:.2f} %"
    )


if __name__ == "__main__":
    main()
