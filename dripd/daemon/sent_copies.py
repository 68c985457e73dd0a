"""The rep's Sent folder: a copy of each email sent, and the crash rule that looks there.

Crash rule (documented in docs/operator.md, "Sending"): an email whose state is `sending` at
start was in flight when dripd died. If the rep's Sent folder (IMAP) has its
Message-ID, it went out and is marked sent; otherwise it is sent again. A
duplicate is therefore possible only for an email whose data had reached the
server before dripd recorded the server's answer (at most one per SMTP
connection per crash), and only when the server keeps no copy in Sent.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from dripd import errors
from dripd.files import config
from dripd.mail import mime
from dripd.mailbox import imap, sent, tokens
from dripd.pipeline.app import App
from dripd.store import outbox

logger = logging.getLogger("dripd.daemon")

COPY_INTERVAL = 30  # seconds between Sent-folder copy runs
COPY_BATCH = 100


async def reconcile(
    app: App, reps: Collection[str], *, instance: str | None = None
) -> dict[str, int]:
    """Decide the emails of `reps` left `sending` by a crash: sent (found in Sent) or queued again.

    Run when this instance takes a mailbox: its previous holder is gone (on
    SQLite, any earlier `dripd run`); an email claimed by an instance still
    alive is in flight there and is left alone (outbox.orphaned). And when a
    sender of this `instance` starts again after a failure: those it claimed too.
    """
    with app.reader.connect() as conn:
        uncertain = outbox.orphaned(conn, reps, instance)
    counts = {"found_sent": 0, "requeued": 0}
    for row in uncertain:
        found = await _in_sent_folder(app, row)
        now = app.clock.now()
        with app.engine.begin() as conn:
            if found:
                outbox.mark_sent(conn, row, now)
                outbox.mark_copied(conn, [row.id], now)
                counts["found_sent"] += 1
            else:
                outbox.requeue(conn, row, now, "in flight at a crash; not in the Sent folder")
                counts["requeued"] += 1
    with app.engine.begin() as conn:
        while outbox.record_sent(conn, app.clock.now()):
            pass
    if uncertain:
        logger.warning(
            "reconciled emails in flight at the last stop",
            extra={"action": "reconciled", "reps": ",".join(sorted(reps)), **counts},
        )
    return counts


async def _in_sent_folder(app: App, row: outbox.Row) -> bool:
    rep = next((r for r in app.config.reps if r.id == row.rep), None)
    if rep is None or rep.imap is None or not rep.imap.uses_sent_folder:
        return False
    try:
        async with _session(app, rep, rep.imap) as session:
            folder = await sent.find(session)
            if folder.how == "new":  # no Sent folder yet: nothing can be in it
                return False
            return await session.find_message_id(folder.name, row.message_id)
    except (imap.ImapError, errors.DripdError) as exc:
        logger.warning("cannot check the Sent folder: %s", exc, extra={"rep": rep.id})
        return False


async def copy_sent(app: App, reps: Collection[str]) -> int:
    """Save a copy of each sent email of `reps` in their Sent folders; how many were copied.

    All of them, a batch at a time (`run --once` leaves none for the next
    run); a rep's copying stops at its first refusal and resumes next time.
    """
    copied = 0
    with app.reader.connect() as conn:
        waiting = outbox.reps_uncopied(conn)
    for rep in app.config.reps:
        mine = rep.id in reps and rep.id in waiting  # waiting: one read, not one per mailbox
        if rep.imap is None or not rep.imap.uses_sent_folder or not mine:
            continue
        while True:
            with app.reader.connect() as conn:
                rows = outbox.uncopied(conn, rep.id, COPY_BATCH)
            if not rows:
                break
            if not rep.imap.save_copy:  # the server filed its own copy when it accepted each
                _mark_copied(app, [row.id for row in rows])
                continue
            done = await _copy_rows(app, rep, rep.imap, rows)
            copied += done
            if done < len(rows):
                break
    return copied


def _session(app: App, rep: config.RepConfig, settings: config.ImapConfig) -> imap.Session:
    """A session to one of the rep's folders, logged in as its config says (password, OAuth2)."""
    source = tokens.source(app.engine, rep, app.clock, settings)
    return imap.Session(settings, settings.password(), token_source=source)


async def _copy_rows(
    app: App, rep: config.RepConfig, settings: config.ImapConfig, rows: list[outbox.Row]
) -> int:
    done: list[int] = []
    try:
        async with _session(app, rep, settings) as session:
            folder = await sent.find(session)
            for row in rows:
                # dated as it was sent (sender: mime.dated at the claim, sending_at)
                copy = mime.dated(row.message, row.sending_at) if row.sending_at else row.message
                await sent.save(session, folder, copy)
                done.append(row.id)
    except (imap.ImapError, errors.DripdError) as exc:
        logger.warning("cannot copy to the Sent folder: %s", exc, extra={"action": "copy_failed"})
    finally:  # even when stopped midway: a copy made is never made twice
        _mark_copied(app, done)
    return len(done)


def _mark_copied(app: App, ids: list[int]) -> None:
    with app.engine.begin() as conn:
        outbox.mark_copied(conn, ids, app.clock.now())
