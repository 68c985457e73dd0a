"""Sending throughput: `dripd run --once` sending 10,000 due emails vs raw aiosmtplib.

Goal (issue 3): dripd at least 70% of the raw rate. Both send to the same
aiosmtpd sink running in its own process, over the same number of
connections (2, dripd's default per mailbox). The raw side sends pre-built
2 KB messages; dripd renders each email from a Markdown template sized so
its message (text and HTML parts, headers) is also about 2 KB, writes it to
the outbox, sends it and records it (claim, sent, touch, history), so the
ratio is the price of that work. Both average sizes are printed.

Beside the rates, the CPU each side used per email: the sink's share shows
how near to its limit the raw run drives it (the sink is what bounds raw
here), and dripd's shows the work it does per email on its one core. Then
dripd's timeline, from the sink's arrival times: how long until its first
email arrived (start-up), and its rate over each fifth of the emails (the
first fifths go while the engine still renders and queues, the last ones
are sending alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import servers.smtp_sink  # the test harness's SMTP sink, in its own process
import userfiles

from bench import common

EMAILS = 10_000
CONNECTIONS = 2
FILLER = "A line of the message body, long enough to make the whole thing about 2 KB.\n"

CAMPAIGN = userfiles.campaign(
    "Benchmark",
    userfiles.email_step(
        "hello",
        subject="Hello {{ contact.first_name }}, about {{ contact.company }}",
        template="bench/hello.md",
    ),
    send_window="daily 00:00-24:00",
)

TEMPLATE = (
    "Hi {{ contact.first_name }},\n\nThank you for your time today at **{{ contact.company }}**."
    "\n\n" + FILLER * 7 + "\nTalk soon.\n"
)


def raw_message(i: int) -> bytes:
    head = (
        f"From: Mike <mike@example.com>\r\nTo: c{i}@example.com\r\nSubject: Hello {i}\r\n"
        f"Message-ID: <raw.{i}@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n\r\n'
    )
    return (head + FILLER.replace("\n", "\r\n") * 26).encode()


async def _raw(port: int, messages: list[bytes]) -> float:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for message in messages:
        queue.put_nowait(message)

    async def worker() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        while not queue.empty():
            await client.sendmail("mike@example.com", ["x@example.com"], queue.get_nowait())
        await client.quit()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return len(messages) / (time.perf_counter() - start)


SLICES = 5  # the timeline's parts


@dataclass(frozen=True, slots=True)
class Run:
    rate: float  # emails a second
    client_cpu: float  # CPU seconds of the sending side
    sink_cpu: float  # CPU seconds of the sink meanwhile
    seconds: float
    started: float = 0.0  # time.time() when the sending side started


def raw_run(sink: servers.smtp_sink.SmtpSinkProcess) -> Run:
    assert sink.pid is not None
    messages = [raw_message(i) for i in range(EMAILS)]
    sink_before, client_before = common.process_cpu(sink.pid), _own_cpu()
    start = time.perf_counter()
    rate = asyncio.run(_raw(sink.port, messages))
    seconds = time.perf_counter() - start
    return Run(
        rate=rate,
        client_cpu=_own_cpu() - client_before,
        sink_cpu=common.process_cpu(sink.pid) - sink_before,
        seconds=seconds,
    )


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare(folder: Path, port: int) -> Path:
    campaigns = folder / "campaigns"
    userfiles.write_campaign(campaigns, "blast", CAMPAIGN, {"bench/hello.md": TEMPLATE})
    mailbox = userfiles.smtp_mailbox(port, connections=CONNECTIONS)
    mike = userfiles.rep("mike", name="Mike Gulitz", signature="Mike", smtp=mailbox)
    config = folder / "config.toml"
    config.write_text(
        userfiles.config(f"sqlite:///{folder / 'dripd.db'}", campaigns, mike), encoding="utf-8"
    )
    csv_path = folder / "contacts.csv"
    common.write_contacts_csv(csv_path, EMAILS)
    common.run_dripd("contacts", "import", str(csv_path), "--enroll", "blast", config=config)
    return config


def dripd_size(folder: Path) -> float:
    import sqlite3

    with contextlib.closing(sqlite3.connect(folder / "dripd.db")) as db:
        return float(db.execute("select avg(length(data)) from outbox_bodies").fetchone()[0])


def dripd_run(config: Path, sink: servers.smtp_sink.SmtpSinkProcess) -> tuple[Run, float]:
    """`dripd run --once` sending the 10,000 emails, and its peak memory in MB."""
    assert sink.pid is not None
    env = {**os.environ, "DRIPD_LOG_LEVEL": "WARNING"}
    sink_before = common.process_cpu(sink.pid)
    started = time.time()
    start = time.perf_counter()
    process = subprocess.Popen([common.DRIPD, "--config", str(config), "run", "--once"], env=env)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("dripd run --once failed")
    run = Run(
        rate=EMAILS / elapsed,
        client_cpu=usage.ru_utime + usage.ru_stime,
        sink_cpu=common.process_cpu(sink.pid) - sink_before,
        seconds=elapsed,
        started=started,
    )
    return run, usage.ru_maxrss / 1024


def timeline(arrivals: list[float], started: float) -> str:
    """When the first email arrived after `started`, and the rate over each slice."""
    times = sorted(arrivals)
    size = len(times) // SLICES
    rates = []
    for i in range(SLICES):
        first = times[i * size - 1] if i else times[0]
        last = times[(i + 1) * size - 1]
        rates.append(f"{(size - (0 if i else 1)) / max(last - first, 1e-9):.0f}")
    return (
        f"first email after {times[0] - started:.2f} s; "
        f"per {size:,} emails: {', '.join(rates)} msg/s"
    )


def main() -> None:
    folder = common.workdir("send")
    with servers.smtp_sink.SmtpSinkProcess(folder / "sink.log") as sink:
        config = prepare(folder, sink.port)
        before = raw_run(sink)
        sink.log_path.write_text("")
        dripd, peak_mb = dripd_run(config, sink)
        records = sink.records()
        ids = [r.message_id for r in records]
        after = raw_run(sink)
    raw = statistics.median([before.rate, after.rate])
    rate = dripd.rate
    twice = sum(1 for count in Counter(ids).values() if count > 1)
    print(f"sending {EMAILS:,} emails over {CONNECTIONS} connections to an aiosmtpd sink")
    raw_size = len(raw_message(0))
    print(
        f"  raw aiosmtplib, pre-built {raw_size:,}-byte messages: {raw:7.0f} msg/s  "
        f"(runs before/after: {before.rate:.0f}, {after.rate:.0f})"
    )
    print(
        f"  dripd run --once (render+outbox+send+record), {dripd_size(folder):,.0f}-byte "
        f"messages: {rate:7.0f} msg/s  peak memory {peak_mb:.0f} MB"
    )
    print(f"  ratio dripd / raw: {rate / raw:5.2f}   (goal >= 0.70)")
    for name, run in (("raw (first run)", before), ("dripd", dripd)):
        print(
            f"  CPU per email, {name}: sender {1000 * run.client_cpu / EMAILS:.2f} ms, "
            f"sink {1000 * run.sink_cpu / EMAILS:.2f} ms (sink busy "
            f"{100 * run.sink_cpu / run.seconds:.0f}% of its {run.seconds:.1f} s)"
        )
    print(f"  dripd's timeline: {timeline([r.arrived for r in records], dripd.started)}")
    print(f"  arrived: {len(ids):,} messages, {len(set(ids)):,} distinct, {twice} twice")
