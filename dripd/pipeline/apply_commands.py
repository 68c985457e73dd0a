"""Carrying out the commands a rep sends by replying to a digest, and confirming them.

Every line is carried out on its own (a savepoint each): a bad line
changes nothing and gets a one-line reason, and the good lines of the same
email still go through. The confirmation is queued in the same transaction
as the effects, so a crash leaves either both or neither.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from dripd import errors
from dripd.files import config
from dripd.mail import incoming, mime
from dripd.pipeline import compose, digest, lifecycle
from dripd.pipeline.app import App
from dripd.plan import commands, contacts, durations
from dripd.store import contacts as store_contacts
from dripd.store import digests, tasks

logger = logging.getLogger("dripd.commands")


class Refused(Exception):
    """A command line that cannot be carried out; the message says why, in one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    line: str
    done: bool
    message: str

    def __str__(self) -> str:
        mark = "done" if self.done else "NOT DONE"
        return f"{self.line}\n    {mark}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Context:
    app: App
    conn: sa.Connection
    rep: config.RepConfig
    sent: digests.Sent
    now: datetime


def carry_out(
    app: App,
    conn: sa.Connection,
    rep: config.RepConfig,
    sent: digests.Sent,
    text: str,
    now: datetime,
) -> list[Result]:
    """Parse `text` (the rep's reply, quotes stripped) and carry out each line."""
    ctx = _Context(app=app, conn=conn, rep=rep, sent=sent, now=now)
    results = []
    for line in commands.parse(text):
        if line.command is None:
            results.append(
                Result(line=line.text, done=False, message=line.error or "not understood")
            )
            continue
        results.append(_one(ctx, line.text, line.command))
    return results


def _one(ctx: _Context, text: str, command: commands.Command) -> Result:
    savepoint = ctx.conn.begin_nested()
    try:
        message = _carry(ctx, command)
    except (Refused, errors.DripdError, ValueError) as exc:
        savepoint.rollback()
        return Result(line=text, done=False, message=_one_line(str(exc)))
    savepoint.commit()
    return Result(line=text, done=True, message=message)


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


# -- tasks -------------------------------------------------------------------------


def _tasks(ctx: _Context, numbers: tuple[int, ...]) -> list[tasks.Task]:
    """The digest's tasks by number, all of them or a Refused naming the ones that aren't."""
    found, missing = [], []
    for number in numbers:
        task_id = ctx.sent.task_id(number)
        task = tasks.task_by_id(ctx.conn, task_id) if task_id is not None else None
        if task is None:
            missing.append(str(number))
        else:
            found.append(task)
    if missing:
        raise Refused(f"the digest has no task {', '.join(missing)}")
    return found


def _who(ctx: _Context, task: tasks.Task) -> str:
    contact = store_contacts.contact_by_id(ctx.conn, task.contact_id)
    return f"{task.kind} {contact.name or contact.email}"


def _finish(ctx: _Context, numbers: tuple[int, ...], status: str) -> str:
    shown = []
    for task in _tasks(ctx, numbers):
        if task.status != "open":
            raise Refused(f"{_who(ctx, task)} is already {task.status}")
        lifecycle.finish_task(ctx.app, ctx.conn, task.id, ctx.now, status=status, cause="by email")
        shown.append(_who(ctx, task))
    return f"{'; '.join(shown)} {'marked done' if status == 'done' else 'skipped'}"


def _done(ctx: _Context, command: commands.Done) -> str:
    return _finish(ctx, command.numbers, "done")


def _skip(ctx: _Context, command: commands.Skip) -> str:
    return _finish(ctx, command.numbers, "skipped")


def _snooze(ctx: _Context, command: commands.Snooze) -> str:
    tz = ctx.app.config.rep_timezone(ctx.rep.id)
    holidays = ctx.app.config.holidays_for(ctx.rep.id)
    shown = []
    for task in _tasks(ctx, command.numbers):
        if task.status != "open":
            raise Refused(f"{_who(ctx, task)} is already {task.status}")
        due = task.due_at
        assert isinstance(due, datetime)
        later = durations.add(max(due, ctx.now), command.duration, tz=tz, holidays=holidays)
        lifecycle.snooze_task(ctx.conn, task.id, later, ctx.now, cause="by email")
        shown.append(f"{_who(ctx, task)} moved to {later.astimezone(tz):%a %d %b %H:%M}")
    return "; ".join(shown)


# -- contacts ----------------------------------------------------------------------


def _contact(ctx: _Context, email: str) -> store_contacts.Contact:
    contact = store_contacts.contact_by_email(ctx.conn, email)
    if contact is None:
        raise Refused(f"no contact {email}")
    return contact


def _stop(ctx: _Context, command: commands.Stop) -> str:
    contact = _contact(ctx, command.email)
    count = lifecycle.stop(ctx.app, ctx.conn, contact, ctx.now, cause="stop by email")
    return f"stopped {count} sequence{'s' if count != 1 else ''} of {contact.email}"


def _stage(ctx: _Context, command: commands.Stage) -> str:
    contact = _contact(ctx, command.email)
    values = _values(ctx, (("stage", command.stage),))
    lifecycle.set_fields(ctx.app, ctx.conn, contact, values, ctx.now, cause="stage by email")
    return f"{contact.email} is now a {command.stage}"


def _set(ctx: _Context, command: commands.Set) -> str:
    contact = _contact(ctx, command.email)
    values = _values(ctx, command.fields)
    lifecycle.set_fields(ctx.app, ctx.conn, contact, values, ctx.now, cause="set by email")
    return f"set {', '.join(key for key, _ in command.fields)} of {contact.email}"


def _enroll(ctx: _Context, command: commands.Enroll) -> str:
    ctx.app.catalog.get(command.campaign)
    contact = _contact(ctx, command.email)
    if command.fields:
        values = _values(ctx, command.fields)
        contact = lifecycle.set_fields(
            ctx.app, ctx.conn, contact, values, ctx.now, cause="enroll by email"
        )
    lifecycle.enroll(ctx.app, ctx.conn, contact, command.campaign, ctx.now, cause="enroll by email")
    return f"enrolled {contact.email} in {command.campaign}"


def _referral(ctx: _Context, command: commands.Referral) -> str:
    referrer = _contact(ctx, command.referrer)
    if store_contacts.contact_by_email(ctx.conn, command.email) is not None:
        raise Refused(f"{command.email} is already a contact")
    first, _, last = command.name.partition(" ")
    fields = (
        ("first_name", first),
        ("last_name", last),
        ("owner", ctx.rep.id),
        ("referred_by", referrer.email),
        *command.fields,
    )
    values = _values(ctx, (("email", command.email), *fields), new=True)
    lifecycle.create_contact(
        ctx.app, ctx.conn, command.email, values, ctx.now, cause=f"referred by {referrer.email}"
    )
    note = f"Thank {referrer.name or referrer.email} for referring {command.name}."
    lifecycle.create_task(
        ctx.conn,
        contact_id=referrer.id,
        kind="card",
        rep=ctx.rep.id,
        due_at=ctx.now,
        note=note,
        now=ctx.now,
        cause="referral by email",
    )
    return (
        f"added {command.email} (referred by {referrer.email}); "
        f"a thank-you card for {referrer.email}"
    )


def _values(
    ctx: _Context, fields: tuple[tuple[str, str], ...], *, new: bool = False
) -> contacts.Values:
    return contacts.validate_changes(dict(fields), ctx.app.contact_rules(), new=new)


def _carry(ctx: _Context, command: commands.Command) -> str:
    match command:
        case commands.Done():
            return _done(ctx, command)
        case commands.Skip():
            return _skip(ctx, command)
        case commands.Snooze():
            return _snooze(ctx, command)
        case commands.Stop():
            return _stop(ctx, command)
        case commands.Stage():
            return _stage(ctx, command)
        case commands.Set():
            return _set(ctx, command)
        case commands.Enroll():
            return _enroll(ctx, command)
        case commands.Referral():
            return _referral(ctx, command)


# -- the confirmation -------------------------------------------------------------------


def confirm(
    app: App,
    conn: sa.Connection,
    rep: config.RepConfig,
    mail: incoming.Incoming,
    results: list[Result],
    now: datetime,
) -> str:
    """Queue the email answering the rep's commands, line by line; its Message-ID."""
    message_id = digest.rep_message_id(conn, rep, "confirm")
    references = tuple(mail.references) + ((mail.message_id,) if mail.message_id else ())
    email = compose.Email(
        sender=rep,
        to=rep.email,
        to_name=rep.name,
        subject="",
        text=confirmation_text(results),
        html=None,
        attachments=(),
    )
    subject = "".join(char for char in mail.subject if char.isprintable()) or "your commands"
    thread = mime.Thread(subject=subject, references=references)
    built = mime.build(email, msgid=message_id, date=now, thread=thread, automatic=True)
    digest.queue_to_rep(app, conn, rep, built, step="confirmation", due_at=now, now=now)
    return message_id


def confirmation_text(results: list[Result]) -> str:
    if not results:
        return (
            "dripd found no command in your reply.\n\n"
            "Write one command a line above the quoted digest, e.g. `done 1 3`.\n"
        )
    done = sum(1 for r in results if r.done)
    head = f"dripd carried out {done} of {len(results)} line{'s' if len(results) != 1 else ''}:"
    body = "\n\n".join(str(r) for r in results)
    return f"{head}\n\n{body}\n"
