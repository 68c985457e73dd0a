"""dripd's HTML emails as a person sees them, in a real browser (headless Chromium).

No pixel-golden files. Each email's HTML part is opened from a file and
- printed to PDF, its visible text read back with pdftotext: the names, notes,
  headings and reply commands are there, and hostile markup shows as text;
- dumped as its DOM after loading: no <script> element, no event handler, and
  the tel: and mailto: links are real links to the right targets;
- screenshotted at 800x1400, the PNG decoded here (stdlib only): not blank,
  and its ink inside the email's column.

Skipped when Chromium or pdftotext is missing, unless DRIPD_TEST_REQUIRE_BROWSER
is set (CI sets it; `./dev test` installs both when run as root).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import dates
import pytest
import servers.browser
import servers.required

from dripd.files import config
from dripd.mail import mime
from dripd.pipeline import app as app_mod
from dripd.pipeline import compose, digest_render
from dripd.store import contacts

ConfigFactory = Callable[..., Path]  # the `make_config` fixture of tests/conftest.py

# The Monday after New York's clocks sprang forward, next year, 07:30 in New York (EDT);
# the Friday and the Tuesday before it were on EST.
DAY = dates.spring_forward_monday()
NOW = dates.local(DAY, 7, 30)
NEW_YORK = ZoneInfo("America/New_York")
SCRIPT = "<script>alert(1)</script>"
# Markup that runs without a <script> element when it is injected as HTML.
IMG = "<img src=x onerror=\"document.title='script ran'\">"
HOSTILE_NAME = f'{SCRIPT} Zoë "Z" & Co'
HOSTILE_NOTE = f'Thank Zoë for "the tour" & the coffee.\n{IMG} is only text.'


def _short(days: int) -> str:
    """The day `days` after the digest's Monday as the digest writes it: "Fri 6 Mar"."""
    return dates.fmt_short(DAY + timedelta(days=days))


@pytest.fixture(scope="module")
def tools() -> servers.browser.Tools:
    return servers.required.browser_tools()


# -- the rep's digest -----------------------------------------------------------------


def digest_content() -> digest_render.Content:
    """Two calls (one with a phone) and a card due, a reply, a stuck contact, the week ahead."""
    return digest_render.Content(
        rep=config.RepConfig(id="mike", name="Mike Gulitz", email="mike@example.com"),
        now=NOW,
        tz=NEW_YORK,
        due=(
            _task(
                number=1,
                kind="call",
                due_at=dates.local(DAY - timedelta(days=3), 9),
                overdue=True,
                contact_name="Ann Lee",
                email="ann@acme.example",
                company="Acme & Sons",
                phone="+1 (555) 010-0",
                note='Confirm the demo: "Thursday 10:00".\nAsk for the rates & the deed.',
            ),
            _task(
                number=2,
                kind="card",
                due_at=dates.local(DAY, 10),
                contact_name=HOSTILE_NAME,
                email="zoe@zee.example",
                note=HOSTILE_NOTE,
            ),
        ),
        ahead=(
            _task(
                number=3,
                kind="call",
                due_at=dates.local(DAY + timedelta(days=1), 22, 30),  # Tuesday 22:30 EDT
                contact_name="Dee Roe",
                email="dee@roe.example",
                phone="555-0199",
            ),
        ),
        news=(
            digest_render.NewsItem(
                kind="reply",
                at=dates.local(DAY, 6, 12),
                contact_name="Bob Stone",
                email="bob@stone.example",
                summary="Thanks Mike, Thursday works.\nCan you send the rates?",
            ),
        ),
        stuck=(
            digest_render.StuckItem(
                contact_name="Fay Wu",
                email="fay@wu.example",
                company="Wu LLC",
                touches=3,
                last_touch_at=dates.local(DAY - timedelta(days=6), 10),
                stage="prospect",
            ),
        ),
    )


def _task(
    *,
    number: int,
    kind: str,
    due_at: datetime,
    contact_name: str,
    email: str,
    overdue: bool = False,
    company: str = "",
    phone: str = "",
    note: str = "",
) -> digest_render.TaskItem:
    return digest_render.TaskItem(
        number=number,
        task_id=100 + number,
        kind=kind,
        due_at=due_at,
        overdue=overdue,
        contact_name=contact_name,
        email=email,
        company=company,
        phone=phone,
        note=note,
        touches=2,
        campaign="qualification",
        step="confirm-call" if kind == "call" else "thank-you-card",
    )


def test_the_digest_reads_right_in_a_browser(tools: servers.browser.Tools, tmp_path: Path) -> None:
    rendered = digest_render.render(digest_content())
    seen = servers.browser.look(tools, rendered.html, tmp_path)

    for heading in (
        "Today and overdue",
        "Since your last digest",
        "Under five touches, no reply yet",
        "The week ahead",
        "Commands",
    ):
        assert heading in seen.text
    for shown in (
        "Hi Mike,",
        f"1. Call: Ann Lee, Acme & Sons overdue since {_short(-3)} phone: +1 (555) 010-0",
        'Confirm the demo: "Thursday 10:00". Ask for the rates & the deed.',
        f"2. Card: {HOSTILE_NAME} today 10:00 email: zoe@zee.example",
        f'Thank Zoë for "the tour" & the coffee. {IMG} is only text.',
        f"Reply: Bob Stone (bob@stone.example), {_short(0)} 06:12",
        "Thanks Mike, Thursday works. Can you send the rates?",
        f"Fay Wu, Wu LLC (fay@wu.example) 3 touches, last {_short(-6)}; stage: prospect",
        f"{_short(1)} 3. 22:30 Call: Dee Roe phone: 555-0199",
        "Reply to this email with one command a line:",
    ):
        assert shown in seen.text, f"{shown!r} not visible in:\n{seen.text}"
    for command, meaning in digest_render.COMMANDS:
        assert command in seen.text and meaning in seen.text

    assert_no_script(seen, title=rendered.subject)
    assert ("tel:+15550100", "+1 (555) 010-0") in seen.page.links
    assert ("tel:5550199", "555-0199") in seen.page.links
    for address in ("ann@acme.example", "zoe@zee.example", "bob@stone.example", "fay@wu.example"):
        assert (f"mailto:{address}", address) in seen.page.links
    assert all(href.startswith(("tel:", "mailto:")) for href, _ in seen.page.links)

    # Inked, and all of it inside the 640-pixel column centered in the 800-pixel window.
    assert_not_blank(seen.picture)
    left, _top, right, _bottom = seen.picture.ink_box
    assert left >= 80 and right < 720, seen.picture


# -- a campaign email -----------------------------------------------------------------


def test_a_campaign_email_reads_right_in_a_browser(
    tools: servers.browser.Tools, tmp_path: Path, make_config: ConfigFactory
) -> None:
    app = app_mod.open_app(str(make_config()), with_db=False)
    qualification = app.catalog.get("qualification")
    contact = contacts.Contact(
        id=1,
        email="zoe@zee.example",
        first_name=HOSTILE_NAME,
        last_name="Ng",
        owner="mike",
        fields={"appointment_at": dates.stamp(DAY + timedelta(days=3))},  # Thursday
        created_at=NOW,
        updated_at=NOW,
    )
    email = compose.render_email(app, contact, qualification, qualification.step("thank-you"))
    built = mime.build(email, msgid="<browser.test@example.com>", date=NOW)
    part = html_part(built)
    # A mail client decodes the part by its MIME charset; the file says it with a BOM.
    assert part.get_content_charset() == "utf-8"
    seen = servers.browser.look(tools, part.get_content(), tmp_path, bom=True)

    thursday = DAY + timedelta(days=3)
    at = f"{thursday:%A, %B} {thursday.day} at 10:00 AM"  # "Thursday, March 12 at 10:00 AM"
    for shown in (
        f"Hi {HOSTILE_NAME},",  # the contact's name as written: text, not markup
        "Thank you for taking the time to meet with me.",
        f"We're set for {at}, when I'll walk you through it",
        "Mike Gulitz MPC Mortgage Planner",
        'If you\'d rather not hear from me, just reply "unsubscribe".',
    ):
        assert shown in seen.text, f"{shown!r} not visible in:\n{seen.text}"
    assert_no_script(seen, title=None)
    assert_not_blank(seen.picture)


def html_part(built: mime.Built) -> EmailMessage:
    message = message_from_bytes(built.as_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    return part


# -- what the browser shows -----------------------------------------------------------


def assert_no_script(seen: servers.browser.Seen, *, title: str | None) -> None:
    """Nothing in the page could run: no script element, no handler; markup stayed text."""
    assert "script" not in seen.page.tags, seen.dom
    assert not seen.page.handlers, seen.page.handlers
    assert "img" not in seen.page.tags, seen.dom
    assert seen.page.title == title  # an injected handler would have changed it


def assert_not_blank(picture: servers.browser.Picture) -> None:
    assert (picture.width, picture.height) == servers.browser.WINDOW
    # Text on white: a few percent of the pixels inked, in many shades (anti-aliasing).
    assert 0.01 < picture.ink < 0.5, picture
    assert picture.colors > 50, picture
    _left, top, _right, bottom = picture.ink_box
    assert top < 60 and bottom - top > 200, picture  # it starts at the top and goes on


# -- the DOM --------------------------------------------------------------------------
