"""Wiring: the config, the campaigns, the database and the clock a command works with."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dripd import clock
from dripd.files import campaigns, config
from dripd.plan import contacts, templates

# The database layer (SQLAlchemy) is loaded when a command opens the database:
# `dripd check` builds an App without one and need not load it.
if TYPE_CHECKING:
    import sqlalchemy as sa


@dataclass(frozen=True, slots=True, kw_only=True)
class App:
    config: config.Config
    catalog: campaigns.Catalog
    renderer: templates.Renderer
    clock: clock.Clock
    db: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        assert self.db is not None, "this command was opened without a database"
        return self.db

    @property
    def reader(self) -> sa.Engine:
        """The engine for read-only work: on SQLite it reads beside a writer."""
        from dripd.store import engine as store_engine

        return store_engine.reader(self.engine)

    def contact_rules(self) -> contacts.Rules:
        return contacts.Rules(
            rep_ids=self.config.rep_ids(),
            date_fields=anchor_fields(self.catalog),
            default_tz=self.config.timezone,
            now=self.clock.now(),
        )

    def contact_tz(self, contact_tz: str | None, owner: str | None) -> ZoneInfo:
        """The contact's zone, else the owner rep's, else the config's."""
        if contact_tz:
            return ZoneInfo(contact_tz)
        return self.config.rep_timezone(owner)


def anchor_fields(catalog: campaigns.Catalog) -> frozenset[str]:
    """Custom fields that campaigns use as dates (anchors and yearly fields)."""
    return frozenset(
        step.date_field
        for campaign in catalog.campaigns.values()
        for step in campaign.steps
        if step.date_field is not None
    )


def open_app(
    config_path: str | None,
    *,
    with_db: bool = True,
    the_clock: clock.Clock | None = None,
    compile_templates: bool = True,
) -> App:
    """Load the config and campaigns (refusing invalid ones) and open the database.

    `compile_templates=False` for a command that renders nothing: its templates
    are checked for their place and existence, not compiled (templates.Renderer).
    """
    cfg, catalog, renderer = _load(config.find_path(config_path), compile_templates)
    db = _open_database(cfg.database_url) if with_db else None
    return App(
        config=cfg,
        catalog=catalog,
        renderer=renderer,
        clock=the_clock or clock.SystemClock(),
        db=db,
    )


def _open_database(url: str) -> sa.Engine:
    from dripd.store import engine as store_engine

    return store_engine.open_engine(url)


def reloaded(app: App) -> App:
    """`app` with its config file and campaigns read again, on the same database and clock.

    Raises ConfigError or CampaignError when either no longer validates.
    """
    cfg, catalog, renderer = _load(app.config.path)
    return dataclasses.replace(app, config=cfg, catalog=catalog, renderer=renderer)


def _load(
    path: Path, compile_templates: bool = True
) -> tuple[config.Config, campaigns.Catalog, templates.Renderer]:
    cfg = config.load(path)
    renderer = templates.Renderer(cfg.campaigns_dir, compile_checked=compile_templates)
    options = campaigns.LoadOptions(env=renderer)
    return cfg, campaigns.load_checked(cfg.campaigns_dir, options), renderer
