"""Contact values and the contacts CSV (SPEC §2, §10): bad input is refused with one clear line."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import dates
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dripd import errors
from dripd.files import csvfile
from dripd.mail import addresses
from dripd.plan import contacts

RULES = contacts.Rules(
    rep_ids=frozenset({"mike", "sam"}),
    date_fields=frozenset({"appointment_at"}),
    default_tz=ZoneInfo("America/New_York"),
)
INJECTION = "Bob\r\nBcc: x@evil.com"
HEADER = "email,first_name,last_name,company,owner,appointment_at\n"
Y = dates.today().year + 1  # the year of the appointments in these rows: always ahead


def _validate(**fields: str) -> contacts.Values:
    return contacts.validate({"email": "ann@example.com", **fields}, RULES)


def _refused(fields: dict[str, str]) -> str:
    with pytest.raises(ValueError) as info:
        contacts.validate(fields, RULES)
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message, repr(message)
    return message


# -- contacts.validate --------------------------------------------------------------


def test_a_good_row_is_validated_and_normalized() -> None:
    values = contacts.validate(
        {"Email": " Ann@Example.com ", "First Name": " Ann ", "company": "Acme, Inc.",
         "owner": "sam", "stage": "Lead", "timezone": "Europe/Berlin",
         "appointment_at": f"{Y}-12-03 10:00", "birthday": "1980-02-29",
         "hot_buttons": "low payment;\nclose before August", "phone": ""},
        RULES,
    )  # fmt: skip
    assert values.email == "Ann@Example.com"
    assert values.standard == {
        "first_name": "Ann", "company": "Acme, Inc.", "owner": "sam", "stage": "lead",
        "timezone": "Europe/Berlin", "phone": None,
    }  # fmt: skip
    assert values.custom == {
        "appointment_at": f"{Y}-12-03 10:00", "birthday": "1980-02-29",
        "hot_buttons": "low payment;\nclose before August",
    }  # fmt: skip


@pytest.mark.parametrize("field", contacts.STANDARD)
def test_header_injection_is_refused_in_every_standard_field(field: str) -> None:
    fields = {"email": "ann@example.com", field: INJECTION}
    message = _refused(fields)
    assert field.replace("_", " ") in message.replace("_", " ") or "email address" in message


@pytest.mark.parametrize(
    "address",
    [INJECTION, "bob@x.com\r\nBcc: x@evil.com", "bob@x.com\nBcc: x@evil.com",
     "bob@x.com\r\n", "Bob <bob@x.com>", "bob@x.com, eve@evil.com"],
)  # fmt: skip
def test_header_injection_is_refused_in_email(address: str) -> None:
    _refused({"email": address})


@pytest.mark.parametrize("field", ["first_name", "last_name", "company", "phone"])
@pytest.mark.parametrize(
    "text",
    ["Bob\nSmith", "Bob\rSmith", "Bob\r\n", "\nBob", "Bob\x00", "Bob\x1b[31m", "Bob\u2028Smith",
     "Bob\x85", "Bob\tSmith", "Bob\u202eevil"],
)  # fmt: skip
def test_control_characters_and_line_breaks_in_names_are_refused(field: str, text: str) -> None:
    message = _refused({"email": "ann@example.com", field: text})
    assert field in message
    assert "control character or line break" in message


def test_a_zero_width_joiner_is_text_not_a_control_character() -> None:
    assert _validate(first_name="👩\u200d💻 Ann").standard["first_name"] == "👩\u200d💻 Ann"


CASES = [
    ("bad email", {"email": "not-an-address"}, "is not an email address"),
    ("empty email", {"email": "  "}, "email is empty"),
    ("two @", {"email": "a@b@c.com"}, "is not an email address"),
    ("double dot", {"email": "ann..lee@example.com"}, "is not an email address"),
    ("bad appointment_at", {"appointment_at": "next tuesday"}, "appointment_at: bad date"),
    ("impossible appointment_at", {"appointment_at": f"{Y}-02-30 10:00"}, "day is out of range"),
    ("bad hour", {"appointment_at": f"{Y}-12-03 25:00"}, "appointment_at: bad date"),
    ("bad birthday", {"birthday": "1980-13-01"}, "birthday: bad date"),
    ("birthday not a date", {"birthday": "March 3rd"}, "birthday: bad date"),
    ("bad client_since", {"client_since": f"{Y}/05/01"}, "client_since: bad date"),
    ("date field with a line break", {"appointment_at": f"{Y}-12-03\n10:00"},
     "appointment_at contains a control character or line break"),
    ("unknown owner", {"owner": "zed"}, "owner 'zed' is not a rep (mike, sam)"),
    ("unknown time zone", {"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ("not a zone at all", {"timezone": "EST5EDT/../x"}, "unknown time zone"),
    ("unknown stage", {"stage": "whale"}, "unknown stage 'whale'"),
    ("unknown status", {"status": "gone"}, "unknown status 'gone'"),
    ("bad referred_by", {"referred_by": "Bob"}, "'Bob' is not an email address"),
    ("bad created_at", {"created_at": "yesterday"}, "bad date"),
    ("bad custom field name", {"2nd phone": "x"}, "field name '2nd_phone'"),
    ("name too long", {"first_name": "A" * 201}, "first_name is longer than 200"),
    ("control character in a custom field", {"hot_buttons": "a\x00b"},
     "hot_buttons contains a control character"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "expected"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_values_are_refused_with_one_line(fields: dict[str, str], expected: str) -> None:
    raw = {"email": "ann@example.com", **fields} if "email" not in fields else fields
    message = _refused(raw)
    assert expected in message, message


def test_a_row_without_email_is_refused() -> None:
    assert _refused({"first_name": "Ann"}) == "email is missing"


def test_empty_values_clear_fields() -> None:
    values = contacts.validate(
        {"email": "a@b.co", "company": "", "birthday": " "}, RULES, require_email=True
    )
    assert values.standard == {"company": None}
    assert values.custom == {"birthday": None}


def test_set_without_email_is_allowed_when_not_required() -> None:
    values = contacts.validate({"appointment_at": f"{Y}-12-04 15:00"}, RULES, require_email=False)
    assert values.email is None
    assert values.custom == {"appointment_at": f"{Y}-12-04 15:00"}


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([f"appointment_at={Y}-12-03 10:00"], {"appointment_at": f"{Y}-12-03 10:00"}),
        ([f'appointment_at="{Y}-12-03 10:00"'], {"appointment_at": f"{Y}-12-03 10:00"}),
        (["Hot Buttons='a; b'"], {"hot_buttons": "a; b"}),
        (["note=a=b"], {"note": "a=b"}),
    ],
)
def test_parse_assignments(items: list[str], expected: dict[str, str]) -> None:
    assert contacts.parse_assignments(items) == expected


@pytest.mark.parametrize("item", ["novalue", "=x", " =x"])
def test_parse_assignments_refuses_non_assignments(item: str) -> None:
    with pytest.raises(ValueError, match="expected key=value"):
        contacts.parse_assignments([item])


ONE_LINE_FIELDS = st.sampled_from(["first_name", "last_name", "company"])


@settings(max_examples=150, deadline=None)
@given(
    field=ONE_LINE_FIELDS,
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    brk=st.sampled_from(["\r", "\n", "\r\n"]),
)
def test_any_text_with_a_line_break_in_a_name_is_refused(
    field: str, before: str, after: str, brk: str
) -> None:
    with pytest.raises(ValueError, match="control character or line break"):
        contacts.validate({"email": "ann@example.com", field: before + brk + after}, RULES)


@settings(max_examples=150, deadline=None)
@given(field=ONE_LINE_FIELDS, text=st.text(max_size=40))
def test_an_accepted_name_never_holds_a_line_break(field: str, text: str) -> None:
    try:
        values = contacts.validate({"email": "ann@example.com", field: text}, RULES)
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    stored = values.standard[field] or ""
    assert stored.splitlines() in ([], [stored])
    assert not any(char in stored for char in "\r\n")


# -- csvfile.read -------------------------------------------------------------------


_CELL = st.one_of(
    st.text(alphabet="abcXYZ019 -.:@+/", max_size=12),  # mostly plain, so the fast path runs
    st.text(max_size=8),  # anything: controls, line breaks, non-ASCII
)


def _outcome(raw: dict[str, str], plain: bool) -> contacts.Values | str:
    try:
        return contacts.validate(raw, RULES, normalized=True, plain=plain)
    except ValueError as exc:
        return str(exc)


@settings(max_examples=400, deadline=None)
@given(st.lists(_CELL, min_size=5, max_size=5))
def test_the_plain_rows_fast_path_decides_as_the_full_checks(cells: list[str]) -> None:
    """An import skips per-value control checks for a row `is_plain` passes: same result."""
    names = ("first_name", "company", "phone", "notes", "appointment_at")
    raw = {"email": "ann@example.com", **dict(zip(names, cells, strict=True))}
    plain = addresses.is_plain("".join(raw.values()))
    assert _outcome(raw, plain) == _outcome(raw, False)


def test_a_control_character_is_refused_in_an_otherwise_plain_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + "ann@example.com,Ann,Lee,Acme,mike,\n"
                "bob@example.com,B\x1bob,Lee,Acme,mike,\n")  # fmt: skip
    rows, problems = csvfile.read(path, RULES)
    assert [r.values.email for r in rows] == ["ann@example.com"]
    assert [str(p) for p in problems] == [
        "line 3: first_name contains a control character or line break"
    ]


def _csv(tmp_path: Path, content: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8", newline="")
    else:
        path.write_bytes(content)
    return path


def _read(path: Path) -> tuple[list[str], dict[int, str]]:
    rows, problems = csvfile.read(path, RULES)
    return [r.values.email or "" for r in rows], {p.line: p.message for p in problems}


def test_a_mixed_file_keeps_good_rows_and_reports_bad_ones_by_line(tmp_path: Path) -> None:
    path = _csv(tmp_path, HEADER + "\n".join([
        f"ann@example.com,Ann,Lee,Acme,mike,{Y}-12-03 10:00",      # 2
        "not-an-email,Bob,Ray,,mike,",                              # 3
        '"bob@example.com","Bob\r\nBcc: x@evil.com",Ray,,mike,',   # 4-5
        "carl@example.com,Carl,Diaz,,zed,",                         # 6
        f"dora@example.com,Dora,Eve,,sam,{Y}-13-01",                # 7
        "ANN@example.com,Ann,Again,,mike,",                         # 8
        "erin@example.com,Erin,Fox,,,",                             # 9
    ]) + "\n")  # fmt: skip

    emails, problems = _read(path)

    assert emails == ["ann@example.com", "erin@example.com"]
    assert sorted(problems) == [3, 4, 6, 7, 8]
    assert "not an email address" in problems[3]
    assert "first_name contains a control character or line break" in problems[4]
    assert "owner 'zed' is not a rep" in problems[6]
    assert "appointment_at: bad date" in problems[7]
    assert problems[8] == "duplicate of line 2 (ANN@example.com)"
    assert all("\n" not in m for m in problems.values())


def test_problems_print_as_line_n(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email\nnope\n")
    _rows, problems = csvfile.read(path, RULES)
    assert [str(p) for p in problems] == ["line 2: 'nope' is not an email address"]


def test_a_quoted_multi_line_cell_keeps_line_numbers_right(tmp_path: Path) -> None:
    path = _csv(tmp_path, (
        "email,first_name,hot_buttons\n"                           # 1
        'ann@example.com,Ann,"low payment;\nclose by August;\n'      # 2-4
        'no surprises"\n'
        "bad-address,Bob,\n"                                        # 5
        'carl@example.com,"Carl\nDiaz",x\n'                         # 6-7
        "dora@example.com,Dora,\n"                                  # 8
        "dora@example.com,Dora,again\n"                             # 9
    ))  # fmt: skip

    rows, problems = csvfile.read(path, RULES)

    assert [(r.line, r.values.email) for r in rows] == [
        (2, "ann@example.com"), (8, "dora@example.com"),
    ]  # fmt: skip
    assert rows[0].values.custom["hot_buttons"] == "low payment;\nclose by August;\nno surprises"
    assert {p.line: p.message for p in problems} == {
        5: "'bad-address' is not an email address",
        6: "first_name contains a control character or line break",
        9: "duplicate of line 8 (dora@example.com)",
    }


def test_crlf_line_endings(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email,first_name\r\nann@example.com,Ann\r\nbad,Bob\r\n")
    rows, problems = csvfile.read(path, RULES)
    assert [r.values.standard["first_name"] for r in rows] == ["Ann"]
    assert [p.line for p in problems] == [3]


def test_a_latin1_file_reports_non_utf8_rows_and_keeps_ascii_rows(tmp_path: Path) -> None:
    text = (
        "email,first_name,company\n"
        "ann@example.com,Ann,Acme\n"
        "jose@example.com,José,Café Olé\n"
        "bob@example.com,Bob,Bobco\n"
        "zoe@example.com,Zoë,Müller GmbH\n"
    )
    path = _csv(tmp_path, text.encode("latin-1"))

    emails, problems = _read(path)

    assert emails == ["ann@example.com", "bob@example.com"]
    assert problems == {
        3: "not UTF-8 text (save the file as UTF-8)",
        5: "not UTF-8 text (save the file as UTF-8)",
    }


def test_a_bom_at_the_start_is_ignored(tmp_path: Path) -> None:
    path = _csv(tmp_path, "\ufeffemail,First Name\nann@example.com,Ann\n".encode())
    rows, problems = csvfile.read(path, RULES)
    assert problems == []
    assert [(r.values.email, r.values.standard["first_name"]) for r in rows] == [
        ("ann@example.com", "Ann")
    ]


def test_utf8_names_are_kept(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email,first_name,company\njose@example.com,José,Café Olé\n")
    rows, problems = csvfile.read(path, RULES)
    assert problems == []
    assert rows[0].values.standard == {"first_name": "José", "company": "Café Olé"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "the file is empty"),
        ("first_name,last_name\nAnn,Lee\n", "line 1: the header has no 'email' column"),
        ("email,Email\na@b.co,a@b.co\n", "line 1: column 'email' appears twice"),
        (b"email,pr\xe9nom\na@b.co,x\n", "line 1: not UTF-8 text"),
    ],
)
def test_file_level_problems_are_one_line_naming_the_file(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    path = _csv(tmp_path, content)
    with pytest.raises(errors.ContactError) as info:
        csvfile.read(path, RULES)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(errors.ContactError, match=r"nope\.csv: No such file"):
        csvfile.read(tmp_path / "nope.csv", RULES)


def test_too_many_cells_and_blank_lines(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email,first_name\n\nann@example.com,Ann,extra\n,\nbob@example.com,Bob\n")
    rows, problems = csvfile.read(path, RULES)
    assert [r.line for r in rows] == [5]
    assert [(p.line, p.message) for p in problems] == [(3, "3 cells but the header has 2")]


def test_a_semicolon_file_from_excel_is_read(tmp_path: Path) -> None:
    # Excel writes ";" where the decimal separator is a comma (most of Europe).
    path = _csv(tmp_path, (
        "email;First Name;company;hot_buttons\r\n"
        'ann@example.com;Ann;"Lee, Smith & Co";"price; speed"\r\n'
        "bad;Bob;;\r\n"
    ))  # fmt: skip
    rows, problems = csvfile.read(path, RULES)
    assert [(r.values.email, r.values.standard["company"]) for r in rows] == [
        ("ann@example.com", "Lee, Smith & Co")
    ]
    assert rows[0].values.custom == {"hot_buttons": "price; speed"}
    assert [(p.line, p.message) for p in problems] == [(3, "'bad' is not an email address")]


def test_a_tab_separated_file_is_read(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email\tfirst_name\nann@example.com\tAnn, the first\n")
    rows, problems = csvfile.read(path, RULES)
    assert problems == []
    assert rows[0].values.standard["first_name"] == "Ann, the first"


def test_a_comma_file_with_semicolons_in_it_stays_a_comma_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, "email,notes\nann@example.com;x,a;b\n")
    rows, problems = csvfile.read(path, RULES)
    assert rows == []
    assert [p.message for p in problems] == ["'ann@example.com;x' is not an email address"]


@pytest.mark.parametrize(
    ("header", "column"),
    [("E-Mail;Vorname", "E-Mail"), ("First Name,E-mail Address", "E-mail Address")],
)
def test_an_email_column_by_another_name_is_named_in_the_message(
    tmp_path: Path, header: str, column: str
) -> None:
    path = _csv(tmp_path, f"{header}\nann@example.com,Ann\n")
    with pytest.raises(errors.ContactError) as info:
        csvfile.read(path, RULES)
    assert str(info.value) == (
        f"{path}: line 1: the header has no 'email' column (rename the column {column!r} to email)"
    )


def test_header_names_are_normalized(tmp_path: Path) -> None:
    path = _csv(tmp_path, f"E-Mail,First Name,Appointment At\nann@example.com,Ann,{Y}-12-03\n")
    # "E-Mail" becomes e_mail, which is not "email": the header has no email column
    with pytest.raises(errors.ContactError, match="no 'email' column"):
        csvfile.read(path, RULES)
    path = _csv(tmp_path, f"Email,First Name,Appointment At\nann@example.com,Ann,{Y}-12-03\n")
    rows, _problems = csvfile.read(path, RULES)
    assert rows[0].values.custom == {"appointment_at": f"{Y}-12-03"}
