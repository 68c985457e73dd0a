"""The rep's commands by email: a reply to the digest, read line by line.

`parse` turns what the rep wrote (quotes and signature already cut by
`mailtext.reply_text`) into one `Line` per non-blank line: a command, or one
sentence saying why the line was not understood. Pure: no database, no I/O.
Whether task 3 exists, bob@x.com is a contact or a date is valid is for the
code that carries the commands out.

Mail clients are not typewriters: they capitalise the first word, put no-break
and zero-width spaces between words, turn quotes into smart quotes, addresses
into links and lists into bullets. All of that is read.
"""

from __future__ import annotations

import difflib
import re
import shlex
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from dripd.mail import addresses
from dripd.plan import contacts, durations, stages

MAX_LINES = 100  # lines read from one reply; the rest are ignored with one error line
MAX_LINE = 1000  # characters in one line
MAX_TEXT = 200  # characters of a line shown back in the confirmation
MAX_ECHO = 40  # characters of the rep's text quoted in an error message
MAX_RANGE = 50  # task numbers in one range such as 1-50
MAX_SNOOZE = 999  # units of one snooze: 999 months still ends before datetime.max

EXAMPLES = {
    "done": "done 1 3",
    "skip": "skip 4",
    "snooze": "snooze 2 3d",
    "stop": "stop bob@x.com",
    "stage": "stage bob@x.com lead",
    "enroll": 'enroll bob@x.com presentation appointment_at="thu 10:00"',
    "set": 'set bob@x.com appointment_at="fri 15:00"',
    "referral": "referral ann@y.com from bob@x.com Ann Lee",
}
VERBS = tuple(EXAMPLES)
ONE_DAY = durations.Duration(amount=1, unit="days")

Fields: TypeAlias = tuple[tuple[str, str], ...]


# --- commands ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """Mark tasks done (each is a touch)."""

    numbers: tuple[int, ...]

    def __str__(self) -> str:
        return _joined("done", *map(str, self.numbers))


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    """Drop tasks."""

    numbers: tuple[int, ...]

    def __str__(self) -> str:
        return _joined("skip", *map(str, self.numbers))


@dataclass(frozen=True, slots=True, kw_only=True)
class Snooze:
    """Move tasks later by a duration."""

    numbers: tuple[int, ...]
    duration: durations.Duration

    def __str__(self) -> str:
        return _joined("snooze", *map(str, self.numbers), str(self.duration))


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """End every sequence of a contact."""

    email: str

    def __str__(self) -> str:
        return _joined("stop", self.email)


@dataclass(frozen=True, slots=True, kw_only=True)
class Stage:
    """Move a contact to a stage (one of `stages.STAGES`)."""

    email: str
    stage: str

    def __str__(self) -> str:
        return _joined("stage", self.email, self.stage)


@dataclass(frozen=True, slots=True, kw_only=True)
class Enroll:
    """Start a campaign for a contact, setting fields first."""

    email: str
    campaign: str
    fields: Fields

    def __str__(self) -> str:
        return _joined("enroll", self.email, self.campaign, _fields_text(self.fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class Set:
    """Change a contact's fields (at least one)."""

    email: str
    fields: Fields

    def __str__(self) -> str:
        return _joined("set", self.email, _fields_text(self.fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class Referral:
    """A new contact referred by an existing one (who gets a thank-you card task)."""

    email: str
    referrer: str
    name: str
    fields: Fields

    def __str__(self) -> str:
        parts = ("referral", self.email, "from", self.referrer, self.name)
        return _joined(*parts, _fields_text(self.fields))


Command: TypeAlias = Done | Skip | Snooze | Stop | Stage | Enroll | Set | Referral


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One line of the reply: the command it holds, or why it holds none."""

    text: str  # as written, whitespace normalised, cut to MAX_TEXT: shown in the confirmation
    command: Command | None
    error: str | None  # one line, None when `command` is set

    def __post_init__(self) -> None:
        if (self.command is None) == (self.error is None):
            raise ValueError("a Line has either a command or an error")


def _joined(*parts: str) -> str:
    return " ".join(part for part in parts if part)


_BARE = re.compile(r"[A-Za-z0-9_@%+:/.,-]*[A-Za-z0-9_@%+:/-]")  # a value needing no quotes


def _fields_text(fields: Fields) -> str:
    return " ".join(f"{name}={_quoted(value)}" for name, value in fields)


def _quoted(value: str) -> str:
    if _BARE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- reading a reply -----------------------------------------------------------------


class _Unclear(Exception):
    """A line that is not a command; the message says why, in one line."""


def parse(text: str) -> list[Line]:
    """One `Line` per non-blank line of `text` (the first MAX_LINES); never raises."""
    lines = [line for line in map(_normalized, text.splitlines()) if line]
    parsed = [_line(line) for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        parsed.append(_ignored(lines[MAX_LINES:]))
    return parsed


# Control and format characters: zero-width spaces, byte order marks, soft hyphens,
# direction marks. Whitespace among them (tabs) separates words like any other.
_INVISIBLE = frozenset({"Cc", "Cf"})


def _normalized(line: str) -> str:
    """The line's words separated by single spaces, invisible characters dropped."""
    if not line.isprintable():
        line = "".join(c for c in line if c.isspace() or unicodedata.category(c) not in _INVISIBLE)
    return " ".join(line.split())


def _line(text: str) -> Line:
    shown = text[:MAX_TEXT]
    if len(text) > MAX_LINE:
        error = f"line too long ({len(text)} characters, at most {MAX_LINE})"
        return Line(text=shown, command=None, error=error)
    try:
        command = _command(_words(text))
    except _Unclear as exc:
        return Line(text=shown, command=None, error=str(exc))
    return Line(text=shown, command=command, error=None)


def _ignored(rest: list[str]) -> Line:
    """The line standing for all those past MAX_LINES: the first of them, with the count."""
    after = {0: "", 1: ", nor the line after it"}.get(
        len(rest) - 1, f", nor the {len(rest) - 1} lines after it"
    )
    error = f"not read{after}: at most {MAX_LINES} lines are read from one reply"
    return Line(text=rest[0][:MAX_TEXT], command=None, error=error)


_BULLET = re.compile(r"^(?:[-*•◦‣·–]|[0-9]{1,3}[.)])\s")
_TRAILING = re.compile(r"[.,;]+$")
_MAILTO = "<mailto:"


def _words(text: str) -> list[str]:
    """The line's words, without list bullet, trailing punctuation or mailto links."""
    text = _BULLET.sub("", text, count=1)
    text = _TRAILING.sub("", text)
    return _unlinked(text.split())


def _unlinked(words: list[str]) -> list[str]:
    """`words` without the link a client writes after an address it turned into one.

    Outlook's text part reads "bob@x.com<mailto:bob@x.com>", Apple Mail's
    "bob@x.com <mailto:bob@x.com>". A link to another address than the one
    shown is kept (and the line is then not understood).
    """
    kept: list[str] = []
    for word in words:
        at = word.lower().find(_MAILTO)
        if at < 0 or not word.endswith(">"):
            kept.append(word)
            continue
        shown, target = word[:at], word[at + len(_MAILTO) : -1]
        if shown and shown.lower() == target.lower():
            kept.append(shown)
        elif not shown and kept and kept[-1].lower() == target.lower():
            pass  # the address is the word before
        else:
            kept.append(word)
    return kept


def _command(words: list[str]) -> Command:
    verb = words[0].lower().rstrip(":") if words else ""
    read = _READERS.get(verb)
    if read is None:
        raise _Unclear(_not_a_command(verb))
    return read(verb, words[1:])


def _not_a_command(verb: str) -> str:
    listed = f"(commands: {', '.join(VERBS)})"
    close = difflib.get_close_matches(verb.strip(",.:;!?"), VERBS, n=1, cutoff=0.6)
    if close:
        return f'not a command: did you mean "{close[0]}"? {listed}'
    return f"not a command {listed}"


def _shown(text: str) -> str:
    """The rep's text quoted in an error message, cut to MAX_ECHO characters."""
    cut = text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"
    return f'"{cut}"'


def _usage(verb: str) -> _Unclear:
    return _Unclear(f"write it as: {EXAMPLES[verb]}")


# --- one reader a verb ---------------------------------------------------------------


def _done(verb: str, words: list[str]) -> Command:
    return Done(numbers=_numbers(verb, words))


def _skip(verb: str, words: list[str]) -> Command:
    return Skip(numbers=_numbers(verb, words))


def _snooze(verb: str, words: list[str]) -> Command:
    numbers, duration = _split_duration(words)
    return Snooze(numbers=_numbers(verb, numbers), duration=duration)


def _stop(verb: str, words: list[str]) -> Command:
    if len(words) != 1:
        raise _usage(verb)
    return Stop(email=_email(words[0]))


def _stage(verb: str, words: list[str]) -> Command:
    if len(words) != 2:
        raise _usage(verb)
    stage = words[1].lower()
    if stage not in stages.STAGES:
        raise _Unclear(f"unknown stage {_shown(words[1])} (stages: {', '.join(stages.STAGES)})")
    return Stage(email=_email(words[0]), stage=stage)


def _enroll(verb: str, words: list[str]) -> Command:
    if len(words) < 2 or "=" in words[1]:
        raise _usage(verb)
    return Enroll(email=_email(words[0]), campaign=words[1], fields=_fields(words[2:]))


def _set(verb: str, words: list[str]) -> Command:
    if len(words) < 2:
        raise _Unclear(f"set needs an address and at least one field=value: {EXAMPLES[verb]}")
    return Set(email=_email(words[0]), fields=_fields(words[1:]))


def _referral(verb: str, words: list[str]) -> Command:
    if len(words) < 3 or words[1].lower() != "from":
        raise _usage(verb)
    end = next((i for i in range(3, len(words)) if "=" in words[i]), len(words))
    if end == 3:
        raise _Unclear(f"referral needs the new contact's name: {EXAMPLES[verb]}")
    return Referral(
        email=_email(words[0]),
        referrer=_email(words[2]),
        name=" ".join(words[3:end]),
        fields=_fields(words[end:]),
    )


_READERS: dict[str, Callable[[str, list[str]], Command]] = {
    "done": _done,
    "skip": _skip,
    "snooze": _snooze,
    "stop": _stop,
    "stage": _stage,
    "enroll": _enroll,
    "set": _set,
    "referral": _referral,
}


# --- task numbers --------------------------------------------------------------------

_NUMBER_SEPARATORS = re.compile(r"(?i),|&|\band\b")
_RANGE_DASH = re.compile(r"(?<=[0-9]) ?[-–—] ?(?=#?[0-9])")  # "1 - 3", "1–3" → "1-3"
_NUMBER_TOKEN = re.compile(r"#?([0-9]+)(?:-#?([0-9]+))?")


def _numbers(verb: str, words: list[str]) -> tuple[int, ...]:
    """Task numbers from "1 3", "1,3", "1, 3 and 5", "#1 #3", "1-3"; repeats dropped."""
    text = _RANGE_DASH.sub("-", _NUMBER_SEPARATORS.sub(" ", " ".join(words)))
    tokens = text.split()
    if not tokens:
        raise _Unclear(f"{verb} needs task numbers: {EXAMPLES[verb]}")
    numbers: list[int] = []
    for token in tokens:
        numbers.extend(_task_numbers(token))
    return tuple(dict.fromkeys(numbers))


def _task_numbers(token: str) -> range:
    match = _NUMBER_TOKEN.fullmatch(token)
    if match is None:
        raise _Unclear(f"{_shown(token)} is not a task number")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if first < 1 or last < 1:
        raise _Unclear(f"{_shown(token)} is not a task number: tasks are numbered from 1")
    if last < first:
        raise _Unclear(f"the range {_shown(token)} goes backwards")
    if last - first >= MAX_RANGE:
        raise _Unclear(f"the range {_shown(token)} has more than {MAX_RANGE} tasks")
    return range(first, last + 1)


# --- durations -----------------------------------------------------------------------

_HAS_LETTER = re.compile(r"[^\W\d_]")


def _split_duration(words: list[str]) -> tuple[list[str], durations.Duration]:
    """`snooze`'s words split into task numbers and the duration that ends them.

    The duration is the last one to three words ("3d", "3 days", "2 business
    days"), "tomorrow", or absent (one day); "for" before it is allowed.
    """
    numbers, duration = _trailing_duration(words)
    if numbers and numbers[-1].lower() == "for":
        numbers = numbers[:-1]
    if not 1 <= duration.amount <= MAX_SNOOZE:
        raise _Unclear(f"snooze by 1 to {MAX_SNOOZE} {duration.unit.replace('_', ' ')}")
    return numbers, duration


def _trailing_duration(words: list[str]) -> tuple[list[str], durations.Duration]:
    if words and words[-1].lower() == "tomorrow":
        return words[:-1], ONE_DAY
    for size in (3, 2, 1):
        if len(words) >= size:
            try:
                return words[:-size], durations.parse_duration(" ".join(words[-size:]))
            except ValueError:
                continue
    if words and _HAS_LETTER.search(words[-1]):
        raise _Unclear(
            f"{_shown(words[-1])} is not a duration: write 3d, 3 days, 2 business days, "
            "1w or tomorrow"
        )
    return words, ONE_DAY


# --- addresses and fields ------------------------------------------------------------


def _email(word: str) -> str:
    """An address as written, also as "<bob@x.com>" or "mailto:bob@x.com"."""
    text = word[1:-1] if word.startswith("<") and word.endswith(">") else word
    if text[:7].lower() == "mailto:":
        text = text[7:]
    try:
        return addresses.normalize_address(text)
    except ValueError:
        raise _Unclear(f"{_shown(word)} is not an email address") from None


# Smart quotes as Apple Mail, Outlook and phones type them. A ’ between letters is an
# apostrophe (O’Brien) and stays; elsewhere it closes a quote.
_SMART_QUOTES = str.maketrans(
    {"“": '"', "”": '"', "„": '"', "‟": '"', "«": '"', "»": '"', "‘": "'", "‚": "'", "‛": "'"}
)
_CLOSING_SINGLE = re.compile(r"(?<!\w)’|’(?!\w)")


def _fields(words: list[str]) -> Fields:
    """`name=value` pairs, values in shell-like quotes; names as contacts store them."""
    if not words:
        return ()
    text = _CLOSING_SINGLE.sub("'", " ".join(words).translate(_SMART_QUOTES))
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        raise _Unclear('unbalanced quotes: put a value with spaces in "double quotes"') from None
    fields: dict[str, str] = {}
    for token in tokens:
        name, value = _field(token)
        if name in fields:
            raise _Unclear(f'the field "{name}" is given twice')
        fields[name] = value
    return tuple(fields.items())


def _field(token: str) -> tuple[str, str]:
    raw, equals, value = token.partition("=")
    if not equals:
        raise _Unclear(f"expected field=value, not {_shown(token)}")
    name = contacts.field_name(raw)
    if not contacts.CUSTOM_NAME.match(name):
        raise _Unclear(f"{_shown(raw)} is not a field name (letters, digits and _)")
    if name == "email":
        raise _Unclear("email cannot be set here: the address names the contact")
    return name, value
