"""`dripd contacts export` and `contacts forget` as a rep or operator runs them (SPEC §11)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

DRIPD = str(Path(sys.executable).with_name("dripd"))
PEOPLE = (
    "email,first_name,last_name,company,phone,timezone,owner,stage,hot_buttons,birthday\n"
    'ann@northwind.example,Ann,Lee,"Lee & Co, Ltd",+1 555 0101,America/New_York,mike,lead,'
    '"rates; ""fast"" approval",1980-03-14\n'
    "bo@contoso.example,Bø,Ström,Contoso,,Europe/Berlin,sam,prospect,,\n"
    'cy@fabrikam.example,Cy,,,,,,,"multi\nline",\n'
)


def _dripd(config: Path, *args: str, code: int = 0, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPD_")}
    result = subprocess.run(
        [DRIPD, "--config", str(config), *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def _config(make_config, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    folder.mkdir()
    return make_config(database=f"sqlite:///{folder / 'dripd.db'}")


def test_export_then_import_reads_back_unchanged(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = make_config()
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    _dripd(first, "contacts", "import", str(tmp_path / "people.csv"), "--enroll", "qualification")
    exported = _dripd(first, "contacts", "export")
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["email"] for r in rows] == [
        "ann@northwind.example", "bo@contoso.example", "cy@fabrikam.example"
    ]  # fmt: skip
    ann = rows[0]
    assert (ann["company"], ann["hot_buttons"]) == ("Lee & Co, Ltd", 'rates; "fast" approval')
    assert (ann["stage"], ann["campaigns"], ann["touches"]) == ("lead", "qualification", "0")
    assert rows[2]["hot_buttons"] == "multi\nline"

    # The export, imported into the same database, changes nothing and exports the same.
    again = tmp_path / "export.csv"
    again.write_text(exported, encoding="utf-8")
    _dripd(first, "contacts", "import", str(again))
    assert _dripd(first, "contacts", "export") == exported

    # Into a new database (another CRM's export, a move): the same contacts, field for field;
    # touches and campaigns are dripd's records, passed over by import.
    other = tmp_path / "other"
    other.mkdir()
    second = other / "config.toml"
    second.write_text(
        first.read_text(encoding="utf-8").replace(str(tmp_path / "dripd.db"), str(other / "d.db")),
        encoding="utf-8",
    )
    (other / "attachments").mkdir()
    _dripd(second, "contacts", "import", str(again))
    moved = list(csv.DictReader(io.StringIO(_dripd(second, "contacts", "export"))))
    recorded = {"touches", "last_touch_at", "campaigns"}
    assert [{k: v for k, v in r.items() if k not in recorded} for r in moved] == [
        {k: v for k, v in r.items() if k not in recorded} for r in rows
    ]

    lines = _dripd(first, "contacts", "export", "--stage", "lead", "--json").splitlines()
    assert [json.loads(line)["email"] for line in lines] == ["ann@northwind.example"]


def test_forget_asks_then_erases_and_refuses_the_address_later(make_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config()
    (tmp_path / "people.csv").write_text(PEOPLE, encoding="utf-8")
    _dripd(config, "contacts", "import", str(tmp_path / "people.csv"))
    assert "nothing erased" in subprocess.run(
        [DRIPD, "--config", str(config), "contacts", "forget", "bo@contoso.example"],
        input="n\n", capture_output=True, text=True, timeout=60,
    ).stderr  # fmt: skip
    said = _dripd(config, "contacts", "forget", "BO@contoso.example", "--yes")
    assert said.startswith("forgot BO@contoso.example: the contact and")
    shown = subprocess.run(
        [DRIPD, "--config", str(config), "contacts", "show", "bo@contoso.example"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode != 0 and "Traceback" not in shown.stderr
    refused = _dripd(config, "contacts", "import", str(tmp_path / "people.csv"), code=1)
    assert "0 created, 2 updated" in refused
    assert "bo@contoso.example" not in _dripd(config, "contacts", "export")
    for file in tmp_path.glob("dripd.db*"):  # not in a free page or the write-ahead log either
        assert b"bo@contoso.example" not in file.read_bytes().lower(), file.name
