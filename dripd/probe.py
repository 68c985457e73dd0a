"""Trying each rep's mailboxes as `dripd run` will use them (`dripd check --connect`).

SMTP: connect, TLS, log in, say goodbye; nothing is sent. IMAP: log in, open
the watched folder and the Sent folder read-only (EXAMINE); nothing changes.
Every failure is one line naming the rep, the mailbox and the server's words.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dripd import config, errors, imap, smtp


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    rep: str
    mailbox: Literal["smtp", "imap"]
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"rep {self.rep} {self.mailbox}: {self.detail}"


async def probe_all(cfg: config.Config) -> list[Probe]:
    """Every configured mailbox of every rep, tried at once; in config order."""
    tries = []
    for rep in cfg.reps:
        if rep.smtp is not None:
            tries.append(_smtp(rep.id, rep.smtp))
        if rep.imap is not None:
            tries.append(_imap(rep.id, rep.imap))
    return list(await asyncio.gather(*tries))


async def _smtp(rep: str, settings: config.SmtpConfig) -> Probe:
    where = f"{settings.host}:{settings.port} ({settings.security})"
    try:
        connection = smtp.Connection(settings, settings.password(), smtp.mailbox_tls(settings))
        await connection.open()
        await connection.close()
    except (smtp.SendError, errors.ConfigError) as exc:
        return Probe(rep=rep, mailbox="smtp", ok=False, detail=_failure(where, exc))
    login = f"logged in as {settings.username}" if settings.username else "no login"
    return Probe(rep=rep, mailbox="smtp", ok=True, detail=f"{where}, {login}")


async def _imap(rep: str, settings: config.ImapConfig) -> Probe:
    where = f"{settings.host}:{settings.port}"
    folders = [settings.folder]
    if settings.sent_folder:
        folders.append(settings.sent_folder)
    try:
        async with imap.Session(settings, settings.password()) as session:
            for folder in folders:
                await session.examine(folder)
    except (imap.ImapError, errors.ConfigError) as exc:
        return Probe(rep=rep, mailbox="imap", ok=False, detail=_failure(where, exc))
    opened = " and ".join(repr(f) for f in folders)
    return Probe(rep=rep, mailbox="imap", ok=True, detail=f"{where}, opened {opened}")


def _failure(where: str, exc: Exception) -> str:
    """The error, after the server's address unless the error names it already."""
    text = str(exc)
    return text if where.split(" ")[0] in text else f"{where}: {text}"
