"""Markdown bodies: the template's Markdown is formatting, the values it prints are text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dripd.plan import templates

HOSTILE = "[Zoe](https://evil.example) *Z* <b>x</b> &copy; `code` # not a heading"


@pytest.fixture
def renderer(tmp_path: Path) -> templates.Renderer:
    (tmp_path / "hello.md").write_text(
        "Hi **{{ name }}**,\n\nSee [our rates](https://rates.example/{{ slug }}).\n",
        encoding="utf-8",
    )
    return templates.Renderer(tmp_path)


def parts(renderer: templates.Renderer, **context: str) -> tuple[str, str | None]:
    return templates.render_body(
        renderer, template="hello.md", body=None, context=context, what="t/hello"
    )


def test_a_printed_value_stays_text_in_the_html_part(renderer: templates.Renderer) -> None:
    text, html = parts(renderer, name=HOSTILE, slug="a-b_c")
    assert text == f"Hi **{HOSTILE}**,\n\nSee [our rates](https://rates.example/a-b_c).\n"
    assert html is not None
    # The template's own Markdown: bold, and a link whose address holds a value.
    assert '<a href="https://rates.example/a-b_c">our rates</a>' in html
    # The value's: shown as written, nothing made of it.
    shown = "[Zoe](https://evil.example) *Z* &lt;b&gt;x&lt;/b&gt; &amp;copy; `code` # not a heading"
    assert f"<strong>{shown}</strong>" in html
    assert 'evil.example"' not in html and "<em>" not in html and "<code>" not in html


def test_an_inline_body_is_treated_the_same(renderer: templates.Renderer) -> None:
    text, html = templates.render_body(
        renderer, template=None, body="*Dear* {{ name }}", context={"name": "_x_"}, what="t/b"
    )
    assert text == "*Dear* _x_\n"
    assert html == "<p><em>Dear</em> _x_</p>\n"


@given(st.text(max_size=80))
def test_any_value_reads_back_as_itself(value: str) -> None:
    renderer = templates.Renderer(Path("."))
    text, html = templates.render_body(
        renderer, template=None, body="{{ v }}", context={"v": value}, what="t/b"
    )
    assert "\ue000" not in text + (html or "") and "\ue001" not in text + (html or "")
    assert text == value.replace("\ue000", "").replace("\ue001", "").strip() + "\n"
