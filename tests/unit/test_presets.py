"""Provider presets (`preset = "fastmail"` on a rep): what they fill, and what wins over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dripd import errors
from dripd.files import config, presets

REP = """\
[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"
preset = "{preset}"
"""


def _load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


@pytest.mark.parametrize(
    ("preset", "smtp", "imap", "save_copy"),
    [
        ("microsoft365", ("smtp.office365.com", 587, "starttls"), ("outlook.office365.com", 993, "tls"), False),  # noqa: E501
        ("outlook", ("smtp-mail.outlook.com", 587, "starttls"), ("outlook.office365.com", 993, "tls"), False),  # noqa: E501
        ("google", ("smtp.gmail.com", 587, "starttls"), ("imap.gmail.com", 993, "tls"), False),
        ("fastmail", ("smtp.fastmail.com", 465, "tls"), ("imap.fastmail.com", 993, "tls"), True),
        ("icloud", ("smtp.mail.me.com", 587, "starttls"), ("imap.mail.me.com", 993, "tls"), True),
        ("yahoo", ("smtp.mail.yahoo.com", 465, "tls"), ("imap.mail.yahoo.com", 993, "tls"), True),
        ("zoho", ("smtp.zoho.com", 465, "tls"), ("imap.zoho.com", 993, "tls"), True),
    ],
)  # fmt: skip
def test_a_preset_fills_both_mailboxes(
    tmp_path: Path,
    preset: str,
    smtp: tuple[str, int, str],
    imap: tuple[str, int, str],
    save_copy: bool,
) -> None:
    sign_in = '[reps.oauth2]\nclient_id = "app-id"\n' if presets.get(preset).uses_oauth2 else ""
    (rep,) = _load(tmp_path, REP.format(preset=preset) + sign_in).reps
    assert rep.smtp is not None and rep.imap is not None
    assert rep.smtp.auth == rep.imap.auth == ("oauth2" if sign_in else "password")
    if sign_in:  # the preset's provider (and tenant) complete the app registration
        assert rep.oauth2 is not None and rep.oauth2.client_id == "app-id"
        assert rep.oauth2.provider == ("google" if preset == "google" else "microsoft")
    assert (rep.smtp.host, rep.smtp.port, rep.smtp.security) == smtp
    assert (rep.imap.host, rep.imap.port, rep.imap.security) == imap
    assert rep.smtp.username == rep.imap.username == "mike@example.com"
    assert rep.imap.save_copy is save_copy
    assert rep.imap.sent_folder is None  # found by its \Sent use (localized names)
    assert rep.imap.folder == "INBOX" and rep.smtp.max_per_day == 400  # the usual defaults


@pytest.mark.parametrize(
    ("preset", "auth", "oauth2"),
    [
        ("microsoft365", "oauth2", {"provider": "microsoft", "tenant": "organizations"}),
        ("outlook", "oauth2", {"provider": "microsoft", "tenant": "consumers"}),
        ("google", "oauth2", {"provider": "google"}),
        ("fastmail", "password", None),
        ("icloud", "password", None),
    ],
)
def test_a_preset_records_how_its_users_sign_in(
    preset: str, auth: str, oauth2: dict[str, str] | None
) -> None:
    tables = presets.get(preset).settings("mike@example.com")
    assert tables["smtp"]["auth"] == tables["imap"]["auth"] == auth
    assert tables.get("oauth2") == oauth2
    assert bool(presets.get(preset).password_help) is (auth == "password")


def test_what_the_config_sets_wins_over_the_preset(tmp_path: Path) -> None:
    text = REP.format(preset="google") + (
        '[reps.smtp]\nport = 465\nsecurity = "tls"\npassword_file = "mike-app-password"\n'
        'max_per_day = 90\nauth = "password"\n'  # an app password instead of OAuth2
        '[reps.imap]\nusername = "mike.g@example.com"\nsave_copy = true\nauth = "password"\n'
        'sent_folder = "[Gmail]/Sent Mail"\n'
    )
    (rep,) = _load(tmp_path, text).reps
    assert rep.smtp is not None and rep.imap is not None
    assert (rep.smtp.host, rep.smtp.port, rep.smtp.security) == ("smtp.gmail.com", 465, "tls")
    assert rep.smtp.password_file == "mike-app-password" and rep.smtp.max_per_day == 90
    assert rep.smtp.username == "mike@example.com"
    assert (rep.imap.host, rep.imap.username) == ("imap.gmail.com", "mike.g@example.com")
    assert rep.imap.save_copy is True and rep.imap.sent_folder == "[Gmail]/Sent Mail"


def test_a_rep_without_a_preset_is_as_before(tmp_path: Path) -> None:
    text = REP.replace('preset = "{preset}"\n', "")
    (rep,) = _load(tmp_path, text).reps
    assert rep.smtp is None and rep.imap is None and rep.preset is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gogle", "unknown preset 'gogle' — did you mean 'google'? (presets: microsoft365, "),
        ("office365", "unknown preset 'office365' (presets: microsoft365, outlook, google, "),
    ],
)
def test_an_unknown_preset_is_one_line_naming_the_rep_and_the_near_name(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        _load(tmp_path, REP.format(preset=value))
    text = str(caught.value)
    assert text.startswith(f"{tmp_path / 'config.toml'}: reps[0].preset: {message}"), text
    assert "\n" not in text


def test_a_mistake_under_a_preset_still_names_its_key(tmp_path: Path) -> None:
    text = REP.format(preset="fastmail") + "[reps.imap]\nsave_copies = false\n"
    with pytest.raises(errors.ConfigError) as caught:
        _load(tmp_path, text)
    assert str(caught.value) == (
        f"{tmp_path / 'config.toml'}: reps[0].imap: unknown key 'save_copies' — "
        "did you mean 'save_copy'?"
    )
