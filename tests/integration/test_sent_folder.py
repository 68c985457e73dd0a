"""The Sent folder found as mail clients find it (RFC 6154), and created when it is missing.

Two Dovecots of their own: one whose users have a `\\Sent` folder that is not
called "Sent", one whose users have none at all (a fresh mailbox: APPEND
answers `[TRYCREATE]`).
"""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest
import servers.imap
import servers.required
from click.testing import CliRunner

from dripd.cli import main as cli


@pytest.fixture(scope="module")
def marked_dovecot() -> Iterator[servers.imap.Dovecot]:
    """Every user has "Sent Items", marked \\Sent (not the name dripd would guess first)."""
    with servers.required.dovecot(sent_folder="Sent Items") as instance:
        yield instance


@pytest.fixture(scope="module")
def bare_dovecot() -> Iterator[servers.imap.Dovecot]:
    """Users have an INBOX and nothing else."""
    with servers.required.dovecot(sent_folder=None) as instance:
        yield instance


def _message_ids(dovecot: servers.imap.Dovecot, user: str, folder: str) -> list[str]:
    found = dovecot.fetch_all(user, folder)
    return sorted(
        str(email.message_from_bytes(m.raw, policy=email.policy.default)["Message-ID"])
        for m in found
    )


def _folders(dovecot: servers.imap.Dovecot, user: str) -> set[str]:
    with dovecot.imap(user) as conn:
        typ, data = conn.list()
    assert typ == "OK"
    return {line.decode().rsplit(' "." ', 1)[1].strip('"') for line in data if line}


def _check_connect(config_path: str) -> str:
    result = CliRunner().invoke(cli.cli, ["--config", config_path, "check", "--connect"])
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("ok rep mike imap")]
    return line


def test_a_fresh_mailbox_gets_a_sent_folder_with_every_email_in_it(
    make_world, bare_dovecot: servers.imap.Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    user = bare_dovecot.new_user()
    world = make_world(
        window="daily 00:00-24:00",
        imap=user,
        dovecot=bare_dovecot,
        imap_options={"sent_folder": None},
    )
    assert _folders(bare_dovecot, user.address) == {"INBOX"}
    line = _check_connect(str(world.app.config.path))
    assert line.endswith("Sent folder 'Sent' (not there yet: dripd creates it at the first copy)")
    assert _folders(bare_dovecot, user.address) == {"INBOX"}  # check changes nothing

    world.add("ann@example.org", first_name="Ann", company="X")
    world.add("bob@example.org", first_name="Bob", company="Y")
    with caplog.at_level(logging.INFO, logger="dripd.sent"):
        assert world.run().sent == 2
    world.clock.advance(timedelta(days=2))
    assert world.run().sent == 2

    assert _folders(bare_dovecot, user.address) == {"INBOX", "Sent"}
    sent_ids = sorted(m.message_id or "" for m in world.smtp.messages())
    assert len(sent_ids) >= 4  # the four campaign emails, and any digest to mike
    assert _message_ids(bare_dovecot, user.address, "Sent") == sent_ids
    assert all(row.copied_at is not None for row in world.rows())
    created = [r for r in caplog.records if getattr(r, "action", "") == "sent_folder_created"]
    assert [(r.folder, r.mailbox) for r in created] == [("Sent", user.address)]  # type: ignore[attr-defined]
    assert _check_connect(str(world.app.config.path)).endswith(
        "Sent folder 'Sent' (found by its name)"
    )


def test_the_folder_the_server_marks_sent_is_used_whatever_its_name(
    make_world, marked_dovecot: servers.imap.Dovecot
) -> None:
    user = marked_dovecot.new_user()
    world = make_world(imap=user, dovecot=marked_dovecot, imap_options={"sent_folder": None})
    line = _check_connect(str(world.app.config.path))
    assert line.endswith("opened 'INBOX', Sent folder 'Sent Items' (marked \\Sent by the server)")
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1
    assert _folders(marked_dovecot, user.address) == {"INBOX", "Sent Items"}  # nothing created
    assert _message_ids(marked_dovecot, user.address, "Sent Items") == [world.rows()[0].message_id]


def test_without_a_marked_folder_a_usual_name_is_found(
    make_world, bare_dovecot: servers.imap.Dovecot
) -> None:
    # An older server (or a folder made by hand): no special use, but the name says it.
    user = bare_dovecot.new_user()
    bare_dovecot.create_mailbox(user.address, "Sent Messages")
    world = make_world(imap=user, dovecot=bare_dovecot, imap_options={"sent_folder": None})
    line = _check_connect(str(world.app.config.path))
    assert line.endswith("Sent folder 'Sent Messages' (found by its name)")
    world.add("ann@example.org", first_name="Ann", company="X")
    assert world.run().sent == 1
    assert _folders(bare_dovecot, user.address) == {"INBOX", "Sent Messages"}
    assert _message_ids(bare_dovecot, user.address, "Sent Messages") == [world.rows()[0].message_id]


def test_a_configured_folder_that_is_missing_is_not_created(
    make_world, bare_dovecot: servers.imap.Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    # A typo in sent_folder must not file every copy in a new folder nobody opens.
    user = bare_dovecot.new_user()
    world = make_world(imap=user, dovecot=bare_dovecot, imap_options={"sent_folder": "Sent Itmes"})
    world.add("ann@example.org", first_name="Ann", company="X")
    with caplog.at_level(logging.WARNING, logger="dripd.daemon"):
        assert world.run().sent == 1
    assert _folders(bare_dovecot, user.address) == {"INBOX"}
    (warning,) = [r.getMessage() for r in caplog.records if "Sent folder" in r.getMessage()]
    assert "cannot append to 'Sent Itmes': [TRYCREATE]" in warning
    assert "sent_folder names a folder this mailbox does not have" in warning
    assert world.rows()[0].copied_at is None


def test_a_new_sent_folder_goes_under_the_personal_namespace(make_world) -> None:
    # cPanel's Dovecot and Courier keep every folder under "INBOX.": a top-level
    # "Sent" can't be created there, and mail clients show "INBOX.Sent" as Sent.
    with servers.imap.Dovecot(sent_folder=None, prefix="INBOX.") as dovecot:
        user = dovecot.new_user()
        world = make_world(imap=user, dovecot=dovecot, imap_options={"sent_folder": None})
        line = _check_connect(str(world.app.config.path))
        assert line.endswith(
            "Sent folder 'INBOX.Sent' (not there yet: dripd creates it at the first copy)"
        )
        world.add("ann@example.org", first_name="Ann", company="X")
        assert world.run().sent == 1
        assert _folders(dovecot, user.address) == {"INBOX", "INBOX.Sent"}
        assert _message_ids(dovecot, user.address, "INBOX.Sent") == [world.rows()[0].message_id]
