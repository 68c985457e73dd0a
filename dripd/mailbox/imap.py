"""Talking IMAP to a rep's mailbox (aioimaplib): log in, find, append, read, IDLE.

`security`: implicit TLS ("tls", port 993), STARTTLS ("starttls", port 143:
aioimaplib has none, so it is done here, `_start_tls`) or, to localhost
only, "none".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import ssl
from dataclasses import dataclass
from types import TracebackType

import aioimaplib

from dripd import errors
from dripd.files import config
from dripd.mailbox import tls, tokens

TIMEOUT = 30.0  # seconds for any one IMAP command
FETCH_LIMIT = 256 * 1024  # bytes of a message read: headers and the parts that matter come first
_FETCH_HEAD = re.compile(rb"^\d+ FETCH \(")
_UID = re.compile(rb"\bUID (\d+)")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
# LIST reply: (attributes) delimiter name; the name quoted, an atom, or a literal {n}
_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:NIL|"(?:\\.|[^"\\])*") (?P<name>.*)$', re.IGNORECASE)
_LITERAL = re.compile(rb"^\{\d+\}$")
_NAMESPACE = re.compile(rb'^\(\((?P<prefix>"(?:\\.|[^"\\])*")')


@dataclass(frozen=True, slots=True, kw_only=True)
class Folder:
    """A folder as EXAMINE reports it."""

    name: str
    uidvalidity: int
    uidnext: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """A folder as LIST reports it: its name (decoded) and attributes (`\\Sent`, …)."""

    name: str
    attributes: frozenset[str]


class ImapError(Exception):
    """The IMAP server refused, or the connection failed; the message says which."""

    def __init__(self, message: str, *, trycreate: bool = False) -> None:
        super().__init__(message)
        self.trycreate = trycreate  # an APPEND refused with [TRYCREATE]: the folder is missing


async def _start_tls(client: aioimaplib.IMAP4, context: ssl.SSLContext, host: str) -> None:
    """STARTTLS (RFC 3501 6.2.1), then the capabilities again: those said in clear don't count."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError(
            f'{host} offers no STARTTLS on this port (use port 993 with security = "tls")'
        )
    command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
    response = await protocol.execute(command)
    if response.result != "OK":
        raise ImapError(f"STARTTLS refused: {_text(response.lines)}")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(protocol.transport, protocol, context, server_hostname=host)
    if transport is None:
        raise ImapError("STARTTLS: the connection was closed")
    protocol.transport = transport
    await protocol.capability()


class _XOAuth2(aioimaplib.Command):  # type: ignore[misc]
    """AUTHENTICATE XOAUTH2 with its initial response (RFC 4959 SASL-IR).

    A refused token is answered with a continuation holding the server's
    reason (base64 JSON) and the server waits for the client's empty line
    before its NO; aioimaplib's own `xoauth2()` never sends it and hangs
    until its timeout. This command sends it, and keeps the reason.
    """

    def __init__(self, protocol: aioimaplib.IMAP4ClientProtocol, user: str, token: str) -> None:
        self.sasl = base64.b64encode(
            f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
        ).decode()
        super().__init__(
            "AUTHENTICATE", protocol.new_tag(), "XOAUTH2", self.sasl, loop=protocol.loop
        )
        self._transport = protocol.transport
        self.reason = ""

    def append_to_resp(self, line: bytes, result: str = "Pending") -> None:
        if result == "Pending" and isinstance(line, bytes) and line.startswith(b"+"):
            self.reason = _sasl_reason(line[1:].strip())
            self._transport.write(b"\r\n")
            return
        super().append_to_resp(line, result)


def _authenticated(protocol: aioimaplib.IMAP4ClientProtocol, response: aioimaplib.Response) -> None:
    """What aioimaplib's LOGIN does on OK: the state, and the capabilities the OK lists.

    Dovecot announces IDLE only after login: without them, the watcher polled.
    """
    protocol.state = aioimaplib.AUTH
    for line in response.lines:
        if isinstance(line, bytes) and line.startswith(b"CAPABILITY"):
            protocol.capabilities |= set(line.decode().split()[1:])


def _sasl_reason(challenge: bytes) -> str:
    """The server's reason in an XOAUTH2 error challenge (`{"status":"401",...}`), briefly."""
    try:
        data = json.loads(base64.b64decode(challenge, validate=True))
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    return ", ".join(f"{k} {v}" for k, v in data.items() if isinstance(v, str | int))[:200]


class Session:
    """One logged-in IMAP connection; use as `async with Session(settings, password) as s:`.

    With `token_source` (auth = "oauth2"), it logs in with XOAUTH2; a rep
    whose sign-in is gone raises errors.SignInError.
    """

    def __init__(
        self,
        settings: config.ImapConfig,
        password: str | None,
        *,
        token_source: tokens.TokenSource | None = None,
    ) -> None:
        self.settings = settings
        self._password = password
        self._tokens = token_source
        self._client: aioimaplib.IMAP4 | None = None
        self._selected: str | None = None
        self._lost = asyncio.Event()

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
                # IMAP4_SSL takes no conn_lost_cb; IMAP4 with a context is the same client.
                client = aioimaplib.IMAP4(
                    host=s.host,
                    port=s.port,
                    timeout=TIMEOUT,
                    ssl_context=tls.context(s.ca_file),
                    conn_lost_cb=self._on_lost,
                )
            else:
                client = aioimaplib.IMAP4(
                    host=s.host, port=s.port, timeout=TIMEOUT, conn_lost_cb=self._on_lost
                )
            self._client = client  # closed by close() whatever fails from here
            await client.wait_hello_from_server()
            if s.security == "starttls":
                await _start_tls(client, tls.context(s.ca_file), s.host)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            self._abort()
            raise ImapError(tls.connect_failure(s.host, s.port, exc, s.security)) from exc
        except ImapError:
            self._abort()
            raise
        if self._tokens is not None:
            await self._login_oauth2(client, self._tokens)
            return
        response = await self._run(client.login(s.username or "", self._password or ""))
        if response.result != "OK":
            await self.close()
            raise ImapError(f"login refused for {s.username}: {_text(response.lines)}")

    async def _login_oauth2(self, client: aioimaplib.IMAP4, source: tokens.TokenSource) -> None:
        """XOAUTH2; a refused token is rejected and tried once more, refreshed."""
        for attempt in (1, 2):
            try:
                token = await source.access_token()
            except (errors.SignInError, errors.SignInUnavailable):
                self._abort()
                raise
            command = _XOAuth2(client.protocol, source.login, token)
            execute = client.protocol.execute(command, scrub=command.sasl)
            response = await self._run(asyncio.wait_for(execute, TIMEOUT))
            if response.result == "OK":
                _authenticated(client.protocol, response)
                return
            source.reject(token)
            if attempt == 2:
                await self.close()
                reason = f" ({command.reason})" if command.reason else ""
                raise ImapError(
                    f"XOAUTH2 login refused for {source.login}: {_text(response.lines)}{reason}"
                )

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost.set()

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
        response = await self._run(self.client.select(mailbox(folder)))
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
        response = await self._run(self.client.append(data, mailbox=mailbox(folder), flags=flags))
        if response.result != "OK":
            text = _text(response.lines)
            trycreate = "[TRYCREATE]" in text.upper()
            raise ImapError(f"cannot append to {folder!r}: {text}", trycreate=trycreate)

    async def list_folders(self, *, special_use: bool = False) -> list[Listed]:
        """Every folder (LIST "" "*"), or only those with a special use (RFC 6154)."""
        selection = ("(SPECIAL-USE)",) if special_use else ()
        command = self.client.protocol.simple_command("LIST", *selection, '""', '"*"')
        response = await self._run(asyncio.wait_for(command, TIMEOUT))
        if response.result != "OK":
            raise ImapError(f"cannot list the folders: {_text(response.lines)}")
        return _listed(response.lines)

    async def create(self, folder: str, *, use: str | None = None) -> None:
        """CREATE `folder`; with its special use (`\\Sent`) where CREATE-SPECIAL-USE is offered."""
        args = [mailbox(folder)]
        if use and self.client.has_capability("CREATE-SPECIAL-USE"):
            args.append(f"(USE ({use}))")
        command = self.client.protocol.simple_command("CREATE", *args)
        response = await self._run(asyncio.wait_for(command, TIMEOUT))
        if response.result != "OK":
            raise ImapError(f"cannot create folder {folder!r}: {_text(response.lines)}")

    async def personal_prefix(self) -> str:
        """The personal namespace's prefix (`INBOX.` on Courier-style servers), else ""."""
        if not self.client.has_capability("NAMESPACE"):
            return ""
        response = await self._run(self.client.namespace())
        found = next(
            (m for line in response.lines if (m := _NAMESPACE.match(_line_bytes(line)))), None
        )
        if response.result != "OK" or found is None:
            return ""
        return _decode_name(_unquote(found.group("prefix")))

    async def examine(self, folder: str) -> Folder:
        """Open `folder` read-only: nothing dripd does can change a flag in it."""
        response = await self._run(self.client.examine(mailbox(folder)))
        if response.result != "OK":
            raise ImapError(f"cannot open folder {folder!r}: {_text(response.lines)}")
        # aioimaplib only counts SELECT as selecting; EXAMINE selects too (RFC 3501 6.3.2).
        self.client.protocol.state = aioimaplib.SELECTED
        self._selected = None  # not SELECTed: find_message_id/append select again
        codes = {
            m.group(1): int(m.group(2))
            for line in response.lines
            if isinstance(line, bytes) and (m := _CODE.search(line))
        }
        if b"UIDVALIDITY" not in codes:
            raise ImapError(f"the server gave no UIDVALIDITY for {folder!r}")
        return Folder(
            name=folder, uidvalidity=codes[b"UIDVALIDITY"], uidnext=codes.get(b"UIDNEXT", 0)
        )

    async def search_uids(self, *criteria: str) -> list[int]:
        """UIDs of the messages matching `criteria` (e.g. "UID", "5:*"), ascending."""
        response = await self._run(self.client.uid_search(*criteria, charset=None))
        if response.result != "OK":
            raise ImapError(f"search failed: {_text(response.lines)}")
        uids: set[int] = set()
        for line in response.lines:
            data = bytes(line) if isinstance(line, bytes | bytearray) else line.encode()
            if data.upper().startswith(b"SEARCH"):
                data = data[6:]
            words = data.split()
            if words and all(w.isdigit() for w in words):
                uids.update(int(w) for w in words)
        return sorted(uids)

    async def fetch(self, uids: list[int]) -> list[tuple[int, bytes]]:
        """(UID, first FETCH_LIMIT bytes) of each message in `uids`; \\Seen is never set."""
        if not uids:
            return []
        items = f"(UID BODY.PEEK[]<0.{FETCH_LIMIT}>)"
        response = await self._run(self.client.uid("fetch", _uid_set(uids), items))
        if response.result != "OK":
            raise ImapError(f"fetch failed: {_text(response.lines)}")
        return _fetched(response.lines)

    @property
    def can_idle(self) -> bool:
        return bool(self.client.has_capability("IDLE"))

    async def idle(self, timeout: float, stop: asyncio.Event) -> bool:
        """IDLE until new mail, `timeout` or `stop`; True when the server announced new mail."""
        client = self.client
        try:
            idling = await client.idle_start(timeout=timeout)
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            raise ImapError(f"IMAP {self.settings.host}: IDLE refused: {exc}") from exc
        try:
            return await self._wait_push(timeout, stop)
        finally:
            if not self._lost.is_set():
                client.idle_done()
                with contextlib.suppress(TimeoutError, aioimaplib.AioImapException):
                    await asyncio.wait_for(idling, TIMEOUT)

    async def _wait_push(self, timeout: float, stop: asyncio.Event) -> bool:
        client = self.client
        while True:
            push = asyncio.ensure_future(client.wait_server_push(timeout=timeout + TIMEOUT))
            stopped = asyncio.ensure_future(stop.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            done, pending = await asyncio.wait(
                {push, stopped, lost}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()
            if lost in done:
                raise ImapError(f"IMAP {self.settings.host}: connection lost")
            if stopped in done:
                return False
            try:
                lines = push.result()
            except TimeoutError as exc:
                raise ImapError(f"IMAP {self.settings.host}: IDLE went silent") from exc
            if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                return False
            if any(isinstance(line, bytes) and line.endswith(b"EXISTS") for line in lines):
                return True

    async def noop(self) -> None:
        """Ask the server for news (and prove the connection is alive)."""
        response = await self._run(self.client.noop())
        if response.result != "OK":
            raise ImapError(f"NOOP failed: {_text(response.lines)}")

    async def close(self) -> None:
        client = self._client
        if client is None:
            return
        if not self._lost.is_set():  # after a hang-up (a BYE) LOGOUT would wait out TIMEOUT
            with contextlib.suppress(OSError, TimeoutError, aioimaplib.AioImapException):
                await client.logout()
        # aioimaplib leaves the socket to the server's hang-up after LOGOUT; a
        # loop that ends right away (`check --connect`) would never see it.
        # The session is over: no TLS goodbye to wait for.
        self._abort()

    def _abort(self) -> None:
        """Drop the connection at once (it failed before a session began, or is over)."""
        client, self._client = self._client, None
        transport = getattr(client.protocol, "transport", None) if client else None
        if transport is not None:
            transport.abort()


def quote(text: str) -> str:
    """An IMAP quoted string (Message-IDs, folder names once encoded)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox(name: str) -> str:
    """A folder name as the config gives it (`Éléments envoyés`), as IMAP wants it.

    RFC 3501 5.1.3: modified UTF-7 (`&AMk-l&AOk-ments envoy&AOk-s`), quoted.
    Sent as UTF-8, Dovecot refused it ("not valid mUTF-7"), and so do others.
    """
    # imapclient's codec; importing the package loads its whole client (~45 ms),
    # so only once a folder is named, not at every dripd start.
    from imapclient import imap_utf7

    return quote(bytes(imap_utf7.encode(name)).decode("ascii"))


def _listed(lines: list[bytes | bytearray | str]) -> list[Listed]:
    """The folders of a LIST reply; a name sent as a literal is the line that follows."""
    found: list[Listed] = []
    for index, line in enumerate(lines):
        if isinstance(line, bytearray):
            continue
        match = _LIST.match(_line_bytes(line))
        if match is None:
            continue
        name = match.group("name").strip()
        if _LITERAL.match(name) and index + 1 < len(lines):
            name = _line_bytes(lines[index + 1])
        attributes = frozenset(a.decode("ascii", "replace") for a in match.group("attrs").split())
        found.append(Listed(name=_decode_name(_unquote(name)), attributes=attributes))
    return found


def _line_bytes(line: bytes | bytearray | str) -> bytes:
    return line.encode() if isinstance(line, str) else bytes(line)


def _unquote(text: bytes) -> bytes:
    if len(text) >= 2 and text[:1] == b'"' and text[-1:] == b'"':
        return re.sub(rb"\\(.)", rb"\1", text[1:-1])
    return text


def _decode_name(raw: bytes) -> str:
    """A folder name from the server (modified UTF-7) as the config writes it."""
    from imapclient import imap_utf7

    return str(imap_utf7.decode(raw))


def _uid_set(uids: list[int]) -> str:
    """An IMAP sequence set: runs of consecutive UIDs as ranges."""
    parts: list[str] = []
    start = previous = uids[0]
    for uid in uids[1:]:
        if uid != previous + 1:
            parts.append(f"{start}:{previous}" if previous != start else str(start))
            start = uid
        previous = uid
    parts.append(f"{start}:{previous}" if previous != start else str(start))
    return ",".join(parts)


def _fetched(lines: list[bytes | bytearray | str]) -> list[tuple[int, bytes]]:
    """(UID, literal) pairs from FETCH response lines.

    Found by the literal that follows a FETCH line, never by position: servers
    may interleave unsolicited FETCH (FLAGS …) lines, and the UID may come
    after the literal.
    """
    found: list[tuple[int, bytes]] = []
    for index, line in enumerate(lines):
        if not isinstance(line, bytes) or not _FETCH_HEAD.match(line):
            continue
        literal = lines[index + 1] if index + 1 < len(lines) else None
        if not isinstance(literal, bytearray):
            continue
        tail = lines[index + 2] if index + 2 < len(lines) else b""
        match = _UID.search(line) or (_UID.search(tail) if isinstance(tail, bytes) else None)
        if match:
            found.append((int(match.group(1)), bytes(literal)))
    return found


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
