"""The configuration file: where things are, the reps and their mailboxes.

Relative paths are resolved against the config file's folder, except the
database and the attachments folder, which go under `$STATE_DIRECTORY` when
systemd provides one (so `database = "sqlite:///dripd.db"` means
`/var/lib/dripd/dripd.db` under the shipped unit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic

from dripd import errors
from dripd.files import presets, tomlfile, validation
from dripd.mail import addresses
from dripd.plan import calendars, durations
from dripd.plan import windows as windows_mod

DEFAULT_PATHS = (Path("/etc/dripd/config.toml"), Path("config.toml"))
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like 'Europe/Berlin')"
        ) from exc
    return name


def _check_window(text: str) -> str:
    windows_mod.parse_window(text)
    return text


def _check_duration(text: str) -> str:
    durations.parse_duration(text)
    return text


def _check_slots(text: str) -> str:
    windows_mod.parse_slots(text)
    return text


def _in_config_folder(value: str, info: pydantic.ValidationInfo) -> str:
    """A relative path in the config, resolved in the config file's folder."""
    folder = (info.context or {}).get("folder")
    if value and folder is not None and not Path(value).is_absolute():
        return str(Path(folder) / value)
    return value


Address = Annotated[str, pydantic.AfterValidator(addresses.normalize_address)]
# A named calendar ("US", "DE-BY": the `holidays` package, any year) or a date
HolidayEntry = Annotated[date | str, pydantic.AfterValidator(calendars.check_entry)]
TimeZoneName = Annotated[str, pydantic.AfterValidator(check_timezone)]
WindowText = Annotated[str, pydantic.AfterValidator(_check_window)]
SlotsText = Annotated[str, pydantic.AfterValidator(_check_slots)]
DurationText = Annotated[str, pydantic.AfterValidator(_check_duration)]
ConfigPath = Annotated[str, pydantic.AfterValidator(_in_config_folder)]  # relative: config's folder


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Secret(_Model):
    """A mailbox's password, named by environment variable or file, never written in the config.

    Its `ca_file` and `password_file`, when relative, are looked up like the
    config's other paths: in the config file's folder (given as the
    validation context `folder`); a relative `password_file` first in
    `$CREDENTIALS_DIRECTORY`, where systemd's LoadCredential= puts it.
    """

    password_env: str | None = None
    password_file: str | None = None
    _folder: Path | None = pydantic.PrivateAttr(default=None)

    @pydantic.model_validator(mode="after")
    def _remember_folder(self, info: pydantic.ValidationInfo) -> Secret:
        self._folder = (info.context or {}).get("folder")
        return self

    def password(self) -> str | None:
        """The secret's value; raises ConfigError if it is named but unavailable."""
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise errors.ConfigError(f"environment variable {self.password_env} is not set")
            return value
        if self.password_file:
            return _read_secret_file(self.password_file, self._folder)
        return None


def _read_secret_file(name: str, folder: Path | None) -> str:
    path = Path(name)
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute():
        path = Path(credentials or folder or ".") / path
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise errors.ConfigError(f"password file {path}: {exc.strerror or exc}") from exc


Auth = Literal["password", "oauth2"]


class SmtpConfig(Secret):
    host: str
    auth: Auth = "password"  # oauth2: XOAUTH2 with the rep's [reps.oauth2] sign-in
    port: int = pydantic.Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    ca_file: ConfigPath | None = None
    timeout: float = pydantic.Field(default=30.0, gt=0)
    max_per_hour: int = pydantic.Field(default=100, ge=1)
    max_per_day: int = pydantic.Field(default=400, ge=1)
    connections: int = pydantic.Field(default=2, ge=1, le=16)

    @pydantic.model_validator(mode="after")
    def _plain_only_to_loopback(self) -> SmtpConfig:
        _refuse_plain(self.security, self.host)
        return self


class ImapConfig(Secret):
    host: str
    auth: Auth = "password"
    port: int = pydantic.Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = None
    ca_file: ConfigPath | None = None
    folder: str = "INBOX"
    # Unset: the folder the server marks \Sent, else a usual name, else "Sent",
    # created at the first copy (dripd/sent.py). "": no Sent folder at all.
    sent_folder: str | None = None
    # False: the server files what it sends there itself (Gmail, Microsoft 365);
    # dripd then only looks there, after a crash, and appends nothing.
    save_copy: bool = True
    idle: bool = True  # IMAP IDLE where the server offers it; else (or when false) polling
    poll_interval: float = pydantic.Field(default=60.0, ge=1.0, le=3600.0)  # seconds

    @pydantic.model_validator(mode="after")
    def _plain_only_to_loopback(self) -> ImapConfig:
        _refuse_plain(self.security, self.host)
        return self

    @property
    def uses_sent_folder(self) -> bool:
        """False when `sent_folder = ""`: no copies, and no look there after a crash."""
        return self.sent_folder != ""


class OAuth2Config(_Model):
    """How a rep signs in with OAuth2 (dripd.mailbox.tokens): the provider and the app registration.

    `microsoft` and `google` carry their endpoints and scopes (dripd.mailbox.tokens.PRESETS);
    the URL keys and `scopes` override them, and a `custom` provider must set
    `token_url` and a way to sign in (`device_authorization_url` or
    `authorization_url`).
    """

    provider: Literal["microsoft", "google", "custom"]
    client_id: str = pydantic.Field(min_length=1)
    client_secret_env: str | None = None
    client_secret_file: str | None = None
    tenant: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    scopes: list[str] | None = None
    ca_file: ConfigPath | None = None
    _folder: Path | None = pydantic.PrivateAttr(default=None)

    @pydantic.field_validator(
        "device_authorization_url", "authorization_url", "token_url", "revocation_url"
    )
    @classmethod
    def _https_or_loopback(cls, value: str | None) -> str | None:
        if value is not None:
            _check_endpoint(value)
        return value

    @pydantic.model_validator(mode="after")
    def _complete(self, info: pydantic.ValidationInfo) -> OAuth2Config:
        self._folder = (info.context or {}).get("folder")
        if self.client_secret_env and self.client_secret_file:
            raise ValueError("set client_secret_env or client_secret_file, not both")
        if self.tenant is not None and self.provider != "microsoft":
            raise ValueError('tenant is only for provider = "microsoft"')
        if self.provider == "custom":
            if not self.token_url:
                raise ValueError('provider = "custom" needs token_url')
            if not (self.device_authorization_url or self.authorization_url):
                raise ValueError(
                    'provider = "custom" needs device_authorization_url or authorization_url'
                )
        return self

    def client_secret(self) -> str | None:
        """The app's secret where its client type has one (Google); ConfigError if unreadable."""
        if self.client_secret_env:
            value = os.environ.get(self.client_secret_env)
            if value is None:
                raise errors.ConfigError(
                    f"environment variable {self.client_secret_env} is not set"
                )
            return value
        if self.client_secret_file:
            return _read_secret_file(self.client_secret_file, self._folder)
        return None


def _check_endpoint(url: str) -> None:
    """https://, or http:// to loopback only (as security = "none" is for mail)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS:
        return
    if parts.scheme == "http":
        raise ValueError(f"http:// is only allowed to localhost, not to {parts.hostname!r}")
    raise ValueError(f"not an https:// URL: {url!r}")


def _refuse_plain(security: str, host: str) -> None:
    if security == "none" and host not in LOOPBACK_HOSTS:
        raise ValueError(f'security = "none" is only allowed to localhost, not to {host!r}')


def _check_preset(name: str) -> str:
    presets.get(name)
    return name


PresetName = Annotated[str, pydantic.AfterValidator(_check_preset)]


class RepConfig(_Model):
    id: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    name: str
    email: Address
    preset: PresetName | None = None  # dripd/presets.py: fills smtp and imap; explicit keys win
    digest: SlotsText = "mon-fri 07:30"
    signature: str = ""
    phone: str = ""
    company: str = ""
    timezone: TimeZoneName | None = None
    # This rep's holidays, instead of [dripd]'s: business days and windows of the rep's contacts
    holidays: list[HolidayEntry] | None = None
    smtp: SmtpConfig | None = None
    imap: ImapConfig | None = None
    oauth2: OAuth2Config | None = None

    @pydantic.model_validator(mode="after")
    def _oauth2_where_used(self) -> RepConfig:
        for name, box in (("smtp", self.smtp), ("imap", self.imap)):
            if box is None or box.auth != "oauth2":
                continue
            by = f"preset {self.preset!r} signs in with OAuth2" if self.preset else None
            if self.oauth2 is None:
                if by:
                    raise ValueError(
                        f"{by}: add a [reps.oauth2] table with your app's client_id "
                        f'(docs/oauth2.md), or set auth = "password" in [reps.{name}]'
                    )
                raise ValueError(f'{name}.auth = "oauth2" needs a [reps.oauth2] table')
            if box.password_env or box.password_file:
                if by:
                    raise ValueError(
                        f'{by}: for an app password instead, set auth = "password" in [reps.{name}]'
                    )
                raise ValueError(
                    f'{name}: auth = "oauth2" signs in with `dripd auth {self.id}`, '
                    "not a password: remove password_env/password_file"
                )
        return self

    @property
    def uses_oauth2(self) -> bool:
        """Whether any of the rep's mailboxes signs in with OAuth2."""
        return any(box is not None and box.auth == "oauth2" for box in (self.smtp, self.imap))

    @property
    def login(self) -> str:
        """The mailbox's user name for XOAUTH2: the SMTP or IMAP username, else the address."""
        for box in (self.smtp, self.imap):
            if box is not None and box.auth == "oauth2" and box.username:
                return box.username
        return self.email

    @pydantic.model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("preset"), str):
            return data
        found = presets.PRESETS.get(data["preset"])
        if found is None:  # unknown: the `preset` field says so, with the near name
            return data
        return _with_preset(cls, data, found.settings(str(data.get("email", ""))))

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.name


def _with_preset(
    model: type[pydantic.BaseModel],
    data: dict[str, Any],
    tables: dict[str, dict[str, object]],
) -> dict[str, Any]:
    """`data` with the preset's `tables` under it: the preset's keys first, the config's win.

    The mailboxes are filled in even when the config has no table for them;
    `[reps.oauth2]` only completed (provider, tenant) where the config has one
    (it needs the user's client_id). The preset's `auth = "oauth2"` is the
    default of microsoft365, outlook and google reps: one who logs in with a
    password there sets `auth = "password"`.
    """
    merged = dict(data)
    for name, values in tables.items():
        table = validation.model_of(model, name)
        given = data.get(name)
        if given is None and name not in presets.MAILBOXES:
            continue
        if table is None or not isinstance(given, dict | None):
            continue
        known = {key: value for key, value in values.items() if key in table.model_fields}
        merged[name] = known | (given or {})
    return merged


class DripdSection(_Model):
    database: str = "sqlite:///dripd.db"
    campaigns: str = "campaigns"
    attachments: str = "attachments"
    timezone: TimeZoneName = "UTC"
    send_window: WindowText = "mon-fri 09:00-17:00"
    holidays: list[HolidayEntry] = []
    max_late: DurationText = "2 days"
    out_of_office_days: int = pydantic.Field(default=3, ge=0)


class ConfigModel(_Model):
    dripd: DripdSection = DripdSection()
    # A campaign's `from = "associate"` sends as the rep its role names here.
    roles: dict[str, str] = {}
    reps: list[RepConfig] = []

    @pydantic.model_validator(mode="after")
    def _unique_reps(self) -> ConfigModel:
        seen: set[str] = set()
        for rep in self.reps:
            if rep.id in seen:
                raise ValueError(f"rep id {rep.id!r} is used twice")
            seen.add(rep.id)
        return self

    @pydantic.model_validator(mode="after")
    def _roles_are_not_reps(self) -> ConfigModel:
        # A role naming a rep that is not (any more) here is a `check` warning: the
        # contact's owner sends, as for a role [roles] does not name.
        ids = [rep.id for rep in self.reps]
        for role in self.roles:
            if role in ids:
                raise ValueError(f"roles: {role!r} is a rep id; a role needs a name of its own")
        return self


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The loaded configuration, with every path resolved."""

    path: Path
    model: ConfigModel
    database_url: str
    campaigns_dir: Path
    attachments_dir: Path
    # each rep's holidays, worked out once: the engine asks for every contact it plans
    rep_holidays: Mapping[str, calendars.Holidays] = field(default_factory=dict)

    @property
    def reps(self) -> Sequence[RepConfig]:
        return self.model.reps

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.model.dripd.timezone)

    @property
    def holidays(self) -> calendars.Holidays:
        """The holidays of [dripd]: those of contacts whose rep has no list of their own."""
        return calendars.parse(self.model.dripd.holidays)

    def holidays_for(self, rep_id: str | None) -> calendars.Holidays:
        """The holidays of a rep's contacts: the rep's own list, else [dripd]'s."""
        found = self.rep_holidays.get(rep_id) if rep_id is not None else None
        return found if found is not None else self.holidays

    @property
    def max_late(self) -> timedelta:
        """How late an email may still go out (calendar units measured from 2000-01-01)."""
        late = durations.parse_duration(self.model.dripd.max_late)
        start = datetime(2000, 1, 1, tzinfo=self.timezone)
        return durations.add(start, late, tz=self.timezone) - start

    def rep(self, rep_id: str) -> RepConfig:
        for rep in self.model.reps:
            if rep.id == rep_id:
                return rep
        known = ", ".join(r.id for r in self.model.reps) or "none configured"
        raise errors.ConfigError(f"unknown rep {rep_id!r} (reps: {known})")

    def rep_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.model.reps)

    def sender_of(self, name: str | None) -> str | None:
        """The rep a campaign's `from` names: a rep id, or a role of [roles]; None if neither."""
        if name in self.rep_ids():
            return name
        rep_id = self.model.roles.get(name) if name else None
        return rep_id if rep_id in self.rep_ids() else None

    def rep_timezone(self, rep_id: str | None) -> ZoneInfo:
        for rep in self.model.reps:
            if rep.id == rep_id and rep.timezone:
                return ZoneInfo(rep.timezone)
        return self.timezone


def find_path(explicit: str | None) -> Path:
    """The config file to use: --config, else $DRIPD_CONFIG, else /etc/dripd, else ./config.toml."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("DRIPD_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_PATHS:
        if candidate.exists():
            return candidate
    raise errors.ConfigError(
        "no config file: pass --config PATH, set DRIPD_CONFIG, "
        "or create /etc/dripd/config.toml (see config.example.toml)"
    )


def load(path: Path) -> Config:
    """Read and validate the config at `path`."""
    document = tomlfile.load(path, errors.ConfigError)
    try:
        base = path.resolve().parent
        model = ConfigModel.model_validate(document, context={"folder": base})
    except pydantic.ValidationError as exc:
        where = _config_place(path, document)
        raise errors.ConfigError(validation.first_error(exc, ConfigModel, where)) from exc
    state = Path(os.environ["STATE_DIRECTORY"]) if os.environ.get("STATE_DIRECTORY") else base
    return Config(
        path=path,
        model=model,
        database_url=os.environ.get("DRIPD_DATABASE") or _resolve_db(model.dripd.database, state),
        campaigns_dir=_resolve(model.dripd.campaigns, base),
        attachments_dir=_resolve(model.dripd.attachments, state),
        rep_holidays={
            rep.id: calendars.parse(rep.holidays) for rep in model.reps if rep.holidays is not None
        },
    )


def _config_place(path: Path, document: dict[str, object]) -> validation.LocFormatter:
    def where(loc: Sequence[int | str]) -> str:
        parts: list[str] = []
        for part in loc:
            if isinstance(part, int):
                parts[-1] = f"{parts[-1]}[{part}]"
            else:
                parts.append(str(part))
        return f"{path}: {'.'.join(parts)}: " if parts else f"{path}: "

    return where


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _resolve_db(url: str, base: Path) -> str:
    """`sqlite:///name.db` (relative) is placed under `base`; other URLs are kept."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(base / url[len(prefix) :])
    return url
