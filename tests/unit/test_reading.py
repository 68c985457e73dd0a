"""Reading hostile mail (dripd.mail.reading): headers, addresses, parts; garbage fed to it all."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import dates
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.mail import classify, incoming, mailtext, reading

Y = dates.thursday_year()  # 3 March is a Tuesday, 1 January a Thursday
RECEIVED = dates.today()  # the day mail arrives: any day, no test here reads a return date


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8", "surrogateescape")


def parse(raw: bytes | str) -> EmailMessage:
    """A message as the daemon parses it; text is written with CRLF line ends."""
    return incoming.parse(crlf(raw) if isinstance(raw, str) else raw).message


# --- headers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("=?utf-8?q?Automatische_Antwort:_Kurze_Frage?=", "Automatische Antwort: Kurze Frage"),
        (
            "=?iso-8859-1?Q?R=E9ponse_automatique?= : Petite question",
            "Réponse automatique : Petite question",
        ),
        ("=?UTF-8?B?UmVzcHVlc3RhIGF1dG9tw6F0aWNh?=", "Respuesta automática"),
        ("=?utf-8?q?Abwesenheits?=\n =?utf-8?q?notiz?=", "Abwesenheitsnotiz"),
        ("=?x-unknown?q?Caf=C3=A9?=", "Café"),
        ("=?rot13?q?Caf=C3=A9?=", "Café"),  # a codec, not a charset
        ("=?utf-8?b?####?= kaputt", "kaputt"),  # the stdlib drops a word it cannot decode
        ("=?utf-8?b?w6k?= x", "é x"),  # unpadded base64
        ("=?utf-8?b?w?= x", "=?utf-8?b?w?= x"),  # not base64 at all: kept as it came
        ("Out of\n Office", "Out of Office"),
        ("Out  of \t Office", "Out of Office"),
    ],
)
def test_encoded_word_subjects(raw: str, text: str) -> None:
    msg = parse(f"Subject: {raw}\nFrom: a@example.org\n\nbody\n")
    assert reading.header(msg, "subject") == text


def test_raw_utf8_and_latin1_headers() -> None:
    msg = parse("Subject: Abwesenheitsnotiz für Ann\r\n\r\nx".encode())
    assert reading.header(msg, "Subject") == "Abwesenheitsnotiz für Ann"
    msg = parse("Subject: Réponse automatique\r\n\r\nx".encode("latin-1"))
    assert reading.header(msg, "subject") == "Réponse automatique"
    assert reading.header(msg, "x-missing") == ""
    assert not reading.has_header(msg, "x-missing")
    assert reading.has_header(msg, "SUBJECT")


def test_raw_header_is_as_written_and_bounded() -> None:
    msg = parse(f"From: =?utf-8?q?Mail_Delivery?= <>\nX-Long: {'a' * 9000}\n\nx")
    assert reading.raw_header(msg, "from") == "=?utf-8?q?Mail_Delivery?= <>"
    assert reading.header(msg, "from") == "Mail Delivery <>"
    assert len(reading.raw_header(msg, "x-long")) == reading.MAX_HEADER
    assert reading.raw_header(msg, "x-missing") == ""


def test_header_map_keeps_the_first_of_repeated_headers() -> None:
    msg = parse("Subject: one\nsubject: two\nX-A: =?utf-8?q?=C3=A9?=\n\nx")
    assert reading.header_map(msg) == {"subject": "one", "x-a": "é"}


@pytest.mark.parametrize(
    ("data", "charset", "text"),
    [
        (b"caf\xc3\xa9", "us-ascii", "café"),  # declared wrong: UTF-8 wins
        (b"caf\xe9", "utf-8", "café"),  # Latin-1 declared as UTF-8
        (b"caf\xe9", "x-unknown", "café"),
        (b"caf\xe9", "utf-8\x00", "café"),  # not a charset name at all
        (b"caf\xe9", "base64", "café"),  # a codec, not a charset
        (b"caf\xe9", None, "café"),
        (b"\xff\xfec\x00", "utf-16", "c"),
    ],
)
def test_decode_bytes_falls_back(data: bytes, charset: str | None, text: str) -> None:
    assert reading.decode_bytes(data, charset) == text


# --- addresses -----------------------------------------------------------------------------


def test_addresses() -> None:
    assert reading.address('"Lee, Ann" <Ann@Example.org>') == ("Lee, Ann", "ann@example.org")
    assert reading.address("not an address") == ("", "")
    assert reading.address("") == ("", "")
    found = reading.addresses("Ann <ann@x.org>, bob@Y.org, ,,,@@", "ANN@x.org, undisclosed:;")
    assert found == ("ann@x.org", "bob@y.org")


@pytest.mark.parametrize(
    ("value", "when"),
    [
        (f"Tue, 3 Mar {Y} 10:15:00 +0100", datetime(Y, 3, 3, 9, 15, tzinfo=UTC)),
        (f"3 Mar {Y} 10:15:00", datetime(Y, 3, 3, 10, 15, tzinfo=UTC)),  # no zone: UTC
        ("Fri, 31 Dec 9999 23:59:59 -0100", None),  # a year 10000 in UTC
        (f"1 Jan {Y} 99:99:99 +0000", None),
        (f"Mon, 1 Jan {Y} 00:00:00 +9999", None),
        ("yesterday", None),
    ],
)
def test_dates_out_of_range_are_no_date(value: str, when: datetime | None) -> None:
    assert incoming.parse(crlf(f"Date: {value}\n\nx")).date == when


# --- parts ---------------------------------------------------------------------------------


def _nested(depth: int, kind: str) -> str:
    """A text part under `depth` multiparts or attached messages."""
    body = "Content-Type: text/plain\n\nthe bottom\n"
    for level in range(depth):
        if kind == "multipart":
            body = (
                f'Content-Type: multipart/mixed; boundary="b{level}"\n\n'
                f"--b{level}\n{body}\n--b{level}--\n"
            )
        else:
            body = f"Content-Type: message/rfc822\n\n{body}"
    return "From: a@example.org\n" + body


@pytest.mark.parametrize("kind", ["multipart", "message"])
def test_parts_follow_nesting_to_the_depth_bound(kind: str) -> None:
    def types(depth: int) -> list[str]:
        msg = parse(_nested(depth, kind))
        return [p.get_content_type() for p in reading.parts(msg, into_messages=True)]

    assert "text/plain" in types(reading.MAX_DEPTH)
    assert "text/plain" not in types(reading.MAX_DEPTH + 1)


def test_parts_yield_attached_messages_and_descend_only_when_asked() -> None:
    raw = crlf(
        'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhi\n'
        "--b\nContent-Type: message/rfc822\n\nSubject: inner\nContent-Type: text/html\n\n<p>x\n"
        "--b--\n"
    )
    msg = parse(raw)
    shallow = [p.get_content_type() for p in reading.parts(msg)]
    deep = [p.get_content_type() for p in reading.parts(msg, into_messages=True)]
    assert shallow == ["text/plain", "message/rfc822"]
    assert deep == ["text/plain", "message/rfc822", "text/html"]
    inner = reading.attached(next(p for p in reading.parts(msg) if p.is_multipart()))
    assert inner is not None and reading.header(inner, "subject") == "inner"


def test_parts_stop_at_the_parts_bound() -> None:
    children = "".join(f"--b\nContent-Type: text/plain\n\n{n}\n" for n in range(1000))
    msg = parse(f'Content-Type: multipart/mixed; boundary="b"\n\n{children}--b--\n')
    assert len(list(reading.parts(msg))) == reading.MAX_PARTS - 1  # the multipart counts
    assert len(list(reading.parts(msg, max_parts=10))) == 9


def test_a_multipart_without_its_boundary_is_a_leaf() -> None:
    msg = parse('Content-Type: multipart/mixed; boundary="b"\n\nno boundary here\n')
    assert [p.get_content_maintype() for p in reading.parts(msg)] == ["multipart"]


def test_part_text_is_lenient_and_bounded() -> None:
    msg = parse(
        crlf(
            "Content-Type: text/plain; charset=x-unknown\nContent-Transfer-Encoding: base64\n\n"
            "Z3L!!!DvMOfZQ\n"  # "grüße", a stray "!!!" and no padding
        )
    )
    assert reading.part_text(msg, 100) == "grüße"
    assert reading.part_text(msg, 3) == "grü"


def test_a_charset_holding_a_nul_costs_the_name_or_the_text_only() -> None:
    raw = (
        crlf(
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\n'
            "Content-Type: text/plain; charset=utf-8\x00\n"
            "Content-Disposition: attachment; filename*=utf-8\x00''x.ics\n\n"
        )
        + b"caf\xc3\xa9\r\n--b--\r\n"
    )
    [part] = list(reading.parts(parse(raw)))
    assert reading.filename(part) == ""
    assert reading.payload(part) == ""
    assert reading.part_text(part, 100).strip() == "café"


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/mixed; boundary*=utf-8\x00''b",
        "text/plain; charset*=utf-8\x00''utf-8",
        "multipart/report; report-type*=utf-8\x00''delivery-status; boundary=b",
    ],
)
def test_what_the_parser_gives_up_on_reads_as_an_empty_message(content_type: str) -> None:
    mail = incoming.parse(crlf(f"From: a@x.org\nContent-Type: {content_type}\n\n--b\n\nx\n--b--\n"))
    assert mail.sender == "" and mail.key.startswith("sha256:")
    assert mailtext.body_text(mail.message) == ""


def test_an_rfc2231_name_with_nothing_after_it_is_still_read() -> None:
    # "charse*", "filenam*": CPython's parameter parser indexed past the end (IndexError),
    # while parsing a part's Content-Type and when asked a file name (session 13's fuzz).
    raw = crlf(
        'From: a@x.org\nContent-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain; charse*\nContent-Disposition: attachment; filenam*\n\n"
        "hello\n--b--\n"
    )
    mail = incoming.parse(raw)
    assert mail.sender == "a@x.org"
    [part] = list(reading.parts(mail.message))
    assert reading.part_text(part, 100).strip() == "hello"
    assert reading.filename(part) == ""


def test_part_bytes_of_an_attached_message_and_of_a_leaf() -> None:
    raw = crlf(
        'Content-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGk=\n"
        "--b\nContent-Type: message/rfc822\n\nSubject: inner\n\nbody\n--b--\n"
    )
    leaf, attached = list(reading.parts(parse(raw)))
    assert reading.part_bytes(leaf) == b"hi"
    assert reading.part_bytes(attached).startswith(b"Subject: inner")


def test_part_bytes_of_an_attached_message_whose_header_the_stdlib_cannot_refold() -> None:
    # Microsoft writes Message-IDs like <[hex-BASE32=@microsoft.com]>, folded onto a line
    # of their own; flattening one with refolding raised IndexError inside CPython's header
    # parser (found in Request Tracker's t/data/emails/outlook-rfc822, a forwarded mail).
    inner = "<[" + "d" * 32 + "-" + "JFBVALKQOJXWILKNK4YVA7CD" * 3 + "=@example.com]>"
    raw = crlf(
        "From: Ann <ann@example.org>\nTo: mike@acme.example\nSubject: Fwd: terms\n"
        'Content-Type: multipart/mixed; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nsee attached\n"
        "--b\nContent-Type: message/rfc822\n\n"
        f"From: Vendor <news@vendor.example>\nSubject: Updates\nMessage-ID:\n {inner}\n\nbody\n"
        "--b--\n"
    )
    attached = list(reading.parts(parse(raw)))[1]
    assert inner.encode() in reading.part_bytes(attached)
    verdict = classify.classify(incoming.parse(raw), _Known(), received=RECEIVED)
    assert verdict.cls == "reply" and verdict.contact is not None  # the contact writing


# --- garbage in, no exception out, in bounded time -----------------------------------------

CHARSETS = [
    "utf-8", "iso-8859-1", "x-unknown", "base64", "rot13", "utf-7", "unicode-1-1-utf-7",
    "utf-16", "", "utf-8*en", "cp1252\x00", "\xe9", "a" * 300,
]  # fmt: skip
HEADER_NAMES = [
    "Subject", "From", "To", "Cc", "Date", "Message-ID", "In-Reply-To", "References",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "Return-Path",
    "Auto-Submitted", "X-Failed-Recipients", "Precedence", "List-Id", "X-Autoreply",
]  # fmt: skip
TYPES = [
    "text/plain", "text/html", "text/calendar", "message/rfc822", "message/delivery-status",
    "message/feedback-report", "text/rfc822-headers", "multipart/report", "multipart/mixed",
    "application/ics", "image/png", "text", "/", "multipart/",
]  # fmt: skip
ENCODINGS = ["base64", "quoted-printable", "7bit", "8bit", "x-uuencode", "binary", "b\xe9se64"]

WORDS = st.builds(
    "=?{}?{}?{}?=".format,
    st.sampled_from(CHARSETS),
    st.sampled_from(["q", "B", "x", ""]),
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=30),
)
RAW_TEXT = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ").replace(b"\r", b" "))
VALUES = st.lists(st.one_of(WORDS.map(lambda w: w.encode("latin-1")), RAW_TEXT), max_size=5).map(
    b" ".join
)
HEADERS = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), VALUES), max_size=8)


def _head(headers: list[tuple[str, bytes]]) -> bytes:
    return b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)


@st.composite
def _messages(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A message of random headers and a random MIME tree, some of it nonsense."""
    head = _head(draw(HEADERS))
    kind = draw(st.sampled_from(TYPES))
    charset = draw(st.sampled_from(CHARSETS)).encode("latin-1")
    cte = draw(st.sampled_from(ENCODINGS)).encode("latin-1")
    if kind.startswith("multipart/") and depth < 4:
        children = draw(st.lists(_messages(depth + 1), max_size=3))
        body = b"".join(b"--b\r\n" + child + b"\r\n" for child in children)
        body += draw(st.sampled_from([b"--b--\r\n", b"", b"--c--\r\n"]))
        params = b'; boundary="b"; report-type=delivery-status'
    elif kind == "message/rfc822" and depth < 4:
        body, params = draw(_messages(depth + 1)), b""
    else:
        body, params = draw(st.binary(max_size=300)), b"; charset=" + charset
    declared = b"Content-Type: " + kind.encode() + params + b"\r\n"
    return head + declared + b"Content-Transfer-Encoding: " + cte + b"\r\n\r\n" + body


def _deep(depth: int, rfc822: bool) -> bytes:
    return crlf(_nested(depth, "message" if rfc822 else "multipart"))


def _huge(size: int, many: int) -> bytes:
    long = "Subject: " + "=?utf-8?q?=C3=A9?= " * (size // 19)
    return crlf(long + "\n" + "X-Many: x\n" * many + "References: <a@b>\n\nbody\n")


HOSTILE = st.one_of(
    st.binary(max_size=2000),
    _messages(),
    st.builds(_deep, st.integers(0, 1200), st.booleans()),
    st.builds(_huge, st.integers(0, 400_000), st.integers(0, 20_000)),
)


class _Known:
    """A world that knows one contact and one message sent to her."""

    def sent(self, message_id: str) -> classify.SentRef | None:
        if message_id != "<s1@acme.example>":
            return None
        return classify.SentRef(
            message_id=message_id, contact_id=1, recipient="ann@example.org", rep="mike"
        )

    def contact(self, address: str) -> classify.ContactRef | None:
        found = address.lower() == "ann@example.org"
        return classify.ContactRef(id=1, email="ann@example.org") if found else None

    def rep_of(self, address: str) -> str | None:
        return "mike" if address.lower() == "mike@acme.example" else None

    def digest(self, message_id: str) -> str | None:
        return None


# Seconds per message. Most take milliseconds; the worst here is the stdlib's parser on
# ~900 nested multiparts (it is quadratic in depth): under a second on a quiet host, a few
# on a loaded test run. The bound catches what grows without limit, not noise.
BUDGET = 15.0


def _read_everything(raw: bytes) -> None:
    mail = incoming.parse(raw)
    msg = mail.message
    for name in HEADER_NAMES:
        assert isinstance(reading.header(msg, name), str)
    assert isinstance(reading.header_map(msg), dict)
    for part in reading.parts(msg, into_messages=True):
        assert len(reading.part_text(part, 500)) <= 500
        assert isinstance(reading.part_bytes(part), bytes)
    assert len(mailtext.body_text(msg, limit=2000)) <= 2000
    verdict = classify.classify(mail, _Known(), received=RECEIVED)
    assert verdict.cls
    assert "kind" in classify.reading_json(msg)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(HOSTILE)
def test_hostile_mail_never_raises_and_takes_bounded_time(raw: bytes) -> None:
    started = time.perf_counter()
    _read_everything(raw)
    assert time.perf_counter() - started < BUDGET


CORPUS = sorted((Path(__file__).resolve().parent.parent / "corpus").rglob("*.eml"))
TOKENS = [
    b"=?x?b?####?=", b"\r\n--", b"; charset=\x00", b"\r\n\r\n", b"boundary=", b"\xff\xfe",
    b"Content-Type: message/rfc822\r\n\r\n", f"DTSTART;TZID=America:{Y}".encode(), b"RRULE:X",
    b"\r\nContent-Disposition: attachment; filename*=utf-8\x00''x.ics\r\n",
    b"; boundary*=utf-8\x00''b", b"; charset*=utf-8\x00''x", b"; charse*", b"; filenam*",
]  # fmt: skip
NOISE = st.one_of(st.binary(min_size=1, max_size=30), st.sampled_from(TOKENS))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(CORPUS), st.lists(st.tuples(st.floats(0, 1), NOISE), max_size=8))
def test_mutated_corpus_mail_never_raises(path: Path, edits: list[tuple[float, bytes]]) -> None:
    raw = path.read_bytes()
    for where, noise in edits:
        at = int(where * len(raw))
        raw = raw[:at] + noise + raw[at + len(noise) // 2 :]
    started = time.perf_counter()
    _read_everything(raw)
    assert time.perf_counter() - started < BUDGET


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(_messages(), st.binary(min_size=1, max_size=40), st.data())
def test_garbled_messages_never_raise(raw: bytes, noise: bytes, data: st.DataObject) -> None:
    at = data.draw(st.integers(0, len(raw)))
    _read_everything(raw[:at] + noise + raw[at:])
