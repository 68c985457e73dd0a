"""Turning due steps into work: emails into the outbox, calls and cards into rep tasks.

`advance_due` takes the enrollments whose time has come and, in one
transaction, renders what is due, queues it, records it and moves each
enrollment on. A step that cannot go out yet (outside its window, a missing
attachment, a template the contact's fields can't fill) is held with a
reason and tried again later; a step that became stale is skipped, never
done late.

`advance` does the same for the daemon's event loop: it renders the emails
first, one at a time with the loop running in between (the senders' SMTP
replies), and keeps the transaction for the bookkeeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dripd.files import campaigns
from dripd.mail import mime
from dripd.pipeline import compose, lifecycle
from dripd.pipeline.app import App
from dripd.plan import decide, schedule, templates
from dripd.plan import windows as windows_mod
from dripd.store import contacts, events, outbox, reps, retry
from dripd.store import enrollments as store_enrollments
from dripd.store import tasks as store_tasks
from dripd.store.contacts import Contact
from dripd.store.enrollments import Enrollment

BATCH = 500  # enrollments advanced per transaction
# Turns of the event loop between two emails `advance` renders. A sender's
# SMTP reply takes two turns to reach its task (the read, then the wake-up):
# rendering at most every fourth turn keeps most replies from waiting behind
# a render (bench send: 10% faster than one email per turn).
TURNS_PER_RENDER = 4
HOLD_RETRY = timedelta(hours=1)  # when a held step (template, attachment) is tried again
MAX_ITEMS = 50  # steps one enrollment may run in one pass (catch-up after downtime)


@dataclass(slots=True)
class Result:
    queued: int = 0
    tasks: int = 0
    skipped: int = 0
    held: int = 0
    completed: int = 0
    enrollments: int = 0
    senders: set[str] = field(default_factory=set)  # reps whose mailboxes got emails queued


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hold:
    reason: str
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """An enrollment's first email of a pass, worked out ahead of the transaction.

    With the state it was worked out from: `advance_due` uses it only if the
    enrollment, the contact and everything else are unchanged.
    """

    enrollment: Enrollment
    contact: Contact
    campaign: campaigns.Campaign
    pauses: dict[str, datetime]
    now: datetime
    install_id: str
    progress: schedule.Progress
    ctx: schedule.Context
    pending: schedule.Pending  # before the email
    step: campaigns.Step
    occurrence: int
    earlier: list[tuple[str, str]]  # the thread: Message-ID and subject of earlier emails
    message: mime.Built
    email: compose.Email

    def fits(self, run: _Pass, enrollment: Enrollment, contact: Contact) -> bool:
        return (
            self.enrollment == enrollment
            and self.contact == contact
            and self.campaign is run.app.catalog.campaigns.get(enrollment.campaign)
            and self.pauses == run.pauses
            and self.now == run.now
            and self.install_id == run.install_id
        )


# By enrollment id.
Prerendered = dict[int, Rendered]


# An event's columns that some events leave out (NULL): every event of a
# pass is written with all of them, one statement for all.
_EVENT_OPTIONAL = ("campaign", "step", "cause", "message_id")


@dataclass(slots=True)
class _Writes:
    """A pass's enrollment changes and events, written together: at its end, or before a read.

    One executemany per statement (psycopg runs one in pipeline mode: a
    round trip for all) where each enrollment took two round trips with the
    event loop waiting (~0.6 ms an email on PostgreSQL). `flush` before
    anything in the pass reads what they change, or writes events otherwise
    (a contact's history keeps its order).
    """

    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    updated: set[int] = field(default_factory=set)

    def update(self, conn: sa.Connection, enrollment_id: int, changes: dict[str, Any]) -> None:
        if enrollment_id in self.updated:  # its earlier change first (update_enrollments)
            self.flush(conn)
        self.updated.add(enrollment_id)
        self.updates.append((enrollment_id, changes))

    def event(self, values: dict[str, Any]) -> None:
        self.events.append(dict.fromkeys(_EVENT_OPTIONAL) | values)

    def end(
        self, conn: sa.Connection, enrollment: Enrollment, now: datetime, status: str, reason: str
    ) -> None:
        """`lifecycle.end`, written with the others."""
        changes, event = lifecycle.ending(enrollment, now, status=status, reason=reason)
        self.update(conn, enrollment.id, changes)
        self.event(event)

    def flush(self, conn: sa.Connection) -> None:
        store_enrollments.update_enrollments(conn, self.updates)
        events.add_events(conn, self.events)
        self.updates.clear()
        self.events.clear()
        self.updated.clear()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pass:
    """One transaction's work: what it shares across enrollments, and what it produced."""

    app: App
    conn: sa.Connection
    now: datetime
    pauses: dict[str, datetime]
    install_id: str
    max_late: timedelta  # Config.max_late parses the setting at each call
    rendered: Prerendered = field(default_factory=dict)
    result: Result = field(default_factory=Result)
    queued: list[dict[str, Any]] = field(default_factory=list)  # outbox rows, inserted at the end
    writes: _Writes = field(default_factory=_Writes)  # enrollment changes and events


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """One enrollment being advanced, with its contact and campaign."""

    enrollment: Enrollment
    contact: Contact
    campaign: campaigns.Campaign
    ahead: Rendered | None = None  # prerender's work on this same state, if any


async def advance(app: App, now: datetime, *, limit: int = BATCH) -> Result:
    """`advance_due`, with its emails rendered beforehand, the event loop running in between.

    Rendering is most of the engine's time. Done inside the transaction it
    blocks the loop for the whole chunk, while the SMTP replies wait and the
    server idles; done here it fills the time spent waiting for them.
    """
    rendered: Prerendered = {}
    for _ in prerender(app, now, limit, rendered):
        for _ in range(TURNS_PER_RENDER):
            await asyncio.sleep(0)
    return advance_due(app, now, limit=limit, rendered=rendered)


def advance_due(
    app: App, now: datetime, *, limit: int = BATCH, rendered: Prerendered | None = None
) -> Result:
    """Run every step due at `now` of up to `limit` enrollments (one transaction).

    `rendered`: emails `prerender` made for this call; one is used only if
    everything it was rendered from is unchanged, else the email is rendered here.
    Run again if a concurrent transaction (another instance) aborted it.
    """
    return retry.retrying(lambda: _advance_due(app, now, limit, rendered), "advance")


def _advance_due(app: App, now: datetime, limit: int, rendered: Prerendered | None) -> Result:
    with app.engine.begin() as conn:
        due = store_enrollments.due_enrollments(conn, now, limit, lock=True)
        if not due:
            return Result()
        people = contacts.contacts_by_ids(conn, {e.contact_id for e in due})
        run = _Pass(
            app=app,
            conn=conn,
            now=now,
            pauses=reps.rep_pauses(conn),
            install_id=outbox.install_id(conn),
            max_late=app.config.max_late,
            rendered=rendered if rendered is not None else {},
        )
        for enrollment in due:
            _advance(run, enrollment, people[enrollment.contact_id])
        run.writes.flush(conn)
        outbox.insert_many(conn, run.queued)
        run.result.senders.update(row["rep"] for row in run.queued)
        run.result.enrollments = len(due)
        return run.result


def _advance(run: _Pass, enrollment: Enrollment, contact: Contact) -> None:
    campaign = run.app.catalog.campaigns.get(enrollment.campaign)
    if campaign is None:
        gone = {"next_due_at": None, "waiting": "the campaign file is gone"}
        run.writes.update(run.conn, enrollment.id, gone)
        return
    gate = decide.decide(run.now, status=contact.status, away_until=contact.paused_until)
    if isinstance(gate, decide.Stop):
        run.writes.end(run.conn, enrollment, run.now, "stopped", gate.reason)
        return
    if isinstance(gate, decide.Wait):
        _wait_for_return(run, enrollment, gate.until)
        return
    ahead = run.rendered.get(enrollment.id)
    if ahead is not None and not ahead.fits(run, enrollment, contact):
        ahead = None
    target = _Target(enrollment=enrollment, contact=contact, campaign=campaign, ahead=ahead)
    if ahead is not None:  # what prerender worked out from this same state
        progress, ctx, pending = ahead.progress, ahead.ctx, ahead.pending
    else:
        progress = schedule.Progress.from_text(enrollment.progress)
        ctx = lifecycle.context(run.app, contact, campaign, enrollment.enrolled_at, run.pauses)
        pending = None
    for _ in range(MAX_ITEMS):
        pending = pending or schedule.pending(campaign.plans, progress, ctx)
        due = _first_ready(pending, run.now)
        if due is None:
            break
        hold = _execute(run, target, due)
        if hold is not None:
            _hold(run, target, progress, due, hold)
            return
        progress = _after(progress, campaign, due)
        pending = None
    _settle(run, target, progress, pending or schedule.pending(campaign.plans, progress, ctx))


def _wait_for_return(run: _Pass, enrollment: Enrollment, until: datetime) -> None:
    """The contact is out of office: nothing is due before they are back."""
    waiting = f"out of office until {until:%Y-%m-%d %H:%M} UTC"
    run.writes.update(run.conn, enrollment.id, {"next_due_at": until, "waiting": waiting})


def _first_ready(pending: schedule.Pending, now: datetime) -> schedule.Due | None:
    ready = [d for d in pending.due if d.due_at <= now]
    return min(ready, key=lambda d: (d.due_at, d.step_id)) if ready else None


def _after(
    progress: schedule.Progress, campaign: campaigns.Campaign, due: schedule.Due
) -> schedule.Progress:
    advanced = schedule.advance(progress, campaign.plans, due)
    step = campaign.step(due.step_id)
    if step.kind in campaigns.TASK_KINDS and step.plan.sequential:
        return dataclasses.replace(advanced, task_open=True, task_done_at=None)
    return advanced


def _settle(
    run: _Pass, target: _Target, progress: schedule.Progress, pending: schedule.Pending
) -> None:
    """Store where the enrollment stands after this pass (`pending`: what is left)."""
    if pending.complete and not progress.task_open:
        _complete(run, target)
        run.result.completed += 1
        return
    waiting = "; ".join(f"{w.step_id}: {w.reason}" for w in pending.waiting) or None
    if progress.task_open and not pending.due:
        waiting = waiting or schedule.TASK_WAIT_REASON
    changes = {"progress": progress.to_text(), "next_due_at": pending.next_due_at}
    run.writes.update(run.conn, target.enrollment.id, {**changes, "waiting": waiting})


def _complete(run: _Pass, target: _Target) -> None:
    """`lifecycle.complete`: with the pass's other writes, unless a next campaign follows."""
    if lifecycle.following(run.app, target.campaign) is not None:
        run.writes.flush(run.conn)  # enrolling reads the contact's enrollments
        lifecycle.complete(run.app, run.conn, target.enrollment, target.campaign, run.now)
        return
    run.writes.end(run.conn, target.enrollment, run.now, "completed", lifecycle.COMPLETED)


def _hold(
    run: _Pass, target: _Target, progress: schedule.Progress, due: schedule.Due, hold: _Hold
) -> None:
    reason = f"{due.step_id}: {hold.reason}"
    if target.enrollment.waiting != reason:  # say it once, not at every retry
        _event(run, target, "held", due.step_id, hold.reason)
    changes = {"progress": progress.to_text(), "next_due_at": hold.until, "waiting": reason}
    run.writes.update(run.conn, target.enrollment.id, changes)
    run.result.held += 1


def _event(run: _Pass, target: _Target, kind: str, step: str, detail: str) -> None:
    run.writes.event(
        {
            "contact_id": target.contact.id,
            "at": run.now,
            "kind": kind,
            "campaign": target.campaign.id,
            "step": step,
            "detail": detail,
            "cause": detail,
        }
    )


def _execute(run: _Pass, target: _Target, due: schedule.Due) -> _Hold | None:
    step = target.campaign.step(due.step_id)
    sending = _sending(run.app, target.contact, target.campaign) if step.is_email else None
    verdict = _decide(run.now, due, run.max_late, sending)
    if isinstance(verdict, decide.Skip):
        _event(run, target, "skipped", due.step_id, verdict.reason)
        run.result.skipped += 1
        return None
    if isinstance(verdict, decide.Wait):  # the window: the contact was asked about before
        return _Hold(reason=verdict.reason.value, until=verdict.until)
    if sending is not None:
        return _queue_email(run, target, step, due, sending)
    _create_task(run, target, step, due)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sending:
    """How one contact's emails go out: in their zone, inside the window, on whose holidays.

    The holidays are the owner's, also for a step sent `from` another rep (plan.decide).
    """

    tz: ZoneInfo
    window: windows_mod.Window
    holidays: Container[date]
    holidays_of: str | None


def _sending(app: App, contact: Contact, campaign: campaigns.Campaign) -> _Sending:
    return _Sending(
        tz=app.contact_tz(contact.timezone, contact.owner),
        window=campaign.send_window or lifecycle.default_window(app),
        holidays=app.config.holidays_for(contact.owner),
        holidays_of=contact.owner,
    )


def _decide(
    now: datetime, due: schedule.Due, max_late: timedelta, sending: _Sending | None
) -> decide.Decision:
    """The send decision on a due step: its staleness, and for an email its window."""
    if sending is None:  # a rep task: due dates, no window
        return decide.decide(
            now, planned_at=due.planned, deadline=due.deadline, anchor=due.anchor, max_late=max_late
        )
    return decide.decide(
        now,
        planned_at=due.planned,
        deadline=due.deadline,
        anchor=due.anchor,
        max_late=max_late,
        window=sending.window,
        tz=sending.tz,
        holidays=sending.holidays,
    )


def _queue_email(
    run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due, sending: _Sending
) -> _Hold | None:
    try:
        message, email = _render(run, target, step, due)
    except (templates.RenderError, mime.MissingAttachment, ValueError) as exc:
        return _Hold(reason=str(exc), until=run.now + HOLD_RETRY)
    run.queued.append(_outbox_row(run, target, step, due, email, message) | {
        "timezone": str(sending.tz),
        "send_window": _window_text(sending.window),
        "holidays_of": sending.holidays_of,
    })  # fmt: skip
    run.result.queued += 1
    return None


def _render(
    run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due
) -> tuple[mime.Built, compose.Email]:
    enrollment, campaign, ahead = target.enrollment, target.campaign, target.ahead
    earlier = _thread_of(run, enrollment.id) if campaign.thread else []
    if (
        ahead is not None
        and ahead.step is step
        and ahead.occurrence == due.occurrence
        and ahead.earlier == earlier
    ):
        return ahead.message, ahead.email
    key = _Key(enrollment_id=enrollment.id, occurrence=due.occurrence, earlier=earlier)
    return _compose(run.app, target.contact, campaign, step, key, run.now, run.install_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Key:
    """Which email of an enrollment, and the thread it continues."""

    enrollment_id: int
    occurrence: int
    earlier: list[tuple[str, str]]


def _compose(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    key: _Key,
    now: datetime,
    install_id: str,
) -> tuple[mime.Built, compose.Email]:
    """The message of one email step: a function of its arguments (and the attachment files)."""
    version, _ = campaigns.version_for(step, key.enrollment_id)
    email = compose.render_email(app, contact, campaign, version, key.occurrence)
    earlier = key.earlier
    thread = (
        mime.Thread(subject=earlier[0][1], references=tuple(m for m, _ in earlier))
        if earlier
        else None
    )
    msgid = mime.message_id(
        enrollment_id=key.enrollment_id,
        step_id=step.id,
        occurrence=key.occurrence,
        install_id=install_id,
        domain=mime.domain_of(email.sender.email),
    )
    message = mime.build(
        email, msgid=msgid, date=now, thread=thread, unsubscribe=email.sender.email
    )
    return message, email


# -- rendering ahead ----------------------------------------------------------


def prerender(app: App, now: datetime, limit: int, into: Prerendered) -> Iterator[None]:
    """Render the first email each enrollment `advance_due(app, now, limit)` takes will queue.

    Yields after each, so the caller can let the event loop run. Reads
    through a reader connection, closed before the first yield: no lock and
    no snapshot held in between. Only an optimisation: a step that would be
    held, skipped or is not an email is left to `advance_due`, and so is
    anything that changes before it runs.
    """
    with app.reader.connect() as conn:
        due = store_enrollments.due_enrollments(conn, now, limit, lock=True)
        if not due:
            return
        people = contacts.contacts_by_ids(conn, {e.contact_id for e in due})
        ahead = _Ahead(
            app=app,
            now=now,
            pauses=reps.rep_pauses(conn),
            install_id=outbox.install_id(conn),
            max_late=app.config.max_late,
            threads={
                e.id: outbox.thread_of(conn, e.id)
                for e in due
                if (c := app.catalog.campaigns.get(e.campaign)) is not None and c.thread
            },
        )
    for enrollment in due:
        contact = people.get(enrollment.contact_id)
        rendered = _render_ahead(ahead, enrollment, contact) if contact is not None else None
        if rendered is not None:
            into[enrollment.id] = rendered
            yield


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ahead:
    """What `prerender` reads once for all its enrollments."""

    app: App
    now: datetime
    pauses: dict[str, datetime]
    install_id: str
    max_late: timedelta
    threads: dict[int, list[tuple[str, str]]]  # earlier emails of threaded enrollments


def _render_ahead(ahead: _Ahead, enrollment: Enrollment, contact: Contact) -> Rendered | None:
    """What `_advance` would render first for this enrollment, if it is an email that goes."""
    app, now = ahead.app, ahead.now
    campaign = app.catalog.campaigns.get(enrollment.campaign)
    if campaign is None:
        return None
    gate = decide.decide(now, status=contact.status, away_until=contact.paused_until)
    if gate is not decide.GO:
        return None
    ctx = lifecycle.context(app, contact, campaign, enrollment.enrolled_at, ahead.pauses)
    progress = schedule.Progress.from_text(enrollment.progress)
    pending = schedule.pending(campaign.plans, progress, ctx)
    due = _first_ready(pending, now)
    if due is None:
        return None
    step = campaign.step(due.step_id)
    if not step.is_email:
        return None
    sending = _sending(app, contact, campaign)
    if _decide(now, due, ahead.max_late, sending) is not decide.GO:
        return None
    earlier = ahead.threads.get(enrollment.id, [])
    key = _Key(enrollment_id=enrollment.id, occurrence=due.occurrence, earlier=earlier)
    try:
        message, email = _compose(app, contact, campaign, step, key, now, ahead.install_id)
    except (templates.RenderError, mime.MissingAttachment, ValueError):
        return None  # advance_due renders it again and holds the step with the reason
    return Rendered(
        enrollment=enrollment,
        contact=contact,
        campaign=campaign,
        pauses=ahead.pauses,
        now=now,
        install_id=ahead.install_id,
        progress=progress,
        ctx=ctx,
        pending=pending,
        step=step,
        occurrence=due.occurrence,
        earlier=earlier,
        message=message,
        email=email,
    )


@functools.lru_cache(maxsize=64)
def _window_text(window: windows_mod.Window) -> str:
    """The window as the sender reads it back (formatting it was ~5 µs an email)."""
    return str(window)


def _thread_of(run: _Pass, enrollment_id: int) -> list[tuple[str, str]]:
    """Earlier emails of the enrollment: stored ones, then those queued in this pass."""
    stored = outbox.thread_of(run.conn, enrollment_id)
    queued = [
        (r["message_id"], r["subject"]) for r in run.queued if r["enrollment_id"] == enrollment_id
    ]
    return stored + queued


def _outbox_row(
    run: _Pass,
    target: _Target,
    step: campaigns.Step,
    due: schedule.Due,
    email: compose.Email,
    message: mime.Built,
) -> dict[str, Any]:
    campaign = target.campaign
    first = step.id == next((s.id for s in campaign.steps if s.is_email), None)
    return {
        "message_id": message["Message-ID"],
        "enrollment_id": target.enrollment.id,
        "contact_id": target.contact.id,
        "campaign": campaign.id,
        "step": step.id,
        "variant": campaigns.version_for(step, target.enrollment.id)[1],
        "occurrence": due.occurrence,
        "rep": email.sender.id,
        "recipient": email.to,
        "subject": message["Subject"],
        "message": message.as_bytes(),
        "status": "queued",
        "priority": 1 if first else 0,  # follow-ups go first under a rate limit
        "due_at": due.due_at,
        "planned_at": due.planned,
        "not_after": due.deadline,
        "attempts": 0,
        "next_attempt_at": run.now,
        "created_at": run.now,
    }


def _create_task(run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due) -> None:
    contact, campaign = target.contact, target.campaign
    run.writes.flush(run.conn)  # its event after the earlier ones
    if store_tasks.task_exists(run.conn, target.enrollment.id, step.id, due.occurrence):
        return
    try:
        note = compose.render_note(run.app, contact, campaign, step, due.occurrence)
    except templates.RenderError as exc:
        note = f"(the note could not be filled in: {exc})"
    lifecycle.create_task(
        run.conn,
        contact_id=contact.id,
        kind=step.kind,
        rep=contact.owner,
        due_at=due.due_at,
        note=note,
        now=run.now,
        enrollment_id=target.enrollment.id,
        campaign=campaign.id,
        step=step.id,
        occurrence=due.occurrence,
    )
    run.result.tasks += 1
