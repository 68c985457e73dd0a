"""Postfix's `smtp-sink`, an SMTP sink in C: for a bench whose sink must not take its CPU.

The tests' sink (tests/servers/smtp_sink.py) is aiosmtpd in a Python process
of its own: at ~1,500 emails/s it takes ~0.3 ms of CPU an email from the two
cores that dripd and PostgreSQL share here, where a real mailbox's server is
another host. `smtp-sink` takes a small part of that.

It comes from Debian's postfix package, fetched with `apt-get download` and
unpacked into CACHE (nothing is installed, no mail server configured). Each
message is dumped to a file of its own (`-d`); `records()` reads them as
`SmtpSinkProcess.records()` reads its log: the file's time is the arrival.
The same interface as `SmtpSinkProcess` for what the benches use of it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import servers.smtp_sink

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dripd-bench" / "postfix"
_RCPT = re.compile(rb"^X-Rcpt-Args: <([^>]*)>", re.MULTILINE)


def unpacked() -> Path:
    """The root of the unpacked postfix package (fetched the first time)."""
    binary = CACHE / "usr" / "sbin" / "smtp-sink"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o777)  # apt's own user (_apt) writes the download here
            subprocess.run(["apt-get", "download", "-qq", "postfix"], cwd=tmp, check=True)
            (package,) = Path(tmp).glob("postfix_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(package), str(CACHE)], check=True)
    return CACHE


class CSinkProcess:
    """`smtp-sink` on 127.0.0.1, a free port; what it received, as `SmtpSinkProcess` tells it."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path  # emptied to start a count: records() read what came after
        self.port = 0
        self._dumps: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> CSinkProcess:
        root = unpacked()
        # smtp-sink drops root for `nobody`, who must be able to write the dumps
        self._dumps = tempfile.TemporaryDirectory(prefix="dripd-bench-c-sink-")
        os.chmod(self._dumps.name, 0o777)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self._process = subprocess.Popen(
            [
                str(root / "usr" / "sbin" / "smtp-sink"),
                *user,
                "-d",
                f"{self._dumps.name}/%H%M%S.",
                f"127.0.0.1:{self.port}",
                "1024",
            ],
            env={**os.environ, "LD_LIBRARY_PATH": str(root / "usr" / "lib" / "postfix")},
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    status = self._process.poll()
                    raise SystemExit(f"smtp-sink did not start (exit {status})") from None
                time.sleep(0.05)
        self.log_path.write_text("")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
        if self._dumps is not None:
            self._dumps.cleanup()

    def records(self) -> list[servers.smtp_sink.SinkRecord]:
        """Each message dumped since `log_path` was written: arrival, Message-ID, recipients."""
        assert self._dumps is not None
        since = self.log_path.stat().st_mtime
        records = []
        for entry in os.scandir(self._dumps.name):
            arrived = entry.stat().st_mtime
            if arrived < since:
                continue
            raw = Path(entry.path).read_bytes()
            recipients = tuple(address.decode() for address in _RCPT.findall(raw))
            message_id = servers.smtp_sink.find_message_id(raw)
            records.append(servers.smtp_sink.SinkRecord(arrived, message_id, recipients))
        return sorted(records)
