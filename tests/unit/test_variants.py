"""A/B variants (SPEC §11): validation, the choice by weight, the honest note."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dripd.files import campaigns
from dripd.pipeline import variants
from dripd.plan import templates

STEP = """
name = "Thanks"
[[steps]]
id = "thank-you"
kind = "email"
wait = "0m"
subject = "Thank you"
{variants}
"""
SHORT_LONG = """
[[steps.variants]]
id = "short"
subject = "Thanks, {{ contact.first_name }}"
body = "Short."
[[steps.variants]]
id = "long"
body = "A longer thank-you."
weight = 2
"""


def _load(tmp_path: Path, variants_text: str) -> campaigns.Catalog:
    (tmp_path / "thanks.toml").write_text(STEP.format(variants=variants_text), encoding="utf-8")
    options = campaigns.LoadOptions(env=templates.Renderer(tmp_path))
    return campaigns.load_all(tmp_path, options)


def test_a_variant_takes_the_steps_content_where_it_sets_none(tmp_path: Path) -> None:
    catalog = _load(tmp_path, SHORT_LONG)
    assert catalog.problems == ()
    short, long = catalog.campaigns["thanks"].step("thank-you").variants
    assert short.subject == "Thanks, {{ contact.first_name }}"
    assert (short.body, short.weight) == ("Short.", 1.0)
    assert (long.subject, long.body, long.weight) == ("Thank you", "A longer thank-you.", 2.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('[[steps.variants]]\nid = "a"\nbody = "x"\n[[steps.variants]]\nid = "a"\nbody = "y"\n',
         "variant ids must differ: a, a"),
        ('[[steps.variants]]\nid = "a"\n', "variant 'a': an email step needs exactly one of"),
        ('[[steps.variants]]\nid = "a"\nbody = "x"\nweight = 0\n', "weight"),
        ('[[steps.variants]]\nid = "a"\nbody = "{{ nope( }}"\n', "variant 'a'"),
    ],
)  # fmt: skip
def test_a_bad_variant_is_one_line_naming_the_step(tmp_path: Path, text: str, problem: str) -> None:
    (problem_line,) = _load(tmp_path, text).problems
    assert "step 'thank-you'" in problem_line and problem in problem_line, problem_line


def test_enrollments_split_by_weight_and_each_keeps_its_version(tmp_path: Path) -> None:
    step = _load(tmp_path, SHORT_LONG).campaigns["thanks"].step("thank-you")
    chosen = Counter(campaigns.version_for(step, enrollment)[1] for enrollment in range(1, 1001))
    # weight 1 : 2 → 1/3 short; a binomial(1000, 1/3) is within 4.5 sd (±67) but for 1 in 150,000
    assert abs(chosen["short"] - 1000 / 3) < 67, chosen
    assert chosen["short"] + chosen["long"] == 1000
    again = [campaigns.version_for(step, enrollment)[1] for enrollment in range(1, 1001)]
    assert Counter(again) == chosen  # remembered: the same enrollment, the same version
    version, variant = campaigns.version_for(step, 7)
    assert version.body == ("Short." if variant == "short" else "A longer thank-you.")


def test_a_step_without_variants_is_itself(tmp_path: Path) -> None:
    step = _load(tmp_path, 'body = "Thanks."').campaigns["thanks"].step("thank-you")
    assert campaigns.version_for(step, 1) == (step, None)


@pytest.mark.parametrize(
    ("counts", "note"),
    [
        ([("a", 10, 3), ("b", 12, 1)], "too few to tell"),
        ([("a", 200, 20), ("b", 200, 24)], "no clear difference yet (p = 0.5"),
        ([("a", 300, 15), ("b", 300, 45)], "'b' leads (p = 0.000"),
        ([("a", 50, 5)], "one version sent so far"),
    ],
)
def test_the_note_says_a_leader_only_when_the_difference_is_unlikely_noise(
    counts: list[tuple[str, int, int]], note: str
) -> None:
    versions = [variants.Version(variant=v, sent=n, replied=r) for v, n, r in counts]
    assert variants.compare(versions).startswith(note)


def test_the_two_proportion_p_value_matches_the_textbook() -> None:
    # 15/300 vs 45/300: pooled 0.1, standard error 0.0245, z = -4.08, two-sided p = 4.5e-5
    assert variants.two_proportion_p(15, 300, 45, 300) == pytest.approx(4.46e-5, rel=0.01)
    assert variants.two_proportion_p(0, 10, 0, 10) == 1.0
