"""`python -m bench bounces --new ROOT`: the fresh corpora's listing (every sample held
out, copies of the other corpora left out, kinds from globs or from header rules over
mbox files) and its output. Only made-up messages here: no fetched corpus is read."""

from __future__ import annotations

import re
from datetime import UTC
from pathlib import Path

import dates
import pytest

from bench import bounces, mail_files

DSN = (
    b"From: MAILER-DAEMON@mx.example.net\n"
    b"To: rep@example.com\n"
    b"Subject: Undelivered Mail Returned to Sender\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n'
    b"\n--b\nContent-Type: text/plain\n\n"
    b"<gone@example.org>: 550 5.1.1 user unknown in this made-up mail system\n"
    b"\n--b\nContent-Type: message/delivery-status\n\n"
    b"Reporting-MTA: dns; mx.example.net\n\n"
    b"Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.1.1\n"
    b"\n--b--\n"
)
REPLY = (
    b"From: Ann <ann@example.org>\nTo: rep@example.com\nSubject: Re: our call\n"
    b"Message-ID: <r1@example.org>\n\nThursday suits me, let us talk at ten then.\n"
)
AUTO_REPLY = (
    b"From: Bob <bob@example.org>\nTo: rep@example.com\nSubject: Out of office\n"
    b"Auto-Submitted: auto-replied\n\nI am away until Monday and will read mail then.\n"
)
NEW_TOML = """
[plain]
repo = "made/up"
license = "none"
paths = ["mail"]
bounces = ["mail/bounce-*.eml"]
not_bounces = ["mail/reply.eml"]

[boxes]
repo = "made/up-too"
license = "none"
paths = ["mail"]
mbox = true
files = ["mail/*"]
messages = [
    { header = "From", match = "(?i)mailer-daemon", kind = "bounce" },
    { header = "Subject", match = "^Frozen", kind = "skip" },
    { header = "Auto-Submitted", match = "^auto-replied", kind = "not-bounce" },
]
"""


def _mbox(*messages: bytes) -> bytes:
    # An mbox's separator line, stamped as mail programs do ("Tue Mar  2 09:44:33 1999").
    stamp = dates.local(dates.today(), 9, 44, tz=UTC).ctime()
    line = f"From someone@example.net {stamp}\n".encode()
    return b"".join(line + m + b"\n" for m in messages)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two made-up corpora under ROOT and their description in place of the real one."""
    (tmp_path / "plain" / "mail").mkdir(parents=True)
    (tmp_path / "plain" / "mail" / "bounce-1.eml").write_bytes(DSN)
    (tmp_path / "plain" / "mail" / "reply.eml").write_bytes(REPLY)
    (tmp_path / "plain" / "mail" / "notes.txt").write_bytes(b"not named by any glob\n")
    (tmp_path / "boxes" / "mail").mkdir(parents=True)
    frozen = b"From: MAILMAN@example.net\nSubject: Frozen\n\nfrozen\n"
    (tmp_path / "boxes" / "mail" / "0001.user").write_bytes(_mbox(DSN, REPLY, AUTO_REPLY, frozen))
    described = tmp_path / "new.toml"
    described.write_text(NEW_TOML)
    monkeypatch.setattr(bounces, "NEW_CORPORA", described)
    return tmp_path


def test_every_sample_is_held_out_and_kinds_come_from_globs_or_rules(root: Path) -> None:
    found = {name: samples for name, samples in bounces._new_corpora(root, [])}
    assert all(s.held_out for samples in found.values() for s in samples)
    plain = {s.path.name: s for s in found["plain"]}
    assert set(plain) == {"bounce-1.eml", "reply.eml"}
    assert plain["bounce-1.eml"].kind == "bounce"
    assert plain["bounce-1.eml"].expected == frozenset({"gone@example.org"})
    assert plain["reply.eml"].kind == "not-bounce"
    # The mbox: one sample per message, named <file>.<n>; the plain reply matches no rule
    # and the frozen notice a "skip" rule: both left out.
    boxes = {s.path.name: s for s in found["boxes"]}
    assert {n: s.kind for n, s in boxes.items()} == {
        "0001.user.1": "bounce",
        "0001.user.3": "not-bounce",
    }
    assert boxes["0001.user.1"].raw == DSN
    assert boxes["0001.user.1"].expected == frozenset({"gone@example.org"})


def test_copies_of_mail_already_used_are_left_out_and_counted(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = [bounces._fingerprint(DSN)]  # as if the DSN were in sisimai's set
    found = dict(bounces._new_corpora(root, known))
    assert [s.path.name for s in found["plain"]] == ["reply.eml"]
    assert [s.path.name for s in found["boxes"]] == ["0001.user.3"]
    out = capsys.readouterr().out
    assert "plain: 1 file(s) left out" in out and "boxes: 1 file(s) left out" in out


def test_a_corpus_not_fetched_is_named_and_skipped(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (root / "boxes" / "mail" / "0001.user").unlink()
    (root / "boxes" / "mail").rmdir()
    (root / "boxes").rmdir()
    assert [name for name, _ in bounces._new_corpora(root, [])] == ["plain"]
    assert "boxes: not fetched into" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"header": "From", "match": "x"}, "wants header, match and kind"),
        ({"header": "From", "match": "x", "kind": "spam"}, "unknown kind 'spam'"),
    ],
)
def test_a_bad_message_rule_is_refused(rule: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"messages rule 1: {message}")):
        mail_files.rules_of({"messages": [rule]}, bounces.KINDS)


def test_new_scores_each_corpus_and_the_total_twice_with_the_blind_labels(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.plain]\n"bounce-1.eml" = ["someone-else@example.org"]\n')
    monkeypatch.setattr(bounces, "HELD_OUT_LABELS", labels)
    bounces.main(["--new", str(root)])
    out = capsys.readouterr().out
    assert "give --corpus and --corpora too" in out  # no old corpora: copies not checked
    assert "own corpus" not in out  # --new alone scores the fresh corpora only
    for title in ("plain, new, own fields", "boxes, new, blind labels"):
        assert f"{title}: " in out
    own, blind = out.split("all new corpora (--new), held out, own fields: 4 samples")[1].split(
        "all new corpora (--new), held out, blind labels: 4 samples"
    )
    # Two DSNs read as bounces of gone@example.org: right by their own fields; the
    # label says someone else failed in one of them: that one is a miss.
    assert "bounce: 2/2" in own
    assert "bounce: 1/2" in blind
    assert "not-bounce: 2/2" in own and "not-bounce: 2/2" in blind
