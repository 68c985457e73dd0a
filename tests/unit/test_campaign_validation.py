"""Campaign files (SPEC §3): every error names the file and the step, and nothing half-loads."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import jinja2
import jinja2.sandbox
import pytest

from dripd.files import campaigns
from dripd.plan import templates

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "campaigns"
OPTIONS = campaigns.LoadOptions()

MINI = """\
name = "Mini"
description = "A minimal valid campaign."
stage = "prospect"
promote_on_reply = "lead"
send_window = "mon-fri 09:00-17:00"

[[steps]]
id = "hello"
kind = "email"
wait = "0m"
subject = "Hi {{ contact.first_name }}"
template = "mini/hello.md"

[[steps]]
id = "ring"
kind = "call"
before = "1 day"
anchor = "appointment_at"
note = "Call {{ contact.first_name }} about {{ contact.company }}."
"""
HELLO = "Hello {{ contact.first_name }},\n\nThanks for your time.\n"

OTHER = """\
name = "Other"
[[steps]]
id = "only"
kind = "task"
wait = "1 day"
note = "Think about {{ contact.first_name }}."
"""


def _write_folder(folder: Path, mini: str = MINI, hello: str = HELLO) -> Path:
    (folder / "mini").mkdir(parents=True, exist_ok=True)
    (folder / "mini.toml").write_text(mini, encoding="utf-8")
    (folder / "mini" / "hello.md").write_text(hello, encoding="utf-8")
    (folder / "other.toml").write_text(OTHER, encoding="utf-8")
    return folder


def _replace(old: str, new: str) -> Callable[[str], str]:
    def mutate(text: str) -> str:
        assert old in text, f"the mutation does not apply: {old!r}"
        return text.replace(old, new, 1)

    return mutate


def _keep(text: str) -> str:
    return text


# (case id, mutation of mini.toml, new content of mini/hello.md or None,
#  the step the message must name (None: a campaign-level problem), fragments of the message)
CASES = [
    ("missing template", _replace('"mini/hello.md"', '"mini/nowhere.md"'), None,
     "hello", ["'mini/nowhere.md'", "not found"]),
    ("unknown key", _replace('wait = "0m"', 'wiat = "0m"'), None,
     "hello", ["unknown key 'wiat'", "did you mean 'wait'"]),
    ("bad duration", _replace('wait = "0m"', 'wait = "3 fortnights"'), None,
     "hello", ["bad duration", "3 fortnights"]),
    ("wait and every", _replace('wait = "0m"', 'wait = "0m"\nevery = "1 month"'), None,
     "hello", ["two timing forms", "'wait'", "'every'"]),
    ("no timing", _replace('wait = "0m"\n', ""), None,
     "hello", ["no timing"]),
    ("before without anchor", _replace('anchor = "appointment_at"\n', ""), None,
     "ring", ["anchor"]),
    ("duplicate step id", _replace('id = "ring"', 'id = "hello"'), None,
     "hello", ["duplicate step id"]),
    ("subject does not compile",
     _replace('subject = "Hi {{ contact.first_name }}"', 'subject = "Hi {{ contact.first_name "'),
     None, "hello", ["subject", "template error"]),
    ("note does not compile",
     _replace('note = "Call {{ contact.first_name }} about {{ contact.company }}."',
              'note = "Call {{ contact.first_name "'),
     None, "ring", ["note", "template error"]),
    ("template file does not compile", _keep, "Hello {{ contact.first_name ,\n",
     "hello", ["'mini/hello.md'", "error on line 1"]),
    ("email without subject", _replace('subject = "Hi {{ contact.first_name }}"\n', ""), None,
     "hello", ["needs a 'subject'"]),
    ("call without note",
     _replace('note = "Call {{ contact.first_name }} about {{ contact.company }}."\n', ""), None,
     "ring", ["needs a 'note'"]),
    ("unknown stage", _replace('stage = "prospect"', 'stage = "whale"'), None,
     None, ["stage", "unknown stage 'whale'"]),
    ("unknown promote_on_reply", _replace('promote_on_reply = "lead"', 'promote_on_reply = "vip"'),
     None, None, ["promote_on_reply", "unknown stage 'vip'"]),
    ("bad send_window",
     _replace('send_window = "mon-fri 09:00-17:00"', 'send_window = "someday 25:00-26:00"'),
     None, None, ["send_window", "someday"]),
    ("bad starts_when",
     _replace('stage = "prospect"', 'stage = "prospect"\nstarts_when = "when:ever"'),
     None, None, ["starts_when", "when:ever"]),
    ("starts_when with an unknown stage",
     _replace('stage = "prospect"', 'stage = "prospect"\nstarts_when = "stage:whale"'),
     None, None, ["starts_when", "stage:whale"]),
    ("unknown next", _replace('name = "Mini"', 'name = "Mini"\nnext = "nowhere"'), None,
     None, ["next", "unknown campaign 'nowhere'"]),
    ("invalid TOML", _replace('name = "Mini"', 'name = "Mini'), None,
     None, ["invalid TOML"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "hello", "step", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_broken_campaign_is_one_problem_naming_file_and_step(
    tmp_path: Path,
    mutate: Callable[[str], str],
    hello: str | None,
    step: str | None,
    fragments: list[str],
) -> None:
    folder = _write_folder(tmp_path / "campaigns", mutate(MINI), hello or HELLO)
    path = folder / "mini.toml"

    catalog = campaigns.load_all(folder, OPTIONS)

    assert len(catalog.problems) == 1, catalog.problems
    problem = catalog.problems[0]
    assert "\n" not in problem
    assert problem.startswith(f"{path}: "), problem
    if step is not None:
        assert f"step '{step}'" in problem, problem
    for fragment in fragments:
        assert fragment in problem, problem
    if "next" in fragments:
        # next is checked across files: the campaign itself is valid on its own
        assert "mini" in catalog.campaigns
    else:
        assert "mini" not in catalog.campaigns, "a broken campaign must not half-load"
    assert "other" in catalog.campaigns, "one bad file must not stop the others"


def test_the_unmutated_campaign_is_valid(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "campaigns")
    catalog = campaigns.load_all(folder, OPTIONS)
    assert catalog.problems == ()
    assert sorted(catalog.campaigns) == ["mini", "other"]
    assert [s.id for s in catalog.get("mini").steps] == ["hello", "ring"]


def test_problems_in_several_steps_are_all_reported(tmp_path: Path) -> None:
    text = MINI.replace('wait = "0m"', 'wait = "3 fortnights"').replace(
        'anchor = "appointment_at"\n', ""
    )
    folder = _write_folder(tmp_path / "campaigns", text)
    problems = campaigns.load_all(folder, OPTIONS).problems
    assert len(problems) == 2, problems
    assert any("step 'hello'" in p and "fortnights" in p for p in problems)
    assert any("step 'ring'" in p and "anchor" in p for p in problems)


def test_the_shipped_campaigns_load_without_problems() -> None:
    catalog = campaigns.load_all(SHIPPED, campaigns.LoadOptions())
    assert catalog.problems == ()
    assert set(catalog.campaigns) == {
        "qualification", "presentation", "proposal", "close", "welcome", "drip",
    }  # fmt: skip
    for campaign in catalog.campaigns.values():
        if campaign.next is not None:
            assert campaign.next in catalog.campaigns


@pytest.mark.parametrize("broken", ["proposal", "welcome"])
def test_one_bad_file_among_the_shipped_ones_is_the_only_problem(
    tmp_path: Path, broken: str
) -> None:
    folder = tmp_path / "campaigns"
    shutil.copytree(SHIPPED, folder)
    bad = folder / f"{broken}.toml"
    bad.write_text(bad.read_text(encoding="utf-8").replace("wait =", "wiat =", 1), encoding="utf-8")

    catalog = campaigns.load_all(folder, campaigns.LoadOptions())

    # proposal is presentation's `next`: the broken file is the problem, not presentation
    assert [p.split(": ", 1)[0] for p in catalog.problems] == [str(bad)], catalog.problems
    assert "did you mean 'wait'" in catalog.problems[0]
    assert broken not in catalog.campaigns
    assert set(catalog.campaigns) == {
        "qualification", "presentation", "proposal", "close", "welcome", "drip",
    } - {broken}  # fmt: skip


def test_load_checked_raises_with_every_problem(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "campaigns", MINI.replace('wait = "0m"', 'wiat = "0m"'))
    with pytest.raises(campaigns.errors.CampaignError, match="did you mean 'wait'"):
        campaigns.load_checked(folder, OPTIONS)


def test_a_load_that_renders_nothing_does_not_compile_but_finds_missing_files(
    tmp_path: Path,
) -> None:
    """`status`, `schedule`, `contacts show`… load without compiling; `check` and `run` compile."""
    broken = MINI.replace("{{ contact.first_name }}", "{{ contact.first_name ,")
    folder = _write_folder(tmp_path / "campaigns", broken, hello="Hi {{ contact.first_name ,\n")
    reading = campaigns.LoadOptions(env=templates.Renderer(folder, compile_checked=False))
    assert campaigns.load_all(folder, reading).problems == ()
    problems = campaigns.load_all(folder, campaigns.LoadOptions()).problems
    assert problems, problems
    assert all("template error on line 1" in problem for problem in problems), problems
    with_file = MINI.replace('subject = "Hi {{ contact.first_name }}"', 'subject = "Hi"')
    folder = _write_folder(tmp_path / "file", with_file, hello="Hi {{ contact.first_name ,\n")
    [problem] = campaigns.load_all(folder, campaigns.LoadOptions()).problems
    assert "template 'mini/hello.md': error on line 1" in problem
    reading = campaigns.LoadOptions(env=templates.Renderer(folder, compile_checked=False))
    assert campaigns.load_all(folder, reading).problems == ()

    missing = _write_folder(tmp_path / "other", MINI.replace("mini/hello.md", "mini/nowhere.md"))
    reading = campaigns.LoadOptions(env=templates.Renderer(missing, compile_checked=False))
    [problem] = campaigns.load_all(missing, reading).problems
    assert "template 'mini/nowhere.md' not found" in problem


def test_a_checked_source_is_compiled_once(tmp_path: Path) -> None:
    """`check` compiles each inline template to check it, then renders it: one compile."""
    renderer = templates.Renderer(tmp_path)
    compiles: list[str] = []
    from_string = renderer.env.from_string

    def counted(source: str) -> jinja2.Template:
        compiles.append(source)
        return from_string(source)

    renderer.env.from_string = counted  # type: ignore[method-assign]
    renderer.check_source("Hi {{ contact.first_name }}", "subject")
    assert renderer.render_string("Hi {{ contact.first_name }}", CONTEXT, "subject") == "Hi Ann"
    assert compiles == ["Hi {{ contact.first_name }}"]


def test_a_missing_campaigns_folder_is_one_problem(tmp_path: Path) -> None:
    catalog = campaigns.load_all(tmp_path / "nope", OPTIONS)
    assert catalog.problems == (f"{tmp_path / 'nope'}: campaigns folder not found",)


# -- rendering: strict and sandboxed -------------------------------------------------


@pytest.fixture
def renderer(tmp_path: Path) -> templates.Renderer:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "typo.md").write_text("Hi {{ contact.frist_name }}\n", encoding="utf-8")
    (tmp_path / "t" / "escape.md").write_text("{{ ''.__class__.__mro__ }}\n", encoding="utf-8")
    return templates.Renderer(tmp_path)


CONTEXT = {"contact": {"first_name": "Ann", "email": "ann@example.com"}}


def test_an_undefined_name_compiles_but_fails_at_render_time(
    renderer: templates.Renderer,
) -> None:
    renderer.check_source("Hi {{ contact.frist_name }}", "subject")  # compiles: no error
    renderer.check_file("t/typo.md")
    with pytest.raises(templates.RenderError, match="frist_name"):
        renderer.render_string("Hi {{ contact.frist_name }}", CONTEXT, "mini/hello subject")
    with pytest.raises(templates.RenderError, match="frist_name"):
        renderer.render_file("t/typo.md", CONTEXT, "mini/hello")
    with pytest.raises(templates.RenderError, match="nobody"):
        renderer.render_string("{{ nobody }}", CONTEXT, "x")


def test_render_error_names_what_was_rendered(renderer: templates.Renderer) -> None:
    with pytest.raises(templates.RenderError) as info:
        renderer.render_string("{{ contact.phone }}", CONTEXT, "mini/hello subject")
    assert str(info.value).startswith("mini/hello subject: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ contact.__class__.__init__.__globals__ }}",
        "{{ [].__class__.__base__.__subclasses__() }}",
    ],
)
def test_a_sandbox_escape_fails_at_render_time(renderer: templates.Renderer, source: str) -> None:
    renderer.check_source(source, "body")  # it compiles; the sandbox refuses it when run
    with pytest.raises(templates.RenderError, match="unsafe") as info:
        renderer.render_string(source, CONTEXT, "mini/hello body")
    assert isinstance(info.value.__cause__, jinja2.sandbox.SecurityError)


def test_a_sandbox_escape_in_a_template_file_fails_at_render_time(
    renderer: templates.Renderer,
) -> None:
    renderer.check_file("t/escape.md")
    with pytest.raises(templates.RenderError) as info:
        renderer.render_file("t/escape.md", CONTEXT, "t/escape")
    assert isinstance(info.value.__cause__, jinja2.sandbox.SecurityError)


def test_good_templates_render(renderer: templates.Renderer) -> None:
    assert renderer.render_string("Hi {{ contact.first_name }}", CONTEXT, "x") == "Hi Ann"


@pytest.mark.parametrize("filter_name", ["date", "time", "datetime"])
def test_a_missing_date_field_in_a_filter_names_the_field(
    renderer: templates.Renderer, filter_name: str
) -> None:
    with pytest.raises(templates.RenderError) as info:
        source = f"See you {{{{ contact.appointment_at | {filter_name} }}}}"
        renderer.render_string(source, CONTEXT, "q/confirm subject")
    message = str(info.value)
    assert "appointment_at" in message and "missing that field" in message, message
