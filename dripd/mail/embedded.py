"""Messages carried inside another one: a bounce forwarded, wrapped or quoted.

A delivery report does not always reach us as itself. A person or a mailing-list
admin forwards it (`Fwd: Undelivered Mail…`, attached as message/rfc822 or quoted
with "> " under "Begin forwarded message:"); a provider's relay wraps the whole
report, headers and all, in a plain-text notice of its own (an mbox "From " line
after a separator); a postmaster pastes it into a message. In each case the
report is a complete message, headers first, somewhere in the outer one.

`inner_messages` finds those, by structure only (an attached message, or a run of
header lines that starts a message), so that the bounce reader can read each one as
if it had arrived alone. It knows nothing of bounces. Pure and bounded: at most
`MAX_INNER` messages, found in the first `MAX_SCAN` bytes of each text part.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import Message

from dripd.mail import reading

MAX_INNER = 4  # messages returned per outer message
MAX_SCAN = 256 * 1024  # bytes of one text part searched for a message
MIN_HEADERS = 3  # header fields in a row, From: among them, that make a message's start

_CARRIED = frozenset({"message/rfc822", "message/global"})
# A header field as an MTA writes it, or an mbox "From " separator line.
_FIELD = re.compile(rb"^[A-Za-z][A-Za-z0-9-]{0,40}:")
_MBOX = re.compile(rb"^From \S+ +\S")
_CONTINUATION = re.compile(rb"^[ \t]+\S")
_FROM = re.compile(rb"^from:", re.IGNORECASE)
# The quoting a mail client puts before forwarded text ("> ", ">> ", "| ").
_QUOTE = re.compile(rb"^(?:[ \t]*[>|])+ ?")


def inner_messages(parts: list[Message]) -> Iterator[Message]:
    """Whole messages attached to, or written out inside, the given leaf parts, in order."""
    found = 0
    for part in parts:
        for inner in _carried(part):
            yield inner
            found += 1
            if found >= MAX_INNER:
                return


def _carried(part: Message) -> Iterator[Message]:
    kind = part.get_content_type()
    if kind in _CARRIED:
        inner = reading.attached(part)
        if inner is not None:
            yield inner
        return
    if kind != "text/plain":
        return
    lines = reading.part_bytes(part)[:MAX_SCAN].splitlines(keepends=True)
    for unquoted in (lines, _unquoted(lines)):
        start = _message_start(unquoted)
        if start is not None:
            text = b"".join(unquoted[start:])
            yield reading.message(text)
            return


def _unquoted(lines: list[bytes]) -> list[bytes]:
    return [_QUOTE.sub(b"", line, count=1) for line in lines]


def _message_start(lines: list[bytes]) -> int | None:
    """Where a message's header block starts: at the top, or after a blank line, a separator
    or an mbox "From " line."""
    for i, line in enumerate(lines):
        if i and lines[i - 1].strip() and not _separator(lines[i - 1]):
            continue
        mbox = bool(_MBOX.match(line))
        start = i + 1 if mbox else i
        if _header_block(lines, start, mbox=mbox):
            return start
    return None


def _separator(line: bytes) -> bool:
    """A line that ends the outer text: dashes, "Begin forwarded message:", an mbox line."""
    text = line.strip()
    return bool(_MBOX.match(line)) or text.endswith(b":") or set(text) <= set(b"-=_*")


def _header_block(lines: list[bytes], start: int, *, mbox: bool) -> bool:
    """MIN_HEADERS fields in a row, a From: among them unless an mbox line announced them."""
    fields = 0
    has_from = False
    for line in lines[start:]:
        if _CONTINUATION.match(line) and fields:
            continue
        if not _FIELD.match(line):
            break
        fields += 1
        has_from = has_from or bool(_FROM.match(line))
    return fields >= MIN_HEADERS and (has_from or mbox)
