"""A contact as the store hands it out: `Contact` and `Addressee`, with no database code.

Apart from `contacts.py` (its queries, which load SQLAlchemy) so that what
only holds or builds a contact, such as `dripd check` trying every step on a
sample contact, starts without the database layer.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    id: int
    email: str
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    phone: str = ""
    timezone: str | None = None
    owner: str | None = None
    stage: str = "suspect"
    status: str = "active"
    referred_by: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    touches: int = 0
    last_touch_at: datetime | None = None
    paused_until: datetime | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def values(self) -> dict[str, str]:
        """Every field as text, standard and custom, as templates and anchors see them.

        Every standard field is there, empty when unset: a template may test
        `{% if contact.referred_by %}` for any contact. A custom field is there
        only when the contact has it.
        """
        result = {key: str(value) for key, value in self.fields.items()}
        for key in _TEXT_FIELDS:
            result[key] = getattr(self, key)
        for key in _OPTIONAL_FIELDS:
            result[key] = getattr(self, key) or ""
        result["created_at"] = self.created_at.isoformat()
        return result

    def value(self, key: str) -> str | None:
        """`values().get(key)`, without building the others."""
        return _value(self, key)


class Addressee(NamedTuple):
    """What `schedule` reads of a contact: who it is, and what its steps are timed by.

    The columns of `Contact.values()` (a campaign may time a step by any of
    them), not the counters and bookkeeping: a due page of these is read
    in a third of the time of full contacts. A named tuple of the row's
    values as the driver hands them, built by position (a due page builds a
    thousand); the custom fields' JSON and the creation time are read when
    asked (`fields`, `created_at`).
    """

    email: str
    first_name: str
    last_name: str
    company: str
    phone: str
    timezone: str | None
    owner: str | None
    stage: str
    status: str
    referred_by: str | None
    fields_stored: str | None  # the custom fields' JSON text
    created_stored: Any  # created_at as stored (SQLite: ISO text; PostgreSQL: naive UTC)

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    @property
    def fields(self) -> Mapping[str, str]:
        return _decoded_fields(self.fields_stored)

    @property
    def created_at(self) -> datetime:
        return stored_time(self.created_stored)

    def value(self, key: str) -> str | None:
        """`Contact.values().get(key)` of this contact."""
        return _value(self, key)


def stored_time(value: str | datetime) -> datetime:
    """A stored time as UTCDateTime reads it: SQLite hands ISO text, PostgreSQL a naive datetime."""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")  # tzinfo: the UTC singleton
    return value.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=1024)
def _decoded_fields(text: str | None) -> Mapping[str, str]:
    """A contact's custom fields from their JSON text, read-only: decoded once per text.

    Contacts share texts (an import's columns, appointments on the hour: the
    35k due rows of a 1M book hold ~200), and decoding was a fifth of reading a row.
    """
    return types.MappingProxyType(json.loads(text or "{}"))


_TEXT_FIELDS = ("email", "first_name", "last_name", "company", "phone", "stage", "status")
_OPTIONAL_FIELDS = ("timezone", "owner", "referred_by")


def _value(contact: Contact | Addressee, key: str) -> str | None:
    if key in _TEXT_FIELDS:
        return getattr(contact, key)  # type: ignore[no-any-return]
    if key in _OPTIONAL_FIELDS:
        return getattr(contact, key) or ""
    if key == "created_at":
        return contact.created_at.isoformat()
    return str(contact.fields[key]) if key in contact.fields else None
