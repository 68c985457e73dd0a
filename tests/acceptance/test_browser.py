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

import html.parser
import os
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dripd.files import config
from dripd.mail import mime
from dripd.pipeline import app as app_mod
from dripd.pipeline import compose, digest_render
from dripd.store import contacts

ConfigFactory = Callable[..., Path]  # the `make_config` fixture of tests/conftest.py

REQUIRE_BROWSER = os.environ.get("DRIPD_TEST_REQUIRE_BROWSER", "") not in ("", "0")
RUN_TIMEOUT = 90  # seconds for one Chromium or pdftotext run: about one, but the first
# Chromium run after installing it once went past 30 s here
WINDOW = (800, 1400)  # pixels: the screenshot's size
# As root, on a machine without a network or a session bus: no sandbox, no GPU,
# and nothing that phones home (each refused connection costs time and log lines).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    # Paint every tile before the screenshot: without it, 1 in 36 screenshots taken 12
    # at a time on 2 cores came back with the bottom tiles still white (1 in 96 with it).
    "--run-all-compositor-stages-before-draw",
)
NOW = datetime(2026, 3, 9, 11, 30, tzinfo=UTC)  # Mon 9 Mar 2026, 07:30 in New York
NEW_YORK = ZoneInfo("America/New_York")
SCRIPT = "<script>alert(1)</script>"
# Markup that runs without a <script> element when it is injected as HTML.
IMG = "<img src=x onerror=\"document.title='script ran'\">"
HOSTILE_NAME = f'{SCRIPT} Zoë "Z" & Co'
HOSTILE_NOTE = f'Thank Zoë for "the tour" & the coffee.\n{IMG} is only text.'


@dataclass(frozen=True, slots=True, kw_only=True)
class Tools:
    chromium: str
    pdftotext: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """An email as the browser showed it."""

    text: str  # the printed PDF's visible text, whitespace runs made one space
    dom: str  # the document after loading, serialized
    page: Page  # what parsing `dom` found
    screenshot: Path
    picture: Picture


@pytest.fixture(scope="module")
def tools() -> Tools:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    pdftotext = shutil.which("pdftotext")
    if chromium and pdftotext:
        return Tools(chromium=chromium, pdftotext=pdftotext)
    missing = ", ".join(n for n, p in (("chromium", chromium), ("pdftotext", pdftotext)) if not p)
    if REQUIRE_BROWSER:
        pytest.fail(f"DRIPD_TEST_REQUIRE_BROWSER is set but {missing} is not installed")
    pytest.skip(f"{missing} not installed (apt-get install chromium poppler-utils)")


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
                due_at=datetime(2026, 3, 6, 14, 0, tzinfo=UTC),
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
                due_at=datetime(2026, 3, 9, 14, 0, tzinfo=UTC),
                contact_name=HOSTILE_NAME,
                email="zoe@zee.example",
                note=HOSTILE_NOTE,
            ),
        ),
        ahead=(
            _task(
                number=3,
                kind="call",
                due_at=datetime(2026, 3, 11, 2, 30, tzinfo=UTC),  # Tue 10 Mar 22:30 EDT
                contact_name="Dee Roe",
                email="dee@roe.example",
                phone="555-0199",
            ),
        ),
        news=(
            digest_render.NewsItem(
                kind="reply",
                at=datetime(2026, 3, 9, 10, 12, tzinfo=UTC),
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
                last_touch_at=datetime(2026, 3, 3, 15, 0, tzinfo=UTC),
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


def test_the_digest_reads_right_in_a_browser(tools: Tools, tmp_path: Path) -> None:
    rendered = digest_render.render(digest_content())
    seen = look(tools, rendered.html, tmp_path)

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
        "1. Call: Ann Lee, Acme & Sons overdue since Fri 6 Mar phone: +1 (555) 010-0",
        'Confirm the demo: "Thursday 10:00". Ask for the rates & the deed.',
        f"2. Card: {HOSTILE_NAME} today 10:00 email: zoe@zee.example",
        f'Thank Zoë for "the tour" & the coffee. {IMG} is only text.',
        "Reply: Bob Stone (bob@stone.example), Mon 9 Mar 06:12",
        "Thanks Mike, Thursday works. Can you send the rates?",
        "Fay Wu, Wu LLC (fay@wu.example) 3 touches, last Tue 3 Mar; stage: prospect",
        "Tue 10 Mar 3. 22:30 Call: Dee Roe phone: 555-0199",
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
    tools: Tools, tmp_path: Path, make_config: ConfigFactory
) -> None:
    app = app_mod.open_app(str(make_config()), with_db=False)
    qualification = app.catalog.get("qualification")
    contact = contacts.Contact(
        id=1,
        email="zoe@zee.example",
        first_name=HOSTILE_NAME,
        last_name="Ng",
        owner="mike",
        fields={"appointment_at": "2026-03-12 10:00"},
        created_at=NOW,
        updated_at=NOW,
    )
    email = compose.render_email(app, contact, qualification, qualification.step("thank-you"))
    built = mime.build(email, msgid="<browser.test@example.com>", date=NOW)
    part = html_part(built)
    # A mail client decodes the part by its MIME charset; the file says it with a BOM.
    assert part.get_content_charset() == "utf-8"
    seen = look(tools, part.get_content(), tmp_path, bom=True)

    for shown in (
        f"Hi {HOSTILE_NAME},",  # the contact's name as written: text, not markup
        "Thank you for taking the time to meet with me.",
        "We're set for Thursday, March 12 at 10:00 AM, when I'll walk you through it",
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


def look(tools: Tools, page: str, folder: Path, *, bom: bool = False) -> Seen:
    """Open `page` in Chromium three ways at once: printed, its DOM dumped, screenshotted."""
    source = folder / "email.html"
    source.write_bytes(("\ufeff" if bom else "").encode() + page.encode())
    pdf, png = folder / "email.pdf", folder / "email.png"
    actions = (
        [f"--print-to-pdf={pdf}", "--no-pdf-header-footer"],
        ["--dump-dom"],
        [f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}"],
    )
    profiles = [f"--user-data-dir={folder / f'profile{n}'}" for n in range(len(actions))]
    argvs = [
        [tools.chromium, *CHROMIUM_FLAGS, profile, *action, source.as_uri()]
        for profile, action in zip(profiles, actions, strict=True)
    ]
    with ThreadPoolExecutor(len(argvs)) as pool:
        runs = list(pool.map(run, argvs))
    assert pdf.is_file() and png.is_file(), runs
    print(f"screenshot: {png}")
    text = run([tools.pdftotext, "-enc", "UTF-8", str(pdf), "-"])
    dom = runs[1]
    return Seen(
        text=" ".join(text.split()),
        dom=dom,
        page=Page.parse(dom),
        screenshot=png,
        picture=Picture.decode(png.read_bytes()),
    )


def run(argv: Sequence[str]) -> str:
    """`argv`'s standard output; the whole process group is killed if it hangs."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # Chromium's helpers too
        proc.communicate()
        # A script that ran and opened a dialog (alert) blocks Chromium's printing.
        pytest.fail(f"{argv[0]} hung for {RUN_TIMEOUT} s (a script's alert()?): {' '.join(argv)}")
    assert proc.returncode == 0, f"{' '.join(argv)} -> {proc.returncode}\n{err[-3000:]}"
    return out


def assert_no_script(seen: Seen, *, title: str | None) -> None:
    """Nothing in the page could run: no script element, no handler; markup stayed text."""
    assert "script" not in seen.page.tags, seen.dom
    assert not seen.page.handlers, seen.page.handlers
    assert "img" not in seen.page.tags, seen.dom
    assert seen.page.title == title  # an injected handler would have changed it


def assert_not_blank(picture: Picture) -> None:
    assert (picture.width, picture.height) == WINDOW
    # Text on white: a few percent of the pixels inked, in many shades (anti-aliasing).
    assert 0.01 < picture.ink < 0.5, picture
    assert picture.colors > 50, picture
    _left, top, _right, bottom = picture.ink_box
    assert top < 60 and bottom - top > 200, picture  # it starts at the top and goes on


# -- the DOM --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Page:
    tags: frozenset[str]
    handlers: tuple[str, ...]  # "tag onerror=..." for every on* attribute
    links: tuple[tuple[str, str], ...]  # (href, the link's text) of every <a href>
    title: str | None

    @staticmethod
    def parse(dom: str) -> Page:
        parser = _DomParser()
        parser.feed(dom)
        parser.close()
        return Page(
            tags=frozenset(parser.tags),
            handlers=tuple(parser.handlers),
            links=tuple(parser.links),
            title=parser.title,
        )


class _DomParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.handlers: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.title: str | None = None
        self._href: str | None = None
        self._text: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.handlers += [f"{tag} {name}={value}" for name, value in attrs if name.startswith("on")]
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), []
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)
        if self._in_title:
            self.title = (self.title or "") + data


# -- the screenshot -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Picture:
    width: int
    height: int
    ink: float  # the share of pixels that are not white
    colors: int  # distinct colors
    ink_box: tuple[int, int, int, int]  # left, top, right, bottom of the inked pixels

    @staticmethod
    def decode(data: bytes) -> Picture:
        """Read an 8-bit RGB or RGBA PNG (what Chromium writes) with zlib alone."""
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        chunks = dict[bytes, bytes]()
        pos = 8
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind = data[pos + 4 : pos + 8]
            chunks[kind] = chunks.get(kind, b"") + data[pos + 8 : pos + 8 + length]
            pos += 12 + length
        width, height, depth, color_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
        assert depth == 8 and color_type in (2, 6), (depth, color_type)
        channels = 3 if color_type == 2 else 4
        rows = _unfilter(zlib.decompress(chunks[b"IDAT"]), width * channels, channels)
        assert len(rows) == height
        return _measure(rows, width, channels)


def _unfilter(raw: bytes, stride: int, step: int) -> list[bytes]:
    """PNG's per-row filters undone (RFC 2083 section 6)."""
    rows: list[bytes] = []
    previous = bytes(stride)
    for start in range(0, len(raw), stride + 1):
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 2:  # up, the most common by far: bytewise sums in one big-int addition
            line = bytearray(_add_bytes(bytes(line), previous))
        elif kind in (1, 3, 4):
            for i in range(stride):
                a = line[i - step] if i >= step else 0
                b = previous[i]
                c = previous[i - step] if i >= step else 0
                line[i] = (line[i] + _predict(kind, a, b, c)) & 0xFF
        rows.append(bytes(line))
        previous = rows[-1]
    return rows


def _add_bytes(x: bytes, y: bytes) -> bytes:
    """Each byte of `x` plus the same byte of `y`, modulo 256 (no carry between bytes)."""
    low, high = int.from_bytes(b"\x7f" * len(x)), int.from_bytes(b"\x80" * len(x))
    a, b = int.from_bytes(x), int.from_bytes(y)
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(len(x))


def _predict(kind: int, a: int, b: int, c: int) -> int:
    if kind == 1:
        return a
    if kind == 3:
        return (a + b) // 2
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _measure(rows: list[bytes], width: int, channels: int) -> Picture:
    white = b"\xff" * channels
    colors: set[bytes] = set()
    inked = 0
    left, top, right, bottom = width, len(rows), -1, -1
    for y, row in enumerate(rows):
        if row == white * width:
            continue
        pixels = [row[x : x + channels] for x in range(0, len(row), channels)]
        colors.update(pixels)
        xs = [x for x, pixel in enumerate(pixels) if pixel != white]
        inked += len(xs)
        left, right = min(left, xs[0]), max(right, xs[-1])
        top, bottom = min(top, y), y
    return Picture(
        width=width,
        height=len(rows),
        ink=inked / (width * len(rows)),
        colors=len(colors),
        ink_box=(left, top, right, bottom),
    )
