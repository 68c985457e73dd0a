"""Building the email a contact receives: headers, parts, attachments, threading.

Written by hand rather than with `email.message.EmailMessage`, which costs
about 2 ms a message (most of dripd's sending time); the output is plain
RFC 5322/2045 that `email.parser` reads back exactly (tests check it).

Header safety: every header value is checked for CR and LF before it is
written, so whatever a contact field holds, it cannot add a header. Names
and subjects are also cleaned upstream (addresses.clean_text, one_line).
"""

from __future__ import annotations

import base64
import binascii
import functools
import mimetypes
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.charset import Charset
from email.header import Header
from email.utils import encode_rfc2231, format_datetime, formataddr
from pathlib import Path
from typing import Protocol

from dripd.mail import addresses

CRLF = "\r\n"
MAX_ATTACHMENT = 25 * 1024 * 1024  # bytes: what common providers accept
MAX_LINE = 78  # characters per header line before folding (RFC 5322's "should")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF, NUL...: never raw in a header
# type/subtype and parameters in printable ASCII: written into the part's header as is
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;[ -~]*)?")
_UTF8 = Charset("utf-8")


class Sender(Protocol):
    """Who an email is from (a rep, as the config has them)."""

    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...


class Email(Protocol):
    """What `build` needs of a rendered email (dripd.pipeline.compose.Email has it)."""

    @property
    def sender(self) -> Sender: ...
    @property
    def to(self) -> str: ...
    @property
    def to_name(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str | None: ...
    @property
    def attachments(self) -> Sequence[Path | Attachment]: ...


def one_line(text: str) -> str:
    """Header-safe text: any line break or run of whitespace becomes one space."""
    return " ".join(text.split())


class MissingAttachment(Exception):
    """An attachment file is not there (the step waits; the rep is told)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """A file made in memory (a digest's calendar event), attached as it is."""

    filename: str
    content_type: str  # with its parameters: "text/calendar; charset=utf-8; method=PUBLISH"
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    """Where a follow-up sits in its thread: the first subject and earlier Message-IDs."""

    subject: str
    references: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    """A finished message: its bytes (CRLF line ends) and its main headers."""

    data: bytes
    headers: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def as_bytes(self) -> bytes:
        return self.data


def message_id(
    *, enrollment_id: int, step_id: str, occurrence: int, install_id: str, domain: str
) -> str:
    """The stable Message-ID of one step occurrence of one enrollment."""
    local = f"dripd.{install_id}.e{enrollment_id}.{step_id}.{occurrence}"
    return f"<{local}@{domain}>"


def domain_of(address: str) -> str:
    return address.rpartition("@")[2] or "localhost"


def build(
    email: Email,
    *,
    msgid: str,
    date: datetime,
    thread: Thread | None = None,
    unsubscribe: str | None = None,
    automatic: bool = False,
) -> Built:
    """The complete message for `email`; raises MissingAttachment or ValueError.

    `automatic`: machine-written mail to the rep (a digest, a confirmation),
    marked so (RFC 3834) that nothing takes it for the rep writing.
    """
    subject = _subject(email.subject, thread)
    headers = {
        "From": _from_address(email.sender.name, email.sender.email),
        "To": _address(email.to_name, email.to),
        "Subject": subject,
        "Date": format_datetime(date),
        "Message-ID": msgid,
    }
    if thread and thread.references:
        headers["In-Reply-To"] = thread.references[-1]
        headers["References"] = " ".join(thread.references)
    if unsubscribe:
        headers["List-Unsubscribe"] = f"<mailto:{unsubscribe}?subject=unsubscribe>"
    if automatic:
        headers["Auto-Submitted"] = "auto-generated"
    head = "".join(_header(name, value) for name, value in headers.items())
    head += "X-Mailer: dripd" + CRLF + "MIME-Version: 1.0" + CRLF
    body = _body(email.text, email.html, _attachments(email.attachments))
    return Built(data=head.encode("ascii") + body, headers={**headers, "Subject": subject})


def dated(data: bytes, when: datetime) -> bytes:
    """`data` (as `build` made it) with its Date header set to `when`.

    A message is built when it is queued; one that then waits (a rate limit
    spreading a backlog, a retry, an outage) would arrive dated hours or days
    back, which mail clients sort by and spam filters score. So the sender
    dates it at the claim, and the Sent-folder copy gets the same date.
    """
    end = data.find(b"\r\n\r\n")
    start = data.find(b"\r\nDate: ", 0, end)
    if start < 0:
        return data
    start += 2
    stop = data.index(b"\r\n", start)
    return data[:start] + b"Date: " + format_datetime(when).encode("ascii") + data[stop:]


# -- headers --------------------------------------------------------------------


def _header(name: str, value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"line break or control character in the {name} header")
    if name == "Subject" and "=?" in value:  # a literal "=?...?=" is encoded, not decoded
        encoded = Header(value, "utf-8", header_name=name, maxlinelen=MAX_LINE)
        return f"{name}: {encoded.encode(linesep=CRLF)}{CRLF}"
    if value.isascii() and len(name) + len(value) + 2 <= MAX_LINE:
        return f"{name}: {value}{CRLF}"
    if not value.isascii():
        encoded = Header(value, "utf-8", header_name=name, maxlinelen=MAX_LINE)
        return f"{name}: {encoded.encode(linesep=CRLF)}{CRLF}"
    # ASCII, subjects too, folds at spaces (Header would start a long word on an empty line)
    return f"{name}: {_fold(value, len(name) + 2)}{CRLF}"


def _fold(value: str, used: int) -> str:
    """Fold a long ASCII header (References, Subject) at spaces."""
    lines, line = [], ""
    for word in value.split(" "):
        if line and used + len(line) + 1 + len(word) > MAX_LINE:
            lines.append(line)
            line, used = word, 1
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (CRLF + " ").join(lines)


def _address(name: str, address: str) -> str:
    clean = addresses.normalize_address(address)
    local, _, domain = clean.rpartition("@")
    if not local.isascii():
        raise ValueError(f"{clean}: a non-ASCII mailbox name needs SMTPUTF8, not supported")
    ascii_address = f"{local}@{domain.encode('idna').decode('ascii')}"
    display = one_line(addresses.clean_text(name, field="name")) if name else ""
    if not display:
        return ascii_address
    if "=?" in display:  # a literal "=?...?=" is encoded, else the reader would decode it
        return f"{_UTF8.header_encode(display)} <{ascii_address}>"
    return formataddr((display, ascii_address), charset="utf-8")


# The From header is the same for every email of a rep: worked out once (~7 µs an email).
_from_address = functools.lru_cache(maxsize=64)(_address)


def _subject(subject: str, thread: Thread | None) -> str:
    subject = one_line(subject)
    if thread and thread.references:
        base = one_line(thread.subject)
        return base if base.lower().startswith("re:") else f"Re: {base}"
    return subject


# -- body -----------------------------------------------------------------------


def _text_part(text: str, subtype: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True)
    encoded = encoded.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
    )
    return head.encode("ascii") + encoded + (b"" if encoded.endswith(b"\r\n") else b"\r\n")


def _multipart(subtype: str, parts: Sequence[bytes]) -> bytes:
    boundary = f"=_dripd_{secrets.token_hex(12)}"
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"{CRLF}{CRLF}'.encode()
    separator = f"--{boundary}{CRLF}".encode()
    # The CRLF before each delimiter belongs to the delimiter (RFC 2046 5.1.1), not the part.
    body = b"".join(separator + part + CRLF.encode() for part in parts)
    return head + body + f"--{boundary}--{CRLF}".encode()


def _body(text: str, html: str | None, attachments: Sequence[bytes]) -> bytes:
    content = _text_part(text, "plain")
    if html is not None:
        content = _multipart("alternative", [content, _text_part(html, "html")])
    if attachments:
        content = _multipart("mixed", [content, *attachments])
    return content


def _attachments(items: Sequence[Path | Attachment]) -> list[bytes]:
    return [
        _memory_attachment(item) if isinstance(item, Attachment) else _file_attachment(item)
        for item in items
    ]


def _file_attachment(path: Path) -> bytes:
    if not path.is_file():
        raise MissingAttachment(f"attachment {path} is missing")
    data = path.read_bytes()
    _check_size(data, str(path))
    kind, _ = mimetypes.guess_type(path.name)
    return _attachment_part(path.name, kind or "application/octet-stream", data)


def _memory_attachment(attachment: Attachment) -> bytes:
    name, kind = attachment.filename, attachment.content_type
    if _CONTROL.search(name):
        raise ValueError(f"line break or control character in attachment name {name!r}")
    if not _CONTENT_TYPE.fullmatch(kind):
        raise ValueError(f"attachment {name!r}: {kind!r} is not a content type")
    _check_size(attachment.data, name)
    return _attachment_part(name, kind, attachment.data)


def _check_size(data: bytes, what: str) -> None:
    if len(data) > MAX_ATTACHMENT:
        raise ValueError(f"attachment {what} is larger than {MAX_ATTACHMENT // 2**20} MB")


def _attachment_part(name: str, kind: str, data: bytes) -> bytes:
    disposition = (
        f'attachment; filename="{name}"'
        if name.isascii() and name.isprintable() and '"' not in name and "\\" not in name
        else f"attachment; filename*={encode_rfc2231(name, 'utf-8')}"
    )
    head = (
        f"Content-Type: {kind}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}"
        f"Content-Disposition: {disposition}{CRLF}{CRLF}"
    )
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return head.encode("ascii") + encoded
