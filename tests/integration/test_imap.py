"""IMAP sessions against the test Dovecot: STARTTLS, and TLS set the wrong way round.

aioimaplib has no STARTTLS; dripd does it itself (imap._start_tls). A
server that offers only port 143 with STARTTLS (a common self-hosted
Dovecot) must work as port 993 does, and a port given with the wrong
`security` must say which setting to change, not time out in silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import servers.imap
import servers.loopback
import servers.smtp

from dripd.files import config
from dripd.mailbox import imap, smtp


def _settings(account: servers.imap.ImapAccount, port: int, security: str) -> config.ImapConfig:
    return config.ImapConfig(
        host=account.host,
        port=port,
        security=security,  # type: ignore[arg-type]
        username=account.address,
        ca_file=str(account.ca_file),
    )


def test_starttls_on_the_plain_port_encrypts_before_the_login(
    imap_user: servers.imap.ImapAccount, dovecot: servers.imap.Dovecot
) -> None:
    dovecot.deliver(imap_user.address, b"Subject: hello\r\nMessage-ID: <m1@x>\r\n\r\nHi\r\n")

    async def scenario() -> tuple[bool, set[str], bool, int]:
        settings = _settings(imap_user, imap_user.port, "starttls")
        async with imap.Session(settings, imap_user.password) as session:
            protocol = session.client.protocol
            encrypted = protocol.transport.get_extra_info("ssl_object") is not None
            folder = await session.examine("INBOX")
            found = await session.find_message_id("INBOX", "<m1@x>")
            return encrypted, set(protocol.capabilities), found, folder.uidnext

    encrypted, capabilities, found, uidnext = servers.loopback.run_client(scenario())
    assert encrypted
    # Capabilities are asked again once encrypted (those said in clear don't
    # count): Dovecot no longer offers STARTTLS then.
    assert "STARTTLS" not in capabilities and "IMAP4rev1" in capabilities
    assert found and uidnext == 2


def test_tls_set_the_wrong_way_round_names_the_setting(
    imap_user: servers.imap.ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(imap, "TIMEOUT", 1.0)  # what a greeting that never comes takes

    def failure(port: int, security: str) -> str:
        async def scenario() -> str:
            with pytest.raises(imap.ImapError) as caught:
                async with imap.Session(_settings(imap_user, port, security), imap_user.password):
                    pass
            return str(caught.value)

        return servers.loopback.run_client(scenario())

    # Implicit TLS to the plain port: the server answers the handshake in clear.
    clear = failure(imap_user.port, "tls")
    assert clear.endswith('this port does not begin with TLS: security = "starttls"?'), clear
    # STARTTLS to the IMAPS port: the server waits for a handshake, no greeting comes.
    assert failure(imap_user.tls_port, "starttls").endswith(
        'a port that begins with TLS (465, 993) needs security = "tls"'
    )


def test_smtp_tls_to_a_starttls_port_names_the_setting(
    smtp_server: Callable[..., servers.smtp.SmtpServer],
) -> None:
    server = smtp_server(tls="starttls")  # a port that begins in clear, as 587 does
    settings = config.SmtpConfig(
        host=server.host, port=server.port, security="tls", ca_file=str(server.ca_file)
    )

    async def scenario() -> str:
        with pytest.raises(smtp.SendError) as caught:
            await smtp.Connection(settings, None).send("a@example.com", "b@example.org", b"x")
        return str(caught.value)

    message = asyncio.run(scenario())
    assert message.endswith('this port does not begin with TLS: security = "starttls"?'), message


def test_starttls_to_a_server_that_offers_none_says_what_to_use() -> None:
    # pymap (the demo's IMAP server) without a certificate offers no STARTTLS:
    # refused before the login, so no password crosses in clear.
    from dripd.cli import demo

    async def scenario() -> str:
        port = servers.loopback.free_port()
        async with demo.imap_server(port):
            settings = config.ImapConfig(
                host="127.0.0.1", port=port, security="starttls", username=demo.REP
            )
            with pytest.raises(imap.ImapError) as caught:
                async with imap.Session(settings, demo.IMAP_PASSWORD):
                    pass
            return str(caught.value)

    assert asyncio.run(scenario()) == (
        '127.0.0.1 offers no STARTTLS on this port (use port 993 with security = "tls")'
    )
