"""Building the email a contact receives: headers, parts, attachments, threading.

The message is built with the standard library's `email` package under the
SMTP policy, which refuses CR or LF in any header value: whatever a contact
field holds, it cannot add a header. Addresses are re-validated here too.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from dripd import addresses, compose

POLICY = policy.SMTP.clone(max_line_length=78)
MAX_ATTACHMENT = 25 * 1024 * 1024  # bytes: what common providers accept


class MissingAttachment(Exception):
    """An attachment file is not there (the step waits; the rep is told)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    """Where a follow-up sits in its thread: the first subject and earlier Message-IDs."""

    subject: str
    references: tuple[str, ...]


def message_id(
    *, enrollment_id: int, step_id: str, occurrence: int, install_id: str, domain: str
) -> str:
    """The stable Message-ID of one step occurrence of one enrollment."""
    local = f"dripd.{install_id}.e{enrollment_id}.{step_id}.{occurrence}"
    return f"<{local}@{domain}>"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def build(
    email: compose.Email,
    *,
    msgid: str,
    date: datetime,
    thread: Thread | None = None,
    unsubscribe: str | None = None,
) -> EmailMessage:
    """The complete message for `email`; raises MissingAttachment or ValueError."""
    message = EmailMessage(policy=POLICY)
    message["From"] = _address(email.sender.name, email.sender.email)
    message["To"] = _address(email.to_name, email.to)
    message["Subject"] = _subject(email.subject, thread)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msgid
    if thread and thread.references:
        message["In-Reply-To"] = thread.references[-1]
        message["References"] = " ".join(thread.references)
    if unsubscribe:
        message["List-Unsubscribe"] = f"<mailto:{unsubscribe}?subject=unsubscribe>"
    message["X-Mailer"] = "dripd"
    _set_body(message, email.text, email.html)
    _attach(message, email.attachments)
    return message


def _address(name: str, address: str) -> Address:
    clean = addresses.normalize_address(address)
    display = compose.one_line(addresses.clean_text(name, field="name")) if name else ""
    username, _, domain = clean.rpartition("@")
    return Address(display_name=display, username=username, domain=domain)


def _subject(subject: str, thread: Thread | None) -> str:
    subject = compose.one_line(subject)
    if thread and thread.references:
        base = compose.one_line(thread.subject)
        return base if base.lower().startswith("re:") else f"Re: {base}"
    return subject


def _set_body(message: EmailMessage, text: str, html: str | None) -> None:
    message.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        message.add_alternative(html, subtype="html", charset="utf-8")


def _attach(message: EmailMessage, paths: Sequence[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise MissingAttachment(f"attachment {path} is missing")
        data = path.read_bytes()
        if len(data) > MAX_ATTACHMENT:
            raise ValueError(f"attachment {path} is larger than {MAX_ATTACHMENT // 2**20} MB")
        kind, _ = mimetypes.guess_type(path.name)
        maintype, _, subtype = (kind or "application/octet-stream").partition("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
