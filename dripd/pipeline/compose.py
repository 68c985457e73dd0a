"""Rendering a step for a contact: the email's subject and parts, or the rep task's note."""

from __future__ import annotations

import html as html_mod
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from dripd.files import campaigns, config
from dripd.mail import mime
from dripd.pipeline.app import App
from dripd.plan import contacts as contacts_mod
from dripd.plan import templates
from dripd.store.contact_rows import Contact

UNSUBSCRIBE_LINE = 'If you\'d rather not hear from me, just reply "unsubscribe".'


@dataclass(frozen=True, slots=True, kw_only=True)
class Email:
    sender: config.RepConfig
    to: str
    to_name: str
    subject: str
    text: str
    html: str | None
    attachments: tuple[Path | mime.Attachment, ...]


def template_context(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    occurrence: int = 1,
) -> dict[str, Any]:
    """What templates see: contact, rep, campaign, step, occurrence."""
    rep = _sender(app, contact, step)
    return {
        "contact": contact.values(),
        "rep": _rep_view(rep)
        if rep
        else {"name": "", "first_name": "", "email": "", "phone": "", "company": ""},
        "campaign": {"id": campaign.id, "name": campaign.name},
        "step": {"id": step.id, "kind": step.kind},
        "occurrence": occurrence,
        "_tz": app.contact_tz(contact.timezone, contact.owner),
    }


def _rep_view(rep: config.RepConfig) -> dict[str, str]:
    return {
        "id": rep.id,
        "name": rep.name,
        "first_name": rep.first_name,
        "email": rep.email,
        "phone": rep.phone,
        "company": rep.company,
        "signature": rep.signature,
    }


def _sender(app: App, contact: Contact, step: campaigns.Step) -> config.RepConfig | None:
    rep_id = app.config.sender_of(step.sender) or contact.owner
    for rep in app.config.reps:
        if rep.id == rep_id:
            return rep
    return app.config.reps[0] if app.config.reps else None


def render_email(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    occurrence: int = 1,
) -> Email:
    """The email of `step` for `contact`; raises RenderError naming the step."""
    sender = _sender(app, contact, step)
    if sender is None:
        raise templates.RenderError("no rep in the config to send from")
    context = template_context(app, contact, campaign, step, occurrence)
    what = f"{campaign.id}/{step.id}"
    subject = mime.one_line(
        app.renderer.render_string(step.subject or "", context, f"{what} subject")
    )
    text, html = templates.render_body(
        app.renderer, template=step.template, body=step.body, context=context, what=what
    )
    return Email(
        sender=sender,
        to=contact.email,
        to_name=mime.one_line(contact.name),
        subject=subject,
        text=_with_footer(text, sender),
        html=_html_footer(html, sender) if html is not None else None,
        attachments=tuple(_attachment(app, p, context, what) for p in step.attach),
    )


def _with_footer(text: str, rep: config.RepConfig) -> str:
    signature = f"\n-- \n{rep.signature.strip()}\n" if rep.signature.strip() else ""
    return f"{text.rstrip()}\n{signature}\n{UNSUBSCRIBE_LINE}\n"


def _html_footer(html: str, rep: config.RepConfig) -> str:
    signature = "<br>\n".join(html_mod.escape(line) for line in rep.signature.strip().splitlines())
    block = f'<p style="color:#555">{signature}</p>\n' if signature else ""
    note = f'<p style="color:#888;font-size:small">{html_mod.escape(UNSUBSCRIBE_LINE)}</p>\n'
    return f"{html}{block}{note}"


def _attachment(app: App, pattern: str, context: dict[str, Any], what: str) -> Path:
    name = app.renderer.render_string(pattern, context, f"{what} attach")
    folder = app.config.attachments_dir.resolve()
    path = (folder / name).resolve()
    if folder not in path.parents:
        raise templates.RenderError(f"{what}: attachment {name!r} is outside {folder}")
    return path


def render_note(
    app: App,
    contact: Contact,
    campaign: campaigns.Campaign,
    step: campaigns.Step,
    occurrence: int = 1,
) -> str:
    context = template_context(app, contact, campaign, step, occurrence)
    what = f"{campaign.id}/{step.id} note"
    return app.renderer.render_string(step.note or "", context, what).strip()


# -- `dripd check`: every step rendered for the barest contact ------------------------------

_MISSING_FIELD = re.compile(r"'dict object' has no attribute '(?P<name>[a-z_][a-z0-9_]*)'")
SAMPLE_EMAIL = "someone@example.com"


def try_every_step(app: App, now: datetime) -> tuple[list[str], list[str]]:
    """Render each email and note for a contact that has only an email address.

    Returns (errors, warnings). A template that fails on a standard field or
    any other way is an error: it would fail for real contacts. One that needs
    a custom field is a warning naming the field: contacts without it get
    their email held and a note that could not be filled in. Anchored and
    yearly steps get their date field, as they only come due with one.
    """
    errors: list[str] = []
    warnings: list[str] = []
    for campaign in app.catalog.campaigns.values():
        for step in campaign.steps:
            problem = _try_step(app, campaign, step, _bare_contact(step, now))
            if problem is None:
                continue
            place = f"{campaign.path}: step {step.id!r}: "
            missing = _MISSING_FIELD.search(problem)
            if missing and missing["name"] not in contacts_mod.STANDARD:
                warnings.append(
                    f"{place}needs the contact field {missing['name']!r}: "
                    "contacts without it are held and the rep is told"
                )
            else:
                errors.append(f"{place}{problem}")
    return errors, warnings


def _try_step(
    app: App, campaign: campaigns.Campaign, step: campaigns.Step, contact: Contact
) -> str | None:
    try:
        if step.is_email:
            render_email(app, contact, campaign, step)
        else:
            render_note(app, contact, campaign, step)
    except templates.RenderError as exc:
        return str(exc)
    return None


def _bare_contact(step: campaigns.Step, now: datetime) -> Contact:
    """A contact with an email address, and the date its step is timed by (if any)."""
    fields: dict[str, str] = {}
    if step.date_field is not None:
        fields[step.date_field] = f"{(now + timedelta(days=7)).date().isoformat()} 10:00"
    return Contact(id=0, email=SAMPLE_EMAIL, fields=fields, created_at=now, updated_at=now)
