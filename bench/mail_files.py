"""The messages of a fetched corpus whose kinds come from header rules, not file names.

Some projects keep their mail as Unix mailboxes, one file per test, several messages
each, of several kinds (Exim's `test/mail`: the bounces, delay warnings and
auto-replies Exim itself wrote, next to the test messages it delivered). Their
folders say nothing of each message's kind, but the mail server's own markers do (its
bounce Subject, Auto-Submitted). A corpus of `bounces_corpora_new.toml` may say so:

    mbox = true                # each file is an mbox: one sample per message
    files = ["test/mail/*"]    # which files (globs under the corpus's folder)
    messages = [               # first rule whose header matches gives the kind
      { header = "Subject", match = "^Mail delivery failed", kind = "bounce" },
      { header = "From", match = "(?i)mailer-daemon", kind = "skip" },
    ]

A message no rule matches is left out, as is one whose rule says "skip": the rules
name what is known, nothing is guessed. No reader of dripd is used here.
"""

from __future__ import annotations

import mailbox
import re
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path

SKIP = "skip"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    header: str
    match: re.Pattern[str]
    kind: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Found:
    """One message: `path` names it (an mbox's n-th message is `<file>.<n>`, n from 1,
    a path that does not exist), `raw` is its bytes."""

    path: Path
    raw: bytes
    kind: str


def rules_of(spec: dict[str, object], kinds: tuple[str, ...]) -> list[Rule]:
    """The corpus's `messages` rules, checked: a bad one is named by its number."""
    items = spec.get("messages", [])
    if not isinstance(items, list):
        raise ValueError("messages: wants a list of rules")
    found = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or set(item) != {"header", "match", "kind"}:
            raise ValueError(f"messages rule {number}: wants header, match and kind")
        if item["kind"] not in (*kinds, SKIP):
            raise ValueError(f"messages rule {number}: unknown kind {item['kind']!r}")
        found.append(
            Rule(header=item["header"], match=re.compile(item["match"]), kind=item["kind"])
        )
    return found


def messages(where: Path, spec: dict[str, object], rules: list[Rule]) -> list[Found]:
    """Every message of the corpus's `files` that a rule gives a kind, in file order."""
    globs = spec.get("files", [])
    if not isinstance(globs, list):
        raise ValueError("files: wants a list of globs")
    paths = sorted({p for g in globs for p in where.glob(g) if p.is_file()})
    found = []
    for path in paths:
        for named, raw in _split(path) if spec.get("mbox") else [(path, path.read_bytes())]:
            kind = kind_of(raw, rules)
            if kind is not None:
                found.append(Found(path=named, raw=raw, kind=kind))
    return found


def kind_of(raw: bytes, rules: list[Rule]) -> str | None:
    """The kind of the first rule matching the message's headers; None to leave it out."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    for rule in rules:
        if any(rule.match.search(str(v)) for v in headers.get_all(rule.header, [])):
            return None if rule.kind == SKIP else rule.kind
    return None


def _split(path: Path) -> list[tuple[Path, bytes]]:
    """An mbox's messages, From_ lines dropped; a file with no From_ line has none."""
    box = mailbox.mbox(path, create=False)
    try:
        return [
            (path.with_name(f"{path.name}.{n}"), box.get_bytes(key))
            for n, key in enumerate(box.keys(), 1)
        ]
    finally:
        box.close()
