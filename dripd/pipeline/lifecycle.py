"""The life of a contact: enrolling, stopping, promoting, field changes, completion.

Every change is recorded as an event with its time and cause, in the same
transaction as the change itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from dripd import errors
from dripd.files import campaigns
from dripd.pipeline.app import App
from dripd.plan import contacts, dates, schedule, stages, windows
from dripd.store import contacts as store_contacts
from dripd.store import enrollments, events, forget, reps, tasks
from dripd.store.contacts import Addressee, Contact
from dripd.store.enrollments import Enrollment

EMPTY_PROGRESS = schedule.Progress().to_text()  # a new enrollment's state
UTC_ZONE = ZoneInfo("UTC")  # created_at values without an offset are UTC
COMPLETED = "last step done"  # why a completed enrollment ended


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Where an enrollment stands: when it is next due, what it waits for."""

    next_due_at: datetime | None
    waiting: str | None
    complete: bool
    pending: schedule.Pending


def context(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    enrolled_at: datetime,
    pauses: Mapping[str, datetime],
) -> schedule.Context:
    """The schedule context of one contact in one campaign."""
    return Contexts(app, pauses)(contact, campaign, enrolled_at)


class Contexts:
    """`context` for many contacts: each zone of a contact and its rep worked out once.

    (A rep's zone is a search of the config's reps: at a thousand reps, more
    than the rest of a context.)
    """

    def __init__(self, app: App, pauses: Mapping[str, datetime]) -> None:
        self._app = app
        self._pauses = pauses
        self._zones: dict[tuple[str | None, str | None], ZoneInfo] = {}

    def zone(self, contact: Contact | Addressee) -> ZoneInfo:
        """The contact's zone, else its rep's, else the config's (App.contact_tz)."""
        key = (contact.timezone, contact.owner)
        found = self._zones.get(key)
        if found is None:
            found = self._zones[key] = self._app.contact_tz(contact.timezone, contact.owner)
        return found

    def __call__(
        self, contact: Contact, campaign: campaigns.Campaign, enrolled_at: datetime
    ) -> schedule.Context:
        return self.timed(contact, campaign, enrolled_at, contact.values())

    def timed(
        self,
        contact: Contact | Addressee,
        campaign: campaigns.Campaign,
        enrolled_at: datetime,
        fields: Mapping[str, str],
    ) -> schedule.Context:
        """The context with `fields` for the contact's values: those the timing reads will do."""
        owner = contact.owner
        return schedule.Context(
            tz=self.zone(contact),
            holidays=self._app.config.holidays_for(owner),
            window=campaign.send_window or default_window(self._app),
            enrolled_at=enrolled_at,
            fields=fields,
            hold_until=self._pauses.get(owner) if owner else None,
        )


def default_window(app: App) -> windows.Window:
    return parse_window(app.config.model.dripd.send_window)


@functools.lru_cache(maxsize=64)
def parse_window(text: str) -> windows.Window:
    return windows.parse_window(text)


def plan(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    enrolled_at: datetime,
    progress: schedule.Progress,
    pauses: Mapping[str, datetime],
) -> Plan:
    ctx = context(app, contact, campaign, enrolled_at, pauses)
    pending = schedule.pending(campaign.plans, progress, ctx)
    waiting = "; ".join(f"{w.step_id}: {w.reason}" for w in pending.waiting) or None
    return Plan(
        next_due_at=pending.next_due_at,
        waiting=waiting,
        complete=pending.complete,
        pending=pending,
    )


# -- enrolling --------------------------------------------------------------


def enroll(
    app: App,
    conn: sa.Connection,
    contact: Contact,
    campaign_id: str,
    now: datetime,
    *,
    cause: str,
) -> int:
    """Start `contact` on a campaign; ends the current one when the campaign is exclusive."""
    campaign = app.catalog.get(campaign_id)
    _check_can_enroll(contact, campaign, enrollments.active_enrollments(conn, contact.id))
    if campaign.exclusive:
        _end_exclusive(app, conn, contact, now, reason=f"enrolled in {campaign.id}")
    enrollment_id = _insert(app, conn, contact, campaign, now, cause=cause)
    if campaign.stage:
        promote(
            app,
            conn,
            contact.id,
            campaign.stage,
            now,
            cause=f"enrolled in {campaign.id}",
            skip_campaign=campaign.id,
        )
    return enrollment_id


def _check_can_enroll(
    contact: Contact, campaign: campaigns.Campaign, active: Sequence[Enrollment]
) -> None:
    if contact.status != "active":
        raise errors.ContactError(f"{contact.email} is {contact.status}: dripd will not email them")
    if any(e.campaign == campaign.id for e in active):
        raise errors.ContactError(f"{contact.email} is already in campaign {campaign.id!r}")


def _insert(
    app: App,
    conn: sa.Connection,
    contact: Contact,
    campaign: campaigns.Campaign,
    now: datetime,
    *,
    cause: str,
) -> int:
    progress = schedule.Progress()
    where = plan(app, contact, campaign, now, progress, reps.rep_pauses(conn))
    enrollment_id = enrollments.insert_enrollment(
        conn, enrollment_row(contact, campaign, now, where)
    )
    events.add_event(
        conn,
        contact_id=contact.id,
        at=now,
        kind="enrolled",
        campaign=campaign.id,
        detail=f"enrolled in {campaign.name}",
        cause=cause,
    )
    return enrollment_id


def enrollment_row(
    contact: Contact, campaign: campaigns.Campaign, now: datetime, where: Plan
) -> dict[str, Any]:
    return {
        "contact_id": contact.id,
        "campaign": campaign.id,
        "status": "active",
        "enrolled_at": now,
        "progress": EMPTY_PROGRESS,
        "next_due_at": where.next_due_at,
        "waiting": where.waiting,
    }


def _end_exclusive(
    app: App, conn: sa.Connection, contact: Contact, now: datetime, *, reason: str
) -> None:
    for enrollment in enrollments.active_enrollments(conn, contact.id):
        current = app.catalog.campaigns.get(enrollment.campaign)
        if current is None or current.exclusive:
            end(conn, enrollment, now, status="stopped", reason=reason)


def end(
    conn: sa.Connection, enrollment: Enrollment, now: datetime, *, status: str, reason: str
) -> None:
    """End one enrollment (stopped or completed) and record it."""
    changes, event = ending(enrollment, now, status=status, reason=reason)
    enrollments.update_enrollment(conn, enrollment.id, changes)
    events.add_event(conn, **event)


def ending(
    enrollment: Enrollment, now: datetime, *, status: str, reason: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What `end` writes: the enrollment's changes, and its event's values."""
    changes = {"status": status, "ended_at": now, "end_reason": reason, "next_due_at": None}
    kind = "completed" if status == "completed" else "stopped"
    event = {
        "contact_id": enrollment.contact_id,
        "at": now,
        "kind": kind,
        "campaign": enrollment.campaign,
        "detail": f"{kind}: {reason}",
        "cause": reason,
    }
    return changes, event


def stop(app: App, conn: sa.Connection, contact: Contact, now: datetime, *, cause: str) -> int:
    """End every sequence of `contact`; the number ended."""
    active = enrollments.active_enrollments(conn, contact.id)
    for enrollment in active:
        end(conn, enrollment, now, status="stopped", reason=cause)
    return len(active)


# -- stages -----------------------------------------------------------------


def promote(
    app: App,
    conn: sa.Connection,
    contact_id: int,
    stage: str,
    now: datetime,
    *,
    cause: str,
    force: bool = False,
    skip_campaign: str | None = None,
) -> bool:
    """Move the contact to `stage` (forward only unless `force`); True if it changed.

    Reaching a stage starts every campaign whose `starts_when` names it.
    """
    contact = store_contacts.contact_by_id(conn, contact_id)
    target = stage if force else stages.forward(contact.stage, stage)
    if target == contact.stage:
        return False
    store_contacts.update_contact(conn, contact_id, {"stage": target, "updated_at": now})
    events.add_event(
        conn,
        contact_id=contact_id,
        at=now,
        kind="promoted" if stages.rank(target) > stages.rank(contact.stage) else "stage_set",
        detail=f"stage {contact.stage} → {target}",
        cause=cause,
    )
    _start_on_stage(app, conn, contact_id, target, now, skip_campaign)
    return True


def _start_on_stage(
    app: App,
    conn: sa.Connection,
    contact_id: int,
    stage: str,
    now: datetime,
    skip_campaign: str | None,
) -> None:
    for campaign in app.catalog.campaigns.values():
        if campaign.starts_at_stage != stage or campaign.id == skip_campaign:
            continue
        contact = store_contacts.contact_by_id(conn, contact_id)
        active = {e.campaign for e in enrollments.active_enrollments(conn, contact_id)}
        if contact.status == "active" and campaign.id not in active:
            enroll(
                app, conn, contact, campaign.id, now, cause=f"starts_when {campaign.starts_when}"
            )


# -- fields -----------------------------------------------------------------


def set_fields(
    app: App,
    conn: sa.Connection,
    contact: Contact,
    values: contacts.Values,
    now: datetime,
    *,
    cause: str,
) -> Contact:
    """Apply validated values to a stored contact; anchored steps move with their fields."""
    changes, custom = _changes(contact, values)
    stage = changes.pop("stage", None)
    if changes or custom != dict(contact.fields):
        row = {**changes, "fields": json.dumps(custom, sort_keys=True), "updated_at": now}
        store_contacts.update_contact(conn, contact.id, row)
        shown = ", ".join(sorted([*changes, *_changed_custom(contact.fields, custom)]))
        events.add_event(
            conn,
            contact_id=contact.id,
            at=now,
            kind="fields_set",
            detail=f"set {shown}",
            cause=cause,
        )
    if stage is not None:
        promote(app, conn, contact.id, str(stage), now, cause=cause, force=True)
    reschedule(app, conn, contact.id, now)
    return store_contacts.contact_by_id(conn, contact.id)


def _changes(contact: Contact, values: contacts.Values) -> tuple[dict[str, Any], dict[str, str]]:
    changes: dict[str, Any] = {}
    for key, value in values.standard.items():
        if key == "created_at" or (value is None and key in ("stage", "status")):
            continue  # an empty stage or status cell leaves it as it is
        stored = value if value is not None or key in ("timezone", "owner", "referred_by") else ""
        if getattr(contact, key) != stored:
            changes[key] = stored
    if "status" in changes and changes["status"] is None:
        changes.pop("status")
    custom = dict(contact.fields)
    for key, text in values.custom.items():
        if text is None:
            custom.pop(key, None)
        else:
            custom[key] = text
    return changes, custom


def _changed_custom(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    return [key for key in set(old) | set(new) if old.get(key) != new.get(key)]


def reschedule(app: App, conn: sa.Connection, contact_id: int, now: datetime) -> None:
    """Recompute when each active enrollment of the contact is next due."""
    contact = store_contacts.contact_by_id(conn, contact_id)
    pauses = reps.rep_pauses(conn)
    for enrollment in enrollments.active_enrollments(conn, contact_id):
        campaign = app.catalog.campaigns.get(enrollment.campaign)
        if campaign is None:
            continue
        progress = schedule.Progress.from_text(enrollment.progress)
        where = plan(app, contact, campaign, enrollment.enrolled_at, progress, pauses)
        enrollments.update_enrollment(
            conn, enrollment.id, {"next_due_at": where.next_due_at, "waiting": where.waiting}
        )


def reschedule_rep(app: App, conn: sa.Connection, rep_id: str, now: datetime) -> None:
    """Recompute due times of every contact the rep owns (after a pause or resume)."""
    for contact_id in store_contacts.contact_ids_owned_by(conn, rep_id):
        reschedule(app, conn, contact_id, now)


def contact_row(
    email: str, values: contacts.Values, now: datetime, default_owner: str | None
) -> dict[str, Any]:
    """The contacts-table row of a new contact from validated values."""
    std = values.standard
    created = std.get("created_at")
    return {
        "email": email,
        "email_key": email.lower(),
        "first_name": std.get("first_name") or "",
        "last_name": std.get("last_name") or "",
        "company": std.get("company") or "",
        "phone": std.get("phone") or "",
        "timezone": std.get("timezone"),
        "owner": std.get("owner") or default_owner,
        "stage": std.get("stage") or "suspect",
        "status": std.get("status") or "active",
        "referred_by": std.get("referred_by"),
        "fields": _fields_json(values.custom),
        "touches": 0,
        "last_touch_at": None,
        "created_at": dates.parse_when(created, UTC_ZONE) if created else now,
        "updated_at": now,
    }


def _fields_json(custom: Mapping[str, str | None]) -> str:
    present = {k: v for k, v in custom.items() if v is not None}
    return _FIELDS_JSON.encode(present) if present else "{}"


# json.dumps with options builds an encoder per call: a tenth of an import's row-building
_FIELDS_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def create_contact(
    app: App, conn: sa.Connection, email: str, values: contacts.Values, now: datetime, *, cause: str
) -> int:
    """Store a new contact from validated values; its id.

    An address that asked to be forgotten is refused (ContactError).
    """
    if forget.forgotten(conn, [email]):
        raise errors.ContactError(f"{email} asked to be forgotten: not added")
    std = values.standard
    default_owner = app.config.reps[0].id if app.config.reps else None
    contact_id = store_contacts.insert_contact(conn, contact_row(email, values, now, default_owner))
    events.add_event(
        conn, contact_id=contact_id, at=now, kind="created", detail="contact created", cause=cause
    )
    if std.get("stage"):
        _start_on_stage(app, conn, contact_id, str(std["stage"]), now, None)
    return contact_id


# -- rep tasks ------------------------------------------------------------------


def create_task(
    conn: sa.Connection,
    *,
    contact_id: int,
    kind: str,
    rep: str | None,
    due_at: datetime,
    note: str,
    now: datetime,
    cause: str | None = None,
    enrollment_id: int | None = None,
    campaign: str | None = None,
    step: str | None = None,
    occurrence: int = 1,
) -> None:
    """A rep task (call, card, to-do) for a contact, and its history event."""
    tasks.insert_task(
        conn,
        {
            "contact_id": contact_id,
            "enrollment_id": enrollment_id,
            "campaign": campaign,
            "step": step,
            "occurrence": occurrence,
            "kind": kind,
            "rep": rep,
            "due_at": due_at,
            "note": note,
            "status": "open",
            "created_at": now,
        },
    )
    events.add_event(
        conn,
        contact_id=contact_id,
        at=now,
        kind="task_created",
        campaign=campaign,
        step=step,
        detail=f"{kind} for {rep or 'the rep'}",
        cause=cause,
    )


def snooze_task(
    conn: sa.Connection, task_id: int, until: datetime, now: datetime, *, cause: str
) -> None:
    """Move an open task's due time later."""
    task = tasks.task_by_id(conn, task_id)
    if task is None:
        raise errors.ContactError(f"no task {task_id}")
    tasks.update_task(conn, task_id, {"due_at": until})
    events.add_event(
        conn,
        contact_id=task.contact_id,
        at=now,
        kind="task_snoozed",
        campaign=task.campaign,
        step=task.step,
        detail=f"{task.kind} moved to {until:%Y-%m-%d %H:%M} UTC",
        cause=cause,
    )


def finish_task(
    app: App, conn: sa.Connection, task_id: int, now: datetime, *, status: str, cause: str
) -> tasks.Task:
    """Mark a rep task done (a touch) or skipped; the sequence waiting on it moves on."""
    task = tasks.task_by_id(conn, task_id)
    if task is None:
        raise errors.ContactError(f"no task {task_id}")
    if task.status != "open":
        raise errors.ContactError(f"task {task_id} is already {task.status}")
    tasks.update_task(conn, task_id, {"status": status, "done_at": now})
    if status == "done":
        store_contacts.count_touch(conn, task.contact_id, now)
    events.add_event(
        conn,
        contact_id=task.contact_id,
        at=now,
        kind="task_done" if status == "done" else "task_skipped",
        campaign=task.campaign,
        step=task.step,
        detail=f"{task.kind} {status}",
        cause=cause,
    )
    _release(app, conn, task, now)
    return task


def _release(app: App, conn: sa.Connection, task: tasks.Task, now: datetime) -> None:
    if task.enrollment_id is None:  # a task of no sequence (a referral's thank-you)
        return
    enrollment = enrollments.enrollment_by_id(conn, task.enrollment_id)
    if enrollment is None or enrollment.status != "active":
        return
    progress = schedule.Progress.from_text(enrollment.progress)
    if not progress.task_open or not progress.done or progress.done[-1] != task.step:
        return
    progress = schedule.finish_task(progress, now)
    enrollments.update_enrollment(conn, enrollment.id, {"progress": progress.to_text()})
    campaign = app.catalog.campaigns.get(enrollment.campaign)
    contact = store_contacts.contact_by_id(conn, enrollment.contact_id)
    if campaign is None:
        return
    where = plan(app, contact, campaign, enrollment.enrolled_at, progress, reps.rep_pauses(conn))
    if where.complete:
        complete(app, conn, enrollment, campaign, now)
        return
    enrollments.update_enrollment(
        conn, enrollment.id, {"next_due_at": where.next_due_at, "waiting": where.waiting}
    )


def following(app: App, campaign: campaigns.Campaign) -> str | None:
    """The campaign completing `campaign` enrolls the contact in (`complete`), if any."""
    return campaign.next if campaign.next and campaign.next in app.catalog.campaigns else None


def complete(
    app: App,
    conn: sa.Connection,
    enrollment: Enrollment,
    campaign: campaigns.Campaign,
    now: datetime,
) -> None:
    """End a finished enrollment; `next` (if any) enrolls the contact in the next campaign."""
    end(conn, enrollment, now, status="completed", reason=COMPLETED)
    after = following(app, campaign)
    if after is None:
        return
    contact = store_contacts.contact_by_id(conn, enrollment.contact_id)
    if contact.status == "active":
        enroll(app, conn, contact, after, now, cause=f"next after {campaign.id}")
