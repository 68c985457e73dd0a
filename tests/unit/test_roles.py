"""A campaign's `from` names a rep or a role ([roles] in the config), so one-rep teams pass check.

The shipped close campaign sends `from = "associate"`: the config says who
that is; unmapped, the contact's owner sends it and `dripd check` says so.
"""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import dates
import pytest
from click.testing import CliRunner

from dripd import errors
from dripd.cli import main as cli
from dripd.files import campaigns, config
from dripd.pipeline import app as app_mod
from dripd.pipeline import compose
from dripd.store import contacts

SHIPPED = campaigns.SHIPPED  # the repository's campaigns folder

ONE_REP = """\
[dripd]
database = "sqlite:///dripd.db"
campaigns = "{campaigns}"
{roles}
[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"

[reps.smtp]
host = "smtp.example.com"
username = "mike@example.com"
password_env = "DRIPD_TEST_UNSET"
"""

SAM = """
[[reps]]
id = "sam"
name = "Sam Rivera"
email = "sam@example.com"

[reps.smtp]
host = "smtp.example.com"
"""


def _config(tmp_path: Path, roles: str = "", extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    text = ONE_REP.format(campaigns=SHIPPED, roles=roles) + extra
    path.write_text(text, encoding="utf-8")
    return path


def _check(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli.cli, ["--config", str(path), "check"])
    return result.exit_code, [line for line in result.output.splitlines() if "close.toml" in line]


def test_a_one_rep_team_passes_check_with_the_shipped_campaigns(tmp_path: Path) -> None:
    code, lines = _check(_config(tmp_path))
    assert code == 0
    (warning,) = lines
    assert re.fullmatch(
        r"warning .*close\.toml: step 'coaching': from = 'associate' is no rep, and \[roles\] "
        r"gives it none: these emails go from the contact's owner "
        r'\(to change that: \[roles\] associate = "REP"\)',
        warning,
    ), warning


def test_a_mapped_role_sends_as_its_rep_with_no_warning(tmp_path: Path) -> None:
    path = _config(tmp_path, roles='[roles]\nassociate = "sam"\n', extra=SAM)
    assert _check(path) == (0, [])
    cfg = config.load(path)
    assert (cfg.sender_of("associate"), cfg.sender_of("sam"), cfg.sender_of("nobody")) == (
        "sam", "sam", None,
    )  # fmt: skip
    assert cfg.sender_of(None) is None


def test_a_role_given_to_a_rep_without_a_mailbox_is_named(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        roles='[roles]\nassociate = "sam"\n',
        extra=SAM.replace('\n[reps.smtp]\nhost = "smtp.example.com"\n', ""),
    )
    code, lines = _check(path)
    assert code == 0
    assert [line.split(": ", 1)[1] for line in lines] == [
        "step 'coaching': from = 'associate' is rep sam, who has no [reps.smtp]: "
        "these emails will wait"
    ]


def test_a_role_given_to_a_rep_who_is_gone_is_a_warning(tmp_path: Path) -> None:
    # The example config with its second rep taken out: check still passes.
    path = _config(tmp_path, roles='[roles]\nassociate = "sma"\n')
    code, output = _check_all(path)
    assert code == 0
    assert [line for line in output if "roles" in line] == [
        f"warning {path}: roles: associate = 'sma' is not a rep (reps: mike): "
        "emails from = 'associate' go from the contact's owner"
    ]
    extra = SAM + '[roles]\nassociate = "sma"\n'
    _code, output = _check_all(_config(tmp_path, extra=extra))
    assert any("associate = 'sma' is not a rep — did you mean 'sam'?" in x for x in output)


def _check_all(path: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(cli.cli, ["--config", str(path), "check"])
    return result.exit_code, result.output.splitlines()


def test_a_role_named_like_a_rep_is_a_config_error(tmp_path: Path) -> None:
    path = _config(tmp_path, roles='[roles]\nmike = "sam"\n', extra=SAM)
    with pytest.raises(errors.ConfigError) as caught:
        config.load(path)
    assert str(caught.value) == (
        f"{path}: roles: 'mike' is a rep id; a role needs a name of its own"
    )


def test_the_example_config_without_its_second_rep_passes_check(tmp_path: Path) -> None:
    example = (Path(__file__).parents[2] / "config.example.toml").read_text()
    one_rep = example[: example.index('[[reps]]\nid = "sam"')]
    one_rep = one_rep.replace('campaigns = "campaigns"', f'campaigns = "{SHIPPED}"')
    path = tmp_path / "config.toml"
    path.write_text(one_rep, encoding="utf-8")
    code, output = _check_all(path)
    assert code == 0, output
    assert any("roles: associate = 'sam' is not a rep (reps: mike)" in line for line in output)


@pytest.mark.parametrize(
    ("roles", "sender"),
    [('[roles]\nassociate = "sam"\n', "sam@example.com"), ("", "mike@example.com")],
)
def test_the_close_email_goes_from_the_role_else_from_the_owner(
    tmp_path: Path, roles: str, sender: str
) -> None:
    path = _config(tmp_path, roles=roles, extra=SAM)
    app = app_mod.open_app(str(path), with_db=False)
    now = dates.local(dates.today(), 0, tz=UTC)  # any instant: nothing here depends on the day
    contact = contacts.Contact(
        id=1, email="ann@example.org", first_name="Ann", owner="mike", created_at=now,
        updated_at=now,
    )  # fmt: skip
    close = app.catalog.get("close")
    coaching = next(step for step in close.steps if step.id == "coaching")
    assert compose.render_email(app, contact, close, coaching).sender.email == sender
