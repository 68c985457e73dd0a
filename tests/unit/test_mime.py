"""The email a contact receives, as a mail client parses it back."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import dates
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.files import config
from dripd.mail import addresses, mime
from dripd.pipeline import compose

REP = config.RepConfig(id="mike", name="Mike Gulitz", email="mike@example.com")
WHEN = dates.local(dates.weekday_after(dates.today(), dates.MONDAY, weeks=52), 14, 30, tz=UTC)
MSGID = "<dripd.ab12cd34.e7.thank-you.1@example.com>"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def make_email(**fields: Any) -> compose.Email:
    values: dict[str, Any] = {
        "sender": REP,
        "to": "ann@example.org",
        "to_name": "Ann Lee",
        "subject": "Thank you for your time, Ann",
        "text": "Hi Ann,\n\nThanks for meeting me today.\n",
        "html": None,
        "attachments": (),
    }
    values.update(fields)
    return compose.Email(**values)


def raw(email: compose.Email, **kwargs: Any) -> bytes:
    kwargs.setdefault("msgid", MSGID)
    kwargs.setdefault("date", WHEN)
    return mime.build(email, **kwargs).as_bytes()


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def built(email: compose.Email, **kwargs: Any) -> EmailMessage:
    return parse(raw(email, **kwargs))


def content(part: MIMEPart | None) -> str:
    """A text part's content with line ends as a mail client shows them."""
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def header_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


# -- headers ----------------------------------------------------------------------


def test_headers_a_mail_client_shows() -> None:
    data = raw(make_email(), unsubscribe="mike@example.com")
    message = parse(data)
    assert str(message["From"]) == "Mike Gulitz <mike@example.com>"
    assert str(message["To"]) == "Ann Lee <ann@example.org>"
    assert message["To"].addresses[0].display_name == "Ann Lee"
    assert message["To"].addresses[0].addr_spec == "ann@example.org"
    assert str(message["Subject"]) == "Thank you for your time, Ann"
    assert message["Date"].datetime == WHEN
    assert str(message["Message-ID"]) == MSGID
    assert str(message["List-Unsubscribe"]) == "<mailto:mike@example.com?subject=unsubscribe>"
    assert str(message["MIME-Version"]) == "1.0"
    assert message["In-Reply-To"] is None and message["References"] is None
    assert not message.defects
    # Wire format: CRLF line ends, 7-bit headers.
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b"")
    assert head.isascii()


def test_built_message_exposes_its_main_headers() -> None:
    message = mime.build(make_email(), msgid=MSGID, date=WHEN)
    assert message["Message-ID"] == MSGID
    assert message["Subject"] == "Thank you for your time, Ann"


def test_no_unsubscribe_header_unless_asked() -> None:
    assert built(make_email())["List-Unsubscribe"] is None


def test_contact_without_a_name_gets_the_bare_address() -> None:
    message = built(make_email(to_name=""))
    assert str(message["To"]) == "ann@example.org"


def test_subject_whitespace_is_collapsed() -> None:
    message = built(make_email(subject="  Thank   you,\tAnn  "))
    assert str(message["Subject"]) == "Thank you, Ann"


def test_long_references_and_subject_fold_and_unfold_exactly() -> None:
    refs = tuple(f"<dripd.ab12cd34.e7.step-{i}.1@example.com>" for i in range(12))
    long_word = "x" * 120
    message = built(
        make_email(),
        thread=mime.Thread(subject=f"Thank you {long_word} and more words", references=refs),
    )
    assert str(message["References"]) == " ".join(refs)
    assert str(message["Subject"]) == f"Re: Thank you {long_word} and more words"
    assert not message.defects


# -- body -------------------------------------------------------------------------


def test_text_and_html_make_a_multipart_alternative() -> None:
    text = "Hi Jörg,\n\nGrüße aus 日本 — see you soon.\n"
    html = "<p>Hi Jörg,</p>\n<p>Grüße aus 日本 — see you soon.</p>\n"
    message = built(make_email(text=text, html=html))
    assert message.get_content_type() == "multipart/alternative"
    plain, rich = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert rich.get_content_type() == "text/html"
    assert plain.get_content_charset() == "utf-8"
    assert rich.get_content_charset() == "utf-8"
    assert content(plain) == text
    assert content(rich) == html
    assert content(message.get_body(("plain",))) == text
    assert content(message.get_body(("html",))) == html


def test_text_only_when_there_is_no_html() -> None:
    text = "Hi Ann,\n\nThanks.\n"
    message = built(make_email(text=text))
    assert not message.is_multipart()
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert content(message) == text


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        st.characters(codec="utf-8", exclude_characters="\r"),
        max_size=300,
    )
)
def test_any_body_text_reads_back_exactly(text: str) -> None:
    text = text.rstrip("\n") + "\n"
    message = built(make_email(text=text, html=f"<p>{text}</p>\n"))
    plain, rich = message.iter_parts()
    assert content(plain) == text
    assert content(rich) == f"<p>{text}</p>\n"


# -- attachments ------------------------------------------------------------------


def test_pdf_attachment_in_multipart_mixed(tmp_path: Path) -> None:
    pdf = tmp_path / "Proposal Lee.pdf"
    pdf.write_bytes(PDF)
    message = built(make_email(attachments=(pdf,)))
    assert message.get_content_type() == "multipart/mixed"
    body = message.get_body(("plain",))
    assert body is not None
    assert content(body) == "Hi Ann,\n\nThanks for meeting me today.\n"
    (attachment,) = message.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "Proposal Lee.pdf"
    assert attachment.get_content() == PDF


def test_attachment_with_html_keeps_the_alternative_inside_mixed(tmp_path: Path) -> None:
    pdf = tmp_path / "Angebot Müller.pdf"
    pdf.write_bytes(PDF)
    sheet = tmp_path / "rates.csv"
    sheet.write_text("rate,term\n6.1,30\n")
    message = built(make_email(html="<p>Hi</p>\n", attachments=(pdf, sheet)))
    assert message.get_content_type() == "multipart/mixed"
    first, *attachments = message.iter_parts()
    assert first.get_content_type() == "multipart/alternative"
    assert [a.get_filename() for a in attachments] == ["Angebot Müller.pdf", "rates.csv"]
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content() == PDF
    assert attachments[1].get_content_type() == "text/csv"


def test_a_line_break_in_a_file_name_cannot_add_a_part_header(tmp_path: Path) -> None:
    odd = tmp_path / "a\r\nContent-Type: text-html.pdf"
    odd.write_bytes(PDF)
    message = built(make_email(attachments=(odd,)))
    (attachment,) = message.iter_attachments()
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_filename() == odd.name
    assert len(attachment.get_all("Content-Type") or []) == 1


def test_missing_attachment_raises(tmp_path: Path) -> None:
    with pytest.raises(mime.MissingAttachment):
        mime.build(make_email(attachments=(tmp_path / "proposal.pdf",)), msgid=MSGID, date=WHEN)


def test_a_folder_is_not_an_attachment(tmp_path: Path) -> None:
    with pytest.raises(mime.MissingAttachment):
        mime.build(make_email(attachments=(tmp_path,)), msgid=MSGID, date=WHEN)


ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:PUBLISH\r\nEND:VCALENDAR\r\n"
ICS_TYPE = "text/calendar; charset=utf-8; method=PUBLISH"


def ics(filename: str = "call-1-ann-lee.ics", content_type: str = ICS_TYPE) -> mime.Attachment:
    return mime.Attachment(filename=filename, content_type=content_type, data=ICS)


def test_in_memory_attachment_keeps_its_type_name_and_bytes() -> None:
    message = built(make_email(html="<p>Hi</p>\n", attachments=(ics(),)))
    assert message.get_content_type() == "multipart/mixed"
    first, attachment = message.iter_parts()
    assert first.get_content_type() == "multipart/alternative"
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "PUBLISH"
    assert attachment.get_content_charset() == "utf-8"
    assert attachment["Content-Transfer-Encoding"] == "base64"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "call-1-ann-lee.ics"
    assert attachment.get_payload(decode=True) == ICS
    assert not message.defects


def test_files_and_in_memory_attachments_mix_in_order(tmp_path: Path) -> None:
    pdf = tmp_path / "proposal.pdf"
    pdf.write_bytes(PDF)
    message = built(make_email(attachments=(ics("call-1.ics"), pdf, ics("Anruf Jörg.ics"))))
    parts = list(message.iter_attachments())
    assert [p.get_filename() for p in parts] == ["call-1.ics", "proposal.pdf", "Anruf Jörg.ics"]
    assert [p.get_content_type() for p in parts] == [
        "text/calendar",
        "application/pdf",
        "text/calendar",
    ]
    assert [p.get_payload(decode=True) for p in parts] == [ICS, PDF, ICS]


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x00", "\x7f"])
def test_in_memory_attachment_name_with_a_control_character_is_refused(brk: str) -> None:
    with pytest.raises(ValueError, match="control character"):
        raw(make_email(attachments=(ics(f"call.ics{brk}Content-Type: text/html"),)))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/calendar\r\nBcc: x@evil.com",
        "text/calendar; method=PUBLISH\nContent-Disposition: inline",
        "text/calendar\x00",
        "calendar",
        "",
        "text/calendar; name=Jörg",
    ],
)
def test_a_content_type_that_is_not_one_header_value_is_refused(content_type: str) -> None:
    with pytest.raises(ValueError, match="not a content type"):
        raw(make_email(attachments=(ics(content_type=content_type),)))


def test_in_memory_attachment_has_the_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mime, "MAX_ATTACHMENT", len(ICS) - 1)
    with pytest.raises(ValueError, match="larger than"):
        raw(make_email(attachments=(ics(),)))


# -- threading --------------------------------------------------------------------


def test_follow_up_replies_in_the_thread() -> None:
    thread = mime.Thread(subject="Thank you, Ann", references=("<a@x>", "<b@x>"))
    message = built(make_email(subject="Ignored in a thread"), thread=thread)
    assert str(message["Subject"]) == "Re: Thank you, Ann"
    assert str(message["In-Reply-To"]) == "<b@x>"
    assert str(message["References"]) == "<a@x> <b@x>"


@pytest.mark.parametrize("subject", ["Re: Thank you, Ann", "RE: Thank you, Ann", "re: hi"])
def test_re_is_not_doubled(subject: str) -> None:
    thread = mime.Thread(subject=subject, references=("<a@x>",))
    assert str(built(make_email(), thread=thread)["Subject"]) == subject


def test_a_thread_without_references_is_a_first_message() -> None:
    message = built(make_email(), thread=mime.Thread(subject="Old", references=()))
    assert str(message["Subject"]) == "Thank you for your time, Ann"
    assert message["In-Reply-To"] is None and message["References"] is None


# -- non-ASCII ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Jörg Müller", "Zoë", "日本 太郎", "Zoë Ångström-Øre", "Ann “Annie” Lee", "🙂 Ann"],
)
def test_non_ascii_names_and_subjects_are_encoded_and_decode_exactly(text: str) -> None:
    rep = config.RepConfig(id="zoe", name=text, email="zoe@example.com")
    data = raw(make_email(sender=rep, to_name=text, subject=f"Grüße, {text}"))
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head.lower()
    message = parse(data)
    assert message["From"].addresses[0].display_name == text
    assert message["From"].addresses[0].addr_spec == "zoe@example.com"
    assert message["To"].addresses[0].display_name == text
    assert str(message["Subject"]) == f"Grüße, {text}"


@pytest.mark.parametrize(
    "name", ['Ann "The Boss" Lee', "Lee, Ann", "Ann <x@evil.com>", "O'Brien (Sales)", "a\\b"]
)
def test_ascii_names_with_specials_stay_one_address(name: str) -> None:
    message = built(make_email(to_name=name))
    (address,) = message["To"].addresses
    assert address.display_name == name
    assert address.addr_spec == "ann@example.org"


def test_a_literal_encoded_word_reads_back_as_typed() -> None:
    word = "=?utf-8?q?Hi=0D=0ABcc:_x@evil.com?="
    message = built(make_email(to_name=word, subject=word))
    assert message["To"].addresses[0].display_name == word
    assert str(message["Subject"]) == word
    assert message["Bcc"] is None


# -- header injection -------------------------------------------------------------------

BREAKS = ["\r\n", "\n", "\r", "\x00", "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"]
PAYLOADS = [f"Ann{brk}Bcc: x@evil.com" for brk in BREAKS] + [
    "Ann\r\n\r\nBcc: x@evil.com",
    "Ann\r\n Bcc: x@evil.com",
    "Ann\x00\r\nBcc: x@evil.com",
    "=?utf-8?q?Ann=0D=0ABcc:_x@evil.com?=",
    "=?utf-8?b?QW5uDQpCY2M6IHhAZXZpbC5jb20=?=",
]


def with_field(field: str, value: str) -> tuple[compose.Email, dict[str, Any]]:
    """An email (and build arguments) with `value` in one header-bound field."""
    if field == "to_name":
        return make_email(to_name=value), {}
    if field == "subject":
        return make_email(subject=value), {}
    if field == "rep_name":
        rep = config.RepConfig(id="mike", name=value, email="mike@example.com")
        return make_email(sender=rep), {}
    thread = mime.Thread(subject=value, references=("<a@x>",))
    return make_email(), {"thread": thread}


def assert_harmless(field: str, value: str) -> None:
    """Either build refuses, or the message has exactly its own headers."""
    email, kwargs = with_field(field, value)
    try:
        data = raw(email, **kwargs)
    except ValueError:
        return
    for line in header_lines(data):
        assert not line.lower().startswith(b"bcc:"), line
        assert b"\x00" not in line and b"\n" not in line and b"\r" not in line
    message = parse(data)
    assert message["Bcc"] is None
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(message.get_all(name) or []) == 1, name
    assert [a.addr_spec for a in message["To"].addresses] == ["ann@example.org"]
    assert [a.addr_spec for a in message["From"].addresses] == ["mike@example.com"]
    for name in ("From", "To", "Subject"):
        assert not re.search(r"[\r\n\x00]", str(message[name])), name
    assert message.get_content_type() == "text/plain"


@pytest.mark.parametrize("field", ["to_name", "rep_name", "subject", "thread_subject"])
@pytest.mark.parametrize("value", PAYLOADS)
def test_header_injection_is_harmless(field: str, value: str) -> None:
    assert_harmless(field, value)


@pytest.mark.parametrize("field", ["to_name", "rep_name"])
@pytest.mark.parametrize("brk", BREAKS)
def test_names_with_control_characters_are_refused(field: str, brk: str) -> None:
    email, kwargs = with_field(field, f"Ann{brk}Bcc: x@evil.com")
    with pytest.raises(ValueError):
        raw(email, **kwargs)


@pytest.mark.parametrize("field", ["subject", "thread_subject"])
@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\u2028", "\x85"])
def test_line_breaks_in_subjects_become_spaces(field: str, brk: str) -> None:
    email, kwargs = with_field(field, f"Hello{brk}Bcc: x@evil.com")
    subject = str(built(email, **kwargs)["Subject"])
    assert subject in ("Hello Bcc: x@evil.com", "Re: Hello Bcc: x@evil.com")


@pytest.mark.parametrize("field", ["subject", "thread_subject"])
def test_nul_in_a_subject_is_refused(field: str) -> None:
    email, kwargs = with_field(field, "Hello\x00there")
    with pytest.raises(ValueError):
        raw(email, **kwargs)


def test_the_path_uses_clean_text_and_one_line() -> None:
    # What mime relies on: clean_text refuses control characters, one_line flattens.
    for brk in BREAKS:
        with pytest.raises(ValueError):
            addresses.clean_text(f"Ann{brk}Lee", field="name")
    assert mime.one_line("a\r\nb\u2028c \t d\x85e") == "a b c d e"


HOSTILE = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.sampled_from(
            [
                *BREAKS,
                "\t",
                "\x7f",
                "\u200b",
                "Bcc: x@evil.com",
                "To: y@evil.com",
                "Subject: spoof",
                "Content-Type: text/html",
                "=?utf-8?q?",
                "=0D=0A",
                "?=",
                ":",
                ";",
                ",",
                "<",
                ">",
                '"',
                "\\",
                "(",
                "@",
                " ",
                "Jörg",
                "日本",
            ]
        ),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["to_name", "rep_name", "subject", "thread_subject"]), value=HOSTILE)
def test_any_field_text_is_harmless(field: str, value: str) -> None:
    assert_harmless(field, value)


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(["to_name", "rep_name"]), name=HOSTILE)
def test_names_are_refused_or_read_back_exactly(field: str, name: str) -> None:
    email, kwargs = with_field(field, name)
    has_control = any(ord(c) < 32 or c == "\x7f" or addresses._is_control(c) for c in name.strip())
    if has_control:
        with pytest.raises(ValueError):
            raw(email, **kwargs)
        return
    message = built(email, **kwargs)
    (address,) = message["To" if field == "to_name" else "From"].addresses
    assert address.display_name == mime.one_line(name)


@settings(max_examples=100, deadline=None)
@given(subject=HOSTILE)
def test_subjects_are_refused_or_read_back_exactly(subject: str) -> None:
    try:
        data = raw(make_email(subject=subject))
    except ValueError:
        assert re.search(r"[\x00-\x08\x0e-\x1b\x7f]", subject)
        return
    assert str(parse(data)["Subject"]) == mime.one_line(subject)


# -- Message-ID -----------------------------------------------------------------------

MSG_ID = re.compile(r"^<[^\s<>@]+@[^\s<>@]+>$")
BASE: dict[str, Any] = {
    "enrollment_id": 7,
    "step_id": "thank-you",
    "occurrence": 1,
    "install_id": "ab12cd34",
    "domain": "example.com",
}


def test_message_id_is_stable() -> None:
    assert mime.message_id(**BASE) == mime.message_id(**BASE)
    assert MSG_ID.match(mime.message_id(**BASE))


@pytest.mark.parametrize(
    "change",
    [
        {"enrollment_id": 8},
        {"step_id": "confirm"},
        {"occurrence": 2},
        {"install_id": "ffff0000"},
        {"domain": "example.org"},
    ],
)
def test_message_id_differs_when_anything_differs(change: dict[str, Any]) -> None:
    assert mime.message_id(**{**BASE, **change}) != mime.message_id(**BASE)


def test_message_id_domain_is_the_senders() -> None:
    msgid = mime.message_id(**{**BASE, "domain": mime.domain_of("mike@mpc.example.com")})
    assert msgid.endswith("@mpc.example.com>")


STEP_IDS = st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-]){0,12}\Z")
KEYS = st.tuples(
    st.integers(1, 10**9),
    STEP_IDS,
    st.integers(1, 10**4),
    st.sampled_from(["ab12cd34", "00000000", "deadbeef"]),
)


@settings(max_examples=60, deadline=None)
@given(a=KEYS, b=KEYS)
def test_message_ids_are_valid_and_one_to_one(
    a: tuple[int, str, int, str], b: tuple[int, str, int, str]
) -> None:
    def msgid(key: tuple[int, str, int, str]) -> str:
        enrollment, step, occurrence, install = key
        return mime.message_id(
            enrollment_id=enrollment,
            step_id=step,
            occurrence=occurrence,
            install_id=install,
            domain="example.com",
        )

    first, second = msgid(a), msgid(b)
    assert MSG_ID.match(first)
    assert (first == second) == (a == b)
    # A mail client reads it back unchanged.
    message = built(make_email(), msgid=first)
    assert str(message["Message-ID"]) == first
    assert not message["Message-ID"].defects


def test_dated_sets_the_date_header_and_nothing_else() -> None:
    first = WHEN.replace(hour=15, minute=0)  # a Monday, 15:00 UTC
    second = first + timedelta(hours=18, minutes=30, seconds=5)  # Tuesday 09:30:05
    built = mime.build(make_email(), msgid="<m@x>", date=first)
    later = mime.dated(built.data, second)
    stamp = f"{second:%a, %d %b %Y %H:%M:%S}".encode()  # b"Tue, 24 Nov 2026 09:30:05"
    assert b"\r\nDate: " + stamp + b" +0000\r\n" in later
    assert later.replace(stamp, f"{first:%a, %d %b %Y %H:%M:%S}".encode()) == built.data
    assert mime.dated(b"Subject: x\r\n\r\nDate: in the body\r\n", datetime.now(UTC)) == (
        b"Subject: x\r\n\r\nDate: in the body\r\n"
    )
