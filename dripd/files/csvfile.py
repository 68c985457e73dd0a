"""Reading a contacts CSV: rows with their line numbers, and a problem per bad row.

A file in the wrong encoding does not sink the import: rows that are valid
UTF-8 are kept, each other row is reported by line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from dripd import errors
from dripd.mail import addresses
from dripd.plan import contacts

MAX_FIELD = 100_000  # characters in one CSV cell
# Tried in this order on the header row; the first that finds an email column
# is used. Excel writes ";" where the decimal separator is a comma.
DELIMITERS = (",", ";", "\t")
# Headers that mean the email address elsewhere (Outlook, Google, German Excel)
EMAIL_LIKE = ("e_mail", "email_address", "e_mail_address", "mail", "email_1_value")


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    line: int
    values: contacts.Values
    key: str  # the row's contact identity (its lower-cased email)


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def read(path: Path, rules: contacts.Rules) -> tuple[list[Row], list[Problem]]:
    """Every row of `path`, validated; duplicates of an earlier row are problems."""
    rows: list[Row] = []
    problems: list[Problem] = []
    for result in stream(path, rules):
        (rows if isinstance(result, Row) else problems).append(result)  # type: ignore[arg-type]
    return rows, problems


def stream(path: Path, rules: contacts.Rules) -> Iterator[Row | Problem]:
    """The rows of `path` in file order, validated as they are read (the file is not held).

    Raises ContactError at once for a file that can't be opened or a bad header.
    """
    handle = _open(path)
    try:
        reader = csv.reader(handle, delimiter=_delimiter(handle.readline()))
        handle.seek(0)
        header = _header(path, reader)
    except BaseException:
        handle.close()
        raise
    return _validated(handle, reader, header, rules)


def _validated(
    handle: TextIO, reader: Iterator[list[str]], header: list[str], rules: contacts.Rules
) -> Iterator[Row | Problem]:
    first_line: dict[str, int] = {}
    with handle:
        for line, cells in _records(reader):
            yield _row(line, header, cells, rules, first_line)


def _open(path: Path) -> TextIO:
    """The file as text; bytes that are not UTF-8 become lone surrogates, reported by row."""
    try:
        return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise errors.ContactError(f"{path}: {exc.strerror or exc}") from exc


def _header(path: Path, reader: Iterator[list[str]]) -> list[str]:
    try:
        given = next(reader)
    except StopIteration:
        raise errors.ContactError(f"{path}: the file is empty (expected a header row)") from None
    except csv.Error as exc:
        raise errors.ContactError(f"{path}: line 1: {exc}") from exc
    header = [contacts.field_name(name) for name in given]
    if "email" not in header:
        near = next(
            (raw for raw, name in zip(given, header, strict=True) if name in EMAIL_LIKE), None
        )
        hint = f" (rename the column {near.strip()!r} to email)" if near else ""
        raise errors.ContactError(f"{path}: line 1: the header has no 'email' column{hint}")
    duplicates = sorted({name for name in header if header.count(name) > 1 and name})
    if duplicates:
        raise errors.ContactError(f"{path}: line 1: column {duplicates[0]!r} appears twice")
    if any(_has_surrogate(name) for name in header):
        raise errors.ContactError(f"{path}: line 1: not UTF-8 text (save the file as UTF-8)")
    return header


def _delimiter(first: str) -> str:
    """The delimiter with which the first line has an email column (else a comma).

    Failing that, one with a column like it, so the message can name it.
    """
    for wanted in (("email",), EMAIL_LIKE):
        for delimiter in DELIMITERS:
            names = next(csv.reader([first], delimiter=delimiter), [])
            if any(contacts.field_name(name) in wanted for name in names):
                return delimiter
    return ","


def _records(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str] | csv.Error]]:
    csv.field_size_limit(MAX_FIELD)
    while True:
        line = reader.line_num + 1  # type: ignore[attr-defined]
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, exc
            continue
        if "".join(cells).strip():  # a row of blank cells is skipped
            yield line, cells


def _row(
    line: int,
    header: list[str],
    cells: list[str] | csv.Error,
    rules: contacts.Rules,
    first_line: dict[str, int],
) -> Row | Problem:
    if isinstance(cells, csv.Error):
        return Problem(line=line, message=f"unreadable CSV: {cells}")
    joined = "".join(cells)
    plain = addresses.is_plain(joined)  # most rows: then no surrogate either
    if not plain and _has_surrogate(joined):
        return Problem(line=line, message="not UTF-8 text (save the file as UTF-8)")
    if len(cells) > len(header):
        return Problem(line=line, message=f"{len(cells)} cells but the header has {len(header)}")
    raw = {name: cell for name, cell in zip(header, cells, strict=False) if name}
    try:
        values = contacts.validate(raw, rules, normalized=True, plain=plain)
    except ValueError as exc:
        return Problem(line=line, message=str(exc))
    assert values.email is not None
    key = values.email.lower()
    if key in first_line:
        return Problem(line=line, message=f"duplicate of line {first_line[key]} ({values.email})")
    first_line[key] = line
    return Row(line=line, values=values, key=key)


_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None
