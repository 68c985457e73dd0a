"""The real `dripd` console script, as a user runs it (SPEC §8).

Each call is a subprocess (about a second each: imports dominate), so flows are
grouped and independent read-only calls run side by side.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dates
import userfiles

ConfigFactory = Callable[..., Path]  # the `make_config` fixture of tests/conftest.py
NY = ZoneInfo("America/New_York")  # the test config's time zone (no contact or rep overrides it)
NEXT_YEAR = dates.today().year + 1  # dates typed in commands, always ahead
QUALIFICATION_STEPS = ["thank-you", "thank-you-card", "confirm-call", "confirm-email", "debrief"]


def _dripd_path() -> str:
    beside = Path(sys.executable).parent / "dripd"
    if beside.is_file():
        return str(beside)
    found = shutil.which("dripd", path=str(Path(sys.executable).parent)) or shutil.which("dripd")
    assert found, "the dripd console script is not installed"
    return found


DRIPD = _dripd_path()


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"dripd {command} -> {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


class Dripd:
    """Runs `dripd` with a config, alternating `--config` before and after the command."""

    def __init__(self, config: Path) -> None:
        self.config = str(config)
        self.calls = 0

    def _argv(self, args: Sequence[str]) -> list[str]:
        self.calls += 1
        if self.calls % 2:
            return [DRIPD, "--config", self.config, *args]
        return [DRIPD, *args, "--config", self.config]

    def __call__(self, *args: str, code: int | None = 0) -> Result:
        return self.many([args], codes=[code])[0]

    def many(
        self, calls: Sequence[Sequence[str]], codes: Sequence[int | None] | None = None
    ) -> list[Result]:
        """Run `calls` side by side (read-only commands only); results in order."""
        results = Dripd.side_by_side([(self, args) for args in calls])
        for result, code in zip(results, codes or [0] * len(calls), strict=True):
            if code is not None:
                assert result.code == code, str(result)
        return results

    @staticmethod
    def side_by_side(calls: Sequence[tuple[Dripd, Sequence[str]]]) -> list[Result]:
        procs = [
            subprocess.Popen(runner._argv(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=userfiles.dripd_env())
            for runner, args in calls
        ]  # fmt: skip
        results = []
        for (_runner, args), proc in zip(calls, procs, strict=True):
            out, err = proc.communicate(timeout=60)
            result = Result(tuple(args), proc.returncode, out, err)
            assert "Traceback" not in result.err, str(result)
            assert "Traceback" not in result.out, str(result)
            results.append(result)
        return results


def _one_error_line(result: Result, *fragments: str) -> str:
    """A failure is exit 1 and one `dripd: ...` line on stderr, nothing on stdout."""
    assert result.code == 1, str(result)
    assert len(result.err_lines) == 1, str(result)
    line = result.err_lines[0]
    assert line.startswith("dripd: "), str(result)
    for fragment in fragments:
        assert fragment in line, str(result)
    assert result.out == "", str(result)
    return line


def _at(item: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(item["at"])


def _items(schedule: dict[str, Any], email: str) -> list[dict[str, Any]]:
    return [i for i in schedule["items"] if i["contact"] == email]


def _step_at(schedule: dict[str, Any], email: str, step: str) -> datetime:
    found = [_at(i) for i in _items(schedule, email) if i["step"] == step]
    assert len(found) == 1, (step, _items(schedule, email))
    return found[0]


def _local_day(days: int, hour: int) -> datetime:
    """`days` from today at `hour`:00 in New York, as aware UTC."""
    day = datetime.now(NY).date() + timedelta(days=days)
    return datetime.combine(day, time(hour), tzinfo=NY).astimezone(UTC)


# -- dripd check ------------------------------------------------------------------------


def test_check_and_one_line_errors(make_config: ConfigFactory, tmp_path: Path) -> None:
    """`check` passes on the shipped campaigns and names file and step on a broken copy;
    every refused command is exit 1 and one line, and changes nothing."""
    copy = make_config(copy_campaigns=True)  # make_config writes tmp_path/config.toml
    broken_config = tmp_path / "broken" / "config.toml"
    broken_config.parent.mkdir()
    broken_config.write_text(copy.read_text(encoding="utf-8"), encoding="utf-8")
    shipped = Dripd(make_config())
    campaigns = tmp_path / "campaigns"
    qualification = campaigns / "qualification.toml"
    qualification.write_text(
        qualification.read_text(encoding="utf-8").replace('wait = "1 day"', 'wiat = "1 day"', 1),
        encoding="utf-8",
    )
    (campaigns / "proposal" / "thank-you.md").write_text(
        "Hi {{ contact.first_name ,\n", encoding="utf-8"
    )
    broken = Dripd(broken_config)

    # independent runs, side by side
    ok, bad, no_config, *refused = Dripd.side_by_side([
        (shipped, ["check"]),
        (broken, ["check"]),
        (Dripd(tmp_path / "nope.toml"), ["check"]),
        (shipped, ["contacts", "show", "nobody@example.com"]),
        (shipped, ["stop", "nobody@example.com"]),
        (shipped, ["pause", "--rep", "zed", "--until", f"{NEXT_YEAR}-01-05"]),
        (shipped, ["contacts", "import", str(tmp_path / "missing.csv")]),
        (shipped, ["contacts", "set", "ann@example.com", "first_name=Ann\r\nBcc: x@evil.com"]),
        (shipped, ["preview", "qualification", "nosuch-step", "--contact", "ann@example.com"]),
    ])  # fmt: skip

    assert ok.code == 0, str(ok)
    # the verdict is the last line (warnings, e.g. a `from` rep without a mailbox, come first)
    assert ok.out.strip().splitlines()[-1].startswith("ok: "), str(ok)
    assert "6 campaign(s)" in ok.out
    assert ok.err == ""
    assert bad.code == 1, str(bad)
    problems = [line for line in bad.out.splitlines() if line.startswith("error ")]
    assert problems == [
        f"error {campaigns / 'proposal.toml'}: step 'thank-you': template 'proposal/thank-you.md':"
        f" error on line 1: {problems[0].rsplit(': ', 1)[-1]}",
        f"error {qualification}: step 'thank-you-card': unknown key 'wiat' — did you mean 'wait'?",
    ], str(bad)
    assert "FAILED" in bad.out
    _one_error_line(no_config, "nope.toml", "no such file")
    for result, fragment in zip(refused, [
        "no contact 'nobody@example.com'",
        "no contact 'nobody@example.com'",
        "unknown rep 'zed'",
        "missing.csv",
        "first_name contains a control character or line break",
        "no step 'nosuch-step'",
    ], strict=True):  # fmt: skip
        _one_error_line(result, fragment)
    [listed] = shipped.many([["contacts", "list", "--json"]])
    assert listed.json() == []  # nothing was created by the refused `set`


# -- the import / enroll / schedule flow, over SQLite and PostgreSQL --------------------


def _write_people(path: Path, ann_appointment: datetime, *, ann_company: str = "Acme") -> None:
    appointment = ann_appointment.astimezone(NY).strftime("%Y-%m-%d %H:%M")
    dora = (ann_appointment + timedelta(days=7)).astimezone(NY).strftime("%Y-%m-%d %H:%M")
    rows = [
        "email,first_name,last_name,company,owner,appointment_at",     # line 1
        f"ann@example.com,Ann,Lee,{ann_company},mike,{appointment}",  # 2
        "not-an-email,Bob,Ray,,mike,",                                 # 3
        '"bob@example.com","Bob\r\nBcc: x@evil.com",Ray,,mike,',       # 4-5
        "carl@example.com,Carl,Diaz,,zed,",                            # 6
        f"dora@example.com,Dora,Eve,Evco,sam,{dora}",                  # 7
        f"erin@example.com,Erin,Fox,,mike,{NEXT_YEAR}-13-01 10:00",    # 8
        "fay@example.com,Fay,Gold,Goldco,mike,",                       # 9
    ]  # fmt: skip
    path.write_text("\n".join(rows) + "\n", encoding="utf-8", newline="")


def _check_import_report(
    result: Result, csv: Path, *, created: int, updated: int, enrolled: int
) -> None:
    assert result.code == 1, str(result)
    lines = result.err_lines
    assert [line.split(": ")[1] for line in lines] == [
        "line 3", "line 4", "line 6", "line 8",
    ], str(result)  # fmt: skip
    assert all(line.startswith(f"{csv}: line ") for line in lines), str(result)
    assert "'not-an-email' is not an email address" in lines[0]
    assert "first_name contains a control character or line break" in lines[1]
    assert "owner 'zed' is not a rep" in lines[2]
    assert "appointment_at: bad date" in lines[3]
    assert "evil.com" not in result.out
    assert result.out.strip() == (
        f"{csv}: {created} created, {updated} updated, {enrolled} enrolled, 4 row(s) with problems"
    ), str(result)


def test_the_database_file_alone_holds_what_a_command_wrote(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    """A command closes its connections as it ends: SQLite writes its WAL back, so the
    database file alone (a copy, a backup) holds what the command wrote."""
    dripd = Dripd(make_config())
    csv = tmp_path / "people.csv"
    csv.write_text("email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n")
    dripd("contacts", "import", str(csv), "--enroll", "qualification")
    copy = tmp_path / "copy.db"
    shutil.copyfile(tmp_path / "dripd.db", copy)  # without dripd.db-wal
    with contextlib.closing(sqlite3.connect(copy)) as db:
        assert db.execute("select count(*) from contacts").fetchone() == (2,)
        assert db.execute("select count(*) from enrollments").fetchone() == (2,)


def test_import_enroll_schedule_preview_status_pause_stop(
    make_config: ConfigFactory, database_url: str, tmp_path: Path
) -> None:
    dripd = Dripd(make_config(database=database_url))
    csv = tmp_path / "people.csv"
    appointment = _local_day(14, 10)  # the demo, two weeks out at 10:00 New York time
    _write_people(csv, appointment)

    # -- import with bad rows: good rows kept and enrolled, each bad row one line ---------
    imported = dripd("contacts", "import", str(csv), "--enroll", "qualification", code=1)
    _check_import_report(imported, csv, created=3, updated=0, enrolled=3)

    listed, ann, before, preview, no_field, unknown = dripd.many([
        ["contacts", "list", "--json"],
        ["contacts", "show", "ann@example.com", "--json"],
        ["schedule", "--days", "30", "--json"],
        ["preview", "qualification", "thank-you", "--contact", "ann@example.com"],
        ["preview", "qualification", "confirm-email", "--contact", "fay@example.com"],
        ["enroll", "ann@example.com", "nosuch"],
    ], codes=[0, 0, 0, 0, 1, 1])  # fmt: skip

    people = {c["email"]: c for c in listed.json()}
    assert sorted(people) == ["ann@example.com", "dora@example.com", "fay@example.com"]
    assert {c["stage"] for c in people.values()} == {"prospect"}
    assert people["dora@example.com"]["owner"] == "sam"
    assert people["ann@example.com"]["company"] == "Acme"
    assert all(c["campaigns"] == ["qualification"] for c in people.values())

    shown = ann.json()
    kinds = [(h["kind"], h["campaign"]) for h in shown["history"]]
    assert kinds[0] == ("created", None), kinds
    assert {("enrolled", "qualification"), ("promoted", None)} <= set(kinds), kinds
    promoted = next(h for h in shown["history"] if h["kind"] == "promoted")
    assert "suspect" in promoted["detail"] and "prospect" in promoted["detail"]
    assert [(e["campaign"], e["status"]) for e in shown["enrollments"]] == [
        ("qualification", "active")
    ]
    assert shown["campaigns"] == ["qualification"]

    schedule = before.json()
    ann_items = _items(schedule, "ann@example.com")
    assert [i["step"] for i in ann_items] == QUALIFICATION_STEPS
    assert all(i["campaign"] == "qualification" for i in ann_items)
    assert [_at(i) for i in schedule["items"]] == sorted(_at(i) for i in schedule["items"])
    confirm_before = _step_at(schedule, "ann@example.com", "confirm-call")
    assert confirm_before == appointment - timedelta(hours=24)
    assert _step_at(schedule, "ann@example.com", "debrief") == appointment + timedelta(hours=1)
    # fay has no appointment: her anchored steps wait, they are not invented
    assert [i["step"] for i in _items(schedule, "fay@example.com")] == QUALIFICATION_STEPS[:2]

    lines = preview.out.splitlines()
    assert lines[:3] == [
        "From: Mike Gulitz <mike@example.com>",
        "To: Ann Lee <ann@example.com>",
        "Subject: Thank you for your time, Ann",
    ], str(preview)
    assert "Hi Ann," in preview.out
    assert appointment.astimezone(NY).strftime("%B") in preview.out  # "We're set for <date>"
    assert preview.err == ""

    _one_error_line(no_field, "confirm-email", "appointment_at")
    _one_error_line(unknown, "unknown campaign 'nosuch'", "qualification")

    # -- the same file again (one cell edited): updates, never duplicates -----------------
    _write_people(csv, appointment, ann_company="Acme Holdings")
    again = dripd("contacts", "import", str(csv), code=1)
    _check_import_report(again, csv, created=0, updated=3, enrolled=0)

    # -- a new appointment moves the anchored steps ----------------------------------------
    moved_to = _local_day(16, 15)
    moved = dripd(
        "contacts",
        "set",
        "ann@example.com",
        f"appointment_at={moved_to.astimezone(NY):%Y-%m-%d %H:%M}",
    )
    assert moved.out.strip() == "updated ann@example.com: appointment_at", str(moved)

    listed, after = dripd.many(
        [["contacts", "list", "--json"], ["schedule", "--days", "30", "--json"]]
    )
    people = {c["email"]: c for c in listed.json()}
    assert len(listed.json()) == 3 and len(people) == 3
    assert people["ann@example.com"]["company"] == "Acme Holdings"
    assert people["ann@example.com"]["campaigns"] == ["qualification"]
    schedule = after.json()
    confirm_after = _step_at(schedule, "ann@example.com", "confirm-call")
    assert confirm_after == moved_to - timedelta(hours=24) != confirm_before
    assert _step_at(schedule, "ann@example.com", "debrief") == moved_to + timedelta(hours=1)

    # -- enrolling elsewhere ends the exclusive campaign; a rep's vacation holds emails -----
    dripd("enroll", "ann@example.com", "presentation")
    until = datetime.now(NY).date() + timedelta(days=40)
    paused_until = datetime.combine(until, time(9), tzinfo=NY).astimezone(UTC)
    paused = dripd("pause", "--rep", "mike", "--until", until.isoformat())
    assert paused.out.startswith(f"paused mike until {until.isoformat()}"), str(paused)

    [held] = dripd.many([["schedule", "--days", "60", "--json"]])
    schedule = held.json()
    emails = [i for i in schedule["items"] if i["kind"] == "email"]
    mikes = [i for i in emails if i["contact"] in ("ann@example.com", "fay@example.com")]
    assert {i["contact"] for i in mikes} == {"ann@example.com", "fay@example.com"}, emails
    assert all(_at(i) >= paused_until for i in mikes), mikes
    assert {i["campaign"] for i in _items(schedule, "ann@example.com")} == {"presentation"}
    # sam is not on vacation: dora's thank-you still goes out now
    assert _step_at(schedule, "dora@example.com", "thank-you") < paused_until

    assert dripd("resume", "--rep", "mike").out.strip() == "resumed mike"
    stopped_out = dripd("stop", "ann@example.com")
    assert stopped_out.out.strip() == "stopped 1 sequence of ann@example.com"

    ann, resumed, status = dripd.many(
        [
            ["contacts", "show", "ann@example.com", "--json"],
            ["schedule", "--days", "60", "--json"],
            ["status", "--json"],
        ]
    )
    shown = ann.json()
    assert [(e["campaign"], e["status"]) for e in shown["enrollments"]] == [
        ("qualification", "stopped"), ("presentation", "stopped"),
    ]  # fmt: skip
    assert shown["campaigns"] == []
    stopped = [(h["campaign"], h["cause"]) for h in shown["history"] if h["kind"] == "stopped"]
    assert stopped == [
        ("qualification", "enrolled in presentation"),  # exclusive: the new one ends the old
        ("presentation", "dripd stop"),
    ]
    enrolled = [h["campaign"] for h in shown["history"] if h["kind"] == "enrolled"]
    assert enrolled == ["qualification", "presentation"]
    schedule = resumed.json()
    assert _items(schedule, "ann@example.com") == []
    assert _step_at(schedule, "fay@example.com", "thank-you") < paused_until
    pipeline = status.json()
    assert pipeline["stages"] == {"suspect": 0, "prospect": 2, "lead": 1, "customer": 0}
    steps = {(s["campaign"], s["step"]): s for s in pipeline["steps"]}
    assert [k[1] for k in steps if k[0] == "qualification"] == QUALIFICATION_STEPS
    for stats in steps.values():
        assert {"sent", "replied", "auto_replied", "bounced", "reply_rate"} <= set(stats)
        assert (stats["sent"], stats["replied"], stats["reply_rate"]) == (0, 0, None)
    assert pipeline["campaigns"]["qualification"] == {"active": 2, "completed": 0, "stopped": 1}
    assert pipeline["campaigns"]["presentation"] == {"active": 0, "completed": 0, "stopped": 1}


def test_explain_reads_a_message_file_without_acting_on_it(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    dripd = Dripd(make_config())
    dripd("contacts", "set", "ann@example.com", "first_name=Ann", "owner=mike")
    reply = tmp_path / "reply.eml"
    monday = dates.weekday_after(dates.today() - timedelta(days=8), dates.MONDAY)  # this week's
    sent = dates.local(monday, 11)  # 16:00 UTC in winter
    reply.write_bytes(
        "From: Ann <ann@example.com>\r\nTo: mike@example.com\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <r1@example.com>\r\nDate: {sent:%a, %d %b %Y %H:%M:%S} +0000\r\n\r\n"
        "Yes, let's talk on Thursday.\r\n\r\n"
        f"On {dates.fmt_us(monday)} Mike wrote:\r\n> Hello\r\n".encode()
    )
    shown = dripd("explain", str(reply))
    assert "reply.eml: reply" in shown.out
    assert "ann@example.com" in shown.out and "Yes, let's talk on Thursday." in shown.out
    data = dripd("explain", str(reply), "--json").json()
    assert data["class"] == "reply" and data["contact"] == "ann@example.com"
    assert data["reasons"] == ["from the contact ann@example.com", "a new message"]
    assert dripd("contacts", "show", "ann@example.com", "--json").json()["status"] == "active"
    card = dripd("contacts", "show", "ann@example.com")  # the card: rich's grid and tables
    assert card.code == 0 and card.err == "", str(card)
    assert "<ann@example.com>" in card.out and "history" in card.out
    history = dripd("contacts", "show", "ann@example.com", "--json").json()["history"]
    assert "replied" not in [event["kind"] for event in history]  # read, not acted on

    stranger = tmp_path / "stranger.eml"
    stranger.write_bytes(b"From: x@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n")
    data = dripd("explain", str(stranger), "--json").json()
    assert (data["class"], data["contact"]) == ("other", None)
    assert data["reasons"] == ["from x@elsewhere.example: not a contact"]

    missing = dripd("explain", str(tmp_path / "nope.eml"), code=2)
    assert missing.out == "" and len(missing.err_lines) == 1
    assert missing.err.startswith("dripd: cannot read") and "nope.eml" in missing.err


FAMILIES = Path(__file__).resolve().parents[1] / "corpus" / "families"


def test_explain_shows_what_a_bounce_says_apart_from_what_dripd_would_do(
    make_config: ConfigFactory,
) -> None:
    dripd = Dripd(make_config())
    dripd("contacts", "set", "fay@gsuite.example", "first_name=Fay", "owner=mike")
    stranger, policy = dripd.many([
        ["explain", str(FAMILIES / "postfix-unknown-user.eml"), "--json"],
        ["explain", str(FAMILIES / "google-workspace-dmarc.eml"), "--json"],
    ])  # fmt: skip
    data = stranger.json()
    assert data["class"] == "other" and data["contact"] is None  # the keys of before
    assert data["reading"]["kind"] == "bounce"
    assert data["reading"]["original_message_id"] == "<q3-003@acme.example>"
    (failed,) = data["reading"]["failed"]
    assert (failed["recipient"], failed["status"], failed["kind"], failed["reason"]) == (
        "paula@postfix.example",
        "5.1.1",
        "hard",
        "unknown user",
    )
    assert data["would_do"] == [
        "not a contact: nothing to do; did you import them under another address?"
    ]
    data = policy.json()
    assert data["class"] == "bounce" and data["permanent"] is False
    assert data["reading"]["failed"][0]["kind"] == "policy"
    assert "not bounced" in data["would_do"][0]

    shown = dripd("explain", str(FAMILIES / "postfix-unknown-user.eml")).out
    assert "read as: a bounce report" in shown
    assert "paula@postfix.example (not a contact): hard, unknown user, 5.1.1" in shown
    assert "original message <q3-003@acme.example>" in shown
    assert "did you import them under another address?" in shown
    assert dripd("contacts", "show", "fay@gsuite.example", "--json").json()["status"] == "active"


CALL_NOW = """
name = "Call now"
[[steps]]
id = "intro-call"
kind = "call"
wait = "0m"
note = "Introduce yourself to {{ contact.first_name }} at {{ contact.company }}."
"""


def _ann_with_a_call_due(make_config: ConfigFactory, tmp_path: Path) -> Dripd:
    """Ann enrolled in CALL_NOW and a pass run: one open call task for mike, nothing sent."""
    campaigns = tmp_path / "own-campaigns"
    campaigns.mkdir()
    (campaigns / "callnow.toml").write_text(CALL_NOW, encoding="utf-8")
    dripd = Dripd(make_config(campaigns=campaigns))
    dripd("contacts", "set", "ann@example.com", "first_name=Ann", "company=Acme",
          "phone=+1 555 0100", "owner=mike")  # fmt: skip
    dripd("enroll", "ann@example.com", "callnow")
    assert "tasks 1," in dripd("run", "--once").out  # no [reps.smtp]: the call task only
    return dripd


def test_digest_print_shows_what_the_rep_would_get_now(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    dripd = _ann_with_a_call_due(make_config, tmp_path)

    text, as_json, html, sam, unknown, bare = dripd.many([
        ["digest", "--rep", "mike", "--print"],
        ["digest", "--rep", "mike", "--json"],
        ["digest", "--rep", "mike", "--html"],
        ["digest", "--rep", "sam", "--print"],
        ["digest", "--rep", "zed", "--print"],
        ["digest", "--rep", "mike"],
    ], codes=[0, 0, 0, 0, 1, 2])  # fmt: skip
    assert text.out.startswith("Subject: Your day, ")
    assert "1 call" in text.out.splitlines()[0]
    assert "Call: Ann, Acme" in text.out
    assert "Introduce yourself to Ann at Acme." in text.out
    data = as_json.json()
    assert data["would_send"] is True and len(data["tasks"]) == 1
    assert 'href="tel:+15550100"' in html.out
    assert "no digest would be sent now" in sam.out  # sam has nothing due or new
    assert "unknown rep 'zed'" in _one_error_line(unknown)
    assert bare.out == "" and bare.err_lines == [
        "dripd: add --print to see the digest; `dripd run` sends it at the rep's digest times"
    ]


# What scripts read of `--json`: the keys, in order (the typed read models must keep them).
STATUS_KEYS = ["stages", "statuses", "campaigns", "steps", "variants", "touches", "mailboxes",
               "health", "due_now", "campaigns_version"]  # fmt: skip
STEP_KEYS = ["campaign", "step", "kind", "sent", "replied", "auto_replied", "bounced", "done",
             "reply_rate"]  # fmt: skip
MAILBOX_KEYS = ["rep", "sent", "waiting", "failed", "last_sent_at", "inbox_checked_at", "replies",
                "last_digest_at", "notes"]  # fmt: skip
HEALTH_KEYS = ["instances", "last_sent_at", "queued", "ready", "failed_emails",
               "held_steps", "unreadable_messages", "campaign_mismatch", "sign_ins_needed",
               "attention"]  # fmt: skip
TASK_KEYS = ["id", "kind", "due_at", "rep", "contact", "name", "company", "phone", "touches",
             "campaign", "step", "note"]  # fmt: skip
EVENT_KEYS = ["at", "kind", "campaign", "step", "detail", "cause", "message_id"]


def test_json_of_status_tasks_and_history_keeps_its_keys(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    dripd = _ann_with_a_call_due(make_config, tmp_path)
    status, tasks, ann = dripd.many(
        [
            ["status", "--json"],
            ["tasks", "--json"],
            ["contacts", "show", "ann@example.com", "--json"],
        ]
    )
    pipeline = status.json()
    assert list(pipeline) == STATUS_KEYS
    (step,) = pipeline["steps"]
    assert list(step) == STEP_KEYS
    assert step == {"campaign": "callnow", "step": "intro-call", "kind": "call", "sent": 0,
                    "replied": 0, "auto_replied": 0, "bounced": 0, "done": 0,
                    "reply_rate": None}  # fmt: skip
    assert [list(box) for box in pipeline["mailboxes"]] == [MAILBOX_KEYS, MAILBOX_KEYS]
    assert [box["rep"] for box in pipeline["mailboxes"]] == ["mike", "sam"]
    assert pipeline["mailboxes"][0]["notes"] == ["no [reps.smtp]: its emails wait"]
    health = pipeline["health"]
    assert list(health) == HEALTH_KEYS
    assert (health["instances"], health["last_sent_at"], health["attention"]) == ([], None, [])
    assert pipeline["campaigns"] == {"callnow": {"active": 1, "completed": 0, "stopped": 0}}
    assert (pipeline["touches"], pipeline["variants"]) == (0, [])
    (task,) = tasks.json()
    assert list(task) == TASK_KEYS
    assert (task["kind"], task["contact"], task["name"], task["phone"], task["step"]) == (
        "call", "ann@example.com", "Ann", "+1 555 0100", "intro-call",
    )  # fmt: skip
    assert datetime.fromisoformat(task["due_at"]).tzinfo is not None
    history = ann.json()["history"]
    assert all(list(event) == EVENT_KEYS for event in history)
    assert [e["kind"] for e in history][:2] == ["created", "enrolled"]
    assert all(datetime.fromisoformat(e["at"]).tzinfo is not None for e in history)
