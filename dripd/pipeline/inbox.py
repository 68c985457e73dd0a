"""What an incoming message does to the contacts: the effects of a verdict.

`handle` runs inside the caller's transaction, the same one that advances
the folder's checkpoint: a message's effects and "this UID is done" commit
together or not at all. A message already handled (same Message-ID, or the
same headers when it has none) is recognised and left alone, so a changed
UIDVALIDITY or an overlapping scan never applies anything twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from dripd.mail import bounces, classify, incoming, meetings
from dripd.mail.addresses import address_key
from dripd.pipeline import apply_commands, lifecycle
from dripd.pipeline.app import App
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import digests, enrollments, events, outbox, schema
from dripd.store import inbox as store_inbox

logger = logging.getLogger("dripd.inbox")


class StoreKnown:
    """classify.Known answered from the database and the configuration."""

    def __init__(self, app: App, conn: sa.Connection) -> None:
        self.conn = conn
        self._reps = {address_key(rep.email): rep.id for rep in app.config.reps}

    def sent(self, message_id: str) -> classify.SentRef | None:
        sent = outbox.sent_to_contact(self.conn, message_id)
        return classify.SentRef(**sent) if sent else None

    def contact(self, address: str) -> classify.ContactRef | None:
        found = store_contacts.brief_by_key(self.conn, address_key(address))
        return classify.ContactRef(**found) if found else None

    def rep_of(self, address: str) -> str | None:
        return self._reps.get(address_key(address))

    def digest(self, message_id: str) -> str | None:
        sent = digests.sent_digest(self.conn, message_id)
        return sent.rep if sent else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: classify.Verdict | None  # None: handled before
    actions: tuple[str, ...] = ()


def read(app: App, conn: sa.Connection, mail: incoming.Incoming, now: datetime) -> classify.Verdict:
    """The verdict on `mail`, without acting on it (`dripd explain`)."""
    received = (mail.date or now).astimezone(app.config.timezone).date()
    return classify.classify(mail, StoreKnown(app, conn), received=received)


def handle(
    app: App,
    conn: sa.Connection,
    rep: str,
    mail: incoming.Incoming,
    now: datetime,
    *,
    uid: int | None = None,
) -> Outcome:
    """Classify `mail` (arrived in `rep`'s inbox) and act on it, once."""
    if store_inbox.handled(conn, rep, mail.key):
        return Outcome(verdict=None)
    verdict = read(app, conn, mail, now)
    actions = _EFFECTS[verdict.cls](app, conn, mail, verdict, now)
    _record(conn, rep, mail, verdict, now, uid)
    _log(rep, mail, verdict, actions)
    return Outcome(verdict=verdict, actions=tuple(actions))


def _record(
    conn: sa.Connection,
    rep: str,
    mail: incoming.Incoming,
    verdict: classify.Verdict,
    now: datetime,
    uid: int | None,
    outcome: schema.MessageOutcome = schema.MessageOutcome.HANDLED,
) -> None:
    store_inbox.record(
        conn,
        store_inbox.Message(
            rep=rep,
            key=mail.key,
            uid=uid,
            contact_id=verdict.contact.id if verdict.contact else None,
            sender=mail.sender,
            subject=mail.subject,
            summary=verdict.summary,
            reasons="; ".join(verdict.reasons),
            cls=verdict.cls,
            received_at=now,
            outcome=outcome,
        ),
    )


def record_failure(
    conn: sa.Connection,
    rep: str,
    mail: incoming.Incoming,
    now: datetime,
    *,
    uid: int | None,
    error: str,
) -> None:
    """Note a message that could not be handled (it stays in the mailbox for a person)."""
    if store_inbox.handled(conn, rep, mail.key):
        return
    reasons = (f"could not be handled: {error}",)
    verdict = classify.Verdict(cls="other", reasons=reasons)
    _record(conn, rep, mail, verdict, now, uid, schema.MessageOutcome.FAILED)


def _log(rep: str, mail: incoming.Incoming, verdict: classify.Verdict, actions: list[str]) -> None:
    logger.info(
        "inbox message: %s",
        verdict.cls,
        extra={
            "action": "inbox_message",
            "rep": rep,
            "class": verdict.cls,
            "contact": verdict.contact.email if verdict.contact else "",
            "message_id": mail.message_id,
            "done": "; ".join(actions) or "nothing",
        },
    )


# -- effects ---------------------------------------------------------------------

Effect = list[str]


def _reply(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    assert verdict.contact is not None
    contact_id = verdict.contact.id
    active = enrollments.active_enrollments(conn, contact_id)
    if verdict.answered_by:
        return _colleague(app, conn, mail, verdict, now, active)
    _event(conn, contact_id, now, "replied", verdict.summary or mail.subject, mail, verdict.sent)
    return _stop_and_promote(app, conn, verdict, now, active, reason="the contact replied")


def _colleague(
    app: App,
    conn: sa.Connection,
    mail: incoming.Incoming,
    verdict: classify.Verdict,
    now: datetime,
    active: list[enrollments.Enrollment],
) -> Effect:
    """A colleague of the contact answered in the thread: their campaigns say stop or note."""
    assert verdict.contact is not None and verdict.answered_by is not None
    detail = _someone_detail(verdict)
    campaigns = [app.catalog.campaigns.get(e.campaign) for e in active]
    if active and all(c is not None and c.colleague_replies == "note" for c in campaigns):
        _event(conn, verdict.contact.id, now, "colleague_replied", detail, mail, verdict.sent)
        return ["noted for the rep: a colleague answered (colleague_replies = note)"]
    _event(conn, verdict.contact.id, now, "replied", detail, mail, verdict.sent)
    pairs = zip(active, campaigns, strict=True)
    stopping = [e for e, c in pairs if c is None or c.colleague_replies == "stop"]
    reason = f"{verdict.answered_by}, a colleague, replied"
    return _stop_and_promote(app, conn, verdict, now, stopping, reason=reason)


def _someone_detail(verdict: classify.Verdict) -> str:
    """What the rep reads: who answered, their first lines, the command that adds them."""
    assert verdict.sent is not None and verdict.answered_by is not None
    said = verdict.summary or "(nothing but the quote)"
    add = f"referral {verdict.answered_by} from {verdict.sent.recipient}"
    return f"{verdict.answered_by} answered: {said}\nTo add them as a contact, reply:\n{add}"


def _stop_and_promote(
    app: App,
    conn: sa.Connection,
    verdict: classify.Verdict,
    now: datetime,
    active: list[enrollments.Enrollment],
    *,
    reason: str,
) -> Effect:
    """A reply's effect: `on_reply = "stop"` campaigns end; `promote_on_reply` promotes."""
    assert verdict.contact is not None
    actions: Effect = []
    promote_to = _promotions(app, active, verdict.sent)
    for enrollment in active:
        campaign = app.catalog.campaigns.get(enrollment.campaign)
        if campaign is None or campaign.on_reply == "stop":
            lifecycle.end(conn, enrollment, now, status="stopped", reason=reason)
            actions.append(f"stopped {enrollment.campaign}")
    contact_id = verdict.contact.id
    for stage in promote_to:
        if lifecycle.promote(app, conn, contact_id, stage, now, cause="replied"):
            actions.append(f"promoted to {stage}")
    return actions


def _promotions(
    app: App, active: list[enrollments.Enrollment], sent: classify.SentRef | None
) -> list[str]:
    """The stages the contact's campaigns promote a replier to; the answered campaign first."""
    names = [e.campaign for e in active]
    if sent is not None and sent.campaign:
        names.insert(0, sent.campaign)
    stages: list[str] = []
    for name in names:
        campaign = app.catalog.campaigns.get(name)
        if campaign is not None and campaign.promote_on_reply:
            stages.append(campaign.promote_on_reply)
    return list(dict.fromkeys(stages))


def _auto_reply(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    assert verdict.contact is not None
    contact_id = verdict.contact.id
    if not verdict.out_of_office:
        _event(conn, contact_id, now, "auto_reply", "an automatic answer", mail, verdict.sent)
        return []
    until = _return_time(app, conn, contact_id, verdict.return_date, now)
    stated = "back " + verdict.return_date.isoformat() if verdict.return_date else "no date given"
    detail = f"out of office ({stated}): emails wait until {until:%Y-%m-%d %H:%M} UTC"
    store_contacts.update_contact(conn, contact_id, {"paused_until": until, "updated_at": now})
    held = outbox.hold_contact(conn, contact_id, until)
    _event(conn, contact_id, now, "out_of_office", detail, mail, verdict.sent)
    return [f"paused until {until:%Y-%m-%d}" + (f", {held} queued email(s) held" if held else "")]


def _return_time(
    app: App, conn: sa.Connection, contact_id: int, back: date | None, now: datetime
) -> datetime:
    """When a contact out of office may be written to again: the start of the day they are back."""
    contact = store_contacts.contact_by_id(conn, contact_id)
    tz = app.contact_tz(contact.timezone, contact.owner)
    if back is None:
        back = now.astimezone(tz).date() + timedelta(days=app.config.model.dripd.out_of_office_days)
    return datetime.combine(back, time(0, 0), tzinfo=tz).astimezone(now.tzinfo)


def _bounce(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    actions: Effect = []
    for failed in verdict.failed:
        contact, failure = failed.contact, failed.failure
        if contact is None:
            continue
        status = f" {failure.status}" if failure.status else ""
        detail = f"{failure.recipient}{status} {failure.diagnostic}".strip()
        if failure.policy:  # the rep's mail refused, not the address: the digest tells the rep
            _event(conn, contact.id, now, "delivery_blocked", detail, mail)
            actions.append(f"blocked by policy for {failure.recipient}: nobody bounced")
            continue
        if failure.soft:
            earlier = events.event_times(conn, contact.id, "delivery_delayed")
            _event(conn, contact.id, now, "delivery_delayed", detail, mail)
            if not bounces.gives_up(earlier, now):
                continue
            detail = f"{detail} (temporary failures for {(now - min(earlier)).days} days)"
        sent = verdict.sent if verdict.sent and verdict.sent.contact_id == contact.id else None
        _event(conn, contact.id, now, "bounced", detail, mail, sent)
        actions += _end_contact(app, conn, contact.id, "bounced", now, cause=f"bounced: {detail}")
    return actions


def _unsubscribe(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    assert verdict.contact is not None
    _event(conn, verdict.contact.id, now, "unsubscribed", "; ".join(verdict.reasons), mail)
    return _end_contact(app, conn, verdict.contact.id, "unsubscribed", now, cause="unsubscribed")


def _complaint(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    assert verdict.contact is not None
    _event(conn, verdict.contact.id, now, "complaint", "; ".join(verdict.reasons), mail)
    cause = "marked as spam (complaint)"
    return _end_contact(app, conn, verdict.contact.id, "unsubscribed", now, cause=cause)


def _command(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    assert verdict.rep is not None
    rep = app.config.rep(verdict.rep)
    answered = (digests.sent_digest(conn, mid) for mid in mail.referenced)
    sent = next((s for s in answered if s is not None and s.rep == rep.id), None)
    assert sent is not None, "the classifier found the digest this answers"
    results = apply_commands.carry_out(app, conn, rep, sent, verdict.reply or "", now)
    apply_commands.confirm(app, conn, rep, mail, results, now)
    done = sum(1 for r in results if r.done)
    return [f"carried out {done} of {len(results)} command line(s)", "confirmation queued"]


def _meeting(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    """A meeting booked or accepted sets the contact's date field; declined or cancelled clears
    it. Anchored steps move with it; nothing stops (the sequence is built around the meeting)."""
    assert verdict.contact is not None and verdict.meeting is not None
    meeting = verdict.meeting
    contact = store_contacts.contact_by_id(conn, verdict.contact.id)
    active = enrollments.active_enrollments(conn, contact.id)
    named = [
        app.catalog.campaigns[e.campaign] for e in active if e.campaign in app.catalog.campaigns
    ]
    field = named[0].meeting_field if named else "appointment_at"
    tz = app.contact_tz(contact.timezone, contact.owner)
    value = meetings.local_text(meeting.start, tz) if meeting.start else None
    if value is None and field not in contact.fields:
        _event(conn, contact.id, now, "meeting", f"{meeting.why} (no {field} was set)", mail)
        return []
    values = contacts.Values(email=None, standard={}, custom={field: value})
    lifecycle.set_fields(app, conn, contact, values, now, cause=f"calendar email: {meeting.why}")
    title = f" '{meeting.title}'" if meeting.title else ""
    done = f"{field} = {value}" if value else f"{field} cleared"
    _event(conn, contact.id, now, "meeting", f"{meeting.why}{title}: {done}", mail, verdict.sent)
    return [done]


def _other(
    app: App, conn: sa.Connection, mail: incoming.Incoming, verdict: classify.Verdict, now: datetime
) -> Effect:
    """Nothing changes; someone else answering in a contact's thread is told to the rep."""
    if verdict.sent is None or not verdict.answered_by:
        return []
    detail = _someone_detail(verdict)
    _event(conn, verdict.sent.contact_id, now, "someone_answered", detail, mail, verdict.sent)
    return ["noted for the rep: someone else answered"]


def _end_contact(
    app: App, conn: sa.Connection, contact_id: int, status: str, now: datetime, *, cause: str
) -> Effect:
    contact = store_contacts.contact_by_id(conn, contact_id)
    if contact.status != "active":
        return []
    store_contacts.update_contact(conn, contact_id, {"status": status, "updated_at": now})
    stopped = lifecycle.stop(app, conn, contact, now, cause=cause)
    return [f"marked {status}"] + ([f"stopped {stopped} sequence(s)"] if stopped else [])


def _event(
    conn: sa.Connection,
    contact_id: int,
    now: datetime,
    kind: str,
    detail: str,
    mail: incoming.Incoming,
    about: classify.SentRef | None = None,
) -> None:
    """A history event; `about`: the email it answers, so per-step statistics count it."""
    events.add_event(
        conn,
        contact_id=contact_id,
        at=now,
        kind=kind,
        campaign=about.campaign if about else None,
        step=about.step if about else None,
        detail=detail[:500],
        cause=f"email from {mail.sender}" if mail.sender else "incoming email",
        message_id=mail.message_id or None,
    )


def would_do(verdict: classify.Verdict) -> list[str]:
    """What acting on `verdict` would do, in words (`dripd explain`): the effects below."""
    if verdict.cls == "bounce":
        return [_bounce_consequence(f) for f in verdict.failed if f.contact is not None]
    if verdict.failed:  # a bounce for nobody dripd knows
        return ["not a contact: nothing to do; did you import them under another address?"]
    contact = verdict.contact.email if verdict.contact else ""
    said = {
        "reply": f"record {contact}'s reply; stop or promote per campaign",
        "auto-reply": (
            f"pause {contact} until they are back"
            if verdict.out_of_office
            else f"note an automatic answer from {contact}"
        ),
        "unsubscribe": f"mark {contact} unsubscribed and stop their sequences",
        "complaint": f"mark {contact} unsubscribed (spam complaint) and stop their sequences",
        "command": f"carry out {verdict.rep}'s commands and confirm them",
    }
    return [said.get(verdict.cls, "nothing to do")]


def _bounce_consequence(failed: classify.Failed) -> str:
    failure, contact = failed.failure, failed.contact
    assert contact is not None
    if failure.policy:
        return (
            f"{contact.email}: refused by policy or as spam, not bounced; the rep's digest names it"
        )
    if failure.soft:
        return (
            f"{contact.email}: note the delay; {bounces.GIVE_UP_REPORTS} such reports over "
            f"{bounces.GIVE_UP_AFTER.days} days count as a bounce"
        )
    return f"{contact.email}: mark bounced ({failure.reason}) and stop their sequences"


_EFFECTS = {
    "reply": _reply,
    "auto-reply": _auto_reply,
    "bounce": _bounce,
    "unsubscribe": _unsubscribe,
    "complaint": _complaint,
    "command": _command,
    "meeting": _meeting,
    "other": _other,
}
