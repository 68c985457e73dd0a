"""Turning due steps into work: emails into the outbox, calls and cards into rep tasks.

`advance_due` takes the enrollments whose time has come and, in one
transaction, renders what is due, queues it, records it and moves each
enrollment on. A step that cannot go out yet (outside its window, a missing
attachment, a template the contact's fields can't fill) is held with a
reason and tried again later; a step that became stale is skipped, never
done late.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dripd import campaigns, compose, mime, outbox, pipeline, schedule, templates
from dripd import windows as windows_mod
from dripd.app import App
from dripd.store import queries, schema
from dripd.store.queries import Contact, Enrollment

BATCH = 500  # enrollments advanced per transaction
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Hold:
    reason: str
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pass:
    """One transaction's work: what it shares across enrollments, and what it produced."""

    app: App
    conn: sa.Connection
    now: datetime
    pauses: dict[str, datetime]
    install_id: str
    result: Result = field(default_factory=Result)
    queued: list[dict[str, Any]] = field(default_factory=list)  # outbox rows, inserted at the end


@dataclass(frozen=True, slots=True, kw_only=True)
class _Target:
    """One enrollment being advanced, with its contact and campaign."""

    enrollment: Enrollment
    contact: Contact
    campaign: campaigns.Campaign


def advance_due(app: App, now: datetime, *, limit: int = BATCH) -> Result:
    """Run every step due at `now` of up to `limit` enrollments (one transaction)."""
    with app.engine.begin() as conn:
        due = queries.due_enrollments(conn, now, limit)
        if not due:
            return Result()
        people = queries.contacts_by_ids(conn, {e.contact_id for e in due})
        run = _Pass(
            app=app,
            conn=conn,
            now=now,
            pauses=queries.rep_pauses(conn),
            install_id=outbox.install_id(conn),
        )
        for enrollment in due:
            _advance(run, enrollment, people[enrollment.contact_id])
        outbox.insert_many(conn, run.queued)
        run.result.enrollments = len(due)
        return run.result


def _advance(run: _Pass, enrollment: Enrollment, contact: Contact) -> None:
    campaign = run.app.catalog.campaigns.get(enrollment.campaign)
    if campaign is None:
        queries.update_enrollment(
            run.conn, enrollment.id, {"next_due_at": None, "waiting": "the campaign file is gone"}
        )
        return
    if contact.status != "active":
        reason = f"contact {contact.status}"
        pipeline.end(run.conn, enrollment, run.now, status="stopped", reason=reason)
        return
    if contact.paused_until is not None and contact.paused_until > run.now:
        _wait_for_return(run, enrollment, contact.paused_until)
        return
    target = _Target(enrollment=enrollment, contact=contact, campaign=campaign)
    progress = schedule.Progress.from_json(enrollment.progress)
    ctx = pipeline.context(run.app, contact, campaign, enrollment.enrolled_at, run.pauses)
    for _ in range(MAX_ITEMS):
        due = _first_ready(campaign, progress, ctx, run.now)
        if due is None:
            break
        hold = _execute(run, target, due)
        if hold is not None:
            _hold(run, target, progress, due, hold)
            return
        progress = _after(progress, campaign, due)
    _settle(run, target, progress, ctx)


def _wait_for_return(run: _Pass, enrollment: Enrollment, until: datetime) -> None:
    """The contact is out of office: nothing is due before they are back."""
    waiting = f"out of office until {until:%Y-%m-%d %H:%M} UTC"
    queries.update_enrollment(run.conn, enrollment.id, {"next_due_at": until, "waiting": waiting})


def _first_ready(
    campaign: campaigns.Campaign, progress: schedule.Progress, ctx: schedule.Context, now: datetime
) -> schedule.Due | None:
    ready = [d for d in schedule.pending(campaign.plans, progress, ctx).due if d.due_at <= now]
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
    run: _Pass, target: _Target, progress: schedule.Progress, ctx: schedule.Context
) -> None:
    pending = schedule.pending(target.campaign.plans, progress, ctx)
    if pending.complete and not progress.task_open:
        pipeline.complete(run.app, run.conn, target.enrollment, target.campaign, run.now)
        run.result.completed += 1
        return
    waiting = "; ".join(f"{w.step_id}: {w.reason}" for w in pending.waiting) or None
    if progress.task_open and not pending.due:
        waiting = waiting or schedule.TASK_WAIT_REASON
    changes = {"progress": progress.to_json(), "next_due_at": pending.next_due_at}
    queries.update_enrollment(run.conn, target.enrollment.id, {**changes, "waiting": waiting})


def _hold(
    run: _Pass, target: _Target, progress: schedule.Progress, due: schedule.Due, hold: _Hold
) -> None:
    reason = f"{due.step_id}: {hold.reason}"
    if target.enrollment.waiting != reason:  # say it once, not at every retry
        _event(run, target, "held", due.step_id, hold.reason)
    changes = {"progress": progress.to_json(), "next_due_at": hold.until, "waiting": reason}
    queries.update_enrollment(run.conn, target.enrollment.id, changes)
    run.result.held += 1


def _event(run: _Pass, target: _Target, kind: str, step: str, detail: str) -> None:
    queries.add_event(
        run.conn,
        contact_id=target.contact.id,
        at=run.now,
        kind=kind,
        campaign=target.campaign.id,
        step=step,
        detail=detail,
        cause=detail,
    )


def _execute(run: _Pass, target: _Target, due: schedule.Due) -> _Hold | None:
    stale = schedule.is_stale(due, run.now, max_late=run.app.config.max_late)
    if stale:
        _event(run, target, "skipped", due.step_id, stale)
        run.result.skipped += 1
        return None
    step = target.campaign.step(due.step_id)
    if step.is_email:
        return _queue_email(run, target, step, due)
    _create_task(run, target, step, due)
    return None


def _queue_email(
    run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due
) -> _Hold | None:
    app, contact = run.app, target.contact
    tz = app.contact_tz(contact.timezone, contact.owner)
    window = target.campaign.send_window or pipeline.default_window(app)
    if not windows_mod.is_open(run.now, window, tz, app.config.holidays):
        opens = windows_mod.next_open(run.now, window, tz, app.config.holidays)
        return _Hold(reason="outside the sending window", until=opens)
    try:
        message, email = _render(run, target, step, due)
    except (templates.RenderError, mime.MissingAttachment, ValueError) as exc:
        return _Hold(reason=str(exc), until=run.now + HOLD_RETRY)
    run.queued.append(_outbox_row(run, target, step, due, email, message) | {
        "timezone": str(tz),
        "send_window": str(window),
    })  # fmt: skip
    run.result.queued += 1
    return None


def _render(
    run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due
) -> tuple[mime.Built, compose.Email]:
    enrollment, campaign = target.enrollment, target.campaign
    email = compose.render_email(run.app, target.contact, campaign, step, due.occurrence)
    earlier = _thread_of(run, enrollment.id) if campaign.thread else []
    thread = (
        mime.Thread(subject=earlier[0][1], references=tuple(m for m, _ in earlier))
        if earlier
        else None
    )
    msgid = mime.message_id(
        enrollment_id=enrollment.id,
        step_id=step.id,
        occurrence=due.occurrence,
        install_id=run.install_id,
        domain=mime.domain_of(email.sender.email),
    )
    message = mime.build(
        email, msgid=msgid, date=run.now, thread=thread, unsubscribe=email.sender.email
    )
    return message, email


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
        "occurrence": due.occurrence,
        "rep": email.sender.id,
        "recipient": email.to,
        "subject": message["Subject"],
        "message": message.as_bytes(),
        "status": "queued",
        "priority": 1 if first else 0,  # follow-ups go first under a rate limit
        "due_at": due.due_at,
        "not_after": due.deadline,
        "attempts": 0,
        "next_attempt_at": run.now,
        "created_at": run.now,
    }


_TASK_EXISTS = sa.select(schema.tasks.c.id).where(
    schema.tasks.c.enrollment_id == sa.bindparam("eid"),
    schema.tasks.c.step == sa.bindparam("step"),
    schema.tasks.c.occurrence == sa.bindparam("occurrence"),
)


def _create_task(run: _Pass, target: _Target, step: campaigns.Step, due: schedule.Due) -> None:
    contact, campaign = target.contact, target.campaign
    key = {"eid": target.enrollment.id, "step": step.id, "occurrence": due.occurrence}
    if run.conn.execute(_TASK_EXISTS, key).first() is not None:
        return
    try:
        note = compose.render_note(run.app, contact, campaign, step, due.occurrence)
    except templates.RenderError as exc:
        note = f"(the note could not be filled in: {exc})"
    pipeline.create_task(
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
