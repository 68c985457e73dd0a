"""Recognise delivery failure reports (bounces): who failed, with which code, and why.

Two roads, measured on tests/corpus/bounces (see its README):

- RFC 3464 reports (`message/delivery-status`) are read here, field by field:
  recipient, Action (failed or delayed), Status, Diagnostic-Code. Most MTAs and
  providers send these today (Postfix, Sendmail, Courier, Exchange, Office 365,
  Gmail, Yahoo, Amazon SES...).
- Everything else (qmail, old Exim, Gmail's and Domino's plain-text notices,
  Exchange 2003, DragonFly, OpenSMTPD...) goes to flufl.bounce, GNU Mailman's
  detectors, then to our own readers per family of formats (`bounce_formats`)
  for the recipients; status and diagnostic are then read from the text near
  each one.
- Amazon SES notifications (JSON through SNS) are read as such (`ses`).
- A report carried inside another message (a person's "Fwd:", attached or quoted;
  a relay's notice wrapping the whole report) is read as if it had come alone
  (`embedded`), before the wrapper's own words; `Bounce.forwarded` says a person
  forwarded it.

Each failed recipient gets a reason (`bounce_reasons.Reason`) and is hard, soft
(a delay, a full mailbox) or policy (the sender refused: nobody bounces); see
`Failure.bounces_contact` and, for soft failures that last, `gives_up`. Measured
per family on real mail by `python -m bench bounces` (bench/README.md).

Conservative on purpose: a message is only read as a bounce when the envelope
says a mail system sent it (null or MAILER-DAEMON/postmaster sender, or an
X-Failed-Recipients header) and the content agrees (a delivery-status report,
or an MTA's own wording, or a bounce subject). A person's reply, a forward, an
out-of-office or a newsletter lacks one side or the other, whatever words it
quotes. Read receipts and abuse reports are `multipart/report` too, of other
report types, and are never bounces.

`parse_bounce` never raises: real mail is broken in every possible way, and a
message that can't be read is simply not a bounce. Headers and parts are read
through `reading`, which copes with the breakage (tests/unit/test_reading.py).
"""

from __future__ import annotations

import dataclasses
import html
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage, Message

from flufl import bounce as flufl_bounce

from dripd.mail import autoreply, bounce_formats, bounce_reasons, embedded, reading, ses
from dripd.mail.bounce_reasons import Reason

logger = logging.getLogger("dripd.bounces")

DIAGNOSTIC_MAX = 200  # characters of the remote server's words kept per failure
MAX_PART = 1024 * 1024  # characters: bigger text parts are not a notification, skip them
MAX_TEXT = 64 * 1024  # characters of notification text scanned per part
MAX_PARTS = 64  # MIME parts looked at; a bounce has a handful
GIVE_UP_REPORTS = 3  # temporary failures for one address, this one included...
GIVE_UP_AFTER = timedelta(days=7)  # ...spread over at least this long: the address is dead
MAX_DEPTH = 2  # messages inside messages read: a forward of a relay's wrapped report
CARRIED = "inside a forwarded or wrapped message"
WINDOW = 8  # lines after a recipient's line searched for its code and diagnostic

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_REPLY = re.compile(r"(?<![\d.])[45]\d\d(?:[ -]|$).*")
_ADDRESS = re.compile(r"[^@\s<>\"'();,:\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*")
_BARE = re.compile(
    r"[^@\s<>\"()\[\],;:]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*"
)
_LOOSE = re.compile(r"[^@\s<>\"()\[\],;:]+@[^@\s<>\"()\[\],;:]+")
_CONTENT_TYPE = re.compile(r"[a-z0-9.+-]+/[a-z0-9.+-]+")
_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_QUOTED_MSGID = re.compile(r"^[ \t>]*Message-I[Dd]:[ \t]*(<[^<>\s]+@[^<>\s]+>)", re.MULTILINE)
# Any "...id: <x@y>" (a damaged or unusual Message-ID field): an id, never a recipient.
_ANY_ID = re.compile(r"id:[ \t]*(<[^<>\s]+@[^<>\s]+>)", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
_FIELD_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*:", re.MULTILINE)  # ASCII, as the parser reads
_SENDER_FIELDS = ("from", "sender", "return-path", "reply-to", "errors-to")
_QUOTED_SENDER = re.compile(
    r"^[ \t>]*(From|Sender|Return-Path|Reply-To|Errors-To):[ \t]*(.*)$|"
    r"(envelope-from) <?([^>\s)]+)",
    re.IGNORECASE | re.MULTILINE,
)

# Local parts and display names of the mail system's own senders.
_DAEMON_LOCAL = frozenset(
    {
        "mailer-daemon",
        "mailer_daemon",
        "mailerdaemon",
        "mail-daemon",
        "postmaster",
        "post_master",
        "mdaemon",
    }
)
_DAEMON_NAME = re.compile(
    r"mail ?delivery (?:sub)?system|mailer[- _]?daemon|postmaster|mail administrator", re.I
)

# Subjects MTAs give their notices. Anchored: "Re: Undeliverable: ..." is a person.
_BOUNCE_SUBJECT = re.compile(
    r"\s*(?:undeliverable|undelivered mail|mail delivery (?:fail|warning|problem)|"
    r"delivery status notification|returned mail|failure notice|delivery failure|"
    r"non[- ]?deliver|delivery (?:has )?failed|mail could not be delivered|"
    r"delayed mail|warning: could not send|delivery delayed|message delivery delayed|"
    r"fail(?:ure|ed) delivery|"
    r"mail system error|nondeliverable|delivery notification|could not send message|"
    r"メールエラー|配信(?:エラー|不能|失敗)|送信(?:エラー|失敗)|未達|"
    # the same, as Exchange and others write them in German, French, Italian, Spanish, Dutch
    r"unzustellbar|nicht zustellbar|übermittlungsstatusbenachrichtigung|non remis|"
    r"non distribuable|notification d'état de remise|non recapitabile|no se puede entregar|"
    r"no entregado|notificación de estado de entrega|onbestelbaar|mail failure|配信状態の通知)",
    re.I,
)

# A forward's subject: "Fwd: ", "FW: ", "TR: ", "WG: "... before the forwarded one's.
_FORWARDED = re.compile(r"\s*(?:(?:fwd?|fw|tr|wg|rv|enc|doorst)\s*:\s*)+(.*)", re.I)

PLAIN_WORDS = "plain-words failure notice"

# An MTA's own wording, with the label given as a reason.
_MTA_PHRASES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    # plain words run across lines as a notice's text is wrapped: any space is any whitespace
    (label, re.compile(pattern.replace(" ", r"\s+") if label == PLAIN_WORDS else pattern, re.I))
    for label, pattern in (
        ("qmail-style failure notice", r"this is the qmail-send program"),
        ("Postfix-style notice", r"this is the (?:mail system|postfix program) at host"),
        ("Exim-style notice", r"created automatically by mail delivery software"),
        (
            "Sendmail-style notice",
            r"following addresses had (?:permanent fatal errors|"
            r"transient non-fatal errors)|the original message was received at",
        ),
        ("Sendmail-style delay warning", r"could not send message for past|will keep trying"),
        (
            "Gmail-style notice",
            r"delivery to the following recipients? (?:failed|has been delayed)|"
            r"your message wasn't delivered to|address not found|message not delivered",
        ),
        (
            "Exchange-style NDR",
            r"delivery has failed to these recipients|did not reach the "
            r"following recipient|could not be delivered to the following (?:recipient|user)|"
            r"your message .{0,40}couldn't be delivered|delivery to these recipients or groups",
        ),
        ("Domino-style notice", r"was not delivered to:|not listed in (?:domino|public) directory"),
        ("Courier-style notice", r"undeliverable mail|delivery status notification from"),
        ("Yahoo-style notice", r"unable to deliver (?:your )?message to the following address"),
        (
            "generic MTA notice",
            r"could not be delivered to one or more|permanent (?:fatal )?error|"
            r"was undeliverable|message could not be delivered|following (?:recipients?|addresses)"
            r" (?:failed|could not be reached)|unknown (?:user|recipient)|user unknown|"
            r"no such user|mailbox (?:unavailable|full|is full)|delivery failed|"
            r"the following recipients? (?:was|were)? ?not|rejected your message|"
            r"returned to sender|smtp error|remote host said|i was unable to deliver|"
            r"message could not be sent|retry timeout exceeded|host unknown|"
            r"could not be delivered|cannot be delivered|delivery report unavailable|"
            r"delivery of (?:e-?mail|(?:your )?message) to [\s\S]{0,80}?has failed|"
            r"not a valid (?:user|recipient|mailbox)|"
            r"(?:mail|message) (?:was|could) not (?:be )?delivered to the following|"
            r"your (?:mail )?message to the following address",
        ),
        (
            # A free-text notice saying in plain words that delivery to someone failed, in
            # English and in the German, French, Spanish and Japanese phrasings mail systems use.
            PLAIN_WORDS,
            r"delivery to [^\n]{0,80}?(?:has )?(?:failed|was unsuccessful)|"
            r"(?:could not|couldn't|cannot|can't|unable to) deliver (?:your |the )?"
            r"(?:message|mail|e-?mail)? ?to|failed to deliver|"
            r"(?:message|mail) to [^\s@]+@\S+ (?:could not|cannot|can't|was not|has not been) "
            r"(?:be )?delivered|"
            r"konnte nicht (?:zugestellt|ausgeliefert) werden|nicht zugestellt werden konnte|"
            r"zustellung [^\n]{0,80}?fehlgeschlagen|"
            r"n'a pas pu (?:être |etre )?(?:remis|distribu|délivr|livr)|"
            r"n'a pas été (?:remis|distribu|délivr)|impossible de (?:remettre|distribuer|délivrer)|"
            r"échec de (?:la )?(?:remise|distribution|livraison)|"
            r"no (?:se )?(?:pudo|ha podido|puede) (?:ser )?entrega|no (?:fue|ha sido) entregado|"
            r"error (?:en la|de) entrega|"
            r"配信(?:できません|に失敗しました)|送信できませんでした|届けることができませんでした",
        ),
    )
)

_PLAIN_WORDS_PATTERN = dict(_MTA_PHRASES)[PLAIN_WORDS]

_DELAYED = re.compile(
    r"delivery status notification \(delay\)|has been delayed|not yet been delivered|"
    r"will (?:continue|keep) (?:trying|to try)|still trying|could not send message for past|"
    r"will retry|delayed mail|transient non-fatal|this is only a warning|no action is required|"
    # a mailing list's loop alert: a fault of the mail systems, not of the address
    r"duplicated message-id in|loop alert|loop back warning",
    re.I,
)
_SUCCESS = re.compile(
    r"successfully delivered|delivery (?:was )?successful|successful (?:mail )?delivery|"
    r"(?:has|have) been delivered|action: (?:delivered|relayed|expanded)",
    re.I,
)
_FAILURE_WORDS = re.compile(
    r"could not|couldn't|cannot|unable|failed|failure|undeliver|rejected|error|not delivered|"
    r"action: (?:failed|delayed)",
    re.I,
)
# What a mail system writes atop every report of its own, of success too (Postfix's
# "This is the mail system at host"): the phrase's label, and its family's.
_INTRODUCTIONS = frozenset({"Postfix-style notice", "Postfix notice"})
_FAILURE_CODE = re.compile(r"(?<![\d.])(?:[45]\.\d{1,3}\.\d{1,3}(?![\d.])|[45]\d\d[ -])")
_GIVEN_UP = re.compile(
    r"permanent(?:ly)? (?:fatal )?(?:error|failure|failed)|given up|giving up", re.I
)

# A challenge-response system asking the sender to prove they are a person (or saying they
# are on the recipient's list): the wording of Boxbe, Bluebottle, SpamArrest, Sendio,
# ChoiceMail, Mailblocks and the like.
_CHALLENGE = re.compile(
    r"pre-?approved|guest list|(?:allowed|approved|safe|trusted) senders?'? list|"
    r"(?:recipient's|my) (?:allowed|approved|white) ?list|added to .{0,40}(?:allowed|white) ?list|"
    r"(?:verify|confirm|prove) (?:that )?you(?:'re| are)? (?:a )?(?:human|real person|not a"
    r" (?:robot|computer|spammer))|challenge[- ]response|sender verification (?:request|required)",
    re.I,
)

_NULL = frozenset({"<>", "<<>>"})
# report-type of an RFC 3464 report, and of its RFC 6533 (internationalised) form.
_DSN_REPORTS = frozenset({"delivery-status", "global-delivery-status"})
# The report part: RFC 3464's, RFC 6533's, and the x- names some filters give it (XWall).
_STATUS_PARTS = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/xdelivery-status",
        "message/x-delivery-status",
    }
)
# "expired": SendGrid's (and others') word for a message given up on after its retries.
_FAILED_ACTIONS = frozenset({"failed", "failure", "error", "undeliverable", "bounced", "expired"})
_DELAYED_ACTIONS = frozenset({"delayed", "delay"})
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})
_RETURNED = frozenset(
    {
        "message/rfc822",
        "message/global",
        "message/rfc822-headers",
        "text/rfc822-headers",
        "message/global-headers",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One recipient the report says could not be reached."""

    recipient: str  # the address that failed, lower-cased, bare (Original-Recipient first)
    status: str | None  # RFC 3463 enhanced code like "5.1.1" when known
    diagnostic: str  # one line of the remote server's own words, "" if none
    permanent: bool  # True: hard failure; False: delayed / transient, still being retried
    final_recipient: str | None = None  # the DSN's Final-Recipient when it differs from recipient
    reason: Reason = Reason.OTHER

    @property
    def policy(self) -> bool:
        """Refused for the sender's sake (policy, spam, reputation), not for the address."""
        return self.reason is Reason.POLICY

    @property
    def soft(self) -> bool:
        """Temporary for the address: a delay, or a full mailbox (even one reported as 5.2.2:
        people empty their mailboxes). Repeated soft failures become a bounce (`gives_up`)."""
        return not self.policy and (not self.permanent or self.reason is Reason.MAILBOX_FULL)

    @property
    def bounces_contact(self) -> bool:
        """Whether this failure alone ends the address: permanent, not policy, not soft."""
        return self.permanent and not self.policy and not self.soft

    @property
    def kind(self) -> str:
        """'hard', 'soft' (temporary) or 'policy': how `dripd explain` names it."""
        if self.policy:
            return "policy"
        return "soft" if self.soft else "hard"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bounce:
    """A delivery failure report and what it says."""

    failures: tuple[Failure, ...]
    original_message_id: str | None  # "<id@host>" of the returned message, when included
    reasons: tuple[str, ...]  # why this was taken as a bounce, shortest first
    # A person forwarded the report (no mail system sent the outer message): its sender is
    # a person writing, which a contact's own message must stay (see classify).
    forwarded: bool = False


def parse_bounce(msg: EmailMessage) -> Bounce | None:
    """Read `msg` as a delivery failure report; None when it is not one.

    Never raises: any message that can't be read is not a bounce.
    """
    return _parse(msg)


def _parse(msg: Message, depth: int = 0) -> Bounce | None:
    """A report of its own (RFC 3464, SES) first; else a whole report the message carries
    (forwarded, or wrapped by a relay's notice), as it is more exact than the wrapper's
    text; else the message's own text."""
    notice = ses_notice(msg)
    if notice is not None:
        return _from_ses(notice)
    seen = _evidence(msg)
    if seen.report == "feedback-report" or (
        seen.report and seen.report not in _DSN_REPORTS and not seen.envelope
    ):
        return None  # abuse reports, and read receipts from people
    if not (seen.envelope or seen.subject or seen.report or seen.forward):
        return None  # the fast road for ordinary mail: headers only, no part looked at
    parts = list(reading.parts(msg, max_parts=MAX_PARTS))
    addressees: set[str] = set()  # of carried mail systems' messages: never failed recipients
    if depth < MAX_DEPTH and not _has_own_report(seen, parts):
        for inner in embedded.inner_messages(parts):
            found = _parse(inner, depth + 1)
            if found is not None:
                own = _returned_bounce(msg, seen, parts, inner)
                if own is not None:
                    return own
                forwarded = found.forwarded or not seen.envelope
                return dataclasses.replace(
                    found, reasons=(*found.reasons, CARRIED), forwarded=forwarded
                )
            if _report_type(inner) in _DSN_REPORTS:
                return None  # a report, cut or unreadable: the wrapper's words are about it
            if _envelope_evidence(inner) or _BOUNCE_SUBJECT.match(reading.header(inner, "Subject")):
                # a mail system's message (by its sender, or its subject when damage took
                # the sender): whom it was sent to did not fail
                for name in ("To", "Delivered-To", "X-Original-To"):
                    addressees.update(_addresses(reading.header(inner, name)))
    return _read(msg, seen, parts, addressees)


def _returned_bounce(
    msg: Message, seen: _Evidence, parts: list[Message], inner: Message
) -> Bounce | None:
    """A mail system's notice that `inner`, itself a bounce, could not be delivered (a bounce
    of a bounce): read as its own when its words name as failed only the inner bounce's
    addressees. A relay's wrapper or a person's forward names no one of them."""
    addressees = set(_addresses(reading.header(inner, "To")))
    if not seen.envelope or not addressees:
        return None
    own = _read(msg, seen, parts, set())
    if own is None or not {f.recipient for f in own.failures} <= addressees:
        return None
    # The notice's own words must name them: the carried bounce's To: always does, and
    # when damage hid its mail-system sender that To: was read as the returned message's.
    words = bounce_formats.notice(_notification_text(msg, parts)).lower()
    return own if all(f.recipient in words for f in own.failures) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Evidence:
    """What the headers say about who sent a message and what it is."""

    envelope: list[str]  # a mail system sent it (null sender, MAILER-DAEMON...)
    report: str  # multipart/report's report-type, "" if none
    subject: list[str]  # a bounce subject
    forward: bool  # a person's forward of a bounce: "Fwd: Undelivered Mail..."


def _evidence(msg: Message) -> _Evidence:
    subject = reading.header(msg, "Subject")
    forwarded = _FORWARDED.match(subject)
    return _Evidence(
        envelope=_envelope_evidence(msg),
        report=_report_type(msg),
        subject=[f"subject {subject[:60]!r}"] if _BOUNCE_SUBJECT.match(subject) else [],
        forward=bool(forwarded and _BOUNCE_SUBJECT.match(forwarded.group(1))),
    )


def _has_own_report(seen: _Evidence, parts: list[Message]) -> bool:
    """A delivery-status part of its own: then attached messages are what it returns."""
    return seen.report in _DSN_REPORTS or any(p.get_content_type() in _STATUS_PARTS for p in parts)


def _read(
    msg: Message, seen: _Evidence, parts: list[Message], addressees: set[str]
) -> Bounce | None:
    """`msg` itself read as a report, not looking into messages it carries."""
    envelope, report, subject = seen.envelope, seen.report, seen.subject
    statuses = [p for p in parts if p.get_content_type() in _STATUS_PARTS]
    if statuses and (report or envelope):
        blocks = [block for part in statuses for block in _dsn_blocks(part)]
        recipients = [r for r in map(_dsn_recipient, blocks) if r is not None]
        if recipients:  # else its fields name nobody: read the text instead
            return _from_dsn(msg, parts, blocks, recipients, envelope)
    if not (envelope or subject):
        return None
    return _from_text(msg, parts, envelope, subject, addressees)


def gives_up(delays: Iterable[datetime], now: datetime) -> bool:
    """Whether repeated temporary failures of one address count as a bounce (the rule).

    `delays` are the times earlier temporary-failure reports for the address arrived;
    `now` is this one's. A mailbox full for a week is as dead as an unknown user: at
    least GIVE_UP_REPORTS reports, the first GIVE_UP_AFTER or more before this one.
    """
    earlier = [t for t in delays if t <= now]
    if len(earlier) + 1 < GIVE_UP_REPORTS:
        return False
    return now - min(earlier) >= GIVE_UP_AFTER


# --- evidence -------------------------------------------------------------


def _report_type(msg: Message) -> str:
    """multipart/report's report-type; "delivery-status" for a bare report part too (one
    cut out of its multipart/report is the whole message)."""
    declared = reading.raw_header(msg, "Content-Type").lower()
    if "report" not in declared and "delivery-status" not in declared:
        return ""  # the fast road: ordinary mail
    kind = msg.get_content_type()
    if kind == "multipart/report":
        return str(msg.get_param("report-type", "") or "").strip().lower()
    return "delivery-status" if kind in _STATUS_PARTS else ""


def _envelope_evidence(msg: Message) -> list[str]:
    """Signs that a mail system, not a person, sent this."""
    found = []
    if (
        reading.raw_header(msg, "Return-Path").strip() in _NULL
        or reading.raw_header(msg, "From").strip() in _NULL
    ):
        found.append("null sender")
    for name in ("From", "Sender", "Return-Path"):
        value = reading.raw_header(msg, name)
        if _is_daemon(value):
            found.append(f"sender {_first_address(value) or value.strip()[:60]}")
            break
    if reading.header(msg, "X-Failed-Recipients"):
        found.append("X-Failed-Recipients header")
    if _list_server(msg):
        found.append("a list server's notice (fml)")
    return found


def _list_server(msg: Message) -> bool:
    """fml's own notices (a mailing list manager): its X-MLServer header, from the list's
    -admin address. sisimai reads them too; a post relayed by the list is from its poster."""
    server = reading.raw_header(msg, "X-MLServer").strip().lower()
    sender = _first_address(reading.raw_header(msg, "From")) or ""
    return server.startswith("fml") and sender.split("@", 1)[0].endswith("-admin")


def _is_daemon(value: str) -> bool:
    if "=?" in value:  # an encoded display name ("=?utf-8?B?TWFpbCBEZWxpdmVyeS...?=")
        value = reading.decode_words(value)
    address = _first_address(value)
    if address and address.split("@", 1)[0].strip('"\\') in _DAEMON_LOCAL:
        return True
    if address is None and value.strip().lower() in _DAEMON_LOCAL:
        return True  # "From: MAILER-DAEMON" with no domain (local Sendmail)
    name = value.split("<", 1)[0] if "<" in value else ""
    return bool(_DAEMON_NAME.search(name))


def _phrase_evidence(text: str, msg: Message) -> list[str]:
    found = [label for label, pattern in _MTA_PHRASES if pattern.search(text)]
    family = bounce_formats.family(bounce_formats.notice(text))
    found += [f"{family.name} notice"] if family else []
    if found == [PLAIN_WORDS] and (_answers_someone(msg) or _answers_someone(_leaked(text))):
        return []  # a person or their responder saying it in a reply: no mail system's notice
    return found


def _leaked(text: str) -> Message:
    """The message's own header fields that a damaged header block left in its text (from
    the first line that is one: the rest of a cut field may come before)."""
    head = bounce_formats.leaked_headers(text)[0]
    first = _FIELD_LINE.search(head)
    return reading.header_fields(head[first.start() :] + "\n" if first else "")


def _answers_someone(msg: Message) -> bool:
    """A reply in a thread or an auto-reply (by its subject, or `Auto-Submitted:
    auto-replied`, RFC 3834): plain words alone don't make it a notice, as people and
    responders write "could not deliver" too."""
    if reading.raw_header(msg, "In-Reply-To") or reading.raw_header(msg, "References"):
        return True
    if reading.raw_header(msg, "Auto-Submitted").strip().lower().startswith("auto-replied"):
        return True
    return autoreply.auto_reply_subject(reading.header(msg, "Subject"))


# --- Amazon SES notifications ----------------------------------------------


def ses_notice(msg: Message) -> ses.Notice | None:
    """An Amazon SES bounce or complaint notification (JSON, sent through SNS), if `msg` is one."""
    sender = _first_address(reading.raw_header(msg, "From")) or ""
    subject = reading.raw_header(msg, "Subject")
    sns = bool(reading.raw_header(msg, "X-Amz-Sns-Message-Id"))
    if not (sender.endswith(".amazonaws.com") or subject == "AWS Notification Message" or sns):
        return None  # the fast road: only SNS sends these
    text = "\n".join(
        _part_text(p)
        for p in reading.parts(msg, max_parts=MAX_PARTS)
        if p.get_content_type() == "text/plain"
    )
    return ses.read(text)


def _from_ses(notice: ses.Notice) -> Bounce | None:
    if notice.kind != "Bounce" or not notice.recipients:
        return None
    failures = tuple(
        Failure(
            recipient=r.address,
            status=_enhanced(r.status or ""),
            diagnostic=r.diagnostic,
            permanent=notice.permanent,
            reason=bounce_reasons.reason_of(_enhanced(r.status or ""), r.diagnostic),
        )
        for r in notice.recipients
    )
    return Bounce(
        failures=failures, original_message_id=None, reasons=("Amazon SES bounce notification",)
    )


# --- RFC 3464 -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recipient:
    failure: Failure
    action: str


def _from_dsn(
    msg: Message,
    parts: list[Message],
    blocks: list[Message],
    recipients: list[_Recipient],
    envelope: list[str],
) -> Bounce | None:
    """The report's own answer, from its per-recipient fields."""
    failures = _unique(r.failure for r in recipients if r.action in {"failed", "delayed"})
    if not failures:
        return None  # a success report (delivered, relayed, expanded)
    if _challenge(failures, _report_words(msg, parts, blocks)):
        return None
    kind = "multipart/report; report-type=delivery-status"
    reasons = [kind if _report_type(msg) in _DSN_REPORTS else "message/delivery-status part"]
    message_id = _original_message_id(msg, parts, blocks)
    return Bounce(failures=failures, original_message_id=message_id, reasons=(*reasons, *envelope))


def _report_words(msg: Message, parts: list[Message], blocks: list[Message]) -> str:
    """All a report says in words, wherever damage left them: every Diagnostic-Code (a
    blank line may cut one off its recipient's fields), the multipart's preamble (a lost
    first boundary leaves the text there) and its text parts (whatever their type became)."""
    texts = [reading.header(block, "Diagnostic-Code") for block in blocks]
    texts.append((msg.preamble or "")[:MAX_TEXT])
    texts += [
        _part_text(p)
        for p in parts
        if p.get_content_maintype() == "text" and p.get_content_type() not in _RETURNED
    ]
    return "\n".join(texts)


def _dsn_blocks(part: Message) -> list[Message]:
    """The per-message and per-recipient field groups of a message/delivery-status part."""
    if part.is_multipart():
        if part.get_content_type() == "message/delivery-status":
            return [p for p in part.get_payload() if isinstance(p, Message)]
        # Other names for it (message/global-delivery-status, message/xdelivery-status)
        # parse as one message whose body holds the per-recipient groups: read it back as
        # text (RFC 6533's is UTF-8).
        text = reading.decode_bytes(reading.part_bytes(part), "utf-8")
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else reading.payload(part)
    groups = re.split(r"\r?\n[ \t]*\r?\n", text[:MAX_TEXT])
    return [reading.header_fields(group.strip() + "\n") for group in groups if group.strip()]


def _dsn_recipient(block: Message) -> _Recipient | None:
    original = _dsn_address(reading.header(block, "Original-Recipient"))
    final = _dsn_address(reading.header(block, "Final-Recipient")) or _dsn_address(
        reading.header(block, "X-Actual-Recipient")
    )
    recipient = original or final
    if recipient is None:
        return None
    status_field = reading.header(block, "Status")
    status = _enhanced(status_field)
    action = _action(reading.header(block, "Action"), status or status_field.strip()[:1])
    diagnostic = _diagnostic(reading.header(block, "Diagnostic-Code"))
    failure = Failure(
        recipient=recipient,
        status=status,
        diagnostic=diagnostic,
        permanent=action != "delayed",
        final_recipient=final if final and final != recipient else None,
        reason=bounce_reasons.reason_of(status, diagnostic),
    )
    return _Recipient(failure=failure, action=action)


def _dsn_address(value: str) -> str | None:
    """A DSN recipient field's address; one no mail server could deliver to (a domain
    starting with `#`, as a mistyped or anonymised one) is still the one the report names."""
    found = _bare(value)
    if found is not None:
        return found
    kind, sep, rest = value.strip().partition(";")
    loose = _LOOSE.fullmatch((rest if sep and "@" not in kind else value).strip().strip("<>"))
    return loose.group(0).lower() if loose else None


def _action(value: str, status_class: str) -> str:
    """'failed', 'delayed' or a success action; MTAs also write 'failure', 'error'..."""
    words = value.strip().lower().split()
    action = words[0] if words else ""
    if action in _FAILED_ACTIONS or (action not in _SUCCESS_ACTIONS and status_class[:1] == "5"):
        return "failed"
    if action in _DELAYED_ACTIONS or (action not in _SUCCESS_ACTIONS and status_class[:1] == "4"):
        return "delayed"
    return action


def _diagnostic(value: str) -> str:
    text = " ".join(value.split())
    kind, sep, rest = text.partition(";")
    if sep and " " not in kind.strip():
        text = rest.strip()  # "smtp; 550 ..." -> "550 ..."
    return text[:DIAGNOSTIC_MAX]


# --- plain-text notices ---------------------------------------------------


def _from_text(
    msg: Message,
    parts: list[Message],
    envelope: list[str],
    subject: list[str],
    addressees: set[str],
) -> Bounce | None:
    text = _notification_text(msg, parts)
    if _SUCCESS.search(text) and not _FAILURE_WORDS.search(text):
        return None  # a delivery report that says it worked, its report part unreadable
    content = [*_phrase_evidence(text, msg), *subject]
    if not _enough(envelope, subject, content, _looks_personal(msg)):
        return None
    if content and set(content) <= _INTRODUCTIONS and not _states_failure(text, envelope):
        return None  # a mail system's introduction, and nothing said of a failure
    worded = len(content) > len(subject)
    plain = [c for c in content if c not in subject] == [PLAIN_WORDS]
    failures = _text_failures(msg, parts, text, addressees, worded=worded, plain=plain)
    if not failures:
        return None  # nobody named as failed: an auto-reply from a mail system, or unreadable
    if _challenge(failures, text):
        return None
    message_id = _original_message_id(msg, parts, [], text)
    return Bounce(failures=failures, original_message_id=message_id, reasons=(*content, *envelope))


def _states_failure(text: str, envelope: list[str]) -> bool:
    """Whether a notice whose only words are a mail system's introduction of itself says
    anything failed: X-Failed-Recipients, failure or delay words, a 4.x.x/5.x.x status or a
    4xx/5xx reply. Postfix's "This is the mail system at host" also opens its success
    reports: one whose report and words damage destroyed is no bounce."""
    if "X-Failed-Recipients header" in envelope:
        return True
    return bool(_FAILURE_WORDS.search(text) or _DELAYED.search(text) or _FAILURE_CODE.search(text))


def _challenge(failures: tuple[Failure, ...], text: str) -> bool:
    """A challenge-response system's request (Boxbe, Bluebottle...): the message waits until
    the sender proves they are a person. An auto-reply, not a failure of the address; unless
    some recipient failed for good (a 5.x.x refusal naming an allow list is a policy bounce)."""
    if any((f.status or "").startswith("5") for f in failures):
        return False
    return bool(_CHALLENGE.search(bounce_formats.notice(text)))


def _enough(envelope: list[str], subject: list[str], content: list[str], personal: bool) -> bool:
    """Whether a notice without a delivery-status report may be a bounce at all.

    A mail system's own sender (MAILER-DAEMON, postmaster, X-Failed-Recipients) is
    enough, as the recipients must still be found in its text by an MTA-specific
    detector. A null sender needs the content to agree. Without either, it takes a
    bounce subject (never "Re:"/"Fwd:"), an MTA's wording, and nothing of a person's
    or a list's mail (threading, List-* headers).
    """
    if any(not reason.startswith("null sender") for reason in envelope):
        return True
    if envelope:
        return bool(content)
    return bool(subject) and len(content) > len(subject) and not personal


def _looks_personal(msg: Message) -> bool:
    """A reply in a thread, or list/bulk mail: what a mail system's notice never is."""
    if any(reading.raw_header(msg, name) for name in ("In-Reply-To", "References", "List-Id")):
        return True
    if reading.raw_header(msg, "List-Unsubscribe"):
        return True
    return reading.raw_header(msg, "Precedence").lower() in {"bulk", "list"}


def _text_failures(
    msg: Message,
    parts: list[Message],
    text: str,
    addressees: set[str],
    *,
    worded: bool,
    plain: bool = False,
) -> tuple[Failure, ...]:
    """The failed recipients named by the notice; its own words are needed for the fallback.
    `plain`: its only words are plain ones (no MTA's, no family's): only the addresses they
    are said of count (`bounce_formats.stated`)."""
    temporary, permanent = _flufl_failures(msg)
    listed = _addresses(reading.header(msg, "X-Failed-Recipients"))
    ours = _our_addresses(msg, text) | addressees
    found = _unique_strings([*listed, *permanent, *temporary])
    recipients = [
        a for a in found if (a in listed or a not in ours) and not bounce_formats.is_mail_system(a)
    ]  # X-Failed-Recipients is the MTA's own word, even for a message sent to oneself
    if not recipients and plain:
        recipients = bounce_formats.stated(text, _PLAIN_WORDS_PATTERN, ours)
    elif not recipients and worded:
        recipients = bounce_formats.recipients(text, ours) or _returned_to(parts, ours)
    if not recipients:  # a mail system's subject: "Your message to <a> could not be delivered"
        subject = reading.header(msg, "Subject")
        recipients = bounce_formats.stated(subject, _PLAIN_WORDS_PATTERN, set())
    lines = text.splitlines()
    delayed = bool(_DELAYED.search(text)) and not _GIVEN_UP.search(text)
    # With one recipient, the whole notice is about it: its words count where its lines don't.
    context = bounce_formats.notice(text) if len(recipients) == 1 else ""
    failures = (
        _text_failure(address, lines, recipients, address in temporary or delayed, context)
        for address in recipients
    )
    kept = (f for f in failures if not (f.status or "").startswith("2"))  # 2.x.x: delivered
    return _unique(_as_sent(kept, bounce_formats.expansions(text)))


def _as_sent(failures: Iterable[Failure], expanded: dict[str, str]) -> Iterable[Failure]:
    """Each failure under the address the message was sent to, when the notice says the
    failed one is an alias expanded from it (the expanded one kept as `final_recipient`)."""
    for failure in failures:
        original = expanded.get(failure.recipient)
        if original is None:
            yield failure
        else:
            yield dataclasses.replace(
                failure, recipient=original, final_recipient=failure.recipient
            )


def _flufl_failures(msg: Message) -> tuple[list[str], list[str]]:
    """flufl.bounce's detectors (GNU Mailman's): temporary and permanent recipients."""
    try:
        temporary, permanent = flufl_bounce.all_failures(msg)
    except (IndexError, ValueError, AttributeError):
        # What its detectors meet in hostile mail: an empty From indexed (yale), an 8-bit
        # body whose charset parameter holds a NUL (the stdlib's get_payload), a damaged
        # From: the stdlib's header registry parses as a group (sina's msg.get("from")).
        logger.debug("flufl.bounce failed on a message", exc_info=True)
        return [], []
    return _decoded(temporary), _decoded(permanent)


def _decoded(found: Iterable[bytes]) -> list[str]:
    out = []
    for raw in found:
        address = _bare(raw.decode("utf-8", "replace")) if isinstance(raw, bytes) else None
        if address:
            # Exchange 2003 writes "SMTP=<address> on <date>"; its detector keeps the prefix.
            out.append(address.removeprefix("smtp="))
    return sorted(out)


def _our_addresses(msg: Message, text: str) -> set[str]:
    """Addresses that are not failed recipients: ours (To...) and Message-ID look-alikes."""
    ours: set[str] = set()
    for name in ("To", "Cc", "Delivered-To", "Return-Path", "From"):
        ours.update(_addresses(reading.header(msg, name)))
    for found in (*_MSGID.findall(reading.header(msg, "Message-ID")), *_ANY_ID.findall(text)):
        ours.update(_addresses(found))
    # The returned message's sender fields, up to the first field seen twice: from there
    # on they are mail the returned message quotes or carries (a reply quoting the
    # contact's own message, a list's answer carrying the command mail it answers), whose
    # sender may be the very address that failed. Every Received's envelope-from counts.
    seen: set[str] = set()
    for field, line, _, envelope in _QUOTED_SENDER.findall(text):
        if envelope:
            ours.update(_addresses(envelope))
        elif field.lower() not in seen and len(seen) < len(_SENDER_FIELDS):
            seen.add(field.lower())
            ours.update(_addresses(line)[:1])
        else:
            seen = set(_SENDER_FIELDS)  # another message's headers: no more of ours
    return ours


def _text_failure(
    address: str, lines: list[str], others: list[str], delayed: bool, context: str
) -> Failure:
    window = _window(address, lines, others)
    statuses = [s for s in map(_enhanced, window) if s]
    # A transcript says "250 2.1.5 Ok" to the recipient before the failure after DATA.
    status = next((s for s in statuses if s[0] != "2"), statuses[0] if statuses else None)
    diagnostic = next((m.group(0) for m in map(_SMTP_REPLY.search, window) if m), "")
    words = " ".join(diagnostic.split())[:DIAGNOSTIC_MAX]
    return Failure(
        recipient=address,
        status=status,
        diagnostic=words,
        permanent=not delayed,
        reason=_text_reason(status, " ".join(window), context),
    )


def _text_reason(status: str | None, window: str, context: str) -> Reason:
    reason = bounce_reasons.reason_of(status, window)
    if reason is Reason.OTHER and context:
        return bounce_reasons.reason_of(status or _enhanced(context), context)
    return reason


def _window(address: str, lines: list[str], others: list[str]) -> list[str]:
    """The lines from the first mention of `address` up to the next failed recipient."""
    lowered = [line.lower() for line in lines]
    start = next((i for i, line in enumerate(lowered) if address in line), None)
    if start is None:
        return []
    window = [lines[start]]
    for i in range(start + 1, min(len(lines), start + WINDOW)):
        if any(other != address and other in lowered[i] for other in others):
            break
        window.append(lines[i])
    return window


# --- text, parts and the returned message ---------------------------------


def _notification_text(msg: Message, parts: list[Message]) -> str:
    """The human-readable notice: text/plain parts, else text/html with tags removed."""
    plain = [_part_text(p) for p in parts if _text_type(p) == "text/plain"]
    if any(plain):
        return "\n".join(plain)
    markup = [_part_text(p) for p in parts if _text_type(p) == "text/html"]
    if any(markup):
        return "\n".join(html.unescape(_TAG.sub(" ", m)) for m in markup)
    # A multipart whose boundary matches none of its lines: its whole body is text.
    return "\n".join(
        reading.payload(p)[:MAX_TEXT]
        for p in parts
        if p.is_multipart() is False and p.get_content_maintype() == "multipart"
    )


def _text_type(part: Message) -> str:
    """The part's content type, without what damage appended to it ("text/plain<>")."""
    match = _CONTENT_TYPE.match(part.get_content_type())
    return match.group(0) if match else ""


def _part_text(part: Message) -> str:
    if len(reading.payload(part)) > MAX_PART:
        return ""
    return reading.part_text(part, MAX_TEXT)


def _original_message_id(
    msg: Message, parts: list[Message], blocks: list[Message], text: str | None = None
) -> str | None:
    """Message-ID of the returned message: attached, its headers, the DSN, or quoted text."""
    for part in parts:
        found = _returned_headers_id(part)
        if found:
            return found
    for block in blocks:
        found = _first_msgid(reading.header(block, "X-Original-Message-ID"))
        if found:
            return found
    if text is None:
        text = _notification_text(msg, parts)
    quoted = _QUOTED_MSGID.search(text)
    if quoted:
        return quoted.group(1)
    return _first_msgid(reading.header(msg, "In-Reply-To"))


def _returned_headers_id(part: Message) -> str | None:
    headers = _returned_headers(part)
    return _first_msgid(reading.header(headers, "Message-ID")) if headers is not None else None


def _returned_to(parts: list[Message], ours: set[str]) -> list[str]:
    """A notice that names nobody ("Delivery report unavailable") was about the message it
    returns: the one To: address of the attached returned message, when there is one."""
    for part in parts:
        headers = _returned_headers(part)
        if headers is not None:
            return bounce_formats.sole_recipient(reading.header(headers, "To"), ours)
    return []


def _returned_headers(part: Message) -> Message | None:
    """The returned message (or its headers) a report part carries; None for other parts."""
    if part.get_content_type() not in _RETURNED:
        return None
    inner = reading.attached(part)
    if inner is not None:  # the parser made a message of it: message/rfc822...
        return inner
    return reading.header_fields(_part_text(part))


# --- small readers --------------------------------------------------------


def _bare(value: str) -> str | None:
    """'rfc822; <Bob@X.com>' -> 'bob@x.com'; None when it is not an address."""
    text = value.strip()
    kind, sep, rest = text.partition(";")
    if sep and "@" not in kind:
        text = rest
    match = _BARE.search(text.strip().strip("<>").strip())
    return match.group(0).lower().rstrip(".") if match else None


def _addresses(value: str) -> list[str]:
    return [a.lower().rstrip(".") for a in _ADDRESS.findall(value)]


def _first_address(value: str) -> str | None:
    found = _addresses(value)
    return found[0] if found else None


def _first_msgid(value: str) -> str | None:
    match = _MSGID.search(value)
    return match.group(0) if match else None


def _enhanced(value: str) -> str | None:
    match = _ENHANCED.search(value)
    return ".".join(match.groups()) if match else None


def _unique(failures: Iterable[Failure]) -> tuple[Failure, ...]:
    """One failure per recipient; a hard failure wins over a delay for the same address."""
    by_recipient: dict[str, Failure] = {}
    for failure in failures:
        known = by_recipient.get(failure.recipient)
        if known is None or (failure.permanent and not known.permanent):
            by_recipient[failure.recipient] = failure
    return tuple(by_recipient.values())


def _unique_strings(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
