"""Properties of windows and the schedule engine, over zones with odd DST rules."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import dates
from hypothesis import given, settings
from hypothesis import strategies as st

from dripd.plan import schedule, windows
from dripd.plan.durations import Duration
from dripd.plan.schedule import Context, Progress, StepPlan

ZONES = [
    ZoneInfo(name)
    for name in (
        "America/New_York",
        "Europe/Berlin",
        "Asia/Tokyo",
        "Australia/Lord_Howe",  # a 30-minute DST shift
        "America/Santiago",  # changes at midnight
        "UTC",
    )
]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FEW = settings(max_examples=60, deadline=None)

zones = st.sampled_from(ZONES)
# Four years from this one (with a leap day, and each zone's clock changes), and holidays
# a little beyond them on both sides.
YEAR = dates.today().year
instants = st.datetimes(
    min_value=datetime(YEAR, 1, 1), max_value=datetime(YEAR + 3, 12, 31), timezones=st.just(UTC)
)


@st.composite
def window_texts(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
        start = draw(st.integers(0, 23 * 4 + 3)) * 15
        end = draw(st.integers(0, 24 * 4)) * 15
        parts.append(
            f"{','.join(days)} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}"
        )
    return "; ".join(parts)


holiday_sets = st.frozensets(
    st.dates(min_value=date(YEAR - 1, 12, 25), max_value=date(YEAR + 4, 1, 10)), max_size=6
)
durations_ = st.builds(
    Duration,
    amount=st.integers(0, 40),
    unit=st.sampled_from(["minutes", "hours", "days", "business_days", "weeks", "months"]),
)


@FEW
@given(instants, window_texts(), zones, holiday_sets)
def test_next_open_is_open_and_minimal(
    at: datetime, text: str, tz: ZoneInfo, holidays: frozenset[date]
) -> None:
    window = windows.parse_window(text)
    opens = windows.next_open(at, window, tz, holidays)
    assert opens >= at
    assert windows.is_open(opens, window, tz, holidays)
    assert windows.next_open(opens, window, tz, holidays) == opens
    if opens > at:
        assert not windows.is_open(at, window, tz, holidays)
        assert not windows.is_open(at + (opens - at) / 2, window, tz, holidays)
        assert not windows.is_open(opens - timedelta(seconds=1), window, tz, holidays)


@FEW
@given(instants, window_texts(), zones)
def test_parse_window_round_trips(at: datetime, text: str, tz: ZoneInfo) -> None:
    window = windows.parse_window(text)
    again = windows.parse_window(str(window))
    assert windows.is_open(at, again, tz) == windows.is_open(at, window, tz)


@st.composite
def timings(draw: st.DrawFn) -> schedule.Timing:
    kind = draw(st.sampled_from(["wait", "wait", "anchored", "every", "yearly"]))
    if kind == "wait":
        return schedule.Wait(duration=draw(durations_))
    if kind == "anchored":
        direction: Literal["before", "after"] = draw(st.sampled_from(["before", "after"]))
        return schedule.Anchored(
            anchor="appointment_at", offset=draw(durations_), direction=direction
        )
    if kind == "every":
        period = draw(durations_.filter(lambda d: d.amount > 0 and d.unit != "minutes"))
        return schedule.Every(period=period, count=draw(st.none() | st.integers(0, 5)))
    return schedule.Yearly(month_day=(draw(st.integers(1, 12)), draw(st.integers(1, 28))))


@st.composite
def step_lists(draw: st.DrawFn) -> list[StepPlan]:
    steps = []
    for index in range(draw(st.integers(1, 6))):
        is_task = draw(st.booleans())
        steps.append(
            StepPlan(
                id=f"s{index}",
                timing=draw(timings()),
                windowed=not is_task,
                is_task=is_task,
                wait_for_task=draw(st.booleans()),
            )
        )
    return steps


@st.composite
def contexts(draw: st.DrawFn) -> Context:
    tz = draw(zones)
    enrolled = draw(instants)
    appointment = enrolled + timedelta(minutes=draw(st.integers(-3000, 60_000)))
    fields = {"appointment_at": f"{appointment.astimezone(tz):%Y-%m-%d %H:%M}"}
    return Context(
        tz=tz,
        enrolled_at=enrolled,
        fields=draw(st.sampled_from([fields, {}])),
        holidays=draw(holiday_sets),
        window=windows.parse_window(draw(window_texts())),
        hold_until=draw(st.none() | st.just(enrolled + timedelta(days=3))),
    )


@FEW
@given(step_lists(), contexts())
def test_projection_invariants(steps: list[StepPlan], ctx: Context) -> None:
    projected = schedule.project(steps, Progress(), ctx, until=ctx.enrolled_at + timedelta(days=90))
    by_id = {s.id: s for s in steps}
    previous = None
    for due in projected:
        step = by_id[due.step_id]
        if step.windowed:
            assert due.due_at >= due.nominal_at
            assert ctx.window is not None
            assert windows.is_open(due.due_at, ctx.window, ctx.tz, ctx.holidays)
        else:
            assert due.due_at == due.nominal_at
        if step.sequential:
            assert previous is None or due.nominal_at >= previous
            previous = due.nominal_at
    assert [d.due_at for d in projected] == sorted(d.due_at for d in projected)


@FEW
@given(step_lists(), contexts(), st.integers(0, 8))
def test_pending_is_stable_under_reload(steps: list[StepPlan], ctx: Context, k: int) -> None:
    progress = Progress()
    for due in schedule.project(steps, progress, ctx, until=ctx.enrolled_at + timedelta(days=400))[
        :k
    ]:
        progress = schedule.advance(progress, steps, due)
    reloaded = Progress.from_text(progress.to_text())
    assert reloaded == progress
    first = schedule.pending(steps, progress, ctx)
    assert schedule.pending(steps, reloaded, ctx) == first
    assert schedule.pending(steps, progress, ctx) == first


def naive_project(
    steps: list[StepPlan], progress: Progress, ctx: Context, until: datetime, limit: int
) -> list[schedule.Due]:
    """`project` spelled out as a pending/advance loop, recomputing everything."""
    order = {s.id: i for i, s in enumerate(steps)}
    result: list[schedule.Due] = []
    while len(result) < limit:
        candidates = [d for d in schedule.pending(steps, progress, ctx).due if d.due_at <= until]
        if not candidates:
            break
        due = min(candidates, key=lambda d: (d.due_at, order[d.step_id]))
        result.append(due)
        progress = schedule.advance(progress, steps, due)
        step = steps[order[due.step_id]]
        if step.is_task and step.sequential:
            progress = schedule.finish_task(progress, due.due_at)
    return result


@FEW
@given(step_lists(), contexts())
def test_project_matches_the_pending_advance_loop(steps: list[StepPlan], ctx: Context) -> None:
    until = ctx.enrolled_at + timedelta(days=60)
    expected = naive_project(steps, Progress(), ctx, until, limit=100)
    assert schedule.project(steps, Progress(), ctx, until=until)[:100] == expected


def advanced(steps: list[StepPlan], ctx: Context, k: int) -> Progress:
    """The progress after the first `k` items; a task finished at its due time when `k` is odd."""
    progress = Progress()
    for due in schedule.project(steps, progress, ctx, until=ctx.enrolled_at + timedelta(days=60))[
        :k
    ]:
        progress = schedule.advance(progress, steps, due)
        step = next(s for s in steps if s.id == due.step_id)
        if step.is_task and step.sequential and k % 2:
            progress = schedule.finish_task(progress, due.due_at)
    return progress


@settings(max_examples=300, deadline=None)
@given(step_lists(), contexts(), st.integers(0, 4), st.integers(0, 3 * 24 * 60))
def test_stopping_early_changes_no_projection(
    steps: list[StepPlan], ctx: Context, k: int, minutes: int
) -> None:
    """`project(stop_early=True)` ends where the full loop would find nothing more.

    Short windows (up to three days), from a few places in the campaign:
    where most enrollments have one item and the early stop is taken.
    """
    progress = advanced(steps, ctx, k)
    until = (progress.last_due_at or ctx.enrolled_at) + timedelta(minutes=minutes)
    full = schedule.project(steps, progress, ctx, until=until)
    assert schedule.project(steps, progress, ctx, until=until, stop_early=True) == full
