"""Jinja2 templates for subjects, bodies and notes: sandboxed, strict, Markdown-aware.

Undefined names are errors, so a typo in a template fails `dripd check`
(or holds the step for that contact) instead of mailing "Hi ,".

Jinja2 and cmark are loaded when a template is first compiled or a body
made HTML: every command loads its campaigns, most render nothing.
"""

from __future__ import annotations

import functools
import html
import html.parser
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dripd import errors
from dripd.plan import dates

if TYPE_CHECKING:
    import jinja2
    import jinja2.sandbox

TEMPLATE_SUFFIXES = (".md", ".txt", ".html")


class RenderError(errors.DripdError):
    """A template could not be rendered for a contact (a missing field, a bad date)."""


class Renderer:
    """Compiles and renders the templates of one campaigns folder."""

    def __init__(self, folder: Path, *, compile_checked: bool = True) -> None:
        """`compile_checked=False`: `check_source` and `check_file` do not compile.

        For a command that only reads (`status`, `schedule`, `contacts show`…):
        compiling every template is a fifth of its start and it renders none.
        `check` and `run` compile them all; a broken one is found there.
        """
        self.folder = folder
        self.compile_checked = compile_checked
        self._compiled: dict[str, jinja2.Template] = {}
        self._compiled_markdown: dict[str, jinja2.Template] = {}

    @functools.cached_property
    def env(self) -> jinja2.sandbox.SandboxedEnvironment:
        """The Jinja2 environment, made when a template is first compiled."""
        import jinja2.sandbox

        env = jinja2.sandbox.SandboxedEnvironment(
            loader=jinja2.FileSystemLoader(str(self.folder)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(("html",), default_for_string=False),
            keep_trailing_newline=False,
            auto_reload=False,  # a changed file means a reload of the campaigns (a new Renderer)
        )
        filters = {"date": _date_filter, "time": _time_filter, "datetime": _datetime_filter}
        env.filters.update({name: jinja2.pass_context(f) for name, f in filters.items()})
        return env

    @functools.cached_property
    def markdown_env(self) -> jinja2.Environment:
        """For Markdown bodies: `env`, but marking every value a template prints.

        So the HTML part can show it literally (see _markdown_parts).
        """
        return self.env.overlay(finalize=_mark_value)

    def check_source(self, source: str, what: str) -> None:
        """Raise ValueError if `source` does not compile; keep it compiled for rendering."""
        if not self.compile_checked:
            return
        import jinja2

        try:
            self.compiled(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"{what}: template error on line {exc.lineno}: {exc.message}") from exc

    def check_file(self, name: str) -> None:
        """Raise ValueError if template file `name` is missing, misplaced or broken."""
        path = self._template_path(name)
        if not path.is_file():
            raise ValueError(f"template {name!r} not found in {self.folder}")
        if not self.compile_checked:
            return
        import jinja2

        try:
            self.env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(
                f"template {name!r}: error on line {exc.lineno}: {exc.message}"
            ) from exc

    def _template_path(self, name: str) -> Path:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise ValueError(f"template {name!r} must be a path inside the campaigns folder")
        if pure.suffix not in TEMPLATE_SUFFIXES:
            raise ValueError(f"template {name!r}: expected a .md, .txt or .html file")
        return self.folder / pure

    def compiled(self, source: str) -> jinja2.Template:
        """The compiled template of an inline source (subjects, bodies, notes), compiled once."""
        template = self._compiled.get(source)
        if template is None:
            template = self._compiled[source] = self.env.from_string(source)
        return template

    def render_string(self, source: str, context: Mapping[str, Any], what: str) -> str:
        import jinja2

        try:
            return self.compiled(source).render(context)
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            raise RenderError(f"{what}: {_render_problem(exc)}") from exc

    def render_file(self, name: str, context: Mapping[str, Any], what: str) -> str:
        import jinja2

        env = self.markdown_env if PurePosixPath(name).suffix == ".md" else self.env
        try:
            return env.get_template(name).render(context)
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            raise RenderError(f"{what}: {_render_problem(exc)}") from exc

    def render_markdown(self, source: str, context: Mapping[str, Any], what: str) -> str:
        """An inline Markdown body, its printed values marked (see _markdown_parts)."""
        import jinja2

        template = self._compiled_markdown.get(source)
        try:
            if template is None:
                template = self._compiled_markdown[source] = self.markdown_env.from_string(source)
            return template.render(context)
        except (jinja2.TemplateError, ValueError, TypeError) as exc:
            raise RenderError(f"{what}: {_render_problem(exc)}") from exc


def render_body(
    renderer: Renderer,
    *,
    template: str | None,
    body: str | None,
    context: Mapping[str, Any],
    what: str,
) -> tuple[str, str | None]:
    """The (text, html) parts of an email body from a template file or inline body."""
    if template is None:
        return _markdown_parts(renderer.render_markdown(body or "", context, what))
    rendered = renderer.render_file(template, context, what)
    suffix = PurePosixPath(template).suffix
    if suffix == ".txt":
        return rendered.strip() + "\n", None
    if suffix == ".html":
        return html_to_text(rendered), rendered
    return _markdown_parts(rendered)


# Private-use characters around each value a Markdown template prints.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(f"{_OPEN}(.*?){_CLOSE}", re.DOTALL)
# CommonMark lets any ASCII punctuation be escaped with a backslash.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def _mark_value(value: Any) -> str:
    text = "" if value is None else str(value)
    return _OPEN + text.replace(_OPEN, "").replace(_CLOSE, "") + _CLOSE


def _markdown_parts(marked: str) -> tuple[str, str]:
    """The text part (the Markdown as written) and the HTML part of a rendered Markdown body.

    The template's own Markdown is formatting; the values it prints (a
    contact's name, a custom field) are data: escaped before cmark reads
    them, so `[Zoe](https://x)` or `*Z*` in a field stays text in the HTML
    part instead of becoming a link or italics.
    """
    text = marked.replace(_OPEN, "").replace(_CLOSE, "").strip() + "\n"
    source = _MARKED.sub(lambda m: _MARKDOWN_PUNCTUATION.sub(r"\\\1", m.group(1)), marked)
    source = source.replace(_OPEN, "").replace(_CLOSE, "").strip() + "\n"
    import cmarkgfm
    from cmarkgfm.cmark import Options

    # cmark (GitHub's C implementation, 50x faster than a pure-Python parser);
    # without CMARK_OPT_UNSAFE it leaves raw HTML out, so contact data can never
    # put markup into the HTML part.
    return text, cmarkgfm.markdown_to_html(source, options=Options.CMARK_OPT_DEFAULT)


def _render_problem(exc: Exception) -> str:
    import jinja2

    if isinstance(exc, jinja2.UndefinedError):
        return f"{exc.message} (is the contact missing that field?)"
    return str(exc)


def _as_local(value: object, context: Any) -> datetime:
    import jinja2

    tz = context.get("_tz") or ZoneInfo("UTC")
    if isinstance(value, jinja2.Undefined):  # name the missing field, not "Undefined"
        value._fail_with_undefined_error()
    if isinstance(value, datetime):
        return value.astimezone(tz)
    if isinstance(value, str):
        return dates.parse_when(value, tz).astimezone(tz)
    raise ValueError(f"{value!r} is not a date")


def _date_filter(context: Any, value: object) -> str:
    local = _as_local(value, context)
    return f"{local:%A, %B} {local.day}"


def _time_filter(context: Any, value: object) -> str:
    local = _as_local(value, context)
    return f"{local.hour % 12 or 12}:{local:%M %p}"


def _datetime_filter(context: Any, value: object) -> str:
    return f"{_date_filter(context, value)} at {_time_filter(context, value)}"


class _TextExtractor(html.parser.HTMLParser):
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in ("p", "div", "table", "h1", "h2", "h3", "h4"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(" ".join(data.split()) if data.strip() else "")


def html_to_text(markup: str) -> str:
    """A readable text rendering of an HTML body (the generated text part)."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    lines = [line.strip() for line in "".join(extractor.parts).splitlines()]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return html.unescape(text).strip() + "\n"
