"""Talking SMTP to a rep's mailbox: one reusable connection, and what its errors mean.

`classify` is pure: it reads an SMTP reply and says whose problem it is.
- temporary (4xx, network): try again later, with backoff;
- recipient (5.1.x, 5.2.1-2, "user unknown"): the address is dead, the contact bounced;
- sender (5.1.7-8, 5.4.5, 5.7.x, refused MAIL FROM, "sender address rejected", relay
  denied, quota, spam): the mailbox must rest until tomorrow;
- message (any other 5xx on the message, a too-big SIZE= at MAIL FROM): this email
  fails, the rep is told;
- auth (530/535, and a refused login): the mailbox's credentials are wrong; nothing
  can be sent until fixed;
- signin (OAuth2): the rep's sign-in is missing or was revoked; `dripd auth REP`.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from dataclasses import dataclass
from typing import Any, Literal

import aiosmtplib

from dripd import errors
from dripd.files import config
from dripd.mailbox import tokens

Kind = Literal["temporary", "recipient", "sender", "message", "auth", "signin"]
_RECIPIENT_TEXT = re.compile(
    r"user unknown|no such user|unknown user|does not exist|mailbox unavailable|"
    r"recipient rejected|address rejected|invalid recipient|not found|disabled|"
    r"doesn't have an? [\w.-]+ account|mailbox (?:is )?full|over quota",
    re.IGNORECASE,
)
_SENDER_TEXT = re.compile(
    r"quota|limit|\brate\b|too many|sending|suspended|policy|blocked|blacklist|spam",
    re.IGNORECASE,
)
# Replies about the rep's own address or server, whatever their code and command say
# (Postfix and Exim check the sender at RCPT; Office 365 answers 5.1.8; SES, "not verified").
_SENDER_PHRASE = re.compile(
    r"sender address rejected|sender verify failed|bad outbound sender|"
    r"relay(?:ing)? (?:access )?(?:denied|not permitted)|not permitted to relay|unable to relay|"
    r"not verified|send ?as ?denied|not allowed to send",
    re.IGNORECASE,
)
_SIZE_TEXT = re.compile(r"\bsize\b|too (?:big|large)", re.IGNORECASE)
_AUTH_CODES = frozenset({530, 534, 535, 538})  # RFC 4954: authentication required/refused
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# An envelope address once its domain is in punycode: RFC 5321's dot-string
# mailbox name, as addresses.normalize_address accepts it (quoted names: never).
_ENVELOPE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")


@dataclass(frozen=True, slots=True)
class SendError(Exception):
    """An SMTP failure, classified.

    `mailbox`: the session failed before this email's message was handed over
    (no connection, a 421, a 4xx to MAIL FROM, the connection lost or silent at
    MAIL or RCPT): a problem of the mailbox, not of the email, which is tried
    again unchanged.
    """

    kind: Kind
    code: int
    text: str
    mailbox: bool = False

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip() if self.code else self.text


def classify(code: int, text: str, *, stage: Literal["mail", "rcpt", "data"]) -> Kind:
    """Whose problem an SMTP reply `code text` is, given the command it answered."""
    if code < 500:
        return "temporary"
    if code in _AUTH_CODES:
        return "auth"
    enhanced = _ENHANCED.search(text)
    klass, subject = (int(enhanced[2]), int(enhanced[3])) if enhanced else (None, None)
    if stage == "mail":  # MAIL FROM refused: the rep's account, unless the SIZE= is too big
        return "message" if klass == 3 or (klass is None and _SIZE_TEXT.search(text)) else "sender"
    if _SENDER_PHRASE.search(text) or (klass == 1 and subject in (7, 8)):
        return "sender"
    if klass == 1 or (klass == 2 and subject in (1, 2)):  # bad address; disabled or full mailbox
        return "recipient"
    if (klass == 4 and subject == 5) or klass == 7:
        return "sender"
    if stage == "rcpt":
        return (
            "sender"
            if _SENDER_TEXT.search(text) and not _RECIPIENT_TEXT.search(text)
            else "recipient"
        )
    if klass is None or subject == 0:  # no enhanced code, or a generic one: the text decides
        if _RECIPIENT_TEXT.search(text):
            return "recipient"
        if _SENDER_TEXT.search(text):
            return "sender"
    return "message"


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on; `ca_file` adds a private CA (ConfigError if it can't be read)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise errors.ConfigError(
            f"ca_file {ca_file}: no PEM certificate in it ({exc.reason or exc})"
        ) from exc
    except OSError as exc:  # missing or unreadable
        raise errors.ConfigError(f"ca_file {ca_file}: {exc.strerror or exc}") from exc


def connect_failure(host: str, port: int, exc: BaseException, security: str) -> str:
    """The one line for a connection that failed, with what to change where that is clear.

    An untrusted certificate: `ca_file`. TLS or not, the wrong way round for
    the port: a TLS handshake answered in clear ("wrong version number"), or
    no greeting at all (the server waits for a handshake that never comes).
    """
    # str(), not the exception: an exception is always true, and a timeout's text is empty
    message = f"cannot connect to {host}:{port}: {str(exc) or 'no greeting from the server'}"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"{message}; if the server's certificate is from a private CA, set ca_file"
        if isinstance(seen, ssl.SSLError) and seen.reason == "WRONG_VERSION_NUMBER":
            return f'{message}; this port does not begin with TLS: security = "starttls"?'
        if isinstance(seen, TimeoutError) and security != "tls":
            return f'{message}; a port that begins with TLS (465, 993) needs security = "tls"'
        seen = seen.__cause__ or seen.__context__
    return message


def mailbox_tls(settings: config.SmtpConfig) -> ssl.SSLContext | None:
    """The TLS context of a mailbox's connections, made once for all of them."""
    return tls_context(settings.ca_file) if settings.security != "none" else None


class Connection:
    """One SMTP session to a mailbox, opened on first use and reopened after a drop.

    With `token_source` (auth = "oauth2"), it logs in with XOAUTH2: aiosmtplib
    asks the source for an access token at each login.
    """

    def __init__(
        self,
        settings: config.SmtpConfig,
        password: str | None,
        tls: ssl.SSLContext | None = None,
        *,
        token_source: tokens.TokenSource | None = None,
    ) -> None:
        self.settings = settings
        self._password = password
        self._tokens = token_source
        self._tls = tls if tls is not None or settings.security == "none" else mailbox_tls(settings)
        self._client: aiosmtplib.SMTP | None = None
        self._at_data = False  # the transaction under way reached DATA

    @property
    def is_open(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def open(self) -> None:
        try:
            await self._open()
        except SendError as exc:
            if exc.kind != "auth" or self._tokens is None:
                raise
            # The server refused the access token (revoked early, or its clock is
            # ahead): once more with a refreshed one; a lost sign-in says so then.
            await self._open()

    async def _open(self) -> None:
        s = self.settings
        used: list[str] = []  # the access token handed to the server, to reject if refused
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=self._tls,
            **self._oauth_login(used),
        )
        try:
            await client.connect()  # with XOAUTH2, connect() logs in
            if s.username and self._tokens is None:
                await client.ehlo()  # STARTTLS leaves the session un-EHLO'd (aiosmtplib 5)
                await client.login(s.username, self._password or "")
            if client.is_ehlo_or_helo_needed:  # `send` issues its commands itself
                await _greet(client)
        except BaseException as exc:
            await _quiet_close(client)
            failure = self._open_failure(exc, used)
            if failure is exc:
                raise
            raise failure from exc
        self._client = client

    def _oauth_login(self, used: list[str]) -> dict[str, Any]:
        source = self._tokens
        if source is None:
            return {}

        async def access_token() -> str:
            used.append(await source.access_token())
            return used[-1]

        return {"username": source.login, "oauth_token_generator": access_token}

    def _open_failure(self, exc: BaseException, used: list[str]) -> BaseException:
        """What a failed open raises (SendError), or `exc` itself if it is not ours to read."""
        s = self.settings
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            if used and self._tokens is not None:
                self._tokens.reject(used[-1])
            return SendError("auth", exc.code, f"login refused: {exc.message}")
        if isinstance(exc, errors.SignInError):
            return SendError("signin", 0, str(exc), mailbox=True)
        if isinstance(exc, errors.SignInUnavailable):
            return SendError("temporary", 0, str(exc), mailbox=True)
        if isinstance(exc, aiosmtplib.SMTPException) and "XOAUTH2" in str(exc):
            message = f'{s.host}:{s.port} offers no XOAUTH2 login: auth = "oauth2" cannot work'
            return SendError("auth", 0, message)
        if isinstance(exc, aiosmtplib.SMTPException | OSError):
            message = connect_failure(s.host, s.port, exc, s.security)
            return SendError("temporary", 0, message, mailbox=True)
        return exc

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        """Send one message (CRLF line ends, as mime.build makes them); raises SendError.

        MAIL, RCPT and DATA are issued here rather than through aiosmtplib's
        `sendmail`, which parses both addresses twice with email.utils (a
        fifth of dripd's sending CPU); dripd validated them when they were
        stored. A refused command resets the envelope (RSET) before the
        error is raised, as `sendmail` does.
        """
        envelope = (b"FROM:" + envelope_address(sender), b"TO:" + envelope_address(recipient))
        if not self.is_open:
            await self.open()
        assert self._client is not None
        try:
            refused = await self._transaction(self._client, envelope, data)
        except aiosmtplib.SMTPResponseException as exc:  # DATA refused (SMTPDataError)
            await self._reset_after(exc.code)
            kind = classify(exc.code, exc.message, stage="data")
            raise SendError(kind, exc.code, exc.message, mailbox=exc.code == 421) from exc
        except TimeoutError as exc:  # the session is out of step with its replies
            await self.close()
            message = f"no reply in {self.settings.timeout:g} s"
            raise SendError("temporary", 0, message, mailbox=not self._at_data) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            message = f"connection lost: {exc}"
            raise SendError("temporary", 0, message, mailbox=not self._at_data) from exc
        if refused is not None:
            reply, stage = refused
            await self._reset_after(reply.code)
            kind = classify(reply.code, reply.message, stage=stage)
            # A 4xx to MAIL FROM comes before any recipient is named: the
            # mailbox's (Postfix's "450 4.7.1 too much mail"), as is a 421.
            mailbox = reply.code == 421 or (stage == "mail" and kind == "temporary")
            raise SendError(kind, reply.code, reply.message, mailbox=mailbox)

    async def try_sender(self, sender: str) -> None:
        """Would the server take mail from `sender`? MAIL FROM and RCPT TO itself, then RSET.

        Nothing is sent (no DATA). Postfix's and Exim's check that the login
        owns the From address answer at RCPT ("553 5.7.1 Sender address
        rejected: not owned by user"); `check --connect` asks before a
        campaign finds out. Raises SendError as `send` does.
        """
        address = envelope_address(sender)
        if not self.is_open:
            await self.open()
        assert self._client is not None
        client = self._client
        commands: tuple[tuple[bytes, bytes, Literal["mail", "rcpt"]], ...] = (
            (b"MAIL", b"FROM:" + address, "mail"),
            (b"RCPT", b"TO:" + address, "rcpt"),
        )
        try:
            for command, argument, stage in commands:
                reply = await client.execute_command(command, argument)
                if reply.code not in (250, 251):
                    await self._reset_after(reply.code)
                    kind = classify(reply.code, reply.message, stage=stage)
                    raise SendError(kind, reply.code, reply.message)
            await client.rset()
        except (aiosmtplib.SMTPException, OSError) as exc:
            await self.close()
            raise SendError("temporary", 0, f"connection lost: {exc}", mailbox=True) from exc

    async def _transaction(
        self, client: aiosmtplib.SMTP, envelope: tuple[bytes, bytes], data: bytes
    ) -> tuple[aiosmtplib.SMTPResponse, Literal["mail", "rcpt"]] | None:
        """MAIL, RCPT, DATA; the reply that refused MAIL or RCPT, if one did.

        `_at_data` tells, when it fails, whether DATA was reached: from then on
        the message may have gone out, and a failure may be the message's own.

        Each command's reply must come within `timeout` seconds (DATA: twice
        that, for its 354 and its final reply), kept by one asyncio.timeout
        moved forward at each command: aiosmtplib's own timeout, a wait_for
        per reply, was a quarter of the SMTP client's CPU.
        """
        self._at_data = False
        mail_from, rcpt_to = envelope
        size = [b"SIZE=%d" % len(data)] if client.supports_extension("size") else []
        loop = asyncio.get_running_loop()
        limit = self.settings.timeout
        async with asyncio.timeout(loop.time() + limit) as deadline:
            reply = await client.execute_command(b"MAIL", mail_from, *size, timeout=None)
            if reply.code != 250:
                return reply, "mail"
            deadline.reschedule(loop.time() + limit)
            reply = await client.execute_command(b"RCPT", rcpt_to, timeout=None)
            if reply.code not in (250, 251):
                return reply, "rcpt"
            deadline.reschedule(loop.time() + 2 * limit)
            self._at_data = True
            await client.data(data, timeout=None)
        return None

    async def _reset_after(self, code: int) -> None:
        if code == 421 or not self.is_open:
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


def envelope_address(address: str) -> bytes:
    """`<address>` for MAIL FROM and RCPT TO, its domain in punycode (IDNA).

    Raises SendError ("message": this email cannot go) for a mailbox name
    that is not ASCII: it needs SMTPUTF8, which dripd does not use
    (mime.build refuses such an address in headers already).
    """
    local, _, domain = address.strip().rpartition("@")
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise SendError("message", 0, f"{address!r}: the domain is not a valid name") from exc
    value = f"{local}@{ascii_domain}"
    if not _ENVELOPE.fullmatch(value):
        raise SendError("message", 0, f"{address!r} cannot be used in the SMTP envelope")
    return f"<{value}>".encode("ascii")


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, falling back to HELO for a server without ESMTP (what `sendmail` would do)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


async def _quiet_close(client: aiosmtplib.SMTP) -> None:
    transport = client.transport
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
    finally:
        # After QUIT the session is over: no TLS goodbye to wait for, which a
        # loop that ends right away (`check --connect`) would leave half done.
        if isinstance(transport, asyncio.Transport):
            transport.abort()
