"""Plain-text delivery notices: one small reader per family of formats, then a fallback.

A notice without a machine-readable report (RFC 3464) names its failed
recipients in its own words. Each `Format` below is one family: the wording
that identifies it, and where it puts the address. They were learned from the
formats' public descriptions (sisimai's documentation, sample set and per-family
modules, GNU Mailman's detectors); the patterns are ours. When no family names anyone, the
fallback takes the addresses written in the notice itself, above the returned
message, that are neither ours nor a mail system's; as the last resort, the one
To: address of the returned message.

Pure: text in, addresses out. `bounces` decides whether the message is a
notice at all before asking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDR = r"[^@\s<>\"'();,:\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]"
_ADDRESS = re.compile(_ADDR)


@dataclass(frozen=True, slots=True, kw_only=True)
class Format:
    """A family of notices: its own wording, and the lines that name a failed recipient."""

    name: str
    marker: re.Pattern[str]
    recipient: re.Pattern[str]  # group 1 is the address


def _format(name: str, marker: str, recipient: str) -> Format:
    flags = re.IGNORECASE | re.MULTILINE
    return Format(
        name=name, marker=re.compile(marker, flags), recipient=re.compile(recipient, flags)
    )


FORMATS: tuple[Format, ...] = (
    _format(
        "SendGrid",  # its report's fields, or its own "local:id:<address> : ..." line, as text
        r"automatically generated message from sendgrid",
        rf"^\s*Final-Recipient:\s*rfc822;\s*<?({_ADDR})>?|^[^\s:]+:\d+:<({_ADDR})>",
    ),
    _format(
        "DragonFly",
        r"dragonfly mail agent|there was an error delivering your mail to",
        rf"error delivering your mail to <?({_ADDR})>?",
    ),
    _format(
        "OpenSMTPD",
        r"following list of recipients|this is the mailer-daemon at",
        rf"^\s*<?({_ADDR})>?:\s",
    ),
    _format(
        "Postfix",
        r"this is the (?:mail system|postfix program) at host",
        rf"^\s*<({_ADDR})>(?: \(expanded from <[^>]*>\))?:",
    ),
    _format(
        "qmail",
        r"this is the qmail-send program|i'm afraid i wasn't able to deliver",
        rf"^\s*<({_ADDR})>:",
    ),
    _format(
        "Exim",
        r"created automatically by mail delivery software|message that you sent could not be|"
        # Exim refusing a submitted message's badly written recipient field
        r"recipient addresses that were\s+incorrectly constructed",
        rf"^\s+<?({_ADDR})>?(?:\s*$|\s*\n?\s*(?:SMTP error|host |mailbox|retry|unrouteable|all ))|"
        # "  <field as written> <address>: malformed address: ...": the address in brackets
        rf"^\s+[^<\n]*<({_ADDR})>:\s",
    ),
    _format(
        "SMTP session transcript",  # Postfix's "errors from" report, Apache James' details
        r"^\s*in:\s+rcpt to:|^\s*message details:",
        rf"rcpt to:\s*<?({_ADDR})>?",
    ),
    _format(
        "Sendmail",
        r"transcript of session follows|the original message was received at|"
        r"following addresses had (?:permanent|transient)",
        rf"^\s*<({_ADDR})>(?:\s*\(.*\))?\s*$|^\s*(?:\d{{3}}[ -]|\.\.\. ?)?<?({_ADDR})>?\.\.\. |"
        # older Sendmail: the address alone; some (sisimai's "X1") "<address> [<reason>]"
        rf"^({_ADDR})\s*$|^\s*({_ADDR})\s+\[[^\]\n]*\]\s*$",
    ),
    _format(
        "Exchange",
        r"delivery has failed to these recipients|did not reach the following recipient|"
        r"couldn't be delivered|could not be delivered to the following",
        # Exchange 2003 writes "SMTP=<address> on <date>" or "<address> on <date>".
        rf"^\s*(?![\w-]+:)(?:SMTP=)?(?:[^<\n]*<)?({_ADDR})>?\s*(?:\son\s|$)|^\s*({_ADDR})\s*$",
    ),
    _format(
        "Lotus Notes / Domino",
        r"-{3,}\s*failure reasons\s*-{3,}|was not delivered to:|domino directory|lotus smtp|"
        r"lotus notes|not listed in public name",
        rf"^\s*<?({_ADDR})>?\s*$|was not delivered to:\s*\n?\s*<?({_ADDR})>?",
    ),
    _format(
        "Oracle Messaging Server / PMDF",
        r"this report relates to a message you sent|"
        r"cannot be delivered to the following recipients",
        rf"^\s*Recipient address:\s*<?({_ADDR})>?",
    ),
    _format(
        "Amazon WorkMail / SES",
        r"an error occurred while trying to deliver the mail to the following recipients",
        rf"following recipients:\s*\n\s*<?({_ADDR})>?|Final-Recipient:\s*rfc822;\s*<?({_ADDR})>?",
    ),
    _format(
        "Yahoo",
        r"unable to deliver (?:your )?message to the following address",
        rf"^\s*<({_ADDR})>:",
    ),
    _format(
        "Gmail",
        r"delivery to the following recipients? (?:failed|has been delayed)|"
        r"your message wasn't delivered to|address not found",
        rf"(?:wasn't delivered to|couldn't be delivered to|failed permanently:|"
        rf"following recipients? failed[^\n]*:)\s*\n?\s*<?({_ADDR})>?",
    ),
    _format(
        "Courier",
        r"courier mail server|this is a delivery status notification from",
        rf"^<({_ADDR})>:",
    ),
    _format(
        "MessageLabs / Symantec",
        r"messagelabs|symantec email security",
        rf"^\s*<?({_ADDR})>?\s*$",
    ),
    _format(
        # the address alone on a line, then "-------server message", "-------SMTP command"
        "m-FILTER",
        r"^-{5,}\s*(?:server message|smtp command|original mail info)",
        rf"^\s*<?({_ADDR})>?\s*$",
    ),
    _format(
        "IMail",  # "<what happened>: <address>", or "undeliverable to <address>"
        r"body of message generated response|^\s*undeliverable to\s|"
        r"^\s*(?:unknown user|user mailbox exceeds allowed size|invalid final delivery userid|"
        r"delivery failed \d+ attempts?):",
        rf"^\s*(?:unknown user|user mailbox exceeds allowed size|invalid final delivery userid|"
        rf"delivery failed \d+ attempts?|undeliverable to)[:\s]\s*<?({_ADDR})>?",
    ),
    _format(
        "InterScan / mail filters",
        r"interscan|m-filter|mailmarshal|surfcontrol",
        rf"RCPT TO:\s*<({_ADDR})>|^\s*<?({_ADDR})>?\s*$",
    ),
    _format(
        "Japanese mobile carriers",
        r"au one net|ezweb mail|could not be delivered to:\s*<|"
        r"following recipients was rejected by a remote mail server|"
        r"the user\(s\) account is|your message was not delivered within",
        rf"could not be delivered to:\s*<?({_ADDR})>?|^\s*<?({_ADDR})>?\s*$|"
        rf"^\s*Recipient:\s*<({_ADDR})>",
    ),
    _format(
        # Dovecot's delivery agent (LDA/LMTP) refusing a message, often as a disposition
        # notification: "Your message to <address> was automatically rejected:" then why
        "Dovecot delivery agent",
        r"your message to <[^>\n]+> was automatically rejected",
        rf"your message to <({_ADDR})> was automatically rejected",
    ),
    _format(
        # fml (a mailing list manager): "Duplicated Message-ID in <address>.", "You are not
        # a member of this mailing list <address>.", then "Original mail as follows:"
        "fml",
        r"duplicated message-id in <|not a member of this mailing list|"
        r"not member article from|has detected a loop condition",
        rf"<({_ADDR})>",
    ),
    _format(
        "Verizon / MMS gateways",
        r"message could not be delivered to mobile|mmsc|no valid recipients",
        rf"^\s*To:\s*(?:[^<\n]*<)?({_ADDR})",
    ),
)

# Where the notice ends and the returned message (or its headers) begins.
_RETURNED = re.compile(
    r"^[ \t>|-]*(?:-{2,}|={2,}|\*{2,})?[ \t]*(?:original message|unsent message|"
    r"returned message|undelivered message|message headers follow|headers of the original|"
    r"below (?:this line )?is a copy|this is a copy of|copy of the original|"
    r"original message headers|message headers|returned mail|rfc822|unsent message follows|"
    # further ways notices introduce what they return (the ends sisimai's RFC 3464 reader knows)
    r"here is a copy of the first part|the non-delivered message is attached|"
    r"(?:the )?attachment (?:is a copy of the message|contains the original mail headers)|"
    r"message text follows|your message reads \(in part\)|a copy of the original message below|"
    r"original mail as follows)"
    r"|^(?:Received|Return-Path|Message-I[Dd]|DKIM-Signature): "
    # the returned message's header block: two of its fields at the margin, a line apart
    r"|^(?:From|To|Cc|Subject|Date): [^\n]*\n(?:[^\n]*\n)?(?:From|To|Cc|Subject|Date|"
    r"MIME-Version|Content-Type): ",
    re.IGNORECASE | re.MULTILINE,
)
# An mbox "From " line: a relay's notice writing out the message it returns. The notice's
# own words end there, even when damage left the first header fields below unrecognisable
# (the returned message itself is still found by its fields, `_RETURNED`).
_MBOX_LINE = re.compile(
    r"^From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    r"Nov|Dec) ",
    re.MULTILINE,
)
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_HEADER_FIELD = re.compile(r"[A-Za-z][\w-]*:[ \t]")
# Fields of the notice's own header, never of a report's text (Final-Recipient, Action...).
_LEAKED_HEADER = re.compile(r"^(?:Message-I[Dd]|Content-Type|MIME-Version|Subject):", re.M)
_LEAKED_MULTIPART = re.compile(r"^Content-Type:[ \t]*multipart/", re.IGNORECASE | re.MULTILINE)
_NULL_RETURN_PATH = re.compile(r"^[ \t>]*Return-Path:[ \t]*<>", re.IGNORECASE | re.MULTILINE)
_FROM_LINE = re.compile(r"^[ \t>]*From:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)
# Lines of a notice that name mail systems or people, never a failed recipient.
_NOT_RECIPIENT_LINE = re.compile(
    r"^\s*(?:from|reply-to|sender|return-path|reporting-mta|received|by|message-id|"
    r"x-[\w-]+|arrival-date|dsn;|mail from)\b|"
    r"^[ \t>]*(?:to|cc|bcc|subject|date|delivered-to|references|in-reply-to):|"
    r"please (?:contact|include|send)|"
    r"for (?:further )?(?:assistance|help)|contact (?:your|the) |postmaster|"
    r"mail(?:er)?[-_ ]?daemon",
    re.IGNORECASE,
)
# Mail systems' own senders: never a failed recipient, however a notice is damaged.
_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_]?daemon|mail-daemon|mdaemon|microsoftexchange[0-9a-f]*)$", re.IGNORECASE
)
# Mailboxes of a site's staff: a free-text notice names them as contacts, not as failures.
_SYSTEM_LOCAL = re.compile(
    r"^(?:postmaster|abuse|root|nobody|noreply|no-reply|support|help|hostmaster|webmaster|"
    r"sysadmin)$",
    re.IGNORECASE,
)


def family(text: str) -> Format | None:
    """The family whose wording this notice has, first found in `FORMATS` order."""
    return next((f for f in FORMATS if f.marker.search(text)), None)


def notice(text: str) -> str:
    """The notice itself: the text above the returned message."""
    text = _after_leaked_headers(text)
    ends = [m.start() for m in (_RETURNED.search(text), _MBOX_LINE.search(text)) if m]
    return text[: min(ends)] if ends else text


def _after_leaked_headers(text: str) -> str:
    """The text without the notice's own header fields leaked into it (a damaged header
    block ends early and the parser reads the rest as the body): their Message-ID: would
    look like the returned message's start, and the notice would seem to be empty.
    Not when they declare a multipart: the rest is then raw MIME (a report's parts, a
    success report's too), which no reader here can take apart."""
    head, rest = leaked_headers(text)
    return rest if head and not _LEAKED_MULTIPART.search(head) else text


def leaked_headers(text: str) -> tuple[str, str]:
    """The notice's own header fields leaked at the start of `text`, and what follows them;
    ("", text) when the text starts otherwise."""
    start = text.lstrip("\r\n")
    found = _BLANK_LINE.search(start)
    if found is None or not _LEAKED_HEADER.search(start[: found.start()]):
        return "", text
    head = start[: found.start()]
    lines = [line for line in head.splitlines() if line.strip()]
    fields = sum(bool(_HEADER_FIELD.match(line)) for line in lines)
    return (head, start[found.end() :]) if fields >= 2 and fields * 2 >= len(lines) else ("", text)


def recipients(text: str, ours: set[str]) -> list[str]:
    """The failed recipients this notice names: by its family's rule, else the fallback.

    As the very last resort, the family's rule may name one of `ours`: a message sent to
    oneself, or a redacted sample whose every address reads the same, bounces all the same.
    """
    own = notice(text)
    found = family(own)
    named = _groups(found.recipient, own) if found is not None else []
    return (
        _clean(named, ours, system=True)
        or fallback(own, ours)
        or returned_recipient(text, ours)
        or _clean(named, set(), system=True)
    )


# An alias the receiving server expanded: Sendmail's "<final>\n (reason: ...)\n (expanded
# from: <original>)", Postfix's "<final> (expanded from <original>):". The original is the
# address the message was sent to (as a DSN's Original-Recipient).
_EXPANDED = re.compile(
    rf"^[ \t]*<?({_ADDR})>?[ \t]*\n(?:[ \t]+\([^\n]*\)[ \t]*\n){{0,2}}?"
    rf"[ \t]+\(expanded from:?[ \t]*<?({_ADDR})>?\)|"
    rf"<({_ADDR})>[ \t]+\(expanded from[ \t]*<({_ADDR})>\)",
    re.IGNORECASE | re.MULTILINE,
)


def expansions(text: str) -> dict[str, str]:
    """Expanded alias -> the address it was expanded from, as the notice itself says."""
    found: dict[str, str] = {}
    for match in _EXPANDED.finditer(notice(text)):
        final, original = match.group(1) or match.group(3), match.group(2) or match.group(4)
        if final.lower() != original.lower():
            found.setdefault(final.lower(), original.lower())
    return found


def returned_recipient(text: str, ours: set[str]) -> list[str]:
    """The last resort: the one To: address of the returned message quoted below the notice.

    Only when it names exactly one address that is not ours: a notice that names nobody
    (an MMS gateway, an old Sendmail giving up) was about the message it returns.
    """
    head, rest = leaked_headers(text)
    if _LEAKED_MULTIPART.search(head):
        return []  # raw MIME below the notice's own fields: its To: would be the first found
    start = _RETURNED.search(rest)
    if start is None:
        return []
    returned = rest[start.start() :]
    if _from_mail_system(returned):
        return []  # a mail system's own notice wrapped whole: its To: is no failed recipient
    to = re.search(r"^[ \t>]*To:[ \t]*(.*)$", returned, re.IGNORECASE | re.MULTILINE)
    return sole_recipient(to.group(1), ours) if to else []


def sole_recipient(to: str, ours: set[str]) -> list[str]:
    """The one address of a returned message's To: that is not ours; [] if not exactly one."""
    found = _clean(_ADDRESS.findall(to), ours, system=True)
    return found if len(found) == 1 else []


def stated(text: str, phrase: re.Pattern[str], ours: set[str]) -> list[str]:
    """The addresses a plain-words notice says failed: in the paragraph that says it
    ("Delivery to <a> failed permanently"), or in a list of addresses alone right after it
    ("... could not be delivered to the following recipient:" then the list). Stricter than
    the fallback, as the words alone are all there is: a responder's "cannot deliver your
    message to the team; write to <a>" names someone to write to, not a failure."""
    paragraphs = _BLANK_LINE.split(notice(text))
    for i, paragraph in enumerate(paragraphs):
        if not phrase.search(paragraph):
            continue
        found = fallback(paragraph, ours)
        if found:
            return found
        following = paragraphs[i + 1] if i + 1 < len(paragraphs) else ""
        lines = [line.strip() for line in following.splitlines() if line.strip()]
        if lines and all(_LISTED.fullmatch(line) for line in lines):
            return _clean(_ADDRESS.findall(following), ours, system=False)
    return []


_LISTED = re.compile(rf"[-*•]?\s*<?{_ADDR}>?[.,;]?")


def fallback(own: str, ours: set[str]) -> list[str]:
    """Addresses written in a free-text notice, on lines that don't name a mail system,
    nor quote the returned message's header fields."""
    candidates: list[str] = []
    for line in _own_lines(own):
        if _NOT_RECIPIENT_LINE.search(line):
            continue
        candidates.extend(_ADDRESS.findall(line))
    return _clean(candidates, ours, system=False)


# A notice's words introducing the returned message's header fields, which it then quotes
# (Oracle's and PMDF's "This report relates to a message you sent with the following
# header fields:", its start enough when damage cut the rest): what follows them is the
# message's Message-ID, From, To...
_QUOTES_HEADERS = re.compile(
    r"header fields?\b|^\s*this report relates to a message you sent", re.IGNORECASE
)


def _own_lines(own: str) -> list[str]:
    """The notice's lines without the header fields it quotes: a line introducing them, and
    what follows up to the end of the next paragraph (a blank line may be lost to damage,
    joining a field to the line that introduced it)."""
    lines: list[str] = []
    quoting = seen = False
    for line in own.splitlines():
        if _QUOTES_HEADERS.search(line):
            quoting, seen = True, False
        elif quoting and line.strip():
            seen = True
        elif quoting and seen:
            quoting = False
        if not quoting:
            lines.append(line)
    return lines


def _from_mail_system(headers: str) -> bool:
    """Whether the header block starting `headers` is a mail system's: a null Return-Path,
    or a From: of MAILER-DAEMON, postmaster and the like."""
    block = headers.replace("\r", "").split("\n\n", 1)[0]
    if _NULL_RETURN_PATH.search(block):
        return True
    sender = _FROM_LINE.search(block)
    return sender is not None and any(map(_mail_system_or_staff, _ADDRESS.findall(sender.group(1))))


def _mail_system_or_staff(address: str) -> bool:
    local = address.split("@", 1)[0]
    return bool(_DAEMON_LOCAL.match(local) or _SYSTEM_LOCAL.match(local))


def is_mail_system(address: str) -> bool:
    """A mail system's own sender (MAILER-DAEMON, MDaemon…): never a failed recipient."""
    return bool(_DAEMON_LOCAL.match(address.split("@", 1)[0]))


def _groups(pattern: re.Pattern[str], text: str) -> list[str]:
    found: list[str] = []
    for match in pattern.finditer(text):
        found.extend(g for g in match.groups() if g)
    return found


def _clean(addresses: list[str], ours: set[str], *, system: bool) -> list[str]:
    """Lower-cased, once each, without ours; `system`: keep postmaster@ and the like
    (a family's own recipient line may name one; free text names them as contacts)."""
    out: list[str] = []
    for raw in addresses:
        address = raw.strip("<>.'\"").lower()
        local = address.split("@", 1)[0]
        if address in ours or address in out or is_mail_system(address):
            continue
        if not system and _SYSTEM_LOCAL.match(local):
            continue
        out.append(address)
    return out
