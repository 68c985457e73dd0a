"""Contact values: validating what users type or import, before anything is stored.

Everything here is pure: a row of text in, validated values or a one-line
problem out. Names and companies are refused if they carry line breaks or
control characters, because they end up in email headers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dripd.mail import addresses
from dripd.plan import dates, stages

STANDARD = (
    "email",
    "first_name",
    "last_name",
    "company",
    "phone",
    "timezone",
    "owner",
    "stage",
    "status",
    "referred_by",
    "created_at",
)
TEXT_FIELDS = ("first_name", "last_name", "company", "phone")
# What `contacts export` adds of dripd's own records: an import passes over them
RECORDED = ("touches", "last_touch_at", "campaigns")
MAX_TEXT = 200  # characters in a name, company or phone
MAX_CUSTOM = 5000  # characters in a custom field value
CUSTOM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
DATE_SUFFIXES = ("_at", "_on", "_date", "_since")
DATE_NAMES = frozenset({"birthday", "anniversary"})
LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")  # what splitlines() splits on


@dataclass(frozen=True, slots=True, kw_only=True)
class Rules:
    """What contact values are checked against."""

    rep_ids: frozenset[str] = frozenset()
    date_fields: frozenset[str] = frozenset()  # custom fields that must hold dates
    default_tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # when values are typed: "thu 10:00" or "in 3 days" in a date field is fixed from it
    now: datetime | None = None
    # field name → its kind, filled as names are met (imports validate the
    # same few names 100,000 times)
    kinds: dict[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def is_date_field(self, name: str) -> bool:
        return name in self.date_fields or name in DATE_NAMES or name.endswith(DATE_SUFFIXES)


@dataclass(frozen=True, slots=True, kw_only=True)
class Values:
    """Validated contact values: `standard` holds the given standard fields (None clears)."""

    email: str | None
    standard: Mapping[str, str | None]
    custom: Mapping[str, str | None]


def field_name(raw: str) -> str:
    """A column or key name as dripd stores it: `First Name` → `first_name`."""
    return re.sub(r"[\s\-]+", "_", raw.strip()).lower()


def validate(
    raw: Mapping[str, str],
    rules: Rules,
    *,
    require_email: bool = True,
    normalized: bool = False,
    plain: bool = False,
) -> Values:
    """Validate `raw` (field → text); raises ValueError naming the first bad field.

    `normalized`: the keys already went through `field_name` (a CSV header).
    `plain`: the caller found every value ASCII without a control character
    (`addresses.is_plain` of a CSV row's cells joined): the per-value checks for control
    characters and line breaks are skipped, as they could not fail.
    """
    checks = _PLAIN_CHECKS if plain else _STANDARD_CHECKS
    standard: dict[str, str | None] = {}
    custom: dict[str, str | None] = {}
    email: str | None = None
    for key, text in raw.items():
        name = key if normalized else field_name(key)
        kind = rules.kinds.get(name) or rules.kinds.setdefault(name, _kind(name, rules))
        if kind == "recorded":
            continue
        if kind != "custom" and not plain and not LINE_BREAKS.isdisjoint(text):
            # checked before trimming: "Bob\r\n" is a broken or hostile value, not "Bob"
            raise ValueError(f"{name} contains a control character or line break")
        value = text.strip()
        if kind == "email":
            email = addresses.normalize_address(value)
        elif kind == "standard":
            standard[name] = checks[name](name, value, rules) if value else None
        elif value:
            custom[name] = _custom(name, value, rules, is_date=kind == "date", plain=plain)
        else:
            custom[name] = None
    if require_email and email is None:
        raise ValueError("email is missing")
    return Values(email=email, standard=standard, custom=custom)


def validate_changes(raw: Mapping[str, str], rules: Rules, *, new: bool = False) -> Values:
    """Fields a person sets on a contact (`set`, `enroll`, by command line or email).

    The email is the contact's identity: given only for a `new` contact.
    """
    if not new and "email" in {field_name(key) for key in raw}:
        raise ValueError("email cannot be changed with set")
    return validate(raw, rules, require_email=new)


def _kind(name: str, rules: Rules) -> str:
    """email | standard | date | custom; raises ValueError for an unusable field name."""
    if name == "email":
        return "email"
    if name in STANDARD:
        return "standard"
    if name in RECORDED:
        return "recorded"
    if not CUSTOM_NAME.match(name):
        raise ValueError(
            f"field name {name!r}: use letters, digits and underscores, starting with a letter"
        )
    return "date" if rules.is_date_field(name) else "custom"


def _text(name: str, value: str, rules: Rules) -> str:
    return _plain_text(name, addresses.clean_text(value, field=name), rules)


def _plain_text(name: str, value: str, rules: Rules) -> str:
    if len(value) > MAX_TEXT:
        raise ValueError(f"{name} is longer than {MAX_TEXT} characters")
    return value


def _owner(name: str, value: str, rules: Rules) -> str:
    if rules.rep_ids and value not in rules.rep_ids:
        raise ValueError(f"owner {value!r} is not a rep ({', '.join(sorted(rules.rep_ids))})")
    return value


def _status(name: str, value: str, rules: Rules) -> str:
    if value.lower() not in stages.STATUSES:
        raise ValueError(f"unknown status {value!r} ({', '.join(stages.STATUSES)})")
    return value.lower()


def _when(name: str, value: str, rules: Rules) -> str:
    dates.parse_when(value, rules.default_tz)
    return value


_STANDARD_CHECKS: dict[str, Callable[[str, str, Rules], str]] = {
    **dict.fromkeys(TEXT_FIELDS, _text),
    "timezone": lambda name, value, rules: check_timezone(value),
    "owner": _owner,
    "stage": lambda name, value, rules: stages.check(value.lower()),
    "status": _status,
    "referred_by": lambda name, value, rules: addresses.normalize_address(value),
    "created_at": _when,
}
_PLAIN_CHECKS = {**_STANDARD_CHECKS, **dict.fromkeys(TEXT_FIELDS, _plain_text)}


def _custom(name: str, value: str, rules: Rules, *, is_date: bool, plain: bool = False) -> str:
    if not plain:
        value = addresses.clean_text(value, field=name, multiline=True)
    if len(value) > MAX_CUSTOM:
        raise ValueError(f"{name} is longer than {MAX_CUSTOM} characters")
    if is_date:
        if rules.now is not None:
            value = dates.resolve_relative(value, rules.now, rules.default_tz) or value
        try:
            dates.parse_when(value, rules.default_tz)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
    return value


def check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like 'America/New_York')"
        ) from None
    return name


def parse_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`key=value` arguments (quotes allowed around the value) as a mapping."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r}: expected key=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        result[field_name(key)] = value
    return result
