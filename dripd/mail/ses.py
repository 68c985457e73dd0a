"""Amazon SES notifications forwarded by email (SNS): bounces and complaints as JSON.

A sender on SES who subscribes an address to the bounce/complaint topic gets
one email per event, its body a JSON document: `notificationType` "Bounce"
(with `bounce.bounceType` Permanent/Transient and `bouncedRecipients`) or
"Complaint" (with `complaint.complainedRecipients`); a configuration set's
event publishing names it `eventType` instead. The document comes bare, pretty-
printed, or inside SNS's own envelope (`{"Type": "Notification", ..., "Message":
"<the document as a string>"}`). Mail gateways sometimes wrap the long line with
"!" and a newline, or fold it anywhere; that is undone before parsing.
Pure; never raises.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_JSON = 256 * 1024  # characters: an SES notification is a few kilobytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    address: str
    status: str | None
    diagnostic: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    kind: str  # "Bounce" or "Complaint"
    permanent: bool  # bounces: bounceType Permanent (Transient and Undetermined are not)
    recipients: tuple[Recipient, ...]
    message_id: str | None  # SES's id of the message it is about


def read(text: str) -> Notice | None:
    """The notification in `text` (an email body), or None when it is not one."""
    start = text.find("{")
    if start < 0 or len(text) > MAX_JSON:
        return None
    if "notificationType" not in text and "eventType" not in text:
        return None
    body = text[start:].replace("!\r\n ", "").replace("!\n ", "")
    data = _decoded(body)
    if data is None:  # folded inside a string: SNS's lines joined back as they were cut
        data = _decoded("".join(body.splitlines()))
    if data is not None and isinstance(data.get("Message"), str):
        data = _decoded(str(data["Message"]))  # SNS's envelope around the notification
    return _notice(data) if data is not None else None


def _decoded(body: str) -> dict[str, object] | None:
    """The JSON object that starts `body` (anything after it ignored), or None."""
    try:
        data, _ = json.JSONDecoder().raw_decode(body.lstrip())
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _notice(data: dict[str, object]) -> Notice | None:
    kind = data.get("notificationType") or data.get("eventType")
    if kind == "Bounce":
        event = _dict(data.get("bounce"))
        listed = event.get("bouncedRecipients")
        permanent = event.get("bounceType") == "Permanent"
    elif kind == "Complaint":
        event = _dict(data.get("complaint"))
        listed = event.get("complainedRecipients")
        permanent = True
    else:
        return None
    recipients = tuple(r for r in map(_recipient, _list(listed)) if r is not None)
    message_id = _dict(data.get("mail")).get("messageId")
    return Notice(
        kind=kind,
        permanent=permanent,
        recipients=recipients,
        message_id=message_id if isinstance(message_id, str) else None,
    )


def _recipient(item: object) -> Recipient | None:
    entry = _dict(item)
    address = entry.get("emailAddress")
    if not isinstance(address, str) or "@" not in address:
        return None
    status = entry.get("status")
    diagnostic = entry.get("diagnosticCode")
    return Recipient(
        address=address.strip().strip("<>").lower(),
        status=status if isinstance(status, str) else None,
        diagnostic=" ".join(diagnostic.split())[:200] if isinstance(diagnostic, str) else "",
    )


def _dict(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
