"""`normalize_address` reads U+0080-U+FFFF as the address pattern always has (start-up, issue 21).

The pattern is compiled on ASCII classes only (cheap at start-up) and each
character of U+0080-U+FFFF is read as "a"; the reference here is the pattern
as it was, with those characters in every class.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dripd.mail import addresses

FULL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+"
    r"@(?:[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\-\u0080-\uffff]{0,61}[A-Za-z0-9\u0080-\uffff])?\.)*"
    r"[A-Za-z0-9\u0080-\uffff](?:[A-Za-z0-9\-\u0080-\uffff]{0,61}[A-Za-z0-9\u0080-\uffff])?$"
)
# Characters near every edge: ASCII, the classes' punctuation, U+0080-U+FFFF and past it.
CHARS = st.sampled_from(
    [*'aZ09.-@!#`{|}~ "<>\n\t\x7f', "\x80", "é", "ß", "日", "\ud7ff", "\uffff", "\U00010000", "😀",
     "\u00a0", "\u2028"]
)  # fmt: skip


def accepted(text: str) -> bool:
    try:
        addresses.normalize_address(text)
    except ValueError:
        return False
    return True


def accepted_by_full_pattern(text: str) -> bool:
    value = text.strip()
    if not value or len(value) > addresses.MAX_ADDRESS or ".." in value:
        return False
    if not FULL.match(value):
        return False
    local = value.split("@", 1)[0]
    return not (local.startswith(".") or local.endswith("."))


@settings(max_examples=1000, deadline=None)
@given(st.text(CHARS, max_size=30) | st.emails().map(str))
@example("josé@exämple.com")
@example("ann@日本.jp")
@example("ann@example.com\n")
@example("😀@example.com")
@example("ann@exa😀mple.com")
def test_the_ascii_pattern_accepts_what_the_full_one_did(text: str) -> None:
    assert accepted(text) == accepted_by_full_pattern(text)
