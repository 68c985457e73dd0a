"""`Dovecot`: a private Dovecot (IMAP, IMAPS, LMTP) from a config in a temporary directory.

With helpers to add users, deliver, append, fetch and force a UIDVALIDITY change.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import imaplib
import itertools
import os
import pwd
import re
import secrets
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from servers import certs, loopback

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
# A private Dovecot for dripd's tests, written by tests/servers/imap.py.
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


def real_clock_env() -> dict[str, str]:
    """This environment without libfaketime: a server started with it keeps the real clock.

    The clock-ahead pass (`./dev test`) runs pytest under `faketime`, whose
    LD_PRELOAD every child inherits. Dovecot under a faked clock misses its
    own timers (an LMTP delivery that never answers), and it is meant to keep
    the real one, as PostgreSQL does.
    """
    return {
        key: value
        for key, value in os.environ.items()
        if key != "LD_PRELOAD" and not key.startswith("FAKETIME")
    }


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
        certificates: certs.Certificates | None = None,
        sent_folder: str | None = "Sent",
        prefix: str = "",
        oauth2_introspection: str | None = None,
        uid_per_user: bool = False,
    ):
        """`sent_folder`: the folder every user has, marked `\\Sent` (RFC 6154); None: none.

        `prefix`: the personal namespace's, e.g. "INBOX." (cPanel's and Courier's
        layout: every folder is under INBOX, "." between levels).
        `oauth2_introspection`: an RFC 7662 URL (servers/oauth.py); with it, users
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
        self.certificates = certificates or certs.shared_certificates()
        self.host = loopback.HOST
        self.imap_port, self.imaps_port, self.lmtp_port = loopback.free_ports(3)
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

    def start(self, timeout: float = loopback.START_TIMEOUT) -> Dovecot:
        """Start the master and wait until IMAP answers; DovecotError with its log if not."""
        if self.running:
            return self
        if not self.available():
            raise DovecotError(f"{DOVECOT} is not installed")
        stderr = (self.root / "dovecot.stderr").open("ab")
        with stderr:
            self._process = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.config_path)],
                env=real_clock_env(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        atexit.register(self._kill_at_exit, self._process)
        if not loopback.wait_until(self._greets, timeout, interval=0.01):
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

    def stop(self, timeout: float = loopback.STOP_TIMEOUT) -> None:
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
            loopback.wait_until(self._ports_closed, 2.0)

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
        address = f"{prefix}-{next(self._counter)}-{secrets.token_hex(3)}@{loopback.DOMAIN}"
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

    def deliver(self, user: str, raw: bytes, *, sender: str = f"sender@{loopback.DOMAIN}") -> None:
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
            env=real_clock_env(),
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
