"""Reloading the config and campaigns while `dripd run` runs.

A reload is asked for by SIGHUP (`systemctl reload dripd`) or by a saved,
added or removed file in the campaigns folder (polled: `FolderWatch`). It is
all or nothing: the config and every campaign file must validate, else one
error is logged, naming file and step, and the running version stays.

What a reload changes is worked out here (`Change`); the daemon applies it
between two passes of its loop, never inside a transaction. Enrollments of
changed campaigns are made due at once so the engine plans them again under
the new files: progress is kept by step id, so a contact continues after the
last step it did, whatever was inserted, reordered or re-timed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from dripd import errors
from dripd.files import config
from dripd.pipeline import app as app_mod
from dripd.pipeline import plans
from dripd.pipeline.app import App

logger = logging.getLogger("dripd.reload")

WATCH_INTERVAL = 2.0  # seconds between looks at the campaigns folder


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A validated reload: the new app, and what differs from the running one."""

    app: App
    campaigns: frozenset[str]  # changed, added or removed campaign ids
    senders: frozenset[str]  # reps whose sending mailbox changed, appeared or went
    inboxes: frozenset[str]  # reps whose watched inbox changed, appeared or went
    schedule: bool  # the zone, window, holidays or a rep's zone changed: plan every one again

    @property
    def summary(self) -> dict[str, str]:
        """Log fields: what changed."""
        return {
            "campaigns": ",".join(sorted(self.campaigns)) or "none",
            "mailboxes": ",".join(sorted(self.senders | self.inboxes)) or "none",
            "schedule": "changed" if self.schedule else "same",
        }


def load(current: App) -> Change | None:
    """Read the config and campaigns again; None (one error logged) if they don't validate."""
    try:
        new = app_mod.reloaded(current)
    except (errors.DripdError, OSError) as exc:  # OSError: a template that can't be read
        logger.error(
            "reload refused: the running version stays",
            extra={"action": "reload_refused", "error": "; ".join(str(exc).splitlines())},
        )
        return None
    if new.config.database_url != current.config.database_url:
        logger.warning(
            "the database in the config changed: it is used from the next start",
            extra={"action": "reload_database"},
        )
        cfg = dataclasses.replace(new.config, database_url=current.config.database_url)
        new = dataclasses.replace(new, config=cfg)
    return diff(current, new)


def diff(old: App, new: App) -> Change:
    """What differs between the running app and a reloaded one."""
    before, after = old.catalog.campaigns, new.catalog.campaigns
    changed = {
        cid
        for cid in before.keys() | after.keys()
        if cid not in before or cid not in after or before[cid].version != after[cid].version
    }
    old_reps = {rep.id: rep for rep in old.config.reps}
    new_reps = {rep.id: rep for rep in new.config.reps}
    return Change(
        app=new,
        campaigns=frozenset(changed),
        senders=_changed_reps(old_reps, new_reps, "smtp"),
        inboxes=_changed_reps(old_reps, new_reps, "imap"),
        schedule=plans.schedule_inputs(old.config) != plans.schedule_inputs(new.config),
    )


def _changed_reps(
    old: dict[str, config.RepConfig], new: dict[str, config.RepConfig], mailbox: str
) -> frozenset[str]:
    """Reps whose `mailbox` (smtp or imap) settings or address differ (None: no mailbox)."""

    def key(rep: config.RepConfig | None) -> object:
        return (
            None
            if rep is None or getattr(rep, mailbox) is None
            else (rep.email, getattr(rep, mailbox))
        )

    return frozenset(
        rid for rid in old.keys() | new.keys() if key(old.get(rid)) != key(new.get(rid))
    )


class FolderWatch:
    """Notices an edited, added or removed file under a folder, by polling mtimes.

    A change counts once two looks in a row agree on it, so a file half
    written, or a folder being copied in, is not reloaded midway. Hidden
    files and editor backups (`.x.swp`, `x~`) are ignored.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen = snapshot(folder)
        self._settling: dict[str, tuple[int, int]] | None = None

    def changed(self) -> bool:
        """True (once) when the folder differs from the last reload and has settled."""
        now = snapshot(self.folder)
        if now == self.seen:
            self._settling = None
            return False
        if now != self._settling:
            self._settling = now
            return False
        self.seen, self._settling = now, None
        return True

    def rebase(self) -> None:
        """The folder as it is now is what a reload about to start reads."""
        self.seen, self._settling = snapshot(self.folder), None


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (relative path) with its mtime (ns) and size."""
    files: dict[str, tuple[int, int]] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith(".") or name.endswith("~"):
                continue
            path = Path(root, name)
            try:
                stat = path.stat()
            except OSError:  # removed between the listing and the stat
                continue
            files[str(path.relative_to(folder))] = (stat.st_mtime_ns, stat.st_size)
    return files
