"""The `dripd` command line: the one place errors become a message and an exit code."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from dripd import clock, errors
from dripd.files import campaigns, config
from dripd.plan import contacts, dates, templates

# Commands import the database layer (SQLAlchemy, Alembic) and the output
# module only when they run: `dripd check` and `--help` start twice as fast.
if TYPE_CHECKING:
    from rich.console import Console

    from dripd.cli import init as init_mod
    from dripd.mailbox import probe
    from dripd.pipeline import app as app_mod
    from dripd.pipeline import importer
    from dripd.store import contacts as store_contacts

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("dripd")
PIPE_WIDTH = 160  # columns when output goes to a file or pipe, so tables are not squeezed


def _console(*, err: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=err, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=err, highlight=False, soft_wrap=True, width=PIPE_WIDTH)
    return console


@functools.cache
def stdout() -> Console:
    """The console for what a command shows; rich is loaded when one prints with it."""
    return _console()


@functools.cache
def stderr() -> Console:
    return _console(err=True)


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().ensure_object(dict)["config"] = value


def config_option(func: F) -> F:
    """`--config PATH`, accepted before or after the command name."""
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        expose_value=False,
        is_eager=True,
        callback=_remember_config,
        help="Config file (else $DRIPD_CONFIG, /etc/dripd/config.toml, ./config.toml).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _config_path() -> str | None:
    ctx = click.get_current_context()
    return (ctx.find_root().obj or {}).get("config")


def open_app(*, with_db: bool = True, renders: bool = True) -> app_mod.App:
    """The command's app; `renders=False` for one that only reads (no template compiled)."""
    from dripd.cli import startup
    from dripd.pipeline import app as app_mod

    app = app_mod.open_app(_config_path(), with_db=with_db, compile_templates=renders)
    if app.db is not None:
        # Closed when the command ends, not left to the interpreter's exit (where
        # cli.startup's freeze keeps its last collection from finding them): on
        # SQLite the last connection closed writes the WAL back into the database
        # file, and PostgreSQL sees a goodbye, not a dropped socket.
        click.get_current_context().call_on_close(app.db.dispose)
    startup.loaded()
    return app


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(package_name="dripd")
def cli() -> None:
    """dripd runs a sales rep's follow-up: campaign emails, call and card tasks, replies."""


# -- check ------------------------------------------------------------------


@cli.command()
@config_option
@json_option
@click.option(
    "--connect",
    is_flag=True,
    help="Also log in to every mailbox (SMTP and IMAP) and open its folders; sends nothing.",
)
def check(as_json: bool, connect: bool) -> None:
    """Validate the config, campaigns and templates; exit 1 with file:step messages."""
    from dripd.cli import tables as out

    cfg = config.load(config.find_path(_config_path()))
    renderer = templates.Renderer(cfg.campaigns_dir)
    options = campaigns.LoadOptions(env=renderer)
    catalog = campaigns.load_all(cfg.campaigns_dir, options)
    catalog, rendered = _render_every_step(cfg, catalog, renderer)
    warnings = (
        _secret_warnings(cfg) + _mailbox_warnings(cfg, catalog) + rendered + _holiday_warnings(cfg)
    )
    tried = _connect(cfg) if connect else []
    failed = bool(catalog.problems) or not all(t.ok for t in tried)
    if as_json:
        print_json(
            {
                "ok": not failed,
                "config": str(cfg.path),
                "campaigns": sorted(catalog.campaigns),
                "problems": list(catalog.problems),
                "warnings": warnings,
                **({"connections": [t.to_json() for t in tried]} if connect else {}),
            }
        )
    else:
        out.check_report(stdout(), cfg, catalog, warnings, tried)
    if failed:
        raise SystemExit(1)


def _connect(cfg: config.Config) -> list[probe.Tried]:
    """`check --connect`: the database, then every mailbox."""
    import asyncio

    from dripd.mailbox import probe

    with stderr().status("trying the database and the mailboxes…"):
        return [probe.database(cfg.database_url), *asyncio.run(probe.probe_all(cfg))]


def _render_every_step(
    cfg: config.Config, catalog: campaigns.Catalog, renderer: templates.Renderer
) -> tuple[campaigns.Catalog, list[str]]:
    """The catalog with a problem for each step that fails to render; warnings for the rest."""
    import dataclasses

    from dripd.pipeline import app as app_mod
    from dripd.pipeline import compose

    the_clock = clock.SystemClock()
    app = app_mod.App(config=cfg, catalog=catalog, renderer=renderer, clock=the_clock)
    failed, warnings = compose.try_every_step(app, the_clock.now())
    return dataclasses.replace(catalog, problems=catalog.problems + tuple(failed)), warnings


def _holiday_warnings(cfg: config.Config) -> list[str]:
    """A holidays list of dates only, all of them past: it closes nothing any more."""
    today = clock.SystemClock().now().date()
    found: list[str] = []
    lists = [("dripd.holidays", cfg.model.dripd.holidays)]
    lists += [(f"reps[{rep.id}].holidays", rep.holidays or []) for rep in cfg.reps]
    for key, entries in lists:
        days = [e for e in entries if isinstance(e, date)]
        if days and len(days) == len(entries) and max(days) < today:
            found.append(
                f"{cfg.path}: {key}: every date is past, so no day is a holiday any more: "
                'name a calendar instead, e.g. holidays = ["US"] or ["DE-BY"]'
            )
    return found


def _mailbox_warnings(cfg: config.Config, catalog: campaigns.Catalog) -> list[str]:
    """Roles and campaign `from`s that name no rep, or a rep without an SMTP mailbox."""
    from dripd.files import validation

    found: list[str] = []
    reps = sorted(cfg.rep_ids())
    for role, rep_id in cfg.model.roles.items():
        if rep_id not in reps:
            found.append(
                f"{cfg.path}: roles: {role} = {rep_id!r} is not a rep"
                f"{validation.suggest(rep_id, reps)} (reps: {', '.join(reps) or 'none'}): "
                f"emails from = {role!r} go from the contact's owner"
            )
    for campaign in catalog.campaigns.values():
        for step in campaign.steps:
            if step.sender:
                found += _sender_warning(cfg, f"{campaign.path}: step {step.id!r}", step.sender)
    return found


def _sender_warning(cfg: config.Config, where: str, name: str) -> list[str]:
    from dripd.files import validation

    rep_id = cfg.sender_of(name)
    if rep_id is None and name in cfg.model.roles:
        return []  # the role's own warning says it
    if rep_id is None:
        hint = validation.suggest(name, sorted(cfg.rep_ids() | set(cfg.model.roles)))
        return [
            f"{where}: from = {name!r} is no rep, and [roles] gives it none{hint}: "
            f'these emails go from the contact\'s owner (to change that: [roles] {name} = "REP")'
        ]
    if cfg.rep(rep_id).smtp is None:
        via = (
            f"from = {name!r}, but rep {rep_id}"
            if rep_id == name
            else (f"from = {name!r} is rep {rep_id}, who")
        )
        return [f"{where}: {via} has no [reps.smtp]: these emails will wait"]
    return []


def _secret_warnings(cfg: config.Config) -> list[str]:
    """Passwords and CA files that can't be read here (they may be, under systemd)."""
    from dripd.mailbox import tls  # only for `check`

    found: list[str] = []
    for rep in cfg.reps:
        if rep.oauth2 is not None and rep.uses_oauth2:
            try:
                rep.oauth2.client_secret()
            except errors.ConfigError as exc:
                found.append(f"rep {rep.id} oauth2: {exc}")
        for name, box in (("smtp", rep.smtp), ("imap", rep.imap)):
            if box is None:
                continue
            try:
                box.password()
            except errors.ConfigError as exc:
                found.append(f"rep {rep.id} {name}: {exc}")
            if box.security != "none":
                try:
                    tls.context(box.ca_file)
                except errors.ConfigError as exc:
                    found.append(f"rep {rep.id} {name}: {exc}")
    return found


# -- contacts ---------------------------------------------------------------


@cli.group("contacts")
@config_option
def contacts_group() -> None:
    """Import, list, show and edit contacts."""


@contacts_group.command("import")
@config_option
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--enroll",
    "campaign",
    metavar="CAMPAIGN",
    help="Start every imported contact on this campaign.",
)
@json_option
def contacts_import(file: Path, campaign: str | None, as_json: bool) -> None:
    """Add or update contacts from FILE.csv; bad rows are reported, good rows kept."""
    from dripd.cli import tables as out

    app = open_app()
    if campaign:
        app.catalog.get(campaign)
    report = _run_import(app, file, campaign, show_progress=not as_json)
    if as_json:
        print_json(
            {
                "created": report.created,
                "updated": report.updated,
                "enrolled": report.enrolled,
                "problems": report.problems,
            }
        )
    else:
        out.import_report(stdout(), stderr(), file, report)
    if report.problems:
        raise SystemExit(1)


def _run_import(
    app: app_mod.App, file: Path, campaign: str | None, *, show_progress: bool
) -> importer.Report:
    from dripd.pipeline import importer

    if not show_progress or not stderr().is_terminal:
        return importer.import_csv(app, file, enroll=campaign)
    # Imported here: ~0.013 s of every other command's start-up.
    from rich import progress

    columns = (
        progress.TextColumn("importing"),
        progress.BarColumn(),
        progress.MofNCompleteColumn(),
        progress.TimeElapsedColumn(),
    )
    with progress.Progress(*columns, console=stderr(), transient=True) as bar:
        task = bar.add_task("import", total=_data_lines(file))
        return importer.import_csv(app, file, enroll=campaign, tick=lambda n: bar.advance(task, n))


def _data_lines(file: Path) -> int | None:
    """The lines after the header (the rows, unless a cell holds a line break), for the bar."""
    try:
        with file.open("rb") as handle:
            lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return None  # the import says why
    return max(lines - 1, 0)


@contacts_group.command("list")
@config_option
@click.option("--stage", type=click.Choice(["suspect", "prospect", "lead", "customer"]))
@click.option("--campaign", metavar="CAMPAIGN", help="Only contacts active in this campaign.")
@click.option("--limit", type=click.IntRange(1), help="At most this many contacts.")
@click.option(
    "--after",
    metavar="EMAIL",
    help="Start after this email (the last one of the previous page: keyset paging).",
)
@json_option
@click.option("--jsonl", "as_jsonl", is_flag=True, help="Print one JSON object a line.")
def contacts_list(
    stage: str | None,
    campaign: str | None,
    limit: int | None,
    after: str | None,
    as_json: bool,
    as_jsonl: bool,
) -> None:
    """List contacts in email order: stage, status, campaigns, touches, last touch.

    Rows are printed as they are read. On a terminal a list that fits a page
    is a table; a longer one, or one going to a file or pipe, plain columns.
    """
    from dripd.cli import tables as out
    from dripd.store import listing

    app = open_app(renders=False)
    if campaign:
        app.catalog.get(campaign)
    where = listing.Filter(stage=stage, campaign=campaign, after=after, limit=limit)
    with app.reader.connect() as conn:
        found = listing.contacts(conn, where)
        if as_json or as_jsonl:
            items = (out.contact_json(x.contact, x.campaigns) for x in found)
            write = listing.write_json_lines if as_jsonl else listing.write_json_array
            write(sys.stdout, items)
            return
        rows: Iterator[tuple[str, ...]] = (out.contact_cells(x.contact, x.campaigns) for x in found)
        if stdout().is_terminal:
            first, complete = listing.head(rows)
            if complete:
                out.contact_table(stdout(), first)
                return
            rows = itertools.chain(first, rows)
        listing.write_columns(sys.stdout, out.CONTACT_COLUMNS, rows, right=("touches",))


@contacts_group.command("export")
@config_option
@click.option("--stage", type=click.Choice(["suspect", "prospect", "lead", "customer"]))
@click.option("--campaign", metavar="CAMPAIGN", help="Only contacts active in this campaign.")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object a contact.")
def contacts_export(stage: str | None, campaign: str | None, as_json: bool) -> None:
    """Every contact (fields, stage, status, touches, campaigns) as CSV that import reads back."""
    from dripd.cli import export

    app = open_app(renders=False)
    if campaign:
        app.catalog.get(campaign)
    write = export.write_json_lines if as_json else export.write_csv
    with app.reader.connect() as conn:
        write(conn, sys.stdout, stage=stage, campaign=campaign)


@contacts_group.command("forget")
@config_option
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask: erase at once (scripts).")
def contacts_forget(email: str, yes: bool) -> None:
    """Erase a person (fields, history, emails, inbox records); their address is refused later."""
    from dripd.store import forget

    try:
        address = contacts.validate({"email": email}, contacts.Rules()).email
    except ValueError as exc:
        raise errors.ContactError(str(exc)) from exc
    assert address is not None
    if not yes and not click.confirm(f"erase {address} and everything about them?", err=True):
        raise errors.UsageError("nothing erased")
    app = open_app()
    with app.engine.begin() as conn:
        erased = forget.erase(conn, address, app.clock.now())
    forget.flush(app.engine)
    what = "the contact and" if erased.contact else "no contact, but"
    stdout().print(
        f"forgot {address}: {what} {erased.rows + erased.blanked} record(s) erased or blanked; "
        "a later import of this address is refused"
    )


@contacts_group.command("show")
@config_option
@click.argument("email")
@json_option
def contacts_show(email: str, as_json: bool) -> None:
    """A contact's fields, stage, status, touches, campaigns and history."""
    from dripd.cli import tables as out
    from dripd.store import enrollments as store_enrollments
    from dripd.store import events

    app = open_app(renders=False)
    with app.reader.connect() as conn:
        contact = _contact(conn, email)
        history = events.history(conn, contact.id)
        enrollments = store_enrollments.enrollments_of(conn, contact.id)
    if as_json:
        print_json(
            {
                **out.contact_json(
                    contact, [e.campaign for e in enrollments if e.status == "active"]
                ),
                "enrollments": [out.enrollment_json(e) for e in enrollments],
                "history": [event.to_json() for event in history],
            }
        )
    else:
        out.contact_card(stdout(), app, contact, enrollments, history)


def _contact(conn: Any, email: str) -> store_contacts.Contact:
    from dripd.store import contacts as store_contacts

    contact = store_contacts.contact_by_email(conn, email)
    if contact is None:
        raise errors.ContactError(f"no contact {email!r}")
    return contact


@contacts_group.command("set")
@config_option
@click.argument("email")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
def contacts_set(email: str, assignments: tuple[str, ...]) -> None:
    """Set fields of a contact (a new email creates the contact)."""
    from dripd.pipeline import lifecycle
    from dripd.store import contacts as store_contacts

    app = open_app()
    values = _values(app, assignments)
    now = app.clock.now()
    with app.engine.begin() as conn:
        contact = store_contacts.contact_by_email(conn, email)
        if contact is None:
            contact = _create_contact(app, conn, email, values, now)
            stdout().print(f"created {contact.email}")
        else:
            lifecycle.set_fields(app, conn, contact, values, now, cause="dripd contacts set")
            stdout().print(f"updated {contact.email}: {', '.join(_keys(assignments))}")


def _keys(assignments: tuple[str, ...]) -> list[str]:
    return [a.partition("=")[0].strip() for a in assignments]


def _values(app: app_mod.App, assignments: tuple[str, ...]) -> contacts.Values:
    try:
        raw = contacts.parse_assignments(assignments)
        return contacts.validate_changes(raw, app.contact_rules())
    except ValueError as exc:
        raise errors.ContactError(str(exc)) from exc


def _create_contact(
    app: app_mod.App, conn: Any, email: str, values: contacts.Values, now: datetime
) -> store_contacts.Contact:
    from dripd.pipeline import lifecycle
    from dripd.store import contacts as store_contacts

    try:
        full = contacts.validate({"email": email}, app.contact_rules())
    except ValueError as exc:
        raise errors.ContactError(str(exc)) from exc
    assert full.email is not None
    contact_id = lifecycle.create_contact(
        app, conn, full.email, values, now, cause="dripd contacts set"
    )
    return store_contacts.contact_by_id(conn, contact_id)


# -- enrollment -------------------------------------------------------------


@cli.command()
@config_option
@click.argument("email")
@click.argument("campaign")
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE...]")
def enroll(email: str, campaign: str, assignments: tuple[str, ...]) -> None:
    """Start a contact on a campaign (fields given are set first)."""
    from dripd.pipeline import lifecycle

    app = open_app()
    app.catalog.get(campaign)
    values = _values(app, assignments) if assignments else None
    now = app.clock.now()
    with app.engine.begin() as conn:
        contact = _contact(conn, email)
        if values is not None:
            contact = lifecycle.set_fields(app, conn, contact, values, now, cause="dripd enroll")
        lifecycle.enroll(app, conn, contact, campaign, now, cause="dripd enroll")
    stdout().print(f"enrolled {contact.email} in {campaign}")


@cli.command()
@config_option
@click.argument("email")
def stop(email: str) -> None:
    """End every sequence of a contact."""
    from dripd.pipeline import lifecycle

    app = open_app()
    with app.engine.begin() as conn:
        contact = _contact(conn, email)
        count = lifecycle.stop(app, conn, contact, app.clock.now(), cause="dripd stop")
    stdout().print(f"stopped {count} sequence{'s' if count != 1 else ''} of {contact.email}")


# -- schedule, preview, status --------------------------------------------------


@cli.command("schedule")
@config_option
@click.option("--days", default=7, show_default=True, type=click.IntRange(0, 3660))
@click.option("--contact", "email", metavar="EMAIL", help="Only this contact.")
@json_option
def schedule_cmd(days: int, email: str | None, as_json: bool) -> None:
    """What will happen when, per contact (printed as it is worked out)."""
    from dripd.cli import tables as out
    from dripd.pipeline import reports
    from dripd.store import listing

    app = open_app(renders=False)
    with app.reader.connect() as conn:
        if as_json:
            sys.stdout.write('{"items": ')
            texts = reports.upcoming_json(app, conn, days, email)
            listing.write_json_texts(sys.stdout, texts, end="")
            sys.stdout.write(', "waiting": ')
            waiting = reports.waiting(app, conn, email)
            listing.write_json_array(sys.stdout, (w.to_json() for w in waiting), end="")
            sys.stdout.write("}\n")
            return
        items = reports.upcoming(app, conn, days, email)
        rows: Iterator[tuple[str, ...]] = (out.scheduled_cells(i) for i in items)
        if stdout().is_terminal:
            first, complete = listing.head(rows)
            if complete:
                out.schedule_table(stdout(), first, list(reports.waiting(app, conn, email)), days)
                return
            rows = itertools.chain(first, rows)
        sys.stdout.write(f"the next {days} day(s):\n")
        listing.write_columns(sys.stdout, out.SCHEDULE_COLUMNS, rows)
        waiting_rows = (out.waiting_cells(w) for w in reports.waiting(app, conn, email))
        first_waiting, _ = listing.head(waiting_rows, 1)
        if first_waiting:
            sys.stdout.write("\nwaiting:\n")
            columns = out.WAITING_COLUMNS
            listing.write_columns(sys.stdout, columns, itertools.chain(first_waiting, waiting_rows))


@cli.command()
@config_option
@click.argument("campaign")
@click.argument("step")
@click.option("--contact", "email", required=True, metavar="EMAIL")
@click.option("--occurrence", default=1, type=click.IntRange(1), help="For repeating steps.")
@click.option("--html", "show_html", is_flag=True, help="Show the HTML part too.")
@click.option("--variant", "variant", metavar="ID", help="One A/B version of the step.")
def preview(
    campaign: str, step: str, email: str, occurrence: int, show_html: bool, variant: str | None
) -> None:
    """The rendered email or task of a step for a contact."""
    from dripd.cli import tables as out
    from dripd.pipeline import compose

    app = open_app()
    the_campaign = app.catalog.get(campaign)
    the_step = _version(the_campaign.step(step), variant)
    with app.reader.connect() as conn:
        contact = _contact(conn, email)
    if the_step.is_email:
        rendered = compose.render_email(app, contact, the_campaign, the_step, occurrence)
        out.email_preview(stdout(), rendered, show_html)
    else:
        note = compose.render_note(app, contact, the_campaign, the_step, occurrence)
        out.task_preview(stdout(), the_step, contact, note)


def _version(step: campaigns.Step, variant: str | None) -> campaigns.Step:
    """The step as one of its variants has it (--variant); without one, as the step says."""
    if variant is None:
        return step if not step.variants else campaigns.variant_step(step, step.variants[0])
    for version in step.variants:
        if version.id == variant:
            return campaigns.variant_step(step, version)
    known = ", ".join(v.id for v in step.variants) or "none: it has no variants"
    raise errors.UsageError(f"step {step.id!r} has no variant {variant!r} (variants: {known})")


@cli.command()
@config_option
@json_option
def status(as_json: bool) -> None:
    """The pipeline: contacts per stage, per-step results, touches, backlog."""
    from dripd.cli import tables as out
    from dripd.pipeline import reports

    app = open_app(renders=False)
    with app.reader.connect() as conn:
        data = reports.status(app, conn)
    if as_json:
        print_json(data.to_json())
    else:
        out.status_report(stdout(), data)


# -- reps -------------------------------------------------------------------


@cli.command()
@config_option
@click.argument("rep_id", metavar="REP", required=False)
@click.option("--list", "listing", is_flag=True, help="Each rep's sign-in: as whom, since when.")
@click.option("--forget", is_flag=True, help="Drop REP's sign-in (and revoke it where possible).")
@click.option(
    "--browser",
    is_flag=True,
    help="Sign in through a browser (code + PKCE) even where a device code is offered.",
)
@json_option
def auth(rep_id: str | None, listing: bool, forget: bool, browser: bool, as_json: bool) -> None:
    """Sign REP in to their mail provider (OAuth2); --list shows every rep's sign-in."""
    from dripd.cli import signin

    app = open_app()
    if listing or rep_id is None:
        if rep_id is not None or forget:
            raise errors.UsageError("--list takes no REP and no --forget")
        found = signin.statuses(app)
        if as_json:
            print_json([s.to_json() for s in found])
        else:
            from dripd.cli import tables as out

            out.sign_in_table(stdout(), found)
        return
    rep = app.config.rep(rep_id)
    if forget:
        click.echo(signin.forget(app, rep))
        return
    signin.sign_in(app, rep, click.echo, sys.stdin, browser=browser)


@cli.command()
@config_option
@click.option("--rep", "rep_id", required=True, metavar="ID")
@click.option(
    "--until", "until", required=True, metavar="DATE", help="YYYY-MM-DD, or e.g. 'next mon'"
)
def pause(rep_id: str, until: str) -> None:
    """Hold a rep's emails and digests until DATE (vacation)."""
    from dripd.pipeline import lifecycle
    from dripd.store import reps as store_reps

    app = open_app()
    app.config.rep(rep_id)
    tz = app.config.rep_timezone(rep_id)
    try:
        when = dates.parse_when(dates.resolve_relative(until, app.clock.now(), tz) or until, tz)
    except ValueError as exc:
        raise errors.UsageError(f"--until: {exc}") from exc
    now = app.clock.now()
    with app.engine.begin() as conn:
        store_reps.set_rep_pause(conn, rep_id, when, now)
        lifecycle.reschedule_rep(app, conn, rep_id, now)
    local = when.astimezone(app.config.rep_timezone(rep_id))
    stdout().print(f"paused {rep_id} until {local:%Y-%m-%d %H:%M %Z}")


@cli.command()
@config_option
@click.option("--rep", "rep_id", required=True, metavar="ID")
def resume(rep_id: str) -> None:
    """End a rep's pause now."""
    from dripd.pipeline import lifecycle
    from dripd.store import reps as store_reps

    app = open_app()
    app.config.rep(rep_id)
    now = app.clock.now()
    with app.engine.begin() as conn:
        store_reps.set_rep_pause(conn, rep_id, None, now)
        lifecycle.reschedule_rep(app, conn, rep_id, now)
    stdout().print(f"resumed {rep_id}")


# -- rep tasks -------------------------------------------------------------------


@cli.group("tasks", invoke_without_command=True)
@config_option
@click.option("--rep", "rep_id", metavar="ID", help="Only this rep's tasks.")
@json_option
@click.pass_context
def tasks_group(ctx: click.Context, rep_id: str | None, as_json: bool) -> None:
    """Open rep tasks (calls, cards, to-dos); `tasks done ID…` / `tasks skip ID…`."""
    if ctx.invoked_subcommand is not None:
        return
    from dripd.cli import tables as out
    from dripd.store import contacts as store_contacts
    from dripd.store import tasks

    app = open_app()
    if rep_id:
        app.config.rep(rep_id)
    with app.reader.connect() as conn:
        rows = tasks.open_tasks(conn, rep_id)
        people = store_contacts.contacts_by_ids(conn, {t.contact_id for t in rows})
    if as_json:
        print_json([out.task_json(t, people[t.contact_id]) for t in rows])
    else:
        out.task_table(stdout(), app, rows, people)


def _finish(ids: tuple[int, ...], status: str) -> None:
    from dripd.pipeline import lifecycle

    app = open_app()
    now = app.clock.now()
    for task_id in ids:
        with app.engine.begin() as conn:
            task = lifecycle.finish_task(
                app,
                conn,
                task_id,
                now,
                status=status,
                cause=f"dripd tasks {'done' if status == 'done' else 'skip'}",
            )
        stdout().print(f"task {task_id} ({task.kind}, {task.campaign}/{task.step}): {status}")


@tasks_group.command("done")
@config_option
@click.argument("ids", nargs=-1, required=True, type=int)
def tasks_done(ids: tuple[int, ...]) -> None:
    """Mark tasks done (each counts as a touch)."""
    _finish(ids, "done")


@tasks_group.command("skip")
@config_option
@click.argument("ids", nargs=-1, required=True, type=int)
def tasks_skip(ids: tuple[int, ...]) -> None:
    """Drop tasks without doing them."""
    _finish(ids, "skipped")


@cli.command()
@config_option
@click.argument("message", metavar="MESSAGE.eml", type=click.Path(path_type=Path))
@json_option
def explain(message: Path, as_json: bool) -> None:
    """How dripd reads an email file: its class, the contact it matches, and why."""
    from dripd.cli import tables as out
    from dripd.mail import classify, incoming
    from dripd.pipeline import inbox

    try:
        raw = message.read_bytes()
    except OSError as exc:
        raise errors.UsageError(f"cannot read {message}: {exc.strerror or exc}") from exc
    app = open_app()
    mail = incoming.parse(raw)
    with app.reader.connect() as conn:
        verdict = inbox.read(app, conn, mail, app.clock.now())
    data = {
        "file": str(message),
        "from": mail.sender,
        "subject": mail.subject,
        "message_id": mail.message_id or None,
        **verdict.to_json(),
        "reading": classify.reading_json(mail.message),
        "would_do": inbox.would_do(verdict),
    }
    if as_json:
        print_json(data)
    else:
        out.explain_report(stdout(), message, data)


# -- the daemon ----------------------------------------------------------------


@cli.command()
@config_option
@click.option(
    "--once", is_flag=True, help="Read the inboxes, send what is due now, then exit (cron)."
)
@json_option
def run(once: bool, as_json: bool) -> None:
    """The daemon: send due emails, watch the inboxes, create rep tasks (--once: one pass)."""
    import asyncio
    import dataclasses

    from dripd import logs
    from dripd.cli import tables as out
    from dripd.daemon import daemon
    from dripd.pipeline import reports

    logs.configure(os.environ.get("DRIPD_LOG_LEVEL", "INFO"))
    app = open_app()
    main = daemon.run_once(app) if once else daemon.Daemon(app).run()
    summary = asyncio.run(main)
    if not once:
        if as_json:
            print_json(dataclasses.asdict(summary))
        return
    with app.reader.connect() as conn:  # what a pass that sent nothing leaves a user asking
        upcoming = reports.next_up(app, conn)
    if as_json:
        print_json(
            {**dataclasses.asdict(summary), "next": upcoming.to_json() if upcoming else None}
        )
        return
    stdout().print(
        f"queued {summary.queued}, sent {summary.sent}, tasks {summary.tasks}, "
        f"skipped {summary.skipped}, held {summary.held}, retrying {summary.retried}, "
        f"failed {summary.failed}, bounced {summary.bounced}, inbox {summary.inbox}, "
        f"digests {summary.digests}"
    )
    stdout().print(out.next_line(upcoming, app.clock.now()), markup=False)


@cli.command()
@config_option
@json_option
def migrate(as_json: bool) -> None:
    """Bring the database schema up to date (safe while other instances run)."""
    from dripd.store import engine as store_engine

    cfg = config.load(config.find_path(_config_path()))
    before, after = store_engine.migrate_url(cfg.database_url)
    if as_json:
        print_json({"before": before, "after": after, "migrated": before != after})
    elif before == after:
        stdout().print(f"database schema {after}: up to date")
    else:
        stdout().print(f"database schema {after}: migrated from {before or 'an empty database'}")


@cli.command("digest")
@config_option
@click.option("--rep", "rep_id", required=True, metavar="ID")
@click.option("--print", "show", is_flag=True, help="Print the digest as it would be sent now.")
@click.option("--html", "show_html", is_flag=True, help="Print the HTML part instead of the text.")
@json_option
def digest_cmd(rep_id: str, show: bool, show_html: bool, as_json: bool) -> None:
    """The rep's digest as it would be sent now (nothing is sent or recorded)."""
    from dripd.pipeline import digest, digest_render

    if not (show or show_html or as_json):
        raise errors.UsageError(
            "add --print to see the digest; `dripd run` sends it at the rep's digest times"
        )
    app = open_app()
    rep = app.config.rep(rep_id)
    with app.reader.connect() as conn:
        gathered = digest.gather(app, conn, rep, app.clock.now())
    rendered = digest_render.render(gathered.content)
    if as_json:
        print_json(
            {
                "rep": rep.id,
                "would_send": gathered.says_something,
                "subject": rendered.subject,
                "tasks": list(gathered.task_ids),
                "text": rendered.text,
                "html": rendered.html,
            }
        )
        return
    if not gathered.says_something:
        stdout().print(f"(nothing new for {rep.id}: no digest would be sent now)\n")
    click.echo(rendered.html if show_html else f"Subject: {rendered.subject}\n\n{rendered.text}")


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the demo's config, database and .eml files (default: a new temp folder).",
)
@json_option
def demo(out: Path | None, as_json: bool) -> None:
    """A simulated week of a rep's follow-up, with mail servers inside this process."""
    import dataclasses

    from dripd.cli import demo as demo_mod
    from dripd.cli import tables as out_tables

    result = demo_mod.run(out, (lambda _line: None) if as_json else click.echo)
    summary = result.summary
    if as_json:
        print_json(
            {
                "folder": str(result.folder),
                "emails_sent": result.emails_sent,
                "inbox_messages": result.inbox_messages,
                "stages": dict(summary.stages),
                "statuses": dict(summary.statuses),
                "touches": summary.touches,
                "steps": [step.to_json() for step in summary.steps],
            }
        )
        return
    active = {c for c, counts in summary.campaigns.items() if any(counts.values())}
    shown = dataclasses.replace(
        summary, steps=tuple(s for s in summary.steps if s.campaign in active)
    )
    click.echo("\nThe pipeline after a week:")
    out_tables.status_report(stdout(), shown)
    click.echo(
        f"\nEvery email is in {result.folder}: sent/ ({result.emails_sent} .eml files, "
        f"open them in a mail client) and inbox/ (what people answered). See more with\n"
        f"  dripd --config {result.folder / 'config.toml'} contacts show ann.lee@acme.example"
    )


# -- init -----------------------------------------------------------------------


@cli.command()
@config_option
@click.option("--name", help="Your name, as your emails are signed.")
@click.option("--email", help="Your email address: the mailbox dripd sends from.")
@click.option("--id", "rep_id", help="A short id for you (default: the address's local part).")
@click.option("--preset", help="Your mail provider: microsoft365, google, fastmail, … or other.")
@click.option("--timezone", help="Your IANA time zone (default: this system's).")
@click.option("--window", help='When emails may go out (default: "mon-fri 09:00-17:00").')
@click.option("--smtp-host", help="With --preset other: the SMTP server.")
@click.option("--smtp-port", type=int, help="With --preset other: its port.")
@click.option("--smtp-security", help="With --preset other: starttls, tls or none.")
@click.option("--imap-host", help="With --preset other: the IMAP server ('' for none).")
@click.option("--imap-port", type=int, help="With --preset other: its port.")
@click.option("--imap-security", help="With --preset other: tls, starttls or none.")
@click.option("--ca-file", help="A private CA's certificate, to verify the servers with.")
@click.option("--client-id", help="OAuth2 providers: your app registration's client ID.")
@click.option("--tenant", help="Microsoft: your organization's tenant (default: organizations).")
@click.option("--yes", is_flag=True, help="Ask nothing: defaults for what the flags don't say.")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option("--no-connect", is_flag=True, help="End with `check`, not `check --connect`.")
def init(yes: bool, force: bool, no_connect: bool, **flags: Any) -> None:
    """Write a first config.toml and campaigns folder from a few questions."""
    from dripd.cli import init as init_mod

    target = Path(_config_path() or os.environ.get("DRIPD_CONFIG") or "config.toml")
    written = init_mod.setup(target, init_mod.Given(yes=yes, **flags), force=force)
    _tell_written(written)
    rep = written.answers.rep_id
    where = ["--config", str(written.config)]
    if written.needs_sign_in:
        if yes:  # a script: signing in needs the person, at a browser
            click.echo(f"Next: dripd {' '.join(where)} auth {rep}   (signs you in)")
            click.echo(f"Then: dripd {' '.join(where)} check --connect")
            return
        cli.main(args=[*where, "auth", rep], prog_name="dripd", standalone_mode=False)
    checking = [*where, "check"] + ([] if no_connect else ["--connect"])
    click.echo(f"\nChecking it: dripd {' '.join(checking)}")
    cli.main(args=checking, prog_name="dripd", standalone_mode=False)


def _tell_written(written: init_mod.Written) -> None:
    click.echo(f"Wrote {written.config}")
    if written.password_file is not None:
        click.echo(f"Wrote {written.password_file} (the password; readable by you only)")
    if written.campaigns_copied:
        click.echo(
            f"Wrote {written.campaigns}/ (the shipped campaigns: edit them to make them yours)"
        )
    else:
        click.echo(f"Kept {written.campaigns}/ as it was")


# -- the error boundary -------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every failure into one line and an exit code."""
    logging.basicConfig(
        level=os.environ.get("DRIPD_LOG_LEVEL", "WARNING").upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        cli.main(args=argv, prog_name="dripd", standalone_mode=False)
    except click.exceptions.Abort:
        stderr().print("dripd: aborted")
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except errors.DripdError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"dripd: {line}", err=True)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:  # `dripd contacts list | head` has read its lines
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    except Exception as exc:  # the boundary: no traceback reaches a user
        logger.debug("internal error", exc_info=True)
        if _database_lost(exc):  # e.g. PostgreSQL restarted under `dripd run`
            reason = _line(getattr(exc, "orig", None) or exc)
            click.echo(f"dripd: database unavailable: {reason}", err=True)
            raise SystemExit(75) from None  # EX_TEMPFAIL: systemd starts it again
        click.echo(
            f"dripd: internal error: {type(exc).__name__}: {_line(exc)} "
            "(DRIPD_LOG_LEVEL=debug shows details)",
            err=True,
        )
        raise SystemExit(70) from None


def _database_lost(exc: BaseException) -> bool:
    sqlalchemy = sys.modules.get("sqlalchemy")  # not imported: not a database error
    return sqlalchemy is not None and isinstance(exc, sqlalchemy.exc.OperationalError)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"


if __name__ == "__main__":  # pragma: no cover
    main()
