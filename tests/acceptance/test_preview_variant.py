"""`dripd preview CAMPAIGN STEP --variant ID` shows one A/B version; a wrong id is one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import userfiles

AB = userfiles.campaign(
    "AB",
    userfiles.email_step(
        "hello",
        subject="Hello {{ contact.first_name }}",
        body="The long hello.",
        variants=[
            {"id": "short", "subject": "Hi {{ contact.first_name }}!", "body": "Short."},
            {"id": "long"},
        ],
    ),
)


def test_preview_shows_the_variant_asked_for(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(copy_campaigns=True)
    (tmp_path / "campaigns" / "ab.toml").write_text(AB, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPD_")}

    def dripd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [userfiles.DRIPD, "--config", str(config), *args],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    assert dripd("contacts", "set", "ann@example.org", "first_name=Ann").returncode == 0
    preview = ["preview", "ab", "hello", "--contact", "ann@example.org"]
    short = dripd(*preview, "--variant", "short")
    assert short.returncode == 0 and "Subject: Hi Ann!" in short.stdout and "Short." in short.stdout
    long = dripd(*preview, "--variant", "long")
    assert "Subject: Hello Ann" in long.stdout and "The long hello." in long.stdout
    wrong = dripd(*preview, "--variant", "medium")
    assert wrong.returncode != 0
    assert wrong.stderr.strip() == (
        "dripd: step 'hello' has no variant 'medium' (variants: short, long)"
    )
