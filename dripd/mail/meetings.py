"""Meetings from calendar emails (iTIP, RFC 5546): an invitation or acceptance sets the date.

A contact who sends an invitation (`METHOD:REQUEST`) or accepts the rep's
(`METHOD:REPLY` with their `PARTSTAT=ACCEPTED` or `TENTATIVE`) has booked a
meeting: its start becomes their `appointment_at`, and the steps anchored to
it move. A decline (`PARTSTAT=DECLINED`) or a cancellation (`METHOD:CANCEL`)
clears it. Pure: a message in, a `Meeting` or None out; never raises.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from email.message import EmailMessage, Message
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dripd.mail import reading
from dripd.mail.addresses import address_key

CALENDAR_TYPES = ("text/calendar", "application/ics")
MAX_CALENDAR = 256 * 1024  # bytes of one calendar part
ALL_DAY_TIME = time(9, 0)  # an all-day event "starts" at 09:00 in the contact's zone


@dataclass(frozen=True, slots=True, kw_only=True)
class Meeting:
    """What a calendar email says about the meeting with the person who sent it."""

    action: Literal["set", "clear"]
    start: datetime | None  # None when cleared; naive: a floating or all-day time (local)
    title: str
    why: str  # "accepted the invitation", "declined", "cancelled the meeting", …


def read(message: EmailMessage, sender: str) -> Meeting | None:
    """The meeting `sender` booked, declined or cancelled in `message`, if it holds one."""
    for part in _calendar_parts(message):
        meeting = _from_calendar(part, address_key(sender))
        if meeting is not None:
            return meeting
    return None


def _calendar_parts(message: Message) -> list[bytes]:
    found: list[bytes] = []
    for part in reading.parts(message, into_messages=True):
        named = reading.filename(part).lower().endswith(".ics")
        if part.get_content_type() in CALENDAR_TYPES or named:
            data = part.get_payload(decode=True)
            if isinstance(data, bytes) and 0 < len(data) <= MAX_CALENDAR:
                found.append(data)
    return found


def _from_calendar(data: bytes, sender: str) -> Meeting | None:
    import icalendar

    try:
        calendar = icalendar.Calendar.from_ical(data)
        method = str(calendar.get("METHOD", "")).upper()
        events = list(calendar.walk("VEVENT"))
    except (ValueError, TypeError, AttributeError, OSError):
        # A broken calendar part: no meeting. icalendar raises more than ValueError on one:
        # a timezone without its fields (AttributeError), an RRULE without FREQ (TypeError),
        # a TZID naming a folder of the zoneinfo tree (IsADirectoryError).
        return None
    for event in events:
        meeting = _from_event(event, method, sender)
        if meeting is not None:
            return meeting
    return None


def _from_event(event: Any, method: str, sender: str) -> Meeting | None:
    title = " ".join(str(event.get("SUMMARY", "")).split())[:200]
    if method == "CANCEL":
        return Meeting(action="clear", start=None, title=title, why="cancelled the meeting")
    start = _start(event)
    if method == "REQUEST" and start is not None:
        return Meeting(action="set", start=start, title=title, why="sent an invitation")
    if method != "REPLY":
        return None
    answer = _answer_of(event, sender)
    if answer == "DECLINED":
        return Meeting(action="clear", start=None, title=title, why="declined the meeting")
    if answer in ("ACCEPTED", "TENTATIVE") and start is not None:
        why = "accepted the invitation" if answer == "ACCEPTED" else "accepted tentatively"
        return Meeting(action="set", start=start, title=title, why=why)
    return None


def _answer_of(event: Any, sender: str) -> str | None:
    """The PARTSTAT of the attendee who is `sender` (a lone attendee is the one replying)."""
    attendees = event.get("ATTENDEE")
    listed = attendees if isinstance(attendees, list) else [attendees] if attendees else []
    answers = {
        address_key(str(a).removeprefix("mailto:").removeprefix("MAILTO:")): str(
            a.params.get("PARTSTAT", "")
        ).upper()
        for a in listed
    }
    if sender in answers:
        return answers[sender]
    return next(iter(answers.values())) if len(answers) == 1 else None


def _start(event: Any) -> datetime | None:
    try:
        value = event.decoded("DTSTART")
    except (KeyError, ValueError):
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, ALL_DAY_TIME)
    return None


def local_text(start: datetime, tz: ZoneInfo) -> str:
    """The start as dripd keeps a date field: a wall time in the contact's zone."""
    local = start.astimezone(tz) if start.tzinfo is not None else start
    return f"{local:%Y-%m-%d %H:%M}"
