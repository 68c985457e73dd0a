"""Talking SMTP to a rep's mailbox: one reusable connection, and what its errors mean.

`classify` is pure: it reads an SMTP reply and says whose problem it is.
- temporary (4xx, network): try again later, with backoff;
- recipient (5.1.x, "user unknown"): the address is dead, the contact bounced;
- sender (5.4.5, 5.7.x, refused MAIL FROM, quota): the mailbox must rest until tomorrow;
- message (any other 5xx on the message): this email fails, the rep is told;
- auth: the mailbox's credentials are wrong; nothing can be sent until fixed.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Literal

import aiosmtplib

from dripd import config

Kind = Literal["temporary", "recipient", "sender", "message", "auth"]
_RECIPIENT_TEXT = re.compile(
    r"user unknown|no such user|unknown user|does not exist|mailbox unavailable|"
    r"recipient rejected|address rejected|invalid recipient|not found|disabled",
    re.IGNORECASE,
)
_SENDER_TEXT = re.compile(
    r"quota|limit|rate|too many|sending|suspended|policy|blocked|blacklist|spam",
    re.IGNORECASE,
)
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class SendError(Exception):
    """An SMTP failure, classified."""

    kind: Kind
    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code else self.text


def classify(code: int, text: str, *, stage: Literal["mail", "rcpt", "data"]) -> Kind:
    """Whose problem an SMTP reply `code text` is, given the command it answered."""
    if code < 500:
        return "temporary"
    enhanced = _ENHANCED.search(text)
    klass, subject = (int(enhanced[2]), int(enhanced[3])) if enhanced else (None, None)
    if stage == "mail":
        return "sender"
    if klass == 1 or (klass == 2 and subject == 1):
        return "recipient"
    if (klass == 4 and subject == 5) or klass == 7:
        return "sender"
    if stage == "rcpt":
        return (
            "sender"
            if _SENDER_TEXT.search(text) and not _RECIPIENT_TEXT.search(text)
            else "recipient"
        )
    if klass is None and _RECIPIENT_TEXT.search(text):
        return "recipient"
    if klass is None and _SENDER_TEXT.search(text):
        return "sender"
    return "message"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on; `ca_file` adds a private CA."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class Connection:
    """One SMTP session to a mailbox, opened on first use and reopened after a drop."""

    def __init__(self, settings: config.SmtpConfig, password: str | None) -> None:
        self.settings = settings
        self._password = password
        self._client: aiosmtplib.SMTP | None = None

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def open(self) -> None:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=tls_context(s.ca_file) if s.security != "none" else None,
        )
        try:
            await client.connect()
            if s.username:
                await client.ehlo()  # STARTTLS leaves the session un-EHLO'd (aiosmtplib 5)
                await client.login(s.username, self._password or "")
        except aiosmtplib.SMTPAuthenticationError as exc:
            await _quiet_close(client)
            raise SendError("auth", exc.code, f"login refused: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await _quiet_close(client)
            raise SendError("temporary", 0, f"cannot connect to {s.host}:{s.port}: {exc}") from exc
        self._client = client

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        """Send one message; raises SendError, classified."""
        if not self.is_open:
            await self.open()
        assert self._client is not None
        try:
            await self._client.sendmail(sender, [recipient], data)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code, text = (refused.code, refused.message) if refused else (550, str(exc))
            raise SendError(classify(code, text, stage="rcpt"), code, text) from exc
        except aiosmtplib.SMTPSenderRefused as exc:
            raise SendError(
                classify(exc.code, exc.message, stage="mail"), exc.code, exc.message
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            await self._reset_after(exc)
            raise SendError(
                classify(exc.code, exc.message, stage="data"), exc.code, exc.message
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise SendError("temporary", 0, f"connection lost: {exc}") from exc

    async def _reset_after(self, exc: aiosmtplib.SMTPResponseException) -> None:
        if exc.code == 421 or not self.is_open:
            await self.close()
            return
        try:
            assert self._client is not None
            await self._client.rset()
        except (aiosmtplib.SMTPException, OSError):
            await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _quiet_close(client)


async def _quiet_close(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
