"""`dripd init`, driven as a user would: answers on stdin, or flags for scripts.

The generated config of a one-rep team passes `dripd check` with the shipped
campaigns; where it can connect (the test's aiosmtpd and Dovecot), it ends
with a `check --connect` that logs in to both mailboxes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import servers.imap
import servers.loopback
import servers.required
import servers.smtp
import userfiles
from test_cli import DRIPD, Result

PASSWORD = "app-Pass-7f3k-Qz"


def _init(folder: Path, args: Sequence[str], answers: str, *, tz: str = "Europe/Berlin") -> Result:
    """`dripd --config FOLDER/config.toml init ARGS` with `answers` on stdin, no terminal."""
    argv = [DRIPD, "--config", str(folder / "config.toml"), "init", *args]
    done = subprocess.run(
        argv, input=answers, capture_output=True, text=True, timeout=60,
        env=userfiles.dripd_env(TZ=tz), start_new_session=True, cwd=folder,
    )  # fmt: skip
    result = Result(tuple(args), done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in result.out + result.err, str(result)
    return result


def _dripd(folder: Path, *args: str) -> Result:
    argv = [DRIPD, "--config", str(folder / "config.toml"), *args]
    env = userfiles.dripd_env()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
    return Result(tuple(args), done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def mail_servers() -> Iterator[
    tuple[servers.smtp.SmtpServer, servers.imap.Dovecot, servers.imap.ImapAccount]
]:
    """An SMTP server and a Dovecot where ann@example.test logs in with PASSWORD."""
    address = f"ann@{servers.loopback.DOMAIN}"
    smtp = servers.smtp.SmtpServer(tls="none", auth={address: PASSWORD}).start()
    with servers.required.dovecot() as dovecot:
        account = dovecot.add_user(address, PASSWORD)
        yield smtp, dovecot, account
    smtp.stop()


def test_init_asks_writes_and_connects(tmp_path: Path, mail_servers) -> None:
    smtp, _dovecot, account = mail_servers
    answers = "\n".join([
        "Ann Lee", account.address, "",  # name, address, id (default: ann)
        "other", smtp.host, str(smtp.port), "none",  # provider, SMTP
        account.host, str(account.port), "none",  # IMAP (plain: loopback only)
        "", "",  # time zone (default: this system's, $TZ here), window (default)
        PASSWORD,
    ])  # fmt: skip
    result = _init(tmp_path, [], answers)
    assert result.code == 0, str(result)
    assert PASSWORD not in result.out + result.err  # never echoed, never printed
    assert "Time zone [Europe/Berlin]" in result.err  # the system's zone, offered
    lines = result.out.splitlines()
    assert lines[:4] == [
        f"Wrote {tmp_path / 'config.toml'}",
        f"Wrote {tmp_path / 'ann.password'} (the password; readable by you only)",
        f"Wrote {tmp_path / 'campaigns'}/ (the shipped campaigns: edit them to make them yours)",
        "",
    ]
    assert f"ok rep ann smtp: {smtp.host}:{smtp.port} (none), logged in as {account.address}, "\
        f"may send as {account.address}" in lines  # fmt: skip
    assert f"ok rep ann imap: {account.host}:{account.port}, opened 'INBOX', Sent folder "\
        "'Sent' (marked \\Sent by the server)" in lines  # fmt: skip

    secret = tmp_path / "ann.password"
    assert secret.read_text() == PASSWORD + "\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    written = tomllib.loads((tmp_path / "config.toml").read_text())
    assert written["dripd"]["timezone"] == "Europe/Berlin"
    assert written["dripd"]["send_window"] == "mon-fri 09:00-17:00"
    (rep,) = written["reps"]
    assert (rep["id"], rep["name"], rep["email"]) == ("ann", "Ann Lee", account.address)
    assert rep["smtp"]["password_file"] == rep["imap"]["password_file"] == "ann.password"
    assert sorted(p.name for p in (tmp_path / "campaigns").glob("*.toml")) == [
        "close.toml", "drip.toml", "presentation.toml", "proposal.toml", "qualification.toml",
        "welcome.toml",
    ]  # fmt: skip

    # Run again: the config is never replaced without --force.
    before = (tmp_path / "config.toml").read_bytes()
    again = _init(tmp_path, ["--yes"], "")
    assert again.code == 2 and again.out == "", str(again)
    assert again.err_lines == [
        f"dripd: {tmp_path / 'config.toml'} exists: dripd init does not replace it (--force does)"
    ]
    assert (tmp_path / "config.toml").read_bytes() == before


def test_init_for_scripts_with_a_preset(tmp_path: Path) -> None:
    flags = ["--name", "Ann Lee", "--email", "ann@fastmail.com", "--preset", "fastmail",
             "--timezone", "America/Chicago", "--window", "mon-fri 08:00-18:00", "--yes",
             "--no-connect"]  # fmt: skip
    result = _init(tmp_path, flags, PASSWORD + "\n")
    assert result.code == 0, str(result)
    assert PASSWORD not in result.out + result.err
    assert "Fastmail: Settings → Privacy & Security → Manage app passwords" in result.err
    (warning,) = [line for line in result.out.splitlines() if line.startswith("warning")]
    assert "from = 'associate' is no rep" in warning  # a one-rep team: a warning, no error
    assert result.out.splitlines()[-1].startswith("ok: ")
    written = tomllib.loads((tmp_path / "config.toml").read_text())
    (rep,) = written["reps"]
    assert rep["preset"] == "fastmail" and rep["id"] == "ann"
    assert "host" not in rep["smtp"]  # the preset's
    assert written["dripd"]["timezone"] == "America/Chicago"

    # The config as dripd reads it: the preset's servers, the password from its file.
    check = _dripd(tmp_path, "check", "--json")
    assert check.code == 0, str(check)
    assert check.json()["ok"] is True and check.json()["problems"] == []

    # --force replaces the config, and keeps the campaigns the user may have edited.
    edited = tmp_path / "campaigns" / "drip.toml"
    edited.write_text(edited.read_text() + "\n# mine\n")
    flags[flags.index("fastmail")] = "icloud"
    forced = _init(tmp_path, [*flags, "--force"], "other-" + PASSWORD + "\n")
    assert forced.code == 0, str(forced)
    assert f"Kept {tmp_path / 'campaigns'}/ as it was" in forced.out
    assert edited.read_text().endswith("# mine\n")
    assert 'preset = "icloud"' in (tmp_path / "config.toml").read_text()
    assert (tmp_path / "ann.password").read_text() == "other-" + PASSWORD + "\n"


def test_init_for_an_oauth2_provider_writes_the_sign_in_table(tmp_path: Path) -> None:
    flags = ["--name", "Ann Lee", "--email", "ann@contoso.example", "--preset", "microsoft365",
             "--client-id", "0f1e2d3c-aaaa-bbbb-cccc-123456789abc", "--yes"]  # fmt: skip
    result = _init(tmp_path, flags, "")
    assert result.code == 0, str(result)
    assert "password" not in result.err.lower()  # none asked: OAuth2 signs in
    assert not (tmp_path / "ann.password").exists()
    written = tomllib.loads((tmp_path / "config.toml").read_text())
    (rep,) = written["reps"]
    assert rep["oauth2"] == {
        "provider": "microsoft",
        "client_id": "0f1e2d3c-aaaa-bbbb-cccc-123456789abc",
        "tenant": "organizations",
    }
    assert f"dripd --config {tmp_path / 'config.toml'} auth ann" in result.out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--preset", "gogle"], "--preset: 'gogle' is not one of microsoft365, outlook, google, "
                                "fastmail, icloud, yahoo, zoho, other — did you mean 'google'?"),
        (["--preset", "fastmail", "--timezone", "Berlin"], "--timezone: unknown time zone "
                                                           "'Berlin' (use an IANA name like "
                                                           "'Europe/Berlin')"),
        (["--preset", "google"], "--client-id is needed with --yes"),
    ],
)  # fmt: skip
def test_a_bad_flag_is_one_line_and_nothing_is_written(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    base = ["--name", "Ann", "--email", "ann@example.com", "--yes"]
    result = _init(tmp_path, [*base, *flags], "")
    assert result.code == 2, str(result)
    assert result.err_lines == [f"dripd: {message}"], str(result)
    assert os.listdir(tmp_path) == []
