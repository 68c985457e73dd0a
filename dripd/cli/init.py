"""`dripd init`: a first config from a few questions, the shipped campaigns, the app password.

Asks the name, the address, the provider (a preset of dripd/presets.py, or
"other": hosts and ports), the time zone and the sending window; each has a
flag for scripts (`--yes` takes the defaults of the rest). Writes
`config.toml` (never over an existing one without `--force`), copies the
shipped campaigns beside it, and keeps the app password in a file only its
owner can read, named by `password_file`. For a provider that signs in with
OAuth2 it writes the `[reps.oauth2]` table instead and says to run
`dripd auth REP`. The generated config of a one-rep team passes `dripd check`
with the shipped campaigns (the close campaign's associate role is left
unmapped: its email goes from the rep).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import click

from dripd import errors
from dripd.files import campaigns as campaigns_mod
from dripd.files import config, presets, validation
from dripd.mail import addresses
from dripd.plan import windows as windows_mod

OTHER = "other"
DEFAULT_WINDOW = "mon-fri 09:00-17:00"
SECURITIES: tuple[presets.Security, ...] = ("starttls", "tls", "none")
# Address domains whose provider is known: the preset offered first.
DOMAINS = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "outlook",
    "hotmail.com": "outlook",
    "live.com": "outlook",
    "msn.com": "outlook",
    "icloud.com": "icloud",
    "me.com": "icloud",
    "mac.com": "icloud",
    "fastmail.com": "fastmail",
    "fastmail.fm": "fastmail",
    "yahoo.com": "yahoo",
    "zoho.com": "zoho",
    "zohomail.com": "zoho",
}
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Answers:
    rep_id: str
    name: str
    email: str
    preset: str | None  # None: "other", with `smtp` and `imap`
    timezone: str
    window: str
    smtp: presets.Server | None = None  # provider "other": what the user typed
    imap: presets.Server | None = None  # None with "other": no inbox to watch
    ca_file: str | None = None
    client_id: str | None = None  # OAuth2 presets
    tenant: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Given:
    """What the command line already says (None: ask, or with `yes` take the default)."""

    name: str | None = None
    email: str | None = None
    rep_id: str | None = None
    preset: str | None = None
    timezone: str | None = None
    window: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: str | None = None
    imap_host: str | None = None
    imap_port: int | None = None
    imap_security: str | None = None
    ca_file: str | None = None
    client_id: str | None = None
    tenant: str | None = None
    yes: bool = False


# -- asking -----------------------------------------------------------------------


def ask(
    given: object,
    question: str,
    flag: str,
    *,
    yes: bool,
    check: Callable[[str], T],
    default: T | None = None,
) -> T:
    """The flag's value (checked), else the default under --yes, else the user's answer."""
    if given is not None:  # a flag: str, or int for the ports
        try:
            return check(str(given))
        except ValueError as exc:
            raise errors.UsageError(f"{flag}: {exc}") from exc
    if yes:
        if default is None:
            raise errors.UsageError(f"{flag} is needed with --yes")
        return default

    def proc(text: str) -> T:
        try:
            return check(text)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc

    answer: T = click.prompt(question, default=default, value_proc=proc, err=True)
    return answer


def ask_secret(question: str) -> str:
    """A password, never echoed; from a pipe (scripts, tests), its first line."""
    if sys.stdin.isatty():
        return str(click.prompt(question, hide_input=True, default="", show_default=False))
    click.echo(f"{question}: ", nl=False, err=True)
    return sys.stdin.readline().rstrip("\r\n")


def gather(given: Given) -> Answers:
    """Every answer, asked in the order a person thinks of them."""
    yes = given.yes
    name = ask(given.name, "Your name", "--name", yes=yes, check=_non_empty)
    email = ask(given.email, "Your email address", "--email", yes=yes,
                check=addresses.normalize_address)  # fmt: skip
    rep_id = ask(given.rep_id, "A short id for you", "--id", yes=yes,
                 default=rep_id_for(email), check=_rep_id)  # fmt: skip
    preset = _ask_preset(given, email)
    answers = _ask_mailbox(given, Answers(rep_id=rep_id, name=name, email=email, preset=None,
                                          timezone="UTC", window=DEFAULT_WINDOW,
                                          ca_file=given.ca_file), preset)  # fmt: skip
    timezone = ask(given.timezone, "Time zone", "--timezone", yes=yes,
                   default=default_timezone(), check=_timezone)  # fmt: skip
    window = ask(given.window, "When emails may go out", "--window", yes=yes,
                 default=DEFAULT_WINDOW, check=_window)  # fmt: skip
    return dataclasses.replace(answers, timezone=timezone, window=window)


def _ask_mailbox(given: Given, answers: Answers, preset: str) -> Answers:
    """The servers (provider "other"), or the OAuth2 app registration (Microsoft, Google)."""
    if preset == OTHER:
        smtp = _ask_server(given, "smtp", (given.smtp_host, given.smtp_port, given.smtp_security))
        imap = _ask_server(given, "imap", (given.imap_host, given.imap_port, given.imap_security))
        return dataclasses.replace(answers, smtp=smtp, imap=imap)
    answers = dataclasses.replace(answers, preset=preset)
    chosen = presets.get(preset)
    if not chosen.uses_oauth2:
        return answers
    client_id = ask(given.client_id, "Application (client) ID of your OAuth2 app registration",
                    "--client-id", yes=given.yes, check=_non_empty)  # fmt: skip
    tenant = None
    if chosen.tenant:
        tenant = ask(given.tenant, "Tenant (your organization's domain or ID)", "--tenant",
                     yes=given.yes, default=chosen.tenant, check=_non_empty)  # fmt: skip
    return dataclasses.replace(answers, client_id=client_id, tenant=tenant)


def _ask_preset(given: Given, email: str) -> str:
    choices = [*presets.PRESETS, OTHER]
    if given.preset is None and not given.yes:
        click.echo("Your mail provider:", err=True)
        for name, preset in presets.PRESETS.items():
            click.echo(f"  {name:<13} {preset.label}", err=True)
        click.echo(f"  {OTHER:<13} another server: you give its hosts and ports", err=True)
    default = DOMAINS.get(email.rpartition("@")[2].lower(), OTHER)
    return ask(given.preset, "Provider", "--preset", yes=given.yes, default=default,
               check=lambda text: _choice(text, choices))  # fmt: skip


def _ask_server(
    given: Given, kind: str, flags: tuple[str | None, int | None, str | None]
) -> presets.Server | None:
    host_flag, default_port = f"--{kind}-host", 587 if kind == "smtp" else 993
    question = f"{kind.upper()} server"
    if kind == "imap":
        question += " (empty: don't watch the inbox)"
    host = ask(flags[0], question, host_flag, yes=given.yes,
               default="" if kind == "imap" else None, check=str.strip)  # fmt: skip
    if not host:
        if kind == "smtp":
            raise errors.UsageError(f"{host_flag}: an SMTP server is needed to send")
        return None
    port = ask(flags[1], f"{kind.upper()} port", f"--{kind}-port", yes=given.yes,
               default=default_port, check=_port)  # fmt: skip
    usual: presets.Security = "tls" if port in (465, 993) else "starttls"
    question = f"{kind.upper()} security ({', '.join(SECURITIES)})"
    security: presets.Security = ask(flags[2], question, f"--{kind}-security", yes=given.yes,
                                     default=usual, check=_security)  # fmt: skip
    return presets.Server(host=host, port=port, security=security)


# -- checking answers -------------------------------------------------------------


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("an answer is needed")
    return text.strip()


def _choice(text: str, choices: list[str]) -> str:
    value = text.strip().lower()
    if value in choices:
        return value
    near = validation.suggest(value, choices)
    raise ValueError(f"{text.strip()!r} is not one of {', '.join(choices)}{near}")


def _security(text: str) -> presets.Security:
    found = _choice(text, list(SECURITIES))
    return next(s for s in SECURITIES if s == found)


def _rep_id(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", value):
        raise ValueError("use lowercase letters, digits, '.', '_' or '-' (e.g. 'mike')")
    return value


def _timezone(text: str) -> str:
    return config.check_timezone(text.strip())


def _window(text: str) -> str:
    windows_mod.parse_window(text.strip())
    return text.strip()


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text.strip()!r} is not a port number (1-65535)")
    return int(text)


def rep_id_for(email: str) -> str:
    """`mike.g@example.com` → `mike.g`: the address's local part, as a rep id."""
    local = re.sub(r"[^a-z0-9_.-]+", "-", email.partition("@")[0].lower()).strip("-._")
    return local or "me"


def default_timezone() -> str:
    """This system's IANA time zone (tzlocal: $TZ, /etc/timezone, /etc/localtime), else UTC."""
    import tzlocal

    try:
        name = tzlocal.get_localzone_name()
        return _timezone(name) if name else "UTC"
    except (ValueError, LookupError, OSError):
        return "UTC"


# -- writing ----------------------------------------------------------------------


def render(answers: Answers, password_file: str | None) -> str:
    """The config text: commented, and checked to read back as TOML."""
    parts = [_HEAD.format(timezone=_q(answers.timezone), window=_q(answers.window))]
    parts.append(
        f"[[reps]]\nid = {_q(answers.rep_id)}\nname = {_q(answers.name)}\n"
        f"email = {_q(answers.email)}\n"
    )
    if answers.preset:
        parts.append(f"preset = {_q(answers.preset)}  # hosts, ports, TLS: docs/mailboxes.md\n")
    parts.append(_mailbox("smtp", answers.smtp, answers, password_file))
    if answers.preset or answers.imap:
        parts.append(_mailbox("imap", answers.imap, answers, password_file))
    if answers.client_id:
        parts.append(_oauth2(answers))
    text = "".join(parts)
    tomllib.loads(text)  # a quoting mistake here would be ours: fail before writing
    return text


_HEAD = """\
# dripd configuration, written by `dripd init`. Every key: config.example.toml.

[dripd]
database = "sqlite:///dripd.db"
campaigns = "campaigns"
attachments = "attachments"
timezone = {timezone}
send_window = {window}

# The close campaign sends `from = "associate"`: say which rep that is once
# your team has one. Unmapped, the email goes from the contact's owner.
# [roles]
# associate = "sam"

"""


def _mailbox(
    kind: str, server: presets.Server | None, answers: Answers, password_file: str | None
) -> str:
    lines = [f"\n[reps.{kind}]\n"]
    if server is not None:
        lines.append(
            f"host = {_q(server.host)}\nport = {server.port}\nsecurity = {_q(server.security)}\n"
            f"username = {_q(answers.email)}\n"
        )
    if password_file:
        lines.append(f"password_file = {_q(password_file)}  # readable by its owner only\n")
    if answers.ca_file:
        lines.append(f"ca_file = {_q(answers.ca_file)}\n")
    return "".join(lines)


def _oauth2(answers: Answers) -> str:
    preset = presets.get(answers.preset or "")
    lines = [f"\n[reps.oauth2]\nprovider = {_q(preset.oauth2_provider or '')}\n",
             f"client_id = {_q(answers.client_id or '')}\n"]  # fmt: skip
    if answers.tenant:
        lines.append(f"tenant = {_q(answers.tenant)}\n")
    return "".join(lines)


def _q(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's, for the text init writes)."""
    return json.dumps(text, ensure_ascii=False)


def write_secret(path: Path, secret: str) -> None:
    """`secret` in `path`, created readable and writable by this user only (0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an older file may have had wider modes
        handle.write(secret + "\n")


def copy_campaigns(source: Path, target: Path) -> bool:
    """Copy the shipped campaigns to `target`; False (nothing touched) if it exists."""
    if target.exists():
        return False
    shutil.copytree(source, target)
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What `setup` wrote, for the command to tell and to check."""

    config: Path
    campaigns: Path
    campaigns_copied: bool
    password_file: Path | None
    answers: Answers

    @property
    def needs_sign_in(self) -> bool:
        return self.answers.client_id is not None


def setup(target: Path, given: Given, *, force: bool) -> Written:
    """Ask, then write the config, the campaigns and the password file beside `target`."""
    if target.exists() and not force:
        raise errors.UsageError(f"{target} exists: dripd init does not replace it (--force does)")
    shipped = campaigns_mod.shipped_folder()
    if shipped is None:
        raise errors.UsageError(
            f"the shipped campaigns are not at {campaigns_mod.SHIPPED}: "
            "run dripd init from dripd's repository"
        )
    answers = gather(given)
    folder = target.resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    secret = None if answers.client_id else ask_secret(_password_question(answers))
    password_file = folder / f"{answers.rep_id}.password" if secret else None
    text = render(answers, password_file.name if password_file else None)
    if password_file is not None and secret is not None:
        write_secret(password_file, secret)
    target.write_text(text, encoding="utf-8")
    (folder / "attachments").mkdir(exist_ok=True)
    copied = copy_campaigns(shipped, folder / "campaigns")
    return Written(
        config=target,
        campaigns=folder / "campaigns",
        campaigns_copied=copied,
        password_file=password_file,
        answers=answers,
    )


def _password_question(answers: Answers) -> str:
    preset = presets.PRESETS.get(answers.preset or "")
    if preset is not None and preset.password_help:
        click.echo(f"An app password, not your usual one. {preset.password_help}.", err=True)
        return f"App password for {answers.email} (not shown)"
    return f"Password for {answers.email} (not shown; empty: none)"
