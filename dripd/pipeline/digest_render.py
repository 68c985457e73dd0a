"""The rep's digest email: its subject, text and HTML parts, and a calendar event per call.

Pure: a `Content` (gathered by `digest`) goes in, strings and bytes come out.
Every time is shown in the rep's zone. The layout lives in two Jinja2
templates beside this module (`email_templates/digest.txt.j2` and
`digest.html.j2`); the HTML one autoescapes, so names, notes and replies are
data, never markup. The subject is made from counts only: no contact field
can reach a header through it.
"""

from __future__ import annotations

import functools
import re
import textwrap
import unicodedata
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import icalendar
import jinja2

from dripd.files import config
from dripd.mail import mime

WIDTH = 72  # columns: the text part reads in any plain-text client
CALL_LENGTH = timedelta(minutes=15)  # the calendar event's length for a call
ICS_TYPE = "text/calendar; charset=utf-8; method=PUBLISH"
PRODID = "-//dripd//digest//EN"
SLUG_LENGTH = 40  # characters of the contact's name in a .ics file name
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # not %a: no locale
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TASK_LABELS = {"call": "Call", "card": "Card", "task": "Task"}
# In the order "Since your last digest" lists them: what needs the rep first.
NEWS_LABELS = {
    "signin": "Sign-in needed",
    "reply": "Reply",
    "bounce": "Bounced",
    "blocked": "Refused by policy (your sending, not the address)",
    "unsubscribe": "Unsubscribed",
    "complaint": "Spam complaint",
    "failed": "Not sent",
    "colleague": "A colleague answered",
    "meeting": "Meeting",
    "someone": "Someone else answered",
}
# The commands as docs/rep.md ("The digest, and commands by email") lists them.
COMMANDS = (
    ("done 3 5", "mark tasks done (a touch)"),
    ("skip 4", "drop a task"),
    ("snooze 2 3d", "move a task later"),
    ("stop bob@x.com", "end every sequence of that contact"),
    ("stage bob@x.com lead", "set the contact's stage"),
    ('enroll bob@x.com presentation appointment_at="thu 10:00"', "start a campaign"),
    ('set bob@x.com appointment_at="fri 15:00"', "change a field of the contact"),
    (
        "referral ann@y.com from bob@x.com Ann Lee",
        "new contact, referred by Bob; a thank-you card task for Bob",
    ),
)
# The first run of digits (with a "+" before it, and spaces, dots, dashes, brackets
# inside it): "+1 (555) 010-0" of "Mobile: +1 (555) 010-0 ext. 12".
_TEL_NUMBER = re.compile(r"(\+?)[\s(]*(\d[\d\s().\-/]*)")


# -- what goes in ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskItem:
    """A call, card or task for the rep; `number` is what `done 3` refers to."""

    number: int
    task_id: int
    kind: str  # "call" | "card" | "task"
    due_at: datetime  # aware (UTC)
    overdue: bool
    contact_name: str  # may be "" (then the email is shown)
    email: str
    company: str
    phone: str
    note: str  # rendered note, plain text, may hold several lines
    touches: int
    campaign: str | None
    step: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewsItem:
    """Something that happened since the last digest."""

    kind: str  # "reply" | "bounce" | "blocked" | "unsubscribe" | "complaint" | "failed"
    at: datetime  # aware (UTC)
    contact_name: str
    email: str
    summary: str  # reply: its first lines; bounce: status/diagnostic; failed: the reason


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckItem:
    """A contact under five touches who has not replied."""

    contact_name: str
    email: str
    company: str
    touches: int
    last_touch_at: datetime | None
    stage: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Content:
    """Everything one digest says."""

    rep: config.RepConfig
    now: datetime  # aware
    tz: ZoneInfo  # the rep's zone: every time shown is in it
    due: tuple[TaskItem, ...]  # overdue and today's, numbered 1..k
    ahead: tuple[TaskItem, ...]  # the next 7 days, numbered k+1..
    news: tuple[NewsItem, ...]
    stuck: tuple[StuckItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    subject: str
    text: str
    html: str


# -- what comes out -------------------------------------------------------------------


def render(content: Content) -> Rendered:
    """The digest's subject, text part and HTML part."""
    subject = _subject(content)
    context = _context(content, subject)
    environment = _environment()
    return Rendered(
        subject=subject,
        text=environment.get_template("digest.txt.j2").render(context),
        html=environment.get_template("digest.html.j2").render(context),
    )


def call_events(content: Content, *, domain: str) -> list[mime.Attachment]:
    """One .ics calendar file per call in the digest (today's, overdue and the week ahead).

    The UID is the task's, so importing the event again (the next digest,
    a snoozed call) updates it instead of adding a second one.
    """
    calls = (task for task in (*content.due, *content.ahead) if task.kind == "call")
    return [_call_event(task, now=content.now, domain=domain) for task in calls]


def tel_uri(phone: str) -> str | None:
    """`tel:+15550100` for "+1 (555) 010-0 ext. 9": digits and a leading +; None without digits."""
    number = _TEL_NUMBER.search(phone)
    if number is None:
        return None
    plus, digits = number.group(1), re.sub(r"\D", "", number.group(2))
    return f"tel:{plus}{digits}"


# -- subject --------------------------------------------------------------------------


def _subject(content: Content) -> str:
    today = content.now.astimezone(content.tz).date()
    day = _day_label(today, this_year=today.year)
    kinds = [task.kind for task in content.due]
    tasks = [
        _count(kinds.count("call"), "call", "calls"),
        _count(kinds.count("card"), "card", "cards"),
        _count(len(kinds) - kinds.count("call") - kinds.count("card"), "task", "tasks"),
    ]
    replies = _count(sum(item.kind == "reply" for item in content.news), "reply", "replies")
    parts = [part for part in (*tasks, replies) if part]
    if not content.due:
        parts.insert(0, "nothing due today")
    return f"Your day, {day}: {', '.join(parts)}"


def _count(number: int, one: str, many: str) -> str:
    return "" if number == 0 else f"{number} {one if number == 1 else many}"


# -- template context -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Clock:
    """Times as the rep reads them: in their zone, relative to their today."""

    tz: ZoneInfo
    today: date

    def day(self, moment: datetime) -> str:
        return _day_label(moment.astimezone(self.tz).date(), this_year=self.today.year)

    def time(self, moment: datetime) -> str:
        return f"{moment.astimezone(self.tz):%H:%M}"

    def moment(self, moment: datetime) -> str:
        return f"{self.day(moment)} {self.time(moment)}"

    def due(self, task: TaskItem) -> str:
        """When `task` is due: `today 10:00`, `overdue since Fri 20 Nov`, `Tue 24 Nov 10:00`."""
        on_today = task.due_at.astimezone(self.tz).date() == self.today
        if task.overdue:
            since = f"{self.time(task.due_at)} today" if on_today else self.day(task.due_at)
            return f"overdue since {since}"
        return f"today {self.time(task.due_at)}" if on_today else self.moment(task.due_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Task:
    number: int
    kind: str  # "Call"
    who: str  # the name on one line, else the email
    named: bool  # whether `who` is a name (then the email is shown too)
    company: str
    email: str
    mailto: str
    phone: str
    tel: str | None
    when: str  # "overdue since Fri 20 Nov"; for the week ahead, the time
    overdue: bool
    note: str
    touches: int
    source: str  # "qualification / confirm-call", or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Day:
    label: str  # "Tue 24 Nov"
    tasks: tuple[_Task, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class _News:
    label: str  # "Reply"
    quoted: bool  # a reply's lines, shown as a quote
    who: str
    named: bool
    email: str
    mailto: str
    when: str
    summary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Stuck:
    who: str
    named: bool
    company: str
    email: str
    mailto: str
    touches: str  # "3 touches, last Fri 20 Nov"
    stage: str


def _context(content: Content, subject: str) -> dict[str, object]:
    clock = _Clock(tz=content.tz, today=content.now.astimezone(content.tz).date())
    return {
        "subject": subject,
        "first_name": mime.one_line(content.rep.first_name),
        "due": [_task(task, clock.due(task)) for task in content.due],
        "ahead": _days(content.ahead, clock),
        "news": [_news(item, clock) for item in _by_kind(content.news)],
        "stuck": [_stuck(item, clock) for item in content.stuck],
        "commands": COMMANDS,
    }


def _task(task: TaskItem, when: str) -> _Task:
    name = mime.one_line(task.contact_name)
    return _Task(
        number=task.number,
        kind=TASK_LABELS.get(task.kind, mime.one_line(task.kind).capitalize()),
        who=name or task.email,
        named=bool(name),
        company=mime.one_line(task.company),
        email=task.email,
        mailto=_mailto(task.email),
        phone=mime.one_line(task.phone),
        tel=tel_uri(task.phone),
        when=when,
        overdue=task.overdue,
        note=task.note.strip(),
        touches=task.touches,
        source=" / ".join(part for part in (task.campaign, task.step) if part),
    )


def _days(tasks: Iterable[TaskItem], clock: _Clock) -> list[_Day]:
    """The week ahead by local day, each day's tasks in the order given."""
    days: dict[date, list[_Task]] = {}
    for task in tasks:
        local = task.due_at.astimezone(clock.tz)
        days.setdefault(local.date(), []).append(_task(task, clock.time(task.due_at)))
    return [
        _Day(label=_day_label(day, this_year=clock.today.year), tasks=tuple(days[day]))
        for day in sorted(days)
    ]


def _by_kind(news: Iterable[NewsItem]) -> list[NewsItem]:
    """Replies first, then bounces, unsubscribes, complaints, failures; as given within."""
    rank = {kind: index for index, kind in enumerate(NEWS_LABELS)}
    return sorted(news, key=lambda item: rank.get(item.kind, len(rank)))


def _news(item: NewsItem, clock: _Clock) -> _News:
    name = mime.one_line(item.contact_name)
    return _News(
        label=NEWS_LABELS.get(item.kind, mime.one_line(item.kind).capitalize()),
        quoted=item.kind == "reply",
        who=name or item.email,
        named=bool(name),
        email=item.email,
        mailto=_mailto(item.email),
        when=clock.moment(item.at),
        summary=item.summary.strip(),
    )


def _stuck(item: StuckItem, clock: _Clock) -> _Stuck:
    name = mime.one_line(item.contact_name)
    touches = _count(item.touches, "touch", "touches") or "no touch"
    last = f", last {clock.day(item.last_touch_at)}" if item.last_touch_at else ""
    return _Stuck(
        who=name or item.email,
        named=bool(name),
        company=mime.one_line(item.company),
        email=item.email,
        mailto=_mailto(item.email),
        touches=touches + last,
        stage=mime.one_line(item.stage),
    )


def _mailto(address: str) -> str:
    return "mailto:" + urllib.parse.quote(address.strip(), safe="@+")


def _day_label(day: date, *, this_year: int) -> str:
    """The day as `Mon 23 Nov`, with the year when it is not `this_year`."""
    label = f"{DAY_NAMES[day.weekday()]} {day.day} {MONTH_NAMES[day.month - 1]}"
    return label if day.year == this_year else f"{label} {day.year}"


# -- templates ------------------------------------------------------------------------


@functools.cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("dripd.pipeline", "email_templates"),
        autoescape=jinja2.select_autoescape(("html.j2",), ("txt.j2",), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["wrap"] = _wrap
    return environment


def _wrap(text: str, indent: int = 0, marker: str = "", quote: str = "") -> str:
    """`text` wrapped at WIDTH, each line indented and prefixed with `quote`.

    `marker` ("12.", "-") goes right-aligned into the first line's indent.
    Line breaks in `text` are kept; long words (links) are not broken.
    """
    lines = []
    for paragraph in text.splitlines() or [""]:
        wrapped = textwrap.wrap(
            paragraph, WIDTH - indent - len(quote), break_long_words=False, break_on_hyphens=False
        )
        lines.extend(wrapped or [""])
    shown = [(" " * indent + quote + line).rstrip() for line in lines]
    if marker:
        shown[0] = (f"{marker} ".rjust(indent) + quote + lines[0]).rstrip()
    return "\n".join(shown)


# -- calendar events ------------------------------------------------------------------


def _call_event(task: TaskItem, *, now: datetime, domain: str) -> mime.Attachment:
    event = icalendar.Event()
    event.add("uid", f"dripd-task-{task.task_id}@{domain}")
    event.add("dtstamp", now.astimezone(UTC))
    # Each digest sends the event again, perhaps moved (snoozed): a later digest
    # has a higher SEQUENCE, so calendars take the new time for the same UID.
    event.add("sequence", int(now.timestamp()) // 60)
    event.add("dtstart", task.due_at.astimezone(UTC))
    event.add("duration", CALL_LENGTH)
    event.add("summary", _call_summary(task))
    event.add("description", _call_description(task))
    tel = tel_uri(task.phone)
    if tel:
        event.add("url", tel)
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("method", "PUBLISH")
    calendar.add_component(event)
    return mime.Attachment(
        filename=_ics_filename(task), content_type=ICS_TYPE, data=calendar.to_ical()
    )


def _call_summary(task: TaskItem) -> str:
    who = mime.one_line(task.contact_name) or task.email
    company = mime.one_line(task.company)
    return f"Call {who} ({company})" if company else f"Call {who}"


def _call_description(task: TaskItem) -> str:
    """The talking points, then how to reach the contact."""
    phone = mime.one_line(task.phone)
    reach = f"Phone: {phone}\nEmail: {task.email}" if phone else f"Email: {task.email}"
    note = task.note.strip()
    return f"{note}\n\n{reach}" if note else reach


def _ics_filename(task: TaskItem) -> str:
    """`call-3-ann-lee.ics`: an ASCII slug of the name, or `call-3.ics` when none is left."""
    ascii_name = unicodedata.normalize("NFKD", task.contact_name).encode("ascii", "ignore")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.decode().lower()).strip("-")
    slug = slug[:SLUG_LENGTH].rstrip("-")
    return f"call-{task.number}-{slug}.ics" if slug else f"call-{task.number}.ics"
