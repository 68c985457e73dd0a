"""The schedule engine: sequences, anchors, repeats, windows, edits, staleness."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dates
import pytest

from dripd.plan import schedule, windows
from dripd.plan.durations import parse_duration as D
from dripd.plan.schedule import Context, Due, Progress, StepPlan

NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = windows.parse_window("mon-fri 09:00-17:00")
# The tables name days of a non-leap year that begins on a Thursday, a year or more ahead
# (2 March a Monday, New York's clocks change on 8 March and 1 November, Berlin's on 29 March
# and 25 October): only the year is computed.
Y = dates.thursday_year()
LEAP = dates.leap_day(date(Y, 1, 1)).year  # the first leap year from Y
ENROLLED = datetime(Y, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 EST


def local(tz: ZoneInfo, *args: int) -> datetime:
    """A wall time in `tz`, as UTC."""
    return datetime(*args, tzinfo=tz).astimezone(UTC)  # type: ignore[arg-type,misc]


def wait(step_id: str, duration: str, **kwargs: bool) -> StepPlan:
    windowed = not kwargs.get("is_task", False)
    timing = schedule.Wait(duration=D(duration))
    return StepPlan(id=step_id, timing=timing, windowed=windowed, **kwargs)


def anchored(step_id: str, offset: str, direction: str = "before", **kwargs: bool) -> StepPlan:
    timing = schedule.Anchored(anchor="appointment_at", offset=D(offset), direction=direction)  # type: ignore[arg-type]
    return StepPlan(id=step_id, timing=timing, windowed=not kwargs.get("is_task", False), **kwargs)


def every(step_id: str, period: str, count: int | None = None) -> StepPlan:
    return StepPlan(id=step_id, timing=schedule.Every(period=D(period), count=count), windowed=True)


def ctx(**kwargs: object) -> Context:
    values: dict[str, object] = {"tz": NY, "enrolled_at": ENROLLED, "fields": {}}
    values.update(kwargs)
    return Context(**values)  # type: ignore[arg-type]


def only_due(pending: schedule.Pending) -> Due:
    assert len(pending.due) == 1, pending
    return pending.due[0]


def run_all(steps: list[StepPlan], context: Context) -> list[str]:
    """Advance through everything due, returning 'id@local time' strings."""
    seen = []
    for due in schedule.project(steps, Progress(), context, until=ENROLLED + timedelta(days=400)):
        seen.append(f"{due.step_id}@{due.due_at.astimezone(context.tz):%a %m-%d %H:%M}")
    return seen


# Sequences


def test_a_sequence_runs_in_order_from_enrollment() -> None:
    steps = [wait("a", "0m"), wait("b", "1 day"), wait("c", "3 business days")]
    assert run_all(steps, ctx()) == ["a@Mon 03-02 09:00", "b@Tue 03-03 09:00", "c@Fri 03-06 09:00"]


def test_waits_count_from_when_the_previous_step_was_due() -> None:
    # a's nominal is Saturday 09:00, held by the window to Monday; b counts from
    # Monday, so the contact doesn't get both emails the same morning.
    steps = [wait("a", "5 days"), wait("b", "1 day")]
    assert run_all(steps, ctx(window=OFFICE)) == ["a@Mon 03-09 09:00", "b@Tue 03-10 09:00"]


def test_a_task_after_a_held_email_is_due_after_it() -> None:
    steps = [wait("a", "5 days"), wait("call", "0m", is_task=True)]
    assert run_all(steps, ctx(window=OFFICE)) == ["a@Mon 03-09 09:00", "call@Mon 03-09 09:00"]


def test_first_step_due_and_then_complete() -> None:
    steps = [wait("a", "1 hour")]
    pending = schedule.pending(steps, Progress(), ctx())
    due = only_due(pending)
    assert (due.step_id, due.occurrence, due.nominal_at) == ("a", 1, ENROLLED + timedelta(hours=1))
    assert pending.next_due_at == due.due_at
    assert not pending.complete
    done = schedule.advance(Progress(), steps, due)
    assert done == Progress(done=("a",), last_due_at=due.nominal_at)
    after = schedule.pending(steps, done, ctx())
    assert after.complete
    assert after.next_due_at is None


def test_advance_is_idempotent() -> None:
    steps = [wait("a", "1 hour"), every("news", "1 week")]
    first = schedule.pending(steps, Progress(), ctx()).due
    progress = Progress()
    for due in first:
        progress = schedule.advance(progress, steps, due)
    again = progress
    for due in first:
        again = schedule.advance(again, steps, due)
    assert again == progress


def test_advance_unknown_step() -> None:
    due = Due(step_id="gone", occurrence=1, nominal_at=ENROLLED, due_at=ENROLLED)
    with pytest.raises(ValueError, match='unknown step "gone"'):
        schedule.advance(Progress(), [wait("a", "1h")], due)


# Windows and holds


@pytest.mark.parametrize(
    ("enrolled", "expected"),
    [
        (local(NY, Y, 3, 4, 12), local(NY, Y, 3, 4, 12)),  # open: now
        (local(NY, Y, 3, 4, 20), local(NY, Y, 3, 5, 9)),  # evening: next morning
        (local(NY, Y, 3, 6, 20), local(NY, Y, 3, 9, 9)),  # Friday night: Monday
    ],
)
def test_emails_wait_for_the_window(enrolled: datetime, expected: datetime) -> None:
    due = only_due(
        schedule.pending([wait("a", "0m")], Progress(), ctx(enrolled_at=enrolled, window=OFFICE))
    )
    assert due.nominal_at == enrolled
    assert due.due_at == expected


def test_tasks_ignore_windows_and_holds() -> None:
    hold = ENROLLED + timedelta(days=10)
    step = wait("call", "0m", is_task=True)
    due = only_due(
        schedule.pending(
            [step],
            Progress(),
            ctx(enrolled_at=local(NY, Y, 3, 7, 20), window=OFFICE, hold_until=hold),
        )
    )
    assert due.due_at == due.nominal_at == local(NY, Y, 3, 7, 20)


def test_hold_until_then_window() -> None:
    hold = local(NY, Y, 3, 13, 18)  # back from vacation Friday evening
    due = only_due(
        schedule.pending([wait("a", "1 day")], Progress(), ctx(window=OFFICE, hold_until=hold))
    )
    assert due.nominal_at == local(NY, Y, 3, 3, 9)
    assert due.due_at == local(NY, Y, 3, 16, 9)


def test_holidays_close_the_window_for_emails() -> None:
    context = ctx(
        enrolled_at=local(NY, Y, 12, 24, 18),
        window=OFFICE,
        holidays=frozenset({date(Y, 12, 25)}),
    )
    due = only_due(schedule.pending([wait("a", "0m")], Progress(), context))
    assert due.due_at == local(NY, Y, 12, 28, 9)


def test_window_crossing_midnight_in_the_contacts_zone() -> None:
    late = windows.parse_window("fri 22:00-02:00")
    context = ctx(tz=BERLIN, enrolled_at=local(BERLIN, Y, 3, 7, 1), window=late)
    due = only_due(schedule.pending([wait("a", "30m")], Progress(), context))
    assert due.due_at == local(BERLIN, Y, 3, 7, 1, 30)  # still Friday's range
    due = only_due(schedule.pending([wait("a", "1h")], Progress(), context))
    assert due.due_at == local(BERLIN, Y, 3, 13, 22)


def test_a_window_that_never_opens_makes_the_step_wait() -> None:
    sunday = windows.parse_window("sun 10:00-11:00")
    sundays = frozenset(date(Y, 3, 1) + timedelta(weeks=k) for k in range(60))
    pending = schedule.pending([wait("a", "0m")], Progress(), ctx(window=sunday, holidays=sundays))
    assert pending.due == ()
    assert "never opens" in pending.waiting[0].reason


# Anchors


APPOINTMENT = {"appointment_at": f"{Y}-03-10 10:00"}


@pytest.mark.parametrize(
    ("tz", "appointment", "offset", "direction", "expected"),
    [
        (NY, f"{Y}-03-10 10:00", "24 hours", "before", local(NY, Y, 3, 9, 10)),
        (NY, f"{Y}-03-10 10:00", "2 hours", "after", local(NY, Y, 3, 10, 12)),
        (NY, f"{Y}-03-10", "1 day", "before", local(NY, Y, 3, 9, 9)),  # date only: 09:00
        (NY, f"{Y}-03-10T10:00-05:00", "30m", "before", datetime(Y, 3, 10, 14, 30, tzinfo=UTC)),
        # Across the US spring-forward (Sunday Mar 8): calendar vs elapsed.
        (NY, f"{Y}-03-09 10:00", "1 day", "before", local(NY, Y, 3, 8, 10)),
        (NY, f"{Y}-03-09 10:00", "2 days", "before", local(NY, Y, 3, 7, 10)),
        (NY, f"{Y}-03-09 10:00", "48 hours", "before", local(NY, Y, 3, 7, 9)),
        (NY, f"{Y}-11-02 10:00", "48 hours", "before", local(NY, Y, 10, 31, 11)),
        (BERLIN, f"{Y}-03-30 10:00", "2 days", "before", local(BERLIN, Y, 3, 28, 10)),
        (BERLIN, f"{Y}-03-30 10:00", "48h", "before", local(BERLIN, Y, 3, 28, 9)),
        (BERLIN, f"{Y}-10-26 10:00", "48h", "before", local(BERLIN, Y, 10, 24, 11)),
        (NY, f"{Y}-03-16 10:00", "2 business days", "before", local(NY, Y, 3, 12, 10)),
    ],
)
def test_anchored_timing(
    tz: ZoneInfo, appointment: str, offset: str, direction: str, expected: datetime
) -> None:
    context = ctx(tz=tz, enrolled_at=local(tz, Y, 3, 1), fields={"appointment_at": appointment})
    due = only_due(
        schedule.pending([anchored("x", offset, direction, is_task=True)], Progress(), context)
    )
    assert due.nominal_at == expected
    assert due.anchor == "appointment_at"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "appointment_at not set"),
        ({"appointment_at": "  "}, "appointment_at not set"),
        ({"appointment_at": "tomorrow"}, 'appointment_at "tomorrow" is not a date'),
    ],
)
def test_missing_anchor_makes_the_sequence_wait(fields: dict[str, str], reason: str) -> None:
    steps = [anchored("confirm", "24h"), wait("after", "1 day")]
    pending = schedule.pending(steps, Progress(), ctx(fields=fields))
    assert pending.due == ()
    assert pending.waiting == (schedule.Waiting(step_id="confirm", reason=reason),)
    assert not pending.complete


def test_rescheduled_anchor_moves_the_due_time() -> None:
    steps = [anchored("confirm", "1 day", is_task=True)]
    first = only_due(schedule.pending(steps, Progress(), ctx(fields=APPOINTMENT)))
    moved = ctx(fields={"appointment_at": f"{Y}-03-17 15:00"})
    second = only_due(schedule.pending(steps, Progress(), moved))
    assert first.nominal_at == local(NY, Y, 3, 9, 10)
    assert second.nominal_at == local(NY, Y, 3, 16, 15)


def test_an_anchored_step_is_never_before_its_predecessor() -> None:
    # The wait puts "a" at Mar 12; the appointment reminder would be Mar 9.
    steps = [wait("a", "10 days"), anchored("b", "1 day", is_task=True)]
    a = only_due(schedule.pending(steps, Progress(), ctx(fields=APPOINTMENT)))
    progress = schedule.advance(Progress(), steps, a)
    b = only_due(schedule.pending(steps, progress, ctx(fields=APPOINTMENT)))
    assert b.nominal_at == a.nominal_at


def test_an_anchor_before_enrollment_is_due_at_enrollment() -> None:
    context = ctx(enrolled_at=local(NY, Y, 3, 9, 20), fields=APPOINTMENT)
    due = only_due(schedule.pending([anchored("b", "24h", is_task=True)], Progress(), context))
    assert due.nominal_at == local(NY, Y, 3, 9, 20)


# Staleness


def test_an_anchor_in_the_past_is_stale() -> None:
    due = only_due(
        schedule.pending([anchored("confirm", "24h")], Progress(), ctx(fields=APPOINTMENT))
    )
    assert schedule.is_stale(due, local(NY, Y, 3, 9, 16)) is None  # late but useful
    assert schedule.is_stale(due, local(NY, Y, 3, 10, 10)) == "appointment_at has passed"
    assert schedule.is_stale(due, local(NY, Y, 3, 12)) == "appointment_at has passed"


def test_after_anchor_steps_are_not_stale_because_the_anchor_passed() -> None:
    due = only_due(
        schedule.pending(
            [anchored("thanks", "2 hours", "after")], Progress(), ctx(fields=APPOINTMENT)
        )
    )
    assert schedule.is_stale(due, local(NY, Y, 3, 11, 12)) is None


@pytest.mark.parametrize(
    ("late", "max_late", "reason"),
    [
        (timedelta(days=3), timedelta(days=2), "due 3 days ago, more than max_late 2 days"),
        (timedelta(hours=5), timedelta(hours=1), "due 5 hours ago, more than max_late 1 hour"),
        (timedelta(days=1), timedelta(days=2), None),
        (timedelta(days=3), None, None),
    ],
)
def test_max_late(late: timedelta, max_late: timedelta | None, reason: str | None) -> None:
    due = Due(step_id="a", occurrence=1, nominal_at=ENROLLED, due_at=ENROLLED)
    assert schedule.is_stale(due, ENROLLED + late, max_late=max_late) == reason


def test_waiting_for_the_window_is_not_lateness() -> None:
    friday_night = local(NY, Y, 3, 6, 20)
    context = ctx(enrolled_at=friday_night, window=OFFICE)
    due = only_due(schedule.pending([wait("a", "0m")], Progress(), context))
    assert due.planned_at == due.due_at == local(NY, Y, 3, 9, 9)
    assert schedule.is_stale(due, due.due_at, max_late=timedelta(days=1)) is None


def test_a_hold_is_lateness() -> None:
    context = ctx(window=OFFICE, hold_until=local(NY, Y, 3, 16, 9))
    due = only_due(schedule.pending([wait("a", "0m")], Progress(), context))
    assert due.planned_at == ENROLLED
    assert due.due_at == local(NY, Y, 3, 16, 9)
    reason = schedule.is_stale(due, due.due_at, max_late=timedelta(days=2))  # 13d 23h: DST
    assert reason == "due 13 days ago, more than max_late 2 days"
    assert schedule.is_stale(due, due.due_at, max_late=timedelta(days=20)) is None


# Repeating steps


def test_every_month_is_computed_from_the_origin() -> None:
    context = ctx(enrolled_at=local(NY, Y, 1, 31, 10))
    steps = [every("news", "1 month", count=4)]
    got = [
        d.nominal_at
        for d in schedule.project(steps, Progress(), context, until=local(NY, Y + 1, 1, 1))
    ]
    assert got == [
        local(NY, Y, 2, 28, 10),
        local(NY, Y, 3, 31, 10),  # not Mar 28: no drift
        local(NY, Y, 4, 30, 10),
        local(NY, Y, 5, 31, 10),
    ]
    progress = Progress(counts={"news": 4})
    assert schedule.pending(steps, progress, context).complete


def test_every_without_count_never_completes() -> None:
    steps = [wait("a", "0m"), every("news", "1 week")]
    progress = Progress(done=("a",), last_due_at=ENROLLED, counts={"news": 500})
    pending = schedule.pending(steps, progress, ctx())
    assert not pending.complete
    assert only_due(pending).occurrence == 501


def test_repeating_steps_run_beside_the_sequence() -> None:
    steps = [wait("a", "0m"), every("news", "1 week", count=2), wait("b", "10 days")]
    assert run_all(steps, ctx()) == [
        "a@Mon 03-02 09:00",
        "news@Mon 03-09 09:00",
        "b@Thu 03-12 09:00",
        "news@Mon 03-16 09:00",
    ]


def test_every_week_keeps_the_wall_time_across_dst() -> None:
    steps = [every("news", "1 week", count=2)]
    got = [
        d.nominal_at
        for d in schedule.project(steps, Progress(), ctx(), until=ENROLLED + timedelta(days=30))
    ]
    assert got == [local(NY, Y, 3, 9, 9), local(NY, Y, 3, 16, 9)]


def yearly(step_id: str, **kwargs: object) -> StepPlan:
    return StepPlan(id=step_id, timing=schedule.Yearly(**kwargs), windowed=False, is_task=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("enrolled", "birthday", "before", "occurrences"),
    [
        # Enrolled before this year's birthday: this year first.
        (local(NY, Y, 3, 2), "1980-12-15", None, [(Y, 12, 15), (Y + 1, 12, 15)]),
        # Enrolled after it: next year first.
        (local(NY, Y, 12, 20), "1980-12-15", None, [(Y + 1, 12, 15), (Y + 2, 12, 15)]),
        # A week before: the first whose card time is not before enrollment.
        (local(NY, Y, 12, 10), "1980-12-15", "7 days", [(Y + 1, 12, 8), (Y + 2, 12, 8)]),
        (local(NY, Y, 12, 1), "1980-12-15", "7 days", [(Y, 12, 8), (Y + 1, 12, 8)]),
        # Feb 29 falls on Feb 28 in common years.
        # two years before a leap year: 28 February, 28 February, then 29 February
        (
            local(NY, LEAP - 2, 1, 1),
            "1984-02-29",
            None,
            [(LEAP - 2, 2, 28), (LEAP - 1, 2, 28), (LEAP, 2, 29)],
        ),
        # A birthday without a year.
        (local(NY, Y, 1, 1), "12-15", None, [(Y, 12, 15)]),
    ],
)
def test_yearly_on_a_field(
    enrolled: datetime, birthday: str, before: str | None, occurrences: list[tuple[int, int, int]]
) -> None:
    timing = {"field": "birthday", "before": D(before) if before else None}
    steps = [yearly("card", **timing)]
    context = ctx(enrolled_at=enrolled, fields={"birthday": birthday})
    progress = Progress()
    for y, m, d in occurrences:
        due = only_due(schedule.pending(steps, progress, context))
        assert due.nominal_at == local(NY, y, m, d, 9)
        progress = schedule.advance(progress, steps, due)


def test_yearly_fixed_month_day_is_stale_after_the_day() -> None:
    steps = [yearly("xmas", month_day=(12, 15))]
    due = only_due(schedule.pending(steps, Progress(), ctx()))
    assert due.nominal_at == local(NY, Y, 12, 15, 9)
    assert schedule.is_stale(due, local(NY, Y, 12, 15, 23)) is None
    assert schedule.is_stale(due, local(NY, Y, 12, 16, 0)) == "the date has passed"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({}, "birthday not set"), ({"birthday": "soon"}, 'birthday "soon" is not a date')],
)
def test_yearly_waits_for_its_field(fields: dict[str, str], reason: str) -> None:
    pending = schedule.pending([yearly("card", field="birthday")], Progress(), ctx(fields=fields))
    assert pending.waiting == (schedule.Waiting(step_id="card", reason=reason),)
    assert not pending.complete


def test_timing_validation() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        schedule.Yearly()
    with pytest.raises(ValueError, match="exactly one"):
        schedule.Yearly(field="birthday", month_day=(1, 1))
    with pytest.raises(ValueError, match="without end"):
        schedule.Every(period=D("0 days"))


# Tasks


def test_wait_for_task() -> None:
    steps = [wait("call", "0m", is_task=True), wait("email", "2 days", wait_for_task=True)]
    call = only_due(schedule.pending(steps, Progress(), ctx()))
    progress = schedule.advance(Progress(), steps, call)
    assert progress.task_open
    pending = schedule.pending(steps, progress, ctx())
    assert pending.waiting == (schedule.Waiting(step_id="email", reason=schedule.TASK_WAIT_REASON),)
    done_at = ENROLLED + timedelta(days=5)
    progress = schedule.finish_task(progress, done_at)
    email = only_due(schedule.pending(steps, progress, ctx()))
    assert email.nominal_at == local(NY, Y, 3, 9, 9)  # 2 calendar days, across DST


def test_a_step_without_wait_for_task_does_not_wait() -> None:
    steps = [wait("call", "0m", is_task=True), wait("email", "2 days")]
    call = only_due(schedule.pending(steps, Progress(), ctx()))
    progress = schedule.advance(Progress(), steps, call)
    assert only_due(schedule.pending(steps, progress, ctx())).nominal_at == ENROLLED + timedelta(
        days=2
    )


def test_project_assumes_tasks_done_at_their_due_time() -> None:
    steps = [wait("call", "1 day", is_task=True), wait("email", "2 days", wait_for_task=True)]
    assert run_all(steps, ctx()) == ["call@Tue 03-03 09:00", "email@Thu 03-05 09:00"]


# Edited campaigns


def progress_after(*ids: str) -> Progress:
    return Progress(done=ids, last_due_at=ENROLLED)


@pytest.mark.parametrize(
    ("file_ids", "done", "expected"),
    [
        (["a", "b", "c"], (), "a"),
        (["a", "b", "c"], ("a",), "b"),
        (["a", "b", "c"], ("a", "b", "c"), None),
        # c removed after the contact did it: continue after b, the latest still there.
        (["a", "b", "d"], ("a", "b", "c"), "d"),
        (["a", "b", "x", "d"], ("a", "b", "c"), "x"),
        # b, the contact's last step, removed: continue after a.
        (["a", "c"], ("a", "b"), "c"),
        # A step inserted before the contact's position is not run.
        (["new", "a", "b", "c"], ("a",), "b"),
        (["a", "new", "b", "c"], ("a", "b"), "c"),
        # Reordered: done steps are never run again.
        (["b", "a", "c"], ("a",), "c"),
        (["c", "b", "a"], ("a",), None),
        (["b", "a", "c"], ("b",), "a"),
        # Every done step removed: start from the first step not done.
        (["x", "y"], ("a", "b"), "x"),
    ],
)
def test_edited_step_lists(
    file_ids: list[str], done: tuple[str, ...], expected: str | None
) -> None:
    steps = [wait(i, "1 day") for i in file_ids]
    nxt = schedule.next_sequential(steps, progress_after(*done))
    assert (nxt.id if nxt else None) == expected
    pending = schedule.pending(steps, progress_after(*done), ctx())
    assert [d.step_id for d in pending.due] == ([expected] if expected else [])
    assert pending.complete is (expected is None)


def test_repeating_steps_are_not_in_the_sequence() -> None:
    steps = [wait("a", "1 day"), every("news", "1 week"), wait("b", "1 day")]
    assert schedule.next_sequential(steps, progress_after("a")) == steps[2]


# Progress JSON


@pytest.mark.parametrize(
    "progress",
    [
        Progress(),
        Progress(done=("a", "b"), last_due_at=ENROLLED, counts={"z": 2, "news": 3}),
        Progress(done=("call",), last_due_at=ENROLLED, task_open=True),
        Progress(
            done=("call",),
            last_due_at=datetime(Y, 3, 2, 9, 0, 0, 123456, tzinfo=NY),
            task_done_at=ENROLLED,
        ),
    ],
)
def test_progress_json_round_trip(progress: Progress) -> None:
    text = progress.to_text()
    back = Progress.from_text(text)
    assert back == progress
    assert back.to_text() == text
    assert hash(back) == hash(progress)


def test_progress_json_is_compact_and_stable() -> None:
    a = Progress(counts={"b": 1, "a": 2}, done=("x",), last_due_at=ENROLLED)
    b = Progress(counts={"a": 2, "b": 1}, done=("x",), last_due_at=ENROLLED)
    assert a.to_text() == b.to_text()
    assert a.to_text() == (
        f'{{"counts":{{"a":2,"b":1}},"done":["x"],"last_due_at":"{Y}-03-02T14:00:00Z",'
        '"task_done_at":null,"task_open":false}'
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"done": [1]}',
        f'{{"last_due_at": "{ENROLLED:%Y-%m-%dT%H:%M:%S}"}}',
        '{"counts": {"a": "x"}}',
    ],
)
def test_progress_json_errors(text: str) -> None:
    with pytest.raises(ValueError, match="bad progress JSON"):
        Progress.from_text(text)


def test_progress_counts_are_read_only() -> None:
    counts = {"news": 1}
    progress = Progress(counts=counts)
    counts["news"] = 5
    assert progress.counts["news"] == 1
    with pytest.raises(TypeError):
        progress.counts["news"] = 2  # type: ignore[index]


# Projection


def test_project_stops_at_until_and_is_in_time_order() -> None:
    steps = [wait("a", "0m"), every("news", "1 week"), wait("b", "10 days"), wait("c", "60 days")]
    got = schedule.project(
        steps, Progress(), ctx(window=OFFICE), until=ENROLLED + timedelta(days=30)
    )
    assert [d.step_id for d in got] == ["a", "news", "b", "news", "news", "news"]
    assert [d.due_at for d in got] == sorted(d.due_at for d in got)
    assert all(d.due_at <= ENROLLED + timedelta(days=30) for d in got)


def test_project_is_bounded() -> None:
    got = schedule.project(
        [every("tick", "1 minute")], Progress(), ctx(), until=ENROLLED + timedelta(days=3650)
    )
    assert len(got) == schedule.MAX_PROJECTED


def test_project_does_not_pass_a_waiting_step() -> None:
    steps = [wait("a", "0m"), anchored("b", "1 day"), wait("c", "0m")]
    got = schedule.project(steps, Progress(), ctx(), until=ENROLLED + timedelta(days=30))
    assert [d.step_id for d in got] == ["a"]


def test_project_is_fast() -> None:
    steps = [
        wait("a", "0m"),
        wait("call", "1 day", is_task=True),
        wait("b", "3 business days", wait_for_task=True),
        anchored("confirm", "24h"),
        every("news", "1 month"),
        yearly("card", field="birthday", before=D("7 days")),
    ]
    started = time.process_time()
    for i in range(1000):
        enrolled = ENROLLED + timedelta(minutes=7 * i)
        context = ctx(
            enrolled_at=enrolled, window=OFFICE, fields={**APPOINTMENT, "birthday": "1980-03-15"}
        )
        schedule.project(steps, Progress(), context, until=enrolled + timedelta(days=30))
    # ~0.2 s here for 1,000 contacts; generous for a loaded CI machine.
    assert time.process_time() - started < 1.5
