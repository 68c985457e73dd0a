"""The files a rep or operator writes, made by tests and benchmarks: campaigns and configs.

- `campaign(name, *steps, **settings)`: a campaign's TOML; steps from `email_step`
  (or `hello_step`, the first email of most test campaigns), A/B `variants` included.
- `config(database, campaigns, *reps, **settings)`: a config's TOML: `[dripd]`, then
  the reps from `rep(id, smtp=..., imap=...)`, their mailboxes from `smtp_mailbox`
  (by default a server on 127.0.0.1 without TLS or AUTH, no sending limit in the way) and
  `imap_mailbox` (an account on the tests' Dovecot).
- `write_campaign(folder, name, text, templates)`: a campaign file and its templates.
- `shipped_config(database)`: mike and sam on the shipped campaigns.
- `DRIPD` and `dripd_env()`: the real `dripd` command and an environment for it that
  nothing of the developer's shell leaks into.

Values are written as TOML (strings quoted and escaped), so a test says what it
sets and nothing about TOML's syntax.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

DRIPD = str(Path(sys.executable).with_name("dripd"))
SHIPPED_CAMPAIGNS = Path(__file__).resolve().parent.parent / "campaigns"
NO_LIMIT = 1_000_000  # emails an hour or a day: more than any test sends
# Settings of the shell running the tests that would change what `dripd` does.
_LEAKING = (
    "DRIPD_CONFIG",
    "DRIPD_DATABASE",
    "DRIPD_LOG_LEVEL",
    "STATE_DIRECTORY",
    "CREDENTIALS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "COLUMNS",  # the width of tables dripd prints
)

Table = Mapping[str, object]


def dripd_env(**extra: str) -> dict[str, str]:
    """This process's environment without `_LEAKING`, plus `extra`."""
    env = {name: value for name, value in os.environ.items() if name not in _LEAKING}
    env.update(extra)
    return env


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string too
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def assignments(values: Table) -> str:
    """`key = value` lines; a None value is left out."""
    lines = [f"{key} = {toml_value(value)}\n" for key, value in values.items() if value is not None]
    return "".join(lines)


def table(header: str, values: Table) -> str:
    """`header` (e.g. "[reps.smtp]", "[[steps]]") and its `key = value` lines."""
    return f"{header}\n{assignments(values)}"


def email_step(
    id: str,
    *,
    subject: str,
    wait: str = "0m",
    body: str | None = None,
    template: str | None = None,
    **more: object,
) -> Table:
    """An email step: its text in `body`, or in the file `template` (under the campaigns)."""
    return {
        "id": id,
        "kind": "email",
        "wait": wait,
        "subject": subject,
        "body": body,
        "template": template,
        **more,
    }


def hello_step(**more: object) -> Table:
    """The first email of most test campaigns: now, to the contact by first name and company."""
    step = email_step(
        "hello",
        subject="Hello {{ contact.first_name }}",
        body="Hi {{ contact.first_name }},\n\nA short note about {{ contact.company }}.\n",
    )
    return {**step, **more}


def campaign(name: str, *steps: Table, **settings: object) -> str:
    """A campaign: `name`, its settings (send_window="...", stage="..."), its steps in order.

    A step's `variants` (a list of tables) are its A/B versions.
    """
    return assignments({"name": name, **settings}) + "".join(map(_step, steps))


def _step(step: Table) -> str:
    values = {key: value for key, value in step.items() if key != "variants"}
    variants = step.get("variants")
    assert variants is None or isinstance(variants, list | tuple), variants
    text = "\n" + table("[[steps]]", values)
    return text + "".join(table("[[steps.variants]]", variant) for variant in variants or ())


def write_campaign(
    folder: Path, name: str, text: str, templates: Mapping[str, str] | None = None
) -> Path:
    """`folder/name.toml` and each template (a path under `folder`: its text); the campaign."""
    folder.mkdir(parents=True, exist_ok=True)
    for relative, template in (templates or {}).items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(template, encoding="utf-8")
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def smtp_mailbox(
    port: int,
    *,
    security: str = "none",
    max_per_hour: int | None = NO_LIMIT,
    max_per_day: int | None = NO_LIMIT,
    **more: object,
) -> Table:
    """A rep's `[reps.smtp]`: a server on 127.0.0.1 (a limit of None: dripd's default)."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "max_per_hour": max_per_hour,
        "max_per_day": max_per_day,
        **more,
    }


def imap_mailbox(
    address: str, port: int, *, password_env: str, security: str = "none", **more: object
) -> Table:
    """A rep's `[reps.imap]`: an account on 127.0.0.1, its password in an environment variable."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username": address,
        "password_env": password_env,
        **more,
    }


def rep(
    id: str,
    *,
    name: str | None = None,
    email: str | None = None,
    smtp: Table | None = None,
    imap: Table | None = None,
    **settings: object,
) -> str:
    """A `[[reps]]` entry (name: `id` titled; email: id@example.com), with its mailboxes."""
    values = {"id": id, "name": name or id.title(), "email": email or f"{id}@example.com"}
    text = table("[[reps]]", {**values, **settings})
    if smtp is not None:
        text += "\n" + table("[reps.smtp]", smtp)
    if imap is not None:
        text += "\n" + table("[reps.imap]", imap)
    return text


def quiet_digest() -> str:
    """A rep's `digest` that no test run meets: one slot a week, three days from today.

    The default ("mon-fri 07:30") sends a digest to the rep on weekday mornings, so
    a test that counts the emails sent (or the outbox) would pass or fail by the day
    and hour it runs. Three days ahead is another day than today in every time zone,
    and its last slot, four days back, is older than the digest's grace.
    """
    day = datetime.now(UTC) + timedelta(days=3)
    return f"{day:%a} 12:00".lower()


def config(
    database: str, campaigns: Path, *reps: str, timezone: str = "UTC", **settings: object
) -> str:
    """A config: `[dripd]` with the database, campaigns folder, timezone and `settings`; reps."""
    values = {"database": database, "campaigns": campaigns, "timezone": timezone, **settings}
    return table("[dripd]", values) + "".join("\n" + text for text in reps)


def shipped_config(database: str) -> str:
    """mike and sam in New York, on the campaigns shipped in campaigns/ (size tests, benches)."""
    reps = [rep("mike", name="Mike Gulitz"), rep("sam", name="Sam Rivera")]
    return config(database, SHIPPED_CAMPAIGNS, *reps, timezone="America/New_York")
