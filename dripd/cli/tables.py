"""How the CLI shows things to people: rich tables and short reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only for annotations: `contacts list` imports this module and need not load
# the views, the composer and the importer (a fifth of a second at start), nor
# `check` the database layer.
if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from dripd.cli import signin
    from dripd.files import campaigns, config
    from dripd.mailbox import probe
    from dripd.pipeline import compose, importer, reports, variants
    from dripd.pipeline.app import App
    from dripd.store import membership
    from dripd.store.contacts import Contact
    from dripd.store.enrollments import Enrollment
    from dripd.store.events import Event
    from dripd.store.tasks import Task


# rich is loaded when a table or a report is printed: a `--json` command never needs it.
def _table(*args: Any, grid: bool = False, **kwargs: Any) -> Table:
    from rich.table import Table

    return Table.grid(*args, **kwargs) if grid else Table(*args, **kwargs)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _when(at: datetime | None, tz: Any = None) -> str:
    if at is None:
        return "—"
    local = at.astimezone(tz) if tz else at.astimezone()
    return f"{local:%Y-%m-%d %H:%M}"


def next_line(item: reports.Scheduled | None, now: datetime) -> str:
    """`run --once`'s last line: what happens next, and when (the contact's time)."""
    if item is None:
        return "next: nothing scheduled"
    what = f"{item.kind} {item.campaign}/{item.step}" if item.campaign else item.kind
    when = f"{item.local:%a %Y-%m-%d %H:%M %Z}"
    wait = item.at - now
    if wait <= timedelta(0):
        soon = "now"
    else:
        minutes = -int(-wait.total_seconds() // 60)  # rounded up: never 'in 0 min'
        hours, minutes = divmod(minutes, 60)
        days, hours = divmod(hours, 24)
        parts = [f"{days} d" if days else "", f"{hours} h" if hours else ""]
        parts.append(f"{minutes} min" if minutes and not days else "")
        soon = "in " + " ".join(p for p in parts if p)
    why = f"; {item.note}" if item.note else ""
    return f"next: {what} to {item.email}, {when} ({soon}{why}); dripd schedule shows the rest"


def check_report(
    console: Console,
    cfg: config.Config,
    catalog: campaigns.Catalog,
    warnings: Sequence[str],
    tried: Sequence[probe.Tried] = (),
) -> None:
    for problem in catalog.problems:
        console.print(f"[red]error[/red] {_escape(problem)}", markup=True)
    for warning in warnings:
        console.print(f"[yellow]warning[/yellow] {_escape(warning)}", markup=True)
    for one in tried:
        mark = "[green]ok[/green]" if one.ok else "[red]error[/red]"
        console.print(f"{mark} {_escape(str(one))}", markup=True)
    steps = sum(len(c.steps) for c in catalog.campaigns.values())
    failed = catalog.problems or not all(t.ok for t in tried)
    verdict = "[red]FAILED[/red]" if failed else "[green]ok[/green]"
    console.print(
        f"{verdict}: {cfg.path}, {len(cfg.reps)} rep(s), {len(catalog.campaigns)} campaign(s), "
        f"{steps} step(s) in {cfg.campaigns_dir}",
        markup=True,
    )


def import_report(console: Console, errors: Console, file: Path, report: importer.Report) -> None:
    for problem in report.problems:
        errors.print(f"{file}: {problem}", markup=False)
    console.print(
        f"{file}: {report.created} created, {report.updated} updated, "
        f"{report.enrolled} enrolled, {len(report.problems)} row(s) with problems"
    )


def contact_json(contact: Contact, campaigns_now: Sequence[str]) -> dict[str, Any]:
    return {
        "email": contact.email,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "company": contact.company,
        "phone": contact.phone,
        "timezone": contact.timezone,
        "owner": contact.owner,
        "stage": contact.stage,
        "status": contact.status,
        "referred_by": contact.referred_by,
        "fields": dict(contact.fields),
        "touches": contact.touches,
        "last_touch_at": contact.last_touch_at.isoformat() if contact.last_touch_at else None,
        "created_at": contact.created_at.isoformat(),
        "campaigns": list(campaigns_now),
    }


def enrollment_json(e: Enrollment) -> dict[str, Any]:
    return {
        "campaign": e.campaign,
        "status": e.status,
        "enrolled_at": e.enrolled_at.isoformat(),
        "ended_at": e.ended_at.isoformat() if e.ended_at else None,
        "end_reason": e.end_reason,
        "next_due_at": e.next_due_at.isoformat() if e.next_due_at else None,
        "waiting": e.waiting,
    }


CONTACT_COLUMNS = (
    "email",
    "name",
    "company",
    "stage",
    "status",
    "campaign",
    "touches",
    "last touch",
)


def contact_cells(contact: Contact, campaigns_now: Sequence[str]) -> tuple[str, ...]:
    """A contact's row of `contacts list`, as CONTACT_COLUMNS."""
    c = contact
    touched = _when(c.last_touch_at)
    return (c.email, c.name, c.company, c.stage, c.status, ", ".join(campaigns_now),
            str(c.touches), touched)  # fmt: skip


def contact_table(console: Console, rows: Sequence[tuple[str, ...]]) -> None:
    """`contacts list` on a terminal when it fits a page: a rich table of contact_cells."""
    table = _table(title=f"{len(rows)} contact(s)", title_justify="left")
    for column in CONTACT_COLUMNS:
        table.add_column(column, justify="right" if column == "touches" else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def contact_card(
    console: Console,
    app: App,
    contact: Contact,
    enrollments: Sequence[Enrollment],
    history: Sequence[Event],
) -> None:
    tz = app.contact_tz(contact.timezone, contact.owner)
    console.print(f"[bold]{contact.name or contact.email}[/bold] <{contact.email}>", markup=True)
    fields = _table(grid=True, padding=(0, 2))
    rows = [
        ("company", contact.company),
        ("phone", contact.phone),
        ("stage", contact.stage),
        ("status", contact.status),
        ("owner", contact.owner or ""),
        ("timezone", contact.timezone or f"{tz} (default)"),
        ("referred by", contact.referred_by or ""),
        ("touches", str(contact.touches)),
        ("last touch", _when(contact.last_touch_at, tz)),
        ("created", _when(contact.created_at, tz)),
    ]
    rows += sorted(contact.fields.items())
    for key, value in rows:
        fields.add_row(f"[dim]{key}[/dim]", str(value))
    console.print(fields)
    if enrollments:
        _enrollment_table(console, enrollments, tz)
    _history_table(console, history, tz)


def _enrollment_table(console: Console, enrollments: Sequence[Enrollment], tz: Any) -> None:
    table = _table(title="campaigns", title_justify="left")
    for column in ("campaign", "status", "enrolled", "next due", "waiting / ended"):
        table.add_column(column)
    for e in enrollments:
        table.add_row(
            e.campaign,
            e.status,
            _when(e.enrolled_at, tz),
            _when(e.next_due_at, tz),
            e.waiting or e.end_reason or "",
        )
    console.print(table)


def _history_table(console: Console, history: Sequence[Event], tz: Any) -> None:
    table = _table(title="history", title_justify="left")
    for column in ("when", "event", "campaign/step", "detail", "cause"):
        table.add_column(column)
    for h in history:
        where = "/".join(x for x in (h.campaign, h.step) if x)
        detail = h.detail + (f" {h.message_id}" if h.message_id else "")
        table.add_row(_when(h.at, tz), h.kind, where, detail, h.cause or "")
    console.print(table)


SCHEDULE_COLUMNS = ("when (contact's time)", "contact", "campaign", "step", "kind", "note")
WAITING_COLUMNS = ("contact", "campaign", "waiting for")


def scheduled_cells(item: reports.Scheduled) -> tuple[str, ...]:
    """An item's row of `schedule`, as SCHEDULE_COLUMNS."""
    step = item.step + (f" #{item.occurrence}" if item.occurrence > 1 else "")
    when = f"{item.local:%a %Y-%m-%d %H:%M %Z}"
    return (when, item.email, item.campaign, step, item.kind, item.note)


def waiting_cells(w: reports.Waiting) -> tuple[str, ...]:
    return (w.email, w.campaign, w.reason)


def schedule_table(
    console: Console,
    rows: Sequence[tuple[str, ...]],
    waiting: Sequence[reports.Waiting],
    days: int,
) -> None:
    """`schedule` on a terminal when it fits a page: rich tables of scheduled_cells."""
    table = _table(title=f"the next {days} day(s): {len(rows)} item(s)", title_justify="left")
    for column in SCHEDULE_COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if waiting:
        wait_table = _table(title="waiting", title_justify="left")
        for column in WAITING_COLUMNS:
            wait_table.add_column(column)
        for w in waiting:
            wait_table.add_row(*waiting_cells(w))
        console.print(wait_table)


def email_preview(console: Console, email: compose.Email, show_html: bool) -> None:
    console.print(f"From: {email.sender.name} <{email.sender.email}>", markup=False)
    console.print(
        f"To: {email.to_name} <{email.to}>" if email.to_name else f"To: {email.to}", markup=False
    )
    console.print(f"Subject: {email.subject}", markup=False)
    for item in email.attachments:
        missing = isinstance(item, Path) and not item.is_file()
        state = "  (MISSING: the step will wait for it)" if missing else ""
        console.print(f"Attachment: {getattr(item, 'filename', item)}{state}", markup=False)
    console.print("", markup=False)
    console.print(email.text, markup=False)
    if show_html and email.html:
        console.print("--- HTML part ---", markup=False)
        console.print(email.html, markup=False)


def task_preview(console: Console, step: campaigns.Step, contact: Contact, note: str) -> None:
    console.print(
        f"{step.kind.upper()}: {contact.name or contact.email}"
        f"{' — ' + contact.company if contact.company else ''}",
        markup=False,
    )
    if contact.phone:
        console.print(f"Phone: {contact.phone}", markup=False)
    console.print(f"Touches so far: {contact.touches}", markup=False)
    console.print("", markup=False)
    console.print(note, markup=False)


def status_report(console: Console, data: reports.Status) -> None:
    health_report(console, data.health)
    stages = _table(title="contacts per stage", title_justify="left")
    for stage in data.stages:
        stages.add_column(stage, justify="right")
    stages.add_row(*(str(n) for n in data.stages.values()))
    console.print(stages)
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(data.statuses.items())) or "none"
    console.print(f"status: {statuses}; touches: {data.touches}; due now: {data.due_now}")
    table = _table(title="per campaign step", title_justify="left")
    for column in (
        "campaign",
        "step",
        "kind",
        "sent",
        "replied",
        "auto-replied",
        "bounced",
        "reply rate",
        "tasks done",
    ):
        table.add_column(
            column, justify="left" if column in ("campaign", "step", "kind") else "right"
        )
    for s in data.steps:
        rate = f"{s.reply_rate:.0%}" if s.reply_rate is not None else "—"
        table.add_row(
            s.campaign,
            s.step,
            s.kind,
            str(s.sent),
            str(s.replied),
            str(s.auto_replied),
            str(s.bounced),
            rate,
            str(s.done),
        )
    console.print(table)
    _variants_report(console, data.variants)
    boxes = _table(title="mailboxes", title_justify="left")
    numbers = ("sent", "waiting", "failed", "replies")
    columns = ("rep", *numbers[:3], "last sent", "replies", "inbox read", "last digest", "notes")
    for column in columns:
        boxes.add_column(column, justify="right" if column in numbers else "left")
    for box in data.mailboxes:
        boxes.add_row(
            box.rep,
            str(box.sent),
            str(box.waiting),
            str(box.failed),
            _when(box.last_sent_at),
            str(box.replies),
            _when(box.inbox_checked_at),
            _when(box.last_digest_at),
            "; ".join(box.notes),
        )
    console.print(boxes)
    enrolled = _table(title="enrollments", title_justify="left")
    for column in ("campaign", "active", "completed", "stopped"):
        enrolled.add_column(column, justify="left" if column == "campaign" else "right")
    for campaign, counts in data.campaigns.items():
        enrolled.add_row(campaign, *(str(counts[k]) for k in ("active", "completed", "stopped")))
    console.print(enrolled)


def _variants_report(console: Console, steps: Sequence[variants.StepVariants]) -> None:
    """A/B versions of a step: sent, replied, reply rate, and whether it tells yet."""
    if not steps:
        return
    table = _table(title="A/B variants", title_justify="left")
    for column in ("campaign", "step", "variant", "sent", "replied", "reply rate", "verdict"):
        numeric = column in ("sent", "replied", "reply rate")
        table.add_column(column, justify="right" if numeric else "left")
    for step in steps:
        for number, version in enumerate(step.versions):
            rate = f"{version.reply_rate:.0%}" if version.reply_rate is not None else "—"
            verdict = step.note if number == 0 else ""
            table.add_row(
                step.campaign, step.step, version.variant,
                str(version.sent), str(version.replied), rate, verdict,
            )  # fmt: skip
    console.print(table)


def health_report(console: Console, health: reports.Health) -> None:
    """The daemon's health: running or not, what waits, what needs a look."""
    alive = [i for i in health.instances if i.alive]
    if len(alive) == 1:
        (one,) = alive
        daemon = (
            f"running (pid {one.pid} on {one.host}, last pass "
            f"{_when(one.seen_at)}; holds {', '.join(one.holds) or 'no mailbox'})"
        )
    elif alive:
        daemon = f"{len(alive)} instances running"
    elif health.instances:
        last = health.instances[0]
        how = "stopped" if last.stopped_at else "not seen since (killed or stuck?)"
        daemon = f"not running: {how} {_when(last.seen_at)}"
    else:
        daemon = "never started on this database (dripd run)"
    console.print(f"daemon: {daemon}", markup=False)
    if len(alive) > 1:
        console.print(_instances_table(alive))
    console.print(
        f"backlog: {health.queued} email(s) queued, {health.ready} ready to go now; "
        f"last email sent {_when(health.last_sent_at)}",
        markup=False,
    )
    counts = [
        (health.sign_ins_needed, "mailbox sign-in(s) needed"),
        (health.failed_emails, "email(s) failed"),
        (health.held_steps, "step(s) held"),
        (health.unreadable_messages, "incoming message(s) unreadable"),
        (int(health.campaign_mismatch), "campaign version mismatch"),
    ]
    needing = ", ".join(f"{n} {what}" for n, what in counts if n)
    console.print(f"needs a look: {needing or 'nothing'}", markup=False)
    for line in health.attention:
        console.print(f"  - {line}", markup=False)


def sign_in_table(console: Console, found: Sequence[signin.Status]) -> None:
    """`dripd auth --list`: each rep's sign-in."""
    table = _table(title="sign-ins", title_justify="left")
    for column in ("rep", "auth", "signed in", "as", "since", "refresh token last used"):
        table.add_column(column)
    for s in found:
        state = "—" if s.auth == "password" else ("yes" if s.signed_in else "no")
        table.add_row(
            s.rep,
            s.auth,
            state,
            s.subject or "—",
            _when(s.since) if s.since else "—",
            _when(s.refreshed_at) if s.refreshed_at else "—",
        )
    console.print(table)
    for s in found:
        if s.problem:
            console.print(f"  - {s.problem}", markup=False)


def _instances_table(alive: list[membership.Instance]) -> Table:
    """The live instances of a fleet on one database, and the mailboxes each works."""
    table = _table(title="instances", title_justify="left")
    for column in ("host", "pid", "started", "last pass", "holds", "campaigns"):
        table.add_column(column, justify="right" if column == "pid" else "left")
    for i in alive:
        table.add_row(
            i.host,
            str(i.pid),
            _when(i.started_at),
            _when(i.seen_at),
            ", ".join(i.holds) or "-",
            i.campaigns,
        )
    return table


def task_json(task: Task, contact: Contact) -> dict[str, Any]:
    return {
        "id": task.id,
        "kind": task.kind,
        "due_at": task.due_at.isoformat(),
        "rep": task.rep,
        "contact": contact.email,
        "name": contact.name,
        "company": contact.company,
        "phone": contact.phone,
        "touches": contact.touches,
        "campaign": task.campaign,
        "step": task.step,
        "note": task.note,
    }


def task_table(
    console: Console, app: App, rows: Sequence[Task], people: Mapping[int, Contact]
) -> None:
    table = _table(title=f"{len(rows)} open task(s)", title_justify="left", show_lines=True)
    for column in ("#", "due", "kind", "contact", "phone", "touches", "note"):
        table.add_column(column, justify="right" if column in ("#", "touches") else "left")
    for task in rows:
        contact = people[task.contact_id]
        tz = app.contact_tz(contact.timezone, contact.owner)
        who = f"{contact.name or contact.email}" + (
            f"\n{contact.company}" if contact.company else ""
        )
        table.add_row(
            str(task.id),
            _when(task.due_at, tz),
            task.kind,
            who,
            contact.phone,
            str(contact.touches),
            task.note,
        )
    console.print(table)


def explain_report(console: Console, file: Path, data: Mapping[str, Any]) -> None:
    """`dripd explain`: the verdict on one message, each conclusion with its reason."""
    console.print(f"[bold]{_escape(str(file))}[/bold]: [bold cyan]{data['class']}[/bold cyan]")
    table = _table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    rows = [
        ("from", data.get("from")),
        ("subject", data.get("subject")),
        ("message-id", data.get("message_id")),
        ("contact", data.get("contact") or "no contact matched"),
        ("answers", data.get("matched_message_id")),
        ("campaign", data.get("campaign")),
        ("rep", data.get("rep")),
        ("return date", data.get("return_date")),
    ]
    for label, value in rows:
        if value:
            table.add_row(label, _escape(str(value)))
    if data.get("summary"):
        table.add_row("says", _escape(data["summary"]))
    console.print(table)
    _print_reading(console, data.get("reading") or {}, data.get("failed") or [])
    console.print("[dim]dripd would:[/dim]")
    for line in data.get("would_do") or []:
        console.print(f"  - {_escape(line)}")
    console.print("[dim]why:[/dim]")
    for reason in data["reasons"]:
        console.print(f"  - {_escape(reason)}")


def _print_reading(
    console: Console, reading: Mapping[str, Any], failed: list[Mapping[str, Any]]
) -> None:
    """What the report itself says, whoever it is about: recipients, codes, hard/soft/policy."""
    if not reading.get("kind"):
        return
    console.print(f"[dim]read as:[/dim] a {reading['kind']} report")
    if reading["kind"] == "complaint":
        for address in reading.get("recipients") or []:
            console.print(f"  - complaint from {_escape(address)}")
        return
    contacts = {f["recipient"]: f.get("contact") for f in failed}
    for item in reading.get("failed") or []:
        status = item["status"] or "no status"
        contact = contacts.get(item["recipient"])
        who = f"contact {contact}" if contact else "not a contact"
        line = f"{item['recipient']} ({who}): {item['kind']}, {item['reason']}, {status}"
        console.print(f"  - failed {_escape(line)}")
        if item["diagnostic"]:
            console.print(f"      {_escape(item['diagnostic'])}")
    if reading.get("original_message_id"):
        console.print(f"  - original message {_escape(reading['original_message_id'])}")
