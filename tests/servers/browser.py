"""Headless Chromium and pdftotext: an HTML page as a person sees it.

`find()` looks for both programs. `look()` opens a page three ways at once:
printed to PDF (its visible text read back with pdftotext), its DOM dumped after
loading (`Page`: tags, event handlers, links, title), and screenshotted (`Picture`:
the PNG decoded here with the stdlib: size, ink, colours, where the ink is).
`./dev` installs both programs (apt-get install chromium poppler-utils).
"""

from __future__ import annotations

import html.parser
import os
import shutil
import signal
import struct
import subprocess
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Tools:
    chromium: str
    pdftotext: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Seen:
    """A page as the browser showed it."""

    text: str  # the printed PDF's visible text, whitespace runs made one space
    dom: str  # the document after loading, serialized
    page: Page  # what parsing `dom` found
    screenshot: Path
    picture: Picture


def find() -> Tools | str:
    """Chromium and pdftotext, or the names of the ones missing (e.g. "chromium, pdftotext")."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    pdftotext = shutil.which("pdftotext")
    if chromium and pdftotext:
        return Tools(chromium=chromium, pdftotext=pdftotext)
    return ", ".join(n for n, p in (("chromium", chromium), ("pdftotext", pdftotext)) if not p)


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
        raise AssertionError(
            f"{argv[0]} hung for {RUN_TIMEOUT} s (a script's alert()?): {' '.join(argv)}"
        ) from None
    assert proc.returncode == 0, f"{' '.join(argv)} -> {proc.returncode}\n{err[-3000:]}"
    return out


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
