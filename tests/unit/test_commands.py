"""The rep's commands by email: the parser's rules, its properties, and real replies.

The corpus (tests/corpus/commands) holds replies to one digest as mail clients
write them; each is read the way the daemon reads it, from the message bytes.
"""

from __future__ import annotations

import string
import time
import tomllib
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

import dates
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dripd.mail import addresses, classify, incoming, mailtext
from dripd.plan import commands, durations, stages

CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "commands"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads(
    (CORPUS / "expected.toml").read_text(encoding="utf-8")
)["files"]
DIGEST_ID = "<dripd.test.digest.mike.Zq3x9@example.com>"
DAYS = durations.Duration(amount=3, unit="days")
Y = dates.today().year + 1  # the year of the appointments typed in commands: always ahead


def one(text: str) -> commands.Line:
    lines = commands.parse(text)
    assert len(lines) == 1
    return lines[0]


def command(text: str) -> commands.Command:
    line = one(text)
    assert line.error is None, line.error
    assert line.command is not None
    return line.command


def error(text: str) -> str:
    line = one(text)
    assert line.command is None, line.command
    assert line.error is not None
    return line.error


# --- each command ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("done 3 5", commands.Done(numbers=(3, 5))),
        ("skip 4", commands.Skip(numbers=(4,))),
        ("snooze 2 3d", commands.Snooze(numbers=(2,), duration=DAYS)),
        ("stop bob@x.com", commands.Stop(email="bob@x.com")),
        ("stage bob@x.com lead", commands.Stage(email="bob@x.com", stage="lead")),
        (
            f'enroll bob@x.com presentation appointment_at="{Y}-12-03 10:00"',
            commands.Enroll(
                email="bob@x.com",
                campaign="presentation",
                fields=(("appointment_at", f"{Y}-12-03 10:00"),),
            ),
        ),
        ("enroll bob@x.com intro", commands.Enroll(email="bob@x.com", campaign="intro", fields=())),
        (
            f'set bob@x.com appointment_at="{Y}-12-04 15:00"',
            commands.Set(email="bob@x.com", fields=(("appointment_at", f"{Y}-12-04 15:00"),)),
        ),
        (
            "referral ann@y.com from bob@x.com Ann Lee",
            commands.Referral(email="ann@y.com", referrer="bob@x.com", name="Ann Lee", fields=()),
        ),
    ],
)
def test_the_commands_of_the_spec(text: str, expected: commands.Command) -> None:
    assert command(text) == expected


@pytest.mark.parametrize(
    ("cmd", "canonical"),
    [
        (commands.Done(numbers=(1, 3)), "done 1 3"),
        (commands.Skip(numbers=(4,)), "skip 4"),
        (commands.Snooze(numbers=(2,), duration=DAYS), "snooze 2 3 days"),
        (
            commands.Snooze(numbers=(2, 5), duration=durations.parse_duration("1 bd")),
            "snooze 2 5 1 business day",
        ),
        (commands.Stop(email="bob@x.com"), "stop bob@x.com"),
        (commands.Stage(email="bob@x.com", stage="lead"), "stage bob@x.com lead"),
        (
            commands.Enroll(
                email="bob@x.com",
                campaign="presentation",
                fields=(("appointment_at", f"{Y}-12-03 10:00"), ("city", "Paris")),
            ),
            f'enroll bob@x.com presentation appointment_at="{Y}-12-03 10:00" city=Paris',
        ),
        (
            commands.Set(email="bob@x.com", fields=(("note", 'say "hi" \\ bye'), ("x", ""))),
            'set bob@x.com note="say \\"hi\\" \\\\ bye" x=""',
        ),
        (
            commands.Referral(
                email="ann@y.com", referrer="bob@x.com", name="Ann", fields=(("company", "Lee"),)
            ),
            "referral ann@y.com from bob@x.com Ann company=Lee",
        ),
    ],
)
def test_each_command_has_a_canonical_text(cmd: commands.Command, canonical: str) -> None:
    assert str(cmd) == canonical
    assert command(canonical) == cmd


# --- how the rep may write a line -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "DONE 1 3",
        "Done 1 3",
        "done: 1 3",
        "done\t1\t3",
        "  done   1  3  ",
        "done\u00a01\u00a0\u00a03",  # no-break spaces (Outlook, Apple Mail)
        "\u200bdone 1\u200b 3\ufeff",  # zero-width space, BOM
        "done 1 3.",
        "done 1 3,",
        "done 1 3;",
        "- done 1 3",
        "* done 1 3",
        "• done 1 3",
        "1. done 1 3",
        "2) done 1 3",
    ],
)
def test_case_whitespace_punctuation_and_bullets_are_tolerated(text: str) -> None:
    assert command(text) == commands.Done(numbers=(1, 3))


def test_line_text_is_the_line_as_written_with_whitespace_normalised() -> None:
    line = one("  Done\u00a01,\t3.  ")
    assert line.text == "Done 1, 3."


def test_line_text_is_cut_to_200_characters() -> None:
    line = one("set bob@x.com note=" + "x" * 500)
    assert line.command is not None
    assert line.text == ("set bob@x.com note=" + "x" * 500)[:200]


def test_one_line_per_non_blank_line_in_order() -> None:
    lines = commands.parse("done 1\n\n   \nnonsense\r\nskip 2\n\u00a0\n")
    assert [line.text for line in lines] == ["done 1", "nonsense", "skip 2"]
    assert [line.error is None for line in lines] == [True, False, True]


def test_an_empty_reply_has_no_lines() -> None:
    assert commands.parse("") == []
    assert commands.parse("\n \n\t\n") == []


# --- task numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("done 1 3", (1, 3)),
        ("done 1,3", (1, 3)),
        ("done 1, 3 and 5", (1, 3, 5)),
        ("done 1 & 3", (1, 3)),
        ("done #1 #3", (1, 3)),
        ("done 1-3", (1, 2, 3)),
        ("done 1 - 3", (1, 2, 3)),
        ("done 1–3", (1, 2, 3)),  # an en dash, as autocorrect writes it
        ("done #2-#4 7", (2, 3, 4, 7)),
        ("done 3 1 3 2-4", (3, 1, 2, 4)),  # repeats dropped, first place kept
        ("done 007", (7,)),
        ("done 1-50", tuple(range(1, 51))),
    ],
)
def test_task_numbers(text: str, numbers: tuple[int, ...]) -> None:
    assert command(text) == commands.Done(numbers=numbers)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("done 0", '"0"'),
        ("skip -3", '"-3"'),
        ("done 1 three", '"three"'),
        ("done 2 x7", '"x7"'),
        ("done 1.5", '"1.5"'),
        ("done 3-1", '"3-1"'),
        ("done 1-51", '"1-51"'),
        ("done 0-2", '"0-2"'),
        ("skip ²", '"²"'),
    ],
)
def test_a_bad_task_number_is_named(text: str, named: str) -> None:
    assert named in error(text)


def test_a_range_says_what_is_wrong_with_it() -> None:
    assert "backwards" in error("done 5-2")
    assert "more than 50" in error("done 1-51")
    assert "numbered from 1" in error("done 0")


@pytest.mark.parametrize("text", ["done", "skip", "done and", "snooze 3d", "snooze tomorrow"])
def test_task_numbers_are_required(text: str) -> None:
    assert "needs task numbers" in error(text)


# --- snooze ---------------------------------------------------------------------------


def dur(amount: int, unit: durations.Unit) -> durations.Duration:
    return durations.Duration(amount=amount, unit=unit)


@pytest.mark.parametrize(
    ("text", "numbers", "duration"),
    [
        ("snooze 2 3d", (2,), dur(3, "days")),
        ("snooze 2 3 days", (2,), dur(3, "days")),
        ("snooze 2 5 3 days", (2, 5), dur(3, "days")),
        ("snooze 1, 2 2 business days", (1, 2), dur(2, "business_days")),
        ("snooze 2 1w", (2,), dur(1, "weeks")),
        ("snooze 2 1 week", (2,), dur(1, "weeks")),
        ("snooze 2 2h", (2,), dur(2, "hours")),
        ("Snooze 2 3 Days", (2,), dur(3, "days")),
        ("snooze 2 for 3 days", (2,), dur(3, "days")),
        ("snooze 2 tomorrow", (2,), dur(1, "days")),
        ("snooze 2 Tomorrow.", (2,), dur(1, "days")),
        ("snooze 2", (2,), dur(1, "days")),
        ("snooze 2 3", (2, 3), dur(1, "days")),  # no unit: two tasks, the default day
    ],
)
def test_snooze(text: str, numbers: tuple[int, ...], duration: durations.Duration) -> None:
    assert command(text) == commands.Snooze(numbers=numbers, duration=duration)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("snooze 2 fortnight", '"fortnight"'),
        ("snooze 2 next week", '"week"'),
        ("snooze 2 3 fortnights", '"fortnights"'),
        ("snooze 2 3x", '"3x"'),
    ],
)
def test_snooze_names_a_bad_duration(text: str, named: str) -> None:
    message = error(text)
    assert named in message
    assert "not a duration" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("snooze 2 0d", "snooze by 1 to 999 days"),
        ("snooze 2 0 business days", "snooze by 1 to 999 business days"),
        ("snooze 2 1000 months", "snooze by 1 to 999 months"),
        ("snooze 2 99999999999999999999w", "snooze by 1 to 999 weeks"),
    ],
)
def test_snooze_by_nothing_or_by_ages_is_refused(text: str, message: str) -> None:
    assert error(text) == message


def test_snooze_by_the_most_allowed() -> None:
    assert command("snooze 2 999 months") == commands.Snooze(
        numbers=(2,), duration=dur(999, "months")
    )


# --- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "stop bob@x.com",
        "stop <bob@x.com>",
        "stop mailto:bob@x.com",
        "stop MAILTO:bob@x.com",
        "stop <mailto:bob@x.com>",
        "stop bob@x.com <mailto:bob@x.com>",  # an HTML link's text (Apple Mail)
        "stop bob@x.com<mailto:bob@x.com>",  # Outlook's text part
        "stop bob@x.com.",
    ],
)
def test_addresses_as_clients_write_them(text: str) -> None:
    assert command(text) == commands.Stop(email="bob@x.com")


def test_an_address_keeps_its_case() -> None:
    assert command("stop Bob@X.com") == commands.Stop(email="Bob@X.com")


def test_a_link_to_another_address_is_not_dropped() -> None:
    assert "write it as" in error("stop bob@x.com <mailto:eve@x.com>")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("stop bob", '"bob"'),
        ("stop bob@", '"bob@"'),
        ("stop bob@x,com", '"bob@x,com"'),
        ("stage bob@@x.com lead", '"bob@@x.com"'),
        ("set bob.x.com a=1", '"bob.x.com"'),
        ("referral ann from bob@x.com Ann", '"ann"'),
        ("referral ann@y.com from bob Ann", '"bob"'),
    ],
)
def test_a_bad_address_is_named(text: str, named: str) -> None:
    message = error(text)
    assert named in message
    assert "not an email address" in message


@pytest.mark.parametrize("text", ["stop", "stop bob@x.com ann@y.com", "stop Erin Park"])
def test_stop_takes_one_address(text: str) -> None:
    assert error(text) == "write it as: stop bob@x.com"


# --- stage ----------------------------------------------------------------------------


@pytest.mark.parametrize("stage", stages.STAGES)
def test_every_stage_is_known(stage: str) -> None:
    assert command(f"stage bob@x.com {stage.upper()}") == commands.Stage(
        email="bob@x.com", stage=stage
    )


def test_an_unknown_stage_lists_the_stages() -> None:
    message = error("stage bob@x.com hot")
    assert '"hot"' in message
    assert "suspect, prospect, lead, customer" in message


@pytest.mark.parametrize("text", ["stage bob@x.com", "stage bob@x.com to lead"])
def test_stage_takes_an_address_and_a_stage(text: str) -> None:
    assert error(text) == "write it as: stage bob@x.com lead"


# --- fields ---------------------------------------------------------------------------


def fields_of(text: str) -> tuple[tuple[str, str], ...]:
    cmd = command(text)
    assert isinstance(cmd, commands.Set)
    return cmd.fields


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (f'set b@x.com at="{Y}-12-03 10:00"', (("at", f"{Y}-12-03 10:00"),)),
        (f"set b@x.com at='{Y}-12-03 10:00'", (("at", f"{Y}-12-03 10:00"),)),
        ("set b@x.com city=Paris zip=75001", (("city", "Paris"), ("zip", "75001"))),
        (f"set b@x.com Appointment-At={Y}-12-03", (("appointment_at", f"{Y}-12-03"),)),
        ('set b@x.com "First Name"=Bob', (("first_name", "Bob"),)),
        ('set b@x.com note="a=b"', (("note", "a=b"),)),
        ('set b@x.com note=""', (("note", ""),)),
        ('set b@x.com note="say \\"hi\\""', (("note", 'say "hi"'),)),
        ("set b@x.com tag=#1", (("tag", "#1"),)),  # not a shell comment
        # Smart quotes: Apple Mail, iOS, Outlook's AutoCorrect; German and French ones.
        (f"set b@x.com at=“{Y}-12-03 10:00”", (("at", f"{Y}-12-03 10:00"),)),
        (f"set b@x.com at=„{Y}-12-03 10:00“", (("at", f"{Y}-12-03 10:00"),)),
        (f"set b@x.com at=«{Y}-12-03 10:00»", (("at", f"{Y}-12-03 10:00"),)),
        (f"set b@x.com at=‘{Y}-12-03 10:00’", (("at", f"{Y}-12-03 10:00"),)),
        ("set b@x.com company=O’Brien", (("company", "O’Brien"),)),  # an apostrophe stays
        ("set b@x.com company=“O’Brien & Sons”", (("company", "O’Brien & Sons"),)),
        ("set b@x.com company=‘Bob’s Diner’", (("company", "Bob’s Diner"),)),
    ],
)
def test_fields(text: str, fields: tuple[tuple[str, str], ...]) -> None:
    assert fields_of(text) == fields


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('set b@x.com note="open', "unbalanced quotes"),
        ("set b@x.com note=Bob's", "unbalanced quotes"),
        ("set b@x.com note=“open", "unbalanced quotes"),
        ("set b@x.com email=c@x.com", "email cannot be set"),
        ("set b@x.com EMAIL=c@x.com", "email cannot be set"),
        ("enroll b@x.com intro email=c@x.com", "email cannot be set"),
        ("referral a@y.com from b@x.com Ann email=c@x.com", "email cannot be set"),
        ("set b@x.com a=1 A=2", 'the field "a" is given twice'),
        ("set b@x.com lead", 'expected field=value, not "lead"'),
        ("enroll b@x.com intro tomorrow", 'expected field=value, not "tomorrow"'),
        ("set b@x.com =1", "is not a field name"),
        ("set b@x.com foo.bar=1", '"foo.bar" is not a field name'),
        ("set b@x.com 1st=1", '"1st" is not a field name'),
        ("set b@x.com", "set needs an address and at least one field=value"),
    ],
)
def test_bad_fields(text: str, expected: str) -> None:
    assert expected in error(text)


# --- enroll and referral --------------------------------------------------------------


def test_enroll_keeps_the_campaign_as_written() -> None:
    cmd = command("Enroll bob@x.com Presentation-2 city=Paris")
    assert cmd == commands.Enroll(
        email="bob@x.com", campaign="Presentation-2", fields=(("city", "Paris"),)
    )


@pytest.mark.parametrize("text", ["enroll", "enroll bob@x.com", "enroll bob@x.com a=1"])
def test_enroll_needs_an_address_and_a_campaign(text: str) -> None:
    assert error(text).startswith("write it as: enroll bob@x.com presentation")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "referral ann@y.com FROM bob@x.com Ann",
            commands.Referral(email="ann@y.com", referrer="bob@x.com", name="Ann", fields=()),
        ),
        (
            "referral ann@y.com from <bob@x.com> Ann O’Neil-Lee company=“Lee & Co”",
            commands.Referral(
                email="ann@y.com",
                referrer="bob@x.com",
                name="Ann O’Neil-Lee",
                fields=(("company", "Lee & Co"),),
            ),
        ),
    ],
)
def test_referral(text: str, expected: commands.Referral) -> None:
    assert command(text) == expected


@pytest.mark.parametrize(
    "text",
    ["referral ann@y.com bob@x.com Ann Lee", "referral ann@y.com by bob@x.com Ann", "referral"],
)
def test_referral_needs_from(text: str) -> None:
    assert error(text) == "write it as: referral ann@y.com from bob@x.com Ann Lee"


@pytest.mark.parametrize(
    "text", ["referral ann@y.com from bob@x.com", "referral ann@y.com from bob@x.com company=Lee"]
)
def test_referral_needs_a_name(text: str) -> None:
    assert "needs the new contact's name" in error(text)


# --- what is not a command ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("dnoe 3", "done"),
        ("don 3", "done"),
        ("snoze 2 3d", "snooze"),
        ("skp 4", "skip"),
        ("enrol bob@x.com intro", "enroll"),
        ("refferal ann@y.com from bob@x.com Ann", "referral"),
    ],
)
def test_a_misspelt_verb_gets_a_suggestion(text: str, suggestion: str) -> None:
    message = error(text)
    assert f'did you mean "{suggestion}"?' in message
    assert "commands: done, skip, snooze, stop, stage, enroll, set, referral" in message


@pytest.mark.parametrize("text", ["Thanks, Mike", "Hi,", "Mike", ".", "-", "3 done", "???"])
def test_other_lines_are_not_commands(text: str) -> None:
    assert error(text) == (
        "not a command (commands: done, skip, snooze, stop, stage, enroll, set, referral)"
    )


def test_at_most_100_lines_are_read() -> None:
    lines = commands.parse("\n".join(f"done {n}" for n in range(1, 131)))
    assert len(lines) == 101
    assert [line.command for line in lines[:100]] == [
        commands.Done(numbers=(n,)) for n in range(1, 101)
    ]
    assert lines[100].text == "done 101"
    assert lines[100].command is None
    assert lines[100].error == (
        "not read, nor the 29 lines after it: at most 100 lines are read from one reply"
    )


@pytest.mark.parametrize(
    ("count", "error"),
    [
        (101, "not read: at most 100 lines are read from one reply"),
        (102, "not read, nor the line after it: at most 100 lines are read from one reply"),
    ],
)
def test_the_lines_not_read_are_counted(count: int, error: str) -> None:
    lines = commands.parse("skip 1\n" * count)
    assert len(lines) == 101
    assert lines[100].error == error


def test_a_line_over_1000_characters_is_refused() -> None:
    assert command("set b@x.com note=" + "x" * (1000 - 17)) is not None
    line = one("set b@x.com note=" + "x" * (1001 - 17))
    assert line.error == "line too long (1001 characters, at most 1000)"
    assert len(line.text) == 200


def test_parse_is_fast_on_hostile_lines() -> None:
    hostile = [
        "stop " + "a@" * 400 + "<mailto:" + "b" * 100,  # backtracking bait for a link pattern
        "stop " + "." * 990 + "x",
        "set b@x.com " + '="' * 490,
        "done " + "1-" * 495,
        "snooze " + "1 " * 495,
    ]
    started = time.perf_counter()
    lines = commands.parse("\n".join(hostile * 20))
    assert time.perf_counter() - started < 1
    assert len(lines) == 100


LONG = "y" * 300


@pytest.mark.parametrize(
    "text",
    [
        LONG,
        f"done {LONG}",
        f"snooze 2 {LONG}",
        f"stop {LONG}",
        f"stop {LONG}@x.com",
        f"stage bob@x.com {LONG}",
        f"set bob@x.com {LONG}",
        f"set bob@x.com {LONG}=1 {LONG}=2",
        f'set bob@x.com "{LONG}',
        f"set bob@x.com {LONG}.x=1",
        f"referral {LONG}@y.com from bob@x.com Ann",
    ],
)
def test_errors_echo_little_of_the_line(text: str) -> None:
    message = error(text)
    assert "y" * 41 not in message
    assert "\n" not in message


def test_a_line_has_either_a_command_or_an_error() -> None:
    with pytest.raises(ValueError, match="either a command or an error"):
        commands.Line(text="done 1", command=None, error=None)
    with pytest.raises(ValueError, match="either a command or an error"):
        commands.Line(text="done 1", command=commands.Done(numbers=(1,)), error="both")


# --- properties -----------------------------------------------------------------------


# Text as mail brings it: any character, with the ones the parser looks at made likely.
_CHARS = st.one_of(
    st.characters(),
    st.sampled_from(list(" \t\n\r\u00a0\u200b,.;:#-–@<>=\"'“”‘’«»\\&0123456789")),
    st.sampled_from(["done ", "snooze ", "set b@x.com ", "referral ", " from ", "mailto:"]),
)
REPLY_TEXT = st.lists(_CHARS, max_size=80).map("".join)


def _visible(line: str) -> bool:
    return any(not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf") for c in line)


@given(REPLY_TEXT)
def test_parse_never_raises_and_gives_one_line_per_visible_line(text: str) -> None:
    lines = commands.parse(text)
    assert len(lines) == sum(map(_visible, text.splitlines()))
    for line in lines:
        assert (line.command is None) != (line.error is None)
        assert line.text == " ".join(line.text.split())
        assert 0 < len(line.text) <= commands.MAX_TEXT
        if line.error is not None:
            assert "\n" not in line.error
            assert len(line.error) < 200


@given(st.lists(st.text(), max_size=20))
def test_each_line_is_read_on_its_own(pieces: list[str]) -> None:
    text = "\n".join(pieces)
    assume(len(text.splitlines()) <= commands.MAX_LINES)
    alone = [line for piece in text.splitlines() for line in commands.parse(piece)]
    assert commands.parse(text) == alone


def _is_address(text: str) -> bool:
    try:
        addresses.normalize_address(text)
    except ValueError:
        return False
    return True


NUMBERS = st.lists(st.integers(1, 10**6), min_size=1, max_size=8, unique=True).map(tuple)
EMAILS = st.emails().filter(_is_address)
VALUES = st.text(string.ascii_letters + string.digits + " -:./,'\"\\@#&=;", max_size=30).filter(
    lambda v: " ".join(v.split()) == v
)
FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True).filter(lambda n: n != "email")
FIELDS = st.dictionaries(FIELD_NAMES, VALUES, max_size=4).map(lambda d: tuple(d.items()))
DURATIONS = st.builds(
    durations.Duration, amount=st.integers(1, 999), unit=st.sampled_from(durations.UNITS)
)
NAMES = st.lists(st.from_regex(r"[A-Z][a-z’'-]{0,10}", fullmatch=True), min_size=1, max_size=3)
COMMANDS = st.one_of(
    st.builds(commands.Done, numbers=NUMBERS),
    st.builds(commands.Skip, numbers=NUMBERS),
    st.builds(commands.Snooze, numbers=NUMBERS, duration=DURATIONS),
    st.builds(commands.Stop, email=EMAILS),
    st.builds(commands.Stage, email=EMAILS, stage=st.sampled_from(stages.STAGES)),
    st.builds(
        commands.Enroll,
        email=EMAILS,
        campaign=st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True),
        fields=FIELDS,
    ),
    st.builds(commands.Set, email=EMAILS, fields=FIELDS.filter(bool)),
    st.builds(
        commands.Referral,
        email=EMAILS,
        referrer=EMAILS,
        name=NAMES.map(" ".join),
        fields=FIELDS,
    ),
)


@given(COMMANDS)
def test_a_formatted_command_reads_back_as_itself(cmd: commands.Command) -> None:
    assert command(str(cmd)) == cmd


@given(COMMANDS, st.sampled_from(["", "- ", "1. ", "• "]), st.sampled_from(["", ".", ";"]))
def test_bullets_and_a_final_full_stop_change_nothing(
    cmd: commands.Command, bullet: str, stop: str
) -> None:
    assert command(bullet + str(cmd).replace(" ", "\u00a0") + stop) == cmd


# --- replies as mail clients send them (tests/corpus/commands) ------------------------


def reply_text(name: str) -> str:
    mail = incoming.parse((CORPUS / name).read_bytes())
    return mailtext.reply_text(mailtext.body_text(mail.message))


def test_the_corpus_is_complete() -> None:
    files = sorted(path.name for path in CORPUS.glob("*.eml"))
    assert 12 <= len(files) <= 16
    assert files == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_reply_gives_its_commands(name: str) -> None:
    lines = commands.parse(reply_text(name))
    assert [str(line.command) for line in lines if line.command] == EXPECTED[name]["commands"]
    assert sum(line.error is not None for line in lines) == EXPECTED[name]["errors"]


class _Mike:
    """classify.Known for the corpus: mike's address, and the digest he answers."""

    def sent(self, message_id: str) -> classify.SentRef | None:
        return None

    def contact(self, address: str) -> classify.ContactRef | None:
        return None

    def rep_of(self, address: str) -> str | None:
        return "mike" if address == "mike@example.com" else None

    def digest(self, message_id: str) -> str | None:
        return "mike" if message_id == DIGEST_ID else None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_reply_is_classified_as_a_command_with_that_text(name: str) -> None:
    mail = incoming.parse((CORPUS / name).read_bytes())
    # The day the corpus's replies were sent: data keeps its own date, not test time.
    verdict = classify.classify(mail, _Mike(), received=date(2026, 11, 23))
    assert verdict.cls == "command"
    assert verdict.rep == "mike"
    assert verdict.reply == reply_text(name)


def _html_part(name: str) -> str | None:
    """The HTML alternative of a multipart message."""
    message = incoming.parse((CORPUS / name).read_bytes()).message
    if not message.is_multipart():
        return None
    html = next(part for part in message.walk() if part.get_content_type() == "text/html")
    content = html.get_content()
    assert isinstance(content, str)
    return content


ALTERNATIVES = [name for name in sorted(EXPECTED) if _html_part(name) is not None]


@pytest.mark.parametrize("name", ALTERNATIVES)
def test_the_html_alternative_gives_the_same_commands(name: str) -> None:
    html = _html_part(name)
    assert html is not None
    lines = commands.parse(mailtext.reply_text(mailtext.html_to_text(html)))
    assert [str(line.command) for line in lines if line.command] == EXPECTED[name]["commands"]
    assert sum(line.error is not None for line in lines) == EXPECTED[name]["errors"]
