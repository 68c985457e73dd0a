"""What the read-only commands show: the schedule, the pipeline status, a contact's story."""

from __future__ import annotations

import heapq
import itertools
import pickle
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, Generic, NamedTuple, Protocol, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dripd.files import campaigns
from dripd.mailbox import tokens
from dripd.pipeline import lifecycle, variants
from dripd.pipeline.app import App
from dripd.plan import ratelimit, schedule, stages
from dripd.store import (
    contacts,
    enrollments,
    events,
    inbox,
    listing,
    membership,
    oauth_tokens,
    outbox,
    reps,
)
from dripd.store import digests as store_digests


@dataclass(frozen=True, slots=True, kw_only=True)
class Scheduled:
    """One thing that will happen to a contact."""

    at: datetime
    local: datetime
    email: str
    name: str
    campaign: str
    step: str
    kind: str
    occurrence: int
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "local": self.local.isoformat(),
            "contact": self.email,
            "name": self.name,
            "campaign": self.campaign,
            "step": self.step,
            "kind": self.kind,
            "occurrence": self.occurrence,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    email: str
    campaign: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"contact": self.email, "campaign": self.campaign, "reason": self.reason}


SCHEDULE_PAGE = 1000  # enrollments read from the due index per query


def upcoming(
    app: App, conn: sa.Connection, days: int, email: str | None = None
) -> Iterator[Scheduled]:
    """Everything due in the next `days` days (and overdue now), in time order, as it is found.

    Reads the due index (`next_due_at`) up to the window's end a page at a
    time: an enrollment due after the window has nothing in it (a window or
    a pause only delays a step past its `next_due_at`), so the cost follows
    what is due, not how many contacts there are. For the same reason no
    later enrollment can bring an item earlier than the last `next_due_at`
    read: items up to it are yielded then, and only later ones held back.
    Items at the same instant come in the due index's order.
    """
    return _in_time(app, conn, days, email, _Projections.of, json=False)


def upcoming_json(
    app: App, conn: sa.Connection, days: int, email: str | None = None
) -> Iterator[str]:
    """`upcoming`'s items as `listing.encode` writes their JSON, without building them.

    For `schedule --json`: a projection's items are spliced from its shared
    parts and each contact's email and name, encoded once per enrollment.
    """
    for item in _in_time(app, conn, days, email, _Projections.json_texts, json=True):
        yield item.text


_T = TypeVar("_T", bound="_Timed")


def _in_time(
    app: App,
    conn: sa.Connection,
    days: int,
    email: str | None,
    items_of: Callable[[_Projections, enrollments.Due], list[_T]],
    *,
    json: bool,
) -> Iterator[_T]:
    """`upcoming`'s walk, with the items each due enrollment gives (`items_of`).

    `json`: the projections keep each item's JSON parts (`json_texts` reads them).
    """
    now = app.clock.now()
    until = now + timedelta(days=days)
    window = Window(now=now, until=until, max_late=app.config.max_late)
    projections = _Projections(app, reps.rep_pauses(conn), window, json=json)
    with _Held[_T]() as held:
        for page in _due_pages(conn, until, email):
            for due in page:
                for item in items_of(projections, due):
                    held.push(item)
            yield from held.pop_until(page[-1].next_due_at)
        yield from held.pop_until(None)


class _Timed(Protocol):
    @property
    def at(self) -> datetime: ...


class _Text(NamedTuple):
    """An item of `upcoming_json`: its time and its JSON."""

    at: datetime
    text: str


HELD_IN_MEMORY = 50_000  # items held back in memory (~40 MB); past it, sorted runs on disk
SPILL_CHUNK = 1_000  # items a run writes and reads at a time


class _Held(Generic[_T]):
    """The items found but later than what may be yielded yet, in (time, found) order.

    A heap in memory up to HELD_IN_MEMORY items; past it, the heap is written
    to a temporary file as a sorted run, and the runs are merged with the
    heap as they are taken: a window that holds every contact (an import
    enrolls them all at once) costs disk, not memory.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, _T]] = []
        self._found = itertools.count()
        self._files: list[IO[bytes]] = []
        # The head of each run: (at, found, item, the rest of the run).
        self._heads: list[tuple[datetime, int, _T, Iterator[tuple[datetime, int, _T]]]] = []

    def __enter__(self) -> _Held[_T]:
        return self

    def __exit__(self, *exc: object) -> None:
        for file in self._files:
            file.close()

    def push(self, item: _T) -> None:
        heapq.heappush(self._heap, (item.at, next(self._found), item))
        if len(self._heap) >= HELD_IN_MEMORY:
            self._spill()

    def pop_until(self, boundary: datetime | None) -> Iterator[_T]:
        """The items up to `boundary` (None: all), earliest first, taken out."""
        heap, heads = self._heap, self._heads
        while heap or heads:
            if heads and (not heap or heads[0][:2] < heap[0][:2]):
                at, _, item, rest = heads[0]
                if boundary is not None and at > boundary:
                    return
                following = next(rest, None)
                if following is None:
                    heapq.heappop(heads)
                else:
                    heapq.heapreplace(heads, (*following, rest))
            else:
                at, _, item = heap[0]
                if boundary is not None and at > boundary:
                    return
                heapq.heappop(heap)
            yield item

    def _spill(self) -> None:
        run = sorted(self._heap)
        self._heap = []
        file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by __exit__)
        self._files.append(file)
        for start in range(0, len(run), SPILL_CHUNK):
            pickle.dump(run[start : start + SPILL_CHUNK], file, pickle.HIGHEST_PROTOCOL)
        file.seek(0)
        rest = _read_run(file)
        first = next(rest)
        heapq.heappush(self._heads, (*first, rest))


_Entry = tuple[datetime, int, Any]  # (at, found, item) of a run, whatever _Held holds


def _read_run(file: IO[bytes]) -> Iterator[_Entry]:
    """A run written by `_Held._spill`, a chunk at a time."""
    while True:
        try:
            chunk: list[_Entry] = pickle.load(file)
        except EOFError:
            return
        yield from chunk


def _due_pages(
    conn: sa.Connection, until: datetime, email: str | None
) -> Iterator[list[enrollments.Due]]:
    contact_id = None
    if email:
        contact = contacts.contact_by_email(conn, email)
        if contact is None:
            return
        contact_id = contact.id
    after: tuple[datetime, int] | None = None
    while True:
        page = enrollments.due_page(conn, until, after, SCHEDULE_PAGE, contact_id)
        if page:
            yield page
        if len(page) < SCHEDULE_PAGE:
            return
        after = (page[-1].next_due_at, page[-1].id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """What `schedule` asks of every enrollment: its items from now until `until`."""

    now: datetime
    until: datetime
    max_late: timedelta


# One projected item without its contact: (at, local, step, kind, occurrence, note).
_Shape = tuple[datetime, datetime, str, str, int, str]
_Item = tuple[_Shape, tuple[str, str]]  # with its JSON parts (_json_parts; unused: ("", ""))
PROJECTIONS_KEPT = 10_000  # projections remembered for enrollments alike (then forgotten)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Timing:
    """A campaign at one progress: worked out once for its enrollments (a progress text each)."""

    campaign: campaigns.Campaign
    progress: schedule.Progress
    fields: tuple[str, ...]  # the contact's fields its timing reads (schedule.fields_read)
    reads_enrollment_time: bool  # schedule.reads_enrollment_time


_UNKNOWN: Any = object()  # not in _Projections._timings yet


class _Projections:
    """The items of each enrollment in a window: `schedule.project`, once for enrollments alike.

    Enrollments alike are common: an import enrolls its contacts at one
    instant, and they stand at the same step. A projection depends on the
    campaign, the progress, the enrollment's time, the contact's zone and
    rep (holidays, pause) and the fields the campaign's timing reads: with
    all of them equal, it is the same, and only the contact's name and
    email differ. The enrollment's time counts only where the timing reads
    it (`schedule.reads_enrollment_time`): past the first step of a campaign
    of sequential steps, a book enrolled over months shares projections too
    (steps moved to a window's opening, appointments on the hour). What
    repeats between contacts (zones, progress) is worked out once too.
    """

    def __init__(
        self, app: App, pauses: Mapping[str, datetime], window: Window, *, json: bool
    ) -> None:
        self._app = app
        self._window = window
        self._parts = _json_parts if json else _no_parts
        self._contexts = lifecycle.Contexts(app, pauses)
        self._kept: dict[tuple[Any, ...], tuple[_Item, ...]] = {}
        self._alike: dict[tuple[Any, ...], tuple[_Item, ...]] = {}  # see _projected
        self._timings: dict[tuple[str, str], _Timing | None] = {}

    def of(self, enrollment: enrollments.Due) -> list[Scheduled]:
        """The enrollment's items in the window."""
        contact = enrollment.contact
        email, name, campaign_id = contact.email, contact.name, enrollment.campaign
        return [
            Scheduled(
                at=at,
                local=local,
                email=email,
                name=name,
                campaign=campaign_id,
                step=step,
                kind=kind,
                occurrence=occurrence,
                note=note,
            )
            for (at, local, step, kind, occurrence, note), _ in self._shapes(enrollment)
        ]

    def json_texts(self, enrollment: enrollments.Due) -> list[_Text]:
        """The enrollment's items in the window as their JSON (`upcoming_json`)."""
        contact = enrollment.contact
        middle = _contact_json(contact.email, contact.name)
        new = tuple.__new__  # a named tuple's own __new__ is a Python function: 3x the cost
        return [
            new(_Text, (shape[0], f"{head}{middle}{tail}"))
            for shape, (head, tail) in self._shapes(enrollment)
        ]

    def _shapes(self, enrollment: enrollments.Due) -> tuple[_Item, ...]:
        """The enrollment's items without its contact: projected, or shared with one alike."""
        timing = self._timings.get((enrollment.campaign, enrollment.progress), _UNKNOWN)
        if timing is _UNKNOWN:
            timing = self._timing(enrollment.campaign, enrollment.progress)
        if timing is None:  # its campaign file is gone
            return ()
        contact = enrollment.contact
        values = tuple([contact.value(name) for name in timing.fields])
        key = (
            enrollment.campaign,
            enrollment.progress,
            # None: shared with enrollments alike enrolled at other times. As
            # stored: one format, so equal texts are equal instants.
            enrollment.enrolled_stored if timing.reads_enrollment_time else None,
            contact.timezone,
            contact.owner,
            *values,
        )
        shapes = self._kept.get(key)
        if shapes is None:
            shapes = self._projected(timing, enrollment, values)
            if len(self._kept) >= PROJECTIONS_KEPT:
                self._kept.clear()
            self._kept[key] = shapes
        return shapes

    def _projected(
        self, timing: _Timing, enrollment: enrollments.Due, values: tuple[str | None, ...]
    ) -> tuple[_Item, ...]:
        """The items of an enrollment no projection kept fits: projected, or one alike's.

        Alike: at the same step with the same contact's part of the key, and
        a last step's time that changes nothing (`schedule.reads_last_due`):
        on a book spread in time most progress texts differ by that time only.
        """
        contact = enrollment.contact
        # The timing reads these fields only (schedule.Context.fields).
        fields = {n: v for n, v in zip(timing.fields, values, strict=True) if v is not None}
        ctx = self._contexts.timed(contact, timing.campaign, enrollment.enrolled_at, fields)
        alike: tuple[Any, ...] | None = None
        if not schedule.reads_last_due(timing.campaign.plans, timing.progress, ctx):
            alike = (timing.campaign.id, timing.progress.done, contact.timezone, contact.owner)
            alike += values
            shapes = self._alike.get(alike)
            if shapes is not None:
                return shapes
        parts, campaign_id = self._parts, timing.campaign.id
        shapes = tuple((shape, parts(shape, campaign_id)) for shape in self._project(timing, ctx))
        if alike is not None:
            if len(self._alike) >= PROJECTIONS_KEPT:
                self._alike.clear()
            self._alike[alike] = shapes
        return shapes

    def _timing(self, campaign_id: str, progress_text: str) -> _Timing | None:
        """What the projections of enrollments at this progress of this campaign read."""
        if len(self._timings) >= PROJECTIONS_KEPT:
            self._timings.clear()
        campaign = self._app.catalog.campaigns.get(campaign_id)
        timing = None
        if campaign is not None:
            progress = schedule.Progress.from_text(progress_text)
            timing = _Timing(
                campaign=campaign,
                progress=progress,
                fields=schedule.fields_read(campaign.plans),
                reads_enrollment_time=schedule.reads_enrollment_time(campaign.plans, progress),
            )
        self._timings[campaign_id, progress_text] = timing
        return timing

    def _project(self, timing: _Timing, ctx: schedule.Context) -> tuple[_Shape, ...]:
        window, campaign = self._window, timing.campaign
        return tuple(
            (
                due.due_at,
                due.due_at.astimezone(ctx.tz),
                due.step_id,
                campaign.step(due.step_id).kind,
                due.occurrence,
                _note(due, window.now, window.max_late),
            )
            for due in schedule.project(
                campaign.plans, timing.progress, ctx, until=window.until, stop_early=True
            )
        )


def _json_parts(shape: _Shape, campaign: str) -> tuple[str, str]:
    """An item's JSON before its contact and after its name (`Scheduled.to_json`'s order)."""
    at, local, step, kind, occurrence, note = shape
    text = listing.encode_text  # the encoder's own call for a str, without its dispatch
    head = f'{{"at": {text(at.isoformat())}, "local": {text(local.isoformat())}, "contact": '
    tail = (
        f', "campaign": {text(campaign)}, "step": {text(step)}, "kind": {text(kind)},'
        f' "occurrence": {int.__repr__(occurrence)}, "note": {text(note)}}}'
    )
    return head, tail


def _no_parts(shape: _Shape, campaign: str) -> tuple[str, str]:
    """What `_Projections` keeps of an item's JSON where none is written (`upcoming`)."""
    return _NO_PARTS


_NO_PARTS = ("", "")


def _contact_json(email: str, name: str) -> str:
    """What an item's JSON holds between its `_json_parts`."""
    text = listing.encode_text
    return f'{text(email)}, "name": {text(name)}'


def waiting(app: App, conn: sa.Connection, email: str | None = None) -> Iterator[Waiting]:
    """Active enrollments waiting on something (a field, a task, a gone campaign file)."""
    contact = contacts.contact_by_email(conn, email) if email else None
    if email and contact is None:
        return
    known = set(app.catalog.campaigns)
    for email_of, campaign, reason in enrollments.waiting_enrollments(
        conn, known, contact.id if contact else None
    ):
        gone = campaign not in known
        yield Waiting(
            email=email_of, campaign=campaign, reason="campaign file is gone" if gone else reason
        )


NEXT_HORIZON_DAYS = 400  # looked this far ahead (a yearly drip step fits)
NEXT_HEADS = 20  # enrollments (earliest next_due_at first) looked at for `next_up`


def next_up(app: App, conn: sa.Connection) -> Scheduled | None:
    """The first thing that will happen to any contact: a step due, or a queued email's try.

    Reads the head of the due index and of the queue, not every enrollment:
    `run --once` says it after each pass. A window or a pause can only
    delay a step past its enrollment's `next_due_at`, so the earliest of
    the first few heads' projections is the next (a later head could only
    come first behind a long delay of all before it).
    """
    now = app.clock.now()
    found: list[Scheduled] = []
    heads = enrollments.due_enrollments(conn, now + timedelta(days=NEXT_HORIZON_DAYS), NEXT_HEADS)
    people = contacts.contacts_by_ids(conn, {e.contact_id for e in heads})
    pauses = reps.rep_pauses(conn)
    for enrollment in heads:
        campaign = app.catalog.campaigns.get(enrollment.campaign)
        contact = people.get(enrollment.contact_id)
        if campaign is None or contact is None or enrollment.status != "active":
            continue
        ctx = lifecycle.context(app, contact, campaign, enrollment.enrolled_at, pauses)
        progress = schedule.Progress.from_text(enrollment.progress)
        until = now + timedelta(days=NEXT_HORIZON_DAYS)
        for due in schedule.project(campaign.plans, progress, ctx, until=until)[:1]:
            kind = campaign.step(due.step_id).kind
            found.append(
                _scheduled(due, contact, kind, enrollment.campaign, ctx, now, app.config.max_late)
            )
    if (row := outbox.next_queued(conn)) is not None:
        at = max(row.next_attempt_at, now)
        found.append(
            Scheduled(
                at=at,
                local=at.astimezone(ZoneInfo(row.timezone)),
                email=row.recipient,
                name="",
                campaign=row.campaign or "",
                step=row.step or "",
                kind="email",
                occurrence=row.occurrence,
                note=row.last_error or ("due now" if row.next_attempt_at <= now else ""),
            )
        )
    return min(found, key=lambda item: (item.at, item.email), default=None)


def _scheduled(
    due: schedule.Due,
    contact: contacts.Contact,
    kind: str,
    campaign: str,
    ctx: schedule.Context,
    now: datetime,
    max_late: timedelta,
) -> Scheduled:
    return Scheduled(
        at=due.due_at,
        local=due.due_at.astimezone(ctx.tz),
        email=contact.email,
        name=contact.name,
        campaign=campaign,
        step=due.step_id,
        kind=kind,
        occurrence=due.occurrence,
        note=_note(due, now, max_late),
    )


def _note(due: schedule.Due, now: datetime, max_late: timedelta) -> str:
    # Judged at the moment it will run: a step held past its anchor (a pause,
    # a window) is shown as what it will be, skipped.
    stale = schedule.is_stale(due, max(now, due.due_at), max_late=max_late)
    if stale:
        return f"will be skipped: {stale}"
    if due.due_at < now:
        return "due now"
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStats:
    campaign: str
    step: str
    kind: str
    sent: int
    replied: int
    auto_replied: int
    bounced: int
    done: int

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.sent if self.sent else None

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "step": self.step,
            "kind": self.kind,
            "sent": self.sent,
            "replied": self.replied,
            "auto_replied": self.auto_replied,
            "bounced": self.bounced,
            "done": self.done,
            "reply_rate": self.reply_rate,
        }


def _when_text(at: datetime | None) -> str | None:
    """A time as `status --json` has always written it: str() (a space, not a T)."""
    return str(at) if at is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mailbox:
    """A rep's mailbox in `status`: sent, waiting, failed, last send, and why it may be held."""

    rep: str
    sent: int
    waiting: int
    failed: int
    last_sent_at: datetime | None
    inbox_checked_at: datetime | None
    replies: int
    last_digest_at: datetime | None
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "rep": self.rep,
            "sent": self.sent,
            "waiting": self.waiting,
            "failed": self.failed,
            "last_sent_at": _when_text(self.last_sent_at),
            "inbox_checked_at": _when_text(self.inbox_checked_at),
            "replies": self.replies,
            "last_digest_at": _when_text(self.last_digest_at),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """The daemon's health from the database: is it running, what waits, what needs a look."""

    instances: tuple[membership.Instance, ...]  # of the last week, newest first
    last_sent_at: datetime | None
    queued: int
    ready: int  # queued and due now
    failed_emails: int
    held_steps: int
    unreadable_messages: int
    campaign_mismatch: bool
    sign_ins_needed: int
    attention: tuple[str, ...]  # the first ATTENTION_SHOWN problems, one line each

    def to_json(self) -> dict[str, Any]:
        return {
            "instances": [i.to_json() for i in self.instances],
            "last_sent_at": _when_text(self.last_sent_at),
            "queued": self.queued,
            "ready": self.ready,
            "failed_emails": self.failed_emails,
            "held_steps": self.held_steps,
            "unreadable_messages": self.unreadable_messages,
            "campaign_mismatch": self.campaign_mismatch,
            "sign_ins_needed": self.sign_ins_needed,
            "attention": list(self.attention),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """`dripd status`: contacts per stage and status, per-step results, touches, backlog."""

    stages: Mapping[str, int]  # every stage, in stages.STAGES order
    statuses: Mapping[str, int]
    campaigns: Mapping[str, Mapping[str, int]]  # campaign → enrollments per status
    steps: tuple[StepStats, ...]
    variants: tuple[variants.StepVariants, ...]
    touches: int
    mailboxes: tuple[Mailbox, ...]
    health: Health
    due_now: int  # counted up to DUE_NOW_CAP
    campaigns_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": dict(self.stages),
            "statuses": dict(self.statuses),
            "campaigns": {name: dict(counts) for name, counts in self.campaigns.items()},
            "steps": [s.to_json() for s in self.steps],
            "variants": [v.to_json() for v in self.variants],
            "touches": self.touches,
            "mailboxes": [m.to_json() for m in self.mailboxes],
            "health": self.health.to_json(),
            "due_now": self.due_now,
            "campaigns_version": self.campaigns_version,
        }


DUE_NOW_CAP = 10_000  # `status` counts what is due up to this many


def status(app: App, conn: sa.Connection) -> Status:
    """The pipeline: contacts per stage and status, per-step results, touches, backlog."""
    counts = events.step_counts(conn)
    steps = tuple(
        StepStats(
            campaign=campaign.id,
            step=step.id,
            kind=step.kind,
            sent=counts.get((campaign.id, step.id, "email_sent"), 0),
            replied=counts.get((campaign.id, step.id, "replied"), 0),
            auto_replied=sum(
                counts.get((campaign.id, step.id, kind), 0)
                for kind in ("auto_reply", "out_of_office")
            ),
            bounced=counts.get((campaign.id, step.id, "bounced"), 0),
            done=counts.get((campaign.id, step.id, "task_done"), 0),
        )
        for campaign in app.catalog.ordered()
        for step in campaign.steps
    )
    enrolled = enrollments.enrollment_counts(conn)
    counted = contacts.contact_counts(conn)
    return Status(
        stages={stage: counted.stages.get(stage, 0) for stage in stages.STAGES},
        statuses=counted.statuses,
        campaigns={
            c: {s: enrolled.get((c, s), 0) for s in ("active", "completed", "stopped")}
            for c in (campaign.id for campaign in app.catalog.ordered())
        },
        steps=steps,
        variants=tuple(variants.stats(conn)),
        touches=counted.touches,
        mailboxes=tuple(_mailboxes(app, conn)),
        health=health(app, conn),
        due_now=enrollments.due_count(conn, app.clock.now(), DUE_NOW_CAP),
        campaigns_version=app.catalog.version,
    )


def _mailboxes(app: App, conn: sa.Connection) -> list[Mailbox]:
    """Each rep's mailbox: sent, waiting, failed, last send, and why it may be held."""
    stats = outbox.mailbox_stats(conn)
    inboxes = inbox.inbox_stats(conn)
    digests = store_digests.last_digests(conn)
    pauses = reps.rep_pauses(conn)
    stuck = outbox.stuck(conn, app.clock.now())
    result = []
    for rep_id in sorted(app.config.rep_ids() | set(stats)):
        entry = stats.get(rep_id, {})
        rest, reason = outbox.mailbox_pause(conn, rep_id)
        configured = rep_id in app.config.rep_ids() and app.config.rep(rep_id).smtp is not None
        notes = [] if configured else ["no [reps.smtp]: its emails wait"]
        if rest is not None and rest > app.clock.now():
            notes.append(f"resting until {rest:%Y-%m-%d %H:%M} UTC: {reason}")
        if rep_id in pauses and pauses[rep_id] > app.clock.now():
            notes.append(f"paused until {pauses[rep_id]:%Y-%m-%d %H:%M} UTC")
        if configured and entry.get("queued", 0):
            notes += _limit_note(app, conn, rep_id)
        notes += _stuck_notes(app, conn, rep_id, stuck.get(rep_id))
        result.append(Mailbox(
            rep=rep_id,
            sent=entry.get("sent", 0),
            waiting=entry.get("queued", 0) + entry.get("sending", 0),
            failed=entry.get("failed", 0),
            last_sent_at=entry.get("last_sent_at"),
            inbox_checked_at=inboxes.get(rep_id, {}).get("checked_at"),
            replies=inboxes.get(rep_id, {}).get("reply", 0),
            last_digest_at=digests.get(rep_id),
            notes=tuple(notes),
        ))  # fmt: skip
    return result


def _limit_note(app: App, conn: sa.Connection, rep_id: str) -> list[str]:
    """Why a mailbox with emails waiting sends none now: its limits (from what it sent)."""
    smtp = app.config.rep(rep_id).smtp
    assert smtp is not None
    now = app.clock.now()
    limit = ratelimit.RateLimit(per_hour=smtp.max_per_hour, per_day=smtp.max_per_day)
    limit.load(outbox.sent_since(conn, rep_id, now - ratelimit.DAY))
    holding = limit.holding(now)
    if holding is None:
        return []
    return [f"at its limit, {holding}: the next email at {limit.next_free(now):%H:%M} UTC"]


def _stuck_notes(
    app: App, conn: sa.Connection, rep_id: str, stuck: outbox.Stuck | None
) -> list[str]:
    """What has kept a mailbox's emails from going, or its copies from being saved."""
    now = app.clock.now()
    notes = []
    if stuck is not None:
        since = f"{stuck.since:%Y-%m-%d %H:%M} UTC"
        notes.append(f"{stuck.count} waiting since {since}; last try: {stuck.error}")
    imap = app.config.rep(rep_id).imap if rep_id in app.config.rep_ids() else None
    if imap is not None and imap.uses_sent_folder and imap.save_copy:
        late = outbox.uncopied_count(conn, rep_id, now - outbox.STUCK)
        if late:
            folder = repr(imap.sent_folder) if imap.sent_folder else "the Sent folder"
            notes.append(f"{late} sent not yet copied to {folder} (the log says why)")
    return notes


ATTENTION_SHOWN = 5  # failures listed by name; the rest are counted


def health(app: App, conn: sa.Connection) -> Health:
    """The daemon's health from the database: is it running, what waits, what needs a look."""
    now = app.clock.now()
    last_sent = outbox.last_sent_at(conn)
    queued, ready = outbox.queued_counts(conn, now)
    failed = outbox.failed_emails(conn)
    # A held step (a missing attachment, a template the contact can't fill) is
    # retried hourly, so it has a next due time beside its reason.
    held = enrollments.held_steps(conn)
    unreadable = inbox.unreadable(conn)
    fleet = membership.listed(conn)
    differ = mismatch(fleet)
    sign_ins = sign_ins_needed(app, conn)
    problems = (
        sign_ins
        + differ
        + [f"{line} (pid {i.pid} on {i.host})" for i in fleet for line in i.troubles]
        + [f"email to {r.recipient} failed: {r.last_error}" for r in failed]
        + [f"{r.email} is held in {r.campaign}: {r.waiting}" for r in held]
        + [f"a message from {r.sender or '?'} to {r.rep}: {r.reasons}" for r in unreadable]
    )
    return Health(
        instances=tuple(fleet),
        last_sent_at=last_sent,
        queued=queued,
        ready=ready,
        failed_emails=len(failed),
        held_steps=len(held),
        unreadable_messages=len(unreadable),
        campaign_mismatch=bool(differ),
        sign_ins_needed=len(sign_ins),
        attention=tuple(problems[:ATTENTION_SHOWN]),
    )


def sign_ins_needed(app: App, conn: sa.Connection) -> list[str]:
    """A line for each rep whose OAuth2 sign-in is missing or stopped working."""
    stored = oauth_tokens.read_all(conn)
    found = (tokens.problem(rep, stored.get(rep.id)) for rep in app.config.reps)
    return [f"{problem}; its emails wait" for problem in found if problem]


def mismatch(fleet: list[membership.Instance]) -> list[str]:
    """A line if the live instances run different campaign files (or configs)."""
    live = [i for i in fleet if i.alive]
    versions = {i.campaigns for i in live}
    if len(versions) < 2:
        return []
    listed = ", ".join(f"{i.host} pid {i.pid}: {i.campaigns}" for i in live)
    return [
        f"instances run different campaigns ({listed}): give every host the same "
        "campaigns folder and config"
    ]
