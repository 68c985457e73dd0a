"""Every mail-server family's sample (tests/corpus/families, written for dripd): what it is,
whom it is about, permanent or not, and why; then what the classifier makes of it."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from dripd import bounce_reasons, bounces, classify, incoming

FAMILIES = Path(__file__).resolve().parents[1] / "corpus" / "families"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads((FAMILIES / "expected.toml").read_text())


class World:
    """The expected addresses are contacts, and every quoted Message-ID was sent to the first."""

    def __init__(self, addresses: list[str]) -> None:
        self.contacts = {a: classify.ContactRef(id=i + 1, email=a) for i, a in enumerate(addresses)}

    def sent(self, message_id: str) -> classify.SentRef | None:
        if not message_id.startswith("<q3-") or not self.contacts:
            return None
        first = next(iter(self.contacts.values()))
        return classify.SentRef(
            message_id=message_id, contact_id=first.id, recipient=first.email, rep="mike"
        )

    def contact(self, address: str) -> classify.ContactRef | None:
        return self.contacts.get(address)

    def rep_of(self, address: str) -> str | None:
        return "mike" if address == "mike@acme.example" else None

    def digest(self, message_id: str) -> str | None:
        return None


def mail(name: str) -> incoming.Incoming:
    return incoming.parse((FAMILIES / name).read_bytes())


def test_the_corpus_covers_forty_families() -> None:
    assert {p.name for p in FAMILIES.glob("*.eml")} == set(EXPECTED)
    bounce_families = {e["family"] for e in EXPECTED.values() if e["class"] == "bounce"}
    assert len(bounce_families) >= 40
    assert sum(e["class"] == "complaint" for e in EXPECTED.values()) >= 4


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=str)
def test_sample(name: str) -> None:
    expected = EXPECTED[name]
    message = mail(name)
    bounce = bounces.parse_bounce(message.message)
    if expected["class"] != "bounce":
        assert bounce is None
    else:
        assert bounce is not None
        assert sorted(f.recipient for f in bounce.failures) == sorted(expected["recipients"])
        assert {f.permanent for f in bounce.failures} == {expected["permanent"]}
        assert {str(f.reason) for f in bounce.failures} == {expected["reason"]}
    verdict = classify.classify(message, World(expected["recipients"]), received=date(2025, 6, 2))
    if expected["class"] == "not-bounce":
        assert verdict.cls not in {"bounce", "complaint"}
        return
    assert verdict.cls == expected["class"]
    assert verdict.contact is not None and verdict.contact.email in expected["recipients"]
    if expected["class"] == "bounce":
        # Only a permanent failure that is not a policy block ends the contact.
        ends = expected["permanent"] and expected["reason"] != str(bounce_reasons.Reason.POLICY)
        assert verdict.permanent is ends


@pytest.mark.parametrize(
    ("status", "words", "reason"),
    [
        ("5.1.1", "550 5.1.1 User unknown", "unknown user"),
        (
            "5.7.1",
            "550 5.7.1 <x@y.example>: Recipient address rejected: user unknown",
            "unknown user",
        ),
        (
            "5.7.1",
            "554 5.7.1 Service unavailable; client host blocked using zen.spamhaus",
            "policy or spam block",
        ),
        ("5.7.1", "550 5.7.1 Message rejected as spam", "policy or spam block"),
        (
            "5.7.26",
            "550 5.7.26 unauthenticated email is not accepted due to DMARC policy",
            "policy or spam block",
        ),
        ("5.2.2", "552 5.2.2 Mailbox full", "mailbox full"),
        ("4.2.2", "452 4.2.2 over quota", "mailbox full"),
        ("5.4.4", "Host or domain name not found", "domain gone"),
        ("5.3.4", "552 5.3.4 Message too big", "message too large"),
        ("4.7.0", "421 4.7.0 Try again later", "rate or temporary"),
        ("4.4.1", "connection timed out", "rate or temporary"),
        ("5.0.0", "550 Requested action not taken", "other"),
        (None, "", "other"),
    ],
)
def test_reason(status: str | None, words: str, reason: str) -> None:
    assert str(bounce_reasons.reason_of(status, words)) == reason
