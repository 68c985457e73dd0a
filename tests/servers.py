"""Real mail servers on 127.0.0.1 for dripd's tests and benchmarks.

- `SmtpServer`: an aiosmtpd server in a background thread of this process, with
  TLS (none, STARTTLS, implicit), AUTH PLAIN/LOGIN and a `FaultPlan` that makes
  it answer like a misbehaving real server; it records every accepted message.
- `SmtpSinkProcess`: a lean aiosmtpd sink in its own process that appends one line
  per accepted message (arrival time, Message-ID, recipients) to a file: for tests
  that SIGKILL dripd and for benchmarks.
- `Dovecot`: a private Dovecot (IMAP, IMAPS, LMTP) started from a self-contained
  config in a temporary directory, with helpers to add users, deliver, append,
  fetch and force a UIDVALIDITY change.

Certificates come from one process-wide trustme CA (`shared_certificates()`), so a
single `ca_file` verifies every server here. Nothing in this module depends on
pytest; `tests/integration/conftest.py` wraps it in fixtures. Under pytest this
module is imported as `servers` (tests/ is on sys.path); from the repository root
(benchmarks: `python -m bench`) as `tests.servers`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import grp
import imaplib
import itertools
import json
import logging
import os
import pwd
import re
import secrets
import select
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
DOMAIN = "example.test"
START_TIMEOUT = 10.0  # seconds
STOP_TIMEOUT = 10.0  # seconds

T = TypeVar("T")
TlsMode = Literal["none", "starttls", "implicit"]
Stage = Literal["MAIL", "RCPT", "DATA"]

# Replies real servers give; use them in fault plans.
BUSY = "421 4.3.2 Service not available, closing transmission channel"
TEMPFAIL = "451 4.3.0 Temporary local problem, please try again later"
NO_SUCH_USER = "550 5.1.1 The email account that you tried to reach does not exist"
QUOTA_EXCEEDED = "550 5.4.5 Daily user sending quota exceeded"
POLICY_REJECT = "554 5.7.1 Message rejected as spam by content filtering"


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True, kw_only=True)
class Certificates:
    """A test CA and a server certificate for `localhost` and 127.0.0.1, as PEM files."""

    ca_file: Path
    cert_file: Path  # the server's certificate chain
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def make_certificates(directory: Path) -> Certificates:
    """A new CA and server certificate, written under `directory` (0644: Dovecot reads them)."""
    import trustme  # test-only dependency; imported late so the sink process skips it

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", HOST)
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "cert.pem": b"".join(blob.bytes() for blob in cert.cert_chain_pems),
        "key.pem": cert.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        (directory / name).chmod(0o644)
    return Certificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "cert.pem",
        key_file=directory / "key.pem",
    )


_shared: Certificates | None = None
_shared_lock = threading.Lock()


def shared_certificates() -> Certificates:
    """The process-wide test certificates (made once, removed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            directory = Path(tempfile.mkdtemp(prefix="dripd-certs-"))
            directory.chmod(0o755)
            atexit.register(shutil.rmtree, directory, True)
            _shared = make_certificates(directory)
        return _shared


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that need one up front)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """`count` different free ports (one after the other, the kernel may hand out one twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll `predicate()` until it is true or `timeout` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_client(coro: Coroutine[Any, Any, T], *, close_timeout: float = 1.0) -> T:
    """`asyncio.run(coro)`, then wait (up to `close_timeout` s) for its connections to close.

    A TLS connection the client has closed (aiosmtplib after quit() or a failed
    login, aioimaplib after the server answers LOGOUT) finishes its shutdown a
    few loop turns later; plain `asyncio.run` closes the loop first, and the
    half-closed sockets surface later as ResourceWarning, which is an error
    under `filterwarnings = error`.
    """

    async def main() -> T:
        try:
            return await coro
        finally:
            await _connections_closed(close_timeout)

    return asyncio.run(main())


async def _connections_closed(timeout: float) -> None:
    loop = asyncio.get_running_loop()
    # CPython's selector loops keep fd -> transport; a transport drops its
    # socket once connection_lost has run.
    transports = getattr(loop, "_transports", {})
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(getattr(t, "_sock", None) is None for t in list(transports.values())):
            return
        await asyncio.sleep(0.001)


# ---------------------------------------------------------------- SMTP: faults


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


# ---------------------------------------------------------------- SMTP: messages


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


# ---------------------------------------------------------------- SMTP: server


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
    """With AUTH XOAUTH2: the token checked by RFC 7662 introspection (tests/oauth_server.py).

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


class _Authenticator:
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


class _AiosmtpdNoise(logging.Filter):
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
        logging.getLogger("mail.log").addFilter(_AiosmtpdNoise())
        _quieted = True


class _Controller(Controller):
    """aiosmtpd's threaded Controller, bound to a free port chosen by the kernel."""

    def __init__(self, handler: _Handler, *, on_connect: Any, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=0, **kwargs)
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
        certificates: Certificates | None = None,
        timeout: float = 300.0,  # seconds of client silence before the server hangs up
        oauth2: Introspect | None = None,
    ) -> None:
        self.tls: TlsMode = tls
        self.oauth2 = oauth2  # with it, AUTH XOAUTH2 only, required, the token introspected
        self.auth = dict(auth) if auth is not None else None
        self.certificates = certificates or shared_certificates()
        self.faults = FaultPlan()
        self.host = HOST
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
            "ready_timeout": START_TIMEOUT,
        }
        if self.tls == "starttls":
            options["tls_context"] = self.certificates.server_context()
        elif self.tls == "implicit":
            options["ssl_context"] = self.certificates.server_context()
        if self.auth is not None:
            options["authenticator"] = _Authenticator(self.auth)
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


# ---------------------------------------------------------------- SMTP: sink process


class SinkRecord(NamedTuple):
    arrived: float  # time.time() in the sink
    message_id: str  # "-" when the message had none
    rcpt_tos: tuple[str, ...]


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(\S+)", re.IGNORECASE | re.MULTILINE)


def find_message_id(raw: bytes) -> str:
    """The Message-ID in a message's header block, or "-"; cheap (no MIME parsing)."""
    end = raw.find(b"\r\n\r\n")
    match = _MESSAGE_ID.search(raw, 0, end if end >= 0 else len(raw))
    return match.group(1).decode("ascii", "replace") if match else "-"


class _SinkHandler:
    """Append `time<TAB>message-id<TAB>rcpt,rcpt` per message, before answering 250."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message_id = find_message_id(envelope.original_content or b"")
        line = f"{time.time():.6f}\t{message_id}\t{','.join(envelope.rcpt_tos)}\n"
        os.write(self.fd, line.encode("utf-8", "replace"))
        return "250 2.0.0 OK"


class SmtpSinkProcess:
    """An aiosmtpd sink in its own process; each accepted message is one line in `log_path`.

    Lines are appended with one write(2) each before the 250 reply, so a message
    the client saw accepted is in the file even if the client was SIGKILLed right
    after. Options as for `SmtpServer` (no fault plan).
    """

    def __init__(
        self,
        log_path: Path,
        *,
        tls: TlsMode = "none",
        auth: Mapping[str, str] | None = None,
        certificates: Certificates | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.tls: TlsMode = tls
        self.auth = dict(auth) if auth is not None else None
        self.certificates = certificates or shared_certificates()
        self.host = HOST
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> SmtpSinkProcess:
        self.log_path.touch()
        # The sink exits when its stdin closes: it does not outlive this process.
        process = subprocess.Popen(
            self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._process = process
        try:
            self.port = _read_port(process, START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self) -> list[str]:
        command = [sys.executable, str(Path(__file__).resolve()), "sink"]
        command += ["--log", str(self.log_path), "--tls", self.tls]
        if self.tls != "none":
            command += ["--cert", str(self.certificates.cert_file)]
            command += ["--key", str(self.certificates.key_file)]
        if self.auth is not None:
            command += ["--auth-json", json.dumps(self.auth)]
        return command

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> SmtpSinkProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def records(self) -> list[SinkRecord]:
        """Every complete line of the log so far."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        records = []
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # being written right now
            arrived, message_id, rcpts = line.rstrip("\n").split("\t")
            records.append(SinkRecord(float(arrived), message_id, tuple(rcpts.split(","))))
        return records

    def message_ids(self) -> list[str]:
        return [record.message_id for record in self.records()]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[SinkRecord]:
        """Poll the log until it has `count` records (TimeoutError otherwise)."""
        records: list[SinkRecord] = []

        def enough() -> bool:
            nonlocal records
            records = self.records()
            return len(records) >= count

        if not wait_until(enough, timeout, interval=0.02):
            raise TimeoutError(f"{len(records)} record(s) within {timeout} s, expected {count}")
        return records


def _read_port(process: subprocess.Popen[str], timeout: float) -> int:
    """The port the sink prints on its first stdout line."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        raise RuntimeError(f"the SMTP sink did not start (exit code {process.poll()})")
    return int(line)


def _sink_main(argv: Sequence[str]) -> None:
    """`python servers.py sink --log FILE [...]`: run the sink until SIGTERM."""
    parser = argparse.ArgumentParser(prog="servers.py sink")
    parser.add_argument("--log", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth-json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").addFilter(_AiosmtpdNoise())
    asyncio.run(_serve_sink(args))


async def _serve_sink(args: argparse.Namespace) -> None:
    fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    handler = _SinkHandler(fd)
    context = None
    if args.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    options: dict[str, Any] = {"hostname": "localhost", "enable_SMTPUTF8": True}
    if args.tls == "starttls":
        options["tls_context"] = context
    if args.auth_json:
        options["authenticator"] = _Authenticator(json.loads(args.auth_json))
        options["auth_required"] = True
        options["auth_require_tls"] = args.tls == "starttls"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options),
        host=HOST,
        port=0,
        ssl=context if args.tls == "implicit" else None,
        # asyncio's default of 100 drops the SYNs of a few hundred mailboxes'
        # connections at once (bench/mailboxes.py): retried only after 1 s.
        backlog=1024,
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(sys.stdin.fileno(), _stop_at_eof, stop)
    print(server.sockets[0].getsockname()[1], flush=True)
    await stop.wait()
    server.close()
    os.close(fd)


def _stop_at_eof(stop: asyncio.Event) -> None:
    if not os.read(sys.stdin.fileno(), 4096):
        asyncio.get_running_loop().remove_reader(sys.stdin.fileno())
        stop.set()


# ---------------------------------------------------------------- Dovecot

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
DH_PARAMS = Path("/usr/share/dovecot/dh.pem")

_STATIC_USERDB = """\
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}"""
# A uid of its own per user: Linux allows 128 inotify instances per uid, and each
# IDLE beyond them falls back to polling every second (bench/mailboxes.py's 200 inboxes).
_USERDB_FILES = """\
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/userdb/%u
}}"""
FIRST_USER_UID = 40000

_CONFIG = """\
# A private Dovecot for dripd's tests, written by tests/servers.py.
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
listen = {host}
protocols = imap lmtp
disable_plaintext_auth = no
auth_mechanisms = plain login{mechanisms}
# A wrong password is answered in ~0.5 s (Dovecot's failure timer) instead of 2 s.
auth_failure_delay = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = <{dh}
{oauth2_passdb}# One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a
# second, so users added to one shared file within that second would not log in.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
{userdb}
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
mail_max_userip_connections = 100
# One imap process per logged-in connection: room for a thousand IDLEs at once and
# their logins (tests/acceptance/test_mailboxes.py, bench/mailboxes.py at N = 1,000).
default_process_limit = 2500
default_client_limit = 4000
namespace inbox {{
  inbox = yes
{namespace_prefix}{sent_mailbox}}}
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
first_valid_uid = 1
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # Without this, one failed LOGIN makes the next logins from 127.0.0.1 wait 4-8 s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
"""


class DovecotError(RuntimeError):
    """Dovecot did not start, or a helper's IMAP/LMTP/doveadm command failed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ImapAccount:
    """A mailbox on a test Dovecot and how to reach it."""

    address: str
    password: str
    host: str
    port: int  # plain IMAP (loopback only)
    tls_port: int  # implicit TLS (IMAPS)
    ca_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


class FetchedMessage(NamedTuple):
    uid: int
    flags: tuple[str, ...]
    raw: bytes


def _unprivileged_account() -> tuple[str, str, int, int]:
    """(user, group, uid, gid) Dovecot's processes run as: `nobody` as root, else ourselves."""
    entry = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    group = grp.getgrgid(entry.pw_gid).gr_name
    return entry.pw_name, group, entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """chmod a+rx `path` and its parents inside the temp dir (mkdtemp and tmp_path are 0700).

    As root, Dovecot's `nobody` processes must read the users file and maildirs;
    otherwise LOGIN answers "[UNAVAILABLE] Temporary authentication failure".
    """
    top = Path(tempfile.gettempdir()).resolve()
    path = path.resolve()
    while path != top and top in path.parents:
        path.chmod(path.stat().st_mode | 0o755)
        path = path.parent


def _sent_mailbox(name: str | None) -> str:
    """The namespace's block that gives every user a `\\Sent` folder (none for None)."""
    if name is None:
        return ""
    return f"  mailbox {_quote(name)} {{\n    special_use = \\Sent\n    auto = subscribe\n  }}\n"


def _write_atomically(path: Path, text: str) -> None:
    """Dovecot never reads half a file."""
    staging = path.with_name(f".{path.name}.new")
    staging.write_text(text, encoding="utf-8")
    staging.chmod(0o644)
    staging.replace(path)


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


class Dovecot:
    """A private Dovecot (IMAP, IMAPS, LMTP on 127.0.0.1) from a config in its own directory.

    Runs in the foreground as this process's child (`dovecot -F -c CONF`), so
    `stop()` and `kill()` can wait for it. The ports are fixed at construction and
    kept across `kill()`/`start()`. Users can be added while it runs (one
    passwd-file each, read at the user's first login).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        certificates: Certificates | None = None,
        sent_folder: str | None = "Sent",
        prefix: str = "",
        oauth2_introspection: str | None = None,
        uid_per_user: bool = False,
    ):
        """`sent_folder`: the folder every user has, marked `\\Sent` (RFC 6154); None: none.

        `prefix`: the personal namespace's, e.g. "INBOX." (cPanel's and Courier's
        layout: every folder is under INBOX, "." between levels).
        `oauth2_introspection`: an RFC 7662 URL (tests/oauth_server.py); with it, users
        also log in with XOAUTH2/OAUTHBEARER, their tokens checked there (Dovecot's oauth2 passdb).
        `uid_per_user`: each user its own uid (past 128 IDLE processes per uid, Linux
        refuses inotify and Dovecot polls).
        """
        self.oauth2_introspection = oauth2_introspection
        if root is None:
            root = Path(tempfile.mkdtemp(prefix="dripd-dovecot-"))
            self._owns_root = True
        else:
            root.mkdir(parents=True, exist_ok=True)
            self._owns_root = False
        self.root = root
        self.certificates = certificates or shared_certificates()
        self.host = HOST
        self.imap_port, self.imaps_port, self.lmtp_port = free_ports(3)
        self.config_path = root / "dovecot.conf"
        self.log_path = root / "dovecot.log"
        self._users: dict[str, str] = {}
        # As root only: a uid each (see _USERDB_FILES), else all are Dovecot's account's.
        self.uid_per_user = uid_per_user and os.geteuid() == 0
        self._uids: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        self.sent_folder = sent_folder
        self.prefix = prefix
        self._prepare()

    @staticmethod
    def available() -> bool:
        return DOVECOT.exists()

    @property
    def ca_file(self) -> Path:
        return self.certificates.ca_file

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _prepare(self) -> None:
        user, group, uid, gid = _unprivileged_account()
        _make_traversable(self.root)
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(mail, uid, gid)  # Dovecot's mail processes create the maildirs
        (self.root / "users").mkdir(mode=0o755, exist_ok=True)
        userdb = _STATIC_USERDB.format(uid=uid, gid=gid, root=self.root)
        if self.uid_per_user:
            mail.chmod(0o1777)  # each user's processes make their own maildir
            (self.root / "userdb").mkdir(mode=0o755, exist_ok=True)
            userdb = _USERDB_FILES.format(root=self.root)
        config = _CONFIG.format(
            userdb=userdb,
            root=self.root,
            host=self.host,
            cert=self.certificates.cert_file,
            key=self.certificates.key_file,
            dh=DH_PARAMS,
            uid=uid,
            gid=gid,
            user=user,
            group=group,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            lmtp_port=self.lmtp_port,
            sent_mailbox=_sent_mailbox(self.sent_folder),
            namespace_prefix=f"  prefix = {self.prefix}\n  separator = .\n" if self.prefix else "",
            **self._oauth2_settings(),
        )
        self.config_path.write_text(config, encoding="utf-8")

    def _oauth2_settings(self) -> dict[str, str]:
        if self.oauth2_introspection is None:
            return {"mechanisms": "", "oauth2_passdb": ""}
        settings = self.root / "oauth2.conf.ext"
        settings.write_text(
            f"introspection_url = {self.oauth2_introspection}\n"
            "introspection_mode = post\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n",
            encoding="utf-8",
        )
        settings.chmod(0o644)
        passdb = (
            "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
            f"  args = {settings}\n}}\n"
        )
        return {"mechanisms": " xoauth2 oauthbearer", "oauth2_passdb": passdb}

    # -- lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> Dovecot:
        """Start the master and wait until IMAP answers; DovecotError with its log if not."""
        if self.running:
            return self
        if not self.available():
            raise DovecotError(f"{DOVECOT} is not installed")
        stderr = (self.root / "dovecot.stderr").open("ab")
        with stderr:
            self._process = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        atexit.register(self._kill_at_exit, self._process)
        if not wait_until(self._greets, timeout, interval=0.01):
            self.kill()
            raise DovecotError(f"Dovecot did not start within {timeout} s:\n{self.log_tail()}")
        return self

    def _greets(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise DovecotError(f"Dovecot exited ({self._process.returncode}):\n{self.log_tail()}")
        try:
            with socket.create_connection((self.host, self.imap_port), timeout=1.0) as sock:
                return sock.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the master and wait for it (SIGKILL after `timeout` s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the master: its children exit at once and the ports are free again."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
            wait_until(self._ports_closed, 2.0)

    def _ports_closed(self) -> bool:
        try:
            socket.create_connection((self.host, self.imap_port), timeout=0.2).close()
        except OSError:
            return True
        return False

    def restart(self) -> Dovecot:
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        """Kill (nothing is kept, so no need for SIGTERM's ~1 s), and remove a directory we made."""
        self.kill()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    @staticmethod
    def _kill_at_exit(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for path in (self.root / "dovecot.stderr", self.log_path):
            if path.exists():
                parts += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(parts)

    # -- users

    def add_user(self, address: str, password: str) -> ImapAccount:
        """Add a user (or change a password: Dovecot sees that within ~1 s); its account."""
        if ":" in address or ":" in password or "\n" in address + password:
            raise ValueError("addresses and passwords in a passwd-file can't hold ':' or newlines")
        if "/" in address or address.startswith("."):
            raise ValueError(f"not a usable address for a passwd-file name: {address!r}")
        self._users[address] = password
        self._write_user(address, password)
        return self.account(address)

    def new_user(self, prefix: str = "user", password: str | None = None) -> ImapAccount:
        """A user with a fresh address `prefix-N-xxxxxx@example.test` and a random password."""
        address = f"{prefix}-{next(self._counter)}-{secrets.token_hex(3)}@{DOMAIN}"
        return self.add_user(address, password or secrets.token_urlsafe(12))

    def account(self, address: str) -> ImapAccount:
        return ImapAccount(
            address=address,
            password=self._users[address],
            host=self.host,
            port=self.imap_port,
            tls_port=self.imaps_port,
            ca_file=self.ca_file,
        )

    def _write_user(self, address: str, password: str) -> None:
        _write_atomically(self.root / "users" / address, f"{address}:{{PLAIN}}{password}\n")
        if self.uid_per_user:
            uid = self._uids.setdefault(address, FIRST_USER_UID + len(self._uids))
            gid = _unprivileged_account()[3]
            home = self.root / "mail" / address
            _write_atomically(self.root / "userdb" / address, f"{address}::{uid}:{gid}::{home}::\n")

    # -- putting messages in, taking them out

    def deliver(self, user: str, raw: bytes, *, sender: str = f"sender@{DOMAIN}") -> None:
        """Deliver to `user`'s INBOX over LMTP, as an MTA would."""
        with smtplib.LMTP(
            self.host, self.lmtp_port, local_hostname="localhost", timeout=10
        ) as lmtp:
            refused = lmtp.sendmail(sender, [user], _crlf(raw))
        if refused:
            raise DovecotError(f"LMTP refused {user}: {refused}")

    @contextlib.contextmanager
    def imap(self, user: str) -> Iterator[imaplib.IMAP4]:
        """A logged-in imaplib connection (plain, loopback) for `user`."""
        conn = imaplib.IMAP4(self.host, self.imap_port, timeout=10)
        try:
            conn.login(user, self._users[user])
            yield conn
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                conn.logout()

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        *,
        flags: Sequence[str] = (),
        when: float | None = None,
    ) -> int:
        """APPEND a message (flags like "\\Seen"); its UID (from APPENDUID)."""
        flag_list = "(" + " ".join(flags) + ")" if flags else None
        date = imaplib.Time2Internaldate(when) if when is not None else None
        with self.imap(user) as conn:
            typ, data = conn.append(_quote(folder), flag_list, date, _crlf(raw))
        found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"") if typ == "OK" else None
        if found is None:
            raise DovecotError(f"APPEND to {folder} failed: {typ} {data!r}")
        return int(found.group(1))

    def fetch_all(self, user: str, folder: str = "INBOX") -> list[FetchedMessage]:
        """Every message in `folder` as (uid, flags, raw), without setting \\Seen."""
        with self.imap(user) as conn:
            typ, data = conn.select(_quote(folder), readonly=True)
            if typ != "OK":
                raise DovecotError(f"EXAMINE {folder} failed: {data!r}")
            if int(data[0] or 0) == 0:
                return []
            typ, data = conn.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        if typ != "OK":
            raise DovecotError(f"FETCH in {folder} failed: {data!r}")
        return _parse_fetch(data)

    def create_mailbox(self, user: str, folder: str) -> None:
        self.doveadm("mailbox", "create", "-u", user, folder)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user, "uidvalidity", folder)
        return int(out.split("uidvalidity=")[1].split()[0])

    def change_uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        """Give `folder` a new, higher UIDVALIDITY; the new value.

        `doveadm mailbox update --uid-validity` keeps the messages (a client must
        treat every UID it knew as stale), works on INBOX too, and Dovecot sends
        BYE to sessions that have the folder selected. For a folder other than
        INBOX, `recreate_mailbox` is the other way a UIDVALIDITY changes in the
        wild: deleted and created again, empty.
        """
        new = self.uidvalidity(user, folder) + 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        return new

    def recreate_mailbox(self, user: str, folder: str) -> int:
        """Delete `folder` (not INBOX) with its messages and create it again; its UIDVALIDITY."""
        self.doveadm("mailbox", "delete", "-u", user, folder)
        self.create_mailbox(user, folder)
        return self.uidvalidity(user, folder)

    def doveadm(self, *args: str) -> str:
        """Run `doveadm -c CONF ARGS`; its stdout (DovecotError on failure)."""
        result = subprocess.run(
            [str(DOVEADM), "-c", str(self.config_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if result.returncode != 0:
            raise DovecotError(f"doveadm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout


_FETCH_UID = re.compile(rb"\bUID (\d+)")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


def _parse_fetch(data: Sequence[Any]) -> list[FetchedMessage]:
    """imaplib FETCH data → messages, by the literal (unsolicited FLAGS lines are skipped)."""
    messages = []
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue
        meta = item[0]
        following = data[index + 1] if index + 1 < len(data) else b""
        if isinstance(following, bytes):
            meta += following  # attributes the server sent after the literal
        uid = _FETCH_UID.search(meta)
        flags = _FETCH_FLAGS.search(meta)
        if uid is None:
            continue
        names = tuple(flags.group(1).decode().split()) if flags else ()
        messages.append(FetchedMessage(int(uid.group(1)), names, item[1]))
    return sorted(messages)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "sink":
        raise SystemExit("usage: servers.py sink --log FILE [--tls MODE --cert F --key F]")
    _sink_main(args[1:])


if __name__ == "__main__":
    main()
