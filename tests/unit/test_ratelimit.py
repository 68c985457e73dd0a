"""Per-mailbox sending limits: sliding 10-minute, hour and day windows."""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dates
from hypothesis import given, settings
from hypothesis import strategies as st

from dripd.plan.ratelimit import RateLimit

T0 = dates.local(dates.today(), 9, tz=UTC)  # any instant: the limits count seconds, not days
TEN = timedelta(minutes=10)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)


def windows(per_hour: int, per_day: int) -> list[tuple[timedelta, int]]:
    """The limits, worked out here independently: a sixth of the hour per 10 minutes."""
    return [(TEN, max(1, -(-per_hour // 6))), (HOUR, per_hour), (DAY, per_day)]


def in_window(times: Sequence[datetime], end: datetime, span: timedelta) -> int:
    """Sends in the window (end - span, end] of sorted `times`."""
    return bisect.bisect_right(times, end) - bisect.bisect_right(times, end - span)


def allowed(times: Sequence[datetime], at: datetime, limits: list[tuple[timedelta, int]]) -> bool:
    return all(in_window(times, at, span) < limit for span, limit in limits)


def busiest(times: Sequence[datetime], span: timedelta) -> int:
    """The most sends in any window of length `span` (each window ends on a send)."""
    ordered = sorted(times)
    return max((in_window(ordered, t, span) for t in ordered), default=0)


def simulate(
    limit: RateLimit, start: datetime, end: datetime, wishes: Sequence[timedelta] = ()
) -> list[datetime]:
    """A sender that sends whenever `next_free` allows, from `start` until `end`."""
    sent: list[datetime] = []
    t = start
    gaps = iter(wishes)
    while True:
        wish = t + next(gaps, timedelta(0))
        t = limit.next_free(wish)
        assert t >= wish
        if t >= end:
            return sent
        limit.record(t)
        sent.append(t)


def test_seventeen_in_ten_minutes_then_the_eighteenth_waits() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    for i in range(17):
        at = T0 + i * timedelta(seconds=30)
        assert limit.next_free(at) == at
        limit.record(at)
    now = T0 + timedelta(minutes=9)
    assert limit.next_free(now) == T0 + TEN  # when the first send leaves the window
    assert limit.count(now, TEN) == 17


def test_a_burst_at_one_instant() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    for _ in range(17):
        assert limit.next_free(T0) == T0
        limit.record(T0)
    assert limit.next_free(T0) == T0 + TEN
    assert limit.next_free(T0 + TEN - TICK) == T0 + TEN


def test_a_simulated_day_never_exceeds_any_window() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    sent = simulate(limit, T0, T0 + DAY)
    assert busiest(sent, TEN) == 17
    assert busiest(sent, HOUR) == 100
    assert busiest(sent, DAY) == 400
    assert len(sent) == 400
    # Spread out, not bunched: the first hour holds 100, the first 10 minutes 17.
    assert in_window(sent, T0 + HOUR - TICK, HOUR) == 100
    assert in_window(sent, T0 + TEN - TICK, TEN) == 17


def test_the_next_days_sends_resume_after_a_full_day() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    sent = simulate(limit, T0, T0 + 3 * DAY)
    assert busiest(sent, DAY) == 400
    assert busiest(sent, HOUR) == 100
    assert busiest(sent, TEN) == 17
    assert len(sent) == 1200


def test_small_hourly_limits_still_allow_one_per_ten_minutes() -> None:
    limit = RateLimit(per_hour=3, per_day=50)
    sent = simulate(limit, T0, T0 + 2 * HOUR)
    assert busiest(sent, TEN) == 1
    assert busiest(sent, HOUR) == 3
    assert len(sent) == 6


def test_load_honours_the_hour_of_history() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    limit.load([T0 - timedelta(minutes=55)] * 100)
    assert limit.next_free(T0) == T0 + timedelta(minutes=5)


def test_load_honours_the_day_of_history() -> None:
    history = [T0 - timedelta(hours=23) + i * timedelta(minutes=3) for i in range(400)]
    random.Random(7).shuffle(history)  # the database need not hand them over in order
    limit = RateLimit(per_hour=100, per_day=400)
    limit.load(history)
    assert limit.next_free(T0) == T0 + HOUR  # when the oldest is a day old
    sent = simulate(limit, T0, T0 + DAY)
    everything = sorted(history + sent)
    for t in sent:
        assert in_window(everything, t, DAY) <= 400
        assert in_window(everything, t, HOUR) <= 100
        assert in_window(everything, t, TEN) <= 17


def test_load_honours_the_ten_minutes_of_history() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    limit.load([T0 - timedelta(minutes=9), *([T0 - timedelta(minutes=1)] * 16)])
    assert limit.next_free(T0) == T0 + timedelta(minutes=1)


def test_history_older_than_a_day_is_ignored() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    limit.load([T0 - DAY] * 500 + [T0 - DAY - HOUR] * 500)
    assert limit.next_free(T0) == T0


def test_load_replaces_what_was_recorded() -> None:
    limit = RateLimit(per_hour=100, per_day=400)
    for _ in range(17):
        limit.record(T0)
    limit.load([])
    assert limit.next_free(T0) == T0


HISTORY = st.lists(st.integers(0, 24 * 3600 * 10**6 - 1), max_size=250)
GAPS = st.lists(
    st.one_of(st.just(0), st.integers(0, 120 * 10**6), st.integers(0, 3 * 3600 * 10**6)),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(
    per_hour=st.integers(1, 150),
    per_day=st.integers(1, 600),
    history=HISTORY,
    gaps=GAPS,
)
def test_simulated_sends_never_exceed_a_window(
    per_hour: int, per_day: int, history: list[int], gaps: list[int]
) -> None:
    limits = windows(per_hour, per_day)
    past = [T0 - timedelta(microseconds=1 + us) for us in history]  # the last day
    limit = RateLimit(per_hour=per_hour, per_day=per_day)
    limit.load(past)
    sent: list[datetime] = []
    t = T0
    for gap in gaps:
        wish = t + timedelta(microseconds=gap)
        t = limit.next_free(wish)
        assert t >= wish
        everything = sorted(past + sent)
        # Allowed at t, and (when it waited) not a microsecond earlier: no needless delay.
        assert allowed(everything, t, limits)
        if t > wish:
            assert not allowed(everything, t - TICK, limits)
        limit.record(t)
        sent.append(t)
    # Every window that holds a new send holds no more than its limit, history included:
    # the fullest such window ends on a new send (nothing after it is older history).
    everything = sorted(past + sent)
    for t in sent:
        for span, most in limits:
            assert in_window(everything, t, span) <= most


@settings(max_examples=40, deadline=None)
@given(per_hour=st.integers(1, 150), per_day=st.integers(1, 600), history=HISTORY)
def test_next_free_is_never_in_the_past(per_hour: int, per_day: int, history: list[int]) -> None:
    limit = RateLimit(per_hour=per_hour, per_day=per_day)
    limit.load([T0 - timedelta(microseconds=1 + us) for us in history])
    for step in (0, 1, 10**6, 3600 * 10**6, 25 * 3600 * 10**6):
        now = T0 + timedelta(microseconds=step)
        assert limit.next_free(now) >= now


def test_holding_names_the_window_that_is_full() -> None:
    limit = RateLimit(per_hour=12, per_day=30)
    assert limit.holding(T0) is None
    for minute in (0, 1):
        limit.record(T0 + timedelta(minutes=minute))
    ten = "2 sent in the last 10 minutes (a backlog is spread over the hour)"
    assert limit.holding(T0 + timedelta(minutes=2)) == ten
    assert limit.holding(T0 + TEN + timedelta(minutes=1)) is None  # the first one left it
    for minute in range(10, 50, 4):
        limit.record(T0 + timedelta(minutes=minute))
    assert limit.holding(T0 + timedelta(minutes=59)) == "12 sent in the last hour (max_per_hour)"
    for minute in (58, 59):  # both full: the one that holds longer (the hour's) is named
        limit.record(T0 + timedelta(minutes=minute))
    assert limit.count(T0 + timedelta(minutes=59), TEN) == 2
    assert limit.holding(T0 + timedelta(minutes=59)) == "12 sent in the last hour (max_per_hour)"
    for hour in range(2, 20):
        limit.record(T0 + timedelta(hours=hour))
    assert limit.holding(T0 + timedelta(hours=20)) == "30 sent in the last day (max_per_day)"
    assert limit.holding(T0 + DAY + timedelta(hours=2)) is None


def test_a_send_reserved_then_released_frees_its_place_and_only_its_own() -> None:
    """The sender reserves before a claim and releases if the claim was refused."""
    limit = RateLimit(per_hour=12, per_day=100)  # 2 in ten minutes
    limit.record(T0)
    limit.record(T0 + TICK)
    assert limit.next_free(T0 + TICK) > T0 + TICK
    limit.release(T0 + TICK)
    assert limit.next_free(T0 + TICK) == T0 + TICK
    limit.release(T0 + 2 * TICK)  # never recorded: nothing else is given back
    assert limit.count(T0 + TICK, TEN) == 1
