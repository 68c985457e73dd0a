"""Reloading config and campaigns: what a reload changes, what it refuses, when a folder changed.

The daemon's side (swapping the app between passes, replacing senders) is
shown with real processes in tests/acceptance/test_service.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from dripd.daemon import heartbeat, reload
from dripd.pipeline import app as app_mod
from dripd.pipeline.app import App

ConfigFactory = Callable[..., Path]  # the `make_config` fixture of tests/conftest.py

SMTP = """
[reps.smtp]
host = "127.0.0.1"
port = 2525
security = "none"
max_per_hour = 100
"""


def _open(path: Path) -> App:
    return app_mod.open_app(str(path), with_db=False)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# -- what a reload changes ----------------------------------------------------------


def test_a_reload_of_unchanged_files_changes_nothing(make_config: ConfigFactory) -> None:
    current = _open(make_config(copy_campaigns=True, extra=SMTP))
    change = reload.load(current)
    assert change is not None
    assert change.campaigns == frozenset()
    assert change.senders == change.inboxes == frozenset()
    assert change.schedule is False
    assert change.summary == {"campaigns": "none", "mailboxes": "none", "schedule": "same"}


def test_an_edited_added_and_removed_campaign_are_changes(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    current = _open(make_config(copy_campaigns=True))
    folder = current.config.campaigns_dir
    _edit(folder / "qualification.toml", "Thank you for your time", "Thanks for your time")
    (folder / "welcome.toml").unlink()
    (folder / "extra.toml").write_text(
        'name = "Extra"\n\n[[steps]]\nid = "one"\nkind = "task"\nwait = "1 day"\nnote = "Call"\n',
        encoding="utf-8",
    )
    change = reload.load(current)
    assert change is not None
    assert change.campaigns == {"qualification", "welcome", "extra"}
    assert change.app.catalog.get("qualification").step("thank-you").subject == (
        "Thanks for your time, {{ contact.first_name }}"
    )
    assert "welcome" not in change.app.catalog.campaigns
    assert change.schedule is False


def test_a_rep_limit_changes_that_mailbox_only(make_config: ConfigFactory) -> None:
    path = make_config(extra=SMTP)
    current = _open(path)
    _edit(path, "max_per_hour = 100", "max_per_hour = 5")
    change = reload.load(current)
    assert change is not None
    assert change.senders == {"sam"}  # the [reps.smtp] above belongs to the last rep
    assert change.inboxes == frozenset()
    assert change.app.config.rep("sam").smtp is not None
    assert change.app.config.rep("sam").smtp.max_per_hour == 5  # type: ignore[union-attr]
    assert change.campaigns == frozenset()


def test_a_new_time_zone_or_window_replans_everything(make_config: ConfigFactory) -> None:
    path = make_config()
    current = _open(path)
    _edit(path, 'send_window = "mon-fri 09:00-17:00"', 'send_window = "mon-fri 08:00-18:00"')
    change = reload.load(current)
    assert change is not None and change.schedule is True


def test_a_changed_database_is_kept_for_the_next_start(
    make_config: ConfigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_config()
    current = _open(path)
    _edit(path, "dripd.db", "other.db")
    with caplog.at_level(logging.WARNING, "dripd.reload"):
        change = reload.load(current)
    assert change is not None
    assert change.app.config.database_url == current.config.database_url
    assert [r.getMessage() for r in caplog.records] == [
        "the database in the config changed: it is used from the next start"
    ]


# -- what a reload refuses ------------------------------------------------------------


def test_a_broken_campaign_is_refused_with_one_error_naming_file_and_step(
    make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    current = _open(make_config(copy_campaigns=True))
    broken = current.config.campaigns_dir / "qualification.toml"
    _edit(broken, 'wait = "1 day"', 'wiat = "1 day"')
    with caplog.at_level(logging.INFO, "dripd.reload"):
        assert reload.load(current) is None
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "reload refused: the running version stays"
    error = record.__dict__["error"]
    assert str(broken) in error
    assert "step 'thank-you-card'" in error
    assert "wiat" in error
    assert "\n" not in error


def test_a_config_that_no_longer_validates_is_refused(
    make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_config(extra=SMTP)
    current = _open(path)
    _edit(path, 'host = "127.0.0.1"', 'host = "smtp.example.com"')  # plain SMTP off loopback
    with caplog.at_level(logging.INFO, "dripd.reload"):
        assert reload.load(current) is None
    assert len(caplog.records) == 1
    error = caplog.records[0].__dict__["error"]
    assert str(path) in error
    assert "smtp" in error and "localhost" in error


# -- noticing a changed campaigns folder ---------------------------------------------------


def test_folder_watch_reports_a_change_once_it_has_settled(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    (folder / "blast").mkdir(parents=True)
    campaign = folder / "blast.toml"
    campaign.write_text("one", encoding="utf-8")
    watch = reload.FolderWatch(folder)
    assert not watch.changed()

    campaign.write_text("two!", encoding="utf-8")
    assert not watch.changed()  # first look: maybe still being written
    assert watch.changed()  # the same on the second look: settled
    assert not watch.changed()  # reported once

    (folder / "blast" / "hello.md").write_text("a template", encoding="utf-8")
    campaign.write_text("three", encoding="utf-8")
    assert not watch.changed()
    campaign.write_text("three, again", encoding="utf-8")  # still moving: wait
    assert not watch.changed()
    assert watch.changed()

    campaign.unlink()
    assert [watch.changed(), watch.changed()] == [False, True]


def test_folder_watch_ignores_hidden_files_and_editor_backups(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    (folder / ".git").mkdir(parents=True)
    watch = reload.FolderWatch(folder)
    (folder / ".blast.toml.swp").write_text("swap", encoding="utf-8")
    (folder / "blast.toml~").write_text("backup", encoding="utf-8")
    (folder / ".git" / "index").write_text("git", encoding="utf-8")
    assert [watch.changed(), watch.changed()] == [False, False]


def test_folder_watch_rebase_takes_the_folder_as_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    watch = reload.FolderWatch(folder)
    (folder / "a.toml").write_text("a", encoding="utf-8")
    assert not watch.changed()
    watch.rebase()  # a SIGHUP reload read the folder: nothing left to report
    assert [watch.changed(), watch.changed()] == [False, False]


def test_snapshot_has_relative_paths_with_mtime_and_size(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.md").write_text("12345", encoding="utf-8")
    os.utime(tmp_path / "sub" / "x.md", ns=(1_000_000_000, 2_000_000_000))
    assert reload.snapshot(tmp_path) == {"sub/x.md": (2_000_000_000, 5)}
    assert reload.snapshot(tmp_path / "missing") == {}


# -- the watchdog's heartbeat and the status line's rate ------------------------------------


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_is_alive_until_the_promised_time() -> None:
    ticks = Ticks()
    beat = heartbeat.Heartbeat(ticks)
    beat.expect_within(30)
    ticks.now += 30
    assert beat.alive() and beat.late_by() == 0
    ticks.now += 0.5
    assert not beat.alive()
    assert beat.late_by() == pytest.approx(0.5)
    beat.expect_within(1)
    assert beat.alive()


def test_sent_rate_counts_the_last_minute() -> None:
    ticks = Ticks()
    rate = heartbeat.SentRate(ticks)
    assert rate.last_window(0) == 0
    ticks.now += 10
    assert rate.last_window(5) == 5
    ticks.now += 55
    assert rate.last_window(12) == 12  # since the newest sample at least a minute old (t=0)
    ticks.now += 10
    assert rate.last_window(13) == 8  # since t=10: 13 - 5
    ticks.now += 120
    assert rate.last_window(13) == 0
