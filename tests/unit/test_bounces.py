"""Bounce recognition measured on real bounce mail (tests/corpus/bounces, see its README).

Run with `-s` to see the recognition rate and the misses printed.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import tomllib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.mail import bounces, reading

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BOUNCES = CORPUS / "bounces"
NOT_BOUNCES = CORPUS / "not-bounces"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads((BOUNCES / "expected.toml").read_text())
STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


def load(path: Path) -> EmailMessage:
    return parse(path.read_bytes())


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def read(name: str) -> bounces.Bounce:
    bounce = bounces.parse_bounce(load(BOUNCES / name))
    assert bounce is not None, name
    return bounce


def test_every_corpus_file_has_an_expectation() -> None:
    files = {p.name for p in BOUNCES.glob("*.eml")}
    assert files == set(EXPECTED)
    assert len(files) >= 80


def test_corpus_recognition_rate() -> None:
    hits, misses, wrong_kind, wrong_status, with_status = 0, [], [], [], 0
    for name, expected in EXPECTED.items():
        bounce = bounces.parse_bounce(load(BOUNCES / name))
        got = sorted(f.recipient for f in bounce.failures) if bounce else []
        if got != sorted(expected["recipients"]):
            misses.append(f"{name}: got {got}, expected {expected['recipients']}")
            continue
        hits += 1
        assert bounce is not None
        if {f.permanent for f in bounce.failures} != {expected["permanent"]}:
            wrong_kind.append(name)
        if "status" in expected:
            with_status += 1
            if expected["status"] not in {f.status for f in bounce.failures}:
                wrong_status.append(f"{name}: {[f.status for f in bounce.failures]}")
    rate = hits / len(EXPECTED)
    print(f"\nbounce recognition: {hits}/{len(EXPECTED)} = {rate:.1%} with the right recipients")
    print(f"permanent/delayed wrong: {len(wrong_kind)} {wrong_kind}")
    print(f"status wrong: {len(wrong_status)}/{with_status} {wrong_status}")
    print("misses:", *misses, sep="\n  ")
    assert rate >= 0.95
    assert len(wrong_kind) <= 0.03 * hits
    assert len(wrong_status) <= 0.1 * with_status


def test_every_sisimai_sample_is_recognised() -> None:
    # The independent half of the corpus: flufl.bounce was not written against these.
    names = [n for n in EXPECTED if n.startswith("sisimai-")]
    found = {n: bounces.parse_bounce(load(BOUNCES / n)) for n in names}
    missed = [n for n, b in found.items() if b is None]
    assert missed == []


@pytest.mark.parametrize("path", sorted(NOT_BOUNCES.glob("*.eml")), ids=lambda p: p.name)
def test_not_a_bounce(path: Path) -> None:
    assert bounces.parse_bounce(load(path)) is None


def test_not_bounce_corpus_size() -> None:
    assert len(list(NOT_BOUNCES.glob("*.eml"))) >= 15


# --- formats, field by field ------------------------------------------------

TABLE = [
    # file, recipient, status, diagnostic starts with, permanent, original Message-ID
    (
        "sisimai-sendmail-01.eml",  # Sendmail DSN, returned message attached
        "userunknown@bouncehammer.jp",
        "5.1.1",
        "550 5.1.1 <userunknown@bouncehammer.jp>... User Unknown",
        True,
        "<E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org>",
    ),
    (
        "sisimai-sendmail-05.eml",  # returned headers only (text/rfc822-headers)
        "kijitora@example.org",
        "5.2.3",
        "552 5.2.3 Message size exceeds fixed maximum message size",
        True,
        "<000000B2-9997-8888-8999-000000000356@example.co.jp>",
    ),
    (
        "sisimai-postfix-06.eml",  # Postfix, X-Postfix diagnostic type
        "kijitora@neko.example.jp",
        "5.4.4",
        "Host or domain name not found. Name service error for name=neko.example.jp",
        True,
        "<20141024104625.9C81E2203D@vagrant-centos65.vagrantup.com>",
    ),
    (
        "sisimai-qmail-01.eml",  # qmail: no DSN, code in the text "(#5.5.0)"
        "kijitora@example.ne.jp",
        "5.5.0",
        "550 Unknown user kijitora@example.ne.jp",
        True,
        "<000000000.9999999999999.JavaMail.postmaster@mailhub>",
    ),
    (
        "sisimai-google-04.eml",  # Gmail plain text, quoted-printable, headers quoted in body
        "kijitora@example.com",
        "5.7.1",
        "554 554 5.7.1 Service unavailable; Client host [192.0.2.49] blocked",
        True,
        "<CAJYcEwW7ghrwjbwmwK3GKRG98qSVTKhGBvnkbVH1RdwFJwHWFQ@mail.gmail.com>",
    ),
    (
        "sisimai-amazonses-03.eml",  # Amazon SES
        "kijitora@example.jp",
        "5.0.0",
        "5.1.0 - Unknown address error 550-'5.2.2 <kijitora@example.jp>... Mailbox Full'",
        True,
        "<00000132d6ca0cd4-ff6d8ee5-29a0-4501-a68a-3ff8695254bb-000000@email.amazonses.com>",
    ),
    (
        "flufl-dsn_05.eml",  # a delay warning: Action: delayed
        "userx@example.cz",
        "4.4.1",
        "",
        False,
        "<pfchbtkf3j0p7prf0sp45vi21fro3bs7ad@4ax.com>",
    ),
]


@pytest.mark.parametrize(
    ("name", "recipient", "status", "diagnostic", "permanent", "message_id"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_format_fields(
    name: str, recipient: str, status: str, diagnostic: str, permanent: bool, message_id: str
) -> None:
    bounce = read(name)
    [failure] = bounce.failures
    assert failure.recipient == recipient
    assert failure.status == status
    assert failure.diagnostic.startswith(diagnostic)
    assert failure.permanent is permanent
    assert bounce.original_message_id == message_id


def test_exim_reports_each_recipient_with_its_own_code() -> None:
    bounce = read("sisimai-exim-02.eml")
    codes = {f.recipient: f.status for f in bounce.failures}
    assert codes == {"kijitora@example.jp": "5.1.1", "sabatora@example.jp": "5.2.1"}
    assert bounce.original_message_id == "<E1X58pB-0004bW-2s@marutamachi.example.org>"
    assert "Exim-style notice" in bounce.reasons


def test_original_recipient_is_what_was_sent_to() -> None:
    [failure] = read("sisimai-exchange2007-04.eml").failures
    assert failure.recipient == "neko-nyaan@cat.example.jp"
    assert failure.final_recipient == "neko-nyaan@example.jp"
    assert failure.diagnostic == "550 5.7.1 RESOLVER.RST.AuthRequired; authentication required"


def test_exim_delay_warning_is_not_permanent() -> None:
    [failure] = read("flufl-simple_03.eml").failures
    assert failure.recipient == "userx@example.za"
    assert failure.permanent is False


def test_reasons_say_why() -> None:
    assert read("sisimai-qmail-01.eml").reasons[0] == "qmail-style failure notice"
    dsn = read("sisimai-sendmail-01.eml").reasons
    assert dsn[0] == "multipart/report; report-type=delivery-status"
    assert "sender mailer-daemon@smtpgw.example.jp" in dsn


def test_message_ids_in_quoted_text_are_not_recipients() -> None:
    # Zoho's notice quotes the original headers; flufl.bounce alone also returns the
    # Message-ID and the sender as "failed" addresses.
    [failure] = read("sisimai-zoho-03.eml").failures
    assert failure.recipient == "shironeko@example.org"


def test_success_report_is_not_a_bounce() -> None:
    assert bounces.parse_bounce(load(NOT_BOUNCES / "written-success-dsn.eml")) is None


@pytest.mark.parametrize(
    "before", [b"\n", b"\r\n", b" \t \r\n\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"], ids=repr
)
def test_blank_lines_before_the_headers(before: bytes) -> None:
    # A message cut out of a log or an mbox by hand starts with blank lines (as some of
    # PHP-Bounce-Handler's samples do), one saved by an editor with a UTF-8 byte-order
    # mark (as RFC 5965's example in MimeKit's test data): its headers are still headers.
    name = "sisimai-exim-02.eml"
    bounce = bounces.parse_bounce(reading.message(before + (BOUNCES / name).read_bytes()))
    assert bounce is not None
    assert sorted(f.recipient for f in bounce.failures) == EXPECTED[name]["recipients"]


def _screened(status: str, words: str) -> bytes:
    return (
        b"From: noreply@screen.example\r\nTo: mike@acme.example\r\n"
        b"Subject: Re: Q3\r\nContent-Type: multipart/report; report-type=delivery-status;"
        b" boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        + words.encode()
        + b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; screen.example\r\n\r\n"
        b"Final-Recipient: rfc822; clara@screened.example\r\nAction: failed\r\n"
        b"Status: " + status.encode() + b"\r\n\r\n--b--\r\n"
    )


@pytest.mark.parametrize(
    "words",
    [
        "You are not on my Guest List. Please confirm that you are a real person.",
        "This account is protected. Click the link to have your address added to the"
        " recipient's allowed list.",
        "Your message is held until you verify that you are human (challenge-response).",
    ],
)
def test_challenge_response_is_no_bounce(words: str) -> None:
    # Boxbe, Bluebottle and the like ask the sender to prove they are a person: the
    # message waits; the address is fine. An auto-reply, not a failure.
    assert bounces.parse_bounce(parse(_screened("4.7.0", words))) is None


def test_refusal_naming_an_allow_list_is_still_a_policy_bounce() -> None:
    words = "550 5.7.1 Sender is not on the recipient's approved senders list"
    bounce = bounces.parse_bounce(parse(_screened("5.7.1", words)))
    assert bounce is not None
    assert [f.recipient for f in bounce.failures] == ["clara@screened.example"]


# --- hostile input ------------------------------------------------------------

SAMPLES = [p.read_bytes() for p in sorted(BOUNCES.glob("*.eml"))[::4]]
DSN_HEAD = (
    b"From: MAILER-DAEMON@mx.example\r\nReturn-Path: <>\r\nSubject: Undeliverable: x\r\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: message/delivery-status\r\n\r\n"
)


def check(raw: bytes) -> None:
    bounce = bounces.parse_bounce(parse(raw))
    if bounce is None:
        return
    for failure in bounce.failures:
        assert failure.recipient == failure.recipient.lower()
        assert "@" in failure.recipient
        assert "<" not in failure.recipient
        assert len(failure.diagnostic) <= bounces.DIAGNOSTIC_MAX
        assert "\n" not in failure.diagnostic
        assert failure.status is None or STATUS.fullmatch(failure.status)


def mutate(raw: bytes, seed: int, edits: int) -> bytes:
    rng = random.Random(seed)
    data = bytearray(raw)
    for _ in range(edits):
        at = rng.randrange(len(data) + 1)
        op = rng.randrange(4)
        if op == 0:
            data[at:at] = bytes([rng.randrange(256)]) * rng.randrange(1, 4)
        elif op == 1:
            del data[at : at + rng.randrange(1, 40)]
        elif op == 2:
            data[at:at] = rng.choice([b"\r\n", b"\n\n", b"=?utf-8?b?", b"<>", b"--", b";", b"\xff"])
        else:
            data = data[:at]  # truncated mail
    return bytes(data)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.integers(0, 2**32), st.integers(1, 12))
def test_mutated_bounces_never_raise(raw: bytes, seed: int, edits: int) -> None:
    check(mutate(raw, seed, edits))


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    check(raw)


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=600))
def test_random_delivery_status_fields_never_raise(tail: bytes) -> None:
    check(DSN_HEAD + tail)
