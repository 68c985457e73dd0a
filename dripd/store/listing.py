"""Long listings, streamed: rows read a page at a time by key and written as they come.

`dripd contacts list` is built on it, and so can an export be: `contacts()`
yields every matching contact with its active campaigns, in email order,
holding one page (`PAGE` rows) at a time whatever the database holds. The
writers print an iterator of rows without collecting it: a JSON array or JSON
Lines, or plain columns aligned on the first page.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import sqlalchemy as sa

from dripd.store import contacts as store_contacts

PAGE = 1000  # rows per query; also what a terminal sees before its format is chosen


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    """Which contacts: a stage, a campaign they are active in, after an email, how many."""

    stage: str | None = None
    campaign: str | None = None
    after: str | None = None  # keyset: the last email of the previous page
    limit: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    contact: store_contacts.Contact
    campaigns: tuple[str, ...]  # active enrollments


def contacts(conn: sa.Connection, where: Filter, *, page: int = PAGE) -> Iterator[Listed]:
    """The contacts matching `where`, in email order, read `page` at a time."""
    after = where.after.strip().lower() if where.after else None
    left = where.limit
    while left is None or left > 0:
        size = page if left is None else min(page, left)
        people = store_contacts.contacts_page(
            conn, after=after, limit=size, stage=where.stage, campaign=where.campaign
        )
        current = store_contacts.active_campaigns(conn, [c.id for c in people]) if people else {}
        for contact in people:
            yield Listed(contact=contact, campaigns=tuple(current.get(contact.id, ())))
        if len(people) < size:
            return
        after = people[-1].email.lower()
        left = None if left is None else left - size


def head(rows: Iterator[Any], size: int = PAGE) -> tuple[list[Any], bool]:
    """The rows up to one past `size`, and whether that was all of them (at most `size`).

    The rest follow with `itertools.chain(first, rows)`.
    """
    first = list(itertools.islice(rows, size + 1))
    return first, len(first) <= size


# One encoder for every item: json.dumps with options builds a new one per call
# (a third of the cost of a schedule item's line).
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


def encode(item: Any) -> str:
    """`item` as the writers write it: compact JSON, non-ASCII kept, anything else as str()."""
    return _ENCODER.encode(item)


# A str as `encode` writes it (what _ENCODER calls for one, ensure_ascii=False),
# without the encoder's Python-level dispatch: called twice for each schedule item.
encode_text: Callable[[str], str] = json.encoder.encode_basestring


def write_json_array(out: TextIO, items: Iterable[Any], *, end: str = "\n") -> int:
    """A JSON array written item by item, one a line; the count.

    Items are not indented: json's C encoder does only the compact form,
    several times faster over a million contacts.
    """
    return write_json_texts(out, map(_ENCODER.encode, items), end=end)


def write_json_texts(out: TextIO, texts: Iterable[str], *, end: str = "\n") -> int:
    """A JSON array of items already encoded (as `encode` does), one a line; the count.

    Written a page (PAGE items) at a time: unbuffered (PYTHONUNBUFFERED, as
    under systemd) each item's write was a system call.
    """
    pieces = (("[\n  " if i == 0 else ",\n  ") + text for i, text in enumerate(texts))
    return _write_pages(out, pieces, lambda count: ("\n]" if count else "[]") + end)


def write_json_lines(out: TextIO, items: Iterable[Any]) -> int:
    """One JSON object a line, written a page at a time as `write_json_texts`; the count."""
    return _write_pages(out, (_ENCODER.encode(item) + "\n" for item in items))


def _write_pages(
    out: TextIO, pieces: Iterable[str], last: Callable[[int], str] = lambda count: ""
) -> int:
    """`pieces` written and flushed a page (PAGE of them) at a time, `last(count)` with the
    final page; the count."""
    count = 0
    page: list[str] = []
    for piece in pieces:
        page.append(piece)
        count += 1
        if len(page) == PAGE:
            out.write("".join(page))
            out.flush()
            page.clear()
    page.append(last(count))
    out.write("".join(page))
    out.flush()
    return count


def write_columns(
    out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[str]], *, right: Sequence[str] = ()
) -> int:
    """Plain columns, aligned on the widths of the first page (longer cells push on); the count.

    Flushed every page, so `| head` sees its lines at once.
    """
    iterator = iter(rows)
    first = list(itertools.islice(iterator, PAGE))
    widths = [max([len(name), *(len(row[i]) for row in first)]) for i, name in enumerate(headers)]
    aligns: list[Callable[[str, int], str]] = [
        str.rjust if name in right else str.ljust for name in headers
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [fit(cell, width) for fit, cell, width in zip(aligns, cells, widths, strict=True)]
        return "  ".join(parts).rstrip() + "\n"

    out.write(line(headers))
    count = 0
    for count, row in enumerate(itertools.chain(first, iterator), start=1):
        out.write(line(row))
        if count % PAGE == 0:
            out.flush()
    out.flush()
    return count
