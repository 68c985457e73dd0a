"""dripd's OAuth2 token side against the test authorization server and real mail servers.

- Access tokens last 2 s here: logins across several expiries refresh them,
  and each refresh rotates the refresh token; SMTP (aiosmtpd, introspection)
  and IMAP (Dovecot's oauth2 passdb) take every one.
- Two instances (two engines, two TokenSources) refreshing the same rep at
  once: both get working tokens, the provider never sees a refresh token
  used twice, and the stored one is the last issued.
- A refused access token makes the IMAP login fail fast (the XOAUTH2
  continuation answered) and is refreshed; a revoked sign-in is lost, said
  once, and a new sign-in works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import servers.imap
import servers.loopback
import servers.oauth
import servers.required
import sqlalchemy as sa

from dripd import clock, errors
from dripd.files import config
from dripd.mailbox import imap, oauth, smtp, tokens
from dripd.store import engine as store_engine
from dripd.store import oauth_tokens

LIFETIME = 2  # seconds an access token lives


@pytest.fixture
def provider() -> Iterator[servers.oauth.OAuthServer]:
    with servers.oauth.OAuthServer(access_lifetime=LIFETIME) as server:
        yield server


@pytest.fixture
def dovecot_oauth(provider: servers.oauth.OAuthServer) -> Iterator[servers.imap.Dovecot]:
    with servers.required.dovecot(oauth2_introspection=provider.introspection_url) as dovecot:
        yield dovecot


def _rep(
    provider: servers.oauth.OAuthServer, smtp_port: int, account: servers.imap.ImapAccount
) -> Any:
    return config.RepConfig.model_validate(
        {
            "id": "mike",
            "name": "Mike",
            "email": account.address,
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "auth": "oauth2"},
            "imap": {
                "host": "127.0.0.1",
                "port": account.port,
                "security": "none",
                "auth": "oauth2",
            },
            "oauth2": {
                "provider": "custom",
                "client_id": servers.oauth.CLIENT_ID,
                "device_authorization_url": provider.url("devicecode"),
                "token_url": provider.url("token"),
                "scopes": list(servers.oauth.SCOPES),
            },
        }
    )


def _sign_in(engine: sa.Engine, rep: Any, provider: servers.oauth.OAuthServer) -> None:
    """What `dripd auth mike` stores: a device sign-in approved at once."""
    client = oauth.Provider(rep.oauth2)
    grant = client.start_device()
    provider.approve_device(grant.user_code, rep.email)
    token = client.wait_device(grant, sleep=lambda _: None)
    with engine.begin() as conn:
        # the provider keeps real time: so do the tokens (the system clock, as in `dripd auth`)
        oauth_tokens.save_sign_in(conn, rep.id, rep.email, token, clock.SystemClock().now())


def _stored(engine: sa.Engine) -> oauth_tokens.Stored:
    with engine.connect() as conn:
        found = oauth_tokens.read(conn, "mike")
    assert found is not None
    return found


def _signed_in(
    url: str, provider: servers.oauth.OAuthServer, dovecot: servers.imap.Dovecot, smtp_server: Any
) -> tuple[Any, sa.Engine, tokens.TokenSource]:
    """Mike on aiosmtpd and Dovecot, both checking tokens with `provider`, signed in."""
    mail = smtp_server(oauth2=provider.introspect)
    rep = _rep(provider, mail.port, dovecot.new_user("mike"))
    engine = store_engine.open_engine(url)
    _sign_in(engine, rep, provider)
    source = tokens.TokenSource(engine, rep, clock.SystemClock(), oauth.Provider(rep.oauth2))
    return rep, engine, source


async def _log_in_both(rep: Any, source: tokens.TokenSource) -> None:
    connection = smtp.Connection(rep.smtp, None, token_source=source)
    await connection.open()
    await connection.try_sender(rep.email)
    await connection.close()
    async with imap.Session(rep.imap, None, token_source=source) as session:
        await session.examine("INBOX")


def test_logins_through_expiries_and_rotations(
    sqlite_url: str,
    provider: servers.oauth.OAuthServer,
    dovecot_oauth: servers.imap.Dovecot,
    smtp_server: Any,
) -> None:
    rep, engine, source = _signed_in(sqlite_url, provider, dovecot_oauth, smtp_server)
    refresh_tokens = {_stored(engine).refresh_token}
    for _ in range(2):  # each round after the access token expired
        servers.loopback.run_client(_log_in_both(rep, source))
        refresh_tokens.add(_stored(engine).refresh_token)
        time.sleep(LIFETIME * 0.85)  # past its fresh-until (expiry less 20 %)
    assert source.refreshes >= 1
    assert len(refresh_tokens) == source.refreshes + 1  # every rotation kept
    assert provider.count("refresh_refused") == 0
    assert dovecot_oauth.log_tail().count("method=XOAUTH2") >= 2
    engine.dispose()


@pytest.mark.postgres
def test_two_instances_refresh_at_once_without_losing_a_rotation(
    postgres_url: str, provider: servers.oauth.OAuthServer, tmp_path: Any
) -> None:
    engines = [store_engine.open_engine(postgres_url), store_engine.open_engine(postgres_url)]
    try:
        account = servers.imap.ImapAccount(
            address="mike@example.test",
            password="",
            host="127.0.0.1",
            port=1,
            tls_port=1,
            ca_file=tmp_path,
        )
        rep = _rep(provider, 1, account)
        _sign_in(engines[0], rep, provider)
        sources = [
            tokens.TokenSource(e, rep, clock.SystemClock(), oauth.Provider(rep.oauth2))
            for e in engines
        ]

        async def both() -> list[str]:
            return list(await asyncio.gather(*(s.access_token() for s in sources)))

        for _ in range(2):
            time.sleep(LIFETIME * 0.85)
            got = asyncio.run(both())
            for token in got:
                assert provider.introspect(token)["active"] is True
        assert provider.count("refresh_refused") == 0  # no refresh token used twice
        assert sum(s.refreshes for s in sources) == 2  # one refresher per expiry
        issued = [t for t in provider.issued() if t.startswith("rt-")]
        assert _stored(engines[0]).refresh_token == issued[-1]  # the last rotation kept
    finally:
        for engine in engines:
            engine.dispose()


def test_refused_token_fails_fast_and_revocation_is_lost(
    sqlite_url: str,
    provider: servers.oauth.OAuthServer,
    dovecot_oauth: servers.imap.Dovecot,
    smtp_server: Any,
) -> None:
    rep, engine, source = _signed_in(sqlite_url, provider, dovecot_oauth, smtp_server)
    # A token the server no longer takes, though dripd thinks it fresh (revoked early):
    with engine.begin() as conn:
        conn.execute(sa.update(oauth_tokens._table).values(access_token="at-revoked-early"))
    started = time.monotonic()
    servers.loopback.run_client(
        _log_in_both(rep, source)
    )  # refused, rejected, refreshed, logged in
    assert time.monotonic() - started < 5  # no wait for aioimaplib's timeout
    assert source.refreshes == 1

    provider.revoke_user(rep.email)
    source._cached = None  # as after the access token's lifetime
    with engine.begin() as conn:
        conn.execute(sa.update(oauth_tokens._table).values(access_fresh_until=None))
    lost = r"stopped working \(invalid_grant.*dripd auth mike"
    with pytest.raises(errors.SignInError, match=lost):
        servers.loopback.run_client(source.access_token())
    assert _stored(engine).lost
    with pytest.raises(smtp.SendError) as refused:
        servers.loopback.run_client(smtp.Connection(rep.smtp, None, token_source=source).open())
    assert refused.value.kind == "signin"

    _sign_in(engine, rep, provider)  # `dripd auth mike` again
    servers.loopback.run_client(_log_in_both(rep, source))
    engine.dispose()
