"""`dripd run` as systemd runs it: notify socket, watchdog, reload; the unit file itself.

- A datagram socket bound by the test is `$NOTIFY_SOCKET`: it receives READY=1,
  then WATCHDOG=1 (several, at half of `$WATCHDOG_USEC`), then STOPPING=1
  after SIGTERM, in that order, with STATUS= lines.
- SIGHUP with a broken campaign: one error line naming file and step per
  refused reload; the running version keeps sending (its text). A config that
  no longer validates is refused the same way.
- SIGHUP with a valid edit: new text and timing are used at once, and a
  contact in the middle continues after the last step id it did.
- A saved file in the campaigns folder reloads without SIGHUP.
- A rep's changed sending limit applies after a reload.
- `systemd-analyze verify` and `systemd-analyze security --offline` on
  systemd/dripd.service; dripd under MemoryDenyWriteExecute (the kernel's
  PR_SET_MDWE, what systemd applies); `systemd-run --user` where a user
  manager runs (not in a container without one: skipped).

Every `dripd` is a subprocess of the installed console script; SMTP is aiosmtpd
on 127.0.0.1 (`tests/servers/`). No mocks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import servers.smtp
import userfiles

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "dripd.service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
START = 30.0  # seconds a dripd process may take to get going on a loaded machine
RELOAD = 15.0  # seconds a reload may take to be noticed and done
EXPOSURE_MAX = 1.5  # systemd-analyze security: overall exposure, 0 (safest) to 10; the unit: 1.1

HELLO = """\
[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hello {version} {{{{ contact.first_name }}}}"
body = "Hi {{{{ contact.first_name }}}}, a first note."
"""
FOLLOW = """\
[[steps]]
id = "follow"
kind = "email"
wait = "{wait}"
subject = "Follow {version} {{{{ contact.first_name }}}}"
body = "Hi {{{{ contact.first_name }}}}, a follow-up."
"""
CAMPAIGN_HEAD = 'name = "Blast"\nsend_window = "daily 00:00-24:00"\n\n'


def campaign(*steps: str) -> str:
    return CAMPAIGN_HEAD + "\n".join(steps)


# -- the world: config, campaigns, database, a notify socket --------------------------


class NotifySocket:
    """A datagram socket bound by the test, as systemd's notify socket; keeps every message."""

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="dripd-notify-", dir="/tmp")  # short: 108 bytes
        self.path = os.path.join(self._folder, "notify.sock")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self.messages: list[str] = []

    def receive(self, timeout: float) -> str | None:
        self._socket.settimeout(timeout)
        try:
            text = self._socket.recv(4096).decode()
        except TimeoutError:
            return None
        self.messages.append(text)
        return text

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first message from now on that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            text = self.receive(left)
            if text is not None and predicate(text):
                return text
        raise AssertionError(f"no {what} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._socket.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _fields(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def is_ready(text: str) -> bool:
    return _fields(text).get("READY") == "1"


def is_reloading(text: str) -> bool:
    return _fields(text).get("RELOADING") == "1"


class World:
    """A rep (mike) whose mailbox is `port`, the blast campaign, a SQLite database.

    `cli.toml` is a second config on the same database whose campaigns folder
    is a valid copy: contacts can be enrolled while the daemon's folder is broken.
    """

    def __init__(self, folder: Path, port: int, text: str, limit: int = 1_000_000) -> None:
        self.folder, self.port = folder, port
        self.db = folder / "dripd.db"
        self.campaigns = folder / "campaigns"
        self.campaigns.mkdir()
        self.write_campaign(text)
        self.config = folder / "config.toml"
        self.write_config(limit)
        self.cli_campaigns = folder / "cli-campaigns"
        shutil.copytree(self.campaigns, self.cli_campaigns)
        self.cli_config = folder / "cli.toml"
        self.cli_config.write_text(
            self.config.read_text().replace(str(self.campaigns), str(self.cli_campaigns))
        )
        self.log = folder / "dripd.stderr"
        self.imported = 0

    def write_campaign(self, text: str) -> None:
        (self.campaigns / "blast.toml").write_text(text, encoding="utf-8")

    def write_config(self, limit: int) -> None:
        mailbox = userfiles.smtp_mailbox(self.port, max_per_hour=limit)
        mike = userfiles.rep(
            "mike", name="Mike Gulitz", smtp=mailbox, digest=userfiles.quiet_digest()
        )
        text = userfiles.config(f"sqlite:///{self.db}", self.campaigns, mike)
        self.config.write_text(text, encoding="utf-8")

    def dripd(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [userfiles.DRIPD, "--config", str(config or self.config), *args]
        return subprocess.run(
            argv, capture_output=True, text=True, env=userfiles.dripd_env(), timeout=120
        )

    def enroll(self, count: int, config: Path | None = None) -> list[str]:
        """Import `count` new contacts enrolled in blast; their first names."""
        first = self.imported
        names = [f"First{i}" for i in range(first, first + count)]
        csv = self.folder / f"contacts-{first}.csv"
        rows = [f"c{i}@example.com,{name}" for i, name in enumerate(names, first)]
        csv.write_text("email,first_name\n" + "\n".join(rows) + "\n", encoding="utf-8")
        result = self.dripd("contacts", "import", str(csv), "--enroll", "blast", config=config)
        assert result.returncode == 0, result.stderr
        self.imported += count
        return names

    def statuses(self) -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            db.execute("PRAGMA busy_timeout = 10000")
            return dict(db.execute("select status, count(*) from outbox group by status"))

    def log_lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8", errors="replace").splitlines()

    def errors(self) -> list[str]:
        return [line for line in self.log_lines() if line.startswith("error ")]


@pytest.fixture
def smtp_server() -> Iterator[servers.smtp.SmtpServer]:
    server = servers.smtp.SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


class Daemon:
    """`dripd run` in a subprocess with a notify socket; killed at teardown if still running."""

    def __init__(self, world: World, sock: NotifySocket, **env: str) -> None:
        self.world, self.sock = world, sock
        self._stderr: IO[bytes] = world.log.open("ab")
        self.proc = subprocess.Popen(
            [userfiles.DRIPD, "--config", str(world.config), "run"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=userfiles.dripd_env(NOTIFY_SOCKET=sock.path, **env),
        )
        ready = sock.wait_for(is_ready, START, "READY=1")
        assert self.proc.poll() is None, world.log.read_text()
        self.ready_message = ready

    def reload(self, *, signal_it: bool = True) -> None:
        """SIGHUP (or a saved file: `signal_it=False`); returns once READY=1 follows RELOADING=1."""
        if signal_it:
            self.proc.send_signal(signal.SIGHUP)
        self.sock.wait_for(is_reloading, RELOAD, "RELOADING=1")
        self.sock.wait_for(is_ready, RELOAD, "READY=1 after the reload")
        assert self.proc.poll() is None, self.world.log.read_text()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self._stderr.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def _subjects(server: servers.smtp.SmtpServer) -> list[str]:
    return sorted(str(m.message["Subject"]) for m in server.messages())


def _settle(server: servers.smtp.SmtpServer, count: int, quiet: float = 1.0) -> list[str]:
    """Wait for `count` messages, then `quiet` s more to see that no other one follows."""
    server.wait_for(count, timeout=START)
    time.sleep(quiet)
    return _subjects(server)


def _no_traceback(world: World) -> None:
    text = world.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in text, text


# -- 1. the notify protocol, in order ---------------------------------------------------------


def test_notify_socket_gets_ready_watchdogs_and_stopping_in_order(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    world.enroll(2)
    daemon = Daemon(world, notify_socket, WATCHDOG_USEC="300000")  # a ping every 0.15 s
    daemons.append(daemon)
    smtp_server.wait_for(2, timeout=START)
    deadline = time.monotonic() + 10
    while sum(m == "WATCHDOG=1" for m in notify_socket.messages) < 5:
        assert time.monotonic() < deadline, notify_socket.messages
        notify_socket.receive(1.0)
    assert daemon.stop() == 0, world.log.read_text()
    notify_socket.wait_for(lambda m: m == "STOPPING=1", 5, "STOPPING=1")
    while notify_socket.receive(0.3) is not None:  # anything sent after STOPPING=1
        pass

    messages = notify_socket.messages
    ready = next(i for i, m in enumerate(messages) if is_ready(m))
    stopping = messages.index("STOPPING=1")
    pings = [i for i, m in enumerate(messages) if m == "WATCHDOG=1"]
    assert ready == 0, messages  # nothing before READY=1: systemd arms the watchdog then
    assert len(pings) >= 5
    assert ready < min(pings) and max(pings) < stopping == len(messages) - 1, messages
    status = _fields(messages[ready])["STATUS"]
    assert re.fullmatch(r"sending: \d+ queued, \d+ sent in the last minute; inboxes: none", status)
    _no_traceback(world)


def test_no_watchdog_pings_when_they_are_meant_for_another_process(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    daemon = Daemon(world, notify_socket, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    daemons.append(daemon)
    time.sleep(1.0)
    while notify_socket.receive(0.1) is not None:
        pass
    assert daemon.stop() == 0
    assert "WATCHDOG=1" not in notify_socket.messages
    assert notify_socket.wait_for(lambda m: m == "STOPPING=1", 5, "STOPPING=1")


# -- 2. reloads ----------------------------------------------------------------------------


def test_sighup_with_a_broken_campaign_keeps_the_running_version(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    daemon = Daemon(world, notify_socket)
    daemons.append(daemon)
    broken = campaign(HELLO.format(version="v2").replace('wait = "0m"', 'wiat = "0m"'))
    world.write_campaign(broken)
    daemon.reload()
    assert len(world.errors()) == 1, world.log_lines()

    # enrolled after the refusal (through cli.toml: the daemon's folder is broken)...
    names = world.enroll(2, config=world.cli_config)
    daemon.reload()  # refused again; its pass sends them
    # ...and sent with the running version's text
    assert _settle(smtp_server, 2) == [f"Hello v1 {name}" for name in names]

    errors = world.errors()
    assert len(errors) == 2, world.log_lines()  # one line per refused reload
    for line in errors:
        assert line.startswith("error reload refused: the running version stays")
        assert str(world.campaigns / "blast.toml") in line
        assert "step 'hello'" in line
        assert "wiat" in line

    # a config that no longer validates: refused the same way
    world.write_campaign(campaign(HELLO.format(version="v1")))
    world.write_config(limit=0)
    daemon.reload()
    errors = world.errors()
    assert len(errors) == 3, world.log_lines()
    assert str(world.config) in errors[2] and "max_per_hour" in errors[2]
    assert daemon.stop() == 0
    _no_traceback(world)
    assert world.statuses() == {"sent": 2}


def test_sighup_with_a_valid_edit_uses_new_steps_and_continues_by_step_id(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    v1 = campaign(HELLO.format(version="v1"), FOLLOW.format(version="v1", wait="2 days"))
    world = World(tmp_path, smtp_server.port, v1)
    names = world.enroll(2)
    daemon = Daemon(world, notify_socket)
    daemons.append(daemon)
    assert _settle(smtp_server, 2) == [f"Hello v1 {n}" for n in names]  # follow: in 2 days

    # A step inserted before the one they did, that one re-worded, the next one
    # re-timed (2 days → now) and re-worded, and one more after it.
    intro = HELLO.replace('"hello"', '"intro"').replace("Hello {version}", "Intro {version}")
    after = FOLLOW.replace('"follow"', '"after"').replace("Follow {version}", "After {version}")
    world.write_campaign(
        campaign(
            intro.format(version="v2"),
            HELLO.format(version="v2"),
            FOLLOW.format(version="v2", wait="0m"),
            after.format(version="v2", wait="0m"),
        )
    )
    daemon.reload()
    subjects = _settle(smtp_server, 6)
    assert subjects == sorted(
        [f"Hello v1 {n}" for n in names]
        + [f"Follow v2 {n}" for n in names]
        + [f"After v2 {n}" for n in names]
    )  # no intro, no second hello
    reloaded = [line for line in world.log_lines() if "action=reloaded" in line]
    assert len(reloaded) == 1
    assert "campaigns=blast" in reloaded[0] and "replanned=2" in reloaded[0]
    assert daemon.stop() == 0
    assert world.errors() == []
    _no_traceback(world)


def test_a_saved_campaign_file_reloads_without_sighup(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    v1 = campaign(HELLO.format(version="v1"), FOLLOW.format(version="v1", wait="2 days"))
    world = World(tmp_path, smtp_server.port, v1)
    names = world.enroll(1)
    daemon = Daemon(world, notify_socket)
    daemons.append(daemon)
    smtp_server.wait_for(1, timeout=START)

    world.write_campaign(
        campaign(HELLO.format(version="v1"), FOLLOW.format(version="v2", wait="0m"))
    )
    daemon.reload(signal_it=False)
    assert _settle(smtp_server, 2) == [f"Follow v2 {names[0]}", f"Hello v1 {names[0]}"]
    lines = world.log_lines()
    changed = next(i for i, line in enumerate(lines) if "action=campaigns_changed" in line)
    done = next(i for i, line in enumerate(lines) if "action=reloaded" in line)
    assert changed < done

    # a broken save is refused once, whatever the number of looks at the folder
    world.write_campaign(campaign(HELLO.format(version="v1").replace('kind = "email"', "")))
    daemon.reload(signal_it=False)
    time.sleep(3 * 2.0)  # a few more looks (reload.WATCH_INTERVAL)
    assert len(world.errors()) == 1, world.log_lines()
    assert "step 'hello'" in world.errors()[0]
    assert daemon.stop() == 0
    _no_traceback(world)


def test_a_changed_sending_limit_applies_after_a_reload(
    tmp_path: Path,
    smtp_server: servers.smtp.SmtpServer,
    notify_socket: NotifySocket,
    daemons: list[Daemon],
) -> None:
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    world.enroll(2)
    daemon = Daemon(world, notify_socket)
    daemons.append(daemon)
    smtp_server.wait_for(2, timeout=START)

    world.write_config(limit=18)  # 3 per 10 minutes (ratelimit.BURST_SPAN): room for 1 more
    daemon.reload()
    world.enroll(3)
    daemon.reload()  # nothing changed; its pass queues the 3 new contacts
    assert len(_settle(smtp_server, 3, quiet=2.0)) == 3
    assert world.statuses() == {"sent": 3, "queued": 2}
    reloads = [line for line in world.log_lines() if "action=reloaded" in line]
    assert "mailboxes=mike" in reloads[0] and "mailboxes=none" in reloads[1]
    assert daemon.stop() == 0
    _no_traceback(world)


# -- 3. the unit file -------------------------------------------------------------------------


def _unit_for_this_machine(folder: Path) -> Path:
    """The shipped unit with ExecStart pointing at this venv's dripd (verify checks it exists)."""
    text = UNIT.read_text(encoding="utf-8")
    assert "ExecStart=/opt/dripd/bin/dripd run --config /etc/dripd/config.toml" in text
    unit = folder / "dripd.service"
    unit.write_text(text.replace("/opt/dripd/bin/dripd", userfiles.DRIPD), encoding="utf-8")
    return unit


def _directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_has_what_the_readme_promises() -> None:
    unit = _directives(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "Restart": "on-failure",
        "User": "dripd",
        "StateDirectory": "dripd",
        "ConfigurationDirectory": "dripd",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "MemoryDenyWriteExecute": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert unit["WatchdogSec"] and unit["TimeoutStopSec"]
    assert all(c.startswith(("mike-smtp:", "mike-imap:")) for c in unit["LoadCredential"])
    # the watchdog must outlast the longest quiet time of a healthy loop
    assert float(unit["WatchdogSec"][0].rstrip("s")) > 2 * 15


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed")
def test_systemd_analyze_security_rates_the_unit_well(tmp_path: Path) -> None:
    unit = _unit_for_this_machine(tmp_path)
    result = subprocess.run(
        [
            str(SYSTEMD_ANALYZE),
            "security",
            "--offline=true",
            "--no-pager",
            f"--threshold={int(EXPOSURE_MAX * 10)}",
            str(unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for dripd\.service: (\d+\.\d+)", result.stdout)
    assert match is not None, result.stdout
    assert float(match.group(1)) <= EXPOSURE_MAX, result.stdout


# MemoryDenyWriteExecute= is a seccomp filter in systemd 252 and the kernel's own
# PR_SET_MDWE (Linux 6.3+) in later ones: the same refusal of writable+executable
# memory. This sets it in a wrapper, checks it holds, and execs dripd under it.
MDWE_WRAPPER = """\
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("writable and executable memory was allowed")
except PermissionError:
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_dripd_runs_under_memory_deny_write_execute(
    tmp_path: Path, smtp_server: servers.smtp.SmtpServer
) -> None:
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    names = world.enroll(1)
    wrapper = tmp_path / "mdwe.py"
    wrapper.write_text(MDWE_WRAPPER, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            str(wrapper),
            userfiles.DRIPD,
            "--config",
            str(world.config),
            "run",
            "--once",
        ],
        capture_output=True,
        text=True,
        env=userfiles.dripd_env(),
        timeout=120,
    )
    if result.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert _subjects(smtp_server) == [f"Hello v1 {names[0]}"]


def _user_manager() -> str | None:
    """Why `systemd-run --user` cannot be used here, or None if it can."""
    if shutil.which("systemd-run") is None:
        return "systemd-run not installed"
    try:
        probe = subprocess.run(
            ["systemd-run", "--user", "--wait", "--quiet", "true"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        return "systemd-run --user did not answer"
    if probe.returncode != 0:
        return f"no systemd user manager: {probe.stderr.strip() or probe.returncode}"
    return None


def test_dripd_under_a_real_systemd_user_manager(
    tmp_path: Path, smtp_server: servers.smtp.SmtpServer
) -> None:
    reason = _user_manager()
    if reason is not None:
        pytest.skip(reason)
    world = World(tmp_path, smtp_server.port, campaign(HELLO.format(version="v1")))
    names = world.enroll(1)
    unit = f"dripd-test-{uuid.uuid4().hex[:8]}"

    def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["systemctl", "--user", *args, unit], capture_output=True, text=True, timeout=60
        )

    started = subprocess.run(
        [
            "systemd-run",
            "--user",
            f"--unit={unit}",
            "-p",
            "Type=notify",
            "-p",
            "NotifyAccess=main",
            "-p",
            "WatchdogSec=30s",
            "-p",
            "ExecReload=/bin/kill -HUP $MAINPID",
            userfiles.DRIPD,
            "--config",
            str(world.config),
            "run",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        assert started.returncode == 0, started.stderr  # returns once READY=1 arrived
        assert systemctl("is-active").stdout.strip() == "active"
        smtp_server.wait_for(1, timeout=START)
        assert systemctl("reload").returncode == 0
        assert systemctl("is-active").stdout.strip() == "active"
        assert systemctl("stop").returncode == 0
        shown = systemctl("show", "-p", "Result", "-p", "ExecMainStatus").stdout
        assert "Result=success" in shown and "ExecMainStatus=0" in shown, shown
    finally:
        subprocess.run(["systemctl", "--user", "stop", unit], capture_output=True, timeout=60)
        subprocess.run(["systemctl", "--user", "reset-failed", unit], capture_output=True)
    assert _subjects(smtp_server) == [f"Hello v1 {names[0]}"]
