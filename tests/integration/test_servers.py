"""The mail-server harness, proved with the clients dripd uses (aiosmtplib, aioimaplib)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, TypeVar

import aioimaplib
import aiosmtplib
import pytest
import servers.imap
import servers.loopback
import servers.smtp
import servers.smtp_sink

T = TypeVar("T")
SmtpServerFactory = Callable[..., servers.smtp.SmtpServer]
SmtpSinkFactory = Callable[..., servers.smtp_sink.SmtpSinkProcess]
REP = "rep@example.test"
CONTACT = "ann.lee@example.org"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return servers.loopback.run_client(coro)


def make_message(to: str = CONTACT, subject: str = "Thank you") -> EmailMessage:
    message = EmailMessage()
    message["From"] = REP
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="dripd.example.test")
    message.set_content("Thanks for your time today.\n")
    return message


async def connect(server: servers.smtp.SmtpServer, **options: Any) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=5, **options)
    await client.connect()
    return client


# ---------------------------------------------------------------- SMTP


def test_plain_send_is_recorded(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    message = make_message()

    run(aiosmtplib.send(message, hostname=server.host, port=server.port, timeout=5))

    [got] = server.wait_for(1)
    assert (got.mail_from, got.rcpt_tos) == (REP, (CONTACT,))
    assert got.message["Subject"] == "Thank you"
    assert b"Thanks for your time today." in got.raw
    assert server.by_message_id() == {message["Message-ID"]: got}
    assert (got.tls, got.login) == (False, None)
    assert server.connections == 1
    server.clear()
    assert server.messages() == []


def test_starttls_and_auth_verify_against_the_ca(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(tls="starttls", auth={REP: "s3cret"})
    context = ssl.create_default_context(cafile=str(server.ca_file))

    async def send() -> None:
        client = await connect(server, start_tls=True, tls_context=context)
        # aiosmtplib does not EHLO again after STARTTLS: without ehlo(), AUTH gets 503.
        await client.ehlo()
        await client.auth_plain(REP, "s3cret")
        await client.send_message(make_message())
        await client.quit()

    run(send())
    [got] = server.wait_for(1)
    assert (got.tls, got.login) == (True, REP)


def test_starttls_refuses_a_server_the_default_store_does_not_trust(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(tls="starttls")

    # Not wrapped in an SMTPException: the ssl error itself.
    with pytest.raises(ssl.SSLCertVerificationError):
        run(connect(server, start_tls=True))


def test_auth_answers_535_for_a_wrong_password_and_530_without_login(
    smtp_server: SmtpServerFactory,
) -> None:
    server = smtp_server(tls="starttls", auth={REP: "s3cret"})
    context = server.client_context()

    async def wrong_password() -> None:
        await send_with_password("wrong")

    async def send_with_password(password: str) -> None:
        await aiosmtplib.send(
            make_message(),
            hostname=server.host,
            port=server.port,
            start_tls=True,
            tls_context=context,
            username=REP,
            password=password,
            timeout=5,
        )

    async def no_login() -> None:
        await aiosmtplib.send(
            make_message(),
            hostname=server.host,
            port=server.port,
            start_tls=True,
            tls_context=context,
            timeout=5,
        )

    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as wrong:
        run(wrong_password())
    assert wrong.value.code == 535
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as missing:
        run(no_login())
    assert missing.value.code == 530
    assert server.messages() == []


def test_implicit_tls_with_auth(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server(tls="implicit", auth={REP: "s3cret"})

    run(
        aiosmtplib.send(
            make_message(),
            hostname=server.host,
            port=server.port,
            use_tls=True,
            tls_context=server.client_context(),
            username=REP,
            password="s3cret",
            timeout=5,
        )
    )

    [got] = server.wait_for(1)
    assert (got.tls, got.login) == (True, REP)


@pytest.mark.parametrize("reply", [servers.smtp.TEMPFAIL, servers.smtp.NO_SUCH_USER])
def test_rcpt_fault_for_one_recipient(smtp_server: SmtpServerFactory, reply: str) -> None:
    server = smtp_server()
    bad = "gone@example.org"
    server.faults.reply("RCPT", reply, recipient=bad)

    async def send() -> None:
        client = await connect(server)
        await client.mail(REP)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt(bad)
        assert (refused.value.code, refused.value.recipient) == (int(reply[:3]), bad)
        assert reply[4:] in refused.value.message
        await client.rcpt(CONTACT)
        await client.data(make_message().as_bytes())
        await client.quit()

    run(send())
    [got] = server.wait_for(1)
    assert got.rcpt_tos == (CONTACT,)
    assert server.faults.pending() == []


@pytest.mark.parametrize(
    "reply", [servers.smtp.TEMPFAIL, servers.smtp.QUOTA_EXCEEDED, servers.smtp.POLICY_REJECT]
)
def test_data_fault_answers_the_next_n_messages(smtp_server: SmtpServerFactory, reply: str) -> None:
    server = smtp_server()
    server.faults.reply("DATA", reply, times=2)

    async def send() -> None:
        client = await connect(server)
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPDataError) as failed:
                await client.send_message(make_message())
            assert failed.value.code == int(reply[:3])
            assert reply[4:9] in failed.value.message  # the enhanced status code
        await client.send_message(make_message())
        await client.quit()

    run(send())
    assert len(server.wait_for(1)) == 1


def test_421_answers_and_closes_the_connection(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    server.faults.reply("RCPT", servers.smtp.BUSY)

    async def send() -> aiosmtplib.SMTP:
        client = await connect(server)
        await client.mail(REP)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt(CONTACT)
        assert refused.value.code == 421
        return client

    client = run(send())
    assert not client.is_connected
    # The server hung up too: the next connection is a new one and works.
    run(aiosmtplib.send(make_message(), hostname=server.host, port=server.port, timeout=5))
    assert len(server.wait_for(1)) == 1
    assert server.connections == 2


@pytest.mark.parametrize("delivered", [False, True])
def test_drop_mid_data_disconnects(smtp_server: SmtpServerFactory, delivered: bool) -> None:
    server = smtp_server()
    server.faults.drop("DATA", deliver=delivered)

    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        run(aiosmtplib.send(make_message(), hostname=server.host, port=server.port, timeout=5))

    assert len(server.messages()) == (1 if delivered else 0)


def test_stall_before_data_reply_times_the_client_out(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    server.faults.stall("DATA", 1.0)

    with pytest.raises(aiosmtplib.SMTPTimeoutError):
        run(aiosmtplib.send(make_message(), hostname=server.host, port=server.port, timeout=0.3))
    assert server.messages() == []


def test_short_stall_then_accepts(smtp_server: SmtpServerFactory) -> None:
    server = smtp_server()
    server.faults.stall("RCPT", 0.2)
    start = time.monotonic()

    run(aiosmtplib.send(make_message(), hostname=server.host, port=server.port, timeout=5))

    assert time.monotonic() - start >= 0.2
    assert len(server.wait_for(1)) == 1


def test_sink_process_logs_message_ids(smtp_sink_process: SmtpSinkFactory) -> None:
    sink = smtp_sink_process()
    messages = [make_message(to=f"c{i}@example.org") for i in range(3)]

    async def send() -> None:
        async with aiosmtplib.SMTP(hostname=sink.host, port=sink.port, timeout=5) as client:
            for message in messages:
                await client.send_message(message)

    run(send())
    records = sink.wait_for(3)
    assert [r.message_id for r in records] == [m["Message-ID"] for m in messages]
    assert [r.rcpt_tos for r in records] == [(m["To"],) for m in messages]
    assert sink.log_path.read_text().count("\n") == 3


def test_sink_process_with_starttls_and_auth(smtp_sink_process: SmtpSinkFactory) -> None:
    sink = smtp_sink_process(tls="starttls", auth={REP: "s3cret"})
    message = make_message()

    run(
        aiosmtplib.send(
            message,
            hostname=sink.host,
            port=sink.port,
            start_tls=True,
            tls_context=ssl.create_default_context(cafile=str(sink.ca_file)),
            username=REP,
            password="s3cret",
            timeout=5,
        )
    )

    assert sink.wait_for(1)[0].message_id == message["Message-ID"]


def test_find_message_id_reads_a_folded_header() -> None:
    raw = b"Subject: x\r\nMessage-ID:\r\n <long@id.example>\r\n\r\nMessage-ID: <body@no>\r\n"
    assert servers.smtp_sink.find_message_id(raw) == "<long@id.example>"
    assert servers.smtp_sink.find_message_id(b"Subject: x\r\n\r\nMessage-ID: <body@no>\r\n") == "-"


# ---------------------------------------------------------------- Dovecot


@contextlib.asynccontextmanager
async def imap_session(account: servers.imap.ImapAccount) -> AsyncIterator[aioimaplib.IMAP4_SSL]:
    """A logged-in aioimaplib client over implicit TLS, verified against the test CA."""
    client = aioimaplib.IMAP4_SSL(
        account.host, account.tls_port, ssl_context=account.ssl_context(), timeout=5
    )
    await client.wait_hello_from_server()
    response = await client.login(account.address, account.password)
    assert response.result == "OK", response
    try:
        yield client
    finally:
        await client.logout()


def uidvalidity(select: aioimaplib.Response) -> int:
    found = re.search(rb"\[UIDVALIDITY (\d+)\]", b"\n".join(select.lines))
    assert found is not None, select
    return int(found.group(1))


def raw_message(subject: str = "Re: Thank you") -> tuple[str, bytes]:
    message_id = make_msgid(domain="contact.example.org")
    raw = f"From: {CONTACT}\r\nTo: {REP}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
    return message_id, (raw + "\r\nSounds good.\r\n").encode()


def test_imap_login_over_tls_with_the_ca(imap_user: servers.imap.ImapAccount) -> None:
    async def session() -> None:
        async with imap_session(imap_user) as client:
            assert (await client.select("INBOX")).result == "OK"
        bad = aioimaplib.IMAP4_SSL(
            imap_user.host, imap_user.tls_port, ssl_context=imap_user.ssl_context(), timeout=5
        )
        await bad.wait_hello_from_server()
        assert (await bad.login(imap_user.address, "wrong")).result == "NO"
        await bad.logout()
        # No login penalty after the failure (anvil-auth-penalty is off).
        start = time.monotonic()
        async with imap_session(imap_user):
            assert time.monotonic() - start < 1.0

    run(session())


def test_append_then_search_by_message_id(
    dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    message_id, raw = raw_message()
    uid = dovecot.append(imap_user.address, "Sent", raw, flags=["\\Seen"])

    async def search() -> list[bytes]:
        async with imap_session(imap_user) as client:
            await client.select("Sent")
            response = await client.uid_search("HEADER", "Message-ID", f'"{message_id}"')
            assert response.result == "OK"
            uids: list[bytes] = response.lines[0].split()
            return uids

    assert run(search()) == [str(uid).encode()]
    [fetched] = dovecot.fetch_all(imap_user.address, "Sent")
    assert (fetched.uid, fetched.raw) == (uid, raw)
    assert "\\Seen" in fetched.flags


def test_lmtp_delivery_lands_in_inbox(
    dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    message_id, raw = raw_message()
    dovecot.deliver(imap_user.address, raw)

    [fetched] = dovecot.fetch_all(imap_user.address)
    assert f"Message-ID: {message_id}".encode() in fetched.raw
    assert f"Delivered-To: {imap_user.address}".encode() in fetched.raw
    assert "\\Seen" not in fetched.flags


def test_idle_receives_exists_after_another_connections_append(
    dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    async def idle() -> float:
        async with imap_session(imap_user) as client:
            await client.select("INBOX")
            idling = await client.idle_start(timeout=10)
            start = time.monotonic()
            await asyncio.to_thread(dovecot.append, imap_user.address, "INBOX", raw_message()[1])
            push = await client.wait_server_push(timeout=5)
            while not any(line.endswith(b"EXISTS") for line in push):
                push = await client.wait_server_push(timeout=5)
            elapsed = time.monotonic() - start
            client.idle_done()
            await asyncio.wait_for(idling, 5)
            return elapsed

    assert run(idle()) < 3.0


def test_kill_and_start_again(private_dovecot: servers.imap.Dovecot) -> None:
    account = private_dovecot.new_user()
    private_dovecot.append(account.address, "INBOX", raw_message()[1])

    private_dovecot.kill()
    with pytest.raises(OSError):
        socket.create_connection((account.host, account.tls_port), timeout=1).close()
    private_dovecot.start()

    async def count() -> int:
        async with imap_session(account) as client:
            select = await client.select("INBOX")
            exists = aioimaplib.extract_exists(select)
            assert exists is not None
            return int(exists)

    assert run(count()) == 1


def test_uidvalidity_change_is_seen_by_select(
    dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    async def select_uidvalidity(folder: str) -> int:
        async with imap_session(imap_user) as client:
            return uidvalidity(await client.select(folder))

    dovecot.append(imap_user.address, "INBOX", raw_message()[1])
    before = run(select_uidvalidity("INBOX"))
    assert dovecot.change_uidvalidity(imap_user.address) == before + 1
    assert run(select_uidvalidity("INBOX")) == before + 1
    assert len(dovecot.fetch_all(imap_user.address)) == 1  # the messages stay

    dovecot.create_mailbox(imap_user.address, "Replies")
    first = run(select_uidvalidity("Replies"))
    assert dovecot.recreate_mailbox(imap_user.address, "Replies") != first
