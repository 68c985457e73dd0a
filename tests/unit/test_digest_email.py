"""The rep's digest as the rep reads it: subject, text part, HTML part, calendar files."""

from __future__ import annotations

import re
from datetime import date, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from zoneinfo import ZoneInfo

import dates
import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dripd.files import config
from dripd.mail import mime
from dripd.pipeline import compose, digest_render

REP = config.RepConfig(id="mike", name="Mike Gulitz", email="mike@example.com")
NEW_YORK = ZoneInfo("America/New_York")
# The Monday after New York's clocks sprang forward, next year, 07:30 in New York: the
# rep's zone is UTC-4 now and was UTC-5 for anything due last week.
DAY = dates.spring_forward_monday()
NOW = dates.local(DAY, 7, 30)
MON = dates.fmt_short(DAY)  # "Mon 9 Mar"
TUE = dates.fmt_short(DAY + timedelta(days=1))
LAST_FRI = dates.fmt_short(DAY - timedelta(days=3))
LAST_TUE = dates.fmt_short(DAY - timedelta(days=6))
HOSTILE_NAME = '<script>alert("x")</script> & "Co"'


def task(**fields: Any) -> digest_render.TaskItem:
    values: dict[str, Any] = {
        "number": 1,
        "task_id": 101,
        "kind": "call",
        "due_at": dates.local(DAY, 10),  # 10:00 EDT
        "overdue": False,
        "contact_name": "Ann Lee",
        "email": "ann@acme.example",
        "company": "Acme Corp",
        "phone": "+1 (555) 010-0",
        "note": "Confirm tomorrow's demo at 10:00.",
        "touches": 4,
        "campaign": "qualification",
        "step": "confirm-call",
    }
    values.update(fields)
    return digest_render.TaskItem(**values)


def news(**fields: Any) -> digest_render.NewsItem:
    values: dict[str, Any] = {
        "kind": "reply",
        "at": dates.local(DAY, 6, 12),  # 06:12 EDT
        "contact_name": "Bob Stone",
        "email": "bob@stone.example",
        "summary": "Thanks Mike, Thursday works.\nCan you send the rates?",
    }
    values.update(fields)
    return digest_render.NewsItem(**values)


def stuck(**fields: Any) -> digest_render.StuckItem:
    values: dict[str, Any] = {
        "contact_name": "Fay Wu",
        "email": "fay@wu.example",
        "company": "Wu LLC",
        "touches": 3,
        "last_touch_at": dates.local(DAY - timedelta(days=6), 10),  # last Tuesday 10:00 EST
        "stage": "prospect",
    }
    values.update(fields)
    return digest_render.StuckItem(**values)


def content(**fields: Any) -> digest_render.Content:
    values: dict[str, Any] = {
        "rep": REP,
        "now": NOW,
        "tz": NEW_YORK,
        "due": (task(),),
        "ahead": (),
        "news": (),
        "stuck": (),
    }
    values.update(fields)
    return digest_render.Content(**values)


def full() -> digest_render.Content:
    """A digest with something in every section."""
    return content(
        due=(
            task(number=1, due_at=dates.local(DAY - timedelta(days=3), 9), overdue=True),
            task(
                number=2,
                task_id=102,
                kind="card",
                contact_name="Carl Diaz",
                email="carl@diaz.example",
                company="",
                phone="",
                note="Thank Carl for the meeting.",
                touches=2,
            ),
        ),
        ahead=(
            task(
                number=3,
                task_id=103,
                due_at=dates.local(DAY + timedelta(days=1), 22, 30),  # Tuesday 22:30 EDT
                contact_name="Dee Roe",
                email="dee@roe.example",
                company="Roe & Sons",
                phone="555-0199",
            ),
        ),
        news=(news(),),
        stuck=(stuck(),),
    )


def text_of(value: digest_render.Content) -> str:
    return digest_render.render(value).text


def html_of(value: digest_render.Content) -> str:
    return digest_render.render(value).html


def lines_after(text: str, start: str, count: int) -> list[str]:
    """`count` lines of `text` from the first that begins with `start`."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[first : first + count]


HEADINGS = (
    "Today and overdue",
    "Since your last digest",
    "Under five touches, no reply yet",
    "The week ahead",
    "Commands",
)


# -- subject --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "subject"),
    [
        (
            {
                "due": (task(number=1), task(number=2), task(number=3, kind="card")),
                "news": (news(), news(), news(), news(kind="bounce")),
            },
            f"Your day, {MON}: 2 calls, 1 card, 3 replies",
        ),
        ({"due": (task(kind="task"),)}, f"Your day, {MON}: 1 task"),
        ({"due": ()}, f"Your day, {MON}: nothing due today"),
        ({"due": (), "news": (news(),)}, f"Your day, {MON}: nothing due today, 1 reply"),
        ({"due": (), "ahead": (task(number=1),)}, f"Your day, {MON}: nothing due today"),
    ],
)
def test_subject_is_the_day_and_the_counts(fields: dict[str, Any], subject: str) -> None:
    assert digest_render.render(content(**fields)).subject == subject


def test_subject_day_is_the_reps_local_day() -> None:
    late_monday = dates.local(DAY, 22)  # Monday 22:00 in New York, Tuesday in UTC
    assert digest_render.render(content(now=late_monday)).subject.startswith(f"Your day, {MON}:")


# -- text part ------------------------------------------------------------------------


def test_text_greets_the_rep_by_first_name() -> None:
    assert text_of(content()).startswith("Hi Mike,\n\n")


def test_text_has_every_section_in_order() -> None:
    text = text_of(full())
    positions = [text.index(f"\n{heading}\n{'-' * len(heading)}\n") for heading in HEADINGS]
    assert positions == sorted(positions)
    assert "Nothing is due today." not in text


@pytest.mark.parametrize(
    ("emptied", "heading"),
    [
        ("due", "Today and overdue"),
        ("news", "Since your last digest"),
        ("stuck", "Under five touches, no reply yet"),
        ("ahead", "The week ahead"),
    ],
)
def test_an_empty_section_is_left_out(emptied: str, heading: str) -> None:
    value = content(**{**_fields(full()), emptied: ()})
    text, html = text_of(value), html_of(value)
    assert heading not in text
    assert heading not in html
    for other in HEADINGS:
        if other != heading:
            assert other in text and other in html


def _fields(value: digest_render.Content) -> dict[str, Any]:
    return {name: getattr(value, name) for name in ("due", "ahead", "news", "stuck")}


def test_nothing_due_says_so() -> None:
    value = content(due=(), news=(news(),))
    assert "Nothing is due today." in text_of(value)
    assert "Nothing is due today." in html_of(value)


def test_a_due_call_shows_what_the_rep_needs_to_make_it() -> None:
    assert lines_after(text_of(content()), "  1.", 7) == [
        "  1. Call: Ann Lee, Acme Corp",
        "     today 10:00",
        "     phone: +1 (555) 010-0",
        "     email: ann@acme.example",
        "     touches: 4   step: qualification / confirm-call",
        "       Confirm tomorrow's demo at 10:00.",
        "",
    ]


def test_a_contact_without_a_name_is_shown_by_email_once() -> None:
    text = text_of(content(due=(task(contact_name="", company="", phone="", step=None),)))
    assert lines_after(text, "  1.", 3) == [
        "  1. Call: ann@acme.example",
        "     today 10:00",
        "     touches: 4   step: qualification",
    ]


def test_a_note_of_several_lines_stays_indented_and_wrapped() -> None:
    note = "Ask about the rates.\n\n" + "Bring the thirty-year fixed comparison sheet " * 3
    text = text_of(content(due=(task(note=note),)))
    assert lines_after(text, "       Ask about", 6) == [
        "       Ask about the rates.",
        "",
        "       Bring the thirty-year fixed comparison sheet Bring the",
        "       thirty-year fixed comparison sheet Bring the thirty-year fixed",
        "       comparison sheet",
        "",
    ]


def test_numbers_are_the_ones_given_in_the_order_given() -> None:
    value = content(
        due=(task(number=7, contact_name="Gil"), task(number=2, contact_name="Hal")),
        ahead=(task(number=12, contact_name="Ivy", due_at=NOW + timedelta(days=2)),),
    )
    text = text_of(value)
    assert text.index("  7. Call: Gil") < text.index("  2. Call: Hal") < text.index(" 12. ")
    html = html_of(value)
    assert html.index(">7.</td>") < html.index(">2.</td>") < html.index(">12.</td>")


def test_times_are_in_the_reps_zone_across_daylight_saving() -> None:
    value = content(
        due=(
            # Friday 09:00 EST (UTC-5): last week, before the change
            task(number=1, due_at=dates.local(DAY - timedelta(days=3), 9), overdue=True),
            # 06:00 EDT (UTC-4) this morning, already past at 07:30
            task(number=2, due_at=dates.local(DAY, 6), overdue=True),
            task(number=3, due_at=dates.local(DAY, 16, 15)),  # 16:15 EDT
        ),
        # 02:30 UTC on Wednesday is 22:30 on Tuesday in New York
        ahead=(task(number=4, due_at=dates.local(DAY + timedelta(days=1), 22, 30)),),
    )
    text = text_of(value)
    assert lines_after(text, "  1.", 2)[1] == f"     overdue since {LAST_FRI}"
    assert lines_after(text, "  2.", 2)[1] == "     overdue since 06:00 today"
    assert lines_after(text, "  3.", 2)[1] == "     today 16:15"
    assert lines_after(text, TUE, 2) == [
        TUE,
        "  4. 22:30 Call: Ann Lee, Acme Corp",
    ]
    assert dates.fmt_short(DAY + timedelta(days=2)) not in text
    html = html_of(value)
    assert f"overdue since {LAST_FRI}" in html
    assert TUE in html and "22:30" in html


def test_a_date_in_another_year_shows_the_year() -> None:
    december = date(DAY.year - 1, 12, 30)  # 30 December of last year
    last_year = dates.local(december, 10)
    text = text_of(content(due=(task(due_at=last_year, overdue=True),)))
    assert f"overdue since {dates.fmt_short(december)} {december.year}" in text


def test_the_week_ahead_is_grouped_by_day() -> None:
    tuesday = dates.local(DAY + timedelta(days=1), 9)  # 09:00 EDT
    value = content(
        due=(),
        ahead=(
            task(number=1, due_at=tuesday, contact_name="Gil", phone="555 0101"),
            task(
                number=2,
                due_at=tuesday + timedelta(hours=5),
                kind="card",
                contact_name="Hal",
                phone="",
            ),
            task(
                number=3,
                due_at=tuesday + timedelta(days=2),
                kind="task",
                contact_name="Ivy",
                phone="",
            ),
        ),
    )
    assert lines_after(text_of(value), TUE, 8) == [
        TUE,
        "  1. 09:00 Call: Gil, Acme Corp",
        "     phone: 555 0101",
        "  2. 14:00 Card: Hal, Acme Corp",
        "",
        dates.fmt_short(DAY + timedelta(days=3)),
        "  3. 09:00 Task: Ivy, Acme Corp",
        "",
    ]


def test_news_lists_replies_first_with_their_lines_quoted() -> None:
    value = content(
        news=(
            news(kind="bounce", contact_name="Eve Poe", email="eve@old.example", summary="5.1.1"),
            news(),
            news(kind="unsubscribe", contact_name="", email="ua@x.example", summary=""),
            news(kind="complaint", contact_name="Cy", email="cy@x.example", summary=""),
            news(
                kind="failed", contact_name="Flo", email="flo@x.example", summary="no such domain"
            ),
        )
    )
    text = text_of(value)
    section = text[text.index("Since your last digest") : text.index("Commands")]
    assert section.splitlines()[3:15] == [
        f"- Reply: Bob Stone <bob@stone.example>, {MON} 06:12",
        "    > Thanks Mike, Thursday works.",
        "    > Can you send the rates?",
        "",
        f"- Bounced: Eve Poe <eve@old.example>, {MON} 06:12",
        "    5.1.1",
        "",
        f"- Unsubscribed: ua@x.example, {MON} 06:12",
        "",
        f"- Spam complaint: Cy <cy@x.example>, {MON} 06:12",
        "",
        f"- Not sent: Flo <flo@x.example>, {MON} 06:12",
    ]
    assert "    no such domain" in section


def test_stuck_contacts_come_with_the_reason_to_keep_going() -> None:
    text = text_of(content(stuck=(stuck(), stuck(contact_name="", touches=1, last_touch_at=None))))
    assert "80% of sales happen after the fifth contact" in text
    assert lines_after(text, "- Fay Wu", 2) == [
        "- Fay Wu, Wu LLC <fay@wu.example>",
        f"    3 touches, last {LAST_TUE}; stage: prospect",
    ]
    assert lines_after(text, "- fay@wu.example", 2) == [
        "- fay@wu.example, Wu LLC",
        "    1 touch; stage: prospect",
    ]


SPEC_COMMANDS = (
    "done 3 5",
    "skip 4",
    "snooze 2 3d",
    "stop bob@x.com",
    "stage bob@x.com lead",
    'enroll bob@x.com presentation appointment_at="thu 10:00"',
    'set bob@x.com appointment_at="fri 15:00"',
    "referral ann@y.com from bob@x.com Ann Lee",
)


@pytest.mark.parametrize("value", [content(), content(due=())])
def test_the_reply_commands_are_explained(value: digest_render.Content) -> None:
    text = text_of(value)
    commands = text[text.index("\nCommands\n") :]
    for command in SPEC_COMMANDS:
        assert re.search(rf"^  {re.escape(command)}(  |$)", commands, re.MULTILINE), command
    assert "  done 3 5          mark tasks done (a touch)" in commands
    html = html_of(value)
    for command in SPEC_COMMANDS:
        assert ">" + command.replace('"', "&#34;") + "</code>" in html, command


def test_text_fits_72_columns_without_trailing_whitespace() -> None:
    long = "Acme Mortgage Planning and Insurance Brokerage of Greater Springfield"
    value = content(
        due=(task(company=long, note="word " * 40 + "\n  indented line  \n\n"),),
        news=(news(summary="reply " * 30),),
        stuck=(stuck(company=long),),
        ahead=(task(number=2, company=long, due_at=NOW + timedelta(days=1)),),
    )
    for line in text_of(value).splitlines():
        assert len(line) <= digest_render.WIDTH, line
        assert line == line.rstrip(), repr(line)


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(max_size=40),
    note=st.text(max_size=200),
    summary=st.text(max_size=200),
)
def test_no_trailing_whitespace_whatever_the_contact_data(
    name: str, note: str, summary: str
) -> None:
    value = content(
        due=(task(contact_name=name, company=name, note=note),),
        news=(news(contact_name=name, summary=summary),),
        stuck=(stuck(contact_name=name),),
    )
    rendered = digest_render.render(value)
    for line in rendered.text.split("\n"):
        assert line == line.rstrip(), repr(line)
    assert rendered.subject == digest_render.render(content(news=(news(),))).subject


# -- hostile contact data ---------------------------------------------------------------


def hostile() -> digest_render.Content:
    note = 'Ask about "rates" & <b>terms</b>\n<script>steal()</script>'
    return content(
        due=(task(contact_name=HOSTILE_NAME, company="A&B <Co>", note=note, phone='5"55<'),),
        ahead=(task(number=2, contact_name=HOSTILE_NAME, due_at=NOW + timedelta(days=1)),),
        news=(news(contact_name=HOSTILE_NAME, summary="<script>x</script> & more"),),
        stuck=(stuck(contact_name=HOSTILE_NAME, company="<i>Wu</i>", stage="<b>lead</b>"),),
    )


def test_contact_data_is_escaped_in_html() -> None:
    html = html_of(hostile())
    assert "<script" not in html.lower()
    assert "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;Co&#34;" in html
    assert "Ask about &#34;rates&#34; &amp; &lt;b&gt;terms&lt;/b&gt;<br>&lt;script&gt;" in html
    assert "A&amp;B &lt;Co&gt;" in html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; more" in html
    assert "&lt;i&gt;Wu&lt;/i&gt;" in html and "&lt;b&gt;lead&lt;/b&gt;" in html


def test_html_is_self_contained() -> None:
    html = html_of(full())
    assert html.startswith("<!DOCTYPE html>")
    for banned in ("<script", "<link", "<img", "<style", "src=", "http:", "https:", "url("):
        assert banned not in html.lower(), banned
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs and all(href.startswith(("tel:", "mailto:")) for href in hrefs)


def test_contact_data_text_is_plain_in_the_text_part() -> None:
    text = text_of(hostile())
    assert f"  1. Call: {HOSTILE_NAME}, A&B <Co>" in text
    assert "&amp;" not in text and "&lt;" not in text


def test_a_name_with_a_line_break_stays_on_its_line() -> None:
    name = "Ann\r\nBcc: x@evil.com\nSubject: hi"
    value = content(
        due=(task(contact_name=name),),
        news=(news(contact_name=name),),
        stuck=(stuck(contact_name=name),),
    )
    rendered = digest_render.render(value)
    assert rendered.subject == f"Your day, {MON}: 1 call, 1 reply"
    assert "  1. Call: Ann Bcc: x@evil.com Subject: hi, Acme Corp" in rendered.text
    assert not re.search(r"^(Bcc|Subject):", rendered.text, re.MULTILINE)
    assert "Ann Bcc: x@evil.com Subject: hi" in rendered.html
    (event,) = digest_render.call_events(value, domain="example.com")
    assert calendar_event(event)["SUMMARY"] == "Call Ann Bcc: x@evil.com Subject: hi (Acme Corp)"


def test_subject_never_holds_contact_data() -> None:
    subject = digest_render.render(hostile()).subject
    assert subject == f"Your day, {MON}: 1 call, 1 reply"


# -- links --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "uri"),
    [
        ("+1 (555) 010-0", "tel:+15550100"),
        ("555-0100", "tel:5550100"),
        ("+49 30 1234.56", "tel:+4930123456"),
        ("Mobile: +44 20 7946 0000", "tel:+442079460000"),
        ("555-0100 ext. 12", "tel:5550100"),
        ("(555) 010 0 x 9", "tel:5550100"),
        ("", None),
        ("ask reception", None),
        ("+", None),
    ],
)
def test_tel_uri(phone: str, uri: str | None) -> None:
    assert digest_render.tel_uri(phone) == uri


def test_phones_and_emails_are_links_in_html() -> None:
    value = content(
        due=(task(), task(number=2, task_id=102, phone="reception", email="b@x.example"))
    )
    html = html_of(value)
    assert '<a href="tel:+15550100" style="color:#1a5fb4">+1 (555) 010-0</a>' in html
    assert 'href="mailto:ann@acme.example"' in html
    assert "phone: reception<br>" in html
    assert html.count('href="tel:') == 1


# -- calendar events ----------------------------------------------------------------------


def calendar_of(attachment: mime.Attachment) -> icalendar.Calendar:
    return icalendar.Calendar.from_ical(attachment.data)


def calendar_event(attachment: mime.Attachment) -> icalendar.Event:
    (event,) = calendar_of(attachment).walk("VEVENT")
    assert isinstance(event, icalendar.Event)
    return event


def test_one_calendar_file_per_call_due_and_ahead() -> None:
    events = digest_render.call_events(full(), domain="example.com")
    assert [event.filename for event in events] == ["call-1-ann-lee.ics", "call-3-dee-roe.ics"]
    assert {event.content_type for event in events} == {digest_render.ICS_TYPE}


def test_call_event_has_what_the_calendar_needs() -> None:
    (attachment,) = digest_render.call_events(content(), domain="example.com")
    calendar = calendar_of(attachment)
    assert str(calendar["VERSION"]) == "2.0"
    assert str(calendar["PRODID"]) == "-//dripd//digest//EN"
    assert str(calendar["METHOD"]) == "PUBLISH"
    event = calendar_event(attachment)
    assert str(event["UID"]) == "dripd-task-101@example.com"
    assert event.decoded("DTSTART") == dates.local(DAY, 10)
    assert event.decoded("DTSTAMP") == NOW
    assert event.decoded("DURATION") == timedelta(minutes=15)
    assert str(event["SUMMARY"]) == "Call Ann Lee (Acme Corp)"
    assert str(event["DESCRIPTION"]) == (
        "Confirm tomorrow's demo at 10:00.\n\nPhone: +1 (555) 010-0\nEmail: ann@acme.example"
    )
    assert str(event["URL"]) == "tel:+15550100"
    assert attachment.data.startswith(b"BEGIN:VCALENDAR\r\n")


def test_call_event_uid_is_the_same_in_every_digest() -> None:
    first = digest_render.call_events(content(), domain="example.com")[0]
    later = content(now=NOW + timedelta(days=1), due=(task(due_at=NOW + timedelta(days=1)),))
    second = digest_render.call_events(later, domain="example.com")[0]
    assert calendar_event(first)["UID"] == calendar_event(second)["UID"]
    # ...and a later digest's copy (perhaps snoozed to a new time) supersedes the earlier
    assert calendar_event(second).decoded("SEQUENCE") > calendar_event(first).decoded("SEQUENCE")
    assert calendar_event(first).decoded("DTSTART") != calendar_event(second).decoded("DTSTART")


def test_call_event_without_a_number_or_company_or_note() -> None:
    call = task(phone="ask reception", company="", note="")
    event = calendar_event(digest_render.call_events(content(due=(call,)), domain="x.example")[0])
    assert "URL" not in event
    assert str(event["SUMMARY"]) == "Call Ann Lee"
    assert str(event["DESCRIPTION"]) == "Phone: ask reception\nEmail: ann@acme.example"


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("Jörg Müller-Lüdenscheidt", "call-5-jorg-muller-ludenscheidt.ics"),
        (HOSTILE_NAME, "call-5-script-alert-x-script-co.ics"),
        ("日本 太郎", "call-5.ics"),
        ("", "call-5.ics"),
        ("A" * 80, f"call-5-{'a' * 40}.ics"),
    ],
)
def test_call_event_file_name_is_an_ascii_slug(name: str, filename: str) -> None:
    value = content(due=(task(number=5, contact_name=name),))
    (attachment,) = digest_render.call_events(value, domain="example.com")
    assert attachment.filename == filename


def test_hostile_data_reads_back_exactly_from_the_calendar() -> None:
    value = content(due=(task(contact_name=HOSTILE_NAME, company="A;B,C", note="a\nb; c, d"),))
    event = calendar_event(digest_render.call_events(value, domain="example.com")[0])
    assert str(event["SUMMARY"]) == f"Call {HOSTILE_NAME} (A;B,C)"
    assert str(event["DESCRIPTION"]).startswith("a\nb; c, d\n\n")


# -- the whole message --------------------------------------------------------------------


def test_the_digest_builds_into_one_email_a_client_reads() -> None:
    value = full()
    rendered = digest_render.render(value)
    events = digest_render.call_events(value, domain="example.com")
    email = compose.Email(
        sender=REP,
        to=REP.email,
        to_name=REP.name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        attachments=tuple(events),
    )
    data = mime.build(email, msgid="<dripd.ab.digest.mike.1@example.com>", date=NOW).as_bytes()
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    assert str(message["Subject"]) == f"Your day, {MON}: 1 call, 1 card, 1 reply"
    types = [part.get_content_type() for part in message.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "text/calendar",
        "text/calendar",
    ]
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == rendered.text
    assert html.get_content().replace("\r\n", "\n") == rendered.html
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == [e.filename for e in events]
    assert attachments[0].get_param("method") == "PUBLISH"
    first = icalendar.Calendar.from_ical(attachments[0].get_payload(decode=True))
    assert [str(event["UID"]) for event in first.walk("VEVENT")] == ["dripd-task-101@example.com"]
