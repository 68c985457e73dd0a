"""`SmtpServer`: an aiosmtpd server in a background thread of this process.

TLS (none, STARTTLS, implicit), AUTH PLAIN/LOGIN or XOAUTH2 (tokens introspected at
`servers.oauth`), and a `FaultPlan` that makes it answer like a misbehaving real
server; it records every accepted message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from servers import certs, loopback

TlsMode = Literal["none", "starttls", "implicit"]
Stage = Literal["MAIL", "RCPT", "DATA"]

# Replies real servers give; use them in fault plans.
BUSY = "421 4.3.2 Service not available, closing transmission channel"
TEMPFAIL = "451 4.3.0 Temporary local problem, please try again later"
NO_SUCH_USER = "550 5.1.1 The email account that you tried to reach does not exist"
QUOTA_EXCEEDED = "550 5.4.5 Daily user sending quota exceeded"
POLICY_REJECT = "554 5.7.1 Message rejected as spam by content filtering"


# ---------------------------------------------------------------- faults


@dataclass(slots=True, kw_only=True)
class Fault:
    """How the server misbehaves on the next `times` matching MAIL, RCPT or DATA commands.

    `stall` seconds pass first; then `drop` closes the connection without a reply,
    or `reply` answers instead of accepting (a `421` reply also closes the
    connection, as real servers do); with neither, the command is accepted late.
    `recipient` limits the fault to one address (for DATA: any envelope
    recipient; MAIL has none, so only None matches it); None matches every
    command. `deliver` (DATA only) records the message before misbehaving:
    the "delivered but never acknowledged" case.
    """

    stage: Stage
    reply: str | None = None
    drop: bool = False
    stall: float = 0.0  # seconds
    recipient: str | None = None
    times: int = 1
    deliver: bool = False
    used: int = 0

    def matches(self, stage: Stage, recipients: Sequence[str]) -> bool:
        if stage != self.stage or self.used >= self.times:
            return False
        wanted = self.recipient
        return wanted is None or wanted.lower() in (r.lower() for r in recipients)


class FaultPlan:
    """The faults a `SmtpServer` applies; the test adds, the server's thread takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        if fault.stage != "DATA" and fault.deliver:
            raise ValueError("deliver= only makes sense for DATA faults")
        with self._lock:
            self._faults.append(fault)
        return fault

    def reply(
        self, stage: Stage, reply: str, *, recipient: str | None = None, times: int = 1
    ) -> Fault:
        """Answer the next `times` matching commands with `reply` (e.g. `NO_SUCH_USER`)."""
        return self.add(Fault(stage=stage, reply=reply, recipient=recipient, times=times))

    def drop(
        self,
        stage: Stage = "DATA",
        *,
        recipient: str | None = None,
        times: int = 1,
        deliver: bool = False,
    ) -> Fault:
        """Close the connection instead of answering (DATA: after the whole message came in)."""
        return self.add(
            Fault(stage=stage, drop=True, recipient=recipient, times=times, deliver=deliver)
        )

    def stall(
        self,
        stage: Stage,
        seconds: float,
        *,
        reply: str | None = None,
        recipient: str | None = None,
        times: int = 1,
    ) -> Fault:
        """Wait `seconds` before answering (with `reply`, or by accepting)."""
        fault = Fault(stage=stage, stall=seconds, reply=reply, recipient=recipient, times=times)
        return self.add(fault)

    def take(self, stage: Stage, recipients: Sequence[str]) -> Fault | None:
        """The first fault matching this command, counted as used; None to behave."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(stage, recipients):
                    fault.used += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """Faults with uses left (a test can assert its plan was consumed)."""
        with self._lock:
            return [f for f in self._faults if f.used < f.times]


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMessage:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    arrived: float  # time.time()
    login: str | None  # the AUTH user, if the client logged in
    tls: bool  # whether the session was encrypted

    @property
    def message_id(self) -> str | None:
        value = self.message["Message-ID"]
        return None if value is None else str(value).strip()


class _Inbox:
    """A thread-safe list of received messages with a condition to wait on."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._messages: list[ReceivedMessage] = []

    def add(self, message: ReceivedMessage) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    def snapshot(self) -> list[ReceivedMessage]:
        with self._changed:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMessage]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"{len(self._messages)} message(s) arrived within {timeout} s, expected {count}"
                )
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()


def _parse(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


# ---------------------------------------------------------------- server


class _Handler:
    """aiosmtpd hooks: apply the fault plan, record what is accepted."""

    def __init__(self, faults: FaultPlan, inbox: _Inbox) -> None:
        self.faults = faults
        self.inbox = inbox

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        fault = self.faults.take("MAIL", [])
        if fault is not None:
            reply = await _misbehave(fault, server)
            if reply is not None:
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        fault = self.faults.take("RCPT", [address])
        if fault is not None:
            reply = await _misbehave(fault, server)
            if reply is not None:
                return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.faults.take("DATA", envelope.rcpt_tos)
        recorded = fault is not None and fault.deliver
        if recorded:
            self._record(server, session, envelope)
        if fault is not None and (reply := await _misbehave(fault, server)) is not None:
            return reply
        if not recorded:
            self._record(server, session, envelope)
        return f"250 2.0.0 OK queued as {secrets.token_hex(6)}"

    def _record(self, server: SMTP, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        auth = session.auth_data
        login = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        received = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            message=_parse(raw),
            arrived=time.time(),
            login=login,
            tls=_encrypted(server),
        )
        self.inbox.add(received)


def _encrypted(server: SMTP) -> bool:
    """Whether the session runs over TLS (implicit, or after STARTTLS)."""
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


async def _misbehave(fault: Fault, server: SMTP) -> str | None:
    """Apply `fault`; the reply to send, or None to go on and accept."""
    if fault.stall:
        await asyncio.sleep(fault.stall)
    if fault.drop:
        await _close_and_wait(server)
    if fault.reply is not None and fault.reply.startswith("421"):
        await server.push(fault.reply)
        await _close_and_wait(server)
    return fault.reply


async def _close_and_wait(server: SMTP) -> None:
    """Close the client's connection; aiosmtpd then cancels this session's task."""
    assert server.transport is not None
    server.transport.close()
    await asyncio.Future()  # cancelled by SMTP.connection_lost


Introspect = Callable[[str], Mapping[str, Any]]


class _OAuthHandler(_Handler):
    """With AUTH XOAUTH2: the token checked by RFC 7662 introspection (servers/oauth.py).

    A refused token is answered as Gmail and Outlook do: a 334 challenge with a
    base64 JSON error, then 535 after the client's empty line.
    """

    def __init__(self, faults: FaultPlan, inbox: _Inbox, introspect: Introspect) -> None:
        super().__init__(faults, inbox)
        self.introspect = introspect
        self.refused = 0

    async def auth_XOAUTH2(self, server: SMTP, args: list[bytes]) -> AuthResult:
        user, token = _xoauth2_fields(args[1] if len(args) > 1 else b"")
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, self.introspect, token) if token else {}
        if info.get("active") is True and info.get("username") == user:
            login = LoginPassword(login=user.encode(), password=b"")
            return AuthResult(success=True, auth_data=login, handled=False)
        self.refused += 1
        error = {"status": "401", "schemes": "bearer", "scope": "mail.send"}
        await server.challenge_auth(json.dumps(error).encode())
        return AuthResult(success=False, handled=False)


def _xoauth2_fields(initial: bytes) -> tuple[str, str]:
    """(user, token) from a SASL XOAUTH2 initial response (`user=U^Aauth=Bearer T^A^A`)."""
    try:
        text = base64.b64decode(initial, validate=True).decode("utf-8")
    except ValueError:
        return "", ""
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
    return fields.get("user", ""), fields.get("auth", "").removeprefix("Bearer ")


class Authenticator:
    """AUTH PLAIN/LOGIN against a username → password table."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = dict(users)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        if self.users.get(login) != password:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=data)


class AiosmtpdNoise(logging.Filter):
    """Drop aiosmtpd 1.4's per-connection log warnings about choices the tests make on purpose."""

    NOISE = (
        "Session.login_data is deprecated",
        "auth_required == True but auth_require_tls == False",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


_quieted = False


def _quiet_aiosmtpd() -> None:
    global _quieted
    if not _quieted:
        logging.getLogger("mail.log").addFilter(AiosmtpdNoise())
        _quieted = True


class _Controller(Controller):
    """aiosmtpd's threaded Controller, bound to a free port chosen by the kernel."""

    def __init__(self, handler: _Handler, *, on_connect: Any, **kwargs: Any) -> None:
        super().__init__(handler, hostname=loopback.HOST, port=0, **kwargs)
        self._on_connect = on_connect

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
        )
        self.port = int(server.sockets[0].getsockname()[1])
        return server

    def factory(self) -> SMTP:
        self._on_connect()
        return SMTP(self.handler, **self.SMTP_kwargs)


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 in a background thread, recording what it accepts.

    `tls`: "none", "starttls" (offered, not required) or "implicit" (TLS from the
    first byte, like port 465). `auth`: username → password; when given, AUTH
    PLAIN/LOGIN is required before MAIL (530 otherwise, 535 for a wrong
    password), and with STARTTLS only after the upgrade (538 before it).
    Verify the server with `ca_file`. Misbehave with `faults`.
    """

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        auth: Mapping[str, str] | None = None,
        certificates: certs.Certificates | None = None,
        timeout: float = 300.0,  # seconds of client silence before the server hangs up
        oauth2: Introspect | None = None,
    ) -> None:
        self.tls: TlsMode = tls
        self.oauth2 = oauth2  # with it, AUTH XOAUTH2 only, required, the token introspected
        self.auth = dict(auth) if auth is not None else None
        self.certificates = certificates or certs.shared_certificates()
        self.faults = FaultPlan()
        self.host = loopback.HOST
        self.port = 0
        self.connections = 0  # client connections accepted since start()
        self._inbox = _Inbox()
        self._timeout = timeout
        self._controller: _Controller | None = None

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    def client_context(self) -> ssl.SSLContext:
        return self.certificates.client_context()

    def start(self) -> SmtpServer:
        _quiet_aiosmtpd()
        handler = (
            _OAuthHandler(self.faults, self._inbox, self.oauth2)
            if self.oauth2 is not None
            else _Handler(self.faults, self._inbox)
        )
        self.handler = handler
        controller = _Controller(handler, on_connect=self._count, **self._smtp_options())
        controller.start()
        self._controller = controller
        self.port = controller.port
        self.connections = 0  # the Controller's own readiness probe does not count
        return self

    def _smtp_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "server_hostname": "localhost",
            "timeout": self._timeout,
            "ready_timeout": loopback.START_TIMEOUT,
        }
        if self.tls == "starttls":
            options["tls_context"] = self.certificates.server_context()
        elif self.tls == "implicit":
            options["ssl_context"] = self.certificates.server_context()
        if self.auth is not None:
            options["authenticator"] = Authenticator(self.auth)
            options["auth_required"] = True
            # aiosmtpd only knows a STARTTLS upgrade as "TLS"; implicit TLS is TLS too.
            options["auth_require_tls"] = self.tls == "starttls"
        if self.oauth2 is not None:
            options["auth_required"] = True
            options["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
            options["auth_require_tls"] = self.tls == "starttls"
        return options

    def _count(self) -> None:
        self.connections += 1

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[ReceivedMessage]:
        """The messages accepted so far, in arrival order."""
        return self._inbox.snapshot()

    def by_message_id(self) -> dict[str, ReceivedMessage]:
        """Accepted messages by Message-ID (the last one wins if an ID repeats)."""
        return {m.message_id: m for m in self.messages() if m.message_id is not None}

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until `count` messages arrived (TimeoutError after `timeout` s); all of them."""
        return self._inbox.wait_for(count, timeout)

    def clear(self) -> None:
        self._inbox.clear()
