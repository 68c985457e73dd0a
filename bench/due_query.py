"""Finding what is due: the query that fetches the 1,000 due now, at 10k and 1M enrollments.

Goal (issue 2): under 50 ms at 1,000,000 enrollments, and its cost grows with
what is due, not with the total (the 1M / 10k ratio stays near 1).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from dripd.store import engine as store_engine
from dripd.store import enrollments

DUE = 1_000
REPEAT = 15


def build(folder: Path, total: int, now: datetime) -> str:
    """A migrated SQLite database with `total` enrollments of which DUE are due at `now`."""
    url = f"sqlite:///{folder / f'due-{total}.db'}"
    store_engine.open_engine(url).dispose()
    db = sqlite3.connect(folder / f"due-{total}.db")
    stamp = now.replace(tzinfo=None)
    created = stamp.isoformat(sep=" ")
    db.executemany(
        "insert into contacts (id, email, email_key, created_at, updated_at) values (?,?,?,?,?)",
        ((i, f"c{i}@x.com", f"c{i}@x.com", created, created) for i in range(1, total + 1)),
    )

    # DUE enrollments are due in the last hour, the rest over the next 90 days.
    def due_at(i: int) -> str:
        delta = -timedelta(seconds=i * 3) if i <= DUE else timedelta(minutes=i % 129_600 + 1)
        return (stamp + delta).isoformat(sep=" ")

    db.executemany(
        "insert into enrollments (id, contact_id, campaign, status, enrolled_at, progress,"
        " next_due_at) values (?,?,'qualification','active',?,'{}',?)",
        ((i, i, created, due_at(i)) for i in range(1, total + 1)),
    )
    db.commit()
    db.execute("analyze")
    db.close()
    return url


def measure(url: str, now: datetime) -> float:
    engine = store_engine.open_engine(url)
    with engine.connect() as conn:
        found = enrollments.due_enrollments(conn, now, DUE)
        assert len(found) == DUE, len(found)
        seconds = common.median_time(lambda: enrollments.due_enrollments(conn, now, DUE), REPEAT)
    engine.dispose()
    return seconds


def main() -> None:
    folder = common.workdir("due")
    now = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    small = build(folder, 10_000, now)
    large = build(folder, 1_000_000, now)
    t_small = measure(small, now)
    t_large = measure(large, now)
    print(
        "due query: fetch the 1,000 enrollments due now (SQLite, median of "
        f"{REPEAT}, includes row decoding)"
    )
    print(f"  10,000 enrollments:     {t_small * 1000:7.1f} ms")
    print(f"  1,000,000 enrollments:  {t_large * 1000:7.1f} ms   (goal < 50 ms)")
    print(
        f"  ratio 1M / 10k:         {t_large / t_small:7.2f}    (1.0 = cost independent of total)"
    )
