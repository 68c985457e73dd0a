"""Trying the database and each rep's mailboxes as `dripd run` will (`check --connect`).

Database: open it and read its schema version; a SQLite file that does not
exist yet is not created. SMTP: connect, TLS, log in, say goodbye; nothing
is sent. IMAP: log in, open the watched folder and the Sent folder read-only
(EXAMINE); nothing changes. Every failure is one line naming what failed and
the server's words.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dripd import clock, errors
from dripd.files import config
from dripd.mailbox import imap, sent, smtp, tls, tokens
from dripd.store import engine as store_engine
from dripd.store import oauth_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class Tried:
    """One thing `check --connect` tried: the database, or a rep's SMTP or IMAP mailbox."""

    what: str  # "database sqlite:///…", "rep mike smtp"
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.what}: {self.detail}"


def database(url: str) -> Tried:
    """Whether dripd can open the database at `url`, and what it would find there."""
    what = f"database {store_engine.safe_url(url)}"
    found = sa.engine.make_url(store_engine.engine_url(url))
    if found.drivername.startswith("sqlite") and found.database not in (None, "", ":memory:"):
        path = Path(found.database)
        if not path.parent.is_dir():
            return Tried(what=what, ok=False, detail=f"its folder {path.parent} does not exist")
        if not path.exists():
            if os.access(path.parent, os.W_OK):
                return Tried(what=what, ok=True, detail="not created yet; dripd run creates it")
            detail = f"not created yet, and {path.parent} is not writable by this user"
            return Tried(what=what, ok=False, detail=detail)
    try:
        engine = store_engine.create_engine(url)
    except errors.StoreError as exc:
        return Tried(what=what, ok=False, detail=str(exc))
    try:
        version = store_engine.schema_version(engine)
    except sa.exc.SQLAlchemyError as exc:
        return Tried(what=what, ok=False, detail=f"cannot open: {store_engine.first_line(exc)}")
    finally:
        engine.dispose()
    head = store_engine.HEAD
    if version is None:
        return Tried(what=what, ok=True, detail="empty; dripd run creates the tables")
    if version > head:
        detail = f"schema {version}, newer than this dripd knows ({head}): upgrade dripd here"
        return Tried(what=what, ok=False, detail=detail)
    if version < head:
        return Tried(what=what, ok=True, detail=f"schema {version}; dripd run migrates it")
    return Tried(what=what, ok=True, detail=f"schema {version}, up to date")


async def probe_all(cfg: config.Config) -> list[Tried]:
    """Every configured mailbox of every rep, tried at once; in config order.

    An OAuth2 mailbox logs in with the rep's sign-in from the database (its
    access token refreshed, and a rotated refresh token saved, as the daemon would).
    """
    engine = None
    if any(rep.uses_oauth2 for rep in cfg.reps) and _database_exists(cfg.database_url):
        engine = store_engine.create_engine(cfg.database_url)
    try:
        tries = []
        for rep in cfg.reps:
            if rep.smtp is not None:
                tries.append(_smtp(rep, rep.smtp, _source(engine, rep, rep.smtp)))
            if rep.imap is not None:
                tries.append(_imap(rep.id, rep.imap, _source(engine, rep, rep.imap)))
        return list(await asyncio.gather(*tries))
    finally:
        if engine is not None:
            engine.dispose()


def _database_exists(url: str) -> bool:
    path = sa.engine.make_url(store_engine.engine_url(url)).database
    return not url.startswith("sqlite") or (path is not None and Path(path).exists())


def _source(
    engine: sa.Engine | None,
    rep: config.RepConfig,
    box: config.SmtpConfig | config.ImapConfig,
) -> tokens.TokenSource | errors.SignInError | None:
    """The mailbox's token source; a SignInError (to report) when it can have none."""
    if box.auth != "oauth2":
        return None
    if engine is None:
        return tokens.not_signed_in(rep.id)
    try:
        with engine.connect() as conn:
            oauth_tokens.read(conn, rep.id)
    except sa.exc.SQLAlchemyError:  # an older schema: no sign-in stored yet
        return tokens.not_signed_in(rep.id)
    return tokens.source(engine, rep, clock.SystemClock(), box)


async def _smtp(
    rep: config.RepConfig,
    settings: config.SmtpConfig,
    source: tokens.TokenSource | errors.SignInError | None,
) -> Tried:
    where = f"{settings.host}:{settings.port} ({settings.security})"
    connection: smtp.Connection | None = None
    try:
        if isinstance(source, errors.SignInError):
            raise source
        context = tls.for_mailbox(settings)
        connection = smtp.Connection(settings, settings.password(), context, token_source=source)
        await connection.open()
        try:
            await connection.try_sender(rep.email)
        except smtp.SendError as exc:
            refused = f"{where}: mail from {rep.email} refused: {exc}"
            return Tried(what=f"rep {rep.id} smtp", ok=False, detail=refused)
    except (smtp.SendError, errors.DripdError) as exc:
        return Tried(what=f"rep {rep.id} smtp", ok=False, detail=_failure(where, exc))
    finally:
        if connection is not None:
            await connection.close()
    login = f"logged in as {settings.username}" if settings.username else "no login"
    if source is not None:
        login = f"logged in as {rep.login} (OAuth2)"
    return Tried(
        what=f"rep {rep.id} smtp", ok=True, detail=f"{where}, {login}, may send as {rep.email}"
    )


async def _imap(
    rep: str,
    settings: config.ImapConfig,
    source: tokens.TokenSource | errors.SignInError | None,
) -> Tried:
    where = f"{settings.host}:{settings.port}"
    try:
        if isinstance(source, errors.SignInError):
            raise source
        async with imap.Session(settings, settings.password(), token_source=source) as session:
            await session.examine(settings.folder)
            found = await _sent_folder(session)
    except (imap.ImapError, errors.DripdError) as exc:
        return Tried(what=f"rep {rep} imap", ok=False, detail=_failure(where, exc))
    detail = f"{where}, opened {settings.folder!r}{found}"
    return Tried(what=f"rep {rep} imap", ok=True, detail=detail)


async def _sent_folder(session: imap.Session) -> str:
    """`, Sent folder 'Sent Items' (marked \\Sent by the server)`, opened when it is there."""
    if not session.settings.uses_sent_folder:
        return ', no Sent folder (sent_folder = "")'
    folder = await sent.find(session)
    if folder.how != "new":
        await session.examine(folder.name)
    return f", Sent folder {folder.describe()}"


def _failure(where: str, exc: Exception) -> str:
    """The error, after the server's address unless the error names it already."""
    text = str(exc)
    return text if where.split(" ")[0] in text else f"{where}: {text}"
