"""An incoming message, parsed defensively: the headers dripd decides by, never an exception.

Mail from the outside is hostile or broken often enough: undecodable
encoded-words, address lists the stdlib parser chokes on, missing or
duplicated Message-IDs. Everything here reads the raw header text
(`Message.raw_items`) and decodes it itself, so a bad header costs that
header, not the message.
"""

from __future__ import annotations

import codecs
import email
import email.header
import email.policy
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage

MAX_HEADER = 4000  # characters of one header value that are looked at
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_SPACE = re.compile(r"\s+")


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
        return header(self.message, name)


def parse(raw: bytes) -> Incoming:
    """Parse a message's bytes; never raises (a hopeless message parses as an empty one)."""
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception:  # the parser itself is lenient; this is a last resort
        message = EmailMessage()
    assert isinstance(message, EmailMessage)
    message_id = _first_id(header(message, "Message-ID"))
    sender_name, sender = _address(header(message, "From"))
    return Incoming(
        message=message,
        size=len(raw),
        message_id=message_id,
        key=message_id.lower() if message_id else _digest(message, raw),
        sender=sender,
        sender_name=sender_name,
        recipients=_addresses(header(message, "To"), header(message, "Cc")),
        subject=header(message, "Subject"),
        in_reply_to=message_ids(header(message, "In-Reply-To")),
        references=message_ids(header(message, "References")),
        date=_date(header(message, "Date")),
    )


def header(message: email.message.Message, name: str) -> str:
    """The first `name` header, encoded-words decoded, folded onto one line; "" if absent."""
    wanted = name.lower()
    try:
        for key, value in message.raw_items():
            if key.lower() == wanted:
                return decode_words(str(value)[:MAX_HEADER])
    except Exception:
        return ""
    return ""


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded; an unknown charset or bad encoding keeps the raw text.

    Raw 8-bit headers (the parser keeps their bytes as surrogates) are read as UTF-8.
    """
    text = _SPACE.sub(" ", value).strip()
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in text:
        return text
    try:
        parts = email.header.decode_header(text)
        decoded = [
            chunk.decode(_charset(charset), errors="replace") if isinstance(chunk, bytes) else chunk
            for chunk, charset in parts
        ]
        return _SPACE.sub(" ", "".join(decoded)).strip()
    except Exception:
        return text


def _charset(name: str | None) -> str:
    """A codec for a declared charset: unknown or missing ones read as UTF-8."""
    if not name:
        return "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def message_ids(value: str) -> tuple[str, ...]:
    """The `<id>`s in a header value, in order, without repeats."""
    return tuple(dict.fromkeys(_MSGID.findall(value)))


def _first_id(value: str) -> str:
    ids = message_ids(value)
    return ids[0] if ids else ""


def _address(value: str) -> tuple[str, str]:
    if not value:
        return "", ""
    try:
        name, address = email.utils.parseaddr(value)
    except Exception:
        return "", ""
    return name.strip(), address.strip().lower() if "@" in address else ""


def _addresses(*values: str) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        if not value:
            continue
        try:
            pairs = email.utils.getaddresses([value])
        except Exception:
            continue
        found.extend(address.strip().lower() for _, address in pairs if "@" in address)
    return tuple(dict.fromkeys(found))


def _date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except Exception:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _digest(message: email.message.Message, raw: bytes) -> str:
    """An identity for a message without a Message-ID: its main headers and start."""
    parts = [header(message, name) for name in ("Date", "From", "To", "Subject")]
    seed = "\n".join(parts).encode("utf-8", "replace") + raw[:4096]
    return "sha256:" + hashlib.sha256(seed).hexdigest()[:40]
