"""bench/bounces.py's blind held-out labels: loading them and putting them in place of the
samples' own fields. No corpus is read: the samples here are made up."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import bounces
from dripd.mail import bounces as mail_bounces

LABELS_FILE = Path(bounces.__file__).with_name("bounces_heldout_labels.toml")
# A Postfix-like DSN for gone@example.org.
DSN = (
    b"From: MAILER-DAEMON@mx.example.net\r\n"
    b"To: rep@example.com\r\n"
    b"Subject: Undelivered Mail Returned to Sender\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
    b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
    b"<gone@example.org>: 550 5.1.1 user unknown\r\n"
    b"\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n"
    b"Reporting-MTA: dns; mx.example.net\r\n\r\n"
    b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    b"\r\n--b--\r\n"
)


def _sample(
    name: str, kind: str = "bounce", expected: frozenset[str] | None = None
) -> bounces.Sample:
    return bounces.Sample(
        path=Path("/nowhere") / name, family="x", kind=kind, expected=expected, held_out=True
    )


def test_the_committed_labels_load_and_name_only_held_out_files() -> None:
    labels = bounces._held_out_labels(LABELS_FILE.read_text())
    fresh = set(tomllib.loads(bounces.NEW_CORPORA.read_text()))  # --new: all held out
    names = [n for c, files in labels.recipients.items() if c not in fresh for n in files]
    names += [n for c, files in labels.kinds.items() if c not in fresh for n in files]
    assert names
    for name in names:  # the bench's own split: a label on a tuning-part file would be tuning
        assert hashlib.sha256(name.encode()).digest()[0] % 100 < bounces.HELD_OUT, name
    for files in labels.recipients.values():
        for addresses in files.values():
            assert all(a == a.lower() and "@" in a for a in addresses)


def test_a_label_replaces_the_oracle_and_an_empty_one_means_no_recipient() -> None:
    labels = bounces._held_out_labels(
        """
[labels.sisimai]
"a.eml" = ["Right@Example.org"]
"b.eml" = []
[kinds.sisimai]
"c.eml" = "not-bounce"
"""
    )
    samples = [
        _sample("a.eml", expected=frozenset({"wrong@example.org"})),
        _sample("b.eml"),
        _sample("c.eml", expected=frozenset({"someone@example.org"})),
        _sample("d.eml", expected=frozenset({"own@example.org"})),
    ]
    got = {s.path.name: s for s in bounces._relabelled("sisimai", samples, labels)}
    assert got["a.eml"].expected == frozenset({"right@example.org"})
    assert got["b.eml"].expected == frozenset() and got["b.eml"].kind == "bounce"
    assert got["c.eml"].kind == "not-bounce" and got["c.eml"].expected is None
    assert got["d.eml"] == samples[3]  # no label: the sample's own fields
    # Labels are per corpus: the same file name elsewhere keeps its own fields.
    assert bounces._relabelled("flanker", samples, labels) == samples


def test_recipient_labels_do_not_touch_samples_of_another_kind() -> None:
    labels = bounces._held_out_labels('[labels.sisimai]\n"a.eml" = ["x@example.org"]\n')
    sample = _sample("a.eml", kind="complaint")
    assert bounces._relabelled("sisimai", [sample], labels) == [sample]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[kinds.sisimai]\n"a.eml" = "spam"\n', "unknown kind 'spam'"),
        ('[label.sisimai]\n"a.eml" = []\n', "unknown table(s) ['label']"),
        (
            '[labels.sisimai]\n"a.eml" = []\n[kinds.sisimai]\n"a.eml" = "not-bounce"\n',
            "both labelled and re-kinded",
        ),
    ],
)
def test_a_bad_labels_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        bounces._held_out_labels(text)


def test_a_notice_that_names_no_recipient_is_right_only_read_without_one(tmp_path: Path) -> None:
    path = tmp_path / "dsn.eml"
    path.write_bytes(DSN)
    named = bounces.Sample(
        path=path,
        family="x",
        kind="bounce",
        expected=frozenset({"gone@example.org"}),
        held_out=True,
    )
    right, unchecked, _ = bounces._judge(named)
    assert right and not unchecked
    nobody = bounces.Sample(
        path=path, family="x", kind="bounce", expected=frozenset(), held_out=True
    )
    right, unchecked, seen = bounces._judge(nobody)
    assert not right and not unchecked, (
        seen
    )  # it read gone@example.org: not in a notice naming none


@pytest.mark.parametrize(
    ("failed", "right"),
    [([], True), (["anyone@example.org"], False), (None, False)],
    ids=["bounce-without-recipient", "bounce-with-a-recipient", "not-a-bounce"],
)
def test_the_judging_rule_for_a_notice_that_names_no_recipient(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failed: list[str] | None, right: bool
) -> None:
    path = tmp_path / "notice.eml"
    path.write_bytes(b"Subject: x\r\n\r\nx\r\n")
    read = None
    if failed is not None:
        read = SimpleNamespace(failures=[SimpleNamespace(recipient=r) for r in failed])
    monkeypatch.setattr(mail_bounces, "parse_bounce", lambda message: read)
    sample = bounces.Sample(
        path=path, family="x", kind="bounce", expected=frozenset(), held_out=True
    )
    assert bounces._judge(sample)[:2] == (right, False)


def test_held_out_is_scored_twice_by_its_own_fields_and_with_the_blind_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A made-up set: -00 falls in the held-out part by the bench's hash, -01 in the tuning part.
    (tmp_path / "bsd").mkdir()
    for name in ("lhost-made-up-00.eml", "lhost-made-up-01.eml"):
        (tmp_path / "bsd" / name).write_bytes(DSN)
    labels = tmp_path / "labels.toml"
    labels.write_text('[labels.sisimai]\n"lhost-made-up-00.eml" = []\n')
    monkeypatch.setattr(bounces, "HELD_OUT_LABELS", labels)
    bounces.main(["--corpus", str(tmp_path), "--held-out"])
    out = capsys.readouterr().out
    assert "sisimai, tuning part: 1 samples" in out
    assert "sisimai, held out: 1 samples" in out
    own, blind = out.split("sisimai, held out: ")[1].split("sisimai, held out, blind labels: ")
    assert "bounce: 1/1" in own  # its DSN names gone@example.org, and so it is read
    assert "bounce: 0/1" in blind  # labelled as naming no recipient: reading one is wrong


def _arf(feedback_type: str) -> bytes:
    return (
        b"From: reports@receiver.example\r\nTo: rep@example.com\r\nSubject: report\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nA report.\r\n"
        b"\r\n--b\r\nContent-Type: message/feedback-report\r\n\r\n"
        b"Feedback-Type: " + feedback_type.encode() + b"\r\nVersion: 1\r\n"
        b"Original-Rcpt-To: <ann@example.org>\r\n"
        b"\r\n--b--\r\n"
    )


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [("abuse", "complaint"), ("auth-failure", "not-bounce"), ("not-spam", "not-bounce")],
)
def test_an_arf_report_is_a_complaint_unless_nobody_complained(
    tmp_path: Path, feedback_type: str, kind: str
) -> None:
    path = tmp_path / "arf.eml"
    path.write_bytes(_arf(feedback_type))
    assert bounces._kind(bounces._load(path)) == kind
    sample = bounces.Sample(path=path, family="x", kind=kind, expected=None, held_out=False)
    right, _, seen = bounces._judge(sample)
    assert right, seen


def test_upstream_labels_are_read_from_the_corpus_own_test_table(tmp_path: Path) -> None:
    (tmp_path / "t.py").write_text(
        "DATA = (\n  ('dsn', 'dsn_01.txt', [b'Ann@Example.org']),\n"
        "  ('x', 'two.txt', [b'a@x.example',\n    b'b@x.example']),\n"
        "  ('y', 'two.txt', [b'c@x.example']),\n  ('z', 'none.txt', []),\n)\n"
    )
    spec = {"file": "t.py", "entry": r"\('\w+', '([\w.]+)',\s*\[([^\]]*)\]"}
    labels = bounces._upstream_labels(tmp_path, spec)
    assert labels == {
        "dsn_01.txt": frozenset({"ann@example.org"}),
        "two.txt": frozenset({"a@x.example", "b@x.example", "c@x.example"}),
    }
    assert bounces._upstream_labels(tmp_path, None) == {}
