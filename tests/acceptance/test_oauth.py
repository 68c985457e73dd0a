"""OAuth2 sign-in as a rep meets it: `dripd auth`, then `dripd run` over XOAUTH2.

Real parts on 127.0.0.1: the test authorization server (tests/servers/oauth.py,
access tokens of 3 s, refresh tokens rotated at each use), aiosmtpd taking
XOAUTH2 only and checking each token there, Dovecot with its oauth2 passdb.

- `dripd auth mike` by the device flow; `dripd run` sends three batches and
  reads a reply, across several access-token expiries (the SMTP server hangs
  up idle sessions after 1.5 s, Dovecot's sessions are kicked as Outlook ends
  them at expiry), with refresh-token rotations; nothing is sent twice.
- The admin revokes the sign-in mid-run: the mailbox rests with one log
  line saying what to run, `status` and `check --connect` say it, the batch
  waits; `dripd auth mike --browser` (code + PKCE, loopback redirect) and
  everything that waited goes out.
- The paste-back fallback, `auth --list`, `auth --forget` (revoked at the provider).
- No token the server issued appears in any output or log.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import servers.imap
import servers.loopback
import servers.oauth
import servers.smtp
import userfiles

LIFETIME = 2  # seconds an access token lives
CAMPAIGN = userfiles.campaign(
    "Blast",
    userfiles.email_step(
        "hello",
        subject="Hello {{ contact.first_name }}",
        body="Hi {{ contact.first_name }}, a short note.",
    ),
    send_window="daily 00:00-24:00",
)


class World:
    """mike's mailbox on aiosmtpd and Dovecot, both trusting the test provider; a config."""

    def __init__(self, folder: Path, provider: servers.oauth.OAuthServer) -> None:
        self.folder = folder
        self.provider = provider
        self.smtp = servers.smtp.SmtpServer(oauth2=provider.introspect, timeout=1.5).start()
        self.dovecot = servers.imap.Dovecot(oauth2_introspection=provider.introspection_url).start()
        self.account = self.dovecot.new_user("mike")
        self.db = folder / "dripd.db"
        userfiles.write_campaign(folder / "campaigns", "blast", CAMPAIGN)
        self.config = folder / "config.toml"
        self.config.write_text(self._config(), encoding="utf-8")
        self.outputs: list[str] = []  # every stdout and stderr of every dripd run here
        self.imported = 0

    def _config(self) -> str:
        p = self.provider
        mike = userfiles.rep(
            "mike",
            name="Mike Gulitz",
            email=self.account.address,
            digest=userfiles.quiet_digest(),
            smtp=userfiles.smtp_mailbox(
                self.smtp.port, auth="oauth2", max_per_hour=100000, max_per_day=100000
            ),
            imap={
                "host": "127.0.0.1",
                "port": self.account.port,
                "security": "none",
                "auth": "oauth2",
                "sent_folder": "Sent",
            },
        )
        sign_in = {
            "provider": "custom",
            "client_id": servers.oauth.CLIENT_ID,
            "device_authorization_url": p.url("devicecode"),
            "authorization_url": p.url("authorize"),
            "token_url": p.url("token"),
            "revocation_url": p.url("revoke"),
            "scopes": servers.oauth.SCOPES,
        }
        mike += "\n" + userfiles.table("[reps.oauth2]", sign_in)
        return userfiles.config(f"sqlite:///{self.db}", self.folder / "campaigns", mike)

    def close(self) -> None:
        self.dovecot.cleanup()
        self.smtp.stop()

    def argv(self, *args: str) -> list[str]:
        return [userfiles.DRIPD, "--config", str(self.config), *args]

    def dripd(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=userfiles.dripd_env(),
            timeout=60,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def start(self, *args: str, stderr: IO[str] | int = subprocess.PIPE) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=userfiles.dripd_env(),
        )

    def import_contacts(self, count: int) -> list[str]:
        first = self.imported
        addresses = [f"c{i}@example.com" for i in range(first, first + count)]
        csv = self.folder / f"contacts-{first}.csv"
        rows = ["email,first_name"] + [f"{a},First{i}" for i, a in enumerate(addresses, first)]
        csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
        result = self.dripd("contacts", "import", str(csv), "--enroll", "blast")
        assert result.returncode == 0, result.stderr
        self.imported += count
        return addresses

    def delivered(self) -> list[str]:
        """Message-IDs of the contacts' emails the SMTP server took (digests left out)."""
        return [
            m.message_id or ""
            for m in self.smtp.messages()
            if any(r.startswith("c") for r in m.rcpt_tos)
        ]

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 10000")
            return db.execute(sql).fetchall()

    def kick(self) -> None:
        """End mike's IMAP sessions, as Outlook does when their access token expires."""
        with contextlib.suppress(servers.imap.DovecotError):  # "no users kicked" (exit 68)
            self.dovecot.doveadm("kick", self.account.address)

    def assert_no_token_shown(self, *more: str) -> None:
        issued = self.provider.issued()
        assert len(issued) >= 3  # a code or device code, an access and a refresh token
        for text in [*self.outputs, *more]:
            for token in issued:
                assert token not in text, "a token was shown"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with servers.oauth.OAuthServer(access_lifetime=LIFETIME) as provider:
        made = World(tmp_path, provider)
        try:
            yield made
        finally:
            made.close()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    if not servers.loopback.wait_until(predicate, timeout, interval=0.05):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _auth_device(world: World) -> None:
    proc = world.start("auth", "mike")
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "enter the code" in line:
            break
    code = lines[-1].split("enter the code ")[1].split()[0]
    world.provider.approve_device(code, world.account.address)
    out, err = proc.communicate(timeout=30)
    world.outputs += ["".join(lines), out, err]
    assert proc.returncode == 0, err
    assert f"Signed in: rep mike ({world.account.address})" in out


def _auth_browser(world: World, *, paste: bool) -> None:
    """`dripd auth mike --browser`: the browser comes back to dripd, or its address is pasted."""
    proc = world.start("auth", "mike", "--browser")
    assert proc.stdout is not None and proc.stdin is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Waiting for the browser"):
            break
    url = next(line.strip() for line in lines if line.startswith("http://"))
    back = world.provider.sign_in(url, world.account.address)
    if paste:  # the browser was on another computer: its address bar, pasted
        proc.stdin.write(back + "\n")
        proc.stdin.flush()
    else:
        with urllib.request.urlopen(back, timeout=10) as page:
            assert b"signed in" in page.read()
    out, err = proc.communicate(timeout=30)
    world.outputs += ["".join(lines), out, err]
    assert proc.returncode == 0, err
    assert "Signed in: rep mike" in out


def _listed(world: World) -> dict[str, Any]:
    result = world.dripd("auth", "--list", "--json")
    assert result.returncode == 0, result.stderr
    (mike,) = json.loads(result.stdout)
    return dict(mike)


def test_auth_then_run_through_expiries_rotation_and_revocation(world: World) -> None:
    result = world.dripd("run", "--once")
    assert result.returncode == 0
    assert "dripd auth mike" in result.stderr  # not signed in yet: says what to run
    _auth_device(world)
    mike = _listed(world)
    assert mike["signed_in"] is True and mike["as"] == world.account.address

    log = world.folder / "run.log"
    with log.open("w") as errors_file:
        daemon = world.start("run", stderr=errors_file)
        try:
            _run_and_revoke(world, log, lambda: daemon.send_signal(signal.SIGHUP))
        finally:
            daemon.terminate()
            daemon.communicate(timeout=30)
    text = log.read_text()
    assert daemon.returncode == 0, text
    assert "Traceback" not in text
    assert text.count("action=signin_lost") <= 2, text  # once for SMTP, once for IMAP
    delivered = world.delivered()
    assert len(delivered) == len(set(delivered)) == 9  # nothing twice, nothing lost
    world.assert_no_token_shown(text)


def _run_and_revoke(world: World, log: Path, wake: Callable[[], None]) -> None:
    """`wake`: SIGHUP, so the daemon sees imported contacts now rather than at its next poll."""
    provider = world.provider
    # Up first: a SIGHUP before dripd has its handlers would end it.
    _wait(lambda: "action=started" in log.read_text(), 30, "dripd run to start")
    world.import_contacts(3)
    wake()
    _wait(lambda: len(world.delivered()) == 3, 30, "the first batch")
    for batch in range(2):  # each after the access token expired and the sessions ended
        time.sleep(LIFETIME)
        world.kick()
        world.import_contacts(2 + batch)
        wake()
    _wait(lambda: len(world.delivered()) == 8, 30, "two more batches")
    world.dovecot.deliver(
        world.account.address,
        b"From: c0@example.com\r\nTo: mike\r\nSubject: Re: Hello\r\n"
        b"Message-ID: <reply-1@example.com>\r\n\r\nSounds good, call me.\r\n",
        sender="c0@example.com",
    )
    _wait(lambda: world.query("select count(*) from inbox_messages")[0][0] >= 1, 30, "the reply")
    assert provider.count("rotations") >= 2  # refreshed, and each refresh rotated
    assert world.dovecot.log_tail(200).count("method=XOAUTH2") >= 3

    # The admin revokes dripd's access: the next logins fail, the mailbox rests.
    provider.revoke_user(world.account.address)
    time.sleep(2)  # the SMTP server hangs up the idle session
    world.kick()
    world.import_contacts(1)
    wake()
    _wait(lambda: "action=signin_lost" in log.read_text(), 30, "the lost sign-in's line")
    assert "dripd auth mike" in log.read_text()
    status = world.dripd("status")
    assert "needs a look: 1 mailbox sign-in(s) needed" in status.stdout, status.stdout
    assert "run `dripd auth mike`" in status.stdout
    check = world.dripd("check", "--connect")
    assert check.returncode == 1
    assert "stopped working (invalid_grant" in check.stdout, check.stdout
    assert world.query("select count(*) from outbox where status = 'queued'") == [(1,)]
    assert len(world.delivered()) == 8

    _auth_browser(world, paste=False)  # signed in again: what waited goes out
    _wait(lambda: len(world.delivered()) == 9, 30, "the email that waited")
    assert _listed(world)["signed_in"] is True


def test_paste_back_list_and_forget(world: World) -> None:
    _auth_browser(world, paste=True)
    mike = _listed(world)
    assert mike["signed_in"] is True and mike["problem"] is None
    table = world.dripd("auth", "--list")
    assert "mike" in table.stdout and world.account.address in table.stdout
    check = world.dripd("check", "--connect")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"logged in as {world.account.address} (OAuth2)" in check.stdout
    refresh = [t for t in world.provider.issued() if t.startswith("rt-")][-1]
    forgot = world.dripd("auth", "mike", "--forget")
    assert "revoked it at the provider" in forgot.stdout
    assert world.provider.state.by_refresh(refresh).revoked  # type: ignore[union-attr]
    mike = _listed(world)
    assert mike["signed_in"] is False
    assert "dripd auth mike" in mike["problem"]
    bad = world.dripd("auth", "nobody")
    assert bad.returncode == 1 and "unknown rep 'nobody'" in bad.stderr
    world.assert_no_token_shown()
