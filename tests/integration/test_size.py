"""At size: listing 200,000 contacts streams in bounded memory; schedule reads what is due only."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dates
import pytest
import sqlalchemy as sa
import userfiles

from dripd import clock
from dripd.cli import main as cli
from dripd.pipeline import app as app_mod
from dripd.pipeline import importer, plans, reports
from dripd.store import contacts, enrollments, events, listing, schema, statements
from dripd.store import engine as store_engine

NOW = dates.local(dates.quiet_monday(weeks=1), 10)  # a Monday, no holiday: 10:00 in New York
CONTACTS = 200_000
SPREAD = 200  # days the enrollments' first steps are spread over: 1 in 200 due each day
MEMORY_SLACK = 40  # MB of peak RSS above the CLI's own and SQLite's page cache


def write_config(folder: Path) -> Path:
    path = folder / "config.toml"
    path.write_text(userfiles.shipped_config(f"sqlite:///{folder}/dripd.db"), encoding="utf-8")
    return path


def fill(app: app_mod.App, count: int) -> None:
    """`count` contacts (c0000000@…), each enrolled in qualification, inserted in bulk.

    Contact i is enrolled on day i % SPREAD after NOW (an hour past it), so its
    first step (thank-you, at once) is due then and the due index says so.
    """
    with app.engine.begin() as conn:
        for start in range(0, count, 10_000):
            numbers = range(start, min(start + 10_000, count))
            statements.bulk_insert(conn, schema.contacts, [_contact(i) for i in numbers])
            statements.bulk_insert(conn, schema.enrollments, [_enrollment(i) for i in numbers])


def _contact(i: int) -> dict[str, Any]:
    email = f"c{i:07d}@example.com"
    return {"id": i + 1, "email": email, "email_key": email, "first_name": f"F{i}",
            "last_name": f"L{i}", "company": f"Co {i % 97}", "owner": "mike",
            "stage": ("prospect", "lead")[i % 2], "fields": "{}", "created_at": NOW,
            "updated_at": NOW}  # fmt: skip


def _enrollment(i: int) -> dict[str, Any]:
    at = NOW + timedelta(days=i % SPREAD, hours=1)
    return {"contact_id": i + 1, "campaign": "qualification", "status": "active",
            "enrolled_at": at, "progress": "{}", "next_due_at": at}  # fmt: skip


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[app_mod.App]:
    """A database of CONTACTS contacts, made once for the module."""
    folder = tmp_path_factory.mktemp("size")
    app = app_mod.open_app(str(write_config(folder)), the_clock=clock.FakeClock(NOW))
    fill(app, CONTACTS)
    yield app
    app.engine.dispose()


def list_contacts(app: app_mod.App, *args: str) -> tuple[list[str], float, float]:
    """`dripd contacts list ARGS` in a subprocess: its lines, seconds to the first row, peak MB."""
    proc = subprocess.Popen(
        [userfiles.DRIPD, "--config", str(app.config.path), "contacts", "list", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    started = time.perf_counter()
    lines = [proc.stdout.readline(), proc.stdout.readline()]
    first_after = time.perf_counter() - started
    lines += proc.stdout.readlines()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return lines, first_after, usage.ru_maxrss / 1024


def test_list_of_200k_contacts_streams_in_bounded_memory(big: app_mod.App) -> None:
    _, _, floor = list_contacts(big, "--limit", "1")  # the CLI, its imports, one page
    [header, first, *rest], first_after, peak = list_contacts(big)
    assert header.split() == ["email", "name", "company", "stage", "status", "campaign",
                              "touches", "last", "touch"]  # fmt: skip
    assert first.split()[:2] == ["c0000000@example.com", "F0"]
    assert len(rest) + 1 == CONTACTS
    # The campaign column is filled at any size (it was left blank past 5,000).
    assert all(" qualification " in row for row in rest[-1000:])
    assert first_after < 10  # a first page, not 200,000 rows (a generous bound: a busy host)
    # What grows is SQLite's page cache, which stops at its size (every row kept
    # in memory would take ~900 MB here).
    assert peak < floor + store_engine.SQLITE_CACHE_KIB / 1024 + MEMORY_SLACK


class Recorder(io.StringIO):
    """stdout for an in-process `dripd`: notes how many contacts were read at the first row."""

    def __init__(self, read: list[int]) -> None:
        super().__init__()
        self.counts = read
        self.read_at_first_row: int | None = None

    def write(self, text: str) -> int:
        if self.read_at_first_row is None and "@example.com" in text:
            self.read_at_first_row = sum(self.counts)
        return super().write(text)


def test_first_row_is_written_before_the_last_is_read(
    big: app_mod.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []
    page = contacts.contacts_page

    def counted(conn: sa.Connection, **where: Any) -> list[contacts.Contact]:
        found = page(conn, **where)
        read.append(len(found))
        return found

    monkeypatch.setattr(contacts, "contacts_page", counted)
    out = Recorder(read)
    monkeypatch.setattr(sys, "stdout", out)
    wanted = 5 * listing.PAGE
    args = ["--config", str(big.config.path), "contacts", "list", "--stage", "lead"]
    cli.cli.main(args=[*args, "--limit", str(wanted)], standalone_mode=False)
    assert out.read_at_first_row == listing.PAGE
    assert sum(read) == wanted
    assert out.getvalue().count("@example.com") == wanted


def test_list_pages_by_key(big: app_mod.App) -> None:
    where = listing.Filter(stage="prospect", after="C0000010@example.com", limit=3)
    with big.reader.connect() as conn:
        found = [x.contact.email for x in listing.contacts(conn, where, page=2)]
    assert found == ["c0000012@example.com", "c0000014@example.com", "c0000016@example.com"]


def test_schedule_of_one_day_reads_only_the_due_rows(
    big: app_mod.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int] = []
    page = enrollments.due_page

    def counted(conn: sa.Connection, *args: Any) -> list[enrollments.Due]:
        found = page(conn, *args)
        read.append(len(found))
        return found

    monkeypatch.setattr(enrollments, "due_page", counted)
    with big.reader.connect() as conn:
        items = list(reports.upcoming(big, conn, 1))
    due = {f"c{i:07d}@example.com" for i in range(0, CONTACTS, SPREAD)}
    assert sum(read) == len(due)  # 1,000 of 200,000 enrollments
    assert {i.email for i in items} == due
    assert {i.step for i in items} == {"thank-you"}
    assert [i.at for i in items] == sorted(i.at for i in items)


def test_status_reads_indexes_not_the_tables(big: app_mod.App) -> None:
    """Every query of `status` at 200,000 contacts is answered from an index (SQLite's plan)."""
    statements: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if sql.lstrip().upper().startswith("SELECT"):
            statements.append((sql, params))

    with big.reader.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", note)
        shown = reports.status(big, conn)
    assert shown.stages["prospect"] == shown.stages["lead"] == CONTACTS // 2
    assert shown.statuses == {"active": CONTACTS}
    with big.reader.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        plans = [
            (sql, detail)
            for sql, params in statements
            for *_, detail in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params or ())
        ]
    large = ("contacts", "enrollments", "events")
    scans = [(sql, d) for sql, d in plans if d.split()[:2] in (["SCAN", t] for t in large)]
    scans = [(sql, d) for sql, d in scans if "INDEX" not in d]
    assert scans == []
    assert any("ix_contacts_status_stage_touches" in d for _, d in plans)


BAD_CSV = (
    "email,first_name,company\n"
    "ann@example.com,Ann,Acme\n"
    "not-an-email,Bob,Acme\n"
    "cy@example.com,Cy,Acme\n"
    "ANN@example.com,Ann again,Acme\n"
    "dee@example.com,Dee,Acme,extra\n"
    "eve@example.com,Eve,Acme\n"
)


def test_import_in_chunks_reports_bad_rows_by_line_and_records_its_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "CHUNK", 2)  # the bad rows fall in several chunks
    app = app_mod.open_app(str(write_config(tmp_path)), the_clock=clock.FakeClock(NOW))
    path = tmp_path / "contacts.csv"
    path.write_bytes(BAD_CSV.encode() + b"fay@example.com,F\xe4y,Acme\n")
    report = importer.import_csv(app, path, enroll="qualification")
    assert report.problems == [
        "line 3: 'not-an-email' is not an email address",
        "line 5: duplicate of line 2 (ANN@example.com)",
        "line 6: 4 cells but the header has 3",
        "line 8: not UTF-8 text (save the file as UTF-8)",
    ]
    assert (report.created, report.enrolled) == (3, 3)
    # The first `dripd run` finds the plans made under these files: nothing to time again.
    assert plans.replan_changed(app) == 0
    app.engine.dispose()


MIXED_CSV = (
    "email,first_name,stage,status\n"
    "ann@example.com,Ann,,\n"  # suspect, moved to the campaign's stage
    "bob@example.com,Bob,customer,\n"  # past the campaign's stage: not moved
    "cy@example.com,Cy,,unsubscribed\n"  # not active: not enrolled
)


def test_a_bulk_import_stores_one_event_per_enrolled_contact_and_shows_each(
    make_config: Any, database_url: str, tmp_path: Path
) -> None:
    """History shows an imported contact's created, enrolled and promoted events from one row."""
    app = app_mod.open_app(str(make_config(database=database_url)), the_clock=clock.FakeClock(NOW))
    path = tmp_path / "people.csv"
    path.write_text(MIXED_CSV, encoding="utf-8")
    report = importer.import_csv(app, path, enroll="qualification")
    assert (report.created, report.enrolled, report.problems) == (3, 2, [])
    created = ("created", None, "contact created", "imported from people.csv")
    enrolled = (
        "enrolled",
        "qualification",
        "enrolled in Qualification",
        "contacts import --enroll",
    )
    promoted = ("promoted", None, "stage suspect → prospect", "enrolled in qualification")
    with app.reader.connect() as conn:
        ids = contacts.existing_keys(conn, ["ann@example.com", "bob@example.com", "cy@example.com"])
        shown = {
            email: [(e.kind, e.campaign, e.detail, e.cause) for e in events.history(conn, cid)]
            for email, cid in ids.items()
        }
        stored = dict(
            conn.execute(
                sa.select(schema.events.c.contact_id, sa.func.count()).group_by(
                    schema.events.c.contact_id
                )
            ).all()
        )
        times = {e.at for cid in ids.values() for e in events.history(conn, cid)}
    assert shown == {
        "ann@example.com": [created, enrolled, promoted],
        "bob@example.com": [created, enrolled],
        "cy@example.com": [created, promoted],
    }
    assert times == {NOW}
    by_email = {email: stored[cid] for email, cid in ids.items()}
    assert by_email == {"ann@example.com": 1, "bob@example.com": 1, "cy@example.com": 2}

    # Into a database that has contacts: known ones updated, new ones after them
    path.write_text("email,first_name\nann@example.com,Annie\ndee@example.com,Dee\n", "utf-8")
    again = importer.import_csv(app, path, enroll="qualification")
    assert (again.created, again.updated, again.enrolled) == (1, 1, 1)
    assert again.problems == [
        "line 2: not enrolled: ann@example.com is already in campaign 'qualification'"
    ]
    with app.reader.connect() as conn:
        found = contacts.existing_keys(conn, ["ann@example.com", "dee@example.com"])
        ann = contacts.contact_by_id(conn, found["ann@example.com"])
        dee = [(e.kind, e.campaign) for e in events.history(conn, found["dee@example.com"])]
    assert (found["ann@example.com"], ann.first_name) == (ids["ann@example.com"], "Annie")
    assert found["dee@example.com"] > max(ids.values())
    assert dee == [("created", None), ("enrolled", "qualification"), ("promoted", None)]
    app.engine.dispose()


def _times(conn: sa.Connection, enrollment_id: int) -> tuple[datetime, datetime]:
    """An enrollment's time and its contact's, read through UTCDateTime."""
    e, c = schema.enrollments, schema.contacts
    row = conn.execute(
        sa.select(e.c.enrolled_at, c.c.created_at)
        .join(c, c.c.id == e.c.contact_id)
        .where(e.c.id == enrollment_id)
    ).one()
    return row[0], row[1]


def test_pages_by_key_on_each_database(make_config: Any, database_url: str) -> None:
    """Keyset paging (contacts by email, the due index by time then id) on SQLite and PostgreSQL."""
    app = app_mod.open_app(str(make_config(database=database_url)), the_clock=clock.FakeClock(NOW))
    fill(app, 50)
    with app.engine.begin() as conn:  # ties: ten enrollments due at each instant
        conn.execute(sa.update(schema.enrollments).values(next_due_at=NOW))
        conn.execute(
            sa.update(schema.enrollments)
            .where(schema.enrollments.c.id % 5 == 0)
            .values(status="stopped")
        )
    where = listing.Filter(stage="lead", campaign="qualification", after="c0000010@example.com")
    with app.reader.connect() as conn:
        listed = [x.contact.email for x in listing.contacts(conn, where, page=3)]
        due: list[int] = []
        after = None
        while page := enrollments.due_page(conn, NOW, after, 4):
            due += [e.id for e in page]
            assert all(e.contact.email == f"c{e.id - 1:07d}@example.com" for e in page)
            # Times read as the driver hands them, then made aware (due_page's `_utc`).
            assert all(e.next_due_at == NOW and e.next_due_at.tzinfo is UTC for e in page)
            times = [(e.enrolled_at, e.contact.created_at) for e in page]
            assert times == [_times(conn, e.id) for e in page]
            after = (NOW, page[-1].id)
    stopped = {i for i in range(50) if (i + 1) % 5 == 0}
    assert listed == [f"c{i:07d}@example.com" for i in range(11, 50, 2) if i not in stopped]
    assert due == [i + 1 for i in range(50) if i not in stopped]
    app.engine.dispose()


def test_list_as_json_lines_pages_its_writes(big: app_mod.App) -> None:
    """`contacts list --jsonl`: one contact a line, written a page at a time (not a write each)."""
    wanted = 2 * listing.PAGE + 3
    args = ["--limit", str(wanted), "--stage", "lead", "--jsonl"]
    lines, _, _ = list_contacts(big, *args)
    contacts_listed = [json.loads(line) for line in lines]
    assert len(contacts_listed) == wanted
    assert contacts_listed[0]["email"] == "c0000001@example.com"
    assert [c["stage"] for c in contacts_listed] == ["lead"] * wanted
    writes: list[str] = []

    class Writes(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    count = listing.write_json_lines(Writes(), iter(contacts_listed))
    assert count == wanted
    assert "".join(writes) == "".join(lines)
    assert len(writes) == 3  # two full pages and the rest
