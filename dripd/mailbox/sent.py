"""The rep's Sent folder: found as mail clients find it, and created when it is missing.

`sent_folder` unset: the folder the server marks `\\Sent` (RFC 6154: `LIST
(SPECIAL-USE)` where SPECIAL-USE is offered, else the attributes of a plain
LIST), else the first folder with a usual name ("Sent", "Sent Items", …),
else "Sent" in the personal namespace, created at the first copy (the server
answers that APPEND with `[TRYCREATE]`; a fresh Dovecot mailbox has no Sent
folder). A folder named in the config is used as it is and never created: a
typo would otherwise file every copy where nobody looks.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from dripd.mailbox import imap

logger = logging.getLogger("dripd.sent")

SENT_USE = "\\Sent"
# Names mail clients and servers give the Sent folder, most usual first.
USUAL_NAMES = (
    "Sent",
    "Sent Items",  # Microsoft 365, Outlook.com, Exchange
    "Sent Messages",  # iCloud, Apple Mail
    "[Gmail]/Sent Mail",
    "Sent Mail",
    "INBOX.Sent",  # Courier-style namespaces
    "INBOX/Sent",
)

How = Literal["configured", "special-use", "name", "new"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SentFolder:
    """The folder copies go to, and how it was found."""

    name: str
    how: How

    def describe(self) -> str:
        """How `check --connect` tells it: `'Sent Items' (marked \\Sent by the server)`."""
        reasons = {
            "configured": "sent_folder",
            "special-use": "marked \\Sent by the server",
            "name": "found by its name",
            "new": "not there yet: dripd creates it at the first copy",
        }
        return f"{self.name!r} ({reasons[self.how]})"


async def find(session: imap.Session) -> SentFolder:
    """The Sent folder of the mailbox `session` is logged in to (see the module's docstring)."""
    configured = session.settings.sent_folder
    if configured:
        return SentFolder(name=configured, how="configured")
    listed: list[imap.Listed] = []
    if session.client.has_capability("SPECIAL-USE"):
        # a server that offers it but refuses the selection: the plain LIST below
        with contextlib.suppress(imap.ImapError):
            listed = await session.list_folders(special_use=True)
    marked = _marked(listed)
    if marked is None:
        listed = await session.list_folders()
        marked = _marked(listed)
    if marked is not None:
        return SentFolder(name=marked, how="special-use")
    named = by_name([folder.name for folder in listed])
    if named is not None:
        return SentFolder(name=named, how="name")
    return SentFolder(name=await session.personal_prefix() + "Sent", how="new")


def _marked(listed: list[imap.Listed]) -> str | None:
    return next((f.name for f in listed if SENT_USE.lower() in _lower(f.attributes)), None)


def _lower(attributes: frozenset[str]) -> set[str]:
    return {a.lower() for a in attributes}


def by_name(names: list[str]) -> str | None:
    """The first of USUAL_NAMES among `names` (compared without case), as the server spells it."""
    spelled = {name.lower(): name for name in names}
    return next((spelled[n.lower()] for n in USUAL_NAMES if n.lower() in spelled), None)


async def save(session: imap.Session, folder: SentFolder, data: bytes) -> None:
    """APPEND `data` to `folder`; a folder dripd found, missing, is created and tried again."""
    try:
        await session.append(folder.name, data)
    except imap.ImapError as exc:
        if not exc.trycreate:
            raise
        if folder.how == "configured":
            raise imap.ImapError(
                f"{exc} (sent_folder names a folder this mailbox does not have: correct it, "
                "or remove it and dripd finds or creates the Sent folder)"
            ) from exc
        await session.create(folder.name, use=SENT_USE)
        logger.info(
            "created the Sent folder",
            extra={
                "action": "sent_folder_created",
                "folder": folder.name,
                "mailbox": session.settings.username,
            },
        )
        await session.append(folder.name, data)
