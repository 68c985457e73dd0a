"""Talking IMAP to a rep's mailbox (aioimaplib): log in, find by Message-ID, append.

aioimaplib has no STARTTLS, so `security` is implicit TLS ("tls", port 993)
or, to localhost only, "none".
"""

from __future__ import annotations

import contextlib
from types import TracebackType

import aioimaplib

from dripd import config, smtp

TIMEOUT = 30.0  # seconds for any one IMAP command


class ImapError(Exception):
    """The IMAP server refused, or the connection failed; the message says which."""


class Session:
    """One logged-in IMAP connection; use as `async with Session(settings, password) as s:`."""

    def __init__(self, settings: config.ImapConfig, password: str | None) -> None:
        self.settings = settings
        self._password = password
        self._client: aioimaplib.IMAP4 | None = None
        self._selected: str | None = None

    async def __aenter__(self) -> Session:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        s = self.settings
        try:
            if s.security == "tls":
                client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                    host=s.host,
                    port=s.port,
                    timeout=TIMEOUT,
                    ssl_context=smtp.tls_context(s.ca_file),
                )
            else:
                client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=TIMEOUT)
            await client.wait_hello_from_server()
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"cannot connect to {s.host}:{s.port}: {exc}") from exc
        self._client = client
        response = await self._run(client.login(s.username or "", self._password or ""))
        if response.result != "OK":
            await self.close()
            raise ImapError(f"login refused for {s.username}: {_text(response.lines)}")

    async def _run(self, command: object) -> aioimaplib.Response:
        try:
            return await command  # type: ignore[misc]
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"IMAP {self.settings.host}: {exc}") from exc

    @property
    def client(self) -> aioimaplib.IMAP4:
        if self._client is None:
            raise ImapError("not connected")
        return self._client

    async def select(self, folder: str) -> aioimaplib.Response:
        response = await self._run(self.client.select(quote(folder)))
        if response.result != "OK":
            raise ImapError(f"cannot open folder {folder!r}: {_text(response.lines)}")
        self._selected = folder
        return response

    async def find_message_id(self, folder: str, message_id: str) -> bool:
        """True if a message with this Message-ID is in `folder`."""
        if self._selected != folder:
            await self.select(folder)
        response = await self._run(
            self.client.uid_search("HEADER", "Message-ID", quote(message_id), charset=None)
        )
        if response.result != "OK":
            raise ImapError(f"search in {folder!r} failed: {_text(response.lines)}")
        return any(_search_hits(line) for line in response.lines)

    async def append(self, folder: str, data: bytes, flags: str = r"(\Seen)") -> None:
        response = await self._run(self.client.append(data, mailbox=quote(folder), flags=flags))
        if response.result != "OK":
            raise ImapError(f"cannot append to {folder!r}: {_text(response.lines)}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(OSError, TimeoutError, aioimaplib.AioImapException):
            await client.logout()


def quote(text: str) -> str:
    """An IMAP quoted string (folder names, Message-IDs)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _search_hits(line: bytes | bytearray | str) -> bool:
    """True for a SEARCH result line naming at least one message.

    aioimaplib hands the untagged result without its "SEARCH" word (b"1 2");
    other servers' clients keep it; the completion line has words, not numbers.
    """
    data = line.encode() if isinstance(line, str) else bytes(line)
    data = data.strip()
    if data.upper().startswith(b"SEARCH"):
        data = data[6:].strip()
    return bool(data) and all(part.isdigit() for part in data.split())


def _text(lines: list[bytes | bytearray | str]) -> str:
    parts = [
        line.decode(errors="replace") if isinstance(line, bytes | bytearray) else str(line)
        for line in lines
    ]
    return " ".join(p.strip() for p in parts if p.strip())[:200]
