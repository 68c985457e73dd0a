"""`SmtpSinkProcess`: a lean aiosmtpd sink in its own process, one log line per message.

Each accepted message is appended (arrival time, Message-ID, recipients) to a file
before the 250 reply: for tests that SIGKILL dripd, and for the benchmarks.
The sink runs as `python -m servers.smtp_sink --log FILE [...]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from aiosmtpd.smtp import SMTP, Envelope, Session
from servers import certs, loopback, smtp


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
        tls: smtp.TlsMode = "none",
        auth: Mapping[str, str] | None = None,
        certificates: certs.Certificates | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.tls: smtp.TlsMode = tls
        self.auth = dict(auth) if auth is not None else None
        self.certificates = certificates or certs.shared_certificates()
        self.host = loopback.HOST
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
            self._command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_with_tests_on_path(os.environ),
        )
        self._process = process
        try:
            self.port = _read_port(process, loopback.START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "servers.smtp_sink"]
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
            process.wait(loopback.STOP_TIMEOUT)
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

        if not loopback.wait_until(enough, timeout, interval=0.02):
            raise TimeoutError(f"{len(records)} record(s) within {timeout} s, expected {count}")
        return records


def _with_tests_on_path(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` with tests/ first on PYTHONPATH, so `-m servers.smtp_sink` finds this package."""
    tests = str(Path(__file__).resolve().parent.parent)
    path = [tests, *filter(None, [environ.get("PYTHONPATH")])]
    return {**environ, "PYTHONPATH": os.pathsep.join(path)}


def _read_port(process: subprocess.Popen[str], timeout: float) -> int:
    """The port the sink prints on its first stdout line."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        raise RuntimeError(f"the SMTP sink did not start (exit code {process.poll()})")
    return int(line)


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m servers.smtp_sink --log FILE [...]`: run the sink until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m servers.smtp_sink")
    parser.add_argument("--log", required=True)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth-json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").addFilter(smtp.AiosmtpdNoise())
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
        options["authenticator"] = smtp.Authenticator(json.loads(args.auth_json))
        options["auth_required"] = True
        options["auth_require_tls"] = args.tls == "starttls"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options),
        host=loopback.HOST,
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


if __name__ == "__main__":
    main()
