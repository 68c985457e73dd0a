"""Messages carried inside another one (dripd.mail.embedded), and the bounces read from them."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date
from email.message import Message
from pathlib import Path

import dates

from dripd.mail import bounce_formats, bounces, classify, embedded, incoming

FAMILIES = Path(__file__).resolve().parents[1] / "corpus" / "families"
# An mbox "From " separator line as an MTA pastes it into a notice, stamped asctime-style.
MBOX_LINE = f"From MAILER-DAEMON  {dates.local(dates.today(), 10, 15, tz=UTC).ctime()}\r\n".encode()


def leaves(raw: bytes) -> list[Message]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    return [p for p in message.walk() if p.get_content_maintype() != "multipart"]


def test_an_attached_message_is_found() -> None:
    raw = (FAMILIES / "forwarded-by-colleague.eml").read_bytes()
    inner = list(embedded.inner_messages(leaves(raw)))
    assert [str(m["Subject"]) for m in inner][-1] == "Undelivered Mail Returned to Sender"


def test_a_quoted_forward_is_unquoted() -> None:
    raw = (
        b"Subject: Fwd: x\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n\r\n"
        b"Begin forwarded message:\r\n\r\n> From: MAILER-DAEMON@mx.example\r\n"
        b"> To: <sam@acme.example>\r\n> Subject: failure notice\r\n>\r\n> body line\r\n"
    )
    (inner,) = embedded.inner_messages(leaves(raw))
    assert inner["From"] == "MAILER-DAEMON@mx.example"
    assert inner.get_payload().strip() == "body line"


def test_an_mbox_line_after_a_separator_starts_a_message() -> None:
    raw = (
        b"Content-Type: text/plain\r\n\r\nWe could not deliver it.\r\n-----\r\n"
        + MBOX_LINE
        + b"Return-Path: <>\r\n"
        b"From: MAILER-DAEMON@relay.example\r\nSubject: Undelivered\r\n\r\ntext\r\n"
    )
    (inner,) = embedded.inner_messages(leaves(raw))
    assert inner["Return-Path"] == "<>"


def test_prose_with_colons_is_no_message() -> None:
    raw = (
        b"Content-Type: text/plain\r\n\r\nHi,\r\n\r\nNote: the call moved.\r\n"
        b"Time: ten\r\nPlace: online\r\n\r\nThanks\r\n"  # fields, but no From: among them
    )
    assert list(embedded.inner_messages(leaves(raw))) == []


def test_a_bounce_forwarded_by_a_colleague_bounces_the_contact() -> None:
    mail = incoming.parse((FAMILIES / "forwarded-by-colleague.eml").read_bytes())
    bounce = bounces.parse_bounce(mail.message)
    assert bounce is not None and bounce.forwarded
    assert bounces.CARRIED in bounce.reasons
    # received the day after the corpus bounce was sent (4 June 2025): data keeps its dates
    verdict = classify.classify(mail, _World(["carla@initech.example"]), received=date(2025, 6, 5))
    assert verdict.cls == "bounce"
    assert verdict.contact is not None and verdict.contact.email == "carla@initech.example"


def test_a_contact_forwarding_a_bounce_is_a_contact_writing() -> None:
    mail = incoming.parse((FAMILIES / "forwarded-by-colleague.eml").read_bytes())
    world = _World(["carla@initech.example", "sam@acme.example"])
    verdict = classify.classify(mail, world, received=date(2025, 6, 5))
    assert verdict.cls != "bounce"
    assert verdict.contact is not None and verdict.contact.email == "sam@acme.example"


def test_a_relay_wrapping_a_report_is_no_forward() -> None:
    raw = (FAMILIES / "relay-wrapped-iso2022jp.eml").read_bytes()
    bounce = bounces.parse_bounce(incoming.parse(raw).message)
    assert bounce is not None and not bounce.forwarded
    assert [f.status for f in bounce.failures] == ["5.1.1"]  # from the carried report's fields


def test_a_wrapped_report_cut_short_names_no_one_from_the_wrapper() -> None:
    raw = (FAMILIES / "relay-wrapped-iso2022jp.eml").read_bytes()
    cut = raw[: raw.index(b"Content-Description: Delivery report")]
    bounce = bounces.parse_bounce(incoming.parse(cut).message)
    assert bounce is None or {f.recipient for f in bounce.failures} <= {"yuki.sato@kaisha.example"}


class _World:
    def __init__(self, addresses: list[str]) -> None:
        self.contacts = {a: classify.ContactRef(id=i + 1, email=a) for i, a in enumerate(addresses)}

    def sent(self, message_id: str) -> classify.SentRef | None:
        return None

    def contact(self, address: str) -> classify.ContactRef | None:
        return self.contacts.get(address)

    def rep_of(self, address: str) -> str | None:
        return "mike" if address == "mike@acme.example" else None

    def digest(self, message_id: str) -> str | None:
        return None


def test_an_mbox_line_announces_a_message_whose_from_is_damaged() -> None:
    raw = (
        b"Content-Type: text/plain\r\n\r\nNotice.\r\n-----\r\n" + MBOX_LINE + b"Return-Path: <>\r\n"
        b"From--: MAILER-DAEMON@relay.example\r\nSubject: Undelivered\r\n\r\ntext\r\n"
    )
    (inner,) = embedded.inner_messages(leaves(raw))
    assert inner["Subject"] == "Undelivered"


def test_the_to_of_a_wrapped_mail_system_notice_is_no_failed_recipient() -> None:
    text = (
        "The message below could not be delivered.\n\n"
        "Return-Path: <>\nTo: relay-admin@relay.example\nSubject: Undelivered\n\nbody\n"
    )
    assert bounce_formats.returned_recipient(text, set()) == []
    person = text.replace("Return-Path: <>", "Return-Path: <mike@acme.example>")
    assert bounce_formats.returned_recipient(person, set()) == ["relay-admin@relay.example"]
