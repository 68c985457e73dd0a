"""The inbox: reply-to-stop latency with IDLE, and catching up on 10,000 messages.

Latency (issue 4 goal: p95 under 1 s): a contact's reply is APPENDed to the
rep's INBOX on a real Dovecot while dripd's watcher IDLEs on it; measured
from just before the APPEND to the enrollment being stopped in the
database. Beside it, in the same trials, a bare aioimaplib client IDLEs on
the same folder and records when Dovecot announces the message (EXISTS):
the floor any IMAP client has here (Dovecot notifies about 0.5 s after a
change). The ratio is dripd's median over the bare client's.

Catch-up: 10,000 messages dropped into the Maildir while dripd is down
(all from strangers: the cost of reading, classifying and recording), then one `read_once`:
fetch, classify, act, checkpoint. Against a bare aioimaplib client
fetching the same messages with the same batch size and doing nothing.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import aioimaplib
import servers.imap
import servers.loopback
import servers.smtp_sink
import userfiles

from bench import common
from dripd.daemon import watcher
from dripd.pipeline import app as app_mod
from dripd.store import enrollments

CONTACTS = 150  # the bench CSV spreads owners over mike and sam; mike's get sent
REPLIES = 50
CATCH_UP = 10_000
BATCH = watcher.FETCH_BATCH

CAMPAIGN = userfiles.campaign(
    "Bench",
    userfiles.email_step(
        "hello",
        subject="Hello {{ contact.first_name }}",
        body="Hi {{ contact.first_name }}, shall we talk?",
    ),
    userfiles.email_step("later", wait="30 days", subject="Still there?", body="Hi again."),
    send_window="daily 00:00-24:00",
)


def prepare(folder: Path, sink_port: int, account: servers.imap.ImapAccount) -> Path:
    campaigns = folder / "campaigns"
    userfiles.write_campaign(campaigns, "bench", CAMPAIGN)
    mike = userfiles.rep(
        "mike",
        smtp=userfiles.smtp_mailbox(sink_port, max_per_hour=100000, max_per_day=100000),
        imap=userfiles.imap_mailbox(
            account.address, account.port, password_env="BENCH_IMAP_PASSWORD", sent_folder=""
        ),
    )
    config = folder / "config.toml"
    config.write_text(
        userfiles.config(f"sqlite:///{folder / 'dripd.db'}", campaigns, mike), encoding="utf-8"
    )
    os.environ["BENCH_IMAP_PASSWORD"] = account.password
    csv_path = folder / "contacts.csv"
    common.write_contacts_csv(csv_path, CONTACTS)
    common.run_dripd("contacts", "import", str(csv_path), "--enroll", "bench", config=config)
    common.run_dripd("run", "--once", config=config)
    return config


def reply(address: str, msgid: str, n: int) -> bytes:
    return (
        f"From: <{address}>\r\nTo: mike@example.com\r\nSubject: Re: Hello\r\n"
        f"Message-ID: <bench-reply-{n}@example.org>\r\nIn-Reply-To: {msgid}\r\n"
        "Date: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\nYes, call me tomorrow.\r\n\r\n"
        "> Hi, shall we talk?\r\n"
    ).encode()


def stranger(n: int) -> bytes:
    return (
        f"From: Someone {n} <someone{n}@elsewhere.example>\r\nTo: mike@example.com\r\n"
        f"Subject: Newsletter {n}\r\nMessage-ID: <bench-other-{n}@elsewhere.example>\r\n"
        "Date: Mon, 23 Nov 2026 16:00:00 +0000\r\n\r\n" + "News of the week.\r\n" * 40
    ).encode()


def contacts_and_ids(app: app_mod.App) -> list[tuple[str, int, str]]:
    """(address, contact id, Message-ID sent) per contact."""
    from dripd.store import outbox

    with app.engine.connect() as conn:
        rows = outbox.in_state(conn, "sent")
    return [(r.recipient, r.contact_id, r.message_id) for r in rows]


def stopped(app: app_mod.App, contact_id: int) -> bool:
    with app.reader.connect() as conn:
        return not enrollments.active_enrollments(conn, contact_id)


async def _bare_idle(
    account: servers.imap.ImapAccount,
) -> tuple[aioimaplib.IMAP4, asyncio.Queue[float]]:
    client = aioimaplib.IMAP4(host=account.host, port=account.port, timeout=30)
    await client.wait_hello_from_server()
    await client.login(account.address, account.password)
    await client.select("INBOX")
    pushes: asyncio.Queue[float] = asyncio.Queue()

    async def listen() -> None:
        while True:
            await client.idle_start(timeout=600)
            lines = await client.wait_server_push(timeout=600)
            if any(isinstance(x, bytes) and x.endswith(b"EXISTS") for x in lines):
                pushes.put_nowait(time.perf_counter())
            client.idle_done()
            await asyncio.sleep(0)

    asyncio.get_running_loop().create_task(listen())
    return client, pushes


async def latency(
    app: app_mod.App, dovecot: servers.imap.Dovecot, account: servers.imap.ImapAccount
):
    stop = asyncio.Event()
    box = watcher.Watcher(app, app.config.rep("mike"), stop)
    task = asyncio.create_task(box.run())
    await asyncio.wait_for(box.connected.wait(), 30)
    _, pushes = await _bare_idle(account)
    dripd_times, bare_times = [], []
    for n, (address, contact_id, msgid) in enumerate(contacts_and_ids(app)[:REPLIES]):
        await asyncio.sleep(0.2)  # let both clients settle back into IDLE
        start = time.perf_counter()
        await asyncio.to_thread(dovecot.append, account.address, "INBOX", reply(address, msgid, n))
        while not stopped(app, contact_id):
            await asyncio.sleep(0.005)
        dripd_times.append(time.perf_counter() - start)
        pushed = await asyncio.wait_for(pushes.get(), 10)
        bare_times.append(pushed - start)
    stop.set()
    await asyncio.wait_for(task, 10)
    return dripd_times, bare_times


def fill_maildir(dovecot: servers.imap.Dovecot, account: servers.imap.ImapAccount) -> None:
    """Drop CATCH_UP messages into the Maildir as a delivery agent would (new/)."""
    dovecot.fetch_all(account.address)  # the first login creates the Maildir
    maildir = dovecot.root / "mail" / account.address / "Maildir"
    owner = (maildir / "new").stat()
    (maildir / "tmp").mkdir(exist_ok=True)
    for n in range(CATCH_UP):
        # written in tmp/ and moved into new/ (the Maildir protocol): Dovecot may move a file
        # from new/ to cur/ as soon as it appears there, before its owner is set
        name = f"{1700000000 + n}.bench{n}.host"
        path = maildir / "tmp" / name
        path.write_bytes(stranger(n))
        os.chown(path, owner.st_uid, owner.st_gid)
        path.rename(maildir / "new" / name)


async def bare_fetch(account: servers.imap.ImapAccount) -> float:
    client = aioimaplib.IMAP4(host=account.host, port=account.port, timeout=120)
    await client.wait_hello_from_server()
    await client.login(account.address, account.password)
    await client.examine("INBOX")
    client.protocol.state = aioimaplib.SELECTED
    start = time.perf_counter()
    result = await client.uid_search("UID", "1:*", charset=None)
    uids = [int(x) for x in result.lines[0].split()]
    for i in range(0, len(uids), BATCH):
        batch = uids[i : i + BATCH]
        await client.uid("fetch", f"{batch[0]}:{batch[-1]}", "(UID BODY.PEEK[]<0.262144>)")
    took = time.perf_counter() - start
    await client.logout()
    return took


async def dripd_catch_up(app: app_mod.App) -> tuple[float, int]:
    box = watcher.Watcher(app, app.config.rep("mike"), asyncio.Event())
    start = time.perf_counter()
    handled = await box.read_once()
    return time.perf_counter() - start, handled


def main() -> None:
    folder = common.workdir("inbox")
    with (
        servers.smtp_sink.SmtpSinkProcess(folder / "sink.log") as sink,
        servers.imap.Dovecot() as dovecot,
    ):
        dovecot.start()
        account = dovecot.new_user("mike")
        config = prepare(folder, sink.port, account)
        app = app_mod.open_app(str(config))
        dripd_times, bare_times = servers.loopback.run_client(latency(app, dovecot, account))
        fill_maildir(dovecot, account)
        bare = servers.loopback.run_client(bare_fetch(account))
        took, handled = servers.loopback.run_client(dripd_catch_up(app))
        app.engine.dispose()
    d_med, b_med = statistics.median(dripd_times), statistics.median(bare_times)
    p95 = statistics.quantiles(dripd_times, n=20)[18]
    print(
        f"reply-to-stop latency over {len(dripd_times)} replies (IDLE, Dovecot, APPEND → stopped)"
    )
    print(
        f"  dripd:   median {d_med * 1000:5.0f} ms   p95 {p95 * 1000:5.0f} ms  (goal p95 < 1000 ms)"
    )
    print(
        f"  bare aioimaplib IDLE, APPEND → EXISTS push: median {b_med * 1000:5.0f} ms   "
        f"p95 {statistics.quantiles(bare_times, n=20)[18] * 1000:5.0f} ms"
    )
    print(f"  ratio dripd / bare (medians): {d_med / b_med:5.2f}")
    print(f"catching up on {CATCH_UP:,} messages that arrived while dripd was down")
    print(
        f"  dripd read_once (fetch+classify+act+checkpoint): {took:6.2f} s  "
        f"{handled / took:7.0f} msg/s  ({handled:,} handled)"
    )
    print(
        f"  bare aioimaplib fetch of the same, batches of {BATCH}: {bare:6.2f} s  "
        f"{CATCH_UP / bare:7.0f} msg/s"
    )
    print(f"  ratio dripd / bare (time): {took / bare:5.2f}")
