"""The test OAuth2 server (tests/servers/oauth.py) and the mail servers that trust it.

The grants behave as a provider's: device flow pending until approved, code
flow only with PKCE, strict refresh rotation, revocation, expiry; aiosmtpd
and Dovecot log a user in by XOAUTH2 only with a token the server says is active.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import aioimaplib
import aiosmtplib
import pytest
import servers.certs
import servers.imap
import servers.loopback
import servers.oauth
import servers.smtp
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from dripd import errors
from dripd.files import config
from dripd.mailbox import oauth as dripd_oauth

SCOPE = "mail.send mail.read offline_access"
USER = "mike@example.test"


@pytest.fixture
def oauth() -> Iterator[servers.oauth.OAuthServer]:
    with servers.oauth.OAuthServer(access_lifetime=2) as server:
        yield server


def _client() -> OAuth2Session:
    return OAuth2Session(
        client_id=servers.oauth.CLIENT_ID,
        scope=SCOPE,
        token_endpoint_auth_method="none",
        code_challenge_method="S256",
    )


def _device_token(server: servers.oauth.OAuthServer, user: str) -> dict[str, str]:
    with _client() as client:
        data = {"client_id": servers.oauth.CLIENT_ID, "scope": SCOPE}
        grant = client.post(server.url("devicecode"), data=data, withhold_token=True).json()
        token_url, device = server.url("token"), grant["device_code"]
        kind = servers.oauth.DeviceCodeGrant.GRANT_TYPE
        with pytest.raises(OAuthError) as pending:
            client.fetch_token(token_url, grant_type=kind, device_code=device)
        assert pending.value.error == "authorization_pending"
        server.approve_device(grant["user_code"], user)
        return dict(client.fetch_token(token_url, grant_type=kind, device_code=device))


def test_grants_rotation_revocation_and_expiry(oauth: servers.oauth.OAuthServer) -> None:
    first = _device_token(oauth, USER)
    assert oauth.introspect(first["access_token"])["username"] == USER
    with _client() as client:
        second = client.refresh_token(oauth.url("token"), refresh_token=first["refresh_token"])
        assert second["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuthError) as reused:
            client.refresh_token(oauth.url("token"), refresh_token=first["refresh_token"])
        assert reused.value.error == "invalid_grant"
        verifier = generate_token(48)
        redirect = "http://127.0.0.1:8765/"
        url, _ = client.create_authorization_url(
            oauth.url("authorize"), redirect_uri=redirect, code_verifier=verifier
        )
        back = oauth.sign_in(url, "ann@example.test")
        code_token = client.fetch_token(
            oauth.url("token"),
            authorization_response=back,
            redirect_uri=redirect,
            code_verifier=verifier,
        )
        assert oauth.introspect(code_token["access_token"])["username"] == "ann@example.test"
        url, _ = client.create_authorization_url(
            oauth.url("authorize"), redirect_uri=redirect, code_verifier=verifier
        )
        with pytest.raises(OAuthError) as wrong_verifier:
            client.fetch_token(
                oauth.url("token"),
                authorization_response=oauth.sign_in(url, USER),
                redirect_uri=redirect,
                code_verifier=generate_token(48),
            )
        assert wrong_verifier.value.error == "invalid_grant"
    assert oauth.revoke_user(USER) >= 2
    assert oauth.introspect(second["access_token"]) == {"active": False}
    time.sleep(2.1)  # the access lifetime
    assert oauth.introspect(code_token["access_token"]) == {"active": False}


def test_aiosmtpd_and_dovecot_take_xoauth2(oauth: servers.oauth.OAuthServer) -> None:
    smtp = servers.smtp.SmtpServer(oauth2=oauth.introspect).start()
    dovecot = servers.imap.Dovecot(oauth2_introspection=oauth.introspection_url).start()
    try:
        account = dovecot.new_user("mike")
        token = _device_token(oauth, account.address)["access_token"]

        async def smtp_login(value: str) -> None:
            async def generator() -> str:
                return value

            client = aiosmtplib.SMTP(
                hostname=smtp.host,
                port=smtp.port,
                username=account.address,
                oauth_token_generator=generator,
            )
            await client.connect()
            await client.quit()

        servers.loopback.run_client(smtp_login(token))
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
            servers.loopback.run_client(smtp_login("at-not-a-token"))
        assert refused.value.code == 535

        async def imap_login(value: str) -> str:
            client = aioimaplib.IMAP4(host=dovecot.host, port=dovecot.imap_port, timeout=5)
            await client.wait_hello_from_server()
            response = await client.xoauth2(account.address, value)
            await client.logout()
            return str(response.result)

        assert servers.loopback.run_client(imap_login(token)) == "OK"
        assert "method=XOAUTH2" in dovecot.log_tail()
    finally:
        dovecot.cleanup()
        smtp.stop()


def test_a_provider_with_a_private_ca_needs_ca_file(tmp_path: Any) -> None:
    """Over https, the provider's certificate is verified: the test CA only with `ca_file`."""
    certificates = servers.certs.shared_certificates()
    tls = {"tls": certificates.server_context(), "client_tls": certificates.client_context()}
    with servers.oauth.OAuthServer(**tls) as server:
        settings: dict[str, Any] = {
            "provider": "custom",
            "client_id": servers.oauth.CLIENT_ID,
            "device_authorization_url": server.url("devicecode"),
            "token_url": server.url("token"),
            "scopes": list(servers.oauth.SCOPES),
        }
        untrusted = dripd_oauth.Provider(config.OAuth2Config.model_validate(settings))
        with pytest.raises(errors.SignInUnavailable, match=r"set ca_file in \[reps.oauth2\]"):
            untrusted.start_device()
        settings["ca_file"] = str(certificates.ca_file)
        trusted = dripd_oauth.Provider(config.OAuth2Config.model_validate(settings))
        grant = trusted.start_device()
        server.approve_device(grant.user_code, USER)
        token = trusted.wait_device(grant, sleep=lambda _: None)
        assert server.introspect(token["access_token"])["username"] == USER
