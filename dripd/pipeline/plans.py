"""Which files the stored plans were worked out under, and planning again when they change.

Each enrollment's next time is worked out from the campaign files and the
schedule settings (time zones, send window, holidays). The versions they were
planned under are recorded in the settings table; at start, and after an
import into an empty database, `replan_changed` makes due again the
enrollments whose inputs have changed since.
"""

from __future__ import annotations

import hashlib
import json
import logging

import sqlalchemy as sa

from dripd.files import config
from dripd.pipeline.app import App
from dripd.plan import calendars
from dripd.store import enrollments, retry, settings

logger = logging.getLogger("dripd.reload")


def schedule_inputs(cfg: config.Config) -> object:
    section = cfg.model.dripd
    zones = sorted((rep.id, rep.timezone, rep.holidays) for rep in cfg.reps)
    holidays = (section.holidays, calendars.library_version())  # a new release may move one
    return (section.timezone, section.send_window, holidays, zones)


PLANNED_UNDER = "planned_under"  # settings key: the campaign versions and schedule settings


def plan_inputs(app: App) -> dict[str, str]:
    """What enrollments are planned from: each campaign's version, the schedule settings."""
    inputs = {f"campaign:{cid}": c.version for cid, c in app.catalog.campaigns.items()}
    schedule = repr(schedule_inputs(app.config)).encode()
    inputs["schedule"] = hashlib.sha256(schedule).hexdigest()[:12]
    return inputs


def remember_plans(app: App, conn: sa.Connection) -> None:
    """Record that the enrollments are planned under `app`'s files (a reload, a start)."""
    settings.put_setting(conn, PLANNED_UNDER, json.dumps(plan_inputs(app), sort_keys=True))


def replan_changed(app: App) -> int:
    """At start: make due now the enrollments planned under other files than these.

    Campaign files edited while dripd was stopped (or between two `run
    --once`) would otherwise keep the times worked out under the old ones
    until those came: a wait shortened or a window widened did nothing
    until then. A database without the record (new, or from a dripd
    before it) has every active enrollment planned again, once.
    """
    current = plan_inputs(app)
    recorded = True

    def work() -> int:
        nonlocal recorded
        with app.engine.begin() as conn:
            stored = settings.setting(conn, PLANNED_UNDER)
            recorded = stored is not None
            before: dict[str, str] = json.loads(stored) if stored else {}
            if before == current:
                return 0
            scope: set[str] | None = None
            if before.get("schedule") == current["schedule"]:
                scope = {
                    key.removeprefix("campaign:")
                    for key in before.keys() | current.keys()
                    if key.startswith("campaign:") and before.get(key) != current.get(key)
                }
            count = enrollments.recheck_enrollments(conn, app.clock.now(), scope)
            remember_plans(app, conn)
            return count

    replanned = retry.retrying(work, "replan")
    if replanned:
        logger.info(
            "campaigns or schedule settings changed since the last run: contacts timed again"
            if recorded
            else "first start on this database with this dripd: contacts timed again",
            extra={"action": "replanned", "enrollments": replanned},
        )
    return replanned
