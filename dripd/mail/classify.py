"""What an incoming message is: a pure function of the message, what dripd knows, a day.

The order of the checks is the order of trust: machine reports (complaints,
delivery failures) first, because they quote our messages and must never
count as the contact replying; then the rep's own commands; then automatic
answers; only then what a person wrote. A message can stop or change a
contact only when it comes from that contact's own address: quoting one of
our Message-IDs is not enough (a forwarded thread is not the contact
replying).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage, Message
from typing import Protocol

from dripd.mail import addresses, autoreply, bounces, incoming, mailtext, meetings, reading

CLASSES = (
    "reply",
    "auto-reply",
    "bounce",
    "unsubscribe",
    "complaint",
    "command",
    "meeting",
    "other",
)
_UNSUBSCRIBE_SUBJECT = re.compile(r"^\s*(?:re:\s*)*unsubscribe\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class SentRef:
    """An email dripd sent."""

    message_id: str
    contact_id: int
    recipient: str
    rep: str
    enrollment_id: int | None = None
    campaign: str | None = None
    step: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRef:
    id: int
    email: str
    owner: str | None = None
    status: str = "active"


class Known(Protocol):
    """What dripd knows that classification needs; the store or a test's world provides it."""

    def sent(self, message_id: str) -> SentRef | None: ...

    def contact(self, address: str) -> ContactRef | None: ...

    def rep_of(self, address: str) -> str | None:
        """The rep whose own address this is."""
        ...

    def digest(self, message_id: str) -> str | None:
        """The rep a digest with this Message-ID was sent to."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """One failed recipient of a bounce, and the contact it is, when known."""

    failure: bounces.Failure
    contact: ContactRef | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    cls: str
    reasons: tuple[str, ...]
    contact: ContactRef | None = None
    sent: SentRef | None = None
    rep: str | None = None  # commands: the rep who wrote them
    failed: tuple[Failed, ...] = ()
    permanent: bool = (
        False  # bounces: a hard failure of a contact (not a delay, not a policy block)
    )
    out_of_office: bool = False
    return_date: date | None = None
    reply: str = ""  # what the sender wrote, quotes and signature stripped
    summary: str = ""  # its first lines, for the rep
    # someone other than the contact answering in the thread of `sent`: a colleague at
    # the contact's own company (a "reply"), or anyone else (an "other", told the rep)
    answered_by: str | None = None
    meeting: meetings.Meeting | None = None  # an invitation, acceptance, decline or cancel

    def to_json(self) -> dict[str, object]:
        return {
            "class": self.cls,
            "reasons": list(self.reasons),
            "contact": self.contact.email if self.contact else None,
            "matched_message_id": self.sent.message_id if self.sent else None,
            "campaign": self.sent.campaign if self.sent else None,
            "rep": self.rep,
            "failed": [_failed_json(f) for f in self.failed],
            "permanent": self.permanent if self.cls == "bounce" else None,
            "out_of_office": self.out_of_office if self.cls == "auto-reply" else None,
            "return_date": self.return_date.isoformat() if self.return_date else None,
            "summary": self.summary,
            "answered_by": self.answered_by,
            "meeting": _meeting_json(self.meeting),
        }


def _meeting_json(meeting: meetings.Meeting | None) -> dict[str, object] | None:
    if meeting is None:
        return None
    start = meeting.start.isoformat() if meeting.start else None
    return {"action": meeting.action, "start": start, "title": meeting.title, "why": meeting.why}


def _failed_json(item: Failed) -> dict[str, object]:
    return {**_failure_json(item.failure), "contact": item.contact.email if item.contact else None}


@dataclass(slots=True)
class _Reading:
    """What is worked out once and used by several checks."""

    mail: incoming.Incoming
    known: Known
    received: date
    reasons: list[str] = field(default_factory=list)
    _text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = mailtext.body_text(self.mail.message)
        return self._text


def classify(mail: incoming.Incoming, known: Known, *, received: date) -> Verdict:
    """The class of `mail`, the contact and sent message it concerns, and why."""
    reading = _Reading(mail=mail, known=known, received=received)
    for check in (_complaint, _bounce, _command):
        verdict = check(reading)
        if verdict is not None:
            return verdict
    return _from_person(reading)


# -- what a message says, before dripd's world -----------------------------------


def reading_json(message: EmailMessage) -> dict[str, object]:
    """The structural reading of a machine report, whoever it is about (`dripd explain`).

    `kind`: "bounce", "complaint" or None; for a bounce every failed recipient with its
    status, diagnostic, hard/soft/policy and reason, and the returned Message-ID.
    """
    report = _feedback_report(message)
    if report is not None:
        return {"kind": "complaint", "recipients": list(report.recipients), "failed": []}
    bounce = bounces.parse_bounce(message)
    if bounce is None:
        return {"kind": None, "failed": []}
    return {
        "kind": "bounce",
        "failed": [_failure_json(f) for f in bounce.failures],
        "original_message_id": bounce.original_message_id,
        "read_by": list(bounce.reasons),
    }


def _failure_json(failure: bounces.Failure) -> dict[str, object]:
    return {
        "recipient": failure.recipient,
        "status": failure.status,
        "diagnostic": failure.diagnostic,
        "permanent": failure.permanent,
        "kind": failure.kind,
        "reason": str(failure.reason),
    }


# -- machine reports -----------------------------------------------------------


def _complaint(reading: _Reading) -> Verdict | None:
    report = _feedback_report(reading.mail.message)
    if report is None:
        return None
    known = reading.known
    original = incoming.parse(report.original) if report.original else None
    sent = _first_sent(known, [original.message_id] if original else [])
    if sent is None and original is not None:
        sent = _first_sent(known, original.referenced)
    contact = known.contact(sent.recipient) if sent else None
    if contact is None:
        for address in (*report.recipients, *(original.recipients if original else ())):
            contact = known.contact(address)
            if contact:
                break
    reasons = ["an abuse/feedback report (ARF, RFC 5965, Microsoft JMRP or Amazon SES)"]
    if contact is None:
        reasons.append("about no message or address dripd knows")
        return Verdict(cls="other", reasons=tuple(reasons), sent=sent)
    reasons.append(f"about {_about(sent, contact)}")
    return Verdict(cls="complaint", reasons=tuple(reasons), contact=contact, sent=sent)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Report:
    recipients: tuple[str, ...]
    original: bytes | None


def _feedback_report(message: EmailMessage) -> _Report | None:
    """An abuse report: ARF (RFC 5965), or Microsoft's JMRP format (multipart/mixed, the
    complaint's address in X-HmXmrOriginalRecipient of the attached message)."""
    notice = bounces.ses_notice(message)
    if notice is not None and notice.kind == "Complaint":
        return _Report(recipients=tuple(r.address for r in notice.recipients), original=None)
    relayed = _relayed_jmrp(message)
    if relayed is not None:
        return relayed
    kind = message.get_content_type()
    arf = (
        kind == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "feedback-report"
    )
    if not arf and kind != "multipart/mixed":
        return None
    recipients: list[str] = []
    original: bytes | None = None
    types: set[str] = set()
    for part in reading.parts(message, into_messages=True):
        part_type = part.get_content_type()
        if part_type == "message/feedback-report":
            recipients.extend(_report_recipients(part))
            types.update(_feedback_types(part))
        elif part_type in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = reading.part_bytes(part)
    if types and types <= _NOT_COMPLAINTS:
        return None  # a DMARC/SPF/DKIM failure report, or a "not spam" report: nobody complained
    if not arf:
        jmrp = re.search(rb"(?im)^X-HmXmrOriginalRecipient:\s*<?([^>\s]+)>?", original or b"")
        if jmrp is None:
            return None
        recipients.append(jmrp.group(1).decode("utf-8", "replace").lower())
    return _Report(recipients=tuple(recipients), original=original)


def _relayed_jmrp(message: EmailMessage) -> _Report | None:
    """Hotmail's older complaint format: the reported message itself, relayed from its
    staff address (`Return-Path: staff@hotmail.com`) with X-HmXmrOriginalRecipient, the
    complaining address, among its own headers. Both are needed: a person's mailbox may
    redirect mail with Hotmail's headers, but never from its staff address."""
    recipient = reading.header(message, "X-HmXmrOriginalRecipient").strip().strip("<>")
    sender = reading.raw_header(message, "Return-Path") or reading.raw_header(message, "From")
    if "@" not in recipient or not _STAFF.match(sender):
        return None
    # As written (raw_items): parsing them (items) raises IndexError in CPython's
    # header parser on a damaged Message-ID such as `<><id@host>`.
    headers = "".join(f"{name}: {value}\n" for name, value in message.raw_items())
    original = headers.encode("utf-8", "replace")
    return _Report(recipients=(recipient.lower(),), original=original)


# The sender of Microsoft's feedback loop (JMRP) mail.
_STAFF = re.compile(r"\s*<?staff@(?:hotmail|msn|live|outlook)\.[a-z.]+>?\s*$", re.IGNORECASE)

# Feedback types that are no complaint of the recipient: RFC 6591's authentication
# failure reports (DMARC's ruf=, sent to a domain's owner about mail failing SPF, DKIM or
# DMARC, which may be dripd's own mail to a contact) and RFC 5965's "not-spam".
_NOT_COMPLAINTS = frozenset({"auth-failure", "not-spam"})


def _feedback_types(part: Message) -> list[str]:
    raw = reading.part_bytes(part).decode("utf-8", "replace")
    return [kind.lower() for kind in re.findall(r"(?im)^feedback-type:\s*([\w-]+)", raw)]


def _report_recipients(part: Message) -> list[str]:
    raw = reading.part_bytes(part).decode("utf-8", "replace")
    found = re.findall(r"(?im)^(?:original-rcpt-to|removal-recipient):\s*(?:rfc822;)?\s*(\S+)", raw)
    return [address.strip("<>").lower() for address in found]


def _bounce(reading: _Reading) -> Verdict | None:
    report = bounces.parse_bounce(reading.mail.message)
    if report is None:
        return None
    known = reading.known
    sender = reading.mail.sender
    if report.forwarded and sender and known.contact(sender) is not None:
        return None  # a contact forwarding a bounce is a contact writing: read as from them
    sent = known.sent(report.original_message_id) if report.original_message_id else None
    if sent is None:  # Gmail and Exchange thread their bounces to the original
        sent = _first_sent(known, reading.mail.referenced)
    failed = tuple(_failed(known, failure, sent) for failure in report.failures)
    reasons = list(report.reasons)
    matched = [f for f in failed if f.contact is not None]
    if not matched:
        reasons.append("for no address or message of dripd's: not ours to act on")
        return Verdict(cls="other", reasons=tuple(reasons), failed=failed)
    reasons.append("failed recipient " + ", ".join(f.failure.recipient for f in matched))
    reasons.extend(_what_it_means(matched))
    permanent = any(f.failure.bounces_contact for f in matched)
    return Verdict(
        cls="bounce",
        reasons=tuple(reasons),
        contact=matched[0].contact,
        sent=sent,
        failed=failed,
        permanent=permanent,
    )


def _what_it_means(matched: list[Failed]) -> list[str]:
    """What the failures of dripd's contacts say, for the reasons: hard, policy or delay."""
    failures = [f.failure for f in matched]
    said = []
    if any(f.policy for f in failures):
        said.append("refused by policy or as spam: the rep's mail is blocked, nobody bounced")
    if any(not f.permanent and not f.policy for f in failures):
        said.append("a delay warning: delivery is still being tried")
    elif any(f.soft for f in failures):
        said.append(
            f"a full mailbox: no bounce until {bounces.GIVE_UP_REPORTS} reports over "
            f"{bounces.GIVE_UP_AFTER.days} days"
        )
    return said


def _failed(known: Known, failure: bounces.Failure, sent: SentRef | None) -> Failed:
    if known.rep_of(failure.recipient):  # a damaged report naming its own addressee, the rep
        return Failed(failure=failure, contact=None)
    if known.sent(f"<{failure.recipient}>") is not None:
        # one of our Message-IDs, which look like addresses: a damaged report quoting the
        # returned message's id where its field name was lost
        return Failed(failure=failure, contact=None)
    contact = known.contact(failure.recipient)
    if contact is None and failure.final_recipient:
        contact = known.contact(failure.final_recipient)
    if contact is None and sent is not None:
        # Forwarding and aliases: the server names the address it tried, the
        # returned message names ours.
        contact = known.contact(sent.recipient)
    return Failed(failure=failure, contact=contact)


# -- the rep ---------------------------------------------------------------------


def _command(reading: _Reading) -> Verdict | None:
    mail, known = reading.mail, reading.known
    rep = known.rep_of(mail.sender) if mail.sender else None
    if rep is None:
        return None
    forged = _forged(mail)
    if forged:
        reasons = (f"claims to be from {rep}'s own address", forged)
        return Verdict(cls="other", reasons=reasons)
    automatic = autoreply.detect_auto_reply(mail.message, reading.text, received=reading.received)
    if automatic is not None:
        # dripd's own confirmations, or the rep's vacation responder answering a digest
        automatic_reasons = (
            f"from {rep}'s own address",
            *automatic.reasons,
            "automatic, not the rep writing",
        )
        return Verdict(cls="other", reasons=automatic_reasons, rep=rep)
    for message_id in mail.referenced:
        if known.digest(message_id) == rep:
            reasons = (f"from {rep}'s own address", f"in reply to the digest {message_id}")
            text = mailtext.reply_text(reading.text)
            return Verdict(cls="command", reasons=reasons, rep=rep, reply=text)
    reasons = (f"from {rep}'s own address", "not in reply to a digest dripd sent to them")
    return Verdict(cls="other", reasons=reasons, rep=rep)


def _forged(mail: incoming.Incoming) -> str | None:
    """Why the rep's own mail server doubts the From address, if it does.

    Only the topmost Authentication-Results counts: it is the one the rep's
    provider added on receipt; any below it came with the message.
    """
    results = mail.header("Authentication-Results").lower()
    if not results:
        return None
    if "dmarc=fail" in results:
        return "the receiving server's DMARC check failed (a forged From)"
    spf_bad = re.search(r"\bspf=(?:fail|softfail)\b", results) is not None
    if spf_bad and "dkim=pass" not in results:
        return "the receiving server's SPF check failed and no DKIM signature passed"
    return None


# -- people ----------------------------------------------------------------------


def _from_person(reading: _Reading) -> Verdict:
    mail, known = reading.mail, reading.known
    contact = known.contact(mail.sender) if mail.sender else None
    quoted = _first_sent(known, mail.referenced)
    if contact is None and quoted is not None and mail.sender:
        return _someone_else(reading, quoted, mail.sender)
    if contact is None:
        return _stranger(reading, quoted)
    sent = quoted if quoted is not None and quoted.contact_id == contact.id else None
    reply = mailtext.reply_text(reading.text)
    summary = mailtext.first_lines(reply)
    # Before the auto-reply check: a client's generated unsubscribe email may
    # carry automatic headers.
    if _UNSUBSCRIBE_SUBJECT.match(mail.subject):
        reasons = (f"from the contact {contact.email}", "subject 'unsubscribe' (List-Unsubscribe)")
        return Verdict(
            cls="unsubscribe", reasons=reasons, contact=contact, reply=reply, summary=summary
        )
    if _is_receipt(mail.message):
        reasons = (f"from the contact {contact.email}", "a read receipt, not a reply")
        return Verdict(cls="other", reasons=reasons)
    meeting = meetings.read(mail.message, contact.email)
    if meeting is not None:
        when = f": {meeting.start:%Y-%m-%d %H:%M %Z}".rstrip() if meeting.start else ""
        reasons = (f"from the contact {contact.email}", f"a calendar email: {meeting.why}{when}")
        return Verdict(cls="meeting", reasons=reasons, contact=contact, sent=sent, meeting=meeting)
    automatic = autoreply.detect_auto_reply(mail.message, reading.text, received=reading.received)
    if automatic is not None:
        return _automatic(reading, automatic, contact, sent)
    if mailtext.asks_to_stop(reply):
        reasons = (f"from the contact {contact.email}", "its first line asks to stop")
        return Verdict(
            cls="unsubscribe",
            reasons=reasons,
            contact=contact,
            sent=sent,
            reply=reply,
            summary=summary,
        )
    why = f"answers {sent.message_id}" if sent else "a new message"
    reasons = (f"from the contact {contact.email}", why)
    return Verdict(
        cls="reply", reasons=reasons, contact=contact, sent=sent, reply=reply, summary=summary
    )


def _someone_else(reading: _Reading, quoted: SentRef, sender: str) -> Verdict:
    """A message in the thread of an email to a contact, from another address.

    From the contact's own company (the same domain, never a free-mail one)
    it is a colleague answering: a reply for that contact (HubSpot's rule).
    From anywhere else it stops nothing; the rep is told. Automatic answers
    (a colleague's out-of-office) are neither.
    """
    contact = reading.known.contact(quoted.recipient)
    where = f"in the thread of {quoted.message_id}, sent to {quoted.recipient}"
    automatic = autoreply.detect_auto_reply(
        reading.mail.message, reading.text, received=reading.received
    )
    if contact is None or automatic is not None:
        return _stranger(reading, quoted)
    reply = mailtext.reply_text(reading.text)
    company = addresses.same_company(sender, contact.email)
    if company is not None:
        cls, rule = "reply", f"a colleague at the contact's company ({company}): counts as a reply"
    elif addresses.domain_of(sender) == addresses.domain_of(contact.email):
        cls, rule = "other", "a free-mail domain is no company: stops nothing, the rep is told"
    else:
        cls, rule = "other", "another domain than the contact's: stops nothing, the rep is told"
    return Verdict(
        cls=cls,
        reasons=(f"from {sender}, not the contact", where, rule),
        contact=contact if cls == "reply" else None,  # an "other" touches no contact
        sent=quoted,
        reply=reply,
        summary=mailtext.first_lines(reply),
        answered_by=sender,
    )


def _stranger(reading: _Reading, quoted: SentRef | None) -> Verdict:
    mail = reading.mail
    who = mail.sender or "no sender address"
    if quoted is None:
        return Verdict(cls="other", reasons=(f"from {who}: not a contact",))
    reasons = (
        f"quotes {quoted.message_id}, sent to {quoted.recipient}",
        f"but comes from {who}, not from the contact: a forward or a third party",
    )
    return Verdict(cls="other", reasons=reasons, sent=quoted)


def _automatic(
    reading: _Reading,
    automatic: autoreply.AutoReply,
    contact: ContactRef,
    sent: SentRef | None,
) -> Verdict:
    reasons = [*automatic.reasons, f"from the contact {contact.email}"]
    if automatic.out_of_office:
        when = automatic.return_date
        reasons.append(f"back on {when.isoformat()}" if when else "no return date stated")
    return Verdict(
        cls="auto-reply",
        reasons=tuple(reasons),
        contact=contact,
        sent=sent,
        out_of_office=automatic.out_of_office,
        return_date=automatic.return_date,
        summary=mailtext.first_lines(mailtext.reply_text(reading.text)),
    )


# -- helpers ---------------------------------------------------------------------


def _is_receipt(message: EmailMessage) -> bool:
    """A read receipt (RFC 8098 message disposition notification)."""
    if message.get_content_type() != "multipart/report":
        return False
    report_type = str(message.get_param("report-type", "")).lower()
    return report_type == "disposition-notification"


def _first_sent(known: Known, message_ids: Sequence[str]) -> SentRef | None:
    for message_id in message_ids:
        sent = known.sent(message_id)
        if sent is not None:
            return sent
    return None


def _about(sent: SentRef | None, contact: ContactRef) -> str:
    return f"{sent.message_id} sent to {contact.email}" if sent else contact.email
