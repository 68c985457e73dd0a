"""The config file (SPEC §7): one-line errors naming the file and key; paths; secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from dripd import errors
from dripd.files import config

SECRET = "s3cr3t-Value-42!"

GOOD = """\
[dripd]
database = "sqlite:///dripd.db"
campaigns = "campaigns"
attachments = "attachments"
timezone = "America/New_York"
send_window = "mon-fri 09:00-17:00"

[[reps]]
id = "mike"
name = "Mike Gulitz"
email = "mike@example.com"

[reps.smtp]
host = "smtp.example.com"
port = 587
security = "starttls"
username = "mike@example.com"
password_env = "DRIPD_TEST_MIKE_PASSWORD"

[reps.imap]
host = "imap.example.com"
security = "tls"
username = "mike@example.com"
password_file = "mike.secret"
"""

SAM = """
[[reps]]
id = "sam"
name = "Sam Rivera"
email = "sam@example.com"
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STATE_DIRECTORY",
        "CREDENTIALS_DIRECTORY",
        "DRIPD_DATABASE",
        "DRIPD_TEST_MIKE_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _sub(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


BAD = [
    ("unknown smtp key", _sub('host = "smtp.example.com"', 'hots = "smtp.example.com"'),
     ["reps[0].smtp", "unknown key 'hots'", "did you mean 'host'"]),
    ("unknown smtp key (optional)", _sub("port = 587", "prot = 587"),
     ["reps[0].smtp", "unknown key 'prot'", "did you mean 'port'"]),
    ("unknown dripd key", _sub('timezone = "America/New_York"', 'timezon = "America/New_York"'),
     ["dripd", "unknown key 'timezon'", "did you mean 'timezone'"]),
    ("unknown time zone", _sub('timezone = "America/New_York"', 'timezone = "Mars/Olympus"'),
     ["dripd.timezone", "unknown time zone 'Mars/Olympus'"]),
    ("unknown rep time zone", _sub('email = "mike@example.com"',
                                   'email = "mike@example.com"\ntimezone = "Nowhere/City"'),
     ["reps[0].timezone", "unknown time zone 'Nowhere/City'"]),
    ("plain smtp to a remote host", _sub('security = "starttls"', 'security = "none"'),
     ["reps[0].smtp", 'security = "none"', "'smtp.example.com'"]),
    ("plain imap to a remote host", _sub('security = "tls"', 'security = "none"'),
     ["reps[0].imap", 'security = "none"', "'imap.example.com'"]),
    ("bad send_window", _sub('send_window = "mon-fri 09:00-17:00"',
                             'send_window = "someday 09:00-17:00"'),
     ["dripd.send_window", "someday"]),
    ("bad digest slots", _sub('email = "mike@example.com"',
                              'email = "mike@example.com"\ndigest = "mon-fri 7.30am"'),
     ["reps[0].digest"]),
    ("duplicate rep ids", GOOD + SAM.replace('"sam"', '"mike"', 1),
     ["rep id 'mike' is used twice"]),
    ("bad rep email", _sub('email = "mike@example.com"', 'email = "mike at example"'),
     ["reps[0].email", "not an email address"]),
    ("missing rep name", _sub('name = "Mike Gulitz"\n', ""),
     ["reps[0]", "missing key 'name'"]),
    ("invalid TOML", _sub('id = "mike"', 'id = "mike'), ["invalid TOML"]),
]  # fmt: skip


@pytest.mark.parametrize(("text", "fragments"), [pytest.param(*c[1:], id=c[0]) for c in BAD])
def test_a_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(errors.ConfigError) as info:
        config.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_plain_connections_are_allowed_to_loopback(tmp_path: Path, host: str) -> None:
    text = _sub('host = "smtp.example.com"', f'host = "{host}"').replace(
        'security = "starttls"', 'security = "none"'
    )
    cfg = config.load(_write(tmp_path, text))
    assert cfg.reps[0].smtp is not None
    assert cfg.reps[0].smtp.security == "none"


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(errors.ConfigError, match=r"nope\.toml: no such file$"):
        config.load(path)


def test_find_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPD_CONFIG", str(tmp_path / "env.toml"))
    assert config.find_path("given.toml") == Path("given.toml")
    assert config.find_path(None) == tmp_path / "env.toml"


def test_the_good_config_loads(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, GOOD + SAM))
    assert [r.id for r in cfg.reps] == ["mike", "sam"]
    assert str(cfg.timezone) == "America/New_York"
    assert cfg.rep_ids() == frozenset({"mike", "sam"})
    with pytest.raises(errors.ConfigError, match="unknown rep 'zed'"):
        cfg.rep("zed")


# -- paths ------------------------------------------------------------------------


def test_relative_paths_are_resolved_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = _write(tmp_path, GOOD)
    folder = path.parent.resolve()

    cfg = config.load(path)

    assert cfg.campaigns_dir == folder / "campaigns"
    assert cfg.attachments_dir == folder / "attachments"
    assert cfg.database_url == f"sqlite:///{folder / 'dripd.db'}"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////var/lib/x/dripd.db",
        "postgresql://dripd@db.example.com/dripd",
        "sqlite:///:memory:",
    ],
)
def test_absolute_and_server_database_urls_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    cfg = config.load(_write(tmp_path, _sub('"sqlite:///dripd.db"', f'"{url}"')))
    assert cfg.database_url == url


def test_state_directory_places_database_and_attachments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "var" / "lib" / "dripd"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    path = _write(tmp_path, GOOD)

    cfg = config.load(path)

    assert cfg.database_url == f"sqlite:///{state / 'dripd.db'}"
    assert cfg.attachments_dir == state / "attachments"
    assert cfg.campaigns_dir == path.parent.resolve() / "campaigns"  # config files stay put


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    text = _sub('campaigns = "campaigns"', f'campaigns = "{tmp_path / "c"}"').replace(
        'attachments = "attachments"', f'attachments = "{tmp_path / "a"}"'
    )
    cfg = config.load(_write(tmp_path, text))
    assert cfg.campaigns_dir == tmp_path / "c"
    assert cfg.attachments_dir == tmp_path / "a"


# -- secrets ----------------------------------------------------------------------


def test_password_env_is_read_only_by_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIPD_TEST_MIKE_PASSWORD", SECRET)
    cfg = config.load(_write(tmp_path, GOOD))
    smtp = cfg.reps[0].smtp
    assert smtp is not None

    for shown in (repr(cfg), str(cfg), repr(cfg.model), str(cfg.reps[0]), repr(smtp), str(smtp)):
        assert SECRET not in shown
    assert "DRIPD_TEST_MIKE_PASSWORD" in repr(smtp)  # the name is fine, the value never
    assert smtp.password() == SECRET


def test_an_unset_password_env_fails_only_when_the_password_is_needed(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, GOOD))  # loading does not need the secret
    smtp = cfg.reps[0].smtp
    assert smtp is not None
    with pytest.raises(errors.ConfigError, match="DRIPD_TEST_MIKE_PASSWORD is not set"):
        smtp.password()


def test_password_file_relative_to_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "run" / "credentials" / "dripd.service"
    credentials.mkdir(parents=True)
    (credentials / "mike.secret").write_text(SECRET + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))

    cfg = config.load(_write(tmp_path, GOOD))
    imap = cfg.reps[0].imap
    assert imap is not None

    assert SECRET not in repr(cfg) and SECRET not in str(cfg)
    assert imap.password() == SECRET  # trailing newline stripped


def test_relative_password_and_ca_files_are_beside_the_config_without_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run by hand from another folder: found beside config.toml, as the
    # config's other relative paths are (they were looked for in the cwd).
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = _write(tmp_path, GOOD.replace("[reps.imap]", '[reps.imap]\nca_file = "private-ca.pem"'))
    (path.parent / "mike.secret").write_text(SECRET + "\n", encoding="utf-8")

    imap = config.load(path).reps[0].imap
    assert imap is not None
    assert imap.password() == SECRET
    assert imap.ca_file == str(path.parent.resolve() / "private-ca.pem")


def test_password_file_absolute(tmp_path: Path) -> None:
    secret_file = tmp_path / "secrets" / "imap.txt"
    secret_file.parent.mkdir()
    secret_file.write_text(SECRET + "\r\n", encoding="utf-8")
    cfg = config.load(_write(tmp_path, GOOD.replace('"mike.secret"', f'"{secret_file}"')))
    imap = cfg.reps[0].imap
    assert imap is not None
    assert imap.password() == SECRET


def test_a_missing_password_file_is_one_line(tmp_path: Path) -> None:
    cfg = config.load(_write(tmp_path, GOOD.replace('"mike.secret"', f'"{tmp_path}/none"')))
    imap = cfg.reps[0].imap
    assert imap is not None
    with pytest.raises(errors.ConfigError, match=r"password file .*none") as info:
        imap.password()
    assert "\n" not in str(info.value)


def test_a_password_in_the_file_itself_is_refused(tmp_path: Path) -> None:
    text = _sub('password_env = "DRIPD_TEST_MIKE_PASSWORD"', f'password = "{SECRET}"')
    with pytest.raises(errors.ConfigError) as info:
        config.load(_write(tmp_path, text))
    assert "unknown key 'password'" in str(info.value)
    assert SECRET not in str(info.value)
