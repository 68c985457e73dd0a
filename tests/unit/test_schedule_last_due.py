"""`schedule.reads_last_due`: where it says the last step's time is not read, it is not."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import dates
from hypothesis import given, settings
from hypothesis import strategies as st
from test_schedule_properties import advanced, contexts, instants, step_lists

from dripd.plan import schedule, windows
from dripd.plan.durations import Duration
from dripd.plan.schedule import Context, Progress, StepPlan


@settings(max_examples=400, deadline=None)
@given(
    step_lists(),
    contexts(),
    st.integers(0, 4),
    st.integers(0, 3 * 24 * 60),
    st.integers(0, 30 * 24 * 60),
    st.none() | instants,
)
def test_an_earlier_last_due_changes_no_item(
    steps: list[StepPlan],
    ctx: Context,
    k: int,
    minutes: int,
    earlier: int,
    task_done_at: datetime | None,
) -> None:
    """With reads_last_due False, an earlier last_due_at and any task_done_at project alike."""
    progress = advanced(steps, ctx, k)
    if schedule.reads_last_due(steps, progress, ctx):
        return
    assert progress.last_due_at is not None
    other = dataclasses.replace(
        progress,
        last_due_at=progress.last_due_at - timedelta(minutes=earlier),
        task_done_at=task_done_at,
    )
    until = progress.last_due_at + timedelta(minutes=minutes)
    for stop_early in (False, True):
        projected = schedule.project(steps, progress, ctx, until=until, stop_early=stop_early)
        assert schedule.project(steps, other, ctx, until=until, stop_early=stop_early) == projected


def _steps(second: schedule.Timing) -> list[StepPlan]:
    first = schedule.Wait(duration=Duration(amount=0, unit="minutes"))
    return [
        StepPlan(id="hello", timing=first, windowed=True),
        StepPlan(id="next", timing=second, windowed=True),
    ]


CONFIRM = schedule.Anchored(
    anchor="appointment_at", offset=Duration(amount=24, unit="hours"), direction="before"
)
NOW = dates.local(dates.quiet_monday(), 9)
CTX = Context(
    tz=UTC,
    enrolled_at=NOW,
    fields={"appointment_at": f"{NOW + timedelta(days=10):%Y-%m-%d %H:%M}"},
    window=windows.parse_window("mon-sun 00:00-24:00"),
)


def test_it_reads_the_last_due_where_the_next_step_counts_from_it() -> None:
    done = Progress(done=("hello",), last_due_at=NOW)
    assert not schedule.reads_last_due(_steps(CONFIRM), done, CTX)
    # past the anchor's time the floor moves the step
    late = dataclasses.replace(done, last_due_at=NOW + timedelta(days=9, hours=1))
    assert schedule.reads_last_due(_steps(CONFIRM), late, CTX)
    wait = schedule.Wait(duration=Duration(amount=1, unit="days"))
    assert schedule.reads_last_due(_steps(wait), done, CTX)
    assert schedule.reads_last_due(_steps(CONFIRM), Progress(), CTX)  # nothing done yet
    every = schedule.Every(period=Duration(amount=1, unit="weeks"))
    repeating = [*_steps(CONFIRM), StepPlan(id="weekly", timing=every, windowed=True)]
    assert schedule.reads_last_due(repeating, done, CTX)
