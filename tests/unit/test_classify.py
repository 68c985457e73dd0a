"""The classifier over the message corpus (tests/corpus/messages), and fuzzed.

The corpus is written against a fictional world (world.toml: reps, contacts,
every Message-ID dripd sent them, the digests); `WorldKnown` answers the
classifier's questions from it, as the database does in the daemon.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import dates
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dripd.mail import classify, incoming

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MESSAGES = CORPUS / "messages"
WORLD = tomllib.loads((MESSAGES / "world.toml").read_text(encoding="utf-8"))
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads(
    (MESSAGES / "expected.toml").read_text(encoding="utf-8")
)["files"]


class WorldKnown:
    """classify.Known from world.toml."""

    def __init__(self, world: dict[str, Any]) -> None:
        self._contacts: dict[str, classify.ContactRef] = {}
        self._sent: dict[str, classify.SentRef] = {}
        for number, person in enumerate(world["contacts"], start=1):
            ref = classify.ContactRef(id=number, email=person["email"], owner=person["owner"])
            self._contacts[person["email"].lower()] = ref
            for sent in person.get("sent", []):
                self._sent[sent["message_id"]] = classify.SentRef(
                    message_id=sent["message_id"],
                    contact_id=number,
                    recipient=person["email"],
                    rep=person["owner"],
                    enrollment_id=person.get("enrollment"),
                    campaign="intro",
                    step=sent["step"],
                )
        self._reps = {rep["email"]: rep_id for rep_id, rep in world["reps"].items()}
        self._digests = {d["message_id"]: d["rep"] for d in world["digests"]}

    def sent(self, message_id: str) -> classify.SentRef | None:
        return self._sent.get(message_id)

    def contact(self, address: str) -> classify.ContactRef | None:
        return self._contacts.get(address.lower())

    def rep_of(self, address: str) -> str | None:
        return self._reps.get(address.lower())

    def digest(self, message_id: str) -> str | None:
        return self._digests.get(message_id)


KNOWN = WorldKnown(WORLD)
# The day the messages of the tests below arrive: any day. `received` only dates an
# out-of-office's return, which none of them checks; the corpus's own messages keep
# their day (`received` in expected.toml).
RECEIVED = dates.today()


def verdict_of(name: str) -> classify.Verdict:
    expected = EXPECTED[name]
    mail = incoming.parse((MESSAGES / name).read_bytes())
    return classify.classify(mail, KNOWN, received=date.fromisoformat(expected["received"]))


def _words(text: str) -> str:
    return " ".join(text.replace("\u2019", "'").split())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_corpus_message_is_read_as_expected(name: str) -> None:
    expected = EXPECTED[name]
    verdict = verdict_of(name)
    why = f"{name}: {verdict.cls} because {'; '.join(verdict.reasons)}"
    assert verdict.cls == expected["class"], why
    contact = verdict.contact.email if verdict.contact else ""
    if expected["class"] != "other":
        assert contact == expected["contact"], why
    else:  # nothing a person must act on, and no contact is touched
        assert contact == "", why
    if (
        expected["class"] in ("reply", "auto-reply", "unsubscribe")
        and expected["matched_message_id"]
    ):
        assert (
            verdict.sent is not None and verdict.sent.message_id == expected["matched_message_id"]
        )
    if "reply_starts_with" in expected:
        assert _words(verdict.reply).startswith(_words(expected["reply_starts_with"])), (
            verdict.reply
        )
    if "not_in_reply" in expected and expected["class"] == "reply":
        assert _words(expected["not_in_reply"]) not in _words(verdict.reply), verdict.reply
    if "out_of_office" in expected:
        assert verdict.out_of_office == expected["out_of_office"], why
    if "return_date" in expected:
        assert verdict.return_date == date.fromisoformat(expected["return_date"]), why
    if expected["class"] == "bounce":
        _check_bounce(verdict, expected)
    if expected["class"] == "meeting":
        assert verdict.meeting is not None, why
        assert verdict.meeting.action == expected["meeting_action"], why
        start = verdict.meeting.start
        assert (start.isoformat() if start else None) == expected.get("meeting_start"), why


def _check_bounce(verdict: classify.Verdict, expected: dict[str, Any]) -> None:
    failures = {f.failure.recipient: f.failure for f in verdict.failed}
    assert expected["recipient"] in failures
    failure = failures[expected["recipient"]]
    assert failure.permanent == expected["permanent"]
    if "status" in expected:
        assert failure.status == expected["status"]


def test_the_corpus_covers_every_class_with_real_variety() -> None:
    counts: dict[str, int] = {}
    for expected in EXPECTED.values():
        counts[expected["class"]] = counts.get(expected["class"], 0) + 1
    assert set(counts) == set(classify.CLASSES)
    assert sum(counts.values()) >= 30


def _answer_to_ann(sender: str, *, extra: bytes = b"") -> classify.Verdict:
    """Someone answering dripd's email to ann@northwind.example, in its thread."""
    raw = (
        f"From: Someone <{sender}>\r\nTo: mike@acme.example\r\n".encode()
        + b"Subject: Re: Quick question\r\nMessage-ID: <fwd@elsewhere.example>\r\n"
        + b"In-Reply-To: <dripd.7f3a9c.e1.intro.0@acme.example>\r\n"
        + extra
        + b"\r\nAnn is on leave; I look after this now.\r\n"
    )
    return classify.classify(incoming.parse(raw), KNOWN, received=RECEIVED)


def test_a_colleague_at_the_contacts_company_answering_in_the_thread_is_a_reply() -> None:
    verdict = _answer_to_ann("carl@northwind.example")
    assert verdict.cls == "reply"
    assert verdict.contact is not None and verdict.contact.email == "ann@northwind.example"
    assert verdict.answered_by == "carl@northwind.example"
    assert verdict.summary.startswith("Ann is on leave")
    rule = "a colleague at the contact's company (northwind.example)"
    assert any(rule in reason for reason in verdict.reasons)


@pytest.mark.parametrize(
    ("sender", "why"),
    [
        ("jorge@ridgeline.example", "another domain than the contact's"),
        ("carl@NorthWind.example.net", "another domain than the contact's"),
    ],
)
def test_someone_from_another_domain_quoting_our_message_id_stops_nothing(
    sender: str, why: str
) -> None:
    verdict = _answer_to_ann(sender)
    assert verdict.cls == "other" and verdict.contact is None
    assert verdict.sent is not None and verdict.sent.recipient == "ann@northwind.example"
    assert verdict.answered_by == sender.lower()
    assert any(why in reason for reason in verdict.reasons)


def test_a_free_mail_domain_is_never_the_same_company() -> None:
    known = WorldKnown(
        {**WORLD, "contacts": [{**WORLD["contacts"][0], "email": "ann.baker@gmail.com"}]}
    )
    raw = (
        b"From: Bob <bob.smith@gmail.com>\r\nTo: mike@acme.example\r\nSubject: Re: Hi\r\n"
        b"In-Reply-To: <dripd.7f3a9c.e1.intro.0@acme.example>\r\n\r\nShe is not interested.\r\n"
    )
    verdict = classify.classify(incoming.parse(raw), known, received=RECEIVED)
    assert verdict.cls == "other" and verdict.answered_by == "bob.smith@gmail.com"
    assert any("a free-mail domain is no company" in r for r in verdict.reasons)


def test_a_colleagues_out_of_office_in_the_thread_is_not_a_reply() -> None:
    verdict = _answer_to_ann("carl@northwind.example", extra=b"Auto-Submitted: auto-replied\r\n")
    assert verdict.cls == "other" and verdict.contact is None


def test_every_real_bounce_with_a_contact_recipient_is_a_bounce() -> None:
    """The bounce corpus: whatever the MTA, a bounce for a contact is read as one."""
    expected = tomllib.loads((CORPUS / "bounces" / "expected.toml").read_text(encoding="utf-8"))
    right = 0
    for name, entry in expected.items():
        recipients = entry["recipients"] if "recipients" in entry else [entry["recipient"]]
        known = _OneContact(recipients[0])
        mail = incoming.parse((CORPUS / "bounces" / name).read_bytes())
        verdict = classify.classify(mail, known, received=RECEIVED)
        right += verdict.cls == "bounce" and verdict.contact is not None
    assert right / len(expected) >= 0.95


class _OneContact(WorldKnown):
    def __init__(self, address: str) -> None:
        super().__init__(WORLD)
        self._contacts = {address.lower(): classify.ContactRef(id=999, email=address)}


def test_no_ordinary_message_is_taken_for_a_bounce() -> None:
    for path in sorted((CORPUS / "not-bounces").glob("*.eml")):
        mail = incoming.parse(path.read_bytes())
        assert classify.classify(mail, KNOWN, received=RECEIVED).cls != "bounce", path


_SAMPLES = [p.read_bytes() for p in sorted(MESSAGES.glob("*.eml"))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SAMPLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8)), max_size=6),
)
def test_mutated_messages_never_break_the_parser_or_the_classifier(
    raw: bytes, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(raw)
    for position, chunk in edits:
        at = position % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    verdict = classify.classify(incoming.parse(bytes(data)), KNOWN, received=RECEIVED)
    assert verdict.cls in classify.CLASSES


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_other(raw: bytes) -> None:
    verdict = classify.classify(incoming.parse(raw), KNOWN, received=RECEIVED)
    assert verdict.cls in classify.CLASSES
