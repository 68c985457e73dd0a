"""[reps.oauth2] and auth = "oauth2": one-line errors naming the key; the providers' presets."""

from __future__ import annotations

from pathlib import Path

import dates
import pytest

from dripd import errors
from dripd.files import config
from dripd.mailbox import oauth

BASE = """\
[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@contoso.com"

[reps.smtp]
host = "smtp.office365.com"
auth = "oauth2"

[reps.imap]
host = "outlook.office365.com"
auth = "oauth2"

[reps.oauth2]
provider = "microsoft"
client_id = "00000000-1111-2222-3333-444444444444"
"""


def _load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def _oauth2(tmp_path: Path, text: str) -> config.OAuth2Config:
    rep = _load(tmp_path, text).reps[0]
    assert rep.oauth2 is not None
    return rep.oauth2


BAD = [
    ("a misspelt key", BASE.replace("client_id", "clientid"),
     ["reps[0].oauth2", "unknown key 'clientid'", "did you mean 'client_id'"]),
    ("an unknown provider", BASE.replace('"microsoft"', '"yahoo"'),
     ["reps[0].oauth2.provider", "'microsoft', 'google' or 'custom'"]),
    ("auth without a table", BASE.split("[reps.oauth2]")[0],
     ["reps[0]", 'smtp.auth = "oauth2" needs a [reps.oauth2] table']),
    ("a password beside oauth2",
     BASE.replace('auth = "oauth2"\n', 'auth = "oauth2"\npassword_env = "X"\n', 1),
     ["reps[0]", "dripd auth mike", "remove password_env/password_file"]),
    ("plain http to a remote host", BASE + 'token_url = "http://login.example.com/token"\n',
     ["reps[0].oauth2.token_url", "http:// is only allowed to localhost"]),
    ("not a URL", BASE + 'token_url = "login.example.com/token"\n',
     ["reps[0].oauth2.token_url", "not an https:// URL"]),
    ("custom without a token URL", BASE.replace('"microsoft"', '"custom"'),
     ["reps[0].oauth2", 'provider = "custom" needs token_url']),
    ("custom without a sign-in URL",
     BASE.replace('"microsoft"', '"custom"') + 'token_url = "https://id.example.com/token"\n',
     ["reps[0].oauth2", "needs device_authorization_url or authorization_url"]),
    ("a tenant for google", BASE.replace('"microsoft"', '"google"') + 'tenant = "contoso"\n',
     ["reps[0].oauth2", 'tenant is only for provider = "microsoft"']),
    ("two client secrets", BASE + 'client_secret_env = "A"\nclient_secret_file = "b"\n',
     ["reps[0].oauth2", "client_secret_env or client_secret_file, not both"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "fragments"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_a_bad_oauth2_setting_is_one_line_naming_the_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    with pytest.raises(errors.ConfigError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_microsoft_preset_and_tenant(tmp_path: Path) -> None:
    found = oauth.endpoints(_oauth2(tmp_path, BASE))
    base = "https://login.microsoftonline.com/organizations/oauth2/v2.0/"
    assert found.device_authorization_url == base + "devicecode"
    assert found.authorization_url == base + "authorize"
    assert found.token_url == base + "token"
    assert found.scopes == (
        "https://outlook.office.com/SMTP.Send",
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "offline_access",
    )
    tenant = oauth.endpoints(_oauth2(tmp_path, BASE + 'tenant = "contoso.onmicrosoft.com"\n'))
    assert tenant.token_url.startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/")


def test_google_preset_has_no_device_flow_and_overrides_win(tmp_path: Path) -> None:
    google = BASE.replace('"microsoft"', '"google"') + 'client_secret_env = "GOOGLE_SECRET"\n'
    found = oauth.endpoints(_oauth2(tmp_path, google))
    assert found.device_authorization_url is None
    assert found.authorization_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert found.token_url == "https://oauth2.googleapis.com/token"
    assert found.scopes == ("https://mail.google.com/",)
    local = google + 'token_url = "http://127.0.0.1:9000/token"\nscopes = ["mail"]\n'
    overridden = oauth.endpoints(_oauth2(tmp_path, local))
    assert overridden.token_url == "http://127.0.0.1:9000/token"
    assert overridden.scopes == ("mail",)


def test_client_secret_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _oauth2(tmp_path, BASE + 'client_secret_env = "DRIPD_TEST_SECRET"\n')
    monkeypatch.delenv("DRIPD_TEST_SECRET", raising=False)
    with pytest.raises(errors.ConfigError, match="DRIPD_TEST_SECRET is not set"):
        settings.client_secret()
    monkeypatch.setenv("DRIPD_TEST_SECRET", "s3cret")
    assert settings.client_secret() == "s3cret"


def test_login_is_the_username_else_the_address(tmp_path: Path) -> None:
    rep = _load(tmp_path, BASE).reps[0]
    assert rep.uses_oauth2 and rep.login == "mike@contoso.com"
    named = BASE.replace('auth = "oauth2"\n', 'auth = "oauth2"\nusername = "m.g@contoso.com"\n', 1)
    assert _load(tmp_path, named).reps[0].login == "m.g@contoso.com"


def test_a_stored_sign_in_never_shows_its_tokens() -> None:
    from datetime import UTC

    from dripd.mailbox import tokens
    from dripd.store import oauth_tokens

    stored = oauth_tokens.Stored(
        rep="mike",
        subject="mike@contoso.com",
        refresh_token="rt-never-shown",
        access_token="at-never-shown",
        access_fresh_until=None,
        signed_in_at=dates.local(dates.today(), 0, tz=UTC),  # any instant
        refreshed_at=None,
        refreshing_by=None,
        refreshing_until=None,
        lost_at=None,
        lost_reason=None,
    )
    assert "never-shown" not in repr(stored)
    assert "never-shown" not in str(tokens.lost_error("mike", stored))
