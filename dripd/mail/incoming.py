"""An incoming message, parsed defensively: the headers dripd decides by, never an exception.

The headers are read through `reading` (raw text, decoded with its fallbacks),
so a bad header costs that header, not the message; a missing or duplicated
Message-ID still gives the message an identity (`Incoming.key`).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

from dripd.mail import reading

_MSGID = re.compile(r"<[^<>\s]{1,250}>")


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """One message as read from a mailbox or a file."""

    message: EmailMessage
    size: int
    message_id: str  # "<…>" as written, or "" when the message has none
    key: str  # the message's identity for "handled once": its Message-ID or a digest
    sender: str  # the From address, lower-cased; "" when there is none
    sender_name: str
    recipients: tuple[str, ...]  # To and Cc addresses, lower-cased
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    date: datetime | None

    @property
    def referenced(self) -> tuple[str, ...]:
        """Message-IDs this message answers: In-Reply-To first, then References newest first."""
        seen: dict[str, None] = dict.fromkeys(self.in_reply_to)
        seen.update(dict.fromkeys(reversed(self.references)))
        return tuple(seen)

    def header(self, name: str) -> str:
        return reading.header(self.message, name)


def parse(raw: bytes) -> Incoming:
    """Parse a message's bytes; never raises (a hopeless message parses as an empty one)."""
    message = reading.message(raw)
    message_id = _first_id(reading.header(message, "Message-ID"))
    sender_name, sender = reading.address(reading.header(message, "From"))
    return Incoming(
        message=message,
        size=len(raw),
        message_id=message_id,
        key=message_id.lower() if message_id else _digest(message, raw),
        sender=sender,
        sender_name=sender_name,
        recipients=reading.addresses(reading.header(message, "To"), reading.header(message, "Cc")),
        subject=reading.header(message, "Subject"),
        in_reply_to=message_ids(reading.header(message, "In-Reply-To")),
        references=message_ids(reading.header(message, "References")),
        date=_date(reading.header(message, "Date")),
    )


def unreadable(raw: bytes) -> Incoming:
    """A message `parse` failed on (a bug: it is not to raise), kept by its bytes' digest."""
    message = EmailMessage()
    return Incoming(
        message=message,
        size=len(raw),
        message_id="",
        key=_digest(message, raw),
        sender="",
        sender_name="",
        recipients=(),
        subject="",
        in_reply_to=(),
        references=(),
        date=None,
    )


def message_ids(value: str) -> tuple[str, ...]:
    """The `<id>`s in a header value, in order, without repeats."""
    return tuple(dict.fromkeys(_MSGID.findall(value)))


def _first_id(value: str) -> str:
    ids = message_ids(value)
    return ids[0] if ids else ""


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:  # no date, or fields out of range
        return None
    except OverflowError:  # in range, but not in UTC: 31 Dec 9999 23:59 -0100
        return None


def _digest(message: email.message.Message, raw: bytes) -> str:
    """An identity for a message without a Message-ID: its main headers and start."""
    parts = [reading.header(message, name) for name in ("Date", "From", "To", "Subject")]
    seed = "\n".join(parts).encode("utf-8", "replace") + raw[:4096]
    return "sha256:" + hashlib.sha256(seed).hexdigest()[:40]
