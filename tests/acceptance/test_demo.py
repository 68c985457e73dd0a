"""`dripd demo` as a newcomer runs it: a simulated week, told as it happens, under a minute."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

DRIPD = str(Path(sys.executable).with_name("dripd"))


def test_the_demo_shows_the_whole_loop_in_under_a_minute(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    started = time.monotonic()
    run = subprocess.run(
        [DRIPD, "demo", "--out", str(folder)], capture_output=True, text=True, timeout=120
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert seconds < 60, seconds
    story = run.stdout

    # Emails go out; a reply stops a sequence; an auto-reply doesn't; a bounce; an unsubscribe.
    assert "sent    → ann.lee@acme.example: Thank you for your time, Ann" in story
    assert "ann.lee@acme.example: replied: sequence stopped" in story
    assert "bob.stone@stone.example: out of office" in story and "nothing stops" in story
    assert "sent    → bob.stone@stone.example: Re: Thank you for your time, Bob" in story
    assert "carl.diaz@gone.example: bounced: every sequence stopped" in story
    assert "dora.eve@evco.example: unsubscribed: every sequence stopped" in story
    # The digest arrives and the rep's `done` is carried out and confirmed.
    assert "digest  → mike: Your day, Wed 2 Dec: 2 cards" in story
    assert 'mike answers the digest: "done 1 2"' in story
    assert "dripd carried out 1 of 1 line" in story and "marked done" in story
    assert "The pipeline after a week:" in story

    status = subprocess.run(
        [DRIPD, "--config", str(folder / "config.toml"), "status", "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    summary = json.loads(status.stdout)
    assert summary["stages"]["lead"] == 1
    assert summary["statuses"] == {"active": 3, "bounced": 1, "unsubscribed": 1}
    thank_you = next(s for s in summary["steps"] if s["step"] == "thank-you")
    assert (thank_you["sent"], thank_you["replied"], thank_you["bounced"]) == (5, 1, 1)

    # The emails it produced are files a mail client opens.
    sent = sorted((folder / "sent").glob("*.eml"))
    assert len(sent) >= 10
    for path in sent:
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert message["Message-ID"] and message.get_body(("plain",)) is not None
    digests = [p for p in sent if "your-day" in p.name]
    assert digests and all("to-mike-example-com" in p.name for p in digests)
