"""Bounces and complaints read right, per mail-server family (issue 19).

`python -m bench bounces [--corpus PATH] [--corpora ROOT] [--held-out] [--misses]`

Reads every .eml sample of a folder and checks what dripd makes of it:

- a bounce must be read as one, with the right failed recipient(s);
- an ARF report (RFC 5965) must be classified as a complaint;
- anything else (replies, auto-replies, read receipts, DMARC reports) must never be a
  bounce, nor a complaint.

Two kinds of folder:

- sisimai's `set-of-emails` (github sisimai/set-of-emails, BSD-2), fetched
  outside the repository: `maildir/bsd` and `maildir/not`. The family is the
  file name without its number (`lhost-postfix-07.eml` -> `lhost-postfix`);
  `arf-*` are complaints, `rfc3834-*` and `maildir/not/*` are not bounces, the
  rest are bounces. The expected recipient is read from the sample itself, in
  this order: the DSN's failed/delayed Final-Recipient or Original-Recipient,
  X-Failed-Recipients, the To: of the returned message. A sample with none of
  these counts as "read" but its recipient as unchecked.
  The set is split by a hash of the file name: ~30% is held out. Tuning looks
  at the tuning part only (`--misses` lists its failures); `--held-out` prints
  the held-out score, per family, once the tuning is done: twice, by the
  samples' own fields and with the blind hand labels of
  `bounces_heldout_labels.toml` (made by reading the samples, never dripd's output).
- other public corpora (`--corpora ROOT`, described in `bounces_corpora.toml`):
  bounce parsers' test data and ordinary mail, fetched into ROOT/<name>/. The kind
  of each file comes from its project (tests, folders), the expected recipient from
  the sample as above, the split from the same hash. A file that is a copy of one
  dripd was tuned on (sisimai's set, the repository's corpus) is left out and counted.
- fresh corpora (`--new ROOT`, described in `bounces_corpora_new.toml`), never looked at
  with dripd before their one scoring: EVERY sample is held out, and copies of the
  corpora above are left out and counted. Scored by the samples' own fields and with
  the blind hand labels, per corpus and in total. Their kinds come as above, or from
  header rules for mailboxes of mixed mail (`mail_files.py`).
- the repository's own corpus (the default, when none is given):
  `tests/corpus/families`, whose `expected.toml` gives each sample's class and
  recipient, and `tests/corpus/not-bounces`.
"""

from __future__ import annotations

import argparse
import dataclasses
import email
import email.policy
import hashlib
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage, Message
from pathlib import Path

from bench import common, mail_files
from dripd.mail import bounces, classify, incoming

HELD_OUT = 30  # percent of the fetched set never looked at while tuning
# Tuning-part samples whose failed recipient was checked by reading them, where the
# sample's own fields don't name it (a notice without a DSN whose returned message
# went to an alias or a forward). Our labels, not sisimai's.
LABELS: dict[str, frozenset[str]] = {
    name: frozenset(addresses)
    for name, addresses in tomllib.loads(
        (Path(__file__).with_name("bounces_labels.toml")).read_text()
    ).items()
}
# Held-out samples read by hand, blind to dripd: used by `--held-out`'s second score only.
HELD_OUT_LABELS = Path(__file__).with_name("bounces_heldout_labels.toml")
OLD_CORPORA = Path(__file__).with_name("bounces_corpora.toml")
# Corpora nobody here has run dripd on: `--new` scores them once, all held out.
NEW_CORPORA = Path(__file__).with_name("bounces_corpora_new.toml")
KINDS = ("bounce", "complaint", "not-bounce", "unsubscribe")
_NUMBERED = re.compile(r"-\d+$")
_ADDRESS = re.compile(r"[^@\s<>\"'();,:\[\]]+@[A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9]")
_HEADERS_FOLLOW = re.compile(
    r"headers? (?:follow|of the original)|original message|returned message|"
    r"message headers|below this line|undelivered message",
    re.I,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sample:
    path: Path
    family: str
    kind: str  # "bounce", "complaint" or "not-bounce"
    expected: frozenset[str] | None  # acceptable recipients, None when unknown
    held_out: bool
    raw: bytes | None = None  # a message of an mbox: `path` only names it


@dataclass(frozen=True, slots=True)
class HeldOutLabels:
    """Blind hand labels of held-out samples, per corpus, by file name: the failed
    recipients (empty: the notice names none) or another kind than the corpus says."""

    recipients: dict[str, dict[str, frozenset[str]]]
    kinds: dict[str, dict[str, str]]


@dataclass(slots=True)
class Score:
    kind: str = ""
    total: int = 0
    right: int = 0  # read as it should be (bounce + right recipient, complaint, not a bounce)
    unchecked: int = 0  # bounces read as bounces whose recipient could not be checked
    misses: list[str] = field(default_factory=list)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench bounces")
    parser.add_argument("--corpus", type=Path, help="sisimai set-of-emails checkout, or a folder")
    parser.add_argument(
        "--corpora", type=Path, help="folder holding the corpora of bounces_corpora.toml"
    )
    parser.add_argument("--held-out", action="store_true", help="score the held-out part too")
    parser.add_argument("--misses", action="store_true", help="list the tuning part's misses")
    parser.add_argument(
        "--new", type=Path, help="folder holding the corpora of bounces_corpora_new.toml"
    )
    parser.add_argument(
        "--no-labels", action="store_true", help="score the tuning part as the held-out one is"
    )
    args = parser.parse_args(argv)
    sets: list[tuple[str, list[Sample]]] = []
    if args.corpus or not (args.corpora or args.new):
        sets.append(("sisimai" if args.corpus else "own corpus", _samples(args.corpus)))
    known = _tuned_on(args.corpus)
    if args.corpora:
        for name, found in _other_corpora(args.corpora, known):
            sets.append((name, found))
    blind = _held_out_labels(HELD_OUT_LABELS.read_text())
    others: dict[str, dict[str, Score]] = {"tuning part": {}, "held out": {}, BLIND: {}}
    for name, samples in sets:
        if args.no_labels:  # the samples' own fields only, as for the held-out part
            samples = [dataclasses.replace(s, expected=_own_expectation(s)) for s in samples]
        parts = {"tuning part": [s for s in samples if not s.held_out]}
        if args.held_out:
            parts["held out"] = [s for s in samples if s.held_out]
            parts[BLIND] = _relabelled(name, parts["held out"], blind)
        for part, chosen in parts.items():
            families = _report(
                f"{name}, {part}", chosen, show_misses=args.misses and part == "tuning part"
            )
            if name not in {"sisimai", "own corpus"}:
                _add_up(others[part], families)
    for part, kinds in others.items():
        if kinds:
            _print_table(f"all other corpora (--corpora), {part}", kinds, rows=False)
    if args.new:
        _score_new(args.new, known + _old_corpora_seen(args.corpus, args.corpora), blind)


def _score_new(root: Path, known: list[frozenset[int]], blind: HeldOutLabels) -> None:
    """Every sample of the fresh corpora, held out: by its own fields, then with the
    blind labels; per corpus and in total. Misses are never listed (a blind measure)."""
    totals: dict[str, dict[str, Score]] = {"own fields": {}, "blind labels": {}}
    for name, samples in _new_corpora(root, known):
        _add_up(
            totals["own fields"], _report(f"{name}, new, own fields", samples, show_misses=False)
        )
        relabelled = _relabelled(name, samples, blind)
        _add_up(
            totals["blind labels"],
            _report(f"{name}, new, blind labels", relabelled, show_misses=False),
        )
    for part, kinds in totals.items():
        if kinds:
            _print_table(f"all new corpora (--new), held out, {part}", kinds, rows=False)


def _old_corpora_seen(corpus: Path | None, corpora: Path | None) -> list[frozenset[int]]:
    """Fingerprints of the other corpora's files (all of them: dripd was scored on them)."""
    if corpus is None or corpora is None:
        print("--new: give --corpus and --corpora too, or copies of them are not left out")
    if corpora is None:
        return []
    return [_fingerprint(p.read_bytes()) for p in sorted(corpora.rglob("*")) if p.is_file()]


def _new_corpora(root: Path, known: list[frozenset[int]]) -> list[tuple[str, list[Sample]]]:
    """The fresh corpora fetched under ROOT, every sample held out, copies left out."""
    found = []
    for name, spec in tomllib.loads(NEW_CORPORA.read_text()).items():
        where = root / name
        if not where.is_dir():
            print(f"{name}: not fetched into {where} (bench/README.md says how); skipped")
            continue
        if "messages" in spec:
            samples, copies = _from_messages(where, name, spec, known)
        else:  # held out: no tuning label (bounces_labels.toml) applies
            samples, copies = _described(where, name, spec, known, all_held_out=True)
        if copies:
            print(f"{name}: {copies} file(s) left out, copies of mail dripd was tuned or scored on")
        found.append((name, samples))
    return found


def _from_messages(
    where: Path, name: str, spec: dict[str, object], known: list[frozenset[int]]
) -> tuple[list[Sample], int]:
    """Samples whose kinds come from header rules (mail_files.py), mbox messages included."""
    try:
        rules = mail_files.rules_of(spec, KINDS)
    except ValueError as exc:
        raise ValueError(f"{NEW_CORPORA.name} [{name}]: {exc}") from exc
    samples, copies = [], 0
    for found in mail_files.messages(where, spec, rules):
        if _is_copy(_fingerprint(found.raw), known):
            copies += 1
            continue
        kind, expected = found.kind, None
        if kind == "bounce":
            expected = _expected_recipients(_parse(found.raw))
        samples.append(
            Sample(
                path=found.path,
                family=name,
                kind=kind,
                expected=expected,
                held_out=True,
                raw=found.raw,
            )
        )
    return samples, copies


# --- samples --------------------------------------------------------------------


def _samples(corpus: Path | None) -> list[Sample]:
    if corpus is None:
        return _own_samples(common.REPO / "tests" / "corpus")
    root = corpus / "maildir" if (corpus / "maildir" / "bsd").is_dir() else corpus
    found = [_fetched(p, not_bounce=False) for p in sorted((root / "bsd").glob("*.eml"))]
    found += [_fetched(p, not_bounce=True) for p in sorted((root / "not").glob("*.eml"))]
    if not found:
        found = [_fetched(p, not_bounce=False) for p in sorted(root.rglob("*.eml"))]
    return found


def _other_corpora(root: Path, known: list[frozenset[int]]) -> list[tuple[str, list[Sample]]]:
    described = tomllib.loads(OLD_CORPORA.read_text())
    found = []
    for name, spec in described.items():
        where = root / name
        if not where.is_dir():
            print(f"{name}: not fetched into {where} (bench/README.md says how); skipped")
            continue
        samples, copies = _described(where, name, spec, known)
        if copies:
            print(f"{name}: {copies} file(s) left out, copies of samples dripd was tuned on")
        found.append((name, samples))
    return found


def _described(
    where: Path,
    name: str,
    spec: dict[str, object],
    known: list[frozenset[int]],
    *,
    all_held_out: bool = False,
) -> tuple[list[Sample], int]:
    # Later wins: globs in this order, then files named one by one (no wildcard).
    patterns = [
        (pattern, kind)
        for key, kind in (
            ("bounces", "bounce"),
            ("not_bounces", "not-bounce"),
            ("complaints", "complaint"),
            ("unsubscribes", "unsubscribe"),
        )
        for pattern in spec.get(key, [])  # type: ignore[attr-defined]
    ]
    patterns.sort(key=lambda item: not re.search(r"[*?\[]", item[0]))
    kinds: dict[Path, str] = {}
    for pattern, kind in patterns:
        for path in sorted(where.glob(pattern)):
            if path.is_file() and path.suffix != ".cf":
                kinds[path] = kind
    upstream = _upstream_labels(where, spec.get("labels"))
    samples, copies = [], 0
    for path, kind in sorted(kinds.items()):
        if _is_copy(_fingerprint(path.read_bytes()), known):
            copies += 1
            continue
        msg = _load(path)
        if kind == "bounce":
            kind = _kind(msg)
            if spec.get("auto_reply_oracle") and _says_auto_reply(msg):
                kind = "not-bounce"
        # One family per corpus: their file names are no mail-server families, and a
        # family per file would list the held-out part's misses by name.
        family = name
        expected = _expected_recipients(msg) if kind == "bounce" else None
        held_out = all_held_out or _hashed_out(path.name)
        if kind == "bounce" and upstream.get(path.name):
            expected = upstream[path.name]  # the project's own tests say which failed
        if not held_out and kind == "bounce":
            expected = LABELS.get(path.name, expected)
        samples.append(
            Sample(path=path, family=family, kind=kind, expected=expected, held_out=held_out)
        )
    return samples, copies


def _upstream_labels(where: Path, spec: object) -> dict[str, frozenset[str]]:
    """The failed recipients a corpus's own tests expect, per file name: `labels =
    {file, entry}` names the fetched test file and a regex whose groups are a sample's
    file name and the text holding its addresses (all entries of a file add up)."""
    if not isinstance(spec, dict):
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    text = (where / spec["file"]).read_text(errors="replace")
    for name, addresses in re.findall(spec["entry"], text):
        found[name].update(_addresses(addresses))
    return {name: frozenset(addresses) for name, addresses in found.items() if addresses}


_AUTO_SUBJECT = re.compile(
    r"out of (?:the )?office|auto(?:matic)?[- ]?(?:reply|response|answer)|vacation|abwesen",
    re.I,
)


def _says_auto_reply(msg: EmailMessage) -> bool:
    """The sample's Subject says it is an auto-reply and it carries no delivery report.
    (Not Auto-Submitted: Exim marks its bounces "auto-replied" too.)"""
    if any(p.get_content_type() == "message/delivery-status" for p in msg.walk()):
        return False
    return bool(_AUTO_SUBJECT.search(str(msg.get("Subject", "") or "")))


def _fingerprint(raw: bytes) -> frozenset[int]:
    """The message's longer lines, whitespace folded: equal for a copy re-wrapped or
    with other line ends, different for another message."""
    lines = (b" ".join(line.split()) for line in raw.splitlines())
    return frozenset(hash(line) for line in lines if len(line) >= 24)


def _is_copy(lines: frozenset[int], known: list[frozenset[int]]) -> bool:
    """Most of the message's lines are in one known sample (a copy, re-anonymised or cut)."""
    return bool(lines) and any(len(lines & other) >= 0.6 * len(lines) for other in known)


def _tuned_on(corpus: Path | None) -> list[frozenset[int]]:
    """Fingerprints of the samples dripd was tuned on: the repository's corpus and
    sisimai's set (whole, held-out part included: a copy is not an independent test)."""
    paths = list((common.REPO / "tests" / "corpus").rglob("*.eml"))
    if corpus is not None:
        paths += list(corpus.rglob("*.eml"))
    return [_fingerprint(p.read_bytes()) for p in paths]


def _own_samples(corpus: Path) -> list[Sample]:
    expected = tomllib.loads((corpus / "families" / "expected.toml").read_text())
    found = []
    for name, item in expected.items():
        recipients = frozenset(item.get("recipients", []))
        kind = {"bounce": "bounce", "complaint": "complaint"}.get(item["class"], "not-bounce")
        path = corpus / "families" / name
        found.append(
            Sample(path=path, family=item["family"], kind=kind, expected=recipients, held_out=False)
        )
    for path in sorted((corpus / "not-bounces").glob("*.eml")):
        # No bounce; an abuse report there (sisimai-arf-03) must still read as a complaint.
        arf = str(_load(path).get_param("report-type", "")).lower() == "feedback-report"
        kind = "complaint" if arf else "not-bounce"
        found.append(
            Sample(path=path, family="not-bounce", kind=kind, expected=None, held_out=False)
        )
    return found


def _fetched(path: Path, *, not_bounce: bool) -> Sample:
    family = "not-bounce" if not_bounce else _NUMBERED.sub("", path.stem)
    msg = _load(path)
    kind = "not-bounce" if not_bounce or family.startswith("rfc3834") else _kind(msg)
    expected = _expected_recipients(msg) if kind == "bounce" else None
    held_out = _hashed_out(path.name)
    if not held_out:
        expected = LABELS.get(path.name, expected)
    return Sample(path=path, family=family, kind=kind, expected=expected, held_out=held_out)


def _hashed_out(name: str) -> bool:
    """The split: a file whose name's hash falls in the held-out part (HELD_OUT %)."""
    return hashlib.sha256(name.encode()).digest()[0] % 100 < HELD_OUT


BLIND = "held out, blind labels"


def _held_out_labels(text: str) -> HeldOutLabels:
    """Reads `bounces_heldout_labels.toml`: `[labels.<corpus>]` file = [addresses],
    `[kinds.<corpus>]` file = kind."""
    data = tomllib.loads(text)
    unknown = set(data) - {"labels", "kinds"}
    if unknown:
        raise ValueError(f"held-out labels: unknown table(s) {sorted(unknown)}")
    recipients = {
        corpus: {name: frozenset(a.lower() for a in addresses) for name, addresses in files.items()}
        for corpus, files in data.get("labels", {}).items()
    }
    kinds: dict[str, dict[str, str]] = data.get("kinds", {})
    for corpus, files in kinds.items():
        for name, kind in files.items():
            if kind not in KINDS:
                raise ValueError(f"held-out labels: {corpus} {name}: unknown kind {kind!r}")
            if kind != "bounce" and name in recipients.get(corpus, {}):
                raise ValueError(f"held-out labels: {corpus} {name}: both labelled and re-kinded")
    return HeldOutLabels(recipients=recipients, kinds=kinds)


def _relabelled(corpus: str, samples: list[Sample], labels: HeldOutLabels) -> list[Sample]:
    """The samples with the blind labels in place of their own fields: a new kind, or
    the failed recipients of a bounce (an empty set: the notice names none)."""
    kinds = labels.kinds.get(corpus, {})
    recipients = labels.recipients.get(corpus, {})
    found = []
    for sample in samples:
        name = sample.path.name
        if name in kinds:
            kind = kinds[name]
            expected = recipients.get(name) if kind == "bounce" else None
            sample = dataclasses.replace(sample, kind=kind, expected=expected)
        elif sample.kind == "bounce" and name in recipients:
            sample = dataclasses.replace(sample, expected=recipients[name])
        found.append(sample)
    return found


def _own_expectation(sample: Sample) -> frozenset[str] | None:
    if sample.kind != "bounce" or sample.path.name not in LABELS:
        return sample.expected
    return _expected_recipients(_load(sample.path))


def _kind(msg: EmailMessage) -> str:
    """A feedback report (ARF, SES complaint), an unsubscribe request, or a bounce."""
    if str(msg.get_param("report-type", "")).lower() == "feedback-report":
        # RFC 6591's authentication failure reports (DMARC's ruf=) and "not-spam" reports
        # are ARF too, but nobody complained: sisimai files them with its ARF samples.
        try:  # header lines as they came: refolding raises on some real Message-IDs
            text = msg.as_string(policy=email.policy.default.clone(refold_source="none"))
        except (ValueError, LookupError, IndexError):
            text = ""
        types = set(re.findall(r"(?im)^feedback-type:\s*([\w-]+)", text))
        if types and {t.lower() for t in types} <= {"auth-failure", "not-spam"}:
            return "not-bounce"
        return "complaint"
    if b"X-HmXmrOriginalRecipient:" in msg.as_bytes():
        return "complaint"  # Microsoft's JMRP
    body = msg.get_body(("plain",))
    text = body.get_content() if isinstance(body, EmailMessage) else ""
    if '"notificationType":"Complaint"' in text:
        return "complaint"
    if '"notificationType":"Bounce"' in text:
        return "bounce"
    if '"notificationType":"Delivery"' in text:
        return "not-bounce"  # SES's delivery notification: a success
    if re.match(r"\s*unsubscribe\b", str(msg.get("Subject", "")), re.I):
        return "unsubscribe"  # sisimai files List-Unsubscribe mails with its ARF samples
    return "bounce"


def _load(path: Path) -> EmailMessage:
    return _parse(path.read_bytes())


def _parse(raw: bytes) -> EmailMessage:
    raw = raw.lstrip(b" \t\r\n")  # some samples start with a blank line
    return email.message_from_bytes(raw, policy=email.policy.default)


def _expected_recipients(msg: EmailMessage) -> frozenset[str] | None:
    """What the sample itself says failed, independently of dripd's reader."""
    for reader in (_dsn_expected, _x_failed_expected, _returned_to_expected):
        found = reader(msg)
        if found:
            return frozenset(found)
    return None


def _dsn_expected(msg: EmailMessage) -> set[str]:
    found: set[str] = set()
    for part in msg.walk():
        if not part.get_content_type().endswith("delivery-status"):
            continue  # RFC 3464's, RFC 6533's message/global-delivery-status, x- names
        for block in re.split(r"\n\s*\n", _text(part)):
            action = re.search(r"(?im)^action:\s*(\w+)", block)
            if action and action.group(1).lower() in {"delivered", "relayed", "expanded"}:
                continue
            for key in ("final-recipient", "original-recipient", "x-actual-recipient"):
                for value in re.findall(rf"(?im)^{key}:\s*(.*)$", block):
                    found.update(_addresses(value.split(";", 1)[-1]))
    return found


def _x_failed_expected(msg: EmailMessage) -> set[str]:
    return set(_addresses(str(msg.get("X-Failed-Recipients", "") or "")))


def _returned_to_expected(msg: EmailMessage) -> set[str]:
    """The returned message's To/Cc and its Received "for <...>": weaker (aliases, forwards)."""
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in {
            "message/rfc822",
            "message/global",
            "text/rfc822-headers",
            "message/rfc822-headers",
            "message/global-headers",
        }:
            found = _to_and_for(_text(part))
            if found:
                return found
    text = "\n".join(_text(p) for p in msg.walk() if p.get_content_type() == "text/plain")
    follow = _HEADERS_FOLLOW.search(text)
    return _to_and_for(text[follow.end() :]) if follow else set()


def _to_and_for(headers: str) -> set[str]:
    found: set[str] = set()
    for value in re.findall(r"(?im)^[ \t>]*(?:to|cc):[ \t]*(.*(?:\n[ \t]+\S.*)*)", headers):
        found.update(_addresses(value))
    for value in re.findall(r"(?i)\bfor <([^>]+)>", headers):
        found.update(_addresses(value))
    return found


def _text(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n\n".join(p.as_string() if isinstance(p, Message) else str(p) for p in payload)
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)


def _addresses(value: str) -> list[str]:
    return [a.lower().rstrip(".") for a in _ADDRESS.findall(value)]


# --- scoring --------------------------------------------------------------------


class _Everyone:
    """A world where every address is a contact and every message was ours."""

    def sent(self, message_id: str) -> classify.SentRef | None:
        return classify.SentRef(
            message_id=message_id, contact_id=1, recipient="a@b.example", rep="r"
        )

    def contact(self, address: str) -> classify.ContactRef | None:
        return classify.ContactRef(id=1, email=address)

    def rep_of(self, address: str) -> str | None:
        return None

    def digest(self, message_id: str) -> str | None:
        return None


def _judge(sample: Sample) -> tuple[bool, bool, str]:
    """(right, unchecked, what was read)."""
    raw = sample.raw if sample.raw is not None else sample.path.read_bytes()
    mail = incoming.parse(raw)
    if sample.kind in {"complaint", "unsubscribe"}:
        verdict = classify.classify(mail, _Everyone(), received=date(2026, 1, 1))
        return verdict.cls == sample.kind, False, verdict.cls
    bounce = bounces.parse_bounce(mail.message)
    got = sorted({f.recipient for f in bounce.failures}) if bounce else []
    if sample.kind == "not-bounce":  # neither a bounce nor a complaint (an ARF report)
        if bounce is None and classify.reading_json(mail.message)["kind"] == "complaint":
            return False, False, "complaint"
        return bounce is None, False, f"bounce {got}" if bounce else "not a bounce"
    if bounce is None:
        return False, False, "not a bounce"
    if sample.expected is None:
        return True, True, f"bounce {got} (unchecked)"
    if not sample.expected:  # a hand label: the notice names no recipient, so none is right
        return not got, False, f"bounce {got}, the notice names no recipient"
    right = bool(got) and all(r in sample.expected for r in got)
    return right, False, f"bounce {got}, expected {sorted(sample.expected)}"


def _add_up(into: dict[str, Score], families: dict[str, Score]) -> None:
    """Totals per kind of sample, over corpora."""
    for score in families.values():
        total = into.setdefault(score.kind, Score(kind=score.kind))
        total.total += score.total
        total.right += score.right
        total.unchecked += score.unchecked


def _report(title: str, samples: list[Sample], *, show_misses: bool) -> dict[str, Score]:
    families: dict[str, Score] = defaultdict(Score)
    for sample in samples:
        try:
            right, unchecked, seen = _judge(sample)
        except Exception as exc:  # dripd's readers promise never to raise: a miss, shown
            right, unchecked, seen = False, False, f"raises {type(exc).__name__}: {exc}"[:200]
        key = sample.family if sample.kind == "bounce" else f"{sample.family} [{sample.kind}]"
        score = families[key]
        score.kind = sample.kind
        score.total += 1
        score.right += right
        score.unchecked += unchecked
        if not right or unchecked:
            score.misses.append(f"{sample.path.name}: {seen}")
    _print_table(title, families)
    if show_misses:
        for name, score in sorted(families.items()):
            for miss in score.misses:
                label = "unchecked" if miss.endswith("(unchecked)") else "miss"
                print(f"  {label} {name}: {miss}")
    return families


def _print_table(title: str, families: dict[str, Score], *, rows: bool = True) -> None:
    print(f"{title}: {sum(s.total for s in families.values())} samples")
    if rows:
        print(f"  {'family':<24} {'right':>9} {'unchecked':>9}")
        for name, score in sorted(families.items()):
            print(f"  {name:<24} {score.right:>4}/{score.total:<4} {score.unchecked:>9}")
    for kind, names in _kinds(families).items():
        total = sum(families[n].total for n in names)
        right = sum(families[n].right for n in names)
        unchecked = sum(families[n].unchecked for n in names)
        if total:
            also = f" ({unchecked} of them with no recipient to check against)" if unchecked else ""
            print(f"  {kind}: {right}/{total} = {right / total:.1%}{also}")


def _kinds(families: dict[str, Score]) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for name, score in families.items():
        kinds.setdefault(score.kind, []).append(name)
    return kinds
