"""The pure schedule engine: what is due when, for one enrollment.

A campaign is a list of steps. Sequential steps (`Wait`, `Anchored`) run in
file order, one after the other; repeating steps (`Every`, `Yearly`) each run
their own series from enrollment beside the sequence. Everything is recomputed
from the steps, the durable `Progress` and the contact's fields on every call,
so editing a campaign file or a contact's dates takes effect at once and never
confuses a contact in the middle of a campaign. No I/O, no clock: callers pass
`now` where it matters.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dripd.plan import dates, decide, durations, windows
from dripd.plan.durations import Duration

MAX_PROJECTED = 10_000  # items `project` returns at most
TASK_WAIT_REASON = "waiting for the rep to finish the task"


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """Due `duration` after the previous sequential step (first step: after enrollment)."""

    duration: Duration


@dataclass(frozen=True, slots=True, kw_only=True)
class Anchored:
    """Due `offset` before or after the instant in the contact's field `anchor`."""

    anchor: str
    offset: Duration
    direction: Literal["before", "after"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Every:
    """Repeats every `period` from enrollment, `count` times (forever when None)."""

    period: Duration
    count: int | None = None

    def __post_init__(self) -> None:
        if self.period.amount == 0:
            raise ValueError(f'every "{self.period}" would repeat without end')
        if self.count is not None and self.count < 0:
            raise ValueError(f"count {self.count} is negative")


@dataclass(frozen=True, slots=True, kw_only=True)
class Yearly:
    """Each year on the month-day of the contact's date `field` or a fixed `month_day`."""

    field: str | None = None
    month_day: tuple[int, int] | None = None
    before: Duration | None = None

    def __post_init__(self) -> None:
        if (self.field is None) == (self.month_day is None):
            raise ValueError("yearly needs exactly one of a field or a month-day")


Timing = Wait | Anchored | Every | Yearly


def fields_read(plans: Sequence[StepPlan]) -> tuple[str, ...]:
    """The contact's fields the timing of `plans` reads (`Context.fields`), sorted.

    Two contacts alike in these (and in the rest of a Context) are timed alike:
    `schedule` projects them once.
    """
    names: set[str] = set()
    for plan in plans:
        timing = plan.timing
        if isinstance(timing, Anchored):
            names.add(timing.anchor)
        elif isinstance(timing, Yearly) and timing.field:
            names.add(timing.field)
    return tuple(sorted(names))


def reads_enrollment_time(plans: Sequence[StepPlan], progress: Progress) -> bool:
    """Whether `project` and `pending` read `Context.enrolled_at` for this progress.

    They read it in two places only: the floor of the first sequential step
    (`sequential_item`, while no step is done: `last_due_at` is None) and the
    series of the repeating steps (`repeating_item`). Once a step is done, a
    campaign of sequential steps is timed from `last_due_at` on: enrollments
    alike but for when they were enrolled are timed alike (`schedule` projects
    them once).
    """
    return progress.last_due_at is None or not all(plan.sequential for plan in plans)


def reads_last_due(steps: Sequence[StepPlan], progress: Progress, ctx: Context) -> bool:
    """Whether `project` reads `progress.last_due_at` and `task_done_at` here (False: it does not).

    In a campaign of sequential steps, `project` reads them for its first
    item only: after it, the progress is advanced to that item's time. The
    first item of a step hung on an anchor reads last_due_at as a floor
    only (`max(nominal, floor)`, `_anchored_item`) and task_done_at not at
    all. So when the next step is anchored (not held by an open task) and
    its nominal time is not before last_due_at, or it has no anchor time,
    the items are the same for every last_due_at up to that nominal time:
    `schedule` projects enrollments alike but for these times once.
    """
    if progress.last_due_at is None or not all(plan.sequential for plan in steps):
        return True
    step = next_sequential(steps, progress)
    if step is None or not isinstance(step.timing, Anchored):
        return True
    if step.wait_for_task and progress.task_open:
        return True
    anchored = _anchor_time(step.timing, ctx)
    return not isinstance(anchored, str) and progress.last_due_at > anchored[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepPlan:
    """What the engine needs to know about one campaign step."""

    id: str
    timing: Timing
    windowed: bool  # an email: sending windows and holds apply; rep tasks have due dates only
    wait_for_task: bool = False
    is_task: bool = False
    # True for steps of the sequence, False for repeating ones (kept: it is
    # asked on every step of every contact when projecting).
    sequential: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sequential", isinstance(self.timing, Wait | Anchored))


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """The durable state of one enrollment (stored as JSON by the caller)."""

    done: tuple[str, ...] = ()  # sequential step ids executed or skipped, in order
    # due_at (nominal moved by holds and windows) of the last of them: the next
    # wait counts from when the previous email was due to go out, so an email
    # held over a weekend isn't followed by the next one the same morning.
    last_due_at: datetime | None = None
    counts: Mapping[str, int] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    task_open: bool = False  # the last sequential step was a task still open
    task_done_at: datetime | None = None  # when that task was marked done

    def __post_init__(self) -> None:
        # A read-only copy, so the caller's dict can't change us afterwards.
        object.__setattr__(self, "counts", MappingProxyType(dict(self.counts)))

    def __hash__(self) -> int:
        counts = tuple(sorted(self.counts.items()))
        return hash((self.done, self.last_due_at, counts, self.task_open, self.task_done_at))

    def to_text(self) -> str:
        """As stored (enrollments.progress): compact JSON, sorted keys, datetimes UTC ISO 8601."""
        data = {
            "done": list(self.done),
            "last_due_at": _iso(self.last_due_at),
            "counts": dict(self.counts),
            "task_open": self.task_open,
            "task_done_at": _iso(self.task_done_at),
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_text(cls, text: str) -> Progress:
        """The inverse of `to_text`; missing keys take their defaults."""
        try:
            return _progress_from(json.loads(text))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"bad progress JSON {text[:80]!r}: {exc}") from exc


def finish_task(progress: Progress, at: datetime) -> Progress:
    """Record that the rep marked the open task done (or skipped) at `at`."""
    return Progress(
        done=progress.done,
        last_due_at=progress.last_due_at,
        counts=progress.counts,
        task_open=False,
        task_done_at=at.astimezone(UTC),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything about the contact and the rep the timing depends on."""

    tz: ZoneInfo
    enrolled_at: datetime
    fields: Mapping[str, str]  # the contact's raw field values
    holidays: Container[date] = frozenset()
    window: windows.Window | None = None
    hold_until: datetime | None = None  # windowed steps are not due before this


@dataclass(frozen=True, slots=True, kw_only=True)
class Due:
    """One occurrence of a step that can run at `due_at`."""

    step_id: str
    occurrence: int  # 1 for sequential steps; 1-based for repeating ones
    nominal_at: datetime  # what the timing says
    due_at: datetime  # nominal moved by holds and sending windows
    anchor: str | None = None  # the field the time hangs on, if any
    anchor_at: datetime | None = None
    deadline: datetime | None = None  # from then on it is skipped, not done late
    # nominal moved into the sending window only (no hold): lateness counts from
    # here, so a weekend wait for the window never makes an email stale, while
    # a rep's vacation does. None means nominal_at.
    planned_at: datetime | None = None

    @property
    def planned(self) -> datetime:
        """When the campaign planned it: what lateness counts from (decide.stale)."""
        return self.planned_at or self.nominal_at


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """A step that cannot be timed yet, and why."""

    step_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Pending:
    """What is due now or later for one enrollment."""

    due: tuple[Due, ...]
    waiting: tuple[Waiting, ...]
    complete: bool

    @property
    def next_due_at(self) -> datetime | None:
        """The earliest due_at, or None when nothing is due."""
        return min((d.due_at for d in self.due), default=None)


Item = Due | Waiting | None  # None: the step has nothing left to do


def pending(steps: Sequence[StepPlan], progress: Progress, ctx: Context) -> Pending:
    """The next occurrence of the sequence and of every repeating step."""
    nxt = next_sequential(steps, progress)
    items: list[Item] = [sequential_item(nxt, progress, ctx)] if nxt else []
    items += [repeating_item(s, progress, ctx) for s in steps if not s.sequential]
    return Pending(
        due=tuple(i for i in items if isinstance(i, Due)),
        waiting=tuple(i for i in items if isinstance(i, Waiting)),
        complete=not any(items),
    )


def next_sequential(steps: Sequence[StepPlan], progress: Progress) -> StepPlan | None:
    """The sequential step to run next, or None when the sequence is over.

    The position is after the latest id in `done` that is still in the file;
    steps inserted before it are not run for this contact, steps already done
    are never run again, and a removed step doesn't lose the contact's place.
    """
    done = progress.done
    if not done:
        return next((s for s in steps if s.sequential), None)
    places = {s.id: i for i, s in enumerate(steps) if s.sequential}
    position = next((places[i] + 1 for i in reversed(done) if i in places), 0)
    return next((s for s in steps[position:] if s.sequential and s.id not in done), None)


def sequential_item(step: StepPlan, progress: Progress, ctx: Context) -> Due | Waiting:
    """The Due (or Waiting) of a sequential step given the progress so far."""
    if step.wait_for_task and progress.task_open:
        return Waiting(step_id=step.id, reason=TASK_WAIT_REASON)
    floor = progress.last_due_at or ctx.enrolled_at.astimezone(UTC)
    if isinstance(step.timing, Wait):
        base = floor
        if step.wait_for_task and progress.task_done_at is not None:
            base = progress.task_done_at
        return _due(step, 1, _waited(step.timing, base, floor, ctx), ctx)
    assert isinstance(step.timing, Anchored)
    return _anchored_item(step, step.timing, floor, ctx)


def _waited(timing: Wait, base: datetime, floor: datetime, ctx: Context) -> datetime:
    """A wait's nominal time: `duration` after `base`, never before `floor`."""
    return max(durations.add(base, timing.duration, tz=ctx.tz, holidays=ctx.holidays), floor)


def repeating_item(step: StepPlan, progress: Progress, ctx: Context) -> Item:
    """The next occurrence of a repeating step, Waiting, or None when exhausted."""
    k = progress.counts.get(step.id, 0) + 1
    if isinstance(step.timing, Every):
        if step.timing.count is not None and k > step.timing.count:
            return None
        period = step.timing.period.times(k)
        nominal = durations.add(ctx.enrolled_at, period, tz=ctx.tz, holidays=ctx.holidays)
        return _due(step, k, nominal, ctx)
    assert isinstance(step.timing, Yearly)
    return _yearly_item(step, step.timing, k, ctx)


def advance(progress: Progress, steps: Sequence[StepPlan], due: Due) -> Progress:
    """Record that `due` was executed or skipped. Advancing twice changes nothing."""
    step = next((s for s in steps if s.id == due.step_id), None)
    if step is None:
        raise ValueError(f'unknown step "{due.step_id}"')
    return _advanced(progress, step, due)


def _advanced(progress: Progress, step: StepPlan, due: Due) -> Progress:
    """`advance` with the step known."""
    if not step.sequential:
        counts = dict(progress.counts)
        counts[step.id] = max(counts.get(step.id, 0), due.occurrence)
        return dataclasses.replace(progress, counts=counts)
    if step.id in progress.done:
        return progress
    return Progress(
        done=(*progress.done, step.id),
        last_due_at=due.due_at,
        counts=progress.counts,
        task_open=step.is_task,
        task_done_at=None,
    )


def is_stale(due: Due, now: datetime, *, max_late: timedelta | None = None) -> str | None:
    """Why `due` must be skipped rather than done late at `now`, or None (decide.stale)."""
    return decide.stale(
        now, planned_at=due.planned, deadline=due.deadline, anchor=due.anchor, max_late=max_late
    )


def project(
    steps: Sequence[StepPlan],
    progress: Progress,
    ctx: Context,
    *,
    until: datetime,
    stop_early: bool = False,
) -> list[Due]:
    """What will happen up to `until`, in time order, if each item runs at its due_at.

    Open tasks are assumed done at their due time. Only the step just advanced
    is recomputed each round, which keeps this cheap for many contacts.

    `stop_early`: the same list, but after a sequential item the loop ends as
    soon as nothing can follow it by `until` (`_nothing_more`), without
    advancing the progress and timing the next step in full: in a short
    window most enrollments have one item (`schedule --days 1`).
    """
    places = {step.id: index for index, step in enumerate(steps)}
    items = _initial_items(steps, progress, ctx)
    result: list[Due] = []
    while len(result) < MAX_PROJECTED:
        due = _earliest(items, until)
        if due is None:
            break
        result.append(due)
        index = places[due.step_id]
        step = steps[index]
        if (
            stop_early
            and step.sequential
            and _nothing_more(items, index, steps, progress, due, until, ctx)
        ):
            break
        progress = _advanced(progress, step, due)
        if step.is_task and step.sequential:
            progress = finish_task(progress, due.due_at)
        _refresh(items, index, steps, progress, ctx)
    return result


def _initial_items(steps: Sequence[StepPlan], progress: Progress, ctx: Context) -> dict[int, Item]:
    """The current item of every step that has one, keyed by position in the file."""
    nxt = next_sequential(steps, progress)
    items: dict[int, Item] = {}
    for index, step in enumerate(steps):
        if not step.sequential:
            items[index] = repeating_item(step, progress, ctx)
        elif step is nxt:
            items[index] = sequential_item(step, progress, ctx)
    return items


def _refresh(
    items: dict[int, Item],
    index: int,
    steps: Sequence[StepPlan],
    progress: Progress,
    ctx: Context,
) -> None:
    """Recompute the items that advancing step `index` changed."""
    step = steps[index]
    if not step.sequential:
        items[index] = repeating_item(step, progress, ctx)
        return
    del items[index]
    # Step `index` is now the latest done step, so next_sequential's answer is
    # the first sequential step after it not done yet; found here without
    # rebuilding next_sequential's index of the file.
    for later in range(index + 1, len(steps)):
        nxt = steps[later]
        if nxt.sequential and nxt.id not in progress.done:
            items[later] = sequential_item(nxt, progress, ctx)
            return


def _nothing_more(
    items: Mapping[int, Item],
    index: int,
    steps: Sequence[StepPlan],
    progress: Progress,
    due: Due,
    until: datetime,
    ctx: Context,
) -> bool:
    """Whether `project` would find nothing after `due`, the item of sequential step `index`.

    Advancing a sequential step changes only its own entry of `items`: it
    goes, and the next sequential step not done comes (`_refresh`). So the
    loop finds nothing more when no other entry is due by `until` and that
    next step has no item by then. After the advance (`sequential_item` on
    the new progress) its floor is `due`'s due_at (the new last_due_at), no
    task is open (`project` finishes a task at its due time), and a wait
    counts from that same instant (a finished task's task_done_at is it
    too). Its due_at is at least the nominal time worked out here the same
    way (`_waited`, `_anchor_time`, then the max with the floor; holds and
    windows only move it later, `_due`): a nominal time past `until`, or
    none (the step waits on a field, or no step follows), ends the list.
    """
    for other, item in items.items():
        if other != index and isinstance(item, Due) and item.due_at <= until:
            return False
    done = (*progress.done, steps[index].id)
    following = next((s for s in steps[index + 1 :] if s.sequential and s.id not in done), None)
    if following is None:
        return True
    floor = due.due_at
    if isinstance(following.timing, Wait):
        return _waited(following.timing, floor, floor, ctx) > until
    assert isinstance(following.timing, Anchored)
    anchored = _anchor_time(following.timing, ctx)
    return isinstance(anchored, str) or max(anchored[1], floor) > until


def _earliest(items: Mapping[int, Item], until: datetime) -> Due | None:
    """The Due with the smallest due_at up to `until`; ties go to the earlier step."""
    best: Due | None = None
    best_index = -1
    for index, item in items.items():
        if not isinstance(item, Due) or item.due_at > until:
            continue
        if best is None or (item.due_at, index) < (best.due_at, best_index):
            best, best_index = item, index
    return best


def _anchored_item(
    step: StepPlan, timing: Anchored, floor: datetime, ctx: Context
) -> Due | Waiting:
    anchored = _anchor_time(timing, ctx)
    if isinstance(anchored, str):
        return Waiting(step_id=step.id, reason=anchored)
    anchor_at, nominal = anchored
    # "before 0m" means "at the anchor": only a real lead time makes it a deadline.
    has_deadline = timing.direction == "before" and timing.offset.amount > 0
    return _due(
        step,
        1,
        max(nominal, floor),
        ctx,
        anchor=timing.anchor,
        anchor_at=anchor_at,
        deadline=anchor_at if has_deadline else None,
    )


def _anchor_time(timing: Anchored, ctx: Context) -> tuple[datetime, datetime] | str:
    """The anchor's instant and `offset` from it (the nominal time), or why there is none."""
    raw = ctx.fields.get(timing.anchor, "").strip()
    if not raw:
        return f"{timing.anchor} not set"
    try:
        anchor_at = dates.parse_when(raw, ctx.tz)
    except ValueError:
        return f'{timing.anchor} "{raw}" is not a date'
    shift = durations.subtract if timing.direction == "before" else durations.add
    return anchor_at, shift(anchor_at, timing.offset, tz=ctx.tz, holidays=ctx.holidays)


def _yearly_item(step: StepPlan, timing: Yearly, k: int, ctx: Context) -> Due | Waiting:
    month_day = timing.month_day or _field_month_day(step.id, timing.field or "", ctx)
    if isinstance(month_day, Waiting):
        return month_day
    first = _first_yearly_year(month_day, timing.before, ctx)
    day = _on_year(month_day, first + k - 1)
    anchor_at = durations.localize(datetime.combine(day, dates.DATE_ONLY_TIME), ctx.tz)
    nominal = _minus(anchor_at, timing.before, ctx)
    # Greetings for a date are pointless once that day is over in the contact's zone.
    deadline = durations.localize(datetime.combine(day + timedelta(days=1), time()), ctx.tz)
    return _due(step, k, nominal, ctx, anchor=timing.field, anchor_at=anchor_at, deadline=deadline)


def _field_month_day(step_id: str, name: str, ctx: Context) -> tuple[int, int] | Waiting:
    raw = ctx.fields.get(name, "").strip()
    if not raw:
        return Waiting(step_id=step_id, reason=f"{name} not set")
    try:
        day = dates.parse_date(raw)
    except ValueError:
        pass
    else:
        return day.month, day.day
    try:
        return dates.parse_month_day(raw)  # a birthday is often kept without the year
    except ValueError:
        return Waiting(step_id=step_id, reason=f'{name} "{raw}" is not a date')


def _first_yearly_year(month_day: tuple[int, int], before: Duration | None, ctx: Context) -> int:
    """The first year whose occurrence is not before enrollment."""
    year = ctx.enrolled_at.astimezone(ctx.tz).year
    while _yearly_nominal(month_day, year, before, ctx) < ctx.enrolled_at:
        year += 1
    return year


def _yearly_nominal(
    month_day: tuple[int, int], year: int, before: Duration | None, ctx: Context
) -> datetime:
    wall = datetime.combine(_on_year(month_day, year), dates.DATE_ONLY_TIME)
    return _minus(durations.localize(wall, ctx.tz), before, ctx)


def _on_year(month_day: tuple[int, int], year: int) -> date:
    month, day = month_day
    try:
        return date(year, month, day)
    except ValueError:  # Feb 29 outside a leap year
        return date(year, month, day - 1)


def _minus(instant: datetime, before: Duration | None, ctx: Context) -> datetime:
    if before is None:
        return instant
    return durations.subtract(instant, before, tz=ctx.tz, holidays=ctx.holidays)


def _due(
    step: StepPlan,
    occurrence: int,
    nominal: datetime,
    ctx: Context,
    *,
    anchor: str | None = None,
    anchor_at: datetime | None = None,
    deadline: datetime | None = None,
) -> Due | Waiting:
    """Emails move past the hold and into the window; rep tasks keep their nominal."""
    planned = due_at = nominal
    if step.windowed:
        held = max(nominal, ctx.hold_until.astimezone(UTC)) if ctx.hold_until else nominal
        try:
            planned = _into_window(nominal, ctx)
            due_at = planned if held == nominal else _into_window(held, ctx)
        except ValueError as exc:
            return Waiting(step_id=step.id, reason=str(exc))
    return Due(
        step_id=step.id,
        occurrence=occurrence,
        nominal_at=nominal,
        due_at=due_at,
        anchor=anchor,
        anchor_at=anchor_at,
        deadline=deadline,
        planned_at=planned,
    )


def _into_window(at: datetime, ctx: Context) -> datetime:
    if ctx.window is None:
        return at
    return windows.next_open(at, ctx.window, ctx.tz, ctx.holidays)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


def _progress_from(data: Any) -> Progress:
    if not isinstance(data, dict):
        raise ValueError("expected an object")
    done = data.get("done", [])
    counts = data.get("counts", {})
    if not all(isinstance(i, str) for i in done):
        raise ValueError("done must be a list of step ids")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in counts.values()):
        raise ValueError("counts must map step ids to integers")
    return Progress(
        done=tuple(done),
        last_due_at=_when(data.get("last_due_at")),
        counts=dict(counts),
        task_open=bool(data.get("task_open", False)),
        task_done_at=_when(data.get("task_done_at")),
    )
