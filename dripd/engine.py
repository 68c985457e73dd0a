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
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from dripd import campaigns, compose, mime, outbox, pipeline, schedule, templates
from dripd import windows as windows_mod
from dripd.app import App
from dripd.store import queries, schema
from dripd.store.queries import Contact, Enrollment

logger = logging.getLogger("dripd.engine")

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
    """What one pass shares across enrollments."""

    now: datetime
    pauses: dict[str, datetime]
    install_id: str
    max_late: timedelta
    result: Result = field(default_factory=Result)
    queued: list[dict[str, Any]] = field(default_factory=list)  # outbox rows, inserted at the end


def advance_due(app: App, now: datetime, *, limit: int = BATCH) -> Result:
    """Run every step due at `now` of up to `limit` enrollments (one transaction)."""
    with app.engine.begin() as conn:
        due = queries.due_enrollments(conn, now, limit)
        if not due:
            return Result()
        people = queries.contacts_by_ids(conn, {e.contact_id for e in due})
        run = _Pass(
            now=now,
            pauses=queries.rep_pauses(conn),
            install_id=outbox.install_id(conn),
            max_late=app.config.max_late,
        )
        for enrollment in due:
            _advance(app, conn, enrollment, people[enrollment.contact_id], run)
        outbox.insert_many(conn, run.queued)
        run.result.enrollments = len(due)
        return run.result


def _advance(
    app: App, conn: sa.Connection, enrollment: Enrollment, contact: Contact, run: _Pass
) -> None:
    campaign = app.catalog.campaigns.get(enrollment.campaign)
    if campaign is None:
        queries.update_enrollment(
            conn, enrollment.id, {"next_due_at": None, "waiting": "the campaign file is gone"}
        )
        return
    if contact.status != "active":
        pipeline.end(
            conn, enrollment, run.now, status="stopped", reason=f"contact {contact.status}"
        )
        return
    progress = schedule.Progress.from_json(enrollment.progress)
    ctx = pipeline.context(app, contact, campaign, enrollment.enrolled_at, run.pauses)
    for _ in range(MAX_ITEMS):
        due = _first_ready(campaign, progress, ctx, run.now)
        if due is None:
            break
        hold = _execute(app, conn, enrollment, contact, campaign, due, run)
        if hold is not None:
            _hold(conn, enrollment, progress, due, hold, run)
            return
        progress = _after(progress, campaign, due)
    _settle(app, conn, enrollment, contact, campaign, progress, ctx, run)


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
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    progress: schedule.Progress,
    ctx: schedule.Context,
    run: _Pass,
) -> None:
    pending = schedule.pending(campaign.plans, progress, ctx)
    if pending.complete and not progress.task_open:
        pipeline.complete(app, conn, enrollment, campaign, run.now)
        run.result.completed += 1
        return
    waiting = "; ".join(f"{w.step_id}: {w.reason}" for w in pending.waiting) or None
    if progress.task_open and not pending.due:
        waiting = waiting or schedule.TASK_WAIT_REASON
    queries.update_enrollment(
        conn,
        enrollment.id,
        {
            "progress": progress.to_json(),
            "next_due_at": pending.next_due_at,
            "waiting": waiting,
        },
    )


def _hold(
    conn: sa.Connection,
    enrollment: Enrollment,
    progress: schedule.Progress,
    due: schedule.Due,
    hold: _Hold,
    run: _Pass,
) -> None:
    reason = f"{due.step_id}: {hold.reason}"
    if enrollment.waiting != reason:
        queries.add_event(
            conn,
            contact_id=enrollment.contact_id,
            at=run.now,
            kind="held",
            campaign=enrollment.campaign,
            step=due.step_id,
            detail=hold.reason,
            cause=hold.reason,
        )
    queries.update_enrollment(
        conn,
        enrollment.id,
        {
            "progress": progress.to_json(),
            "next_due_at": hold.until,
            "waiting": reason,
        },
    )
    run.result.held += 1


def _execute(
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    due: schedule.Due,
    run: _Pass,
) -> _Hold | None:
    stale = schedule.is_stale(due, run.now, max_late=run.max_late)
    if stale:
        queries.add_event(
            conn,
            contact_id=contact.id,
            at=run.now,
            kind="skipped",
            campaign=campaign.id,
            step=due.step_id,
            detail=stale,
            cause=stale,
        )
        run.result.skipped += 1
        return None
    step = campaign.step(due.step_id)
    if step.is_email:
        return _queue_email(app, conn, enrollment, contact, campaign, step, due, run)
    _create_task(app, conn, enrollment, contact, campaign, step, due, run)
    return None


def _queue_email(
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    due: schedule.Due,
    run: _Pass,
) -> _Hold | None:
    tz = app.contact_tz(contact.timezone, contact.owner)
    window = campaign.send_window or pipeline.default_window(app)
    if not windows_mod.is_open(run.now, window, tz, app.config.holidays):
        return _Hold(
            reason="outside the sending window",
            until=windows_mod.next_open(run.now, window, tz, app.config.holidays),
        )
    try:
        message, email = _render(app, conn, enrollment, contact, campaign, step, due, run)
    except (templates.RenderError, mime.MissingAttachment, ValueError) as exc:
        return _Hold(reason=str(exc), until=run.now + HOLD_RETRY)
    run.queued.append(
        _outbox_row(enrollment, contact, campaign, step, due, email, message, window, tz, run)
    )
    run.result.queued += 1
    return None


def _render(
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    due: schedule.Due,
    run: _Pass,
) -> tuple[Any, compose.Email]:
    email = compose.render_email(app, contact, campaign, step, due.occurrence)
    earlier = _thread_of(conn, enrollment.id, run) if campaign.thread else []
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


def _thread_of(conn: sa.Connection, enrollment_id: int, run: _Pass) -> list[tuple[str, str]]:
    """Earlier emails of the enrollment: stored ones, then those queued in this pass."""
    stored = outbox.thread_of(conn, enrollment_id)
    queued = [
        (r["message_id"], r["subject"]) for r in run.queued if r["enrollment_id"] == enrollment_id
    ]
    return stored + queued


def _outbox_row(
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    due: schedule.Due,
    email: compose.Email,
    message: Any,
    window: windows_mod.Window,
    tz: Any,
    run: _Pass,
) -> dict[str, Any]:
    first = step.id == next((s.id for s in campaign.steps if s.is_email), None)
    return {
        "message_id": str(message["Message-ID"]),
        "enrollment_id": enrollment.id,
        "contact_id": contact.id,
        "campaign": campaign.id,
        "step": step.id,
        "occurrence": due.occurrence,
        "rep": email.sender.id,
        "recipient": email.to,
        "subject": str(message["Subject"]),
        "message": message.as_bytes(),
        "status": "queued",
        "priority": 1 if first else 0,
        "due_at": due.due_at,
        "not_after": due.deadline,
        "timezone": str(tz),
        "send_window": str(window),
        "attempts": 0,
        "next_attempt_at": run.now,
        "created_at": run.now,
    }


def _create_task(
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    due: schedule.Due,
    run: _Pass,
) -> None:
    try:
        note = compose.render_note(app, contact, campaign, step, due.occurrence)
    except templates.RenderError as exc:
        note = f"(the note could not be filled in: {exc})"
    table = schema.tasks
    existing = conn.execute(
        sa.select(table.c.id).where(
            table.c.enrollment_id == enrollment.id,
            table.c.step == step.id,
            table.c.occurrence == due.occurrence,
        )
    ).first()
    if existing is None:
        conn.execute(
            sa.insert(table).values(
                contact_id=contact.id,
                enrollment_id=enrollment.id,
                campaign=campaign.id,
                step=step.id,
                occurrence=due.occurrence,
                kind=step.kind,
                rep=contact.owner,
                due_at=due.due_at,
                note=note,
                status="open",
                created_at=run.now,
            )
        )
        queries.add_event(
            conn,
            contact_id=contact.id,
            at=run.now,
            kind="task_created",
            campaign=campaign.id,
            step=step.id,
            detail=f"{step.kind} for {contact.owner or 'the rep'}",
        )
        run.result.tasks += 1
